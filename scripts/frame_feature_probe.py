"""Does the audio the decoder receives still say *where* things happen? Linear probes per frame.

On fresh pause-length clips (speech, a pause of 0.3-1.6 s, speech; cut into listen chunks as the server
cuts them), fits a ridge regression of each frame's time in its chunk and a logistic regression of
"sounding or silent" (``acoustic_probe.frame_targets``) on training-split clips, and tests them on
held-out ones (``eval`` voices and sentences). Done on the frozen encoder's frames (25 Hz, what the
adaptor receives) and on each checkpoint's adaptor frames (12.5 Hz, what the decoder receives).

    python scripts/frame_feature_probe.py stepaudio_rt/demo_checkpoint runs/mgrd_v4/supervised/cold_start_ckpt

Measured (120 training and 40 held-out clips): the encoder: time R^2 0.99 (median error 0.05 s), sounding
97.9% (base rate 54%); the v4 checkpoint's adaptor: time R^2 0.22 (0.63 s), sounding 81.3%. The frame head
(``DemoConfig.frame_weight``) trains the adaptor to keep both: 0.99 (0.06 s) and 99.4% at cold-start step
2,500 of the MGRD run.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV

from stepaudio_rt.model.checkpoint import load_checkpoint
from stepaudio_rt.training import acoustic_probe as ap
from stepaudio_rt.training.config import LISTEN_CHUNK_SECONDS
from stepaudio_rt.training.data.catalog import generate
from stepaudio_rt.training.sft import encode_chunks


def frames(model, split: str, n: int, seed: int, view: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features [N, D], time in chunk [N] seconds, sounding [N] bool) over every frame of ``n`` clips."""
    rng = np.random.default_rng(seed)
    clips = [generate("pause_length", rng, split, cot=True).audio for _ in range(n)]
    store, per_clip = encode_chunks(model.encoder, clips, LISTEN_CHUNK_SECONDS, progress=False)
    targets = ap.frame_targets(clips, per_clip, store.tokens, LISTEN_CHUNK_SECONDS)
    xs, ts, ss = [], [], []
    row = 0
    for c in range(len(store.tokens)):
        enc = store.chunk(c).astype(np.float32)
        n_tok = int(store.tokens[c])
        t = targets[row : row + n_tok]
        row += n_tok
        if view == "adaptor":
            with torch.inference_mode():
                x = model.adapter(torch.from_numpy(enc)[None])[0, :n_tok].numpy()
        else:  # two encoder frames per adaptor frame: both get the adaptor frame's targets
            x = enc[: 2 * n_tok]
            t = np.repeat(t, 2, axis=0)[: len(x)]
        xs.append(x)
        ts.append(t[:, ap.FRAME_KEYS.index("time_s")])
        ss.append(t[:, ap.FRAME_KEYS.index("sounding")] > 0)
    return np.concatenate(xs), np.concatenate(ts), np.concatenate(ss)


def probe(model, view: str, n_train: int, n_test: int) -> dict[str, float]:
    xtr, ttr, str_ = frames(model, "train", n_train, 1, view)
    xte, tte, ste = frames(model, "eval", n_test, 2, view)
    reg = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(xtr, ttr)
    err = np.abs(reg.predict(xte) - tte) * ap._TIME_SCALE  # standardised -> seconds
    clf = LogisticRegression(C=0.1, max_iter=3000).fit(xtr, str_)
    return {
        "time_r2": round(float(reg.score(xte, tte)), 3),
        "time_median_error_s": round(float(np.median(err)), 3),
        "sounding_accuracy": round(float(clf.score(xte, ste)), 3),
        "sounding_base_rate": round(float(max(ste.mean(), 1 - ste.mean())), 3),
    }


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("checkpoints", nargs="+")
    ap_.add_argument("--train", type=int, default=120, help="training-split clips the probes are fitted on")
    ap_.add_argument("--test", type=int, default=40, help="held-out clips they are tested on")
    args = ap_.parse_args()
    torch.set_num_threads(1)
    out = {}
    for k, path in enumerate(args.checkpoints):
        model = load_checkpoint(path, progress=False).model
        if k == 0:  # the encoder is frozen Whisper in every checkpoint
            out["encoder"] = probe(model, "encoder", args.train, args.test)
            print(f"encoder: {out['encoder']}", flush=True)
        out[path] = probe(model, "adaptor", args.train, args.test)
        print(f"{path} adaptor: {out[path]}", flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
