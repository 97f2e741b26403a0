"""Per-event-family handlers and the router that maps a client event type to its handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from stepaudio_rt.server.handlers.audio import buffer_append, buffer_clear, buffer_commit
from stepaudio_rt.server.handlers.items import item_create, item_delete, item_retrieve, item_truncate
from stepaudio_rt.server.handlers.response import response_cancel, response_create
from stepaudio_rt.server.handlers.session_events import session_update
from stepaudio_rt.server.session import RealtimeSession

Handler = Callable[[RealtimeSession, Any], Awaitable[None]]


async def _ignore(s: RealtimeSession, event: Any) -> None:
    """``output_audio_buffer.clear`` is WebRTC/SIP only; over WebSocket the client owns playback."""


ROUTES: dict[str, Handler] = {
    "session.update": session_update,
    "input_audio_buffer.append": buffer_append,
    "input_audio_buffer.commit": buffer_commit,
    "input_audio_buffer.clear": buffer_clear,
    "conversation.item.create": item_create,
    "conversation.item.delete": item_delete,
    "conversation.item.retrieve": item_retrieve,
    "conversation.item.truncate": item_truncate,
    "response.create": response_create,
    "response.cancel": response_cancel,
    "output_audio_buffer.clear": _ignore,
}

__all__ = ["ROUTES", "Handler"]
