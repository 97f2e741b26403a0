"""semantic_vad's speculative response: started at the pause, held until the end-of-turn verdict.

On the real TorchEngine (the snapshot of a listening turn) and through a live server with the official
openai SDK (what a client sees when the speculation is confirmed, and when it is thrown away)."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import numpy as np
import pytest

from stepaudio_rt.model.torch_engine import TorchEngine
from stepaudio_rt.streaming.conversation import TextPart, Turn
from stepaudio_rt.streaming.scheduler import ResponseFinished, ResponseOptions, Scheduler
from stepaudio_rt.streaming.speculative import SpeculativeConversation
from tests.audio_fixtures import pad, resample, speak_piper
from tests.conftest import LiveServer
from tests.realtime_client import connect

SR = 16000
SURELY_COMPLETE = "What is two plus three?"  # Smart Turn: 0.98 after 160 ms of silence (Piper)
UNFINISHED = "I need to book a flight to"
REST = "Boston, on Friday."
SEMANTIC = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}
SERVER = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
RELEASED = 'stepaudio_rt_speculative_responses_total{outcome="released"}'
DISCARDED = 'stepaudio_rt_speculative_responses_total{outcome="discarded"}'


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> TorchEngine:
    return TorchEngine.from_pretrained(tiny_checkpoint, max_contexts=16, max_context_tokens=2048, progress=False)


async def _free_slots_when_idle(engine: TorchEngine) -> int:
    """Free KV slots once every job queued so far (releases included) has run on the worker thread."""
    probe = engine.new_context()
    await engine.flush(probe)
    free = engine.cache.free_slots + 1  # + the probe's own slot
    engine.release(probe)
    return free


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


async def test_snapshot_is_the_turn_as_finish_would_commit_it_and_leaves_the_turn_listening(
    engine: TorchEngine,
) -> None:
    sched = Scheduler(engine, None, instructions="Be brief.", listen_chunk_seconds=1.0)
    sched.conversation.insert(Turn("u0", "user", [TextPart("hello")]))
    free = await _free_slots_when_idle(engine)
    listening = sched.start_listening("u1")
    audio = _noise(2.6)
    for i in range(0, len(audio), 640):
        sched.feed(audio[i : i + 640])
        await asyncio.sleep(0)
    epoch = sched.conversation.epoch
    view = await SpeculativeConversation.of(listening)
    assert sched.conversation.epoch == epoch and "u1" not in sched.conversation  # nothing committed
    assert [t.id for t in view.turns] == ["u0", "u1"]
    # A run on the view answers the turn so far, without touching the conversation.
    run = sched.response(ResponseOptions(audio=False, max_output_tokens=8, think_budget=0, seed=1), view)
    events = [ev async for ev in run.events()]
    assert isinstance(events[-1], ResponseFinished) and events[-1].finish_reason in ("stop", "length")
    assert sched.conversation.epoch == epoch
    probe, _ = await view.fork()
    await engine.flush(probe)  # the engine fills a fork's token list on its worker thread
    snap_tokens = list(probe.token_ids)
    engine.release(probe)
    # The turn goes on listening; committed with no more audio, it renders exactly as the snapshot did.
    result = await sched.commit_listening()
    committed = list((await sched.conversation.sync()).token_ids)
    assert committed == snap_tokens
    assert [len(c) for c in result.turn.parts[0].chunks] == [len(c) for c in view.turn.parts[0].chunks]
    view.close()
    await sched.aclose()
    assert await _free_slots_when_idle(engine) == free  # every fork released (the probe above included)


async def test_snapshot_waits_for_chunks_already_queued(engine: TorchEngine) -> None:
    """Chunks queued for background prefill are in the snapshot; the ones fed later are not."""
    sched = Scheduler(engine, None, listen_chunk_seconds=1.0)
    free = await _free_slots_when_idle(engine)
    listening = sched.start_listening("u1")
    audio = _noise(3.3, seed=3)
    sched.feed(audio[: 2 * SR + 4000])  # two chunks queued, no await: the worker has not run yet
    view = await SpeculativeConversation.of(listening)
    sched.feed(audio[2 * SR + 4000 :])
    n_audio = view.turn.parts[0].num_samples
    assert n_audio == 2 * SR + 4000
    ctx, _ = await view.fork()
    await engine.flush(ctx)
    assert ctx.token_ids.count(engine.tokenizer.ids.audio_start) == len(view.turn.parts[0].chunks)
    engine.release(ctx)
    view.close()
    result = await sched.commit_listening()
    assert result.turn.parts[0].num_samples == len(audio)
    await sched.aclose()
    assert await _free_slots_when_idle(engine) == free


# ----- through a live server --------------------------------------------------------------------------------
def _pcm24(audio_16k: np.ndarray) -> bytes:
    return (np.clip(resample(audio_16k, SR, 24000), -1, 1) * 32767).astype("<i2").tobytes()


def _speech(text: str) -> np.ndarray:
    audio, sr = speak_piper(text)
    return resample(audio, sr, SR)


def _shape(types: list[str]) -> list[str]:
    """Event types with each run of audio / transcript deltas as one entry (their number and interleaving
    depend on the reply's words; the order rules inside them are EventChecker's)."""
    out: list[str] = []
    for t in types:
        t = "deltas" if t.endswith(".delta") else t
        if not (out and out[-1] == t == "deltas"):
            out.append(t)
    return out


async def _voice_turn(s, session: dict, pcm: bytes) -> list[dict]:
    await s.conn.session.update(session=session)
    await s.until("session.updated")
    start = len(s.check.types())
    await s.stream(pcm, chunk_ms=40)
    await s.until("response.done", timeout=90)
    return s.check.events[start:]


async def _free_slots_settle(server: LiveServer, want: int, seconds: float = 10.0) -> int:
    deadline = time.monotonic() + seconds
    while True:
        free = int(server.health()["engine"]["free_slots"])  # type: ignore[index]
        if free >= want or time.monotonic() > deadline:
            return free
        await asyncio.sleep(0.1)


async def test_confirmed_speculation_looks_like_a_plain_turn(live_server: LiveServer) -> None:
    pcm = _pcm24(pad(_speech(SURELY_COMPLETE), SR, 0.3, 1.2))
    free = int(live_server.health()["engine"]["free_slots"])  # type: ignore[index]
    async with connect(live_server.http) as s:  # the baseline: server_vad never speculates
        released = live_server.metric(RELEASED)
        plain = await _voice_turn(s, SERVER, pcm)
        assert live_server.metric(RELEASED) == released
    async with connect(live_server.http) as s:
        discarded = live_server.metric(DISCARDED)
        leads = live_server.metric("stepaudio_rt_speculative_lead_seconds_count")
        spec = await _voice_turn(s, SEMANTIC, pcm)
        assert live_server.metric(RELEASED) == released + 1  # this turn's response was the speculative one
        assert live_server.metric("stepaudio_rt_speculative_lead_seconds_count") == leads + 1  # its head start
        # A gap between two words longer than SPECULATE_PAUSE_MS starts (and drops) a speculation too;
        # Piper leaves one such gap in this sentence.
        assert live_server.metric(DISCARDED) <= discarded + 2
        # The same events in the same order as the plain turn (EventChecker checked every ordering rule).
        assert _shape([e["type"] for e in spec]) == _shape([e["type"] for e in plain])
        assert [e["type"] for e in spec].count("response.created") == 1
        assert any(e["type"] == "response.output_audio.delta" for e in spec)
        done = next(e for e in spec if e["type"] == "response.done")
        assert done["response"]["status"] in ("completed", "incomplete")
        assert done["response"]["usage"]["input_token_details"]["audio_tokens"] > 0
        # The committed user item and the reply are in the conversation, in that order.
        user_id = next(e for e in spec if e["type"] == "input_audio_buffer.committed")["item_id"]
        reply_id = done["response"]["output"][0]["id"]
        added = [e for e in spec if e["type"] == "conversation.item.added"]
        assert [e["item"]["id"] for e in added] == [user_id, reply_id]
        assert added[1]["previous_item_id"] == user_id
        await s.conn.conversation.item.retrieve(item_id=reply_id)
        got = await s.until("conversation.item.retrieved")
        assert got["item"]["content"][0]["transcript"] == done["response"]["output"][0]["content"][0]["transcript"]
    assert await _free_slots_settle(live_server, free) == free


async def test_rejected_speculation_leaves_no_trace(live_server: LiveServer) -> None:
    """A pause inside a sentence: the speculation started there is thrown away when the model says
    incomplete or the user speaks again; the one turn committed holds the whole sentence."""
    first = pad(_speech(UNFINISHED), SR, 0.3, 0.0)
    rest = _speech(REST)
    audio = np.concatenate([first, np.zeros(int(0.6 * SR), np.float32), rest, np.zeros(int(1.5 * SR), np.float32)])
    free = int(live_server.health()["engine"]["free_slots"])  # type: ignore[index]
    discarded = live_server.metric(DISCARDED)
    async with connect(live_server.http) as s:
        events = await _voice_turn(s, SEMANTIC, _pcm24(audio))
        assert live_server.metric(DISCARDED) >= discarded + 1  # the pause after "to" was speculated on
        types = [e["type"] for e in events]
        # One turn, one response, nothing sent before the turn ended.
        assert types.count("input_audio_buffer.speech_started") == 1
        assert types.count("input_audio_buffer.committed") == 1
        assert types.count("response.created") == 1
        assert types.index("response.created") > types.index("input_audio_buffer.speech_stopped")
        added = [e for e in events if e["type"] == "conversation.item.added"]
        assert len(added) == 2 and added[0]["item"]["role"] == "user"
        # The committed turn runs past the pause to the end of "Boston, on Friday.".
        stopped = next(e for e in events if e["type"] == "input_audio_buffer.speech_stopped")
        assert stopped["audio_end_ms"] >= 1000 * (len(first) + 0.6 * SR + len(rest)) / SR - 300
        # Nothing else arrives: no late event from the discarded run.
        with pytest.raises(asyncio.TimeoutError):
            await s.next(timeout=1.0)
    assert await _free_slots_settle(live_server, free) == free


def _tone(ms: int) -> np.ndarray:
    """A harmonic burst that the VAD calls speech."""
    tt = np.arange(ms * SR // 1000) / SR
    return (0.3 * sum(np.sin(2 * np.pi * k * 150 * tt) / k for k in range(1, 6))).astype(np.float32)


async def test_speculation_starts_early_in_the_pause_and_a_resumed_word_drops_it(live_server: LiveServer) -> None:
    """A 120 ms gap is past SPECULATE_PAUSE_MS but short of SCORE_PAUSE_MS: a speculative response starts
    there (before any scoring), and the next word throws it away; the turn goes on whole."""
    gap = np.zeros(int(0.12 * SR), np.float32)
    speech = np.concatenate([np.zeros(SR // 2, np.float32), _tone(600), gap, _tone(600)])
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=SEMANTIC)
        await s.until("session.updated")
        discarded = live_server.metric(DISCARDED)
        await s.conn.input_audio_buffer.append(audio=base64.b64encode(_pcm24(speech)).decode())
        await s.until("input_audio_buffer.speech_started")
        await asyncio.sleep(0.5)
        assert live_server.metric(DISCARDED) == discarded + 1
        assert "input_audio_buffer.speech_stopped" not in s.check.types()
        await s.conn.input_audio_buffer.clear()
        await s.until("input_audio_buffer.cleared")


async def test_speculation_is_dropped_when_the_buffer_is_cleared(live_server: LiveServer) -> None:
    free = int(live_server.health()["engine"]["free_slots"])  # type: ignore[index]
    pcm = _pcm24(pad(_speech(SURELY_COMPLETE), SR, 0.3, 0.2))  # ends 200 ms into the pause
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=SEMANTIC)
        await s.until("session.updated")
        discarded = live_server.metric(DISCARDED)
        step = 24000 * 2 * 100 // 1000
        for i in range(0, len(pcm), step):
            await s.conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + step]).decode())
        await s.conn.input_audio_buffer.clear()
        await s.until("input_audio_buffer.cleared")
        await asyncio.sleep(1.0)
        seen = s.check.types()
        assert "response.created" not in seen and "input_audio_buffer.committed" not in seen
        if "input_audio_buffer.speech_stopped" not in seen:  # the verdict did not beat the clear
            # the final pause's speculation, plus any started at a gap between words
            assert live_server.metric(DISCARDED) >= discarded + 1
    assert await _free_slots_settle(live_server, free) == free
