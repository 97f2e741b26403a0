"""End to end with the official openai SDK against a real server process (tiny random checkpoint).

Every event is validated by pipecat's models and LiveKit's ordering rules (``tests/protocol_checks.py``).
"""

from __future__ import annotations

import asyncio
import base64

from tests.conftest import LiveServer
from tests.realtime_client import connect, speech_pcm24

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}


def _audio_bytes(events: list[dict]) -> int:
    return sum(len(base64.b64decode(e["delta"])) for e in events if e["type"] == "response.output_audio.delta")


def _assert_spoken_response(check, done: dict) -> None:
    rid = done["response"]["id"]
    deltas = [e for e in check.events if e.get("response_id") == rid and e["type"] == "response.output_audio.delta"]
    assert deltas, "no audio deltas"
    # At most 100 ms per delta: 24 kHz * 2 bytes * 0.1 s.
    assert max(len(base64.b64decode(d["delta"])) for d in deltas) <= 4800
    transcript = [e for e in check.events if e["type"] == "response.output_audio_transcript.done"][-1]
    assert transcript["transcript"].strip(), "empty transcript"
    assert "<think>" not in transcript["transcript"] and "</think>" not in transcript["transcript"]
    assert done["response"]["status"] in ("completed", "incomplete")
    item = done["response"]["output"][0]
    assert item["content"][0]["type"] == "output_audio"
    assert item["content"][0]["transcript"] == transcript["transcript"]


async def test_text_turn_speaks_a_reply(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=MANUAL)
        updated = await s.until("session.updated")
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        await s.text_turn("What is two plus three?")
        done = await s.until("response.done")
        _assert_spoken_response(s.check, done)
        order = [t for t in s.check.types() if not t.endswith(".delta")]
        tail = order[order.index("response.created") :]
        assert tail == [
            "response.created", "response.output_item.added", "conversation.item.added",
            "response.content_part.added", "response.output_audio.done", "response.output_audio_transcript.done",
            "response.content_part.done", "response.output_item.done", "conversation.item.done", "response.done",
        ]
        # The reply is now history: a second turn works on the grown conversation.
        await s.text_turn("And four plus four?")
        done2 = await s.until("response.done")
        assert done2["response"]["usage"]["input_tokens"] > done["response"]["usage"]["input_tokens"]


async def test_text_modality_and_metadata_echo(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(session={**MANUAL, "output_modalities": ["text"]})
        await s.until("session.updated")
        await s.conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
        )
        await s.conn.response.create(response={"metadata": {"client_event_id": "abc"}})
        created = await s.until("response.created")
        assert created["response"]["metadata"] == {"client_event_id": "abc"}
        done = await s.until("response.done")
        assert not s.check.of_type("response.output_audio.delta")
        text = "".join(e["delta"] for e in s.check.of_type("response.output_text.delta"))
        assert s.check.of_type("response.output_text.done")[-1]["text"] == text.strip()
        assert done["response"]["output"][0]["content"][0]["type"] == "output_text"


async def test_manual_commit_turn(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=MANUAL)
        await s.until("session.updated")
        await s.stream(speech_pcm24("What is the capital of France?"), chunk_ms=100, realtime=False)
        await s.conn.input_audio_buffer.commit()
        committed = await s.until("input_audio_buffer.committed")
        added = await s.until("conversation.item.added")
        assert added["item"]["id"] == committed["item_id"] and added["item"]["role"] == "user"
        assert added["item"]["content"][0]["type"] == "input_audio"
        await s.until("conversation.item.done")
        await s.conn.response.create()
        done = await s.until("response.done")
        _assert_spoken_response(s.check, done)
        assert done["response"]["usage"]["input_token_details"]["audio_tokens"] > 0


