"""The benchmark scripts run (tiny shapes, CPU): they must not rot between GPU sessions."""

from __future__ import annotations

from stepaudio_rt.model.bench import bench_engine
from stepaudio_rt.model.bench_gpu import run_bench
from stepaudio_rt.model.testing import tiny_config


async def test_gpu_bench_code_path_runs_on_cpu_with_tiny_shapes() -> None:
    result = await run_bench(new_tokens=6, config=tiny_config(), device="cpu", dtype=__import__("torch").float32,
                             chunk_seconds=2.0)
    assert result["prefill_400_audio_50_text"]["audio_tokens"] == 2 * (25 + 2)
    assert result["decode_batch1_ms_per_step"] > 0 and result["decode_batch8_tokens_per_s"] > 0


def test_engine_bench_reports_both_sides() -> None:
    r = bench_engine(prompt_tokens=16, new_tokens=6, rounds=1, hidden=64, layers=2)
    assert r.engine_decode_ms > 0 and r.hf_decode_ms > 0 and r.decode_speedup > 0
