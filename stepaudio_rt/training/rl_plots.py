"""PNG curves of RL runs: one line per run (a stage alone, or the ablation variants side by side)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (
    ("mean_reward", "mean reward"),
    ("accuracy", "answers correct (eval verifier)"),
    ("mean_think_tokens", "mean think length (tokens)"),
    ("clip_fraction", "policy clip fraction"),
)


def plot_rl_curves(runs: Mapping[str, Sequence[dict[str, Any]]], out_path: Path, title: str = "RL (PPO)") -> Path:
    """Reward, accuracy, think length and clip fraction against step for each run's log records."""
    if not any(runs.values()):
        raise ValueError("no RL log records to plot")
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=110, sharex=True)
    for ax, (key, label) in zip(axes.flat, PANELS, strict=True):
        for name, records in runs.items():
            if records:
                ax.plot([r["step"] for r in records], [r[key] for r in records], marker=".", label=name)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("RL step")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path


__all__ = ["plot_rl_curves"]
