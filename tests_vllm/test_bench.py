"""The vLLM benchmarks run end to end (tiny shapes on CPU); their numbers are reported, never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _run(args: list[str], tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, *args, "--out", str(out)], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_bench_engine_vllm_against_torch(vllm_checkpoint: Path, tmp_path: Path) -> None:
    result = _run(["-m", "stepaudio_rt.cli", "bench", "engine", "--engine", "vllm", "--model", str(vllm_checkpoint),
                   "--prompt-tokens", "64", "--new-tokens", "8", "--rounds", "1"], tmp_path)  # fmt: skip
    ratios = result["ratios_vllm_over_torch"]
    assert set(ratios) == {"prefill_tok_s", "decode_ms", "batch8_step_ms", "end_of_turn_ms"}
    assert all(v > 0 for v in ratios.values())


def test_gpu_bench_script_runs_on_tiny_shapes(tmp_path: Path) -> None:
    result = _run(["-m", "stepaudio_rt.model.bench_vllm_gpu", "--tiny", "--rounds", "1", "--new-tokens", "4",
                   "--max-model-len", "2048"], tmp_path)  # fmt: skip
    for key in ("end_of_turn_2s_ms", "end_of_turn_20s_ms", "speak_first_first_token_ms", "decode_batch1_ms_per_token",
                "decode_batch8_ms_per_token"):  # fmt: skip
        assert result[key] > 0, key
    assert result["device"] == "cpu" and result["tiny"] is True
