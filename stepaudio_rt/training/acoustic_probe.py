"""An auxiliary loss that keeps how the audio sounds (pitch, level, noise, rate) in the adaptor's output.

Why: the frozen Whisper encoder hears pitch (a linear probe on its pooled output tells held-out voices
high or low 160/160, median F0 error 14 Hz; ``scripts/pitch_feature_probe.py``), and so does the adaptor
after the perception-only phase (159/160, 18 Hz). The full mixture then erodes it: 600 steps later the
same probe reads 126/160 (52 Hz) with the word alignment, 142/160 without it, and at the end of the cold
start 105/160 (67 Hz); the model then answers every pitch question alike (``scripts/align_probe.py``).
Transcription, arithmetic and the word alignment pull the adaptor towards what was said; nothing in the
mixed phase asks it to keep how it was said except a few percent of perception answers.

The loss asks for exactly what the probe measures: a linear head on each listen chunk's mean adaptor
frame predicts the values measured on that clip when it was synthesised (log F0, RMS dBFS, SNR, syllable
rate; standardised, missing values masked). The head exists only in training; the checkpoint is the same
module tree. It is fitted by ridge regression on the current adaptor at the start of every stage, so a new
stage does not start with a random head whose first gradients would shake the adaptor.

A second head does the same per adaptor frame (``frame_targets``): where in its chunk the frame is (time in
seconds) and whether the clip is sounding there. Why: the frozen encoder knows both (linear probes on its
frames, held-out pause clips, ``scripts/frame_feature_probe.py``: time R^2 0.99, median error 0.05 s;
sounding or silent 97.9%), the v4 adaptor had lost them (time R^2 0.22, error 0.63 s; 81.3%), and the
model then answered every pause with one of three lengths and miscounted beeps (pause length 70.8%, beeps
in two bursts 70.8% held out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

# measured values of a clip (``Sample.meta["measured"]``) that the head predicts; F0 on a log scale
ACOUSTIC_KEYS: tuple[str, ...] = ("f0_hz", "rms_dbfs", "snr_db", "rate_sps")
_LOG_KEYS = frozenset({"f0_hz"})
RIDGE = 1.0  # ridge penalty of the head's initial fit (on standardised targets)
FIT_CHUNKS = 1024  # chunks the initial fit uses

# per-frame targets of the frame head: the frame's start within its listen chunk, and sounding (1) or not (0)
FRAME_KEYS: tuple[str, ...] = ("time_s", "sounding")
FRAME_SECONDS = 0.08  # one adaptor frame (12.5 Hz)
_TIME_CENTRE, _TIME_SCALE = 2.0, 1.15  # standardise times over a 4 s listen chunk (mean 2 s, std ~1.15 s)


def acoustic_targets(samples: Sequence[Any], per_clip: Sequence[Sequence[int]], n_chunks: int) -> np.ndarray:
    """[n_chunks, len(ACOUSTIC_KEYS)] float32: each chunk gets its clip's measured values, standardised per
    column over the chunks that have one; NaN where a clip has no such measurement (or no audio)."""
    out = np.full((n_chunks, len(ACOUSTIC_KEYS)), np.nan, dtype=np.float32)
    for s, ids in zip(samples, per_clip, strict=True):
        measured = (s.meta or {}).get("measured") or {}
        for j, key in enumerate(ACOUSTIC_KEYS):
            v = measured.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v) and (key not in _LOG_KEYS or v > 0):
                out[list(ids), j] = math.log2(v) if key in _LOG_KEYS else v
    for j in range(out.shape[1]):
        col = out[:, j]
        present = ~np.isnan(col)
        if present.sum() > 1:
            col[present] = (col[present] - col[present].mean()) / max(float(col[present].std()), 1e-6)
    return out


def frame_targets(
    clips: Sequence[np.ndarray | None], per_clip: Sequence[Sequence[int]], tokens: Sequence[int], chunk_seconds: float
) -> np.ndarray:
    """[sum(tokens), len(FRAME_KEYS)] float32, one row per adaptor frame in chunk order (the order of
    ``FeatureStore`` chunks): the frame's time in its chunk and whether the clip is sounding over most of
    it, both standardised. Sounding is judged on the whole clip (``acoustics.active_intervals``, 35 dB
    below its loudest frame, as the pause and beep measurements), so a chunk of silence is silent."""
    from stepaudio_rt.model.audio_frontend import split_at_pauses
    from stepaudio_rt.training.data import acoustics as ac

    offsets = np.concatenate([[0], np.cumsum(np.asarray(tokens, dtype=np.int64))])
    out = np.full((int(offsets[-1]), len(FRAME_KEYS)), np.nan, dtype=np.float32)
    hop = int(round(FRAME_SECONDS * ac.SAMPLE_RATE))
    for clip, ids in zip(clips, per_clip, strict=True):
        if clip is None or not ids:
            continue
        sounding = np.zeros(len(clip), dtype=bool)
        for a, b in ac.active_intervals(clip):
            sounding[a:b] = True
        start = 0
        for c, piece in zip(ids, split_at_pauses(clip, chunk_seconds), strict=True):
            n = int(tokens[c])
            k = np.arange(n)
            rows = slice(int(offsets[c]), int(offsets[c]) + n)
            out[rows, 0] = (k * FRAME_SECONDS - _TIME_CENTRE) / _TIME_SCALE
            frames = np.zeros(n * hop, dtype=bool)
            seg = sounding[start : start + min(len(piece), n * hop)]
            frames[: len(seg)] = seg
            out[rows, 1] = 2.0 * (frames.reshape(n, hop).mean(1) > 0.5) - 1.0
            start += len(piece)
    return out


def pooled_frames(adapted: torch.Tensor, chunk_tokens: Sequence[int]) -> torch.Tensor:
    """Mean adaptor frame of each chunk: ``adapted`` [n_chunks, F, H] zero-padded, real lengths given."""
    return torch.stack([adapted[k, :n].mean(0) for k, n in enumerate(chunk_tokens)])


def acoustic_probe_loss(head: nn.Linear, pooled: torch.Tensor, targets: torch.Tensor) -> torch.Tensor | None:
    """Mean squared error of the head's predictions over the measured (non-NaN) targets; None if none."""
    mask = ~torch.isnan(targets)
    if not bool(mask.any()):
        return None
    pred = head(pooled.float())
    return (pred - torch.nan_to_num(targets)).pow(2)[mask].mean()


@torch.no_grad()
def fit_head(head: nn.Linear, pooled: torch.Tensor, targets: torch.Tensor, ridge: float = RIDGE) -> None:
    """Ridge regression of each target column on the pooled frames (rows where it is measured), written
    into ``head``; a column with too few rows keeps the head's weights for it."""
    x = torch.cat([pooled.double(), torch.ones(len(pooled), 1, dtype=torch.float64)], dim=1)
    for j in range(targets.shape[1]):
        rows = ~torch.isnan(targets[:, j])
        if int(rows.sum()) < 8:
            continue
        xr, y = x[rows], targets[rows, j].double()
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        eye[-1, -1] = 0.0  # the bias is not penalised
        w = torch.linalg.solve(xr.T @ xr + ridge * eye, xr.T @ y)
        head.weight[j] = w[:-1].to(head.weight.dtype)
        head.bias[j] = w[-1].to(head.bias.dtype)
