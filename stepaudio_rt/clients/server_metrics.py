"""The server-reported per-stage latency breakdown, read from Prometheus ``/metrics``.

Our server reports no per-turn timings on the wire (``response.done`` carries only the standard fields,
which strict clients require), but it exports histograms: ``stepaudio_rt_stage_seconds{stage=...}``
(finalize = end-of-turn prefill, prefill, reasoning, tts_first_chunk),
``stepaudio_rt_first_packet_seconds`` and ``stepaudio_rt_end_of_turn_score_seconds{verdict=...}``
(semantic_vad's Smart Turn scoring, reported as stage ``end_of_turn_<verdict>``) and
``stepaudio_rt_speculative_lead_seconds`` (how long a released speculative response had run when the turn
ended, stage ``speculative_lead``). Scraping them before and after a benchmark level and dividing the
growth of ``_sum`` by the growth of ``_count`` gives the mean of each stage over exactly that level's
responses. Servers without these metrics (any other implementation) simply yield no breakdown.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Snapshot = dict[str, tuple[float, float]]  # stage -> (sum, count)

STAGE_METRIC = "stepaudio_rt_stage_seconds"
FIRST_PACKET_METRIC = "stepaudio_rt_first_packet_seconds"
END_OF_TURN_METRIC = "stepaudio_rt_end_of_turn_score_seconds"
SPECULATIVE_LEAD_METRIC = "stepaudio_rt_speculative_lead_seconds"


def scrape(root_url: str, timeout: float = 5.0) -> Snapshot | None:
    """Stage histograms' (sum, count) from ``root_url/metrics``; None when unavailable or absent."""
    try:
        with urllib.request.urlopen(root_url.rstrip("/") + "/metrics", timeout=timeout) as resp:  # noqa: S310
            text = resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    snap: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name not in (STAGE_METRIC, FIRST_PACKET_METRIC, END_OF_TURN_METRIC, SPECULATIVE_LEAD_METRIC):
                continue
            for sample in family.samples:
                if family.name == END_OF_TURN_METRIC:
                    stage = f"end_of_turn_{sample.labels.get('verdict', 'unknown')}"
                elif family.name == SPECULATIVE_LEAD_METRIC:
                    stage = "speculative_lead"
                else:
                    stage = sample.labels.get("stage", "server_first_packet")
                slot = snap.setdefault(stage, [0.0, 0.0])
                if sample.name.endswith("_sum"):
                    slot[0] = sample.value
                elif sample.name.endswith("_count"):
                    slot[1] = sample.value
    except ValueError:
        return None  # not Prometheus text: some other server's /metrics page
    return {k: (v[0], v[1]) for k, v in snap.items()} or None


def add_growth(total: dict[str, list[float]], before: Snapshot | None, after: Snapshot | None) -> None:
    """Add each stage's (sum, count) growth between two snapshots to ``total`` (stage -> [sum, count]), to
    collect one variant's responses when variants take turns on one server."""
    if before is None or after is None:
        return
    for stage, (sum_after, count_after) in after.items():
        sum_before, count_before = before.get(stage, (0.0, 0.0))
        slot = total.setdefault(stage, [0.0, 0.0])
        slot[0] += sum_after - sum_before
        slot[1] += count_after - count_before


def stage_means(before: Snapshot | None, after: Snapshot | None) -> dict[str, dict[str, float]] | None:
    """Mean seconds and response count per stage between two snapshots (None without both)."""
    if before is None or after is None:
        return None
    out: dict[str, dict[str, float]] = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count - count0 > 0:
            out[stage] = {"mean_s": round((total - total0) / (count - count0), 4), "count": int(count - count0)}
    return out
