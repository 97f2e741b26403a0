"""Runs one response: maps the scheduler's pipeline events to protocol events in the canonical order.

``response.created`` and the output item are announced at once, before any thinking (LiveKit waits 10 s for
``response.created``; its deltas need the item first). Then interleaved audio / transcript deltas (or text
deltas), optional reasoning extension events, and the terminals: ``output_audio.done`` ->
``output_audio_transcript.done`` -> ``content_part.done`` -> ``output_item.done`` ->
``conversation.item.done`` -> ``response.done`` with full usage. A cancel (barge-in or ``response.cancel``)
stops the pipeline at once and emits the same terminals with ``status: "cancelled"``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Literal

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.session import AudioTrack, RealtimeSession
from stepaudio_rt.streaming.codecs import AudioFormat, encode_audio
from stepaudio_rt.streaming.conversation import TextPart, Turn
from stepaudio_rt.streaming.pipeline import (
    AudioDelta,
    ReasoningDelta,
    ReasoningDone,
    ResponseFinished,
    RunBase,
    TextDelta,
    TranscriptDelta,
)

log = logging.getLogger(__name__)

CancelReason = Literal["turn_detected", "client_cancelled"]


class ActiveResponse:
    def __init__(
        self,
        session: RealtimeSession,
        response: p.Response,
        run: RunBase,
        out_format: AudioFormat,
        in_conversation: bool,
        turn_end: float,
        finalize_s: float | None = None,
    ) -> None:
        self.session = session
        self.response = response
        self.run = run
        self.out_format = out_format
        self.in_conversation = in_conversation
        self.turn_end = turn_end  # perf_counter of end of user turn (speech_stopped / commit / create)
        self.finalize_s = finalize_s
        self.audio = response.output_modalities == ["audio"]
        self.item_id = p.new_id("item")
        self.cancel_reason: CancelReason | None = None
        self.track = AudioTrack()
        self._text: list[str] = []
        self.first_packet_s: float | None = None
        self.first_packet = asyncio.Event()  # set at the first audio/text delta or at the end (transcription waits)
        self.task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.response.id

    def start(self) -> None:
        self.task = asyncio.create_task(self._main(), name=f"response-{self.id}")

    def cancel(self, reason: CancelReason) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.run.cancel()

    async def cancel_and_wait(self, reason: CancelReason) -> None:
        self.cancel(reason)
        if self.task is not None:
            await asyncio.shield(self.task)

    # ----- the response -----
    def _ref(self) -> dict[str, object]:
        return {"response_id": self.id, "item_id": self.item_id, "output_index": 0, "content_index": 0}

    def _item(self, status: p.ItemStatus, transcript: str | None) -> p.MessageItem:
        content: list[p.OutputAudioPart | p.OutputTextPart] = []
        if transcript is not None:
            content = [
                p.OutputAudioPart(transcript=transcript) if self.audio else p.OutputTextPart(text=transcript)
            ]
        return p.MessageItem(id=self.item_id, role="assistant", status=status, content=content)  # type: ignore[arg-type]

    async def _main(self) -> None:
        s = self.session
        try:
            await self._run()
        except Exception:
            log.exception("response %s crashed", self.id)
        finally:
            self.first_packet.set()
            if s.response is self:
                s.response = None

    async def _run(self) -> None:
        s = self.session
        s.send(p.ResponseCreatedEvent(response=self.response))
        item = self._item("in_progress", None)
        prev = s.order[-1] if s.order else None
        if self.in_conversation:
            s.add_item(item)
            if self.audio:
                s.tracks[self.item_id] = self.track
        s.send(p.ResponseOutputItemAddedEvent(response_id=self.id, output_index=0, item=item))
        if self.in_conversation:
            s.send(p.ConversationItemAddedEvent(previous_item_id=prev, item=item))
        part_type: Literal["audio", "text"] = "audio" if self.audio else "text"
        empty = (
            p.ResponsePart(type="audio", transcript="")
            if self.audio
            else p.ResponsePart(type="text", text="")
        )
        s.send(p.ResponseContentPartAddedEvent(**self._ref(), part=empty))  # type: ignore[arg-type]

        finished: ResponseFinished | None = None
        async for ev in self.run.events():
            if isinstance(ev, ResponseFinished):
                finished = ev
                break
            if self.cancel_reason is not None:
                continue  # cancelled: drop whatever was still queued
            self._forward(ev)
        assert finished is not None
        self._close(finished, part_type)

    def _forward(self, ev: object) -> None:
        s = self.session
        ref = self._ref()
        if isinstance(ev, AudioDelta):
            if self.first_packet_s is None:
                self.first_packet_s = time.perf_counter() - self.turn_end
                self.first_packet.set()
            raw = encode_audio(ev.pcm, self.out_format)
            s.produced_audio = True
            s.send(p.ResponseOutputAudioDeltaEvent(**ref, delta=base64.b64encode(raw).decode("ascii")))  # type: ignore[arg-type]
            self.track.total_ms += ev.duration_ms
        elif isinstance(ev, TranscriptDelta):
            self.track.segments.append((self.track.total_ms, ev.text))
            self._text.append(ev.text)
            s.send(p.ResponseOutputAudioTranscriptDeltaEvent(**ref, delta=ev.text))  # type: ignore[arg-type]
        elif isinstance(ev, TextDelta):
            if self.first_packet_s is None:
                self.first_packet_s = time.perf_counter() - self.turn_end
                self.first_packet.set()
            self._text.append(ev.text)
            s.send(p.ResponseOutputTextDeltaEvent(**ref, delta=ev.text))  # type: ignore[arg-type]
        elif isinstance(ev, ReasoningDelta):
            s.send(p.ResponseReasoningTextDeltaEvent(**ref, delta=ev.text))  # type: ignore[arg-type]
        elif isinstance(ev, ReasoningDone):
            s.send(p.ResponseReasoningTextDoneEvent(**ref, text=ev.text))  # type: ignore[arg-type]

    def _close(self, fin: ResponseFinished, part_type: Literal["audio", "text"]) -> None:
        s = self.session
        ref = self._ref()
        text = "".join(self._text).strip()
        if self.cancel_reason is not None:
            status: p.ResponseStatus = "cancelled"
            details: p.ResponseStatusDetails | None = p.ResponseStatusDetails(
                type="cancelled", reason=self.cancel_reason
            )
        elif fin.finish_reason == "error":
            status = "failed"
            details = p.ResponseStatusDetails(
                type="failed",
                error=p.StatusErrorDetail(type="server_error", code="server_error", message=fin.error),
            )
        elif fin.finish_reason == "length":
            status, details = (
                "incomplete",
                p.ResponseStatusDetails(type="incomplete", reason="max_output_tokens"),
            )
        else:
            status, details = "completed", None
        # A truncate that arrived while the response was still running applies now.
        if self.track.truncated_ms is not None:
            text = self.track.heard(self.track.truncated_ms)
        if self.audio:
            s.send(p.ResponseOutputAudioDoneEvent(**ref))  # type: ignore[arg-type]
            s.send(p.ResponseOutputAudioTranscriptDoneEvent(**ref, transcript=text))  # type: ignore[arg-type]
            part = p.ResponsePart(type=part_type, transcript=text)
        else:
            s.send(p.ResponseOutputTextDoneEvent(**ref, text=text))  # type: ignore[arg-type]
            part = p.ResponsePart(type=part_type, text=text)
        s.send(p.ResponseContentPartDoneEvent(**ref, part=part))  # type: ignore[arg-type]
        item = self._item("completed" if status == "completed" else "incomplete", text)
        s.send(p.ResponseOutputItemDoneEvent(response_id=self.id, output_index=0, item=item))
        if self.in_conversation and self.item_id in s.items:
            s.items[self.item_id] = item
            prev = s.previous_in_conversation(self.item_id)
            turn = Turn(id=self.item_id, role="assistant", parts=[TextPart(text)])
            s.scheduler.conversation.insert(turn, prev, at_root=prev is None)
            s.send(p.ConversationItemDoneEvent(previous_item_id=s.previous_of(self.item_id), item=item))
        u = fin.usage
        self.response.status = status
        self.response.status_details = details
        self.response.output = [item]
        self.response.usage = p.Usage.from_counts(
            input_text=u.input_tokens - u.input_audio_tokens,
            input_audio=u.input_audio_tokens,
            output_text=u.output_tokens,
        )
        s.send(p.ResponseDoneEvent(response=self.response))
        self._record(fin, status)

    def _record(self, fin: ResponseFinished, status: str) -> None:
        m = self.session.server.metrics
        m.responses.labels(status=status).inc()
        m.output_tokens.inc(fin.usage.output_tokens)
        t = fin.timings
        if self.first_packet_s is not None:
            m.first_packet.observe(self.first_packet_s)
            m.first_packet_by_mode.labels(mode=t.mode).observe(self.first_packet_s)
        if t.rounds:
            m.articulation_rounds.observe(len(t.rounds))
            m.articulation_wait.observe(t.articulation_wait_s)
            for r in t.rounds:
                m.round_overhead.observe(r.fork_s + r.prefill_s)
        if t.decode_tokens_per_s is not None:
            m.tokens_per_second.observe(t.decode_tokens_per_s)
        stages = {
            "finalize": self.finalize_s,
            "prefill": t.prefill_s,
            "reasoning": t.reasoning_s,
            "tts_first_chunk": t.tts_first_chunk_s,
        }
        for stage, value in stages.items():
            if value is not None:
                m.stage.labels(stage=stage).observe(value)
        log.info(
            "response %s %s (%s, %d rounds): first_packet=%s finalize=%s prefill=%s reasoning=%s think_tokens=%d "
            "tts_first=%s",
            self.id,
            status,
            t.mode,
            len(t.rounds),
            _fmt(self.first_packet_s),
            _fmt(self.finalize_s),
            _fmt(t.prefill_s),
            _fmt(t.reasoning_s),
            t.think_tokens,
            _fmt(t.tts_first_chunk_s),
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}ms"
