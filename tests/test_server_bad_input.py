"""Bad input: each mistake gets an ``error`` event (code + the client's event_id) and the session lives on.

Raw WebSocket frames (not the SDK) so that we can send what no SDK would: non-JSON, binary frames.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import websockets

from tests.conftest import LiveServer
from tests.protocol_checks import EventChecker


class Raw:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.check = EventChecker()

    async def recv(self, timeout: float = 30) -> dict[str, Any]:
        import asyncio

        return self.check.feed(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, kind: str) -> dict[str, Any]:
        while True:
            ev = await self.recv()
            if ev["type"] == kind:
                return ev

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str | bytes) else json.dumps(obj))


async def _open(server: LiveServer) -> Any:
    return await websockets.connect(server.ws + "?model=x", max_size=None)


async def _alive(r: Raw) -> None:
    """The session still answers: a session.update round trip."""
    await r.send({"type": "session.update", "session": {"type": "realtime", "instructions": "still here"}})
    ev = await r.until("session.updated")
    assert ev["session"]["instructions"] == "still here"


PCM_100MS = base64.b64encode(b"\x00\x01" * 2400).decode()
MANUAL = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}

CASES: list[tuple[str, Any, str]] = [
    ("non_json", "{not json", "invalid_json"),
    ("json_array", "[1, 2]", "invalid_event"),
    ("unknown_type", {"type": "nope.nothing", "event_id": "e1"}, "invalid_value"),
    ("missing_type", {"event_id": "e2"}, "missing_required_parameter"),
    ("missing_audio", {"type": "input_audio_buffer.append", "event_id": "e3"}, "missing_required_parameter"),
    ("mistyped_audio", {"type": "input_audio_buffer.append", "audio": 5, "event_id": "e4"}, "invalid_type"),
    ("bad_base64", {"type": "input_audio_buffer.append", "audio": "@@@###", "event_id": "e5"}, "invalid_value"),
    ("odd_pcm", {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode(), "event_id": "e6"},
     "invalid_value"),
    ("oversized_append", {"type": "input_audio_buffer.append", "audio": "A" * 300_000, "event_id": "e7"},
     "event_too_large"),
    ("commit_empty", {"type": "input_audio_buffer.commit", "event_id": "e8"}, "input_audio_buffer_commit_empty"),
    ("cancel_idle", {"type": "response.cancel", "event_id": "e9"}, "response_cancel_not_active"),
    ("truncate_unknown", {"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
                          "audio_end_ms": 5, "event_id": "e10"}, "item_not_found"),
    ("bad_session_value", {"type": "session.update", "event_id": "e11",
                           "session": {"type": "realtime", "output_modalities": ["video"]}}, "invalid_value"),
    ("bad_threshold", {"type": "session.update", "event_id": "e12", "session": {
        "type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 7}}}}},
     "invalid_value"),
    ("session_without_type", {"type": "session.update", "event_id": "e13", "session": {"instructions": "x"}},
     "missing_required_parameter"),
    ("delete_unknown", {"type": "conversation.item.delete", "item_id": "ghost", "event_id": "e14"}, "item_not_found"),
    ("binary_frame", b"\x00\x01\x02", "invalid_event"),
]


@pytest.mark.parametrize("name,payload,code", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_error_and_session_survives(live_server: LiveServer, name: str, payload: Any,
                                                         code: str) -> None:
    async with await _open(live_server) as ws:
        r = Raw(ws)
        assert (await r.recv())["type"] == "session.created"
        await r.send(MANUAL)
        await r.until("session.updated")
        await r.send(payload)
        err = await r.until("error")
        assert err["error"]["code"] == code, err
        if isinstance(payload, dict) and "event_id" in payload:
            assert err["error"]["event_id"] == payload["event_id"]
        assert err["error"]["message"]
        await _alive(r)


async def test_truncate_past_end_is_clamped_not_an_error(live_server: LiveServer) -> None:
    async with await _open(live_server) as ws:
        r = Raw(ws)
        await r.recv()
        await r.send({"type": "conversation.item.create", "item": {
            "id": "asst_1", "type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "hello"}]}})
        await r.until("conversation.item.done")
        await r.send({"type": "conversation.item.truncate", "item_id": "asst_1", "content_index": 0,
                      "audio_end_ms": 99999})
        ev = await r.until("conversation.item.truncated")
        assert ev["audio_end_ms"] == 0  # nothing was ever played for a client-created item


async def test_second_response_while_busy_is_rejected(live_server: LiveServer) -> None:
    async with await _open(live_server) as ws:
        r = Raw(ws)
        await r.recv()
        await r.send({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}})
        await r.send({"type": "response.create"})
        await r.send({"type": "response.create", "event_id": "dup"})
        err = await r.until("error")
        assert err["error"]["code"] == "conversation_already_has_active_response"
        assert err["error"]["event_id"] == "dup"
        await r.until("response.done")
        await _alive(r)
