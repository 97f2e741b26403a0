"""``stepaudio-rt bench mps``: what think-while-speaking buys, measured side by side in one run.

1. **First audio after end of turn vs reasoning length**, per thinking mode. A checkpoint with the
   served model's shapes and tokenizer but a head that can never close the think block
   (:func:`~stepaudio_rt.model.testing.make_reasoning_endless`) makes the reasoning exactly as long as the
   think budget: 0, 64, 256, 1024 tokens. Expected: sequential grows linearly, think_first stays at one
   reasoning segment, speak_first at the TTS buffer. Rounds are interleaved (every cell once per repeat)
   so machine noise hits all cells alike; the median is reported.
2. **Decode tokens/s per stream with one vs two streams active** (the formulation and articulation
   streams share each batched step).
3. **Round overhead**: fork (prefix KV copy) + re-prefill of the reasoning and reply so far, per round,
   against one decode step, from one complete speak_first response.

    stepaudio-rt bench mps [--out docs/bench/mps_demo_cpu.json]          # demo shapes, Piper, CPU
    python -m stepaudio_rt.streaming.bench_mps --full-shapes --device cuda --tts none --out mps_gpu.json

With ``--tts none`` the first reply text delta stands in for first audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from stepaudio_rt.model.engine import Context, Engine, SamplingParams
from stepaudio_rt.model.mind_paced import THINKING_MODES, MindPacedConfig
from stepaudio_rt.model.prompt import GENERATION_PREFIX, USER_PREFIX
from stepaudio_rt.streaming.conversation import TextPart, Turn
from stepaudio_rt.streaming.pipeline import AudioDelta, ResponseFinished, ResponseOptions, TextDelta
from stepaudio_rt.streaming.scheduler import Scheduler
from stepaudio_rt.streaming.tts import TTSBackend

REASONING_LENGTHS = (0, 64, 256, 1024)
QUESTION = "What is forty six plus thirty seven?"


def _options(mode: str, reasoning: int, audio: bool, reply_tokens: int, cfg: dict[str, int]) -> ResponseOptions:
    mind_paced = None
    if mode != "sequential":
        mind_paced = MindPacedConfig(mode, cfg["reasoning_segment_tokens"], cfg["reply_segment_tokens"])  # type: ignore[arg-type]
    return ResponseOptions(
        audio=audio,
        max_output_tokens=reasoning + 4 + reply_tokens,  # + the think-close tokens
        think_budget=reasoning,
        temperature=1.0,  # random weights: sampled text has words for the TTS; greedy repeats one token
        seed=7,
        mind_paced=mind_paced,
    )


async def _asked(engine: Engine, tts: TTSBackend | None) -> Scheduler:
    """A session whose conversation holds the question, prefilled: the end of a user turn."""
    sched = Scheduler(engine, tts, instructions="You are a helpful voice assistant.")
    sched.conversation.insert(Turn("u0", "user", [TextPart(QUESTION)]))
    await sched.conversation.sync()
    return sched


async def _question_context(engine: Engine) -> Context:
    """A bare context: the question and the generation prefix (for decode-speed measurements)."""
    ctx = engine.new_context()
    await engine.append_text(ctx, USER_PREFIX + QUESTION + GENERATION_PREFIX)
    return ctx


async def first_audio(
    engine: Engine, tts: TTSBackend | None, options: ResponseOptions, settle_s: float = 1.0
) -> float:
    """Seconds from end of turn (the response is requested) to the first audio delta (without TTS: the
    first reply text delta); the response is cancelled then."""
    sched = await _asked(engine, tts)
    run = sched.response(options)
    t0 = time.perf_counter()
    first: float | None = None
    async for ev in run.events():
        if first is None and isinstance(ev, AudioDelta | TextDelta):
            first = time.perf_counter() - t0
            run.cancel()
        if isinstance(ev, ResponseFinished):
            break
    await sched.aclose()
    if first is None:
        raise RuntimeError(f"no reply within the token budget ({options})")
    # The cancelled turn's TTS thread finishes the phrase it is synthesising; let it, so it does not run
    # into the next measurement (2 cores).
    await asyncio.sleep(settle_s)
    return first


async def stream_throughput(engine: Engine, tokens: int = 128) -> dict[str, float]:
    """Decode tokens/s of one stream alone, and per stream with two streams decoding together."""
    ctx = await _question_context(engine)
    await engine.flush(ctx)
    # Greedy, as the demo checkpoint is served (its generation_config says do_sample: false); sampling
    # adds the same per-token cost to either side.
    params = SamplingParams(temperature=0.0, max_tokens=tokens, stop_token_ids=(), think_budget=None)

    async def run(n_streams: int) -> float:
        forks = [engine.fork(ctx) for _ in range(n_streams)]
        t0 = time.perf_counter()

        async def one(c: Any) -> int:
            return sum([1 async for d in engine.generate(c, params) if d.finish_reason is None])

        counts = await asyncio.gather(*(one(c) for c in forks))
        elapsed = time.perf_counter() - t0
        for c in forks:
            engine.release(c)
        return counts[0] / elapsed

    alone, together = [], []
    for _ in range(3):  # interleaved
        alone.append(await run(1))
        together.append(await run(2))
    engine.release(ctx)
    a, t = statistics.median(alone), statistics.median(together)
    return {"one_stream_tok_s": round(a, 1), "per_stream_two_active_tok_s": round(t, 1),
            "second_stream_cost": round(1.0 - t / a, 3)}


async def round_overhead(engine: Engine, tts: TTSBackend | None, cfg: dict[str, int], reasoning: int = 256) -> dict:
    """One complete speak_first response: its rounds' fork + re-prefill cost against a decode step."""
    sched = await _asked(engine, tts)
    opts = _options("speak_first", reasoning, tts is not None, 3 * cfg["reply_segment_tokens"], cfg)
    run = sched.response(opts)
    fin = None
    async for ev in run.events():
        if isinstance(ev, ResponseFinished):
            fin = ev
    await sched.aclose()
    assert fin is not None
    rounds = fin.timings.rounds
    step = await _decode_step_seconds(engine)
    overhead = [r.fork_s + r.prefill_s for r in rounds]
    return {
        "rounds": len(rounds),
        "decode_step_ms": round(1000 * step, 3),
        "round_fork_ms_median": round(1000 * statistics.median(r.fork_s for r in rounds), 3),
        "round_prefill_ms_median": round(1000 * statistics.median(r.prefill_s for r in rounds), 3),
        "round_prompt_tokens": [r.prompt_tokens for r in rounds],
        "round_overhead_over_decode_step": [round(o / step, 2) for o in overhead],
        "fork_over_decode_step": round(statistics.median(r.fork_s for r in rounds) / step, 3),
    }


