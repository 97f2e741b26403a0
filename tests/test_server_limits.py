"""Auth, capacity, HTTP endpoints, beta dialect and browser subprotocol negotiation."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import LiveServer


async def _closed_code(ws: websockets.ClientConnection) -> tuple[list[dict], int | None]:
    events = []
    try:
        while True:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except ConnectionClosed as exc:
        return events, exc.rcvd.code if exc.rcvd else None


async def test_bad_key_closes_1008(auth_server: LiveServer) -> None:
    ws = await websockets.connect(auth_server.ws, additional_headers={"Authorization": "Bearer wrong"})
    events, code = await _closed_code(ws)
    assert code == 1008
    assert events and events[0]["error"]["code"] == "invalid_api_key"


async def test_browser_subprotocol_key_and_capacity_1013(auth_server: LiveServer) -> None:
    protocols = ["realtime", "openai-insecure-api-key.sekret"]
    async with websockets.connect(auth_server.ws, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "realtime"
        first = json.loads(await ws.recv())
        assert first["type"] == "session.created"
        # The server holds one session: a second client is told so and closed with 1013 (retryable).
        ws2 = await websockets.connect(auth_server.ws, additional_headers={"Authorization": "Bearer sekret"})
        events, code = await _closed_code(ws2)
        assert code == 1013
        assert events[0]["error"]["code"] == "session_limit_reached"
    # Capacity is released on disconnect.
    for _ in range(50):
        if auth_server.health()["sessions"] == 0:
            break
        await asyncio.sleep(0.1)
    async with websockets.connect(auth_server.ws, additional_headers={"Authorization": "Bearer sekret"}) as ws3:
        assert json.loads(await ws3.recv())["type"] == "session.created"


def test_http_endpoints(live_server: LiveServer) -> None:
    status, body = live_server.get("/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "step-audio-r1"
    assert live_server.health()["status"] == "ok"
    status, metrics = live_server.get("/metrics")
    assert status == 200
    for name in ("stepaudio_rt_sessions", "stepaudio_rt_first_packet_seconds", "stepaudio_rt_errors_total",
                 "stepaudio_rt_decode_tokens_per_second"):
        assert name in metrics


async def test_beta_dialect_gets_beta_names(live_server: LiveServer) -> None:
    async with websockets.connect(live_server.ws, additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:
        first = json.loads(await ws.recv())
        assert first["type"] == "session.created"
        assert "modalities" in first["session"]  # the flat beta shape
        await ws.send(json.dumps({"type": "session.update", "session": {"modalities": ["text"],
                                                                         "turn_detection": None}}))
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        types = []
        while "response.done" not in types:
            types.append(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
        assert "conversation.item.created" in types
        assert "response.text.delta" in types or "response.text.done" in types
        assert not any(t.startswith(("response.output_text", "response.output_audio")) for t in types)


@pytest.mark.parametrize("n", [20])
async def test_concurrent_sessions_and_disconnect_cleanup(live_server: LiveServer, n: int) -> None:
    from tests.realtime_client import connect

    async def one_turn(i: int) -> str:
        async with connect(live_server.http) as s:
            await s.conn.session.update(session={"type": "realtime", "output_modalities": ["text"],
                                                 "audio": {"input": {"turn_detection": None}}})
            await s.text_turn(f"Question number {i}?")
            done = await s.until("response.done", timeout=240)
            return done["response"]["status"]

    statuses = await asyncio.gather(*(one_turn(i) for i in range(n)))
    assert all(st in ("completed", "incomplete") for st in statuses), statuses

    # Clients that vanish mid-response leave no generation or TTS running.
    async def drop_mid_response() -> None:
        ws = await websockets.connect(live_server.ws)
        await ws.recv()
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "talk"}]}}))
        await ws.send(json.dumps({"type": "response.create"}))
        while json.loads(await ws.recv())["type"] != "response.created":
            pass
        await ws.close()

    await asyncio.gather(*(drop_mid_response() for _ in range(4)))
    health: dict = {}
    for _ in range(100):
        health = live_server.health()
        if health["sessions"] == 0 and health["engine"].get("active_streams") == 0:
            break
        await asyncio.sleep(0.1)
    assert health["sessions"] == 0
    assert health["active_responses"] == 0
    assert health["engine"]["active_streams"] == 0
