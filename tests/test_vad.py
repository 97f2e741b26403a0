"""Turn detection on real (espeak-ng) speech surrounded by known silence and noise."""

from __future__ import annotations

import numpy as np
import pytest

from stepaudio_rt.streaming.vad import (
    SEMANTIC_MAX_SILENCE_MS,
    IdleTimeout,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    VadConfig,
    VadConfigError,
    VadEvent,
)
from tests.audio_fixtures import pad, resample, silence, speak_espeak

SR = 16000
TOL_MS = 150


def _utterance(text: str = "The quick brown fox jumps over the lazy dog.") -> np.ndarray:
    audio, sr = speak_espeak(text)
    return resample(audio, sr, SR)


def _run(det: TurnDetector, audio: np.ndarray, chunk: int = 480) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i in range(0, len(audio), chunk):
        events += det.feed(audio[i : i + chunk])
    return events


def _ms(n_samples: int) -> float:
    return 1000.0 * n_samples / SR


def test_single_utterance_boundaries_match_truth() -> None:
    speech = _utterance()
    audio = pad(speech, SR, before_s=1.0, after_s=1.5)
    det = TurnDetector(VadConfig(prefix_padding_ms=0))
    events = _run(det, audio)
    assert len(events) == 2, events
    start, stop = events
    assert isinstance(start, SpeechStarted) and isinstance(stop, SpeechStopped)
    assert abs(start.audio_start_ms - 1000) <= TOL_MS
    assert abs(stop.audio_end_ms - (1000 + _ms(len(speech)))) <= TOL_MS
    assert not det.in_speech


def test_in_speech_and_stop_is_reported_after_silence_duration() -> None:
    speech = _utterance("What is seven plus five?")
    det = TurnDetector(VadConfig(silence_duration_ms=700))
    assert _run(det, pad(speech, SR, 0.5, 0.0)) and det.in_speech
    # 400 ms of silence is below the 700 ms silence duration: still in the turn.
    assert det.feed(silence(0.4, SR)) == [] and det.in_speech
    events = det.feed(silence(0.6, SR))
    assert len(events) == 1 and isinstance(events[0], SpeechStopped)
    assert det.position_ms - events[0].audio_end_ms >= 700


def test_prefix_padding_shifts_start_and_clamps_at_zero() -> None:
    speech = _utterance()
    audio = pad(speech, SR, before_s=1.0, after_s=1.0)
    starts = {}
    for padding in (0, 300):
        events = _run(TurnDetector(VadConfig(prefix_padding_ms=padding)), audio)
        starts[padding] = events[0].audio_start_ms
    assert starts[0] - starts[300] == 300
    # Speech 200 ms into the stream with 300 ms padding: the start cannot go below 0.
    early = _run(TurnDetector(VadConfig(prefix_padding_ms=300)), pad(speech, SR, 0.2, 1.0))
    assert isinstance(early[0], SpeechStarted) and early[0].audio_start_ms == 0


def test_long_pause_gives_two_turns_short_pause_one() -> None:
    a = _utterance("Hello there.")
    b = _utterance("How are you today?")
    cfg = VadConfig(silence_duration_ms=500, prefix_padding_ms=0)
    long_pause = np.concatenate([pad(a, SR, 0.5, 1.2), pad(b, SR, 0, 1.0)])
    events = _run(TurnDetector(cfg), long_pause)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * 2
    assert abs(events[2].audio_start_ms - (500 + _ms(len(a)) + 1200)) <= TOL_MS

    short_pause = np.concatenate([pad(a, SR, 0.5, 0.25), pad(b, SR, 0, 1.0)])
    events = _run(TurnDetector(cfg), short_pause)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert abs(events[1].audio_end_ms - _ms(len(short_pause) - SR)) <= TOL_MS


@pytest.mark.parametrize("level", [0.0, 0.003, 0.03, 0.2])
def test_silence_and_stationary_noise_give_no_turn(level: float) -> None:
    noise = (np.random.default_rng(7).standard_normal(SR * 4) * level).astype(np.float32)
    det = TurnDetector(VadConfig())
    assert _run(det, noise) == []
    assert not det.in_speech


def test_speech_in_noise_is_still_detected() -> None:
    speech = _utterance()
    audio = pad(speech, SR, 1.0, 1.5)
    audio = audio + (np.random.default_rng(3).standard_normal(len(audio)) * 0.01).astype(np.float32)
    events = _run(TurnDetector(VadConfig(prefix_padding_ms=0)), audio)
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    assert abs(events[0].audio_start_ms - 1000) <= TOL_MS


