"""The WebSocket edge of ``/v1/realtime``: negotiate, admit, then a reader loop and a writer task.

The reader parses each client event (size limit, JSON, schema) and routes it to its handler; any
``ProtocolError`` becomes an ``error`` event carrying the client's ``event_id`` and the session lives on.
The writer drains the session's outbox so handlers never block on a slow socket. On disconnect the
session's response (generation + TTS) is cancelled and its engine contexts are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.beta import parse_beta_client_event
from stepaudio_rt.server.handlers import ROUTES
from stepaudio_rt.server.negotiation import key_allowed, negotiate
from stepaudio_rt.server.session import RealtimeSession
from stepaudio_rt.server.state import ServerState

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_INTERNAL = 1011


async def _refuse(ws: WebSocket, subprotocol: str | None, code: int, err: p.ProtocolError) -> None:
    """Accept, say why in an ``error`` event, close: clients see a reason instead of a bare HTTP 403."""
    await ws.accept(subprotocol=subprotocol)
    with contextlib.suppress(Exception):
        await ws.send_text(p.serialize(err.to_event()))
        await ws.close(code=code, reason=err.code)


async def realtime_endpoint(ws: WebSocket) -> None:
    state: ServerState = ws.app.state.realtime
    settings = state.settings
    neg = negotiate(dict(ws.headers), dict(ws.query_params), list(ws.scope.get("subprotocols") or []))
    if not key_allowed(neg.api_key, settings.api_keys):
        state.metrics.sessions_rejected.labels(reason="auth").inc()
        state.metrics.errors.labels(code="invalid_api_key").inc()
        err = p.ProtocolError("invalid_api_key", "Incorrect API key provided.", type="invalid_request_error")
        await _refuse(ws, neg.subprotocol, CLOSE_POLICY, err)
        return
    if not state.try_reserve():
        state.metrics.sessions_rejected.labels(reason="capacity").inc()
        state.metrics.errors.labels(code="session_limit_reached").inc()
        err = p.ProtocolError(
            "session_limit_reached",
            f"The server is at its limit of {settings.max_sessions} sessions; try again later.",
            type="server_error",
        )
        await _refuse(ws, neg.subprotocol, CLOSE_TRY_AGAIN, err)
        return
    outbox: asyncio.Queue[str | None] = asyncio.Queue()
    session: RealtimeSession | None = None
    writer: asyncio.Task[None] | None = None
    try:
        await ws.accept(subprotocol=neg.subprotocol)
        session = RealtimeSession(state, neg, outbox.put_nowait)
        state.sessions.add(session)
        state.reserved -= 1  # the reservation became a registered session
        state.metrics.sessions.inc()
        state.metrics.sessions_total.inc()
        writer = asyncio.create_task(_writer(ws, outbox), name=f"writer-{session.config.id}")
        session.send(p.SessionCreatedEvent(session=session.config))
        await _reader(ws, session, settings.max_event_bytes)
    except WebSocketDisconnect:
        pass
    except Exception:
        log.exception("realtime session failed")
        with contextlib.suppress(Exception):
            await ws.close(code=CLOSE_INTERNAL)
    finally:
        if session is None:
            state.reserved -= 1
        else:
            state.sessions.discard(session)
            state.metrics.sessions.dec()
            await session.aclose()
        outbox.put_nowait(None)
        if writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer, timeout=5)


async def _reader(ws: WebSocket, session: RealtimeSession, max_bytes: int) -> None:
    parse = parse_beta_client_event if session.dialect == "beta" else p.parse_client_event
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        try:
            if raw is None:
                raise p.ProtocolError(
                    "invalid_event", "Binary frames are not supported; send JSON events as text frames."
                )
            if len(raw) > max_bytes:
                raise p.ProtocolError(
                    "event_too_large", f"Event of {len(raw)} bytes exceeds the limit of {max_bytes} bytes."
                )
            event = parse(raw)
            await ROUTES[event.type](session, event)
        except p.ProtocolError as exc:
            if exc.event_id is None and raw is not None:
                exc.event_id = _peek_event_id(raw)
            session.error(exc)
        except Exception as exc:  # a bug must not end the session: report it like OpenAI does
            log.exception("handler failed")
            session.error(p.ProtocolError("server_error", f"Internal error: {exc}", type="server_error"))


def _peek_event_id(raw: str) -> str | None:
    try:
        return p.readable_event_id(p.load_event_json(raw))
    except p.ProtocolError:
        return None


async def _writer(ws: WebSocket, outbox: asyncio.Queue[str | None]) -> None:
    while True:
        text = await outbox.get()
        if text is None or ws.application_state != WebSocketState.CONNECTED:
            return
        try:
            await ws.send_text(text)
        except Exception:
            return  # client gone; the reader sees the disconnect and cleans up
