# stepaudio-rt on upstream vLLM (GPU): the realtime server with --engine vllm, and plain `vllm serve` for
# chat-completions clients, both through this project's Step-Audio-R1 plugin (no fork, no remote code).
# The vLLM version must equal stepaudio_rt.vllm_plugin.VLLM_VERSION (a test checks it).
ARG VLLM_VERSION=0.32.0
FROM vllm/vllm-openai:v${VLLM_VERSION}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The project and its plugin (entry point vllm.general_plugins). torch, transformers and vLLM stay the base
# image's: they are frozen as constraints, so a dependency that wants others fails the build instead of
# replacing vLLM's CUDA builds (the project's torch==2.13.0 pin matches 2.13.0+cuXXX).
COPY pyproject.toml README.md /opt/stepaudio-rt/
COPY stepaudio_rt /opt/stepaudio-rt/stepaudio_rt
RUN python3 -m pip freeze | grep -iE '^(torch|transformers|tokenizers|numpy|vllm)==' > /tmp/image-pins.txt \
    && python3 -m pip install --no-cache-dir -c /tmp/image-pins.txt "/opt/stepaudio-rt[tts]" \
    && python3 -c "import stepaudio_rt.vllm_plugin as p, vllm; assert vllm.__version__.startswith(p.VLLM_VERSION), vllm.__version__"

ENV STEPAUDIO_RT_HOST=0.0.0.0 \
    STEPAUDIO_RT_PORT=8000 \
    HF_HUB_DISABLE_TELEMETRY=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]

# Any `stepaudio-rt serve` flag can follow `docker run ... IMAGE`, e.g. --model /models/Step-Audio-R1.1
# --tensor-parallel-size 4 --max-model-len 16384 --quantization fp8. Without --model: the bundled demo.
# `--entrypoint vllm IMAGE serve /models/Step-Audio-R1.1` serves the OpenAI chat API instead.
ENTRYPOINT ["stepaudio-rt", "serve", "--engine", "vllm"]
CMD []
