"""``stepaudio-rt train mgrd``: the paper's whole MGRD pipeline at toy scale, stage after stage.

1. **supervised** (``training.demo.train_demo`` with ``DemoConfig.mgrd()``): data -> tokenizer -> features
   -> cold start (with the contaminated text-model replies that give the supervised model its
   self-cognition error) -> self-distillation iterations (grounding, coherence and self-cognition judge
   filters) -> think-incomplete SFT;
2. **RLVR** (``training.rlvr.run_rl_stage``): pass@8 selection of questions the model gets right 3 to 6
   times in 8, then PPO with the 0.8 x correct + 0.2 x reasoning reward;
3. **self-cognition DPO** (``training.dpo.run_dpo_stage``) on pairs from the model's own judged samples;
4. **error-weighted SFT** (``training.error_weighted_sft.run_error_weighted_stage``; ours, not the paper's):
   fresh training clips drawn where the DPO model still errs (skills self-distillation wore away), with
   sessions and think-incomplete examples;
5. **the stage table**: every stage's checkpoint (cold start, each self-distillation iteration,
   think-incomplete SFT, RL, DPO, error-weighted SFT) evaluated on the same held-out samples: accuracy per
   task, mean think length and the self-cognition error on held-out audio probes, greedy and sampled
   (``stage_table.json`` + ``.png``).

Every stage resumes from its own work directory (``work/supervised``, ``work/rl``, ``work/dpo``,
``work/error_weighted``), a finished stage returns at once, and an evaluated stage is not evaluated again,
so an interrupted run picks up where it stopped. The DPO model is kept in ``work/dpo_ckpt``; the final
stage's model is written to ``out``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepaudio_rt.training.config import DemoConfig
from stepaudio_rt.training.dpo import DpoConfig
from stepaudio_rt.training.error_weighted_sft import ErrorWeightedConfig
from stepaudio_rt.training.rl_config import RlConfig


@dataclass(frozen=True)
class MgrdConfig:
    """The four stages' recipes plus the size of the stage table's evaluation."""

    demo: DemoConfig = field(default_factory=DemoConfig.mgrd)
    rl: RlConfig = field(default_factory=RlConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    error_weighted: ErrorWeightedConfig = field(default_factory=ErrorWeightedConfig)
    table_n: int = 200  # held-out samples each stage is evaluated on (thinking mode)
    table_probes: int = 64  # held-out audio self-cognition probes per stage
    # replies sampled per probe at temperature 1 (0: none). Why: greedy answers hid the error the
    # contamination gives (0 or 1 of 64 probes at every stage), while sampled ones claimed "I can't hear"
    # in 2.7% of chains; the paper's error rates are rates over samples
    table_probe_samples: int = 8

    @classmethod
    def mini(cls) -> MgrdConfig:
        """The CI miniature: every stage on a few samples and steps."""
        return cls(DemoConfig.mini(text_model_claim_share=0.05), RlConfig.mini(), DpoConfig.mini(),
                   ErrorWeightedConfig.mini(), table_n=4, table_probes=2, table_probe_samples=2)

    def to_dict(self) -> dict[str, Any]:
        return {"demo": self.demo.to_dict(), "rl": self.rl.to_dict(), "dpo": self.dpo.to_dict(),
                "error_weighted": self.error_weighted.to_dict(), "table_n": self.table_n,
                "table_probes": self.table_probes, "table_probe_samples": self.table_probe_samples}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MgrdConfig:
        known = {"demo", "rl", "dpo", "error_weighted", "table_n", "table_probes", "table_probe_samples"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MgrdConfig keys: {', '.join(unknown)}")
        base = cls()
        return cls(
            DemoConfig.from_dict({**base.demo.to_dict(), **data.get("demo", {})}),
            RlConfig.from_dict({**base.rl.to_dict(), **data.get("rl", {})}),
            DpoConfig.from_dict({**base.dpo.to_dict(), **data.get("dpo", {})}),
            ErrorWeightedConfig.from_dict({**base.error_weighted.to_dict(), **data.get("error_weighted", {})}),
            int(data.get("table_n", base.table_n)),
            int(data.get("table_probes", base.table_probes)),
            int(data.get("table_probe_samples", base.table_probe_samples)),
        )


def stage_checkpoints(work: Path, cfg: MgrdConfig, out: Path) -> list[tuple[str, Path]]:
    """(stage name, checkpoint directory) in pipeline order, as ``train_mgrd`` lays them out."""
    sup = work / "supervised"
    stages = [("cold start", sup / "cold_start_ckpt")]
    stages += [(f"self-distillation {i}", sup / f"distill_{i}" / "ckpt") for i in range(1, cfg.demo.sd_iterations + 1)]
    if cfg.demo.ti_steps > 0:
        stages.append(("think-incomplete SFT", work / "supervised_ckpt"))
    else:
        stages[-1] = (stages[-1][0], work / "supervised_ckpt")  # the export equals the last stage's weights
    return [*stages, ("RL", work / "rl" / "ckpt"), ("DPO", work / "dpo_ckpt"), ("error-weighted SFT", out)]


def train_mgrd(out: str | Path, work_dir: str | Path, cfg: MgrdConfig | None = None, progress: bool = True) -> Path:
    """Run every stage (resuming what is done), then the stage table; returns ``out``."""
    from stepaudio_rt.training.demo import train_demo
    from stepaudio_rt.training.dpo import run_dpo_stage
    from stepaudio_rt.training.error_weighted_sft import run_error_weighted_stage
    from stepaudio_rt.training.rlvr import run_rl_stage

    cfg = cfg or MgrdConfig()
    out, work = Path(out), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "mgrd_recipe.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    timings: dict[str, float] = {}

    t = time.perf_counter()
    supervised = train_demo(work / "supervised_ckpt", cfg.demo, resume=True, work_dir=work / "supervised")
    timings["supervised_s"] = time.perf_counter() - t
    print(f"[train mgrd] supervised stages done -> {supervised}", flush=True)

    t = time.perf_counter()
    rl_ckpt = run_rl_stage(supervised, work / "rl" / "ckpt", work / "rl", cfg.rl, progress=progress)
    timings["rl_s"] = time.perf_counter() - t
    print(f"[train mgrd] RL stage done -> {rl_ckpt}", flush=True)

    t = time.perf_counter()
    dpo_ckpt = run_dpo_stage(rl_ckpt, work / "dpo_ckpt", work / "dpo", cfg.dpo)
    timings["dpo_s"] = time.perf_counter() - t
    print(f"[train mgrd] DPO stage done -> {dpo_ckpt}", flush=True)

    t = time.perf_counter()
    final = run_error_weighted_stage(dpo_ckpt, out, work / "error_weighted", cfg.error_weighted, cfg.demo,
                                     progress=progress)
    timings["error_weighted_s"] = time.perf_counter() - t
    print(f"[train mgrd] error-weighted SFT done -> {final}", flush=True)

    t = time.perf_counter()
    table = stage_table(stage_checkpoints(work, cfg, out), work / "table", work / "supervised" / "data",
                        n=cfg.table_n, probes=cfg.table_probes, probe_samples=cfg.table_probe_samples,
                        progress=progress)
    timings["stage_table_s"] = time.perf_counter() - t
    table["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    (work / "stage_table.json").write_text(json.dumps(table, indent=2) + "\n")
    plot_stage_table(table, work / "stage_table.png")
    print(format_stage_table(table), flush=True)
    return final


# ------------------------------------------------------------------------------------------ stage table


def stage_table(
    stages: list[tuple[str, Path]],
    eval_root: Path,
    data_dir: Path | None,
    n: int,
    probes: int,
    probe_samples: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Each stage's checkpoint on the same held-out samples (thinking mode): accuracy per task, overall,
    mean think length in tokens and the self-cognition error on held-out audio probes, greedy and over
    ``probe_samples`` replies per probe sampled at temperature 1. A stage evaluated before (its results
    newer than its weights) is read back, not evaluated again."""
    from stepaudio_rt.training.evaluate import ReasoningFigures, evaluate_checkpoint

    rows = []
    for name, ckpt in stages:
        eval_dir = eval_root / name.replace(" ", "_")
        summary_path = eval_dir / "eval.json"
        weights = ckpt / "model.safetensors"
        if summary_path.exists() and weights.exists() and summary_path.stat().st_mtime > weights.stat().st_mtime:
            summary = json.loads(summary_path.read_text())
        else:
            summary = evaluate_checkpoint(ckpt, eval_dir, n=n, data_dir=data_dir, progress=progress,
                                          modes=("thinking",), reasoning=ReasoningFigures(), probes=probes)
        rows.append({
            "stage": name,
            "checkpoint": str(ckpt),
            "accuracy": summary["accuracy"]["thinking"],
            "overall_accuracy": summary["overall_accuracy"]["thinking"],
            "mean_think_tokens": mean_think_tokens(ckpt, eval_dir / "eval_samples.jsonl"),
            "self_cognition_error": _probe_error(summary),
            "self_cognition_sampled_error": (
                sampled_self_cognition(ckpt, eval_dir / "probes_sampled.json", probes, probe_samples, progress)["error_rate"]
                if probes > 0 and probe_samples > 0 else None
            ),
        })
    return {"n": n, "probes": probes, "probe_samples": probe_samples, "mode": "thinking", "stages": rows}


