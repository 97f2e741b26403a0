"""Benchmark: server CPU cost per 20 ms input frame (parse JSON event, base64 + PCM decode, resample
24 kHz -> 16 kHz, VAD). Target: under 0.2 ms.

    python -m stepaudio_rt.server.bench_frame_cost [--frames 3000]
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
from stepaudio_rt.streaming.vad import VadConfig


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


def run(n: int) -> dict[str, float]:
    events = frames(n)
    audio = InputAudio(PCM16, VadConfig(), max_seconds=600)
    stages = {"parse": 0.0, "decode": 0.0, "resample_vad": 0.0}
    vad_events = 0
    for raw in events:
        t0 = time.perf_counter()
        ev = p.parse_client_event(raw)
        t1 = time.perf_counter()
        assert isinstance(ev, p.InputAudioBufferAppendEvent)
        pcm = decode_audio_bytes(ev.audio_bytes, audio.fmt)
        t2 = time.perf_counter()
        for step in audio.push(pcm):
            vad_events += len(step.events)
        if audio.num_samples > 32000:
            audio.drop_before(audio.end - 8000)
        t3 = time.perf_counter()
        stages["parse"] += t1 - t0
        stages["decode"] += t2 - t1
        stages["resample_vad"] += t3 - t2
    per = {k: 1000 * v / n for k, v in stages.items()}
    per["total"] = sum(per.values())
    per["vad_events"] = vad_events
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=3000)
    args = ap.parse_args()
    run(200)  # warm up
    res = run(args.frames)
    print(f"frames: {args.frames} x 20 ms (PCM16 24 kHz, server VAD on)")
    for k in ("parse", "decode", "resample_vad", "total"):
        print(f"  {k:>13}: {res[k]:.4f} ms/frame")
    print(f"  vad events: {int(res['vad_events'])}")


if __name__ == "__main__":
    main()
