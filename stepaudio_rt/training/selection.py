"""pass@k data selection before an RL stage (the paper: pass@8 in [3, 6]).

The previous model answers every candidate question ``k`` times (sampled through the serving engine, as the
RL rollouts are); a question's pass count is how many of those answers the ``eval`` verifier accepts
(``rewards.score(...).correct``: a well-formed think block and a correct reply). Policies:

- ``band`` (the paper): keep questions with ``low <= passes <= high``, moderate difficulty: both
  outcomes occur, so the group's rewards vary and PPO has a signal to follow;
- ``failed`` (the paper's ablation): keep only questions never answered (``passes == 0``);
- ``all``: no filter (tests, and a baseline to compare with).

The pass table is saved (``pass_table.json``) so an interrupted stage, or several ablation variants from the
same starting checkpoint, reuse it instead of sampling again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepaudio_rt.model.engine import Engine
from stepaudio_rt.training.rewards import score
from stepaudio_rt.training.rollout import sample_completions

POLICIES = ("band", "failed", "all")


def pass_counts(
    engine: Engine,
    samples: Sequence[Any],
    k: int = 8,
    temperature: float = 1.0,
    max_tokens: int = 160,
    seed: int = 0,
    concurrency: int = 8,
    progress: bool = True,
) -> list[int]:
    """How many of ``k`` sampled answers to each sample are correct."""
    groups = sample_completions(
        engine, samples, k, temperature, max_tokens, seed, concurrency, progress=progress, desc=f"pass@{k}"
    )
    return [
        sum(score(s.task, c.text, s.label, s.audio is not None).correct for c in group)
        for s, group in zip(samples, groups, strict=True)
    ]


def select(counts: Sequence[int], policy: str = "band", low: int = 3, high: int = 6) -> list[int]:
    """Indices of the kept questions."""
    if policy == "band":
        return [i for i, c in enumerate(counts) if low <= c <= high]
    if policy == "failed":
        return [i for i, c in enumerate(counts) if c == 0]
    if policy == "all":
        return list(range(len(counts)))
    raise ValueError(f"unknown selection policy {policy!r}; choose from {', '.join(POLICIES)}")


def report(counts: Sequence[int], tasks: Sequence[str], kept: Sequence[int], policy: str, k: int) -> dict[str, Any]:
    """Selected fraction, the histogram of pass counts, and per task: candidates, kept, mean pass rate."""
    by_task: dict[str, list[int]] = {}
    for t, c in zip(tasks, counts, strict=True):
        by_task.setdefault(t, []).append(c)
    kept_tasks = Counter(tasks[i] for i in kept)
    return {
        "policy": policy,
        "k": k,
        "candidates": len(counts),
        "selected": len(kept),
        "selected_fraction": len(kept) / max(1, len(counts)),
        "pass_histogram": {str(n): sum(1 for c in counts if c == n) for n in range(k + 1)},
        "per_task": {
            t: {"candidates": len(cs), "selected": kept_tasks.get(t, 0), "mean_pass_rate": sum(cs) / (k * len(cs))}
            for t, cs in sorted(by_task.items())
        },
    }


def save_counts(path: Path, counts: Sequence[int], meta: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**meta, "counts": list(counts)}) + "\n")
    tmp.replace(path)


def load_counts(path: Path, meta: dict[str, Any]) -> list[int] | None:
    """The saved counts if they were made with the same ``meta`` (checkpoint, k, candidates, seed)."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    counts = data.pop("counts")
    return list(counts) if data == json.loads(json.dumps(meta)) else None


__all__ = ["POLICIES", "load_counts", "pass_counts", "report", "save_counts", "select"]
