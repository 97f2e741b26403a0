"""Benchmark: end of turn -> first token, with listen-while-thinking vs encoding the whole utterance at
end of turn, for 2 s and 20 s utterances; plus the first-packet breakdown (finalize, prefill, reasoning,
first TTS chunk) with the Piper voice.

    python -m stepaudio_rt.server.bench_listen --model CKPT [--pace 0.25] [--repeats 3] [--tts piper]
    python -m stepaudio_rt.server.bench_listen --full-shapes --device cuda --tts none   # 33B on a GPU

Without ``--model`` a tiny random checkpoint is built in a temp dir (architecture-shaped, not the demo).
Speech arrives in 100 ms appends at ``pace`` x real time (1.0 = real time) so background prefill can keep
up as it would with a live talker.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from stepaudio_rt.model.engine import DEFAULT_LISTEN_CHUNK_SECONDS, Engine, checkpoint_listen_chunk_seconds
from stepaudio_rt.streaming.conversation import TextPart, Turn
from stepaudio_rt.streaming.scheduler import AudioDelta, ResponseFinished, ResponseOptions, Scheduler
from stepaudio_rt.streaming.tts import TTSBackend


def _speechlike(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.2 * np.sin(2 * np.pi * 160 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


async def one_turn(
    engine: Engine, seconds: float, listen: bool, pace: float, tts: TTSBackend | None, seed: int,
    chunk_seconds: float = DEFAULT_LISTEN_CHUNK_SECONDS,
) -> dict[str, float]:
    sched = Scheduler(engine, tts, instructions="You are a helpful assistant.",
                      listen_chunk_seconds=chunk_seconds if listen else 25.0)
    sched.conversation.insert(Turn("u0", "user", [TextPart("Hello.")]))
    sched.conversation.insert(Turn("a0", "assistant", [TextPart("Hi! How can I help?")]))
    await sched.conversation.sync()
    audio = _speechlike(seconds, seed)
    sched.start_listening("u1")
    piece = 1600  # 100 ms
    for i in range(0, len(audio), piece):
        if listen:
            sched.feed(audio[i : i + piece])
        await asyncio.sleep(0.1 * pace)
    if not listen:
        sched.feed(audio)  # nothing prefilled while speaking: the whole utterance is encoded now
    t_end = time.perf_counter()
    commit = await sched.commit_listening()
    t_commit = time.perf_counter()
    t_run = time.perf_counter()
    run = sched.response(ResponseOptions(audio=tts is not None, max_output_tokens=64, think_budget=8, seed=seed))
    first_token = first_audio = None
    fin = None
    async for ev in run.events():
        now = time.perf_counter()
        if first_token is None and not isinstance(ev, ResponseFinished):
            first_token = now - t_end
        if isinstance(ev, AudioDelta) and first_audio is None:
            first_audio = now - t_end
        if isinstance(ev, ResponseFinished):
            fin = ev
    assert fin is not None
    await sched.aclose()
    t = fin.timings
    if t.first_token_s is not None:  # the engine's first token, text or not (random weights emit no text)
        first_token = (t_run - t_end) + t.first_token_s
    return {
        "first_token": first_token if first_token is not None else float("nan"),
        "finalize": t_commit - t_end,
        "tail_s": commit.stats.tail_seconds,
        "prefill": t.prefill_s or float("nan"),
        "reasoning": t.reasoning_s if t.reasoning_s is not None else float("nan"),
        "tts_first_chunk": t.tts_first_chunk_s if t.tts_first_chunk_s is not None else float("nan"),
        "first_audio": first_audio if first_audio is not None else float("nan"),
        "think_tokens": t.think_tokens,
    }


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


async def main_async(args: argparse.Namespace) -> None:
    from stepaudio_rt.model.torch_engine import TorchEngine

    model = args.model
    if args.full_shapes:  # the real 33B shapes with random bf16 weights, built on the GPU (no checkpoint)
        from stepaudio_rt.model.bench_gpu import build_random_model
        from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG, StepAudio2Config
        from stepaudio_rt.model.testing import tiny_tokenizer

        config = StepAudio2Config.from_dict(STEP_AUDIO_R1_CONFIG)
        engine = TorchEngine(build_random_model(config, args.device), tiny_tokenizer(512), max_contexts=8,
                             max_context_tokens=4096)
        model = "random weights, full Step-Audio-R1 shapes"
    else:
        if model is None:
            from stepaudio_rt.model.testing import build_tiny_checkpoint

            model = build_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny")
        engine = TorchEngine.from_pretrained(model, device=args.device, max_contexts=8, max_context_tokens=4096)
    chunk = args.listen_chunk_seconds or checkpoint_listen_chunk_seconds(engine.generation_config)
    print(f"checkpoint: {model}  device: {args.device}  pace: {args.pace}x real time  repeats: {args.repeats}"
          f"  listen chunks: at most {chunk:g} s")
    results: dict[tuple[float, bool], list[float]] = {}
    for seconds in (2.0, 20.0):
        for listen in (True, False):
            runs = [await one_turn(engine, seconds, listen, args.pace, None, seed, chunk)
                    for seed in range(args.repeats)]
            results[(seconds, listen)] = [r["first_token"] for r in runs]
            label = "listen-while-thinking" if listen else "whole utterance at end"
            print(f"  {seconds:4.0f} s utterance, {label:>23}: end-of-turn -> first token {_ms(results[(seconds, listen)])}"
                  f"  (finalize {_ms([r['finalize'] for r in runs])}, tail {runs[0]['tail_s']:.1f} s)")
    ratio_l = statistics.median(results[(20.0, True)]) / statistics.median(results[(2.0, True)])
    ratio_w = statistics.median(results[(20.0, False)]) / statistics.median(results[(2.0, False)])
    print(f"  20 s / 2 s ratio: listen-while-thinking {ratio_l:.2f}x, whole utterance {ratio_w:.2f}x")
    if args.tts != "none":
        from stepaudio_rt.streaming.tts import create_tts

        tts = create_tts(args.tts)
        tts.warmup()
        runs = [await one_turn(engine, 2.0, True, args.pace, tts, seed, chunk) for seed in range(args.repeats)]
        print("first packet (end of turn -> first audio chunk), 2 s utterance, listen-while-thinking:")
        for key in ("finalize", "prefill", "reasoning", "tts_first_chunk", "first_audio"):
            print(f"  {key:>16}: {_ms([r[key] for r in runs])}")
        print(f"  think tokens: {runs[0]['think_tokens']}; endpointing adds the VAD silence window "
              "(silence_duration_ms, 500 ms by default) before end of turn")
    await engine.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pace", type=float, default=0.25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tts", default="piper")
    ap.add_argument("--listen-chunk-seconds", type=float, default=None,
                    help="longest listen chunk (default: the checkpoint's audio_chunk_seconds, else 2 s)")
    ap.add_argument("--full-shapes", action="store_true", help="33B random bf16 model on --device (a GPU)")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