def sampled_self_cognition(ckpt: Path, path: Path, n: int, k: int, progress: bool = True) -> dict[str, Any]:
    """The judge's share of ``k`` replies per held-out probe sampled at temperature 1 (through the serving
    engine, thinking mode, reasoning included); read back from ``path`` if newer than the weights."""
    from stepaudio_rt.training import self_cognition as sc
    from stepaudio_rt.training.self_distill import sample_chains

    weights = ckpt / "model.safetensors"
    if path.exists() and path.stat().st_mtime > weights.stat().st_mtime:
        return json.loads(path.read_text())
    probes = sc.make_probes(n, 0)
    chains = sample_chains(ckpt, probes, k=k, temperature=1.0, seed=0, max_tokens=64, progress=progress)
    flagged = [
        {"question": p.user_text, "reply": c}
        for p, cs in zip(probes, chains, strict=True)
        for c in cs
        if sc.judge(c, p.user_text, include_think=True).flagged
    ]
    result = {"probes": n, "samples_per_probe": k, "temperature": 1.0,
              "error_rate": len(flagged) / max(1, n * k), "flagged": flagged}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _probe_error(summary: dict[str, Any]) -> float | None:
    probes = summary.get("self_cognition_probes") or {}
    return probes.get("error_rate")


def mean_think_tokens(ckpt: Path, samples_path: Path) -> float | None:
    """Mean length, in the checkpoint's tokens, of the think blocks of the thinking-mode replies."""
    from stepaudio_rt.model.tokenizer import StepAudioTokenizer
    from stepaudio_rt.training.rewards import think_tokens

    if not samples_path.exists():
        return None
    tokenizer = StepAudioTokenizer.from_pretrained(ckpt)
    lengths = []
    for line in samples_path.read_text().splitlines():
        reply = json.loads(line)["replies"].get("thinking")
        if reply is not None:
            lengths.append(think_tokens(tokenizer, reply))
    return round(sum(lengths) / len(lengths), 2) if lengths else None


