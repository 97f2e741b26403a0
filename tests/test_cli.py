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
