"""semantic_vad: the Smart Turn v3.2 end-of-turn model on Piper speech, alone, inside the VAD state machine,
and through a live server."""

from __future__ import annotations

import asyncio
import base64

import numpy as np
import pytest

from stepaudio_rt.streaming.smart_turn import (
    SmartTurnUnavailableError,
    load_smart_turn,
    locate_model,
    smart_turn_features,
)
from stepaudio_rt.streaming.vad import (
    SCORE_PAUSE_MS,
    SEMANTIC_LIKELY_SILENCE_MS,
    SEMANTIC_MAX_SILENCE_MS,
    SPECULATE_PAUSE_MS,
    PauseDetected,
    PauseStarted,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    VadConfig,
)
from tests.audio_fixtures import pad, resample, speak_piper
from tests.conftest import LiveServer
from tests.realtime_client import connect

SR = 16000
COMPLETE = "What is the weather like in Paris today?"
SURELY_COMPLETE = "What is two plus three?"  # Smart Turn: 0.98 after 160 ms of silence (Piper)
UNFINISHED = "I need to book a flight to"


def _speech(text: str) -> np.ndarray:
    audio, sr = speak_piper(text)
    return resample(audio, sr, SR)


def test_features_match_pipecats_extractor() -> None:
    """Our numpy extractor feeds the model what pipecat's LocalSmartTurnAnalyzerV3 feeds it."""
    from pipecat.audio.turn.smart_turn._whisper_features import compute_whisper_log_mel_features

    audio = pad(_speech(COMPLETE), SR, 0.2, 0.2)
    ours = smart_turn_features(audio)
    left_padded = np.pad(audio, (8 * SR - len(audio), 0))  # pipecat pads at the start before extracting
    ref = compute_whisper_log_mel_features(left_padded, do_normalize=True)
    assert ours.shape == (80, 800) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    long = np.tile(audio, 6)  # > 8 s: only the last 8 s count
    np.testing.assert_allclose(smart_turn_features(long), smart_turn_features(long[-8 * SR :]), atol=1e-6)


