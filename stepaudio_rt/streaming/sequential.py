"""The sequential response run: think, then speak.

    fork prefix + generation prefix -> engine.generate -> split reasoning (TokenDelta.in_think)
        -> reply text -> PhraseChunker -> TTS -> resample to the session rate -> <= 100 ms chunks

One decode stream; speech starts after ``</think>``. Think-while-speaking is the other run
(:mod:`~stepaudio_rt.streaming.think_while_speaking`).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from stepaudio_rt.model.prompt import GENERATION_PREFIX, NO_THINK_PREFIX
from stepaudio_rt.streaming.phrases import PhraseChunker
from stepaudio_rt.streaming.pipeline import ReasoningDone, RunBase


class SequentialRun(RunBase):
    mode = "sequential"

    def _generation_prefix(self) -> str:
        return GENERATION_PREFIX if self.options.think_budget > 0 else NO_THINK_PREFIX

    def _producers(self) -> list[Coroutine[Any, Any, None]]:
        return [self._generate()]

    def _on_reply_start(self) -> None:
        self.emit(ReasoningDone("".join(self._reasoning).strip()))  # the reasoning is over

    async def _generate(self) -> None:
        opts = self.options
        assert self._ctx is not None
        params = self._sampling(
            max_tokens=opts.max_output_tokens,
            think_budget=opts.think_budget if opts.think_budget > 0 else None,
            starts_in_think=opts.think_budget > 0,
        )
        chunker = PhraseChunker()
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
                    self._reasoning_text(text)
                else:
                    self._reply_text(text, chunker)
                if delta.finish_reason is not None:
                    self._finish = delta.finish_reason
            if not self._reply_started and self._reasoning:
                self.emit(ReasoningDone("".join(self._reasoning).strip()))
            self._end_reply(chunker)
        finally:
            self.timings.think_tokens = self.usage.reasoning_tokens
            self.timings.output_tokens = self.usage.output_tokens
            if self.speaker is not None:
                self.speaker.close()
