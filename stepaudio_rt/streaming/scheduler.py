"""The response scheduler: one per session, between the protocol layer and the engine.

It owns the session's engine contexts (the conversation prefix, the user turn being listened to, the
running response), and runs a response as a pipeline::

    fork prefix + generation prefix -> engine.generate -> split reasoning (TokenDelta.in_think)
        -> reply text -> PhraseChunker -> TTS -> resample to the session rate -> <= 100 ms chunks

yielding typed pipeline events (:data:`PipelineEvent`) that the server maps to protocol events, and
recording per-stage timings for the latency breakdown. It knows audio and time, not the wire protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from stepaudio_rt.model.engine import CancelToken, Context, Engine, SamplingParams
from stepaudio_rt.model.prompt import GENERATION_PREFIX, NO_THINK_PREFIX
from stepaudio_rt.model.tokenizer import SPECIAL_TOKENS, THINK_CLOSE, THINK_OPEN
from stepaudio_rt.streaming.codecs import float_to_int16
from stepaudio_rt.streaming.conversation import Conversation, Turn
from stepaudio_rt.streaming.phrases import PhraseChunker
from stepaudio_rt.streaming.resample import StreamResampler
from stepaudio_rt.streaming.tts import TTSBackend
from stepaudio_rt.streaming.turn import FinishStats, ListeningTurn

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]

# Control-token text never belongs in a transcript (a small or undertrained model may emit any of them).
# Nor do control characters (NUL breaks TTS front ends); newlines and tabs stay.
_SCRUB = re.compile(
    "|".join([*(re.escape(t) for t in (*SPECIAL_TOKENS, THINK_OPEN, THINK_CLOSE)), r"[\x00-\x08\x0b-\x1f\x7f]"])
)


# ----- pipeline events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDone:
    text: str


@dataclass(frozen=True)
class TextDelta:
    """Reply text as generated (text modality)."""

    text: str


@dataclass(frozen=True)
class TranscriptDelta:
    """A spoken phrase (audio modality); sent just before that phrase's first audio chunk."""

    text: str


@dataclass(frozen=True)
class AudioDelta:
    """int16 mono at the session's output rate, at most ``chunk_ms`` long."""

    pcm: np.ndarray
    sample_rate: int

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.pcm) / self.sample_rate


@dataclass
class TokenUsage:
    input_tokens: int = 0
    input_audio_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class ResponseTimings:
    """Seconds from the start of the response run (the moment the scheduler got it)."""

    prefill_s: float | None = None  # fork + generation prefix ready
    first_token_s: float | None = None
    first_reply_token_s: float | None = None  # end of reasoning
    first_phrase_s: float | None = None  # first phrase handed to TTS
    first_audio_s: float | None = None  # first TTS chunk out
    end_s: float | None = None
    think_tokens: int = 0
    output_tokens: int = 0

    @property
    def reasoning_s(self) -> float | None:
        if self.first_reply_token_s is None or self.first_token_s is None:
            return None
        return self.first_reply_token_s - self.first_token_s

    @property
    def tts_first_chunk_s(self) -> float | None:
        if self.first_audio_s is None or self.first_phrase_s is None:
            return None
        return self.first_audio_s - self.first_phrase_s

    @property
    def decode_tokens_per_s(self) -> float | None:
        if self.first_token_s is None or self.end_s is None or self.output_tokens < 2:
            return None
        span = self.end_s - self.first_token_s
        return (self.output_tokens - 1) / span if span > 0 else None


@dataclass(frozen=True)
class ResponseFinished:
    finish_reason: FinishReason
    reply_text: str  # everything generated after </think> (what a text client saw)
    reasoning_text: str
    usage: TokenUsage
    timings: ResponseTimings
    error: str | None = None


PipelineEvent = ReasoningDelta | ReasoningDone | TextDelta | TranscriptDelta | AudioDelta | ResponseFinished


