"""Summary statistics for latency samples: count, mean and the percentiles latency reports use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def summarize(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """``n``, ``mean``, ``p50`` ... ``p99``, ``min``, ``max`` in seconds over the non-missing values.

    Percentiles use linear interpolation between order statistics (numpy's default), which is monotone
    in the percentile, so p50 <= p90 <= p95 <= p99 always holds. With no samples every statistic is None.
    """
    xs = np.asarray([v for v in values if v is not None], dtype=np.float64)
    out: dict[str, float | int | None] = {"n": int(xs.size)}
    if xs.size == 0:
        out.update({"mean": None, **{f"p{p}": None for p in PERCENTILES}, "min": None, "max": None})
        return out
    qs = np.percentile(xs, PERCENTILES)
    out["mean"] = round(float(xs.mean()), 4)
    out.update({f"p{p}": round(float(q), 4) for p, q in zip(PERCENTILES, qs, strict=True)})
    out["min"], out["max"] = round(float(xs.min()), 4), round(float(xs.max()), 4)
    return out


def ecdf(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical cumulative fractions (for CDF plots)."""
    xs = np.sort(np.asarray(values, dtype=np.float64))
    return xs, np.arange(1, xs.size + 1) / max(xs.size, 1)
