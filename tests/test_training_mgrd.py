"""``stepaudio-rt train mgrd`` in miniature: every MGRD stage runs in order on a few samples and steps,
each stage's checkpoint differs from the one before, the stage table covers every stage, and a second run
resumes everything (nothing is trained again)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_miniature_mgrd_runs_every_stage_in_order_and_tabulates_them(tmp_path: Path) -> None:
    from stepaudio_rt.training.mgrd import MgrdConfig, stage_checkpoints, train_mgrd

    cfg = MgrdConfig.mini()
    work, out = tmp_path / "work", tmp_path / "ckpt"
    final = train_mgrd(out, work, cfg, progress=False)
    assert final == out and (out / "config.json").exists()

    stages = stage_checkpoints(work, cfg, out)
    names = [name for name, _ in stages]
    assert names == ["cold start", "self-distillation 1", "self-distillation 2", "think-incomplete SFT", "RL", "DPO",
                     "error-weighted SFT"]
    # RL, DPO and error-weighted SFT each moved the decoder (the supervised stages are covered by their own tests)
    weights = {name: load_file(str(path / "model.safetensors")) for name, path in stages}
    for before, after in (("think-incomplete SFT", "RL"), ("RL", "DPO"), ("DPO", "error-weighted SFT")):
        moved = [k for k in weights[after] if not weights[after][k].equal(weights[before][k])]
        assert moved, f"{after} left every tensor of {before} unchanged"
        assert all(not k.startswith("encoder.") for k in moved), moved[:5]  # the encoder stays frozen

    table = json.loads((work / "stage_table.json").read_text())
    assert [r["stage"] for r in table["stages"]] == names
    for row in table["stages"]:
        assert 0.0 <= row["overall_accuracy"] <= 1.0 and row["accuracy"]
        assert row["self_cognition_error"] is not None and 0.0 <= row["self_cognition_error"] <= 1.0
        # over replies sampled per probe: a rate in steps of 1 / (probes x samples)
        sampled = row["self_cognition_sampled_error"]
        assert sampled is not None and 0.0 <= sampled <= 1.0
        assert abs(sampled * table["probes"] * table["probe_samples"] - round(sampled * table["probes"] * table["probe_samples"])) < 1e-9
        assert row["mean_think_tokens"] is not None and row["mean_think_tokens"] >= 0
    assert set(table["timings_s"]) == {"supervised_s", "rl_s", "dpo_s", "error_weighted_s", "stage_table_s"}
    assert (work / "stage_table.png").stat().st_size > 10_000

    # a second run resumes: no stage trains again (only the supervised export is rewritten, unchanged)
    stamp = {name: (path / "model.safetensors").stat().st_mtime_ns for name, path in stages}
    train_mgrd(out, work, cfg, progress=False)
    again = {name: (path / "model.safetensors").stat().st_mtime_ns for name, path in stages}
    assert {k: v for k, v in again.items() if k != "think-incomplete SFT"} == {
        k: v for k, v in stamp.items() if k != "think-incomplete SFT"
    }
    export = load_file(str(dict(stages)["think-incomplete SFT"] / "model.safetensors"))
    assert all(export[k].equal(weights["think-incomplete SFT"][k]) for k in export)
