"""The `stepaudio-rt` command line: inspect, help, bench wiring."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from stepaudio_rt.cli import app
from stepaudio_rt.model.testing import build_tiny_checkpoint

runner = CliRunner()


def test_inspect_verifies_a_good_checkpoint(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "ok")
    result = runner.invoke(app, ["inspect", str(ckpt)])
    assert result.exit_code == 0, result.output
    assert "StepAudio2ForCausalLM" in result.output and "all tensors verified" in result.output
    assert "audio_patch=" in result.output


def test_inspect_names_the_missing_tensor(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "bad")
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["adapter.conv.weight"]
    save_file(tensors, str(ckpt / "model.safetensors"))
    result = runner.invoke(app, ["inspect", str(ckpt), "--no-values"])
    assert result.exit_code == 1
    assert "adapter.conv.weight" in result.output


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "inspect", "bench", "train"):
        assert command in result.output


def test_train_demo_mini_and_eval_through_the_cli(tmp_path: Path) -> None:
    import shutil

    import pytest

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make system-deps)")
    out, work = tmp_path / "ckpt", tmp_path / "work"
    result = runner.invoke(app, ["train", "demo", "--mini", "--out", str(out), "--work", str(work)])
    assert result.exit_code == 0, result.output
    assert (out / "config.json").exists() and (out / "generation_config.json").exists()
    result = runner.invoke(
        app, ["eval", "--model", str(out), "--out", str(tmp_path / "eval"), "-n", "4", "--probes", "3"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval" / "eval.json").exists() and (tmp_path / "eval" / "eval_accuracy.png").exists()
    import json

    probes = json.loads((tmp_path / "eval" / "eval.json").read_text())["self_cognition_probes"]
    assert probes["n"] == 3 and 0.0 <= probes["error_rate"] <= 1.0 and "self-cognition probes" in result.output
    # a few chosen tasks only, and a typo named instead of a traceback
    result = runner.invoke(
        app,
        ["eval", "--model", str(out), "--out", str(tmp_path / "eval_tasks"), "-n", "3", "--probes", "0",
         "--quick", "--modes", "thinking", "--tasks", "pause_length,beep_bursts"],
    )
    assert result.exit_code == 0, result.output
    counts = json.loads((tmp_path / "eval_tasks" / "eval.json").read_text())["counts"]
    assert set(counts) <= {"pause_length", "beep_bursts"} and sum(counts.values()) == 3
    result = runner.invoke(app, ["eval", "--model", str(out), "--tasks", "pause_lenght"])
    assert result.exit_code == 2 and "pause_lenght" in result.output
