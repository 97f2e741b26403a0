"""semantic_vad: start the response early in the pause, while the end-of-turn model is still deciding.

A speculative response starts 80 ms into a pause (``PauseStarted``), so its work overlaps the rest of the
pause the VAD waits for (``PauseDetected`` at 160 ms) and the end-of-turn model's score (~45 ms on an idle
CPU, ~150 ms loaded), and a "probably complete" turn's wait until the pause reaches 800 ms. The user turn
so far is snapshotted (the chunks already prefilled while the user spoke are shared through a fork; the
tail and ``<|EOT|>`` go into the fork only) and a run generates from the conversation + that snapshot
(:class:`~stepaudio_rt.streaming.speculative.SpeculativeConversation`). Everything it produces is held:
the run's pipeline events (reasoning, text, the first synthesised audio chunks) are queued here, nothing
is sent, nothing is written to the conversation, and ``response.created`` does not exist yet.

- **Confirmed** (the turn ends at that pause: "surely complete" at once, or "probably complete" when the
  pause reaches 800 ms): ``input_audio_handlers._speech_stopped`` takes the speculation. The turn is
  committed from the snapshot (its context is adopted as the conversation prefix, so the conversation
  holds exactly what the response was generated from; the pause's remaining silence is not part of the
  item), and ``start_response`` hands the held run (:class:`HeldRun`) to an ordinary ``ActiveResponse``,
  which then sends ``response.created``, the item events and the queued deltas in the normal order, as
  if the response started now. First-packet metrics are measured from that committed turn end. Usage is
  the run's own, reported once in ``response.done``.
- **Rejected** (the score says incomplete, the scoring failed, the user speaks again, the buffer is
  cleared or committed by hand, the session changes or closes): the run is cancelled through its cancel
  token and its contexts are released; nothing was sent, so nothing is left to undo, and the listening
  turn goes on exactly as without speculation.

A speculation is only used for the turn and pause it started at, with the response options the turn's
end would use, and only if the conversation did not change since; otherwise it is discarded and the
response starts afresh. ``server_vad`` never speculates: it is the baseline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.session import RealtimeSession
from stepaudio_rt.streaming.pipeline import (
    PipelineEvent,
    ResponseFinished,
    ResponseOptions,
    ResponseTimings,
    RunBase,
    TokenUsage,
)
from stepaudio_rt.streaming.scheduler import CommitResult
from stepaudio_rt.streaming.speculative import SpeculativeConversation
from stepaudio_rt.streaming.turn import FinishStats

log = logging.getLogger(__name__)


class SpeculativeResponse:
    """One speculative run for ``item_id``'s pause at ``pause_ms``; its events are queued until released."""

    def __init__(self, s: RealtimeSession, item_id: str, pause_ms: int, options: ResponseOptions) -> None:
        listening = s.scheduler.listening
        if listening is None or listening.turn_id != item_id:
            raise RuntimeError("no listening turn to speculate on")
        self.session = s
        self.item_id = item_id
        self.pause_ms = pause_ms
        self.options = options
        self.epoch = s.scheduler.conversation.epoch  # the conversation it was started from
        self.started = time.perf_counter()
        self.released = False
        self.cancelled = False
        self.committed = False  # the turn was committed from this speculation's snapshot
        self.run: RunBase | None = None
        self.view: asyncio.Future[SpeculativeConversation] = asyncio.get_running_loop().create_future()
        self._queue: asyncio.Queue[PipelineEvent] = asyncio.Queue()
        self.task = asyncio.create_task(self._main(listening), name=f"speculative-{item_id}")

    async def _main(self, listening: object) -> None:
        from stepaudio_rt.streaming.turn import ListeningTurn

        assert isinstance(listening, ListeningTurn)
        view: SpeculativeConversation | None = None
        finished = False
        error: str | None = None
        try:
            view = await SpeculativeConversation.of(listening)
            self.view.set_result(view)
            if not self.cancelled:
                self.run = self.session.scheduler.response(self.options, view)
                async for ev in self.run.events():
                    self._queue.put_nowait(ev)
                    finished = isinstance(ev, ResponseFinished)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # snapshot or run failed: a released run reports it as a failed response
            log.exception("speculative response failed")
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if not self.view.done():
                self.view.cancel()
            if self.cancelled or self.committed or not finished:  # else commit() or cancel() closes it
                self._close_view()
            if not finished:  # cancelled or failed before the run ended: a holder still needs an end
                reason = "error" if error is not None else "cancelled"
                self._queue.put_nowait(
                    ResponseFinished(reason, "", "", TokenUsage(), ResponseTimings(), error)  # type: ignore[arg-type]
                )

    # ----- the verdict -----
    def cancel(self) -> None:
        """Stop generating and free the contexts (within one decode step; the task finishes by itself)."""
        if not self.cancelled and not self.released:
            self.session.server.metrics.speculative.labels(outcome="discarded").inc()
        self.cancelled = True
        if self.run is not None:
            self.run.cancel()
        elif not self.task.done():
            self.task.cancel()
        if self.task.done():
            self._close_view()

    def _close_view(self) -> None:
        if self.view.done() and not self.view.cancelled() and self.view.exception() is None:
            self.view.result().close()

    async def commit(self) -> CommitResult | None:
        """Commit the listening turn from the snapshot (adopting a fork of its context as the conversation
        prefix). None when the snapshot failed or the conversation moved on: commit the usual way then."""
        s = self.session
        conversation = s.scheduler.conversation
        try:
            view = await asyncio.shield(self.view)
        except (asyncio.CancelledError, Exception):
            return None
        if conversation.epoch != self.epoch or self.cancelled:
            return None
        ctx, _ = await view.fork()
        if self.task.done():  # the run no longer needs the snapshot either
            self._close_view()
        await s.scheduler.abandon_listening()
        adopted = conversation.adopt(ctx, view.turn, self.epoch)
        self.committed = True
        stats = FinishStats(chunks_before_end=0, tail_seconds=0.0, finish_seconds=0.0, adopted=adopted)
        return CommitResult(turn=view.turn, stats=stats)

    def release(self, options: ResponseOptions) -> HeldRun | None:
        """The held run for a response with ``options``, or None (then it is cancelled) if it cannot serve."""
        usable = (
            not self.cancelled
            and self.committed
            and options == self.options
            and self.session.scheduler.conversation.epoch == self.epoch + 1  # only this turn's commit since
        )
        if not usable:
            self.cancel()
            return None
        self.released = True
        metrics = self.session.server.metrics
        metrics.speculative.labels(outcome="released").inc()
        metrics.speculative_lead.observe(time.perf_counter() - self.started)  # the head start it gave
        return HeldRun(self)


