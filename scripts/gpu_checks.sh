#!/usr/bin/env bash
# The GPU checks, as one script for a CUDA machine (H100/H200, >= 80 GB) with PyTorch and transformers:
# random bf16 weights at the full Step-Audio-R1 shapes, no checkpoint download.
#   1. bench gpu: prefill and decode of the TorchEngine (batch 1 / 8, eager vs CUDA graphs)
#   2. bench mps: first reply text after end of turn vs forced reasoning length (0, 64, 256, 1024) per
#      thinking mode, second-stream cost, fork + re-prefill per articulation round against a decode step
#   3. bench cosyvoice: CosyVoice2-0.5B shapes (random fp16 weights): time to first chunk and real-time
#      factor, streamed vs one-shot, 10 s utterances
# Results go to ${OUT:-gpu-results}/ as JSON (and a PNG for bench mps).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))"
python -m stepaudio_rt.model.bench_gpu --out "$out/gpu_bench.json"
python -m stepaudio_rt.streaming.bench_mps --full-shapes --device cuda --tts none --repeats 3 \
    --out "$out/mps_full_shapes.json"
python -m stepaudio_rt.streaming.tts.cosyvoice.bench --full-shapes --device cuda --tokens 250 --repeats 3 \
    --concurrency 1,4,8 --out "$out/cosyvoice_full_shapes.json"
