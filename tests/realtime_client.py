"""Test helpers around the official openai SDK's realtime connection.

The SDK drives the session (``conn.session.update(...)``, ``conn.response.create()`` ...); we read raw
frames with ``recv_bytes`` so every event can be checked by :class:`EventChecker` before use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from tests.audio_fixtures import pad, resample, speak_espeak
from tests.protocol_checks import EventChecker


def speech_pcm24(text: str, before_s: float = 0.3, after_s: float = 1.2) -> bytes:
    """Spoken ``text`` (espeak-ng) as 24 kHz PCM16 with silence around it."""
    audio, sr = speak_espeak(text)
    wav = resample(pad(audio, sr, before_s, after_s), sr, 24000)
    return (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Session:
    def __init__(self, conn: Any, checker: EventChecker) -> None:
        self.conn = conn
        self.check = checker

    async def next(self, timeout: float = 30.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv_bytes(), timeout)
        return self.check.feed(raw)

    async def until(self, kind: str, timeout: float = 60.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            ev = await self.next(max(0.1, deadline - loop.time()))
            if ev["type"] == kind:
                return ev

    async def stream(self, pcm: bytes, chunk_ms: int = 40, realtime: bool = True) -> None:
        """Append 24 kHz PCM16 in chunks, at real-time pace when ``realtime``."""
        step = 24000 * 2 * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            await self.conn.input_audio_buffer.append(audio=b64(pcm[i : i + step]))
            if realtime:
                await asyncio.sleep(chunk_ms / 1000)

    async def text_turn(self, text: str) -> None:
        await self.conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )
        await self.conn.response.create()


@contextlib.asynccontextmanager
async def connect(
    base_http: str, api_key: str = "test", allow_extensions: bool = False, **query: str
) -> AsyncIterator[Session]:
    client = AsyncOpenAI(api_key=api_key, base_url=base_http + "/v1")
    async with client.realtime.connect(model="step-audio-r1", extra_query=query) as conn:
        session = Session(conn, EventChecker(allow_extensions=allow_extensions))
        first = await session.next()
        assert first["type"] == "session.created"
        yield session
