"""Does the audio-alignment loss erase voice pitch from the adaptor? A short ablation on a demo work dir.

Trains the demo recipe's cold start from scratch through its perception-only phase (alignment off, as in
the recipe), then continues each variant from that same state for ``--mixed`` steps of the full mixture:

- ``full``: the recipe's alignment over all hidden dimensions (``audio_align_dims=0``);
- ``sub<k>``: alignment over the first k dimensions only;
- ``none``: no alignment;
- any of them with ``+ac<w>``: plus the acoustic head (``training.acoustic_probe``) at weight w.

Same schedule, data order and seed as the real run. Each variant is then measured on held-out voices:
the linear pitch probe on its adaptor output (``pitch_feature_probe``), the model's own answers to the pitch
questions (``pitch_probe``), and spoken arithmetic and transcription (what the alignment is for).

    python scripts/align_probe.py runs/demo_v3 runs/align_probe --variants full,sub192,none --mixed 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from pitch_feature_probe import probe_features
from pitch_probe import probe
from torch import nn

from stepaudio_rt.model.checkpoint import save_checkpoint
from stepaudio_rt.model.tokenizer import StepAudioTokenizer
from stepaudio_rt.training import stages
from stepaudio_rt.training.acoustic_probe import acoustic_targets
from stepaudio_rt.training.config import DemoConfig
from stepaudio_rt.training.data.build import load_split
from stepaudio_rt.training.data.tasks import gen_voice_pitch
from stepaudio_rt.training.demo import build_demo_model, demo_generation_config
from stepaudio_rt.training.evaluate import evaluate_checkpoint
from stepaudio_rt.training.sft import FeatureStore, _fit_acoustic_head, train_sft


class _Stop(Exception):
    pass


def _stop_after(step: int):
    def on_log(rec: dict) -> None:
        if rec["step"] > step:  # the state saved at ``step`` is on disk by now
            raise _Stop

    return on_log


def _variant_cfg(cfg: DemoConfig, name: str) -> DemoConfig:
    name, _, acoustic = name.partition("+ac")  # "sub192+ac1.0": with the acoustic head at weight 1.0
    if acoustic:
        cfg = replace(cfg, acoustic_weight=float(acoustic))
    if name == "full":
        return replace(cfg, audio_align_dims=0)
    if name == "none":
        return replace(cfg, audio_align_weight=0.0)
    if name.startswith("sub"):
        return replace(cfg, audio_align_dims=int(name[3:]))
    raise ValueError(f"unknown variant {name!r}")


def _add_fitted_head(src: Path, dst: Path, cfg: DemoConfig, tokenizer, examples, store) -> None:
    """The perception state (trained without the acoustic head) plus a head fitted to its adaptor, and
    the head's parameter group in the optimiser and schedule, so ``train_sft`` resumes it as if the head
    had been there (no Adam moments for the head yet)."""
    state = torch.load(src, weights_only=False)
    model = build_demo_model(cfg, tokenizer)
    model.load_state_dict(state["model"], strict=False)
    head = nn.Linear(model.config.text.hidden_size, store.acoustic.shape[1])
    _fit_acoustic_head(head, model, examples, store, cfg.seed)
    state["acoustic_head"] = head.state_dict()
    groups = state["optimizer"]["param_groups"]
    n = sum(len(g["params"]) for g in groups)
    base = cfg.lr * cfg.adapter_lr_scale
    last = state["scheduler"]["_last_lr"][-1] / state["scheduler"]["base_lrs"][-1]
    groups.append(
        {**groups[-1], "params": [n, n + 1], "weight_decay": 0.0, "initial_lr": base, "lr": base * last}
    )
    for key, value in (("base_lrs", base), ("_last_lr", base * last), ("lr_lambdas", None)):
        state["scheduler"][key].append(value)
    torch.save(state, dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, help="a train-demo work dir with data/, tokenizer/ and features")
    ap.add_argument("out", type=Path)
    ap.add_argument("--variants", default="full,sub192,none")
    ap.add_argument("--mixed", type=int, default=600, help="full-mixture steps after the perception phase")
    ap.add_argument("--eval-n", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(2)

    cfg = replace(DemoConfig(), save_every=100)
    tokenizer = StepAudioTokenizer.from_pretrained(args.work / "tokenizer")
    samples = load_split(args.work / "data" / "train.jsonl")
    store = FeatureStore.load(args.work / "features_train.npz")
    per_clip = json.loads((args.work / "features_train.json").read_text())
    examples = stages.cold_start_examples(samples, per_clip, store, tokenizer, cfg)
    store.acoustic = acoustic_targets(samples, per_clip, len(store.tokens))
    del samples

    perception = args.out / "perception"
    if (
        not (perception / "state.pt").exists()
        or torch.load(perception / "state.pt", weights_only=False)["step"] < cfg.first_phase_steps
    ):
        with contextlib.suppress(_Stop):
            train_sft(
                build_demo_model(cfg, tokenizer),
                examples,
                store,
                tokenizer,
                cfg,
                perception,
                on_log=_stop_after(cfg.first_phase_steps),
            )
    rng = np.random.default_rng(1234)
    pitch_questions = [gen_voice_pitch(rng, "eval", True) for _ in range(80)]
    results = {}
    for name in args.variants.split(","):
        vcfg = _variant_cfg(cfg, name)
        run = args.out / name
        run.mkdir(parents=True, exist_ok=True)
        if not (run / "state.pt").exists():
            if vcfg.acoustic_weight > 0:
                _add_fitted_head(perception / "state.pt", run / "state.pt", vcfg, tokenizer, examples, store)
            else:
                shutil.copy(perception / "state.pt", run / "state.pt")
        model = build_demo_model(vcfg, tokenizer)
        end = cfg.first_phase_steps + args.mixed
        with contextlib.suppress(_Stop):
            train_sft(model, examples, store, tokenizer, vcfg, run, on_log=_stop_after(end))
        model.eval()
        print(f"== {name} after {args.mixed} mixed steps", flush=True)
        feats = probe_features(model, args.work, views=("adaptor",))
        ckpt = run / "ckpt"
        save_checkpoint(
            model, tokenizer, ckpt, dtype=torch.float16, generation_config=demo_generation_config(tokenizer)
        )
        asyncio.run(probe(str(ckpt), pitch_questions))
        ev = evaluate_checkpoint(
            ckpt,
            run / "eval",
            n=args.eval_n,
            modes=("thinking",),
            progress=False,
            tasks=("spoken_arithmetic", "transcription", "voice_pitch", "loudness"),
        )
        print(f"held-out accuracy (thinking): {ev['accuracy']['thinking']}", flush=True)
        results[name] = {"adaptor_probe": feats["adaptor"], "accuracy": ev["accuracy"]["thinking"]}
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
