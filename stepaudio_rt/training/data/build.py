"""Build the synthetic spoken-task dataset to disk, and load it back.

On-disk format, per split (``train``, ``eval``) in ``out_dir``:
- ``{split}.flac``: all clips concatenated, 16-bit at 16 kHz. Lossless FLAC is ~45% of raw int16 (the
  silent padding and tones compress well), i.e. ~0.6 GB instead of ~2.4 GB (float32) for 20k samples.
- ``{split}.jsonl``: one JSON object per sample (task, user_text, think, answer, label, meta, and
  ``audio_start``/``audio_len`` in samples into the FLAC, or ``audio_len`` -1 for text-only samples).
- ``manifest.json``: seed, sizes, task weights, counts and build time.

Determinism: sample i of a split is generated from its own RNG seeded by (seed, split, i), and the pool
returns results in order, so the output is identical for any number of workers.

Run: ``python -m stepaudio_rt.training.data.build --n-train 20000 --n-eval 1000 --out data/synth``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from stepaudio_rt.training.data.catalog import TASK_NAMES, generate
from stepaudio_rt.training.data.signals import SAMPLE_RATE
from stepaudio_rt.training.data.tasks import SPLITS, TEXT_ONLY_TASKS, Sample, Split

FORMAT_VERSION = 3  # 3: low-pitched female voices in voice_pitch and speaker_compare (tasks.LOW_FEMALE_SHARE)
# Every sample is stored with its full reasoning (the audio CoT grounded in measured values); which
# training examples keep it and which get the empty think block is decided when the SFT examples are made
# (``training.targets.EMPTY_THINK_SHARE``), so one synthesised clip can serve both forms.

# Mixture weights. Arithmetic and perception carry the evaluation targets, so they get most of the data;
# text tasks keep the decoder's text skills alive (the paper's cold-start mix).
TASK_WEIGHTS: dict[str, float] = {
    "spoken_arithmetic": 0.18,
    "spoken_multistep": 0.08,
    "beep_count": 0.065,
    "beep_bursts": 0.06,
    "tone_compare": 0.07,  # the slowest perception task to learn (it compares two moments of the clip)
    "highest_tone": 0.04,
    "voice_pitch": 0.07,
    "speech_rate": 0.035,
    "rate_change": 0.05,
    "speaker_compare": 0.06,
    "pause_length": 0.06,
    "loudness": 0.035,
    "noise": 0.035,
    "transcription": 0.04,  # SFT adds every other speech clip once more as a transcription example
    "self_cognition": 0.04,
    "text_arithmetic": 0.05,
    "text_chat": 0.03,
}
assert set(TASK_WEIGHTS) == set(TASK_NAMES), "every task needs a weight"


@dataclass(frozen=True)
class DatasetPaths:
    root: Path
    train: Path  # train.jsonl (its audio is train.flac beside it)
    eval: Path
    manifest: Path


def task_schedule(n: int, seed: int, split: Split, weights: dict[str, float] | None = None) -> list[str]:
    """Which task each of the ``n`` samples gets: counts proportional to the weights (largest remainder,
    at least one of each task when ``n`` allows), in a seeded random order."""
    weights = weights or TASK_WEIGHTS
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = set(weights) - set(TASK_NAMES)
    if unknown:
        raise ValueError(f"unknown tasks in weights: {sorted(unknown)}")
    names = [t for t in TASK_NAMES if weights.get(t, 0) > 0]
    w = np.array([weights[t] for t in names], dtype=np.float64)
    if len(names) == 0 or np.any(w < 0):
        raise ValueError("weights must be non-negative with at least one positive")
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    if n >= len(names):
        counts = np.maximum(counts, 1)
    while counts.sum() > n:  # the minimum of one per task overshot: take from the largest
        counts[int(np.argmax(counts))] -= 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    i = 0
    while counts.sum() < n:
        counts[order[i % len(names)]] += 1
        i += 1
    tasks = [t for t, c in zip(names, counts, strict=True) for _ in range(c)]
    rng = np.random.default_rng([seed, SPLITS.index(split), 0xC0FFEE])
    return [tasks[j] for j in rng.permutation(len(tasks))]


def make_sample(task: str, seed: int, split: Split, index: int) -> Sample:
    """Sample ``index`` of ``split``: a pure function of its arguments."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    rng.random()  # the draw that chose the reasoning in format 1: kept, so the clips stay the same
    return generate(task, rng, split, task not in TEXT_ONLY_TASKS)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def _work(args: tuple[str, int, Split, int]) -> tuple[np.ndarray | None, dict[str, Any]]:
    s = make_sample(*args)
    record = {
        "task": s.task,
        "user_text": s.user_text,
        "think": s.think,
        "answer": s.answer,
        "label": s.label,
        "meta": s.meta,
    }
    return (None if s.audio is None else _to_int16(s.audio)), record