def test_complete_sentence_scores_above_and_unfinished_below_threshold() -> None:
    model = load_smart_turn()
    threshold = VadConfig(type="semantic_vad").end_of_turn_threshold
    complete = model.probability(pad(_speech(COMPLETE), SR, 0.3, 0.2))
    unfinished = model.probability(pad(_speech(UNFINISHED), SR, 0.3, 0.2))
    assert complete > threshold > unfinished, (complete, unfinished)
    assert complete > 0.8 and unfinished < 0.2


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(SmartTurnUnavailableError, match="not found"):
        locate_model(tmp_path / "nope.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(SmartTurnUnavailableError, match="cannot load Smart Turn model"):
        load_smart_turn(broken)


def _drive(det: TurnDetector, audio: np.ndarray, resume: np.ndarray | None = None) -> dict[str, object]:
    """Feed 20 ms frames; score each pause with the real model and end the turn when it says complete.

    Returns when the turn ended: the position (ms of audio fed) and the stop event, plus every pause."""
    model = load_smart_turn()
    fed: list[np.ndarray] = []
    pauses: list[tuple[PauseDetected, float]] = []
    stream = audio if resume is None else np.concatenate([audio, resume])
    for i in range(0, len(stream), 320):
        frame = stream[i : i + 320]
        fed.append(frame)
        for ev in det.feed(frame):
            if isinstance(ev, SpeechStopped):
                return {"stop": ev, "at_ms": det.position_ms, "pauses": pauses, "by": "silence"}
            if isinstance(ev, PauseDetected):
                prob = model.probability(np.concatenate(fed))
                pauses.append((ev, prob))
                if prob >= det.config.end_of_turn_threshold:
                    stop = det.end_turn(ev.pause)
                    assert stop is not None
                    return {"stop": stop, "at_ms": det.position_ms, "pauses": pauses, "by": "model"}
                if prob >= det.config.likely_threshold:
                    assert det.end_turn_after(ev.pause, det.config.likely_silence_ms) is None
    return {"stop": None, "at_ms": det.position_ms, "pauses": pauses, "by": None}


def test_vad_ends_a_surely_complete_turn_at_the_first_pause() -> None:
    speech = _speech(SURELY_COMPLETE)
    det = TurnDetector(VadConfig(type="semantic_vad"))
    out = _drive(det, pad(speech, SR, 0.5, 3.0))
    assert out["by"] == "model" and len(out["pauses"]) == 1  # type: ignore[arg-type]
    speech_end_ms = 500 + 1000 * len(speech) / SR
    # Ended SCORE_PAUSE_MS after the last voiced frame, far before the 2 s maximum silence.
    assert out["at_ms"] <= speech_end_ms + SCORE_PAUSE_MS + 200  # type: ignore[operator]
    assert not det.in_speech


def test_vad_ends_a_complete_turn_by_the_likely_silence() -> None:
    """A finished question scored "surely" or "probably" complete ends by the likely silence (800 ms),
    well before the 2 s maximum silence."""
    speech = _speech(COMPLETE)
    det = TurnDetector(VadConfig(type="semantic_vad"))
    out = _drive(det, pad(speech, SR, 0.5, 3.0))
    stop = out["stop"]
    assert isinstance(stop, SpeechStopped) and len(out["pauses"]) == 1  # type: ignore[arg-type]
    (_, prob), = out["pauses"]  # type: ignore[misc]
    assert prob >= det.config.likely_threshold
    assert out["at_ms"] - stop.audio_end_ms <= SEMANTIC_LIKELY_SILENCE_MS["auto"]  # type: ignore[operator]


def test_vad_waits_on_an_unfinished_turn_and_rescores_when_speech_resumes() -> None:
    det = TurnDetector(VadConfig(type="semantic_vad"))
    head = pad(_speech(UNFINISHED), SR, 0.5, 0.8)  # 800 ms hesitation, below the 2 s maximum silence
    tail = pad(_speech("Boston, please."), SR, 0.0, 3.0)
    out = _drive(det, head, tail)
    pauses = out["pauses"]
    assert isinstance(pauses, list) and len(pauses) >= 2
    first, first_prob = pauses[0]
    assert first_prob < det.config.end_of_turn_threshold  # "... a flight to": keep listening
    # The turn went on through the hesitation and ended after the resumed speech, on a later pause.
    stop = out["stop"]
    assert isinstance(stop, SpeechStopped) and stop.audio_end_ms > 500 + 1000 * len(head) / SR - 800
    assert all(p.pause != first.pause for p, _ in pauses[1:])
    assert det.end_turn(first.pause) is None  # a verdict on an old pause cannot end anything


def test_vad_falls_back_to_maximum_silence_without_a_complete_score() -> None:
    det = TurnDetector(VadConfig(type="semantic_vad", eagerness="high"))
    out = _drive(det, pad(_speech(UNFINISHED), SR, 0.5, 1.5))
    assert out["by"] == "silence"
    stop = out["stop"]
    assert isinstance(stop, SpeechStopped)
    assert out["at_ms"] - stop.audio_end_ms == SEMANTIC_MAX_SILENCE_MS["high"]  # type: ignore[operator]


def _voiced(ms: int) -> np.ndarray:
    """A loud harmonic tone burst that webrtcvad calls speech (the state machine only, no model)."""
    t = np.arange(ms * SR // 1000) / SR
    return (0.3 * sum(np.sin(2 * np.pi * k * 150 * t) / k for k in range(1, 6))).astype(np.float32)


def _feed_until_pause(det: TurnDetector) -> PauseDetected:
    det.feed(np.zeros(SR // 2, np.float32))
    det.feed(_voiced(600))
    for _ in range(100):
        pause = [e for e in det.feed(np.zeros(320, np.float32)) if isinstance(e, PauseDetected)]
        if pause:
            return pause[0]
    raise AssertionError("no pause reported")


def _stop_delay(det: TurnDetector, pause: PauseDetected) -> int:
    """Feed silence until the turn ends; returns the silence (ms) after the last voiced frame."""
    for _ in range(400):
        if any(isinstance(e, SpeechStopped) for e in det.feed(np.zeros(320, np.float32))):
            return det.position_ms - pause.audio_end_ms
    raise AssertionError("the turn never ended")


@pytest.mark.parametrize("eagerness", ["low", "auto", "high"])
def test_probably_complete_ends_after_the_eagerness_likely_silence(eagerness: str) -> None:
    cfg = VadConfig(type="semantic_vad", eagerness=eagerness)  # type: ignore[arg-type]
    assert cfg.likely_threshold < cfg.end_of_turn_threshold
    assert SCORE_PAUSE_MS < cfg.likely_silence_ms < cfg.effective_silence_ms
    det = TurnDetector(cfg)
    pause = _feed_until_pause(det)
    assert det.end_turn_after(pause.pause, cfg.likely_silence_ms) is None  # the pause is still short
    assert _stop_delay(det, pause) == cfg.likely_silence_ms == SEMANTIC_LIKELY_SILENCE_MS[eagerness]


def test_probably_complete_is_forgotten_when_the_user_speaks_again() -> None:
    cfg = VadConfig(type="semantic_vad")
    det = TurnDetector(cfg)
    pause = _feed_until_pause(det)
    assert det.end_turn_after(pause.pause, cfg.likely_silence_ms) is None
    det.feed(_voiced(300))  # resumes before the likely silence: that pause's verdict is moot
    assert det.in_speech
    second = next(e for e in det.feed(np.zeros(SR * 3 // 10, np.float32)) if isinstance(e, PauseDetected))
    assert second.pause != pause.pause
    assert _stop_delay(det, second) == cfg.effective_silence_ms  # no verdict on this pause: maximum silence
    assert det.end_turn_after(pause.pause, cfg.likely_silence_ms) is None  # stale: nothing to end


def test_probably_complete_on_a_pause_already_that_long_ends_at_once() -> None:
    cfg = VadConfig(type="semantic_vad")
    det = TurnDetector(cfg)
    pause = _feed_until_pause(det)
    det.feed(np.zeros(cfg.likely_silence_ms * SR // 1000, np.float32))  # the verdict came late
    stop = det.end_turn_after(pause.pause, cfg.likely_silence_ms)
    assert isinstance(stop, SpeechStopped) and stop.audio_end_ms == pause.audio_end_ms and not det.in_speech


def test_a_pause_is_announced_at_its_start_then_scored() -> None:
    """PauseStarted (the speculative response's cue) comes SPECULATE_PAUSE_MS into the pause, PauseDetected
    SCORE_PAUSE_MS into it, both once and naming the same pause; a pause after resumed speech is new."""
    det = TurnDetector(VadConfig(type="semantic_vad"))
    det.feed(np.zeros(SR // 2, np.float32))
    det.feed(_voiced(600))
    seen: list[tuple[type, int, int]] = []
    for _ in range(20):  # 400 ms of silence, 20 ms at a time
        seen += [(type(e), e.pause, det.position_ms) for e in det.feed(np.zeros(320, np.float32))]
    assert [kind for kind, _, _ in seen] == [PauseStarted, PauseDetected]
    (_, first, at_start), (_, scored, at_score) = seen
    assert first == scored and 0 < SPECULATE_PAUSE_MS < SCORE_PAUSE_MS
    assert at_score - at_start == SCORE_PAUSE_MS - SPECULATE_PAUSE_MS
    det.feed(_voiced(300))
    again = [e for e in det.feed(np.zeros(SR // 10, np.float32)) if isinstance(e, PauseStarted)]
    assert len(again) == 1 and again[0].pause != first


def test_server_vad_has_no_pauses_to_score() -> None:
    det = TurnDetector(VadConfig())
    events = det.feed(pad(_speech(UNFINISHED), SR, 0.5, 1.0))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]


def _pcm24(audio_16k: np.ndarray) -> bytes:
    return (np.clip(resample(audio_16k, SR, 24000), -1, 1) * 32767).astype("<i2").tobytes()


async def _append_all(s, pcm: bytes, chunk_ms: int = 100) -> None:
    step = 24000 * 2 * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        await s.conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())


async def _no_event(s, kind: str, seconds: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await s.until(kind, timeout=seconds)


SEMANTIC = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}


async def test_server_semantic_vad_ends_complete_turns_and_waits_on_unfinished(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=SEMANTIC)
        updated = await s.until("session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
        # Unfinished: 1 s of silence (half the 2 s maximum) does not end the turn...
        await _append_all(s, _pcm24(pad(_speech(UNFINISHED), SR, 0.3, 1.0)))
        await s.until("input_audio_buffer.speech_started")
        await _no_event(s, "input_audio_buffer.speech_stopped", 2.0)
        # ... the rest of the sentence and 1 s of silence: the model calls it complete.
        await _append_all(s, _pcm24(pad(_speech("Boston, on Friday."), SR, 0.0, 1.0)))
        stopped = await s.until("input_audio_buffer.speech_stopped", timeout=20)
        committed = await s.until("input_audio_buffer.committed")
        assert committed["item_id"] == stopped["item_id"]
        done = await s.until("response.done", timeout=60)
        assert done["response"]["status"] in ("completed", "incomplete")  # the tiny model hits its token cap


async def test_server_refuses_semantic_vad_without_its_model(tiny_checkpoint, tmp_path) -> None:
    from tests.conftest import start_server

    with start_server(tiny_checkpoint, tmp_path, "--smart-turn-model", str(tmp_path / "missing.onnx")) as srv:
        async with connect(srv.http) as s:
            await s.conn.session.update(session=SEMANTIC)
            err = await s.until("error")
            assert err["error"]["param"] == "session.audio.input.turn_detection.type"
            assert "missing.onnx" in err["error"]["message"]
            # The session lives on with its previous (server_vad) settings.
            await s.conn.session.update(session={"type": "realtime", "instructions": "Be brief."})
            updated = await s.until("session.updated")
            assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
