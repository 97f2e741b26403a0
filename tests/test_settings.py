"""Settings: model resolution (directory, hub id, demo) and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.settings import Settings, SettingsError


def test_local_checkpoint_directory(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "ck")
    assert Settings(model_path=str(ckpt)).resolved_model_path() == ckpt


def test_hub_id_is_passed_to_the_loader() -> None:
    assert Settings(model_path="stepfun-ai/Step-Audio-R1.1").resolved_model_path() == "stepfun-ai/Step-Audio-R1.1"


@pytest.mark.parametrize("bad", ["./not/here", "/nonexistent/dir", "a/b/c"])
def test_missing_directory_is_a_clear_error(bad: str) -> None:
    with pytest.raises(SettingsError, match="not a checkpoint directory"):
        Settings(model_path=bad).resolved_model_path()


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPAUDIO_RT_PORT", "9123")
    monkeypatch.setenv("STEPAUDIO_RT_API_KEYS", "k1,k2")
    s = Settings()
    assert s.port == 9123 and s.api_keys == ["k1", "k2"]


def test_serving_defaults_come_from_the_checkpoint_unless_set() -> None:
    greedy = {"do_sample": False, "temperature": 0.0, "audio_chunk_seconds": 1.5}
    assert Settings().temperature_for(greedy) == 0.0
    assert Settings().temperature_for({"temperature": 0.6}) == 0.6
    assert Settings().temperature_for({}) == 0.7
    assert Settings(temperature=1.1).temperature_for(greedy) == 1.1
    assert Settings().listen_chunk_seconds_for(greedy) == 1.5
    assert Settings().listen_chunk_seconds_for({}) == 2.0
    assert Settings(listen_chunk_seconds=3.0).listen_chunk_seconds_for(greedy) == 3.0


def test_thinking_mode_comes_from_request_then_server_then_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio_rt.server.__main__ import parse_args

    ckpt = {"thinking_mode": "think_first", "reasoning_segment_tokens": 20, "reply_segment_tokens": 6}
    assert Settings().mind_paced_for({}) is None  # sequential unless someone asks
    from_ckpt = Settings().mind_paced_for(ckpt)
    assert from_ckpt is not None and (from_ckpt.mode, from_ckpt.reasoning_segment_tokens,
                                      from_ckpt.reply_segment_tokens) == ("think_first", 20, 6)
    defaults = Settings(thinking_mode="speak_first").mind_paced_for({})
    assert defaults is not None and (defaults.reasoning_segment_tokens, defaults.reply_segment_tokens) == (80, 24)
    server = Settings(thinking_mode="speak_first", reply_segment_tokens=9).mind_paced_for(ckpt)
    assert server is not None and (server.mode, server.reasoning_segment_tokens, server.reply_segment_tokens) == (
        "speak_first", 20, 9)
    assert Settings(thinking_mode="speak_first").mind_paced_for(ckpt, mode="sequential") is None
    request = Settings().mind_paced_for(ckpt, mode="speak_first", reasoning_segment_tokens=40)
    assert request is not None and (request.mode, request.reasoning_segment_tokens) == ("speak_first", 40)
    monkeypatch.setenv("STEPAUDIO_RT_THINKING_MODE", "speak_first")
    assert Settings().thinking_mode == "speak_first"
    flags = parse_args(["--thinking-mode", "think_first", "--reasoning-lag-policy", "speak", "--playback-lead-ms", "900"])
    assert (flags.thinking_mode, flags.reasoning_lag_policy, flags.playback_lead_ms) == ("think_first", "speak", 900.0)
    with pytest.raises(ValueError):
        Settings(thinking_mode="sometimes")  # type: ignore[arg-type]


def test_torch_threads_leave_a_core_to_tts_and_turn_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    from stepaudio_rt.server.__main__ import parse_args
    from stepaudio_rt.server.app import cpu_threads

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert cpu_threads(Settings()) == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert cpu_threads(Settings()) == 15
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert cpu_threads(Settings()) == 1
    assert cpu_threads(parse_args(["--torch-threads", "3"])) == 3
    monkeypatch.setenv("STEPAUDIO_RT_TORCH_THREADS", "2")
    assert cpu_threads(Settings()) == 2
    with pytest.raises(ValueError, match="torch_threads"):
        Settings(torch_threads=0)
