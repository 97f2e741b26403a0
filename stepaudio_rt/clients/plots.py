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
