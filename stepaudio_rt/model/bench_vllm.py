"""``stepaudio-rt bench engine --engine vllm``: VLLMEngine against the TorchEngine on one checkpoint, in one
run, through the engine contract (what the realtime server sees).

Both engines load the same checkpoint (default: the bundled demo) in the same process and take turns,
round by round (A, B, A, B, ...), so machine noise hits both alike; we report medians and the ratio
vLLM / torch for each figure:

* prefill tokens/s of a text prompt (a fresh random prompt every round, so vLLM's prefix cache never
  helps it);
* decode ms/token at batch 1 and the decode step at batch 8 (eight contexts generating together);
* end of a listened turn: time to the first token after ``<|EOT|><|BOT|>assistant\\n<think>\\n`` when the
  turn's audio (2 s, and 20 s, in 2 s chunks) was appended while listening; flat in utterance length is
  the point of listen-while-thinking (the issue's target: 20 s within 1.3x of 2 s).

Needs vLLM installed (``make install-vllm`` builds ``.venv-vllm`` with the CPU build).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from stepaudio_rt.model.engine import Context, Engine, SamplingParams
from stepaudio_rt.model.prompt import END_OF_TURN, GENERATION_PREFIX, USER_PREFIX, system_block


@dataclass
class VLLMBenchResult:
    checkpoint: str
    prompt_tokens: int
    new_tokens: int
    rounds: int
    threads: int
    torch_prefill_tok_s: float
    vllm_prefill_tok_s: float
    torch_decode_ms: float
    vllm_decode_ms: float
    torch_batch8_step_ms: float
    vllm_batch8_step_ms: float
    torch_end_of_turn_ms: float  # 20 s listened turn
    vllm_end_of_turn_ms: float
    torch_end_of_turn_2s_ms: float
    vllm_end_of_turn_2s_ms: float

    def ratios(self) -> dict[str, float]:
        """vLLM / torch per figure (> 1 means vLLM is faster for tokens/s, slower for times)."""
        return {
            "prefill_tok_s": round(self.vllm_prefill_tok_s / self.torch_prefill_tok_s, 2),
            "decode_ms": round(self.vllm_decode_ms / self.torch_decode_ms, 2),
            "batch8_step_ms": round(self.vllm_batch8_step_ms / self.torch_batch8_step_ms, 2),
            "end_of_turn_ms": round(self.vllm_end_of_turn_ms / self.torch_end_of_turn_ms, 2),
        }

    def flatness(self) -> dict[str, float]:
        """End of turn after 20 s over after 2 s of listened audio, per engine (1.0 = flat)."""
        return {
            "torch": round(self.torch_end_of_turn_ms / self.torch_end_of_turn_2s_ms, 2),
            "vllm": round(self.vllm_end_of_turn_ms / self.vllm_end_of_turn_2s_ms, 2),
        }

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratios_vllm_over_torch": self.ratios(), "end_of_turn_20s_over_2s": self.flatness()}


def _random_prompt(engine: Engine, n: int, rng: np.random.Generator) -> list[int]:
    specials = {*engine.tokenizer.stop_token_ids, *vars(engine.tokenizer.ids).values()}
    vocab = [i for i in range(len(engine.tokenizer)) if i not in specials]
    return [int(t) for t in rng.choice(vocab, size=n)]


async def _prefill_s(engine: Engine, prompt: list[int]) -> float:
    ctx = engine.new_context()
    t0 = time.perf_counter()
    await engine.append_tokens(ctx, prompt)
    await engine.flush(ctx)
    elapsed = time.perf_counter() - t0
    engine.release(ctx)
    return elapsed


async def _decode_step_s(engine: Engine, prompts: list[list[int]], new_tokens: int) -> float:
    """Median decode step (seconds) over ``len(prompts)`` contexts generating together."""
    ctxs: list[Context] = []
    for p in prompts:
        ctx = engine.new_context()
        await engine.append_tokens(ctx, p)
        await engine.flush(ctx)
        ctxs.append(ctx)
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, stop_token_ids=())

    async def run(ctx: Context) -> list[float]:
        return [d.step_seconds async for d in engine.generate(ctx, params) if d.finish_reason is None][1:]

    steps = await asyncio.gather(*(run(c) for c in ctxs))
    for c in ctxs:
        engine.release(c)
    return statistics.median(s for row in steps for s in row)


async def _end_of_turn_s(engine: Engine, rng: np.random.Generator, seconds: int = 10) -> float:
    ctx = engine.new_context()
    await engine.append_text(ctx, system_block(f"bench {rng.integers(1 << 30)}") + USER_PREFIX)
    for _ in range(seconds // 2):
        await engine.append_audio(ctx, (0.1 * rng.standard_normal(32000)).astype(np.float32))
    t0 = time.perf_counter()
    await engine.append_text(ctx, END_OF_TURN + GENERATION_PREFIX)
    async for _ in engine.generate(ctx, SamplingParams(temperature=0.0, max_tokens=1, stop_token_ids=())):
        break
    elapsed = time.perf_counter() - t0
    engine.release(ctx)
    return elapsed


async def bench_vllm_engine(
    checkpoint: str | Path, prompt_tokens: int = 256, new_tokens: int = 64, rounds: int = 3, block_size: int = 32
) -> VLLMBenchResult:
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.model.vllm_engine import VLLMEngine, VLLMOptions

    # vLLM's CPU backend otherwise reserves --gpu-memory-utilization (0.9) of the machine's RAM and refuses
    # to start when other processes hold more than a tenth; 1 GiB of KV is plenty here (read on CPU only).
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    max_len = max(2048, prompt_tokens + new_tokens + 64)
    torch_engine = TorchEngine.from_pretrained(checkpoint, max_contexts=10, max_context_tokens=max_len, progress=False)
    vllm_engine = VLLMEngine.from_pretrained(
        checkpoint, VLLMOptions(dtype="float32", max_model_len=max_len, enforce_eager=True, block_size=block_size)
    )
    engines: dict[str, Engine] = {"torch": torch_engine, "vllm": vllm_engine}
    rng = np.random.default_rng(0)
    figures: dict[str, dict[str, list[float]]] = {k: {"prefill": [], "decode": [], "b8": [], "eot": [], "eot2": []} for k in engines}
    try:
        for engine in engines.values():  # warm-up: first calls allocate and load lazily
            await _decode_step_s(engine, [_random_prompt(engine, 32, rng)], 4)
            await _end_of_turn_s(engine, rng, seconds=2)
        for _ in range(rounds):
            for name, engine in engines.items():
                f = figures[name]
                f["prefill"].append(await _prefill_s(engine, _random_prompt(engine, prompt_tokens, rng)))
                f["decode"].append(await _decode_step_s(engine, [_random_prompt(engine, prompt_tokens, rng)], new_tokens))
                prompts = [_random_prompt(engine, prompt_tokens, rng) for _ in range(8)]
                f["b8"].append(await _decode_step_s(engine, prompts, new_tokens))
                f["eot"].append(await _end_of_turn_s(engine, rng, seconds=20))
                f["eot2"].append(await _end_of_turn_s(engine, rng, seconds=2))
    finally:
        for engine in engines.values():
            await engine.aclose()
    med = {name: {k: statistics.median(v) for k, v in f.items()} for name, f in figures.items()}
    return VLLMBenchResult(
        checkpoint=str(checkpoint),
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        rounds=rounds,
        threads=torch.get_num_threads(),
        torch_prefill_tok_s=round(prompt_tokens / med["torch"]["prefill"], 1),
        vllm_prefill_tok_s=round(prompt_tokens / med["vllm"]["prefill"], 1),
        torch_decode_ms=round(1000 * med["torch"]["decode"], 3),
        vllm_decode_ms=round(1000 * med["vllm"]["decode"], 3),
        torch_batch8_step_ms=round(1000 * med["torch"]["b8"], 3),
        vllm_batch8_step_ms=round(1000 * med["vllm"]["b8"], 3),
        torch_end_of_turn_ms=round(1000 * med["torch"]["eot"], 2),
        vllm_end_of_turn_ms=round(1000 * med["vllm"]["eot"], 2),
        torch_end_of_turn_2s_ms=round(1000 * med["torch"]["eot2"], 2),
        vllm_end_of_turn_2s_ms=round(1000 * med["vllm"]["eot2"], 2),
    )
