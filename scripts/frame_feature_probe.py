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

    python scripts/frame_feature_probe.py --task beep_bursts stepaudio_rt/demo_checkpoint runs/mgrd_v4/supervised/cold_start_ckpt

On two-burst beep clips it also counts, per held-out clip, the runs of frames the sounding probe calls
sounding, against the beeps in the clip (``runs_match_events``). Measured (120 / 40 clips): the encoder
1.00; the v4 adaptor 0.05; the MGRD cold start (frame head, 7,400 steps) 1.00, with time R^2 0.997 and
sounding 98.2%. So after the frame head every beep is there, linearly, in what the decoder reads.
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
from stepaudio_rt.training.data import acoustics as ac
from stepaudio_rt.training.data.catalog import generate
from stepaudio_rt.training.sft import encode_chunks


def frames(
    model, task: str, split: str, n: int, seed: int, view: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(features [N, D], time in chunk [N] seconds, sounding [N] bool, clip index [N]) over every frame of
    ``n`` clips of ``task``, and each clip's number of sound events (beeps, words run together)."""
    rng = np.random.default_rng(seed)
    clips = [generate(task, rng, split, cot=True).audio for _ in range(n)]
    events = [len(ac.segments(x)) for x in clips]
    store, per_clip = encode_chunks(model.encoder, clips, LISTEN_CHUNK_SECONDS, progress=False)
    targets = ap.frame_targets(clips, per_clip, store.tokens, LISTEN_CHUNK_SECONDS)
    clip_of = {c: k for k, ids in enumerate(per_clip) for c in ids}
    xs, ts, ss, ks = [], [], [], []
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
        ks.append(np.full(len(x), clip_of[c]))
    return np.concatenate(xs), np.concatenate(ts), np.concatenate(ss), np.concatenate(ks), events


def sounding_runs(sounding: np.ndarray, clip: np.ndarray, n_clips: int) -> list[int]:
    """Per clip, the number of runs of consecutive sounding frames (chunk joins are not gaps: a clip's
    frames are in order and chunks are cut inside silences)."""
    runs = []
    for k in range(n_clips):
        s = sounding[clip == k].astype(int)
        runs.append(int(s[0] + np.count_nonzero(np.diff(s) == 1)) if len(s) else 0)
    return runs


def probe(model, task: str, view: str, n_train: int, n_test: int) -> dict[str, float]:
    xtr, ttr, str_, _, _ = frames(model, task, "train", n_train, 1, view)
    xte, tte, ste, kte, events = frames(model, task, "eval", n_test, 2, view)
    reg = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(xtr, ttr)
    err = np.abs(reg.predict(xte) - tte) * ap._TIME_SCALE  # standardised -> seconds
    clf = LogisticRegression(C=0.1, max_iter=3000).fit(xtr, str_)
    predicted_runs = sounding_runs(clf.predict(xte), kte, n_test)
    target_runs = sounding_runs(ste, kte, n_test)
    return {
        # clips whose predicted sounding frames form as many runs as there are sound events (beeps): can
        # the frames be counted, and can the frame targets themselves (a beep too short for a frame)?
        "runs_match_events": round(float(np.mean(np.equal(predicted_runs, events))), 3),
        "target_runs_match_events": round(float(np.mean(np.equal(target_runs, events))), 3),
        "time_r2": round(float(reg.score(xte, tte)), 3),
        "time_median_error_s": round(float(np.median(err)), 3),
        "sounding_accuracy": round(float(clf.score(xte, ste)), 3),
        "sounding_base_rate": round(float(max(ste.mean(), 1 - ste.mean())), 3),
    }


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap_.add_argument("checkpoints", nargs="+")
    ap_.add_argument("--task", default="pause_length", help="clips of this task (e.g. beep_bursts, beep_count)")
    ap_.add_argument("--train", type=int, default=120, help="training-split clips the probes are fitted on")
    ap_.add_argument("--test", type=int, default=40, help="held-out clips they are tested on")
    args = ap_.parse_args()
    torch.set_num_threads(1)
    out = {}
    for k, path in enumerate(args.checkpoints):
        model = load_checkpoint(path, progress=False).model
        if k == 0:  # the encoder is frozen Whisper in every checkpoint
            out["encoder"] = probe(model, args.task, "encoder", args.train, args.test)
            print(f"encoder: {out['encoder']}", flush=True)
        out[path] = probe(model, args.task, "adaptor", args.train, args.test)
        print(f"{path} adaptor: {out[path]}", flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
