"""``stepaudio-rt bench`` (first-packet latency) against a live server, and its statistics helpers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from stepaudio_rt.cli import app
from stepaudio_rt.clients.bench_stats import PERCENTILES, summarize
from stepaudio_rt.clients.latency_bench import CLOCKS, BenchConfig
from stepaudio_rt.clients.questions import bigbench_texts
from stepaudio_rt.clients.server_metrics import add_growth, stage_means
from stepaudio_rt.clients.wav_stream import AudioInputError
from tests.conftest import LiveServer

PCTS = [f"p{p}" for p in PERCENTILES]


def test_summarize_orders_percentiles_and_handles_empty() -> None:
    rng = np.random.default_rng(0)
    stats = summarize(list(rng.lognormal(0, 1, 57)) + [None])
    assert stats["n"] == 57
    values = [stats[k] for k in PCTS]
    assert values == sorted(values) and stats["min"] <= values[0] and values[-1] <= stats["max"]
    assert summarize([]) == {"n": 0, "mean": None, **{k: None for k in PCTS}, "min": None, "max": None}


def test_stage_means_from_metric_snapshots() -> None:
    before = {"prefill": (1.0, 4.0), "tts_first_chunk": (2.0, 4.0)}
    after = {"prefill": (2.0, 6.0), "tts_first_chunk": (2.0, 4.0), "reasoning": (0.3, 3.0)}
    assert stage_means(before, after) == {
        "prefill": {"mean_s": 0.5, "count": 2},
        "reasoning": {"mean_s": 0.1, "count": 3},
    }
    assert stage_means(None, after) is None


def test_bigbench_texts_round_robin_and_word_limit(tmp_path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(
        {"name": "a", "task_prefix": "Answer:", "examples": [{"input": "one two"}, {"input": "x " * 100}]}
    ))
    (tmp_path / "b.json").write_text(json.dumps({"name": "b", "examples": [{"input": "three"}, {"input": "four"}]}))
    assert bigbench_texts(tmp_path, 3) == [("a-0", "Answer: one two"), ("b-0", "three"), ("b-1", "four")]
    with pytest.raises(AudioInputError, match="no BIG-bench task"):
        bigbench_texts(tmp_path / "empty", 3)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="chunk_ms"):
        BenchConfig(chunk_ms=500).validate()
    with pytest.raises(ValueError, match="concurrency"):
        BenchConfig(concurrency=[0]).validate()
    with pytest.raises(ValueError, match="trailing"):
        BenchConfig(trailing_silence_s=0.1).validate()


def test_bench_fast_writes_json_csv_png(live_server: LiveServer, tmp_path) -> None:
    out = tmp_path / "bench"
    # Plain `bench` with latency options runs the latency benchmark (no subcommand needed).
    result = CliRunner().invoke(app, ["bench", "--fast", "--url", live_server.http, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "first-packet latency" in result.output

    doc = json.loads((out / "latency.json").read_text())
    assert set(doc["levels"]) == {"1", "2"}
    assert doc["config"]["realtime_pace"] is True and doc["config"]["turn_detection"] == "server VAD"
    for level in doc["levels"].values():
        assert (level["turns"], level["ok"], level["errors"], level["timeouts"]) == (2, 2, 0, 0)
        for clock in CLOCKS:
            st = level["first_packet_s"][clock]
            assert st["n"] == 2
            assert 0 < st["min"] <= st["p50"] <= st["p90"] <= st["p95"] <= st["p99"] <= st["max"]
        # Our server exports its per-stage histograms: the breakdown is present for every level.
        assert {"finalize", "prefill", "tts_first_chunk"} <= set(level["server_stages"])
        assert level["client_stages_s"]["vad_endpoint"]["n"] == 2
    for turn in doc["turns"]:
        # speech_stopped comes after the speech ends, so its clock is shorter.
        assert turn["latency_speech_end_s"] > turn["latency_speech_stopped_s"] > 0

    with (out / "latency_turns.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["outcome"] for r in rows} == {"ok"}
    with (out / "latency_summary.csv").open() as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 2 * len(CLOCKS)
    for row in summary:
        ps = [float(row[f"{p}_s"]) for p in PCTS]
        assert ps == sorted(ps)
    png = (out / "latency_cdf.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_bench_manual_mode_reports_commit_clock(live_server: LiveServer, tmp_path) -> None:
    out = tmp_path / "manual"
    result = CliRunner().invoke(
        app,
        ["bench", "latency", "--url", live_server.http, "--out", str(out), "--n", "1", "--concurrency", "1",
         "--questions", "1", "--manual"],
    )
    assert result.exit_code == 0, result.output
    level = json.loads((out / "latency.json").read_text())["levels"]["1"]
    assert level["ok"] == 1
    assert level["first_packet_s"]["commit"]["n"] == 1
    assert level["first_packet_s"]["speech_stopped"]["n"] == 0  # no server VAD, no such clock


def test_bench_errors_and_other_subcommands(tmp_path) -> None:
    runner = CliRunner()
    down = runner.invoke(app, ["bench", "latency", "--url", "127.0.0.1:9", "--n", "1", "--concurrency", "1",
                               "--questions", "1", "--out", str(tmp_path / "down")])
    assert down.exit_code == 0, down.output
    level = json.loads((tmp_path / "down" / "latency.json").read_text())["levels"]["1"]
    assert (level["ok"], level["errors"]) == (0, 1)
    assert "cannot connect" in json.loads((tmp_path / "down" / "latency.json").read_text())["turns"][0]["error"]
    bad = runner.invoke(app, ["bench", "--concurrency", "one,two"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output
    assert runner.invoke(app, ["bench", "engine", "--help"]).exit_code == 0
    assert runner.invoke(app, ["bench", "gpu", "--help"]).exit_code == 0


def test_bench_thinking_mode_reaches_the_server(live_server: LiveServer, tmp_path) -> None:
    speak_first = 'stepaudio_rt_first_packet_by_mode_seconds_count{mode="speak_first"}'
    before = live_server.metric(speak_first)
    out = tmp_path / "mps"
    result = CliRunner().invoke(
        app,
        ["bench", "latency", "--url", live_server.http, "--out", str(out), "--n", "1", "--concurrency", "1",
         "--questions", "1", "--manual", "--thinking-mode", "speak_first"],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "latency.json").read_text())
    assert doc["config"]["thinking_mode"] == "speak_first" and doc["levels"]["1"]["ok"] == 1
    assert live_server.metric(speak_first) == before + 1
    with pytest.raises(ValueError, match="thinking_mode"):
        BenchConfig(thinking_mode="eventually").validate()


def test_add_growth_sums_one_variants_turns() -> None:
    total: dict[str, list[float]] = {}
    add_growth(total, {"prefill": (1.0, 4.0)}, {"prefill": (1.5, 5.0), "end_of_turn_complete": (0.05, 1.0)})
    add_growth(total, {"prefill": (2.0, 6.0)}, {"prefill": (2.25, 7.0)})
    add_growth(total, None, {"prefill": (9.0, 9.0)})  # no metrics before: nothing to attribute
    assert total == {"prefill": [0.75, 2.0], "end_of_turn_complete": [0.05, 1.0]}


def test_turns_bench_reports_the_server_breakdown_per_variant(live_server: LiveServer, tmp_path) -> None:
    """``bench turns`` scrapes our server's /metrics around each latency turn: each variant gets its own
    stage means, and semantic_vad's include the end-of-turn model's scoring."""
    import asyncio

    from stepaudio_rt.clients.bench_turns import TurnsConfig, run_turns_bench

    cfg = TurnsConfig(url=live_server.http, latency_turns=1, paused_turns=0, paused_sets=(), progress=False,
                      out_dir=tmp_path, latency_variants=("server_vad", "semantic_vad"))
    summary = asyncio.run(run_turns_bench(cfg))["summary"]
    for mode in ("server_vad", "semantic_vad"):
        stages = summary[mode]["server_stages"]
        assert stages["server_first_packet"]["count"] == 1, stages  # the measured turn, not the warm-up
        assert stages["prefill"]["mean_s"] > 0
    assert not any(k.startswith("end_of_turn") for k in summary["server_vad"]["server_stages"])
    assert any(k.startswith("end_of_turn") for k in summary["semantic_vad"]["server_stages"])
    assert "speculative_lead" not in summary["server_vad"]["server_stages"]  # server_vad never speculates