def _worker_init() -> None:
    # One BLAS/ORT thread per worker: the pool already uses one process per core.
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _build_split(
    split: Split, n: int, seed: int, out_dir: Path, pool: Any, weights: dict[str, float] | None = None
) -> Counter[str]:
    jobs = [(t, seed, split, i) for i, t in enumerate(task_schedule(n, seed, split, weights))]
    results = pool.imap(_work, jobs, chunksize=8) if pool is not None else map(_work, jobs)
    counts: Counter[str] = Counter()
    pos = 0
    with (
        (out_dir / f"{split}.jsonl").open("w") as f,
        sf.SoundFile(
            out_dir / f"{split}.flac", "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16"
        ) as audio_f,
    ):
        for audio, rec in tqdm(results, total=n, desc=f"synth {split}", unit="sample"):
            if audio is None:
                rec["audio_start"], rec["audio_len"] = pos, -1
            else:
                audio_f.write(audio)
                rec["audio_start"], rec["audio_len"] = pos, len(audio)
                pos += len(audio)
            counts[rec["task"]] += 1
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
    return counts


def check_tasks(tasks: Sequence[str]) -> None:
    """ValueError naming every task that is not in the mixture (or if none is given)."""
    unknown = sorted(set(tasks) - set(TASK_WEIGHTS))
    if unknown or not tasks:
        raise ValueError(f"unknown tasks {unknown}; choose from {', '.join(TASK_WEIGHTS)}")


def build_dataset(
    n_train: int,
    n_eval: int,
    out_dir: Path,
    seed: int = 0,
    workers: int = 2,
    tasks: Sequence[str] | None = None,
    weights: dict[str, float] | None = None,
) -> DatasetPaths:
    """Synthesize ``n_train`` training and ``n_eval`` held-out samples into ``out_dir``; ``tasks`` keeps
    only those tasks of the mixture (at their relative weights), e.g. to measure a few tasks on more
    samples than the full mixture gives them; ``weights`` replaces the mixture's (``TASK_WEIGHTS``)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    weights = dict(weights) if weights is not None else TASK_WEIGHTS
    if tasks is not None:
        check_tasks(tasks)
        weights = {t: weights[t] for t in tasks if t in weights}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    counts: dict[str, dict[str, int]] = {}
    # spawn, not fork: the caller (the training CLI) may have torch threads running, and forking a
    # threaded process can deadlock.
    pool_cm = None if workers == 1 else mp.get_context("spawn").Pool(workers, initializer=_worker_init)
    try:
        for split, n in (("train", n_train), ("eval", n_eval)):
            counts[split] = dict(_build_split(split, n, seed, out_dir, pool_cm, weights))  # type: ignore[arg-type]
    finally:
        if pool_cm is not None:
            pool_cm.close()
            pool_cm.join()
    manifest = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_eval": n_eval,
        "sample_rate": SAMPLE_RATE,
        "task_weights": weights,
        "counts": counts,
        "build_seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return DatasetPaths(out_dir, out_dir / "train.jsonl", out_dir / "eval.jsonl", out_dir / "manifest.json")


def iter_split(path: Path) -> Iterator[Sample]:
    """Samples of one split, given its ``.jsonl`` path (the ``.flac`` beside it holds the audio)."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ValueError(f"expected a .jsonl split file, got {path}")
    flac_path = path.with_suffix(".flac")
    if not path.is_file() or not flac_path.is_file():
        raise FileNotFoundError(f"split files missing: need {path} and {flac_path}")
    with path.open() as f:
        records = [json.loads(line) for line in f]
    needed = max((r["audio_start"] + r["audio_len"] for r in records if r["audio_len"] >= 0), default=0)
    audio = np.zeros(0, np.int16)
    if needed > 0:  # a split of text-only samples has an empty FLAC, which libsndfile cannot open
        audio, sr = sf.read(flac_path, dtype="int16", always_2d=False)
        if sr != SAMPLE_RATE:
            raise ValueError(f"{flac_path} is at {sr} Hz, expected {SAMPLE_RATE}")
        if needed > len(audio):
            raise ValueError(f"{path}: records point past the end of {flac_path}")
    for rec in records:
        start, length = rec["audio_start"], rec["audio_len"]
        clip = None if length < 0 else audio[start : start + length].astype(np.float32) / 32768.0
        yield Sample(
            rec["task"], clip, rec["user_text"], rec["think"], rec["answer"], rec["label"], rec["meta"]
        )


def load_split(path: Path) -> list[Sample]:
    return list(iter_split(path))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-train", type=int, default=20000)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    paths = build_dataset(a.n_train, a.n_eval, a.out, seed=a.seed, workers=a.workers)
    print(json.loads(paths.manifest.read_text()))


if __name__ == "__main__":
    main()
