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
