"""A small async client for the OpenAI Realtime (GA) protocol, on the official ``openai`` SDK connection.

The SDK opens the WebSocket (URL, auth header, reconnect policy); we speak plain JSON over it, so the
client works with any server that speaks the protocol and can carry our opt-in extensions (the
``reasoning_events`` query parameter and ``response.reasoning_text.*`` events) without SDK types.

A background reader stamps every server event with ``time.perf_counter()`` as it arrives, so latency
measurements do not depend on when the caller gets round to reading. One spoken turn::

    async with RealtimeClient("http://127.0.0.1:8000") as client:
        turn = await client.ask(read_audio("question.wav"))
        print(turn.reasoning, turn.transcript, turn.latency("speech_stopped"))
        write_wav("reply.wav", bytes(turn.audio))
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI

from stepaudio_rt.clients.urls import api_base
from stepaudio_rt.clients.wav_stream import duration_s, paced_chunks, paced_silence, silence

Event = dict[str, Any]
EventCallback = Callable[[Event], None]

REASONING_QUERY_PARAM = "reasoning_events"  # the server's opt-in for response.reasoning_text.* events
DEFAULT_MODEL = "step-audio-r1"

# Marks: perf_counter() timestamps on the client. "*_sent" marks are taken right after the frame was
# handed to the socket; the others when the server event was received.
EVENT_MARKS = {
    "input_audio_buffer.speech_started": "speech_started",
    "input_audio_buffer.speech_stopped": "speech_stopped",
    "input_audio_buffer.committed": "committed",
    "response.created": "response_created",
    "response.reasoning_text.delta": "first_reasoning",
    "response.output_audio_transcript.delta": "first_transcript",
    "response.output_audio.delta": "first_audio",
    "response.output_text.delta": "first_text",
    "response.done": "done",
}


class RealtimeError(RuntimeError):
    """The server sent an ``error`` where we needed an answer, closed the connection, or timed out."""


class RealtimeTimeout(RealtimeError):
    """Nothing (or not the awaited event) arrived in time."""


@dataclass
class Turn:
    """One response and what led to it: text, reasoning, reply audio (24 kHz PCM16) and timing marks."""

    marks: dict[str, float] = field(default_factory=dict)
    response_id: str | None = None
    status: str | None = None
    status_details: dict[str, Any] | None = None
    transcript: str = ""
    reasoning: str = ""
    text: str = ""
    audio: bytearray = field(default_factory=bytearray)
    usage: dict[str, Any] | None = None
    errors: list[Event] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)

    def mark(self, name: str, at: float | None = None) -> None:
        """Record ``name`` once (the first occurrence is what latency clocks need)."""
        self.marks.setdefault(name, time.perf_counter() if at is None else at)

    @property
    def first_packet(self) -> float | None:
        """When the first reply audio (or, in text mode, text) arrived."""
        return self.marks.get("first_audio", self.marks.get("first_text"))

    def latency(self, start: str) -> float | None:
        """Seconds from mark ``start`` to the first reply packet; None if either is missing."""
        first, t0 = self.first_packet, self.marks.get(start)
        return None if first is None or t0 is None else first - t0

    @property
    def audio_seconds(self) -> float:
        return duration_s(bytes(self.audio))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (no audio bytes; marks relative to the first mark)."""
        origin = min(self.marks.values(), default=0.0)
        return {
            "response_id": self.response_id,
            "status": self.status,
            "status_details": self.status_details,
            "transcript": self.transcript,
            "reasoning": self.reasoning,
            "text": self.text,
            "audio_seconds": round(self.audio_seconds, 3),
            "usage": self.usage,
            "errors": [e.get("error", e) for e in self.errors],
            "marks_s": {k: round(v - origin, 4) for k, v in sorted(self.marks.items(), key=lambda kv: kv[1])},
        }