class HeldRun:
    """What ``ActiveResponse`` drives for a released speculation: the queued events, then the live ones."""

    def __init__(self, speculation: SpeculativeResponse) -> None:
        self._spec = speculation

    @property
    def cancelled(self) -> bool:
        return self._spec.cancelled

    def cancel(self) -> None:
        self._spec.cancel()

    async def events(self) -> AsyncIterator[PipelineEvent]:
        while True:
            ev = await self._spec._queue.get()
            yield ev
            if isinstance(ev, ResponseFinished):
                return


# ----- the session's speculation -----------------------------------------------------------------------------
def speculate(s: RealtimeSession, item_id: str, pause_ms: int) -> None:
    """At a semantic_vad pause: start a speculative response if the turn's end would start one (a live one
    for this pause is kept: the pause's start and its scoring both ask)."""
    from stepaudio_rt.server.handlers.response import plan_response

    spec = s.speculation
    if spec is not None and spec.item_id == item_id and spec.pause_ms == pause_ms and not spec.cancelled:
        return
    discard(s)
    td = s.config.turn_detection
    if td is None or not td.create_response or s.response is not None or s.closed:
        return
    listening = s.scheduler.listening
    if listening is None or listening.turn_id != item_id:
        return
    try:
        plan = plan_response(s, p.ResponseCreateParams())
    except p.ProtocolError:  # the turn's end reports it, as without speculation
        return
    s.speculation = SpeculativeResponse(s, item_id, pause_ms, plan.options)


def discard(s: RealtimeSession, pause_ms: int | None = None) -> None:
    """Cancel the session's speculation (only the one for ``pause_ms`` when given)."""
    spec = s.speculation
    if spec is not None and (pause_ms is None or spec.pause_ms == pause_ms):
        s.speculation = None
        spec.cancel()


def take(s: RealtimeSession, item_id: str, pause_ms: int) -> SpeculativeResponse | None:
    """The turn ended at ``pause_ms``: its speculation if it was started at that pause (others are cancelled)."""
    spec = s.speculation
    if spec is None:
        return None
    s.speculation = None
    if spec.item_id == item_id and spec.pause_ms == pause_ms and not spec.cancelled:
        return spec
    spec.cancel()
    return None


def still_live(s: RealtimeSession) -> None:
    """After each input slice: cancel the speculation if the user spoke again or the turn went away."""
    spec = s.speculation
    vad = s.input.vad
    if spec is None:
        return
    if s.speech_item_id != spec.item_id or vad is None or vad.current_pause_ms != spec.pause_ms:
        discard(s)


async def aclose(s: RealtimeSession) -> None:
    """Session closing: cancel the speculation and wait until its contexts are free."""
    spec, s.speculation = s.speculation, None
    if spec is not None:
        spec.cancel()
        await asyncio.gather(spec.task, return_exceptions=True)