def format_stage_table(table: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    lines = [f"{'stage':<24}{'accuracy':>10}{'think tokens':>14}{'self-cog error':>16}{'sampled':>10}"]
    for r in table["stages"]:
        think = "n/a" if r["mean_think_tokens"] is None else f"{r['mean_think_tokens']:.1f}"
        lines.append(f"{r['stage']:<24}{100 * r['overall_accuracy']:>9.1f}%{think:>14}"
                     f"{pct(r['self_cognition_error']):>16}{pct(r.get('self_cognition_sampled_error')):>10}")
    return "\n".join(lines)


def plot_stage_table(table: dict[str, Any], out_path: Path) -> Path:
    """Three panels over the stages: accuracy per task (and overall), mean think length, self-cognition
    error."""
    from stepaudio_rt.training.plots import plt

    rows = table["stages"]
    xs = list(range(len(rows)))
    names = [r["stage"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), dpi=110)
    tasks = sorted({t for r in rows for t in r["accuracy"]})
    for task in tasks:
        axes[0].plot(xs, [100 * r["accuracy"].get(task, float("nan")) for r in rows], alpha=0.45, lw=1, label=task)
    axes[0].plot(xs, [100 * r["overall_accuracy"] for r in rows], color="black", lw=2.5, label="overall")
    axes[0].set_ylabel("held-out accuracy (%)")
    axes[0].set_ylim(0, 105)
    axes[0].legend(fontsize=6, ncol=2, loc="lower right")
    axes[1].plot(xs, [r["mean_think_tokens"] or 0 for r in rows], marker="o")
    axes[1].set_ylabel("mean think length (tokens)")
    axes[2].plot(xs, [100 * (r["self_cognition_error"] or 0) for r in rows], marker="o", color="tab:red",
                 label="greedy")
    if any(r.get("self_cognition_sampled_error") is not None for r in rows):
        axes[2].plot(xs, [100 * (r.get("self_cognition_sampled_error") or 0) for r in rows], marker="s",
                     color="tab:purple", label=f"sampled, {table.get('probe_samples')} per probe, T = 1")
        axes[2].legend(fontsize=7)
    axes[2].set_ylabel("self-cognition error (%)")
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"MGRD stages (held-out n={table['n']}, {table['probes']} probes, thinking mode)")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