class RealtimeClient:
    """An open Realtime session. Use as ``async with RealtimeClient(url) as client: ...``.

    ``url`` may be ``host:port``, ``http(s)://host:port[/v1]`` or ``ws(s)://host:port/v1/realtime``.
    ``api_key`` defaults to ``$OPENAI_API_KEY`` or a placeholder (servers with auth off accept any key).
    ``reasoning_events`` asks our server for the model's ``<think>`` text (other servers ignore it).
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        model: str = DEFAULT_MODEL,
        reasoning_events: bool = True,
        connect_timeout: float = 30.0,
    ) -> None:
        self.url = api_base(url)
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.model = model
        self.reasoning_events = reasoning_events
        self.connect_timeout = connect_timeout
        self.session: Event = {}
        self._manager: Any = None
        self._conn: Any = None
        self._queue: asyncio.Queue[tuple[float, Event | BaseException]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    # ----- connection -----
    async def __aenter__(self) -> RealtimeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> Event:
        """Open the WebSocket and wait for ``session.created``; returns the session config."""
        sdk = AsyncOpenAI(api_key=self.api_key, base_url=self.url, max_retries=0)
        query = {REASONING_QUERY_PARAM: "1"} if self.reasoning_events else {}
        self._manager = sdk.realtime.connect(model=self.model, extra_query=query)
        try:
            self._conn = await asyncio.wait_for(self._manager.__aenter__(), self.connect_timeout)
        except (TimeoutError, OSError) as exc:
            raise RealtimeError(f"cannot connect to {self.url}/realtime: {exc or type(exc).__name__}") from exc
        except Exception as exc:  # websockets' InvalidStatus / InvalidURI and friends
            raise RealtimeError(f"cannot connect to {self.url}/realtime: {exc}") from exc
        self._reader = asyncio.create_task(self._read_loop(), name="realtime-reader")
        first = await self.next_event(self.connect_timeout)
        if first.get("type") == "error":
            raise RealtimeError(f"server refused the session: {_error_text(first)}")
        if first.get("type") != "session.created":
            raise RealtimeError(f"expected session.created first, got {first.get('type')!r}")
        self.session = first.get("session", {})
        return self.session

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._manager is not None:
            with contextlib.suppress(Exception):
                await self._manager.__aexit__(None, None, None)
            self._manager = self._conn = None

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self._conn.recv_bytes()
                now = time.perf_counter()
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue  # not JSON: nothing a Realtime client can act on
                if isinstance(event, dict):
                    self._queue.put_nowait((now, event))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # closed connection: hand it to whoever waits for events
            self._queue.put_nowait((time.perf_counter(), exc))

    # ----- receiving -----
    async def next_timed(self, timeout: float | None = 60.0) -> tuple[float, Event]:
        """The next server event and the perf_counter() time it arrived."""
        try:
            at, item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise RealtimeTimeout(f"no server event within {timeout:.1f} s") from None
        if isinstance(item, BaseException):
            self._queue.put_nowait((at, item))  # stay closed for later readers
            raise RealtimeError(f"connection closed: {_close_text(item)}") from item
        return at, item

    async def next_event(self, timeout: float | None = 60.0) -> Event:
        return (await self.next_timed(timeout))[1]

    async def wait_for(self, event_type: str, timeout: float = 60.0) -> Event:
        """Read until an event of ``event_type``; an ``error`` on the way raises."""
        deadline = time.perf_counter() + timeout
        while True:
            event = await self.next_event(max(0.01, deadline - time.perf_counter()))
            if event.get("type") == event_type:
                return event
            if event.get("type") == "error":
                raise RealtimeError(f"server error while waiting for {event_type}: {_error_text(event)}")

    # ----- sending -----
    async def send(self, event: Event) -> None:
        """Send one client event as JSON (plain dicts, so extension fields pass through untouched)."""
        if self._conn is None:
            raise RealtimeError("not connected")
        await self._conn.send_raw(json.dumps(event))

    async def update_session(self, session: Event, timeout: float = 30.0) -> Event:
        """``session.update`` (GA shape; ``type: realtime`` is added) and wait for ``session.updated``."""
        await self.send({"type": "session.update", "session": {"type": "realtime", **session}})
        self.session = (await self.wait_for("session.updated", timeout)).get("session", {})
        return self.session

    async def append_audio(self, pcm: bytes) -> None:
        await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")})

    async def stream_audio(self, pcm: bytes, chunk_ms: int = 40, speed: float = 1.0) -> float:
        """Append 24 kHz PCM16 in ``chunk_ms`` pieces at ``speed`` x real time (``inf``: no pacing)."""
        async for chunk in paced_chunks(pcm, chunk_ms, speed):
            await self.append_audio(chunk)
        return time.perf_counter()

    async def commit(self) -> None:
        await self.send({"type": "input_audio_buffer.commit"})

    async def create_response(self, response: Event | None = None) -> None:
        await self.send({"type": "response.create", **({"response": response} if response else {})})

    async def cancel_response(self) -> None:
        await self.send({"type": "response.cancel"})

    # ----- whole turns -----
    async def collect(
        self, turn: Turn | None = None, on_event: EventCallback | None = None, timeout: float = 120.0
    ) -> Turn:
        """Read events into ``turn`` until its ``response.done``. Errors are recorded, not raised, unless
        the connection closes or nothing arrives within ``timeout`` (RealtimeError)."""
        turn = turn or Turn()
        deadline = time.perf_counter() + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise RealtimeTimeout(f"no response.done within {timeout:.1f} s")
            at, ev = await self.next_timed(remaining)
            kind = str(ev.get("type", ""))
            rid = ev.get("response_id") or (ev.get("response") or {}).get("id")
            if turn.response_id is not None and rid is not None and rid != turn.response_id:
                continue  # a different response (e.g. one still closing from before)
            turn.event_types.append(kind)
            if kind in EVENT_MARKS:
                turn.mark(EVENT_MARKS[kind], at)
            if on_event is not None:
                on_event(ev)
            if kind == "response.created":
                turn.response_id = ev["response"]["id"]
            elif kind == "response.output_audio.delta":
                turn.audio += base64.b64decode(ev.get("delta", ""))
            elif kind == "response.output_audio_transcript.delta":
                turn.transcript += ev.get("delta", "")
            elif kind == "response.output_text.delta":
                turn.text += ev.get("delta", "")
            elif kind == "response.reasoning_text.delta":
                turn.reasoning += ev.get("delta", "")
            elif kind == "response.reasoning_text.done":
                turn.reasoning = ev.get("text", turn.reasoning)
            elif kind == "error":
                turn.errors.append(ev)
            elif kind == "response.done":
                resp = ev.get("response", {})
                turn.response_id = resp.get("id", turn.response_id)
                turn.status = resp.get("status")
                turn.status_details = resp.get("status_details")
                turn.usage = resp.get("usage")
                return turn

    async def ask(
        self,
        pcm: bytes,
        *,
        chunk_ms: int = 40,
        speed: float = 1.0,
        manual: bool = False,
        lead_silence_s: float = 0.0,
        trailing_silence_s: float = 1.5,
        keep_streaming: bool = True,
        on_event: EventCallback | None = None,
        timeout: float = 120.0,
    ) -> Turn:
        """Speak ``pcm`` (24 kHz PCM16) as one user turn and collect the reply.

        Server-VAD mode (default): stream ``lead silence + speech + trailing silence`` and let the server
        end the turn; with ``keep_streaming`` silence then keeps flowing until the reply is done, as from a
        live microphone. ``manual=True``: stream the speech, then ``commit`` + ``response.create`` (the
        session must have ``turn_detection: null``). Marks: ``speech_end_sent`` (last byte of the speech
        itself), ``audio_end_sent`` (end of the trailing silence), ``commit_sent`` (manual only), and the
        server events (see ``EVENT_MARKS``).
        """
        turn = Turn()
        lead, trail = silence(lead_silence_s), (b"" if manual else silence(trailing_silence_s))
        stream = lead + pcm + trail
        speech_end = len(lead) + len(pcm)

        async def sender() -> None:
            sent = 0
            turn.mark("audio_start_sent")
            async for chunk in paced_chunks(stream, chunk_ms, speed):
                await self.append_audio(chunk)
                sent += len(chunk)
                if sent >= speech_end:
                    turn.mark("speech_end_sent")
            turn.mark("audio_end_sent")
            if not manual and keep_streaming and speed != float("inf"):
                async for gap in paced_silence(chunk_ms, speed):  # endless: cancelled when the reply is done
                    await self.append_audio(gap)
            if manual:
                await self.commit()
                turn.mark("commit_sent")
                await self.create_response()
                turn.mark("response_create_sent")

        task = asyncio.create_task(sender(), name="realtime-sender")
        try:
            return await self.collect(turn, on_event, timeout)
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def ask_text(self, text: str, on_event: EventCallback | None = None, timeout: float = 120.0) -> Turn:
        """A typed user message followed by ``response.create``."""
        turn = Turn()
        await self.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
            }
        )
        await self.create_response()
        turn.mark("response_create_sent")
        return await self.collect(turn, on_event, timeout)


def _error_text(event: Event) -> str:
    err = event.get("error") or {}
    return f"{err.get('code') or err.get('type') or 'error'}: {err.get('message', '')}".strip()


def _close_text(exc: BaseException) -> str:
    rcvd = getattr(exc, "rcvd", None)
    if rcvd is not None:
        return f"code {rcvd.code} {rcvd.reason or ''}".strip()
    return str(exc) or type(exc).__name__
