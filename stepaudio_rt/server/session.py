"""The state of one realtime conversation: config, items, input audio, the active response.

Handlers (``server/handlers/``) mutate it; the transport feeds it client events and drains its outbox.
Everything runs on the event loop, so no locks are needed: a handler's awaits are the only interleaving
points and the code is written so each of them leaves the state consistent.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.input_audio import InputAudio
from stepaudio_rt.server.negotiation import Negotiation
from stepaudio_rt.server.state import ServerState
from stepaudio_rt.streaming.codecs import AudioFormat
from stepaudio_rt.streaming.scheduler import Scheduler
from stepaudio_rt.streaming.vad import VadConfig

if TYPE_CHECKING:
    from stepaudio_rt.server.responder import ActiveResponse
    from stepaudio_rt.server.speculative_response import SpeculativeResponse

log = logging.getLogger(__name__)


def wire_format(fmt: p.PcmFormat | p.PcmuFormat | p.PcmaFormat) -> AudioFormat:
    """Protocol format model -> codec format."""
    return AudioFormat.parse(fmt.model_dump())


def vad_config(td: p.ServerVad | p.SemanticVad | None) -> VadConfig | None:
    return None if td is None else VadConfig.from_turn_detection(td.model_dump())


@dataclass
class AudioTrack:
    """What an assistant item has sent as audio, for truncation: (start_ms, phrase) segments."""

    segments: list[tuple[float, str]] = field(default_factory=list)
    total_ms: float = 0.0
    truncated_ms: float | None = None

    def heard(self, audio_end_ms: float) -> str:
        return "".join(text for start, text in self.segments if start < audio_end_ms).strip()


class RealtimeSession:
    def __init__(
        self, server: ServerState, negotiation: Negotiation, send_text: Callable[[str], None]
    ) -> None:
        settings = server.settings
        self.server = server
        self.settings = settings
        self.dialect = negotiation.dialect
        self._send_text = send_text
        config = p.SessionConfig(
            model=settings.model_name, reasoning=p.Reasoning(effort=settings.default_reasoning_effort)
        )
        if negotiation.reasoning_events:
            config = config.model_copy(update={"stepaudio": p.StepAudioExtension(reasoning_events=True)})
        self.config = config
        self.conversation_id = p.new_id("conv")
        self.scheduler = Scheduler(
            server.engine,
            server.tts,
            config.instructions,
            settings.listen_chunk_seconds_for(server.engine.generation_config),
        )
        self.items: dict[str, p.MessageItem | p.FunctionCallItem | p.FunctionCallOutputItem] = {}
        self.order: list[str] = []
        self.tracks: dict[str, AudioTrack] = {}
        self.input = InputAudio(
            wire_format(config.audio.input.format),
            vad_config(config.turn_detection),
            settings.max_input_buffer_seconds,
        )
        self.speech_item_id: str | None = None  # user item announced by speech_started, not yet committed
        self.speech_start_sample = 0
        # Held by every input_audio_buffer handler and by a semantic_vad end-of-turn verdict arriving from
        # its worker thread, so a verdict never ends a turn halfway through an append.
        self.turn_lock = asyncio.Lock()
        self.eot_task: asyncio.Task[None] | None = None  # semantic_vad: the pause being scored
        self.speculation: SpeculativeResponse | None = None  # semantic_vad: response started at that pause
        self.transcriptions: set[asyncio.Task[None]] = set()  # input transcriptions in flight
        self.response: ActiveResponse | None = None
        self.produced_audio = False
        self.closed = False

    # ----- output -----
    def send(self, event: p.ServerEventBase) -> None:
        if self.closed:
            return
        kind: str = event.type  # type: ignore[attr-defined]
        if kind in p.EXTENSION_EVENT_TYPES and not self.config.reasoning_events:
            return
        if kind == "error":
            self.server.metrics.errors.labels(code=str(event.error.code)).inc()  # type: ignore[attr-defined]
        if self.dialect == "beta":
            from stepaudio_rt.server.beta import ga_to_beta_server_event

            for data in ga_to_beta_server_event(json.loads(p.serialize(event))):
                self._send_text(json.dumps(data))
            return
        self._send_text(p.serialize(event))

    def error(self, exc: p.ProtocolError) -> None:
        self.send(exc.to_event())

    # ----- items -----
    def previous_of(self, item_id: str) -> str | None:
        idx = self.order.index(item_id)
        return self.order[idx - 1] if idx > 0 else None

    def add_item(self, item: Any, previous_item_id: str | None = None, at_root: bool = False) -> None:
        if at_root:
            self.order.insert(0, item.id)
        elif previous_item_id is None:
            self.order.append(item.id)
        else:
            self.order.insert(self.order.index(previous_item_id) + 1, item.id)
        self.items[item.id] = item

    def remove_item(self, item_id: str) -> None:
        self.order.remove(item_id)
        del self.items[item_id]
        self.tracks.pop(item_id, None)

    def previous_in_conversation(self, item_id: str) -> str | None:
        """The nearest item before ``item_id`` that the model's conversation holds (None = at the start)."""
        conv = self.scheduler.conversation
        idx = self.order.index(item_id)
        for prev in reversed(self.order[:idx]):
            if prev in conv:
                return prev
        return None

    # ----- config -----
    def apply_config(self, new: p.SessionConfig) -> None:
        """Make a validated config effective (audio format, VAD, instructions)."""
        old, self.config = self.config, new
        if new.instructions != old.instructions:
            self.scheduler.conversation.set_instructions(new.instructions)
        self.input.set_format(wire_format(new.audio.input.format))
        if new.audio.input.turn_detection != old.audio.input.turn_detection:
            self.input.set_vad(vad_config(new.turn_detection))
            self.speech_item_id = None

    @property
    def output_format(self) -> AudioFormat:
        return wire_format(self.config.audio.output.format)

    # ----- lifecycle -----
    async def aclose(self) -> None:
        """Stop generation and TTS and free every engine context (client gone or server shutting down)."""
        self.closed = True
        await cancel_task(self.eot_task)
        from stepaudio_rt.server import speculative_response

        await speculative_response.aclose(self)
        for task in list(self.transcriptions):
            await cancel_task(task)
        if self.response is not None:
            await self.response.cancel_and_wait("client_cancelled")
        await self.scheduler.aclose()


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: S110
            log.debug("task %s ended while cancelling", task.get_name())
