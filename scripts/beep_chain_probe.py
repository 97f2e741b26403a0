"""Which reasoning chain teaches a trained model to count beeps? A side-by-side fine-tuning ablation.

The demo checkpoint's beep errors are perception, not arithmetic: on 120 held-out two-burst clips it
misreads a burst by one beep in 29 of them and adds right every time it read both bursts right. Its chains
name each burst's count at once ("I hear a burst of 3 beeps, a pause of 0.8 seconds, then a burst of 2
beeps."). This script fine-tunes the same checkpoint, on the same clips, for the same steps, with the beep
tasks' chains in one of two forms, and counts on held-out clips (eval voices, seed 0 of the eval split):

- ``totals``: the data's own chains (as above; beep_count: "I detect 3 separate tone bursts ...");
- ``onsets``: every beep numbered at its measured onset, a burst at a time ("First burst: 1 at 0.2, 2 at
  0.5 and 3 at 0.8 seconds, 3 beeps. A pause of 0.8 seconds. Second burst: 1 at 1.9 and 2 at 2.2 seconds,
  2 beeps. 3 plus 2 is 5.").

The rest of the mixture (every other task, unchanged) is replayed so that both arms keep their other
skills. Short fine-tunes favour the chains the checkpoint already writes, so a gain for ``onsets`` here is
evidence for rebuilding with them; no gain is weak evidence against.

    python scripts/beep_chain_probe.py --out runs/beep_chain_probe            # both arms, ~25 min on 2 cores

Writes ``beep_chain_probe.json`` (per arm: held-out accuracy per task with its Wilson interval, per-burst
count errors) and ``beep_chain_probe.png``.

Measured on the MGRD demo checkpoint (240 held-out clips: 115 two-burst, 125 beep count): untrained 73.0%
(64-80) / 81.6% (74-87), bursts read right in 81 of 115; ``totals`` 95.7% (90-98) / 95.2% (90-98), 109 of
115. The chains the model already wrote were enough: what it lacked was training on beeps, which
self-distillation had worn away (see ``training/error_weighted_sft.py``, the stage this led to). The
``onsets`` arm was stopped unmeasured once that was clear (at step 67 its loss was still 0.5 against
``totals``' 0.13: the new chains were still being learned). On the 400 mixed held-out samples of
``stepaudio-rt eval`` the ``totals`` model scored 96.2% overall (93.5% before), with no replay of sessions
or transcription: text arithmetic 90.0% (95.0%) and transcription 87.5% (100%), 2 of 20 and 2 of 16.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stepaudio_rt.model.checkpoint import load_checkpoint, save_checkpoint
from stepaudio_rt.settings import DEMO_CHECKPOINT
from stepaudio_rt.training.config import LISTEN_CHUNK_SECONDS, DemoConfig
from stepaudio_rt.training.data.build import build_dataset, load_split
from stepaudio_rt.training.data.reasoning_tasks import burst_segments
from stepaudio_rt.training.sft import encode_chunks, train_sft
from stepaudio_rt.training.stages import single_turn_examples, stage_config

BEEP_TASKS = ("beep_count", "beep_bursts")
ARMS = ("totals", "onsets")


def _numbered(onsets: list[float]) -> str:
    """"1 at 0.2, 2 at 0.5 and 3 at 0.8 seconds" (one beep: "1 at 0.2 seconds")."""
    parts = [f"{k} at {t:.1f}" for k, t in enumerate(onsets, start=1)]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return body + " seconds"


def onset_chain(sample: Any) -> str:
    """The ``onsets`` chain of a beep sample, from the events measured on its audio."""
    groups = burst_segments(sample.audio)
    if sample.task == "beep_count":
        events = [e for g in groups for e in g]
        n = len(events)
        word = "beep" if n == 1 else "beeps"
        return f"Beeps: {_numbered([s for s, _ in events])}, so there {'is' if n == 1 else 'are'} {n} {word}."
    n1, n2 = (len(g) for g in groups)
    pause = groups[1][0][0] - groups[0][-1][1]
    text = (
        f"First burst: {_numbered([s for s, _ in groups[0]])}, {n1} {'beep' if n1 == 1 else 'beeps'}. "
        f"A pause of {pause:.1f} seconds. "
        f"Second burst: {_numbered([s for s, _ in groups[1]])}, {n2} {'beep' if n2 == 1 else 'beeps'}. "
    )
    if sample.meta["kind"] == "total":
        return text + f"{n1} plus {n2} is {n1 + n2}."
    big, small = max(n1, n2), min(n1, n2)
    return text + f"{big} minus {small} is {big - small}."


def train_arm(arm: str, samples: list, args: argparse.Namespace, out: Path) -> Path:
    loaded = load_checkpoint(args.model, progress=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    model.requires_grad_(True)
    model.encoder.requires_grad_(False)
    store, per_clip = encode_chunks(model.encoder, [s.audio for s in samples], LISTEN_CHUNK_SECONDS)
    if arm == "onsets":
        samples = [replace(s, think=onset_chain(s)) if s.task in BEEP_TASKS else s for s in samples]
    # no auxiliary losses: the probe compares the chains alone (the checkpoint carries no head weights)
    cfg = stage_config(replace(DemoConfig(), acoustic_weight=0.0, frame_weight=0.0, audio_align_weight=0.0,
                               seed=args.seed), args.steps, args.lr)
    examples = single_turn_examples(samples, per_clip, store, tokenizer, cfg, np.random.default_rng([args.seed, 0xBEE]))
    train_sft(model, examples, store, tokenizer, cfg, out / arm / "sft")
    ckpt = out / arm / "ckpt"
    save_checkpoint(model, tokenizer, ckpt, dtype=torch.float16, generation_config=loaded.generation_config)
    return ckpt


_BURSTS = re.compile(r"(?:burst of (\d+) beeps?.*?burst of (\d+) beeps?)|(?:, (\d+) beeps?\..*?, (\d+) beeps?\.)")


def burst_errors(eval_dir: Path, held_out: list) -> dict[str, int]:
    """Per held-out two-burst clip, how the thinking reply's burst counts compare with the clip's."""
    rows = [json.loads(line) for line in (eval_dir / "eval_samples.jsonl").open()]
    tally = {"both_right": 0, "one_wrong": 0, "both_wrong": 0, "unparsed": 0}
    for s, r in zip(held_out, rows, strict=True):
        if s.task != "beep_bursts":
            continue
        m = _BURSTS.search(r["replies"]["thinking"])
        if not m:
            tally["unparsed"] += 1
            continue
        said = [int(g) for g in m.groups() if g is not None]
        wrong = sum(a != b for a, b in zip(said, s.meta["counts"], strict=True))
        tally[("both_right", "one_wrong", "both_wrong")[wrong]] += 1
    return tally


def main() -> None:
    from stepaudio_rt.training.evaluate import evaluate_checkpoint
    from stepaudio_rt.training.plots import plot_task_accuracy

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=DEMO_CHECKPOINT)
    ap.add_argument("--out", type=Path, default=Path("runs/beep_chain_probe"))
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--n-mix", type=int, default=3000, help="training clips of the whole mixture (replay)")
    ap.add_argument("--n-beeps", type=int, default=1500, help="extra training clips of the two beep tasks")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--n-eval", type=int, default=240, help="held-out clips of the beep tasks")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory() as tmp:
        build_dataset(args.n_mix, 0, Path(tmp) / "mix", seed=args.seed)
        build_dataset(args.n_beeps, 0, Path(tmp) / "beeps", seed=args.seed + 1, tasks=list(BEEP_TASKS))
        samples = load_split(Path(tmp) / "mix" / "train.jsonl") + load_split(Path(tmp) / "beeps" / "train.jsonl")
        # the held-out clips as `stepaudio-rt eval --tasks beep_count,beep_bursts` draws them (seed 0)
        build_dataset(0, args.n_eval, Path(tmp) / "eval", seed=0, tasks=list(BEEP_TASKS))
        held_out = load_split(Path(tmp) / "eval" / "eval.jsonl")
        eval_data = Path(tmp) / "eval"
        results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "arms": {}}
        for arm in ["untrained", *args.arms.split(",")]:
            ckpt = args.model if arm == "untrained" else train_arm(arm, samples, args, args.out)
            summary = evaluate_checkpoint(ckpt, args.out / arm / "eval", n=args.n_eval, data_dir=eval_data,
                                          modes=["thinking"], progress=False)
            results["arms"][arm] = {
                "accuracy": summary["accuracy"]["thinking"],
                "ci95": summary["accuracy_ci95"]["thinking"],
                "counts": summary["counts"],
                "bursts": burst_errors(args.out / arm / "eval", held_out),
            }
            print(arm, json.dumps(results["arms"][arm]), flush=True)
            (args.out / "beep_chain_probe.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_task_accuracy({arm: r["accuracy"] for arm, r in results["arms"].items()}, args.out / "beep_chain_probe.png")


if __name__ == "__main__":
    main()
