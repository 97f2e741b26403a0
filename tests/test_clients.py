"""The Python client and ``stepaudio-rt talk`` against a live server (tiny random checkpoint).

The replies are random text from a random model; what is checked is the protocol plumbing: the client
streams speech, the server ends the turn, and reasoning, transcript, audio and timing marks come back.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from stepaudio_rt.cli import app
from stepaudio_rt.clients.realtime_client import RealtimeClient, RealtimeError
from stepaudio_rt.clients.urls import api_base, realtime_ws_url, server_root
from stepaudio_rt.clients.wav_stream import AudioInputError, chunks, read_audio, to_pcm16, write_wav
from tests.audio_fixtures import pad, speak_espeak
from tests.conftest import LiveServer


def _question_pcm(text: str = "What is two plus three?") -> bytes:
    audio, sr = speak_espeak(text)
    return to_pcm16(audio, sr)


def _question_wav(tmp_path, text: str = "What is two plus three?"):
    audio, sr = speak_espeak(text)
    path = tmp_path / "question.wav"
    sf.write(path, pad(audio, sr, 0.2, 0.0), sr, subtype="PCM_16")
    return path


# ----- URL and audio helpers -----


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
        ("http://host:8000", "http://host:8000/v1"),
        ("ws://host:8000/v1/realtime", "http://host:8000/v1"),
        ("wss://example.com/v1/realtime/", "https://example.com/v1"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ],
)
def test_api_base_accepts_what_people_type(given: str, expected: str) -> None:
    assert api_base(given) == expected


def test_url_helpers_and_bad_urls() -> None:
    assert server_root("ws://h:1/v1/realtime") == "http://h:1"
    assert realtime_ws_url("https://h/v1") == "wss://h/v1/realtime"
    with pytest.raises(ValueError, match="scheme"):
        api_base("ftp://h:1")
    with pytest.raises(ValueError, match="empty"):
        api_base("  ")


def test_read_audio_downmixes_and_resamples(tmp_path) -> None:
    sr = 16000
    t = np.arange(sr) / sr  # 1 s stereo tone at 16 kHz
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    path = tmp_path / "tone.wav"
    sf.write(path, stereo, sr)
    pcm = read_audio(path)
    assert len(pcm) == 24000 * 2  # one second at 24 kHz PCM16
    samples = np.frombuffer(pcm, "<i2")
    assert 0.45 * 32767 < np.abs(samples).max() < 0.55 * 32767
    back = write_wav(tmp_path / "out" / "x.wav", pcm)
    info = sf.info(back)
    assert (info.samplerate, info.channels, info.frames) == (24000, 1, 24000)


def test_bad_audio_inputs_get_clear_errors(tmp_path) -> None:
    with pytest.raises(AudioInputError, match="not found"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(AudioInputError, match="cannot read"):
        read_audio(junk)
    with pytest.raises(ValueError, match="chunk_ms"):
        list(chunks(b"\0" * 100, 5))
    sizes = [len(c) for c in chunks(bytes(24000 * 2), 40)]
    assert sizes == [1920] * 25


# ----- the client against a live server -----


async def test_vad_turn_collects_reasoning_transcript_audio_and_marks(live_server: LiveServer) -> None:
    async with RealtimeClient(live_server.http) as client:
        assert client.session.get("type") == "realtime"
        turn = await client.ask(_question_pcm(), chunk_ms=40, lead_silence_s=0.3, trailing_silence_s=1.2)
    assert turn.status in ("completed", "incomplete"), turn.as_dict()
    assert turn.transcript.strip(), "no reply transcript"
    assert turn.reasoning.strip(), "reasoning events were requested but none arrived"
    assert "<think>" not in turn.transcript
    assert len(turn.audio) > 0 and len(turn.audio) % 2 == 0
    m = turn.marks
    assert m["speech_started"] < m["speech_end_sent"] < m["speech_stopped"] <= m["committed"]
    assert m["committed"] <= m["response_created"] <= m["first_audio"] <= m["done"]
    # Later start points give shorter latencies; all are positive.
    assert turn.latency("speech_end_sent") > turn.latency("speech_stopped") > 0
    assert turn.as_dict()["audio_seconds"] > 0


async def test_manual_turn_then_text_turn_in_one_session(live_server: LiveServer) -> None:
    async with RealtimeClient(live_server.http, reasoning_events=False) as client:
        session = await client.update_session({"audio": {"input": {"turn_detection": None}}})
        assert session["audio"]["input"]["turn_detection"] is None
        spoken = await client.ask(_question_pcm(), manual=True, speed=float("inf"))
        assert spoken.status in ("completed", "incomplete")
        assert "commit_sent" in spoken.marks and spoken.latency("commit_sent") > 0
        assert "speech_stopped" not in spoken.marks  # no server VAD in manual mode
        assert spoken.reasoning == ""  # not opted in
        typed = await client.ask_text("And what is four plus four?")
    assert typed.response_id != spoken.response_id
    assert typed.transcript.strip() and typed.audio


async def test_wrong_api_key_is_a_clear_error(auth_server: LiveServer) -> None:
    with pytest.raises(RealtimeError, match="invalid_api_key|1008"):
        async with RealtimeClient(auth_server.http, api_key="wrong"):
            pass


async def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(RealtimeError, match="cannot connect"):
        async with RealtimeClient("127.0.0.1:9", connect_timeout=5):
            pass


# ----- stepaudio-rt talk -----


def test_talk_prints_reply_and_latency_and_saves_wav(live_server: LiveServer, tmp_path) -> None:
    out = tmp_path / "reply.wav"
    result = CliRunner().invoke(
        app, ["talk", str(_question_wav(tmp_path)), "--url", live_server.http, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "reasoning:" in result.output and "reply:" in result.output
    assert "first-packet latency" in result.output and "speech_stopped" in result.output
    # talk asks for semantic_vad and transcription by default and prints what the server heard.
    said = result.output.split("you said:", 1)[1].strip().splitlines()[0].lower()
    assert ("two" in said or "2" in said) and ("three" in said or "3" in said), result.output
    info = sf.info(out)
    assert info.samplerate == 24000 and info.channels == 1 and info.frames > 2400


def test_talk_manual_mode_speaking_first(live_server: LiveServer, tmp_path) -> None:
    speak_first = 'stepaudio_rt_first_packet_by_mode_seconds_count{mode="speak_first"}'
    before = live_server.metric(speak_first)
    out = tmp_path / "reply.wav"
    result = CliRunner().invoke(
        app,
        ["talk", str(_question_wav(tmp_path)), "--url", live_server.http, "--out", str(out), "--manual",
         "--speed", "inf", "--no-reasoning", "--thinking-mode", "speak_first"],
    )
    assert result.exit_code == 0, result.output
    assert "commit + response.create" in result.output and "reasoning:" not in result.output
    assert sf.info(out).frames > 0
    assert live_server.metric(speak_first) == before + 1  # the session asked for think-while-speaking


def test_talk_bad_inputs(tmp_path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["talk", str(tmp_path / "nope.wav")])
    assert missing.exit_code == 2 and "not found" in missing.output
    neither = runner.invoke(app, ["talk"])
    assert neither.exit_code == 2 and "either a WAV file or --mic" in neither.output
    wav = tmp_path / "q.wav"
    sf.write(wav, np.zeros(2400, np.float32), 24000)
    down = runner.invoke(app, ["talk", str(wav), "--url", "127.0.0.1:9"])
    assert down.exit_code == 2 and "cannot connect" in down.output
    if importlib.util.find_spec("sounddevice") is None:
        mic = runner.invoke(app, ["talk", "--mic", "2"])
        assert mic.exit_code == 2 and "sounddevice" in mic.output
