"""The sequential response run: think, then speak.

    fork prefix + generation prefix -> engine.generate -> split reasoning (TokenDelta.in_think)
        -> reply text -> PhraseChunker -> TTS -> resample to the session rate -> <= 100 ms chunks

One decode stream; speech starts after ``</think>``. Think-while-speaking is the other run
(:mod:`~stepaudio_rt.streaming.think_while_speaking`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from stepaudio_rt.model.engine import Context, SamplingParams
from stepaudio_rt.model.prompt import GENERATION_PREFIX, NO_THINK_PREFIX
from stepaudio_rt.streaming.phrases import PhraseChunker
from stepaudio_rt.streaming.pipeline import (
    SCRUB,
    ReasoningDelta,
    ReasoningDone,
    RunBase,
    TextDelta,
    build_response_context,
)


class SequentialRun(RunBase):
    mode = "sequential"

    _ctx: Context | None = None

    async def _prepare(self) -> None:
        opts = self.options
        prefix = GENERATION_PREFIX if opts.think_budget > 0 else NO_THINK_PREFIX
        self._ctx = await build_response_context(self.engine, self.conversation, opts, prefix)
        # After an await: an engine may fill a fork's token list asynchronously.
        self.usage.input_tokens = len(self._ctx)
        self.usage.input_audio_tokens = self._ctx.audio_tokens

    def _producers(self) -> list[Coroutine[Any, Any, None]]:
        return [self._generate()]

    def _cleanup(self) -> None:
        if self._ctx is not None:
            self.engine.release(self._ctx)

    async def _generate(self) -> None:
        opts = self.options
        assert self._ctx is not None
        params = SamplingParams(
            temperature=opts.temperature,
            top_p=opts.top_p,
            max_tokens=opts.max_output_tokens,
            seed=opts.seed,
            stop_token_ids=tuple(self.engine.tokenizer.stop_token_ids),
            think_budget=opts.think_budget if opts.think_budget > 0 else None,
            starts_in_think=opts.think_budget > 0,
        )
        chunker = PhraseChunker()
        reply_started = False
        try:
            async for delta in self.engine.generate(self._ctx, params, self._cancel):
                if self.timings.first_token_s is None:
                    self.timings.first_token_s = self.now()
                # The closing delta of a "length"/"cancelled" stream carries no token (engine contract).
                counted = delta.finish_reason is None or delta.finish_reason == "stop"
                self.usage.output_tokens += counted
                text = "" if delta.token_id in params.stop_token_ids else delta.text
                if delta.in_think:
                    self.usage.reasoning_tokens += counted
                    clean = SCRUB.sub("", text)
                    if clean:
                        self._reasoning.append(clean)
                        if opts.emit_reasoning:
                            self.emit(ReasoningDelta(clean))
                else:
                    clean = SCRUB.sub("", text)
                    if not reply_started:
                        clean = clean.lstrip()
                        if clean:
                            reply_started = True
                            self.timings.first_reply_token_s = self.now()
                            self.emit(ReasoningDone("".join(self._reasoning).strip()))
                    if clean:
                        self._reply.append(clean)
                        if self.speaker is None:
                            self.emit(TextDelta(clean))
                        else:
                            for phrase in chunker.push(clean):
                                self.speaker.say(phrase)
                if delta.finish_reason is not None:
                    self._finish = delta.finish_reason
            if not reply_started and self._reasoning:
                self.emit(ReasoningDone("".join(self._reasoning).strip()))
            if self.speaker is not None and not self._cancelled:
                for phrase in chunker.flush():
                    self.speaker.say(phrase)
        finally:
            self.timings.think_tokens = self.usage.reasoning_tokens
            self.timings.output_tokens = self.usage.output_tokens
            if self.speaker is not None:
                self.speaker.close()
