"""The paper's RL ablations, side by side from one starting checkpoint (``stepaudio-rt train ablate-rl``).

Variants (each a full ``rlvr.run_rl_stage`` in its own directory, same seed, same candidate questions, the
same pass@k table sampled once from the starting checkpoint):

- ``format_on_band``: the paper's recipe: format reward on, pass@8 in [3, 6];
- ``format_off_band``: audio reward binary (no 0.2 for reasoning). Paper: without the format reward the
  think length collapses;
- ``format_on_failed``: only questions never solved (pass@8 = 0). Paper: reward lower and unstable.

Written to ``out_dir``: ``ablation_rl.json`` (per variant: selection, the per-step curves, held-out accuracy
after, time) and ``ablation_rl_format.png`` / ``ablation_rl_selection.png`` (reward, accuracy, think length,
clip fraction over steps). The trained checkpoints stay in ``work_dir/<variant>/ckpt``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from stepaudio_rt.training.rl_config import RlConfig
from stepaudio_rt.training.rl_plots import plot_rl_curves
from stepaudio_rt.training.rlvr import load_rl_log, run_rl_stage

VARIANTS: dict[str, dict[str, Any]] = {
    "format_on_band": {"format_reward": True, "selection": "band"},
    "format_off_band": {"format_reward": False, "selection": "band"},
    "format_on_failed": {"format_reward": True, "selection": "failed"},
}
COMPARISONS = {
    "format": ("format_on_band", "format_off_band"),
    "selection": ("format_on_band", "format_on_failed"),
}


def run_rl_ablations(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    work_dir: str | Path,
    cfg: RlConfig | None = None,
    variants: tuple[str, ...] = tuple(VARIANTS),
    progress: bool = True,
    questions: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Run each variant (resumable: a finished variant is reused), then write figures and curves.
    ``questions`` replace the synthesised candidates (as in ``run_rl_stage``)."""
    cfg = cfg or RlConfig()
    out, work = Path(out_dir), Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    results: dict[str, Any] = {}
    first_work: Path | None = None
    for name in variants:
        vcfg = replace(cfg, **VARIANTS[name])
        vwork = work / name
        vwork.mkdir(parents=True, exist_ok=True)
        if first_work is not None:  # same questions, same pass table: sampled once, copied
            for item in ("rl_data", "pass_table.json"):
                src, dst = first_work / item, vwork / item
                if src.exists() and not dst.exists():
                    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
        print(f"[ablate rl] {name}: {VARIANTS[name]}", flush=True)
        t0 = time.perf_counter()
        run_rl_stage(checkpoint_dir, vwork / "ckpt", vwork, vcfg, questions=questions, progress=progress)
        metrics = json.loads((vwork / "metrics.json").read_text())
        curves = load_rl_log(vwork / "rl_log.jsonl")
        results[name] = {
            "settings": VARIANTS[name],
            "selection": metrics["selection"],
            "heldout_accuracy": metrics.get("heldout_accuracy"),
            "heldout_accuracy_per_task": metrics.get("heldout_accuracy_per_task"),
            "final_mean_reward": _tail_mean(curves, "mean_reward"),
            "final_mean_think_tokens": _tail_mean(curves, "mean_think_tokens"),
            "final_reasoning_rate": _tail_mean(curves, "reasoning_rate"),
            "first_mean_think_tokens": curves[0]["mean_think_tokens"] if curves else None,
            "stage_s": metrics.get("total_s"),
            "wall_s_this_call": round(time.perf_counter() - t0, 1),
            "curves": curves,
        }
        first_work = first_work or vwork
    for title, pair in COMPARISONS.items():
        runs = {n: results[n]["curves"] for n in pair if n in results}
        if len(runs) == 2:
            plot_rl_curves(runs, out / f"ablation_rl_{title}.png", title=f"RL ablation: {title}")
    summary = {"checkpoint": str(checkpoint_dir), "config": cfg.to_dict(), "variants": results}
    (out / "ablation_rl.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, r in results.items():
        print(
            f"[ablate rl] {name}: selected {r['selection']['selected']}/{r['selection']['candidates']}, "
            f"reward {r['final_mean_reward']:.3f}, think {r['final_mean_think_tokens']:.1f} tokens "
            f"(from {r['first_mean_think_tokens']:.1f}), held-out {r['heldout_accuracy']}",
            flush=True,
        )
    return summary


def _tail_mean(curves: list[dict[str, Any]], key: str, n: int = 5) -> float | None:
    """Mean of the last ``n`` steps: one step's figure is one batch's noise."""
    tail = [r[key] for r in curves[-n:]]
    return sum(tail) / len(tail) if tail else None


__all__ = ["COMPARISONS", "VARIANTS", "run_rl_ablations"]
