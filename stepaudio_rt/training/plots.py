"""PNG figures for training and evaluation (matplotlib, headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss_curve(records: Sequence[dict], out_path: Path, title: str = "cold-start SFT loss") -> Path:
    """Training loss (and learning rate on a second axis) against step, from ``loss.jsonl`` records."""
    if not records:
        raise ValueError("no loss records to plot")
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, [r["loss"] for r in records], color="tab:blue", label="train loss (assistant tokens)")
    names = sorted({k for r in records for k in r.get("aux", {})})
    if names:  # each auxiliary loss on its own (logs written since they are recorded apart)
        for name in names:
            pts = [(r["step"], r["aux"][name]) for r in records if name in r.get("aux", {})]
            ax.plot(*zip(*pts, strict=True), alpha=0.7, lw=1.0, label=f"{name} (weighted)")
    else:
        aux = [(r["step"], r["aux_loss"]) for r in records if r.get("aux_loss", 0) > 0]
        if aux:
            ax.plot(*zip(*aux, strict=True), color="tab:green", alpha=0.7, label="auxiliary losses (weighted)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if "lr" in records[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [r["lr"] for r in records], color="tab:orange", alpha=0.6, label="learning rate")
        ax2.set_ylabel("learning rate")
    ax.set_title(title)
    fig.legend(loc="upper right")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def plot_task_accuracy(
    per_mode: dict[str, dict[str, float]], out_path: Path, title: str = "held-out accuracy per task"
) -> Path:
    """Grouped bars: accuracy per task (x) for each decoding mode (thinking / empty think block)."""
    if not per_mode:
        raise ValueError("no accuracies to plot")
    modes = list(per_mode)
    tasks = sorted({t for accs in per_mode.values() for t in accs})
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(tasks)), 4.5), dpi=110)
    for k, mode in enumerate(modes):
        xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(tasks))]
        ax.bar(xs, [100 * per_mode[mode].get(t, 0.0) for t in tasks], width, label=mode)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=35, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.axhline(90, color="gray", lw=0.8, ls="--")
    ax.axhline(80, color="gray", lw=0.8, ls=":")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


def plot_distill_iterations(reports: Sequence[dict], out_path: Path) -> Path:
    """Per self-distillation iteration: kept fraction, grounding rate and held-out accuracy (thinking)."""
    if not reports:
        raise ValueError("no iterations to plot")
    its = [r["iteration"] for r in reports]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(its, [100 * r["kept_fraction"] for r in reports], "o-", label="kept chains")
    ax.plot(its, [100 * r["grounding_rate"] for r in reports], "s-", label="grounding rate")
    acc = [(r["iteration"], 100 * r["heldout_accuracy"]["thinking"]) for r in reports if "heldout_accuracy" in r]
    if acc:
        ax.plot(*zip(*acc, strict=True), "^-", label="held-out accuracy (thinking)")
    ax.set_xticks(its)
    ax.set_xlabel("self-distillation iteration")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("MGRD self-distillation")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