async def test_server_vad_turn_at_realtime_pace(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.stream(speech_pcm24("Please tell me a short story about a cat."), chunk_ms=40, realtime=True)
        started = await s.until("input_audio_buffer.speech_started")
        stopped = await s.until("input_audio_buffer.speech_stopped")
        assert stopped["item_id"] == started["item_id"]
        assert stopped["audio_end_ms"] > started["audio_start_ms"]
        committed = await s.until("input_audio_buffer.committed")
        assert committed["item_id"] == started["item_id"]
        done = await s.until("response.done")
        _assert_spoken_response(s.check, done)
        types = s.check.types()
        assert types.index("conversation.item.done") < types.index("response.created")


async def test_response_cancel(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=MANUAL)
        await s.until("session.updated")
        await s.text_turn("Tell me everything about the ocean.")
        await s.until("response.created")
        await s.conn.response.cancel()
        done = await s.until("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "client_cancelled"
        assert done["response"]["output"][0]["status"] == "incomplete"
        # Nothing active any more: a second cancel is an error, and the session lives on.
        await s.conn.response.cancel(event_id="evt_cancel_2")
        err = await s.until("error")
        assert err["error"]["code"] == "response_cancel_not_active"
        assert err["error"]["event_id"] == "evt_cancel_2"
        await s.text_turn("Hello again")
        done2 = await s.until("response.done")
        assert done2["response"]["status"] in ("completed", "incomplete")


async def test_barge_in_cancels_the_response(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.text_turn("Tell me a long story.")
        await s.until("response.created")
        # The user talks over the reply: one append of speech is enough for the VAD to fire at once.
        await s.stream(speech_pcm24("Stop, wait a moment.", after_s=0.0), chunk_ms=1000, realtime=False)
        done = await s.until("response.done")
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        started = await s.until("input_audio_buffer.speech_started")
        types = s.check.types()
        assert types.index("response.done") < types.index("input_audio_buffer.speech_started")
        assert started["item_id"]
        # Terminals were emitted for the open item before response.done.
        assert "response.output_item.done" in types[: types.index("response.done")]


async def test_truncate_cuts_transcript_and_clamps(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.session.update(session=MANUAL)
        await s.until("session.updated")
        await s.text_turn("Say something.")
        done = await s.until("response.done")
        item_id = done["response"]["output"][0]["id"]
        full = done["response"]["output"][0]["content"][0]["transcript"]
        await s.conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=0)
        truncated = await s.until("conversation.item.truncated")
        assert truncated["item_id"] == item_id and truncated["audio_end_ms"] == 0
        await s.conn.conversation.item.retrieve(item_id=item_id)
        item = (await s.until("conversation.item.retrieved"))["item"]
        assert item["content"][0]["transcript"] == ""
        assert full  # there was something to cut
        # Past the end: clamped to what was sent, never an error.
        await s.conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=10_000_000)
        clamped = await s.until("conversation.item.truncated")
        sent_ms = _audio_bytes(s.check.events) / 48
        assert 0 < clamped["audio_end_ms"] <= sent_ms + 1
        assert not s.check.of_type("error")


async def test_item_create_delete_keep_client_ids(live_server: LiveServer) -> None:
    async with connect(live_server.http) as s:
        await s.conn.conversation.item.create(
            item={"id": "my_item_1", "type": "message", "role": "user",
                  "content": [{"type": "input_text", "text": "hello"}]}
        )
        added = await s.until("conversation.item.added")
        assert added["item"]["id"] == "my_item_1" and added["previous_item_id"] is None
        await s.conn.conversation.item.create(
            previous_item_id="root",
            item={"id": "sys_1", "type": "message", "role": "system",
                  "content": [{"type": "input_text", "text": "Be brief."}]},
        )
        await s.until("conversation.item.done")
        await s.conn.conversation.item.delete(item_id="my_item_1")
        deleted = await s.until("conversation.item.deleted")
        assert deleted["item_id"] == "my_item_1"
        await s.conn.conversation.item.retrieve(item_id="my_item_1", event_id="evt_r")
        err = await s.until("error")
        assert err["error"]["event_id"] == "evt_r"
        # The prefix was invalidated and is rebuilt lazily: a response still works.
        await s.conn.session.update(session={**MANUAL, "output_modalities": ["text"]})
        await s.conn.response.create()
        done = await s.until("response.done")
        assert done["response"]["status"] in ("completed", "incomplete")


async def test_reasoning_events_only_on_opt_in(live_server: LiveServer) -> None:
    async with connect(live_server.http, allow_extensions=True) as s:
        await s.conn.session.update(
            session={**MANUAL, "output_modalities": ["text"], "stepaudio": {"reasoning_events": True}}
        )
        await s.until("session.updated")
        await s.text_turn("Think about it.")
        await s.until("response.done")
        deltas = s.check.of_type("response.reasoning_text.delta")
        assert deltas, "opted-in session got no reasoning events"
        done = s.check.of_type("response.reasoning_text.done")
        assert done and done[0]["text"] == "".join(d["delta"] for d in deltas).strip()
    # Without the opt-in the checker (allow_extensions=False) fails on any extension event.
    async with connect(live_server.http) as s:
        await s.conn.session.update(session={**MANUAL, "output_modalities": ["text"]})
        await s.text_turn("Think about it.")
        await s.until("response.done")
    await asyncio.sleep(0)
