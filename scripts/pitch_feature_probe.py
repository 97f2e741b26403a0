"""Is voice pitch in the features at all? Linear probes on pooled audio features of the voice-pitch clips.

Trains a logistic regression (high / low) and a ridge regression (median F0 in Hz) on the training split's
cached frozen-encoder features (a demo work dir's ``features_train.npz``), then tests them on fresh
held-out questions (``eval`` voices, the ones ``scripts/pitch_probe.py`` asks). Done twice: on the encoder
output (what the adaptor receives) and on a checkpoint's adaptor output (what the decoder receives).
If the probes separate held-out voices well and the model still answers "high" every time, the failure is
in how the decoder is taught to read pitch (the target form), not in what it hears.

    python scripts/pitch_feature_probe.py runs/demo_v3 runs/demo_v3/cold_start_ckpt
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from stepaudio_rt.model.checkpoint import load_checkpoint
from stepaudio_rt.training.config import LISTEN_CHUNK_SECONDS
from stepaudio_rt.training.data.tasks import gen_voice_pitch
from stepaudio_rt.training.sft import FeatureStore, encode_chunks


def pooled(frames: list[np.ndarray]) -> np.ndarray:
    x = np.concatenate(frames).astype(np.float32)
    return np.concatenate([x.mean(0), x.std(0)])


@torch.inference_mode()
def adapted(model, frames: list[np.ndarray]) -> list[np.ndarray]:
    return [model.adapter(torch.from_numpy(f.astype(np.float32))[None])[0].numpy() for f in frames]


def training_clips(work: Path) -> tuple[list[list[np.ndarray]], list[bool], list[float]]:
    """Encoder frames, high?, median F0 of every voice-pitch clip of a work dir's training split."""
    store = FeatureStore.load(work / "features_train.npz")
    per_clip = json.loads((work / "features_train.json").read_text())
    frames, high, f0 = [], [], []
    with open(work / "data" / "train.jsonl") as f:
        for i, line in enumerate(f):
            rec = json.loads(line)
            if rec["task"] == "voice_pitch":
                frames.append([store.chunk(c) for c in per_clip[i]])
                high.append(rec["label"] == "high")
                f0.append(rec["meta"]["f0_hz"])
    return frames, high, f0


def probe_features(
    model, work: Path, n: int = 160, seed: int = 1234, views: tuple[str, ...] = ("encoder", "adaptor")
) -> dict:
    """Fit the probes on the training clips, test them on ``n`` fresh held-out questions; print and return
    {view: (right, n, F0 median abs error)}."""
    train_frames, train_label, train_f0 = training_clips(work)
    rng = np.random.default_rng(seed)
    held = [gen_voice_pitch(rng, "eval", True) for _ in range(n)]
    held_store, held_ids = encode_chunks(
        model.encoder, [s.audio for s in held], LISTEN_CHUNK_SECONDS, progress=False
    )
    held_frames = [[held_store.chunk(c) for c in ids] for ids in held_ids]
    held_label = np.array([s.label == "high" for s in held])
    held_f0 = np.array([s.meta["f0_hz"] for s in held])
    groups = [(s.meta["voice"].split("+")[-1], s.label) for s in held]
    transforms = {"encoder": lambda fr: fr, "adaptor": lambda fr: adapted(model, fr)}
    out = {}
    for name in views:
        view = transforms[name]
        xtr = np.stack([pooled(view(fr)) for fr in train_frames])
        xte = np.stack([pooled(view(fr)) for fr in held_frames])
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(xtr, train_label)
        pred = clf.predict(xte)
        by: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
        for g, p, y in zip(groups, pred, held_label, strict=True):
            by[g][0] += int(p == y)
            by[g][1] += 1
        reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 12))).fit(xtr, train_f0)
        err = np.abs(reg.predict(xte) - held_f0)
        right = int((pred == held_label).sum())
        parts = ", ".join(f"{v} {lab} {r}/{k}" for (v, lab), (r, k) in sorted(by.items()))
        print(
            f"{name} output: high/low {right}/{n} ({parts}); "
            f"F0 median abs error {np.median(err):.0f} Hz (p90 {np.percentile(err, 90):.0f})",
            flush=True,
        )
        out[name] = (right, n, float(np.median(err)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="a train-demo work dir (data/ and features_train.*)")
    ap.add_argument("checkpoint", help="its model, for the encoder and the adaptor")
    ap.add_argument("-n", type=int, default=160, help="held-out questions")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    model = load_checkpoint(args.checkpoint, progress=False).model
    probe_features(model, args.work, args.n, args.seed)


if __name__ == "__main__":
    main()
