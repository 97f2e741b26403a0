"""Data self-check: do the perception labels agree with measurements on the stored waveform?

If a label cannot be recovered from the audio by a simple measurement, the task is unlearnable for the
model too, so these "oracle" accuracies must be ~100%. Where possible the check uses an estimator that
differs from the one used while generating (pYIN instead of YIN for pitch), and it measures the int16
audio as stored on disk, not the float signal the generator saw.

Run: ``python -m stepaudio_rt.training.data.selfcheck --n-per-task 100`` (or ``--split-file x.jsonl``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stepaudio_rt.training.data import acoustics as ac
from stepaudio_rt.training.data.build import _to_int16, iter_split, make_sample
from stepaudio_rt.training.data.tasks import DECISION, SPLITS, Sample


def _pitch(s: Sample) -> tuple[str, float]:
    f0 = ac.median_f0_pyin_hz(s.audio)  # type: ignore[arg-type]
    return ("high" if f0 > DECISION["pitch_hz"] else "low"), f0


def _rate(s: Sample) -> tuple[str, float]:
    r = ac.speech_rate_sps(s.audio, s.meta["text"])  # type: ignore[arg-type]
    return ("fast" if r > DECISION["rate_sps"] else "slow"), r


def _loud(s: Sample) -> tuple[str, float]:
    db = ac.rms_dbfs(s.audio)  # type: ignore[arg-type]
    return ("loud" if db > DECISION["loud_dbfs"] else "quiet"), db


def _noise(s: Sample) -> tuple[str, float]:
    snr = ac.snr_db(s.audio)  # type: ignore[arg-type]
    return ("noisy" if snr < DECISION["snr_db"] else "clean"), snr


def _beeps(s: Sample) -> tuple[str, float]:
    n = ac.count_beeps(s.audio)  # type: ignore[arg-type]
    return str(n), float(n)


def _tones(s: Sample) -> tuple[str, float]:
    f = ac.segment_frequencies_hz(s.audio)  # type: ignore[arg-type]
    if len(f) != 2:
        return "?", float("nan")
    return ("second" if f[1] > f[0] else "first"), f[1] / f[0]


ORACLES: dict[str, Callable[[Sample], tuple[str, float]]] = {
    "voice_pitch": _pitch,
    "speech_rate": _rate,
    "loudness": _loud,
    "noise": _noise,
    "beep_count": _beeps,
    "tone_compare": _tones,
}


@dataclass
class OracleResult:
    task: str
    n: int = 0
    agree: int = 0
    first_try: int = 0
    # measured value range per label, e.g. {"high": (188.0, 340.0), "low": (62.0, 141.0)}
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.agree / self.n if self.n else float("nan")


def oracle_check(samples: Iterable[Sample]) -> dict[str, OracleResult]:
    """Re-measure every perception sample and compare the measurement's decision with its label."""
    out: dict[str, OracleResult] = {}
    for s in samples:
        oracle = ORACLES.get(s.task)
        if oracle is None or s.audio is None:
            continue
        r = out.setdefault(s.task, OracleResult(s.task))
        pred, value = oracle(s)
        r.n += 1
        r.agree += pred == s.label
        r.first_try += s.meta.get("attempts", 1) == 1
        lo, hi = r.ranges.get(s.label, (value, value))
        r.ranges[s.label] = (min(lo, value), max(hi, value))
    return out


def generated_samples(n_per_task: int, seed: int = 0) -> Iterable[Sample]:
    """Fresh perception samples, train and eval voices alternating, quantized to int16 like on disk."""
    for task in ORACLES:
        for i in range(n_per_task):
            s = make_sample(task, seed, SPLITS[i % 2], 10_000_000 + i)
            assert s.audio is not None
            s.audio = _to_int16(s.audio).astype(np.float32) / 32768.0
            yield s


def format_report(results: dict[str, OracleResult]) -> str:
    lines = [f"{'task':<14}{'n':>6}{'oracle acc':>12}{'first try':>11}  measured range per label"]
    for r in results.values():
        ranges = "; ".join(f"{k}: {lo:.1f}..{hi:.1f}" for k, (lo, hi) in sorted(r.ranges.items()))
        lines.append(f"{r.task:<14}{r.n:>6}{r.accuracy:>12.3f}{r.first_try / max(r.n, 1):>11.3f}  {ranges}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Check perception labels against measurements on the audio.")
    ap.add_argument("--n-per-task", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-file", type=Path, help="check a built split (.jsonl) instead of fresh samples")
    a = ap.parse_args(argv)
    samples = iter_split(a.split_file) if a.split_file else generated_samples(a.n_per_task, a.seed)
    print(format_report(oracle_check(samples)))


if __name__ == "__main__":
    main()