def test_a_click_does_not_start_a_turn() -> None:
    # One 20 ms burst of loud speech-band audio in silence: a single voiced frame must not flip the state.
    speech = _utterance()
    burst = speech[len(speech) // 2 : len(speech) // 2 + 320]
    audio = np.concatenate([silence(1.0, SR), burst, silence(1.0, SR)])
    assert _run(TurnDetector(VadConfig()), audio) == []


def test_chunk_size_does_not_change_events_and_int16_matches_float() -> None:
    audio = pad(_utterance("Hello there."), SR, 0.7, 1.0)
    reference = _run(TurnDetector(VadConfig()), audio, chunk=320)
    assert reference
    for chunk in (1, 77, 4000, len(audio)):
        assert _run(TurnDetector(VadConfig()), audio, chunk=chunk) == reference
    as_int16 = (np.clip(audio, -1, 1) * 32767).round().astype(np.int16)
    assert _run(TurnDetector(VadConfig()), as_int16) == reference


def test_reset_restarts_the_clock() -> None:
    audio = pad(_utterance("Hello there."), SR, 0.7, 1.0)
    det = TurnDetector(VadConfig())
    first = _run(det, audio)
    det.feed(silence(2.0, SR))
    det.reset()
    assert det.position_ms == 0 and not det.in_speech
    assert _run(det, audio) == first


def test_semantic_vad_eagerness_changes_end_of_turn_delay() -> None:
    speech = _utterance("Hello there.")
    audio = pad(speech, SR, 0.5, 5.0)
    stop_at = {}
    for eagerness in ("high", "low"):
        det = TurnDetector(VadConfig.from_turn_detection({"type": "semantic_vad", "eagerness": eagerness}))
        for i in range(0, len(audio), 320):
            if any(isinstance(e, SpeechStopped) for e in det.feed(audio[i : i + 320])):
                stop_at[eagerness] = det.position_ms
                break
    delay = stop_at["low"] - stop_at["high"]
    assert delay == SEMANTIC_MAX_SILENCE_MS["low"] - SEMANTIC_MAX_SILENCE_MS["high"]


def test_idle_timeout_fires_once_and_rearms() -> None:
    det = TurnDetector(VadConfig(idle_timeout_ms=1000))
    events = det.feed(silence(2.5, SR))
    assert events == [IdleTimeout(audio_end_ms=1000)]
    det.restart_idle_timer()
    assert det.feed(silence(1.0, SR)) == [IdleTimeout(audio_end_ms=3500)]
    # Speech, then 1 s of idleness after the stop re-arms it without an explicit restart.
    events = _run(det, pad(_utterance("Hello there."), SR, 0, 3.0))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped, IdleTimeout]
    assert events[2].audio_end_ms >= events[1].audio_end_ms + 1000


def test_no_idle_timeout_by_default() -> None:
    assert TurnDetector(VadConfig()).feed(silence(5.0, SR)) == []


def test_from_turn_detection_and_threshold_mapping() -> None:
    cfg = VadConfig.from_turn_detection(
        {
            "type": "server_vad",
            "threshold": 0.8,
            "prefix_padding_ms": 100,
            "silence_duration_ms": 900,
            "create_response": True,
            "interrupt_response": False,
            "idle_timeout_ms": 5000,
        }
    )
    assert (cfg.threshold, cfg.prefix_padding_ms, cfg.silence_duration_ms, cfg.idle_timeout_ms) == (
        0.8,
        100,
        900,
        5000,
    )
    assert cfg.effective_silence_ms == 900 and cfg.aggressiveness == 3
    assert VadConfig(threshold=0.0).aggressiveness == 0 and VadConfig().aggressiveness == 2
    assert VadConfig.from_turn_detection({"type": "server_vad", "threshold": None}).threshold == 0.5
    semantic = VadConfig.from_turn_detection({"type": "semantic_vad"})
    assert semantic.eagerness == "auto" and semantic.effective_silence_ms == SEMANTIC_MAX_SILENCE_MS["medium"]


@pytest.mark.parametrize(
    ("obj", "param"),
    [
        ({"type": "push_to_talk"}, "type"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"silence_duration_ms": -1}, "silence_duration_ms"),
        ({"prefix_padding_ms": 12.5}, "prefix_padding_ms"),
        ({"idle_timeout_ms": True}, "idle_timeout_ms"),
        ({"type": "semantic_vad", "eagerness": "eager"}, "eagerness"),
    ],
)
def test_invalid_turn_detection_names_the_field(obj: dict, param: str) -> None:
    with pytest.raises(VadConfigError) as info:
        VadConfig.from_turn_detection(obj)
    assert info.value.param == param and param in str(info.value)


def test_bad_input_shape_is_rejected() -> None:
    det = TurnDetector()
    with pytest.raises(ValueError, match="mono"):
        det.feed(np.zeros((2, 320), dtype=np.int16))
    with pytest.raises(ValueError, match="dtype"):
        det.feed(np.zeros(320, dtype=np.int32))


def test_input_frame_benchmark_runs_and_sees_the_turns() -> None:
    from stepaudio_rt.streaming.bench_frames import bench_input_frames

    # 300 timed + 50 warm-up frames = 7 s of input: one-second bursts of voice-like signal at 0, 2, 4, 6 s.
    report = bench_input_frames(300)
    assert report["frames"] == 300 and report["speech_turns_detected"] == 4
    total = report["total"]
    assert isinstance(total, dict) and 0 < total["p50_us"] <= total["p99_us"]