@dataclass(frozen=True)
class ResponseOptions:
    audio: bool = True  # audio + transcript; False = text only
    max_output_tokens: int = 4096
    think_budget: int = 1024  # 0 = no thinking (empty think block in the prompt)
    out_rate: int = 24000
    chunk_ms: int = 100
    emit_reasoning: bool = True  # yield ReasoningDelta events (the server filters by opt-in)
    instructions: str | None = None  # None = the conversation's instructions
    turns: Sequence[Turn] | None = None  # out-of-band input instead of the conversation
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class _Sentinel:
    what: str
    error: BaseException | None = None


# ----- one response ---------------------------------------------------------------------------------------
class ResponseRun:
    """One response: iterate :meth:`events` to drive it; :meth:`cancel` stops generation and TTS at once."""

    def __init__(
        self, engine: Engine, conversation: Conversation, options: ResponseOptions, tts: TTSBackend | None
    ) -> None:
        if options.audio and tts is None:
            raise ValueError("audio responses need a TTS backend")
        self.engine = engine
        self.conversation = conversation
        self.options = options
        self.tts = tts
        self.timings = ResponseTimings()
        self.usage = TokenUsage()
        self._cancel = CancelToken()
        self._cancelled = False
        self._queue: asyncio.Queue[PipelineEvent | _Sentinel] = asyncio.Queue()
        self._t0 = 0.0
        self._reasoning: list[str] = []
        self._reply: list[str] = []
        self._finish: FinishReason = "stop"

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop compute within one decode step and drop TTS work. Safe to call more than once."""
        self._cancelled = True
        self._cancel.cancel()
        self._queue.put_nowait(_Sentinel("cancel"))

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    async def _build_context(self) -> Context:
        opts = self.options
        conv = self.conversation
        if opts.turns is not None or (opts.instructions is not None and opts.instructions != conv.instructions):
            instructions = conv.instructions if opts.instructions is None else opts.instructions
            ctx = await conv.build_standalone(instructions, opts.turns)
        else:
            ctx, _ = await conv.fork()
        try:
            await self.engine.append_text(ctx, GENERATION_PREFIX if opts.think_budget > 0 else NO_THINK_PREFIX)
            # One forward pass for everything deferred (end of turn + generation prefix), timed as prefill.
            await self.engine.flush(ctx)
            # After an await: an engine may fill a fork's token list asynchronously.
            self.usage.input_tokens = len(ctx)
            self.usage.input_audio_tokens = ctx.audio_tokens
        except BaseException:
            self.engine.release(ctx)
            raise
        return ctx

    async def _generate(self, ctx: Context, phrases: asyncio.Queue[str | None] | None) -> None:
        opts = self.options
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
            async for delta in self.engine.generate(ctx, params, self._cancel):
                if self.timings.first_token_s is None:
                    self.timings.first_token_s = self._now()
                # The closing delta of a "length"/"cancelled" stream carries no token (engine contract).
                counted = delta.finish_reason is None or delta.finish_reason == "stop"
                self.usage.output_tokens += counted
                text = "" if delta.token_id in params.stop_token_ids else delta.text
                if delta.in_think:
                    self.usage.reasoning_tokens += counted
                    clean = _SCRUB.sub("", text)
                    if clean:
                        self._reasoning.append(clean)
                        if opts.emit_reasoning:
                            self._queue.put_nowait(ReasoningDelta(clean))
                else:
                    clean = _SCRUB.sub("", text)
                    if not reply_started:
                        clean = clean.lstrip()
                        if clean:
                            reply_started = True
                            self.timings.first_reply_token_s = self._now()
                            self._queue.put_nowait(ReasoningDone("".join(self._reasoning).strip()))
                    if clean:
                        self._reply.append(clean)
                        if phrases is None:
                            self._queue.put_nowait(TextDelta(clean))
                        else:
                            for phrase in chunker.push(clean):
                                self._phrase(phrases, phrase)
                if delta.finish_reason is not None:
                    self._finish = delta.finish_reason
            if not reply_started and self._reasoning:
                self._queue.put_nowait(ReasoningDone("".join(self._reasoning).strip()))
            if phrases is not None and not self._cancelled:
                tail = chunker.flush()
                for phrase in tail if isinstance(tail, list) else [tail]:
                    if phrase:
                        self._phrase(phrases, phrase)
        finally:
            self.timings.think_tokens = self.usage.reasoning_tokens
            self.timings.output_tokens = self.usage.output_tokens
            if phrases is not None:
                phrases.put_nowait(None)

    def _phrase(self, phrases: asyncio.Queue[str | None], phrase: str) -> None:
        if phrase.strip():
            if self.timings.first_phrase_s is None:
                self.timings.first_phrase_s = self._now()
            phrases.put_nowait(phrase)

    async def _speak(self, phrases: asyncio.Queue[str | None]) -> None:
        assert self.tts is not None
        out_rate = self.options.out_rate
        step = max(1, out_rate * self.options.chunk_ms // 1000)
        resampler = StreamResampler(self.tts.sample_rate, out_rate)
        spoken = False
        while True:
            phrase = await phrases.get()
            if phrase is None:
                break
            text = phrase.strip()
            if spoken and not phrase[:1].isspace():
                text = " " + text
            self._queue.put_nowait(TranscriptDelta(text))
            spoken = True
            async for pcm in self.tts.synthesize(phrase.strip()):
                self._emit_audio(resampler.process(pcm), step, out_rate)
        self._emit_audio(resampler.flush(), step, out_rate)

    def _emit_audio(self, samples: np.ndarray, step: int, rate: int) -> None:
        if samples.size == 0:
            return
        pcm = float_to_int16(samples)
        if self.timings.first_audio_s is None:
            self.timings.first_audio_s = self._now()
        for start in range(0, len(pcm), step):
            self._queue.put_nowait(AudioDelta(pcm[start : start + step], rate))

    async def events(self) -> AsyncIterator[PipelineEvent]:
        """Run the response; the last event is always :class:`ResponseFinished`."""
        self._t0 = time.perf_counter()
        ctx: Context | None = None
        tasks: list[asyncio.Task[None]] = []
        error: BaseException | None = None
        try:
            if not self._cancelled:
                ctx = await self._build_context()
                self.timings.prefill_s = self._now()
            if ctx is not None and not self._cancelled:
                phrases: asyncio.Queue[str | None] | None = asyncio.Queue() if self.options.audio else None
                tasks.append(asyncio.create_task(self._generate(ctx, phrases), name="generate"))
                if phrases is not None:
                    tasks.append(asyncio.create_task(self._speak(phrases), name="tts"))
                for task in tasks:
                    task.add_done_callback(self._on_task_done)
                running = len(tasks)
                while running:
                    item = await self._queue.get()
                    if isinstance(item, _Sentinel):
                        if item.what == "cancel":
                            break
                        running -= 1
                        if item.error is not None:
                            error = item.error
                            break
                        continue
                    if not self._cancelled:
                        yield item
        except Exception as exc:  # engine/TTS failure: report it as a failed response, keep the session
            error = exc
        finally:
            if self._cancelled or error is not None:
                self._cancel.cancel()
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if ctx is not None:
                self.engine.release(ctx)
            self.timings.end_s = self._now()
        if error is not None:
            log.exception("response failed", exc_info=error)
            reason: FinishReason = "error"
        elif self._cancelled:
            reason = "cancelled"
        else:
            reason = self._finish if self._finish != "cancelled" else "cancelled"
        yield ResponseFinished(
            finish_reason=reason,
            reply_text="".join(self._reply).strip(),
            reasoning_text="".join(self._reasoning).strip(),
            usage=self.usage,
            timings=self.timings,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self._queue.put_nowait(_Sentinel("done"))
            return
        self._queue.put_nowait(_Sentinel("done", task.exception()))


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
    def response(self, options: ResponseOptions) -> ResponseRun:
        return ResponseRun(self.engine, self.conversation, options, self.tts if options.audio else None)

    async def aclose(self) -> None:
        """Free every engine context this session holds."""
        await self.abandon_listening()
        self.conversation.close()
