"""Listen-while-thinking: prefill a user turn chunk by chunk while the user is still speaking.

While speech arrives, chunks of at most ``chunk_seconds`` of 16 kHz audio, each ending in the quietest
20 ms of its last 40% (``audio_frontend.take_listen_chunks``: a word is not cut in half), are encoded and appended
to a private fork of the conversation prefix by a background worker (``engine.append_audio``), so at end
of turn only the remainder is left to encode. The chunks are exactly those ``split_at_pauses`` makes of
the whole turn, which is what the demo checkpoint was trained on. :meth:`ListeningTurn.finish` flushes
the remainder, closes the turn with ``<|EOT|>`` and hands back a context that ends exactly with the
rendered user turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np

from stepaudio_rt.model.audio_frontend import MAX_CHUNK_SECONDS, SAMPLE_RATE, take_listen_chunks
from stepaudio_rt.model.engine import Context
from stepaudio_rt.model.prompt import END_OF_TURN, USER_PREFIX
from stepaudio_rt.streaming.conversation import AudioPart, Conversation, Turn

_STOP = object()


@dataclass
class _Snapshot:
    """Queued behind the chunks already sent to the worker: fork the turn's context once they are in."""

    future: asyncio.Future[Context]


@dataclass(frozen=True)
class FinishStats:
    """What was left to do at end of turn (the listen-while-thinking payoff)."""

    chunks_before_end: int  # chunks already encoded (or queued) while the user spoke
    tail_seconds: float  # audio left to encode at end of turn
    finish_seconds: float  # wall time of finish(): wait for the worker + encode the tail + <|EOT|>
    adopted: bool = False  # set by the caller: whether the context became the conversation prefix


class ListeningTurn:
    """A user audio turn being prefilled incrementally. Create, ``feed`` audio, then ``finish`` or ``aclose``."""

    def __init__(self, conversation: Conversation, turn_id: str, chunk_seconds: float = 2.0) -> None:
        if chunk_seconds <= 0 or chunk_seconds > MAX_CHUNK_SECONDS:
            raise ValueError(f"chunk_seconds must be in (0, {MAX_CHUNK_SECONDS}], got {chunk_seconds}")
        self.conversation = conversation
        self.turn_id = turn_id
        self._chunk_samples = int(chunk_seconds * SAMPLE_RATE)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self.chunks: list[np.ndarray] = []
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._ctx: Context | None = None
        self._epoch = -1
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._snapshots: list[asyncio.Future[Context]] = []

    @property
    def num_samples(self) -> int:
        return sum(len(c) for c in self.chunks) + self._pending_len

    def feed(self, samples_16k: np.ndarray) -> None:
        """Add speech (float32, 16 kHz); full chunks are queued for background prefill at once."""
        if self._closed:
            raise RuntimeError("turn already finished")
        if samples_16k.size == 0:
            return
        self._pending.append(np.asarray(samples_16k, dtype=np.float32))
        self._pending_len += len(samples_16k)
        if self._pending_len > self._chunk_samples:  # only then is the chunk known not to be the last
            chunks, rest = take_listen_chunks(np.concatenate(self._pending), self._chunk_samples)
            for chunk in chunks:
                self._enqueue(chunk)
            self._pending = [rest] if rest.size else []
            self._pending_len = len(rest)

    def _enqueue(self, chunk: np.ndarray) -> None:
        self.chunks.append(chunk)
        self._queue.put_nowait(chunk)
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name=f"listen-{self.turn_id}")

    async def _run(self) -> None:
        engine = self.conversation.engine
        while True:
            item = await self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Snapshot):
                if item.future.done():  # its waiter gave up
                    continue
                if self._ctx is None:
                    item.future.set_exception(RuntimeError("the turn has no context to fork"))
                else:
                    item.future.set_result(engine.fork(self._ctx))
                continue
            if self._ctx is None:
                self._ctx, self._epoch = await self.conversation.fork()
                await engine.append_text(self._ctx, USER_PREFIX)
            assert isinstance(item, np.ndarray)
            await engine.append_audio(self._ctx, item)

    async def finish(self) -> tuple[Turn, Context, int, FinishStats]:
        """Flush the tail, close the turn; returns (turn, context ending with it, fork epoch, stats).

        The caller owns the returned context (pass it to :meth:`Conversation.adopt`).
        """
        t0 = time.perf_counter()
        before = len(self.chunks)
        tail = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        self._pending, self._pending_len = [], 0
        max_chunk = int(MAX_CHUNK_SECONDS * SAMPLE_RATE)
        for start in range(0, len(tail), max_chunk):
            self._enqueue(tail[start : start + max_chunk])
        if self._worker is None:  # nothing spoken at all: still produce a (text-less) turn context
            self._worker = asyncio.create_task(self._run(), name=f"listen-{self.turn_id}")
        self._queue.put_nowait(_STOP)
        self._closed = True
        await self._worker
        engine = self.conversation.engine
        if self._ctx is None:
            self._ctx, self._epoch = await self.conversation.fork()
            await engine.append_text(self._ctx, USER_PREFIX)
        await engine.append_text(self._ctx, END_OF_TURN)
        ctx, self._ctx = self._ctx, None
        turn = Turn(id=self.turn_id, role="user", parts=[AudioPart(chunks=list(self.chunks))])
        stats = FinishStats(
            chunks_before_end=before,
            tail_seconds=len(tail) / SAMPLE_RATE,
            finish_seconds=time.perf_counter() - t0,
        )
        return turn, ctx, self._epoch, stats

    async def snapshot(self) -> tuple[Turn, Context]:
        """The turn as if it ended now, without ending it: (turn, a private context ending with it).

        For a speculative response (``server/speculative_response.py``): the chunks prefilled so far are
        shared through a fork, the tail and ``<|EOT|>`` go into the fork only; the turn keeps listening
        and the conversation is untouched. The caller owns the context (``engine.release`` it).
        """
        if self._closed:
            raise RuntimeError("turn already finished")
        engine = self.conversation.engine
        chunks = list(self.chunks)
        tail = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        if self._worker is None:  # nothing prefilled yet (a turn shorter than one chunk)
            ctx, _ = await self.conversation.fork()
            try:
                await engine.append_text(ctx, USER_PREFIX)
            except BaseException:
                engine.release(ctx)
                raise
        else:
            future: asyncio.Future[Context] = asyncio.get_running_loop().create_future()
            self._snapshots.append(future)
            self._queue.put_nowait(_Snapshot(future))
            try:
                ctx = await future
            except BaseException:  # cancelled just as the fork arrived: free it
                if future.done() and not future.cancelled() and future.exception() is None:
                    engine.release(future.result())
                raise
            finally:
                self._snapshots.remove(future)
        try:
            max_chunk = int(MAX_CHUNK_SECONDS * SAMPLE_RATE)
            for start in range(0, len(tail), max_chunk):
                piece = tail[start : start + max_chunk]
                chunks.append(piece)
                await engine.append_audio(ctx, piece)
            await engine.append_text(ctx, END_OF_TURN)
        except BaseException:
            engine.release(ctx)
            raise
        return Turn(id=self.turn_id, role="user", parts=[AudioPart(chunks=chunks)]), ctx

    async def aclose(self) -> None:
        """Abandon the turn (buffer cleared, session closed): stop the worker and free the context."""
        self._closed = True
        for future in self._snapshots:  # the worker will not get to them
            future.cancel()
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # abandoning: errors are moot
                await self._worker
        if self._ctx is not None:
            self.conversation.engine.release(self._ctx)
            self._ctx = None
