"""GPU benchmark of the VLLMEngine at the full Step-Audio-R1 shapes (33B, bf16) with vLLM's dummy weights.

No download: the script writes a checkpoint directory holding only the official ``config.json`` (R1
shapes), a small tokenizer carrying the real special tokens and a ``generation_config.json``; vLLM builds
the model through this project's plugin and fills it with random weights (``load_format="dummy"``).
Measured through the engine contract, as the realtime server uses it:

* end of a listened turn: first token after ``<|EOT|><|BOT|>assistant\\n<think>\\n`` when 2 s / 20 s of audio
  were appended in 2 s chunks while listening (the target: 20 s within 1.3x of 2 s);
* decode ms/token at batch 1 and batch 8;
* speak-first: first reply token of an articulation stream forked from the listened turn with the empty
  think block (the engine side of think-while-speaking's first audio).

Run where vLLM and a GPU exist (the Docker image has both):
``python -m stepaudio_rt.model.bench_vllm_gpu --tensor-parallel-size 1 --out results.json``; one 80 GB GPU
needs ``--quantization fp8``. ``--tiny`` runs the same script on a tiny model (CPU smoke test).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG
from stepaudio_rt.model.engine import Context, SamplingParams
from stepaudio_rt.model.prompt import (
    END_OF_TURN,
    GENERATION_PREFIX,
    NO_THINK_PREFIX,
    USER_PREFIX,
    system_block,
)
from stepaudio_rt.model.testing import tiny_tokenizer


def write_dummy_checkpoint(out: Path, tiny: bool = False) -> Path:
    """config.json (R1 shapes, or tiny ones), tokenizer, generation_config: everything but weights."""
    config = copy.deepcopy(STEP_AUDIO_R1_CONFIG)
    if tiny:  # head_dim 32: the smallest vLLM's CPU attention takes
        config["text_config"].update(hidden_size=128, intermediate_size=256, num_attention_heads=4,
                                     num_attention_groups=2, num_key_value_heads=2, num_hidden_layers=2,
                                     vocab_size=512, max_seq_len=8192, max_position_embeddings=8192)  # fmt: skip
        config["audio_encoder_config"].update(n_mels=80, n_audio_state=64, n_audio_head=2, n_audio_layer=2, llm_dim=128)
        config["dtype"] = "float32"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer = tiny_tokenizer(512)
    tokenizer.save_pretrained(out)
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": list(tokenizer.stop_token_ids)}))
    return out


async def _listened_turn(engine, seconds: int, rng: np.random.Generator) -> Context:  # type: ignore[no-untyped-def]
    ctx = engine.new_context()
    await engine.append_text(ctx, system_block(f"You are a voice assistant. {rng.integers(1 << 30)}") + USER_PREFIX)
    for _ in range(seconds // 2):
        await engine.append_audio(ctx, (0.1 * rng.standard_normal(32000)).astype(np.float32))
    return ctx


async def _first_token_s(engine, ctx: Context, text: str) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    await engine.append_text(ctx, text)
    async for _ in engine.generate(ctx, SamplingParams(temperature=0.0, max_tokens=1, stop_token_ids=())):
        break
    return time.perf_counter() - t0


async def _decode_ms(engine, ctxs: list[Context], new_tokens: int) -> float:  # type: ignore[no-untyped-def]
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, stop_token_ids=())

    async def run(ctx: Context) -> list[float]:
        return [d.step_seconds async for d in engine.generate(ctx, params) if d.finish_reason is None][1:]

    steps = await asyncio.gather(*(run(c) for c in ctxs))
    return 1000 * statistics.median(s for row in steps for s in row)


async def run_bench(args: argparse.Namespace) -> dict[str, object]:
    from stepaudio_rt.model.vllm_engine import VLLMEngine, VLLMOptions

    ckpt = write_dummy_checkpoint(Path(tempfile.mkdtemp(prefix="r1-dummy-")), tiny=args.tiny)
    if args.tiny:  # CPU: a fixed 1 GiB KV cache instead of 90% of the machine's RAM
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    options = VLLMOptions(
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        quantization=args.quantization,
        dtype="float32" if args.tiny else "bfloat16",
        enforce_eager=args.tiny,
        block_size=32 if args.tiny else None,
        extra={"load_format": "dummy"},
    )
    t0 = time.perf_counter()
    engine = VLLMEngine.from_pretrained(ckpt, options)
    start_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    result: dict[str, object] = {"engine_start_s": round(start_s, 1), "tiny": args.tiny, **vars(args)}
    try:
        warm = await _listened_turn(engine, 2, rng)
        await _first_token_s(engine, warm, END_OF_TURN + GENERATION_PREFIX)
        engine.release(warm)
        for seconds in (2, 20):
            times = []
            for _ in range(args.rounds):
                ctx = await _listened_turn(engine, seconds, rng)
                times.append(await _first_token_s(engine, ctx, END_OF_TURN + GENERATION_PREFIX))
                engine.release(ctx)
            result[f"end_of_turn_{seconds}s_ms"] = round(1000 * statistics.median(times), 1)
        result["end_of_turn_ratio_20s_over_2s"] = round(result["end_of_turn_20s_ms"] / result["end_of_turn_2s_ms"], 2)  # type: ignore[operator]
        speak_first = []
        for _ in range(args.rounds):
            ctx = await _listened_turn(engine, 10, rng)
            await engine.append_text(ctx, END_OF_TURN)
            await engine.flush(ctx)
            articulation = engine.fork(ctx)
            speak_first.append(await _first_token_s(engine, articulation, NO_THINK_PREFIX))
            engine.release(articulation)
            engine.release(ctx)
        result["speak_first_first_token_ms"] = round(1000 * statistics.median(speak_first), 1)
        for batch in (1, 8):
            ctxs = []
            for _ in range(batch):
                ctx = await _listened_turn(engine, 4, rng)
                await engine.append_text(ctx, END_OF_TURN + GENERATION_PREFIX)
                ctxs.append(ctx)
            result[f"decode_batch{batch}_ms_per_token"] = round(await _decode_ms(engine, ctxs, args.new_tokens), 2)
            for c in ctxs:
                engine.release(c)
        try:
            import torch

            result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        except Exception:  # the result matters more than the label
            result["device"] = "unknown"
    finally:
        await engine.aclose()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m stepaudio_rt.model.bench_vllm_gpu", description=__doc__)
    ap.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    ap.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    ap.add_argument("--max-model-len", type=int, default=16384)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    ap.add_argument("--quantization", default=None, help="e.g. fp8 (one 80 GB GPU)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: a smoke test of this script")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    out = args.out
    args.out = str(out) if out else None
    result = asyncio.run(run_bench(args))
    print(json.dumps(result, indent=2))
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