async def _decode_step_seconds(engine: Engine) -> float:
    ctx = await _question_context(engine)
    params = SamplingParams(temperature=1.0, seed=2, max_tokens=64, stop_token_ids=(), think_budget=None)
    steps = [d.step_seconds async for d in engine.generate(ctx, params) if d.finish_reason is None][2:]
    engine.release(ctx)
    return statistics.median(steps)


async def run_bench(
    engine: Engine,
    tts: TTSBackend | None,
    repeats: int = 3,
    lengths: tuple[int, ...] = REASONING_LENGTHS,
    reasoning_segment_tokens: int = 80,
    reply_segment_tokens: int = 24,
    progress: bool = True,
) -> dict[str, Any]:
    cfg = {"reasoning_segment_tokens": reasoning_segment_tokens, "reply_segment_tokens": reply_segment_tokens}
    cells = [(mode, n) for n in lengths for mode in THINKING_MODES]
    samples: dict[tuple[str, int], list[float]] = {c: [] for c in cells}
    settle = 1.0 if tts is not None else 0.0
    await first_audio(engine, tts, _options("sequential", 0, tts is not None, 48, cfg), settle)  # warm-up
    bar = tqdm(total=repeats * len(cells), desc="bench mps", unit="turn", disable=not progress)
    for _ in range(repeats):
        for mode, n in cells:
            opts = _options(mode, n, tts is not None, 48, cfg)
            samples[(mode, n)].append(await first_audio(engine, tts, opts, settle))
            bar.update(1)
    bar.close()
    first_ms = {
        mode: {str(n): round(1000 * statistics.median(samples[(mode, n)]), 1) for n in lengths}
        for mode in THINKING_MODES
    }
    longest, zero = str(max(lengths)), str(min(lengths))
    return {
        "first_audio_ms": first_ms,
        "first_audio_is": "first audio delta" if tts is not None else "first reply text (no TTS)",
        "speak_first_longest_over_zero": round(first_ms["speak_first"][longest] / first_ms["speak_first"][zero], 3),
        "think_first_longest_over_zero": round(first_ms["think_first"][longest] / first_ms["think_first"][zero], 3),
        "sequential_longest_over_zero": round(first_ms["sequential"][longest] / first_ms["sequential"][zero], 3),
        "repeats": repeats,
        "segments": cfg,
        "streams": await stream_throughput(engine),
        "round_overhead": await round_overhead(engine, tts, cfg),
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, series in result["first_audio_ms"].items():
        xs = [int(k) for k in series]
        ax.plot(xs, list(series.values()), marker="o", label=mode)
    ax.set_xlabel("reasoning length (tokens, forced)")
    ax.set_ylabel(f"end of turn -> {result['first_audio_is']} (ms)")
    ax.set_title(f"think-while-speaking: first audio vs reasoning length\n{result.get('model', '')}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_random_engine(config: Any = None, device: str = "cuda", dtype: Any = None) -> Engine:
    """An engine over random weights at ``config``'s shapes (default: Step-Audio-R1's 33B, bf16) whose
    reasoning never ends by itself; the tokenizer is a small BPE (the shapes, not the text, matter)."""
    import torch

    from stepaudio_rt.model.bench_gpu import build_random_model
    from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG, StepAudio2Config
    from stepaudio_rt.model.testing import make_reasoning_endless, tiny_tokenizer
    from stepaudio_rt.model.torch_engine import TorchEngine

    config = config or StepAudio2Config.from_dict(STEP_AUDIO_R1_CONFIG)
    model = build_random_model(config, device, dtype or torch.bfloat16)
    tokenizer = tiny_tokenizer(512)
    make_reasoning_endless(model, tokenizer)
    return TorchEngine(model, tokenizer, max_contexts=8, max_context_tokens=2048)  # type: ignore[arg-type]


def _build_engine(args: argparse.Namespace, tmp: Path) -> tuple[Engine, str]:
    from stepaudio_rt.model.torch_engine import TorchEngine

    if args.full_shapes:
        return build_random_engine(device=args.device), "Step-Audio-R1 shapes (random bf16)"
    from stepaudio_rt.model.testing import build_endless_reasoning_checkpoint
    from stepaudio_rt.settings import DEMO_CHECKPOINT

    like = Path(args.like) if args.like else DEMO_CHECKPOINT
    ckpt = build_endless_reasoning_checkpoint(tmp / "endless", like)
    engine = TorchEngine.from_pretrained(ckpt, device=args.device, max_contexts=8, max_context_tokens=2048, progress=False)
    return engine, f"{like.name} shapes (random, endless reasoning)"


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    from stepaudio_rt.streaming.tts import create_tts

    tts = None if args.tts == "none" else create_tts(args.tts)
    if tts is not None:
        tts.warmup()
    with tempfile.TemporaryDirectory() as tmp:
        engine, name = _build_engine(args, Path(tmp))
        try:
            result = await run_bench(
                engine, tts, args.repeats, tuple(args.lengths), args.reasoning_segment_tokens, args.reply_segment_tokens
            )
        finally:
            await engine.aclose()
    import torch

    result.update(model=name, device=args.device, tts=args.tts, torch_threads=torch.get_num_threads())
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="stepaudio-rt bench mps", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--like", help="checkpoint whose shapes and tokenizer to use (default: the bundled demo)")
    ap.add_argument("--full-shapes", action="store_true", help="Step-Audio-R1's 33B shapes, random bf16 (GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tts", default="piper", help="TTS backend, or 'none' (first reply phrase stands in)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="+", default=list(REASONING_LENGTHS))
    ap.add_argument("--reasoning-segment-tokens", type=int, default=80)
    ap.add_argument("--reply-segment-tokens", type=int, default=24)
    ap.add_argument("--out", type=Path, help="write JSON here (and a PNG beside it)")
    args = ap.parse_args(argv)
    result = asyncio.run(_main(args))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, args.out.with_suffix(".png"))
    return result


if __name__ == "__main__":
    main()
