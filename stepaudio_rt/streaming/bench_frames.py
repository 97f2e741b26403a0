"""Server CPU cost of one 20 ms input frame: the work done for every ``input_audio_buffer.append``.

Per frame: JSON parse of the event, base64 + PCM16 decode, 24 kHz -> 16 kHz resampling and the VAD feed.
The input alternates one second of a voice-like signal (harmonics with syllable-rate amplitude modulation)
and one second of faint noise, so both VAD paths (energy gate and webrtcvad) are exercised.

Run: ``python -m stepaudio_rt.streaming.bench_frames [--frames 2000]``; prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .codecs import PCM16, b64encode, decode_audio, encode_audio
from .resample import StreamResampler
from .vad import TurnDetector, VadConfig

__all__ = ["bench_input_frames"]

_FRAME_SAMPLES_24K = 480  # 20 ms at 24 kHz
_WARMUP_FRAMES = 50


def _test_signal(n_samples: int, rate: int = 24000, seed: int = 0) -> np.ndarray:
    t = np.arange(n_samples) / rate
    f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t)) ** 2
    talking = (t % 2.0) < 1.0
    noise = np.random.default_rng(seed).standard_normal(n_samples) * 0.002
    audio = np.where(talking, 0.15 * voice * syllables, 0.0) + noise
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


def _events(n_frames: int) -> list[str]:
    audio = _test_signal((n_frames + _WARMUP_FRAMES) * _FRAME_SAMPLES_24K)
    frames = audio.reshape(-1, _FRAME_SAMPLES_24K)
    return [
        json.dumps(
            {
                "type": "input_audio_buffer.append",
                "event_id": f"evt_{i}",
                "audio": b64encode(encode_audio(f, PCM16)),
            }
        )
        for i, f in enumerate(frames)
    ]


def _stats(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1000.0
    return {
        "mean_us": round(float(us.mean()), 2),
        "p50_us": round(float(np.percentile(us, 50)), 2),
        "p99_us": round(float(np.percentile(us, 99)), 2),
    }


def bench_input_frames(n_frames: int = 2000) -> dict[str, object]:
    """Time the per-frame input path ``n_frames`` times (after a short warm-up); microseconds per frame."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    events = _events(n_frames)
    resampler = StreamResampler(24000, 16000)
    detector = TurnDetector(VadConfig())
    stages = np.zeros((len(events), 4), dtype=np.int64)  # parse, decode, resample, vad
    n_turns = 0
    clock = time.perf_counter_ns
    for i, text in enumerate(events):
        t0 = clock()
        event = json.loads(text)
        t1 = clock()
        pcm = decode_audio(event["audio"], PCM16)
        t2 = clock()
        audio_16k = resampler.process(pcm)
        t3 = clock()
        vad_events = detector.feed(audio_16k)
        t4 = clock()
        stages[i] = (t1 - t0, t2 - t1, t3 - t2, t4 - t3)
        n_turns += sum(type(e).__name__ == "SpeechStarted" for e in vad_events)
    measured = stages[_WARMUP_FRAMES:]
    total = measured.sum(axis=1)
    report: dict[str, object] = {
        "frames": int(n_frames),
        "frame_ms": 20,
        "total": _stats(total),
        "budget_fraction_of_realtime": round(float(total.mean()) / 20e6, 6),
        "stages_mean_us": {
            name: round(float(measured[:, k].mean()) / 1000.0, 2)
            for k, name in enumerate(("json_parse", "b64_pcm_decode", "resample_24k_16k", "vad_feed"))
        },
        "speech_turns_detected": n_turns,
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000, help="20 ms frames to time")
    args = parser.parse_args()
    print(json.dumps(bench_input_frames(args.frames), indent=2))


if __name__ == "__main__":
    main()
