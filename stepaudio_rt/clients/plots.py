"""Latency CDF plot (PNG): one panel per clock, one line per concurrency level.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, never pyplot: no global figure state,
no display backend needed, safe inside a server or a test process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from stepaudio_rt.clients.bench_stats import ecdf


def plot_latency_cdf(
    samples: Mapping[str, Mapping[int, Sequence[float]]],
    path: str | Path,
    titles: Mapping[str, str] | None = None,
) -> Path:
    """``samples[clock][concurrency]`` = latencies in seconds -> a PNG at ``path``."""
    clocks = list(samples)
    fig = Figure(figsize=(5.0 * max(1, len(clocks)), 4.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, max(1, len(clocks)), squeeze=False)[0]
    for ax, clock in zip(axes, clocks, strict=False):
        for level, values in sorted(samples[clock].items()):
            if not values:
                continue
            xs, ys = ecdf(values)
            ax.step(xs * 1000.0, ys, where="post", label=f"concurrency {level} (n={len(values)})")
        ax.set_title((titles or {}).get(clock, clock), fontsize=10)
        ax.set_xlabel("first-packet latency (ms)")
        ax.set_ylabel("fraction of turns")
        ax.set_ylim(0, 1.02)
        ax.grid(True, alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_turns(doc: Mapping[str, object], path: str | Path) -> Path:
    """``bench turns`` results -> a PNG: first-audio latency CDF per variant, premature cuts per set."""
    turns = doc["turns"]
    summary = doc["summary"]
    assert isinstance(turns, list) and isinstance(summary, Mapping)
    fig = Figure(figsize=(11.0, 4.0), dpi=110, layout="constrained")
    lat_ax, cut_ax = fig.subplots(1, 2)
    for mode in summary:
        values = [t["speech_end_to_first_audio_s"] for t in turns
                  if t["mode"] == mode and t["kind"] == "latency" and t["speech_end_to_first_audio_s"] is not None]
        if values:
            xs, ys = ecdf(values)
            lat_ax.step(xs * 1000.0, ys, where="post", label=f"{mode} (n={len(values)})")
    if not lat_ax.has_data():
        lat_ax.text(0.5, 0.5, "no latency turns in this run", ha="center", va="center", transform=lat_ax.transAxes)
    lat_ax.axvline(400, color="grey", linestyle=":", label="target 400 ms")
    lat_ax.set_xlabel("last speech byte -> first audio (ms)")
    lat_ax.set_ylabel("fraction of turns")
    lat_ax.set_title("complete questions, concurrency 1", fontsize=10)
    lat_ax.set_ylim(0, 1.02)
    lat_ax.grid(True, alpha=0.3)
    lat_ax.legend(fontsize=8, loc="lower right")
    sets = sorted({k for s in summary.values() for k in s if str(k).startswith("paused_")})
    modes = [m for m in summary if any(k in summary[m] for k in sets)]
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        rates = [100.0 * summary[mode].get(k, {}).get("premature_rate", 0.0) for k in sets]
        bars = cut_ax.bar([j + i * width for j in range(len(sets))], rates, width, label=mode)
        labels = [f"{summary[mode][k]['premature_cuts']}/{summary[mode][k]['turns']}" if k in summary[mode] else ""
                  for k in sets]
        cut_ax.bar_label(bars, labels=labels, fontsize=7)
    cut_ax.set_xticks([j + width * (len(modes) - 1) / 2 for j in range(len(sets))],
                      [k.removeprefix("paused_") for k in sets])
    cut_ax.set_ylabel("turns cut before the user finished (%)")
    cut_ax.set_title("400-700 ms pause inside the question", fontsize=10)
    cut_ax.set_ylim(0, 105)
    cut_ax.grid(True, axis="y", alpha=0.3)
    if modes:
        cut_ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
