"""GPU benchmark of the TorchEngine at the full Step-Audio-R1 shapes (33B, bf16), random weights.

Builds the model directly on the GPU (meta device -> ``to_empty`` -> in-place init: no host copy, about
66 GB of bf16 weights), then measures through the real TorchEngine:

* prefill of 400 audio tokens (two 16 s chunks through the 32-layer encoder + adaptor) + 50 text tokens,
  and, separately, a 452-token text prefill (decoder only);
* decode ms/token at batch 1 and batch 8 (eight forks of the same prompt decoding together).

Run: ``python -m stepaudio_rt.model.bench_gpu [--out results.json]`` on a machine with >= 80 GB of GPU
memory. Prints a JSON object with the GPU name and every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

from stepaudio_rt.model.checkpoint import build_empty_model
from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG, StepAudio2Config
from stepaudio_rt.model.engine import SamplingParams
from stepaudio_rt.model.testing import tiny_tokenizer
from stepaudio_rt.model.torch_engine import TorchEngine


def build_random_model(config: StepAudio2Config, device: str = "cuda", dtype: torch.dtype = torch.bfloat16):
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are born in bf16: no float32 copy of 33B weights
    try:
        model = build_empty_model(config)
    finally:
        torch.set_default_dtype(default)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "_ln." in name or "layernorm" in name or name.endswith("after_norm.weight"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.normal_(0.0, 0.02)
    model.model.rotary_emb = Qwen2RotaryEmbedding(config=config.text).to(device)
    return model.eval().requires_grad_(False)


async def _decode(engine: TorchEngine, ctxs, new_tokens: int) -> list[float]:
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, stop_token_ids=())

    async def run(ctx) -> list[float]:
        return [d.step_seconds async for d in engine.generate(ctx, params) if d.finish_reason is None]

    steps = await asyncio.gather(*(run(c) for c in ctxs))
    return steps[0][2:]  # skip the prefill-logits token and the first (warm-up) step


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


async def run_bench(
    new_tokens: int = 64,
    config: StepAudio2Config | None = None,
    device: str = "cuda",
    dtype: torch.dtype = torch.bfloat16,
    chunk_seconds: float = 16.0,
) -> dict:
    """Defaults: the real shapes on a GPU. Tests pass a tiny config on the CPU to exercise the code."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    config = config or StepAudio2Config.from_dict(STEP_AUDIO_R1_CONFIG)
    t0 = time.perf_counter()
    model = build_random_model(config, device, dtype)
    _sync()
    build_s = time.perf_counter() - t0
    tokenizer = tiny_tokenizer(512)
    engine = TorchEngine(model, tokenizer, max_contexts=12, max_context_tokens=1024)  # type: ignore[arg-type]
    result: dict = {
        "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 2),
        "build_s": round(build_s, 1),
        "kv_cache_gb": round(engine.cache.bytes / 1e9, 2),
    }
    rng = np.random.default_rng(0)
    chunk = (0.05 * rng.standard_normal(int(chunk_seconds * 16000))).astype(np.float32)  # 16 s: 200 tokens
    text50 = list(range(20, 70))

    async def prompt_prefill() -> tuple[object, dict]:
        ctx = engine.new_context()
        _sync()
        t = time.perf_counter()
        timings = [await engine.append_audio(ctx, chunk) for _ in range(2)]
        await engine.append_tokens(ctx, text50)
        await engine.flush(ctx)  # text is deferred until needed; measure its prefill here
        _sync()
        total = time.perf_counter() - t
        encode = sum(s.seconds for s in ctx.timings if s.kind == "encode_audio")
        return ctx, {
            "prompt_tokens": len(ctx),
            "audio_tokens": sum(t.tokens for t in timings),
            "prefill_total_ms": round(1000 * total, 1),
            "encoder_ms": round(1000 * encode, 1),
        }

    warm, _ = await prompt_prefill()  # warm-up (kernels, allocator)
    engine.release(warm)  # type: ignore[arg-type]
    ctx, stats = await prompt_prefill()
    result["prefill_400_audio_50_text"] = stats

    plain = engine.new_context()
    ids = torch.randint(20, 400, (452,)).tolist()
    await engine.append_tokens(plain, ids[:8])
    await engine.flush(plain)
    engine.release(plain)
    times = []
    for _ in range(3):
        c = engine.new_context()
        _sync()
        t = time.perf_counter()
        await engine.append_tokens(c, ids)
        await engine.flush(c)
        _sync()
        times.append(time.perf_counter() - t)
        engine.release(c)
    result["prefill_452_text_ms"] = round(1000 * statistics.median(times), 1)

    graphs = engine._graphs
    modes = [("eager", None)] + ([("cuda_graphs", graphs)] if graphs is not None else [])
    for mode, graph_runner in modes:  # same engine, same weights: eager vs graphed decode side by side
        engine._graphs = graph_runner
        for batch in (1, 8):
            forks = [engine.fork(ctx) for _ in range(batch)]
            steps = await _decode(engine, forks, new_tokens)
            for f in forks:
                engine.release(f)
            ms = 1000 * statistics.median(steps)
            key = "decode" if mode == "eager" else f"decode_{mode}"
            result[f"{key}_batch{batch}_ms_per_step"] = round(ms, 2)
            result[f"{key}_batch{batch}_tokens_per_s"] = round(batch * 1000 / ms, 1)
    if device.startswith("cuda"):
        result["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
    await engine.aclose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    result = asyncio.run(run_bench(args.new_tokens))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
