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


async def test_listen_bench_runs_on_a_tiny_checkpoint(tiny_checkpoint, capsys) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from stepaudio_rt.server.bench_listen import main_async

    args = argparse.Namespace(model=tiny_checkpoint, device="cpu", pace=0.0, repeats=1, tts="none",
                              full_shapes=False, listen_chunk_seconds=1.5)
    await main_async(args)
    out = capsys.readouterr().out
    assert "listen chunks: at most 1.5 s" in out
    # 20 s in chunks of at most 1.5 s: only the tail (under 1.5 s) is left at end of turn
    line = next(ln for ln in out.splitlines() if "20 s utterance" in ln and "listen-while-thinking" in ln)
    assert float(line.split("tail ")[1].split(" s")[0]) < 1.5
    assert "20 s / 2 s ratio" in out


async def test_mps_bench_runs_every_mode_and_length(endless_checkpoint) -> None:  # type: ignore[no-untyped-def]
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.streaming.bench_mps import run_bench as run_mps

    engine = TorchEngine.from_pretrained(endless_checkpoint, max_contexts=8, max_context_tokens=1024, progress=False)
    try:
        r = await run_mps(engine, None, repeats=1, lengths=(0, 24), reasoning_segment_tokens=8,
                          reply_segment_tokens=4, progress=False)
    finally:
        await engine.aclose()
    assert set(r["first_audio_ms"]) == {"sequential", "think_first", "speak_first"}
    assert all(v > 0 for series in r["first_audio_ms"].values() for v in series.values())
    assert r["first_audio_is"] == "first reply text (no TTS)"
    assert r["round_overhead"]["rounds"] >= 2 and r["round_overhead"]["decode_step_ms"] > 0
    assert r["streams"]["one_stream_tok_s"] > 0 and r["streams"]["per_stream_two_active_tok_s"] > 0


async def test_mps_bench_full_shapes_path_runs_with_tiny_shapes_on_cpu() -> None:
    import torch

    from stepaudio_rt.streaming.bench_mps import build_random_engine, stream_throughput

    engine = build_random_engine(tiny_config(), device="cpu", dtype=torch.float32)
    try:
        r = await stream_throughput(engine, tokens=8)
    finally:
        await engine.aclose()
    assert r["one_stream_tok_s"] > 0 and r["per_stream_two_active_tok_s"] > 0


async def test_pitch_probe_counts_every_question_by_voice_variant(tiny_checkpoint, capsys) -> None:  # type: ignore[no-untyped-def]
    import importlib.util
    from pathlib import Path

    import numpy as np

    from stepaudio_rt.training.data.tasks import gen_voice_pitch

    spec = importlib.util.spec_from_file_location("pitch_probe", Path(__file__).parent.parent / "scripts" / "pitch_probe.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    rng = np.random.default_rng(0)
    samples = [gen_voice_pitch(rng, "eval", True) for _ in range(3)]
    await module.probe(str(tiny_checkpoint), samples)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{tiny_checkpoint}: ") and "/3 (" in line
    counted = [part.rsplit(" ", 1)[1] for part in line.split("(", 1)[1].rstrip(")").split(", ")]
    assert sum(int(c.split("/")[1]) for c in counted) == 3  # every question in one variant/label cell
