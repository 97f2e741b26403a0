"""The response scheduler: one per session, between the protocol layer and the engine.

It owns the session's engine contexts (the conversation prefix, the user turn being listened to) and
starts responses: a :class:`~stepaudio_rt.streaming.sequential.SequentialRun` (think, then speak) or, when
the options ask for think-while-speaking, a
:class:`~stepaudio_rt.streaming.think_while_speaking.ThinkWhileSpeakingRun`. Both yield the typed
pipeline events of :mod:`~stepaudio_rt.streaming.pipeline`, which the server maps to protocol events. It
knows audio and time, not the wire protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stepaudio_rt.model.engine import Engine
from stepaudio_rt.streaming.conversation import Conversation, Turn
from stepaudio_rt.streaming.pipeline import (
    AudioDelta,
    PipelineEvent,
    ReasoningDelta,
    ReasoningDone,
    ResponseFinished,
    ResponseOptions,
    ResponseTimings,
    RunBase,
    TextDelta,
    TokenUsage,
    TranscriptDelta,
)
from stepaudio_rt.streaming.sequential import SequentialRun
from stepaudio_rt.streaming.think_while_speaking import ThinkWhileSpeakingRun
from stepaudio_rt.streaming.tts import TTSBackend
from stepaudio_rt.streaming.turn import FinishStats, ListeningTurn

__all__ = [
    "AudioDelta",
    "CommitResult",
    "PipelineEvent",
    "ReasoningDelta",
    "ReasoningDone",
    "ResponseFinished",
    "ResponseOptions",
    "ResponseTimings",
    "RunBase",
    "Scheduler",
    "TextDelta",
    "TokenUsage",
    "TranscriptDelta",
]


# ----- the per-session facade ------------------------------------------------------------------------------
@dataclass
class CommitResult:
    turn: Turn
    stats: FinishStats
    timings: dict[str, float] = field(default_factory=dict)


class Scheduler:
    """Per-session owner of the conversation context, the listening turn and the active response."""

    def __init__(
        self,
        engine: Engine,
        tts: TTSBackend | None,
        instructions: str = "",
        listen_chunk_seconds: float = 2.0,
    ) -> None:
        self.engine = engine
        self.tts = tts
        self.conversation = Conversation(engine, instructions)
        self.listen_chunk_seconds = listen_chunk_seconds
        self._listening: ListeningTurn | None = None

    # ----- listen-while-thinking -----
    @property
    def listening(self) -> ListeningTurn | None:
        return self._listening

    def start_listening(self, turn_id: str) -> ListeningTurn:
        """Begin a user audio turn; returns it (feed it with :meth:`feed`)."""
        if self._listening is not None:
            raise RuntimeError("a user turn is already being listened to")
        self._listening = ListeningTurn(self.conversation, turn_id, self.listen_chunk_seconds)
        return self._listening

    def feed(self, samples_16k: np.ndarray) -> None:
        if self._listening is not None:
            self._listening.feed(samples_16k)

    async def commit_listening(self, previous_id: str | None = None) -> CommitResult:
        """Finish the listened turn and add it to the conversation (adopting its context when possible)."""
        turn_obj = self._listening
        if turn_obj is None:
            raise RuntimeError("no user turn is being listened to")
        self._listening = None
        turn, ctx, epoch, stats = await turn_obj.finish()
        if previous_id is None or previous_id == self.conversation.last_id:
            adopted = self.conversation.adopt(ctx, turn, epoch)
        else:
            self.engine.release(ctx)
            self.conversation.insert(turn, previous_id)
            adopted = False
        stats = FinishStats(stats.chunks_before_end, stats.tail_seconds, stats.finish_seconds, adopted)
        return CommitResult(turn=turn, stats=stats)

    async def abandon_listening(self) -> None:
        if self._listening is not None:
            turn, self._listening = self._listening, None
            await turn.aclose()

    # ----- responses -----
    def response(self, options: ResponseOptions, conversation: Conversation | None = None) -> RunBase:
        """The run for ``options``: think-while-speaking when it asks for it and thinking is on.

        ``conversation`` replaces the session's (a speculative response reads a
        :class:`~stepaudio_rt.streaming.speculative.SpeculativeConversation`)."""
        tts = self.tts if options.audio else None
        conv = self.conversation if conversation is None else conversation
        if options.mind_paced is not None and options.think_budget > 0:
            return ThinkWhileSpeakingRun(self.engine, conv, options, tts)
        return SequentialRun(self.engine, conv, options, tts)

    async def aclose(self) -> None:
        """Free every engine context this session holds."""
        await self.abandon_listening()
        self.conversation.close()
