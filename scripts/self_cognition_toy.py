"""Toy-scale self-cognition experiment on the demo model: error rate on the held-out audio probes for
(1) a supervised checkpoint, (2) the same after a short SFT on the cold-start mixture with the
contaminated text-model data mixed in (a stand-in for a full cold start with DemoConfig.mgrd(), which
takes an hour on 2 cores), (3) after the self-cognition DPO stage. Writes ``summary.json`` and a bar chart.

    python scripts/self_cognition_toy.py --ckpt stepaudio_rt/demo_checkpoint --work runs/demo_v2 \\
        --out runs/selfcog_toy --share 0.05 --steps 200
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def contaminated_sft(ckpt: Path, work: Path, out: Path, share: float, steps: int, n_samples: int, lr: float) -> Path:
    from stepaudio_rt.model.checkpoint import load_checkpoint, save_checkpoint
    from stepaudio_rt.training import stages
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.data.build import load_split
    from stepaudio_rt.training.sft import FeatureStore, train_sft

    if (out / "ckpt" / "config.json").exists():
        return out / "ckpt"
    loaded = load_checkpoint(ckpt, progress=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    samples = load_split(work / "data" / "train.jsonl")
    per_clip = json.loads((work / "features_train.json").read_text())
    store = FeatureStore.load(work / "features_train.npz")
    rng = np.random.default_rng(0)
    keep = sorted(rng.choice(len(samples), size=min(n_samples, len(samples)), replace=False).tolist())
    samples, per_clip = [samples[i] for i in keep], [per_clip[i] for i in keep]
    cfg = replace(DemoConfig(), n_text_arithmetic=n_samples // 4, n_dialogs=n_samples // 8, text_model_claim_share=share)
    examples = stages.cold_start_examples(samples, per_clip, store, tokenizer, cfg)
    n_bad = sum(e.task == "text_model_claim" for e in examples)
    print(f"[selfcog toy] {len(examples)} examples, {n_bad} contaminated ({100 * n_bad / len(examples):.1f}%)", flush=True)
    for p in (model.adapter, model.model, model.lm_head):
        p.requires_grad_(True)
    train_sft(model, examples, store, tokenizer, replace(stages.stage_config(cfg, steps, lr), batch_size=16),
              out / "sft", progress=True)
    save_checkpoint(model, tokenizer, out / "ckpt", dtype=torch.float16, generation_config=loaded.generation_config)
    (out / "contamination.json").write_text(json.dumps({"examples": len(examples), "contaminated": n_bad,
                                                        "share": share, "steps": steps, "lr": lr}, indent=2))
    return out / "ckpt"


def checkpoint_from_state(state_path: Path, tokenizer_dir: Path, out: Path) -> Path:
    """A checkpoint (official layout) from a `train demo` SFT state (``work/sft/state.pt``) and its
    tokenizer: e.g. the cold-start model of a run still in progress."""
    from stepaudio_rt.model.checkpoint import save_checkpoint
    from stepaudio_rt.model.tokenizer import StepAudioTokenizer
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.demo import build_demo_model, demo_generation_config

    if (out / "config.json").exists():
        return out
    tokenizer = StepAudioTokenizer.from_pretrained(tokenizer_dir)
    model = build_demo_model(DemoConfig(), tokenizer)
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"], strict=False)
    save_checkpoint(model, tokenizer, out, dtype=torch.float16, generation_config=demo_generation_config(tokenizer))
    (out / "from_state.json").write_text(json.dumps({"state": str(state_path), "step": int(state["step"])}))
    return out


def main() -> None:
    from stepaudio_rt.training import dpo
    from stepaudio_rt.training import self_cognition as sc

    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", type=Path, default=None)
    ap.add_argument("--state", type=Path, default=None, help="instead of --ckpt: a train demo SFT state.pt")
    ap.add_argument("--skip-dpo", action="store_true")
    ap.add_argument("--work", type=Path, required=True, help="a train demo work dir (data + feature cache)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--n-samples", type=int, default=4000)
    ap.add_argument("--probes", type=int, default=64)
    ap.add_argument("--dpo-steps", type=int, default=60)
    ap.add_argument("--dpo-questions", type=int, default=96)
    a = ap.parse_args()
    torch.set_num_threads(2)
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.state is not None:
        a.ckpt = checkpoint_from_state(a.state, a.work / "tokenizer", a.out / "base_ckpt")
    base_path = a.out / "probes_base.json"
    if not base_path.exists():
        base_path.write_text(json.dumps(sc.probe_checkpoint(a.ckpt, n=a.probes), indent=2))
    base = json.loads(base_path.read_text())
    print(f"[selfcog toy] base error {base['error_rate']:.3f}", flush=True)
    t_sft = time.perf_counter()
    bad = contaminated_sft(a.ckpt, a.work, a.out / "contaminated", a.share, a.steps, a.n_samples, a.lr)
    t_sft = time.perf_counter() - t_sft
    if a.skip_dpo:
        after = sc.probe_checkpoint(bad, n=a.probes)
        (a.out / "probes_contaminated.json").write_text(json.dumps(after, indent=2))
        print(json.dumps({"supervised": base["error_rate"], "contaminated_sft": after["error_rate"]}), flush=True)
        return
    cfg = dpo.DpoConfig(n_questions=a.dpo_questions, steps=a.dpo_steps, n_probes=a.probes, lr=2e-5)
    t_dpo = time.perf_counter()
    dpo.run_dpo_stage(bad, a.out / "dpo_ckpt", a.out / "dpo", cfg)
    t_dpo = time.perf_counter() - t_dpo
    m = json.loads((a.out / "dpo" / "metrics.json").read_text())
    summary = {
        "base_checkpoint": str(a.ckpt),
        "error_rate": {"supervised": base["error_rate"], "contaminated_sft": m["self_cognition_error_before"],
                       "dpo": m["self_cognition_error_after"]},
        "probes": a.probes,
        "contamination": json.loads((a.out / "contaminated" / "contamination.json").read_text()),
        "dpo": m,
        "seconds": {"contaminated_sft": round(t_sft, 1), "dpo": round(t_dpo, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names, vals = list(summary["error_rate"]), [100 * v for v in summary["error_rate"].values()]
    ax.bar(names, vals, color=["#888", "#c44", "#4a4"])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.1f}%", ha="center", va="bottom")
    ax.set_ylabel(f"self-cognition error, % of {a.probes} probes")
    ax.set_title("claims of not hearing (held-out audio probes)")
    fig.tight_layout()
    fig.savefig(a.out / "self_cognition.png", dpi=120)
    print(json.dumps(summary["error_rate"]), flush=True)


if __name__ == "__main__":
    main()
