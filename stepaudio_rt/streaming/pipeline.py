"""What every response run shares: its options, the pipeline events it yields, usage and timings, the
speaking stage (phrases -> TTS -> session rate -> <= 100 ms chunks) and the run skeleton (tasks, cancel
scope, the final :class:`ResponseFinished`).

Two runs build on it: :class:`~stepaudio_rt.streaming.sequential.SequentialRun` (think, then speak) and
:class:`~stepaudio_rt.streaming.think_while_speaking.ThinkWhileSpeakingRun` (Mind-Paced Speaking).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from stepaudio_rt.model.engine import CancelToken, Context, Engine, SamplingParams
from stepaudio_rt.model.mind_paced import MindPacedConfig, RoundRecord
from stepaudio_rt.model.tokenizer import SPECIAL_TOKENS, THINK_CLOSE, THINK_OPEN
from stepaudio_rt.streaming.codecs import float_to_int16
from stepaudio_rt.streaming.conversation import Conversation, Turn
from stepaudio_rt.streaming.phrases import PhraseChunker
from stepaudio_rt.streaming.resample import StreamResampler
from stepaudio_rt.streaming.tts import TTSBackend

log = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]

# Control-token text never belongs in a transcript (a small or undertrained model may emit any of them).
# Nor do control characters (NUL breaks TTS front ends); newlines and tabs stay.
SCRUB = re.compile(
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
    input_tokens: int = 0  # everything prefilled for this response (re-prefilled rounds included)
    input_audio_tokens: int = 0
    output_tokens: int = 0  # every generated token, reasoning included
    reasoning_tokens: int = 0


@dataclass
class ResponseTimings:
    """Seconds from the start of the response run (the moment the scheduler got it)."""

    prefill_s: float | None = None  # fork + generation prefix ready
    first_token_s: float | None = None
    first_reply_token_s: float | None = None  # sequential: end of reasoning
    first_phrase_s: float | None = None  # first phrase handed to TTS
    first_audio_s: float | None = None  # first TTS chunk out
    reasoning_end_s: float | None = None  # the reasoning stream closed its think block
    end_s: float | None = None
    think_tokens: int = 0
    output_tokens: int = 0
    mode: str = "sequential"
    rounds: list[RoundRecord] = field(default_factory=list)  # think-while-speaking only

    @property
    def reasoning_s(self) -> float | None:
        if self.mode != "sequential":
            if self.reasoning_end_s is None or self.prefill_s is None:
                return None
            return self.reasoning_end_s - self.prefill_s
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

    @property
    def articulation_wait_s(self) -> float:
        """Time the articulation stream spent waiting for reasoning (think-while-speaking)."""
        return sum(r.waited_reasoning_s for r in self.rounds)


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
    # Think-while-speaking (Mind-Paced Speaking); None = sequential (think, then speak).
    mind_paced: MindPacedConfig | None = None
    # Think-while-speaking releases the next round when less than this much audio is left to play.
    playback_lead_ms: float = 1500.0
    voice: str | None = None  # the TTS voice (already resolved by the backend); None = its default


async def build_response_context(engine: Engine, conversation: Conversation, options: ResponseOptions, prefix: str) -> Context:
    """A private context: the conversation (or the out-of-band input) + the generation ``prefix``, prefilled."""
    conv = conversation
    if options.turns is not None or (options.instructions is not None and options.instructions != conv.instructions):
        instructions = conv.instructions if options.instructions is None else options.instructions
        ctx = await conv.build_standalone(instructions, options.turns)
    else:
        ctx, _ = await conv.fork()
    try:
        await engine.append_text(ctx, prefix)
        # One forward pass for everything deferred (end of turn + generation prefix), timed as prefill.
        await engine.flush(ctx)
    except BaseException:
        engine.release(ctx)
        raise
    return ctx


@dataclass
class _Sentinel:
    what: str
    error: BaseException | None = None


# ----- the speaking stage ----------------------------------------------------------------------------------
class Speaker:
    """Phrases in (``say``), transcript + audio events out, one phrase at a time through the TTS backend.

    It also keeps the playback ledger think-while-speaking paces itself by: how much audio was sent and
    when the first chunk went out (the client is assumed to play from its first chunk at real time).
    """

    def __init__(self, run: RunBase, tts: TTSBackend, out_rate: int, chunk_ms: int, voice: str | None = None) -> None:
        self.run = run
        self.tts = tts
        self.voice = voice
        self.out_rate = out_rate
        self.step = max(1, out_rate * chunk_ms // 1000)
        self._phrases: asyncio.Queue[str | None] = asyncio.Queue()
        self._pending = 0  # phrases said but not yet fully synthesized
        self.idle = asyncio.Event()  # set while nothing is waiting for or inside the TTS
        self.idle.set()
        self.sent_ms = 0.0
        self.first_audio_at: float | None = None  # perf_counter of the first chunk

    def say(self, phrase: str) -> None:
        if phrase.strip():
            if self.run.timings.first_phrase_s is None:
                self.run.timings.first_phrase_s = self.run.now()
            self._pending += 1
            self.idle.clear()
            self._phrases.put_nowait(phrase)

    def close(self) -> None:
        self._phrases.put_nowait(None)

    def queued_ms(self) -> float:
        """Audio sent to the client and not yet played, assuming playback started with the first chunk."""
        if self.first_audio_at is None:
            return 0.0
        played = 1000.0 * (time.perf_counter() - self.first_audio_at)
        return max(0.0, self.sent_ms - played)

    async def run_tts(self) -> None:
        resampler = StreamResampler(self.tts.sample_rate, self.out_rate)
        spoken = False
        while True:
            phrase = await self._phrases.get()
            if phrase is None:
                break
            text = phrase.strip()
            if spoken and not phrase[:1].isspace():
                text = " " + text
            self.run.emit(TranscriptDelta(text))
            spoken = True
            async for pcm in self.tts.synthesize(phrase.strip(), voice=self.voice):
                self._emit_audio(resampler.process(pcm))
            self._pending -= 1
            if self._pending == 0:
                self.idle.set()
        self._emit_audio(resampler.flush())

    def _emit_audio(self, samples: np.ndarray) -> None:
        if samples.size == 0:
            return
        pcm = float_to_int16(samples)
        if self.run.timings.first_audio_s is None:
            self.run.timings.first_audio_s = self.run.now()
            self.first_audio_at = time.perf_counter()
        for start in range(0, len(pcm), self.step):
            chunk = pcm[start : start + self.step]
            self.sent_ms += 1000.0 * len(chunk) / self.out_rate
            self.run.emit(AudioDelta(chunk, self.out_rate))


# ----- the run skeleton -------------------------------------------------------------------------------------
class RunBase(abc.ABC):
    """One response: iterate :meth:`events` to drive it; :meth:`cancel` stops generation and TTS at once.

    Subclasses name the generation prefix their context ends in (:meth:`_generation_prefix`) and return
    the coroutines that produce events (:meth:`_producers`); both feed generated text through
    :meth:`_reasoning_text` and :meth:`_reply_text`.
    """

    mode = "sequential"

    def __init__(
        self, engine: Engine, conversation: Conversation, options: ResponseOptions, tts: TTSBackend | None
    ) -> None:
        if options.audio and tts is None:
            raise ValueError("audio responses need a TTS backend")
        self.engine = engine
        self.conversation = conversation
        self.options = options
        self.tts = tts
        self.timings = ResponseTimings(mode=self.mode)
        self.usage = TokenUsage()
        self._cancel = CancelToken()
        self._cancelled = False
        self._queue: asyncio.Queue[PipelineEvent | _Sentinel] = asyncio.Queue()
        self._t0 = 0.0
        self._reasoning: list[str] = []
        self._reply: list[str] = []
        self._finish: FinishReason = "stop"
        self._ctx: Context | None = None  # conversation + generation prefix, prefilled by _prepare
        self._reply_started = False
        self.speaker: Speaker | None = (
            Speaker(self, tts, options.out_rate, options.chunk_ms, options.voice) if options.audio and tts is not None else None
        )

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop compute within one decode step and drop TTS work. Safe to call more than once."""
        self._cancelled = True
        self._cancel.cancel()
        self._on_cancel()
        self._queue.put_nowait(_Sentinel("cancel"))

    def _on_cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop anything beyond ``self._cancel`` (e.g. a second decode stream)."""

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def emit(self, event: PipelineEvent) -> None:
        self._queue.put_nowait(event)

    @abc.abstractmethod
    def _generation_prefix(self) -> str:
        """What the run's context ends in (e.g. ``<|BOT|>assistant\n<think>\n``)."""

    @abc.abstractmethod
    def _producers(self) -> list[Coroutine[Any, Any, None]]:
        """The coroutines that generate; each must ``speaker.close()`` (when speaking) when it ends."""

    async def _prepare(self) -> None:
        self._ctx = await build_response_context(self.engine, self.conversation, self.options, self._generation_prefix())
        # After an await: an engine may fill a fork's token list asynchronously.
        self.usage.input_tokens = len(self._ctx)
        self.usage.input_audio_tokens = self._ctx.audio_tokens

    def _cleanup(self) -> None:
        if self._ctx is not None:
            self.engine.release(self._ctx)

    def _sampling(self, **overrides: object) -> SamplingParams:
        """The response's sampling settings and the tokenizer's stop ids, plus per-stream ``overrides``."""
        opts = self.options
        return SamplingParams(
            temperature=opts.temperature,
            top_p=opts.top_p,
            seed=opts.seed,
            stop_token_ids=tuple(self.engine.tokenizer.stop_token_ids),
            **overrides,  # type: ignore[arg-type]
        )

    def _reasoning_text(self, text: str) -> None:
        clean = SCRUB.sub("", text)
        if clean:
            self._reasoning.append(clean)
            if self.options.emit_reasoning:
                self.emit(ReasoningDelta(clean))

    def _on_reply_start(self) -> None:  # noqa: B027 - optional hook
        """Called just before the reply's first text goes out."""

    def _reply_text(self, text: str, chunker: PhraseChunker) -> None:
        """Reply text to the client (text) or to the phrase chunker (speech)."""
        clean = SCRUB.sub("", text)
        if not self._reply_started:
            clean = clean.lstrip()
            if clean:
                self._reply_started = True
                self.timings.first_reply_token_s = self.now()
                self._on_reply_start()
        if clean:
            self._reply.append(clean)
            if self.speaker is None:
                self.emit(TextDelta(clean))
            else:
                for phrase in chunker.push(clean):
                    self.speaker.say(phrase)

    def _end_reply(self, chunker: PhraseChunker) -> None:
        """Speak what the chunker still holds (unless cancelled)."""
        if self.speaker is not None and not self._cancelled:
            for phrase in chunker.flush():
                self.speaker.say(phrase)

    async def events(self) -> AsyncIterator[PipelineEvent]:
        """Run the response; the last event is always :class:`ResponseFinished`."""
        self._t0 = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        error: BaseException | None = None
        try:
            if not self._cancelled:
                await self._prepare()
                self.timings.prefill_s = self.now()
            if not self._cancelled:
                coros = self._producers()
                if self.speaker is not None:
                    coros.append(self.speaker.run_tts())
                tasks = [asyncio.create_task(c) for c in coros]
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
                self._on_cancel()
            for task in tasks:
                if not task.done():
                    task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._cleanup()
            self.timings.end_s = self.now()
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
