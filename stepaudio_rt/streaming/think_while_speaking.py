"""Think-while-speaking: a response run on Mind-Paced Speaking's two decode streams.

:class:`~stepaudio_rt.model.mind_paced.MindPacedGeneration` runs the formulation stream (reasoning) and
the articulation rounds (reply) on the engine; this run adds time and audio:

* **Playback-paced rounds.** :class:`PlaybackGate` releases the next articulation round only when the
  TTS has spoken everything it was given and the audio the client has not yet played (audio sent minus
  wall time since the first chunk, :meth:`Speaker.queued_ms`) has fallen to ``playback_lead_ms``. Rounds
  therefore run just ahead of the listener and every round sees as much reasoning as possible.
* **Reply text to speech exactly as in the sequential run** (phrase chunker -> TTS), with one addition: when
  a round ends while nothing is queued for the listener, the words it produced are spoken at once instead
  of waiting for the clause to end in a later round (a round may stop mid-clause).
* Reasoning streams out as the opt-in reasoning events while reply audio is already flowing; it never
  reaches the TTS or the transcript.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from stepaudio_rt.model.mind_paced import (
    MindPacedConfig,
    MindPacedGeneration,
    ReasoningEnded,
    ReasoningText,
    ReleaseGate,
    ReplyText,
    RoundEnded,
    RoundStarted,
)
from stepaudio_rt.model.prompt import GENERATION_PREFIX
from stepaudio_rt.streaming.phrases import PhraseChunker
from stepaudio_rt.streaming.pipeline import ReasoningDone, RunBase, Speaker


class PlaybackGate(ReleaseGate):
    """The listener needs more reply once the TTS is idle and less than ``lead_ms`` of audio is unplayed."""

    def __init__(self, speaker: Speaker, lead_ms: float) -> None:
        self.speaker = speaker
        self.lead_ms = lead_ms

    def queued_ms(self) -> float:
        return self.speaker.queued_ms()

    async def wait(self) -> None:
        while True:
            if not self.speaker.idle.is_set():
                await self.speaker.idle.wait()
                continue
            excess = self.speaker.queued_ms() - self.lead_ms
            if excess <= 0:
                return
            await asyncio.sleep(excess / 1000.0)


class ThinkWhileSpeakingRun(RunBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.options.mind_paced
        if config is None:
            raise ValueError("ThinkWhileSpeakingRun needs options.mind_paced")
        self.config: MindPacedConfig = config
        self.mode = config.mode
        self.timings.mode = config.mode
        self._generation: MindPacedGeneration | None = None

    def _generation_prefix(self) -> str:
        return GENERATION_PREFIX  # the base both streams fork: conversation + generation prefix

    def _producers(self) -> list[Coroutine[Any, Any, None]]:
        return [self._drive()]

    def _on_cancel(self) -> None:
        if self._generation is not None:
            self._generation.cancel()

    def _listener_waiting(self, final_round: bool) -> bool:
        """A non-final round ended and the listener has nothing left to hear: speak its words now."""
        speaker = self.speaker
        return (
            speaker is not None
            and not final_round
            and speaker.idle.is_set()
            and speaker.queued_ms() <= self.options.playback_lead_ms
        )

    async def _drive(self) -> None:
        opts = self.options
        assert self._ctx is not None
        gate = PlaybackGate(self.speaker, opts.playback_lead_ms) if self.speaker is not None else None
        gen = MindPacedGeneration(
            self.engine,
            self._ctx,
            self.config,
            self._sampling(),
            # The think budget (reasoning.effort) caps the reasoning stream; max_output_tokens the reply.
            think_budget=opts.think_budget,
            max_reply_tokens=max(1, opts.max_output_tokens),
            gate=gate,
        )
        self._generation = gen
        if self._cancelled:
            gen.cancel()
        chunker = PhraseChunker()
        reasoning_done = False
        try:
            async for ev in gen.events():
                if self.timings.first_token_s is None and isinstance(ev, ReasoningText | ReplyText):
                    self.timings.first_token_s = self.now()
                if isinstance(ev, ReasoningText):
                    self._reasoning_text(ev.text)
                elif isinstance(ev, ReasoningEnded):
                    reasoning_done = True
                    self.timings.reasoning_end_s = self.now()
                    self.emit(ReasoningDone("".join(self._reasoning).strip()))
                elif isinstance(ev, ReplyText):
                    self._reply_text(ev.text, chunker)
                elif isinstance(ev, RoundStarted):
                    self.usage.input_tokens += ev.record.prompt_tokens  # re-prefilled: counted as input
                elif isinstance(ev, RoundEnded) and self._listener_waiting(ev.record.final):
                    assert self.speaker is not None
                    self.speaker.say(chunker.take_words())
            self._finish = gen.finish_reason
            if not reasoning_done and self._reasoning:  # the reply ended first: reasoning was cut short
                self.emit(ReasoningDone("".join(self._reasoning).strip()))
            self._end_reply(chunker)
        finally:
            self.usage.reasoning_tokens = gen.reasoning_tokens
            self.usage.output_tokens = gen.reasoning_tokens + gen.reply_tokens
            self.timings.think_tokens = gen.reasoning_tokens
            self.timings.output_tokens = self.usage.output_tokens
            self.timings.rounds = list(gen.rounds)
            if self.speaker is not None:
                self.speaker.close()
