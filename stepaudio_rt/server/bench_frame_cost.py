"""Benchmark: server CPU cost per 20 ms input frame (parse JSON event, base64 + PCM decode, resample
24 kHz -> 16 kHz, VAD). Target: under 0.2 ms.

    python -m stepaudio_rt.server.bench_frame_cost [--frames 3000] [--vad semantic_vad]

With ``--vad semantic_vad`` the per-frame path is the same plus the pause bookkeeping; the end-of-turn
model runs once per pause on a worker thread, off the frame path, so its cost is reported apart: per
score, and spread over the frames of this signal (one pause every 2 s, a busier rate than speech has).
"""

from __future__ import annotations

import argparse
import base64
import json
import time

import numpy as np

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.input_audio import InputAudio
from stepaudio_rt.streaming.codecs import PCM16, decode_audio_bytes
from stepaudio_rt.streaming.vad import PauseDetected, VadConfig


def frames(n: int, rate: int = 24000) -> list[str]:
    """``n`` append events of 20 ms: alternating 1 s of speech-like tone bursts and 1 s of silence."""
    t = np.arange(n * rate // 50) / rate
    sig = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) * ((t % 2) < 1)
    pcm = (sig * 32767).astype("<i2").tobytes()
    step = rate // 50 * 2
    return [
        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + step]).decode()})
        for i in range(0, len(pcm), step)
    ]


def run(n: int, vad: str = "server_vad") -> dict[str, float]:
    events = frames(n)
    audio = InputAudio(PCM16, VadConfig(type=vad), max_seconds=600)  # type: ignore[arg-type]
    pauses: list[float] = []  # seconds per end-of-turn score (semantic_vad)
    model = None
    if vad == "semantic_vad":
        from stepaudio_rt.streaming.smart_turn import WINDOW_SAMPLES, load_smart_turn

        model = load_smart_turn()
    stages = {"parse": 0.0, "decode": 0.0, "resample_vad": 0.0}
    vad_events = 0
    for raw in events:
        t0 = time.perf_counter()
        ev = p.parse_client_event(raw)
        t1 = time.perf_counter()
        assert isinstance(ev, p.InputAudioBufferAppendEvent)
        pcm = decode_audio_bytes(ev.audio_bytes, audio.fmt)
        t2 = time.perf_counter()
        scores = []
        for step in audio.push(pcm):
            vad_events += len(step.events)
            scores += [e for e in step.events if isinstance(e, PauseDetected)]
        if audio.num_samples > 10 * 16000:
            audio.drop_before(audio.end - 8 * 16000)
        t3 = time.perf_counter()
        for _ in scores:  # what the worker thread does at each pause (timed apart from the frame path)
            assert model is not None
            s0 = time.perf_counter()
            model.probability(audio.samples(audio.end - WINDOW_SAMPLES, audio.end))
            pauses.append(time.perf_counter() - s0)
        stages["parse"] += t1 - t0
        stages["decode"] += t2 - t1
        stages["resample_vad"] += t3 - t2
    per = {k: 1000 * v / n for k, v in stages.items()}
    per["total"] = sum(per.values())
    per["vad_events"] = vad_events
    per["scores"] = len(pauses)
    per["score_ms"] = 1000 * sum(pauses) / len(pauses) if pauses else 0.0
    per["score_ms_per_frame"] = 1000 * sum(pauses) / n
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--vad", choices=("server_vad", "semantic_vad"), default="server_vad")
    args = ap.parse_args()
    run(200, args.vad)  # warm up
    res = run(args.frames, args.vad)
    print(f"frames: {args.frames} x 20 ms (PCM16 24 kHz, {args.vad} on)")
    for k in ("parse", "decode", "resample_vad", "total"):
        print(f"  {k:>13}: {res[k]:.4f} ms/frame")
    print(f"  vad events: {int(res['vad_events'])}")
    if args.vad == "semantic_vad":
        print(f"  end-of-turn scores: {int(res['scores'])}, {res['score_ms']:.1f} ms each on a worker thread "
              f"({res['score_ms_per_frame']:.3f} ms/frame spread over this signal)")


if __name__ == "__main__":
    main()
