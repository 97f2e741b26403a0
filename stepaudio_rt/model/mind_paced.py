"""Mind-Paced Speaking (MPS, arXiv 2510.09592): one model, two decode streams, over the engine contract.

Both streams are forks of one *base* context: the conversation followed by the generation prefix
``<|BOT|>assistant\\n<think>\\n``. Only that prefix is shared; nothing else is reused between rounds.

* **Formulation** (the thinking brain): the base continued as an ordinary think-before-speak decode. It
  writes reasoning only and is stopped at ``</think>`` (or when the think budget runs out). Every
  ``reasoning_segment_tokens`` tokens it publishes a *segment*: the reasoning text so far. With
  ``segment_boundary = "sentence"`` (declared by a checkpoint trained on reasoning cut at its sentences,
  as think-incomplete SFT cuts it) a segment instead ends at the first sentence end after at least that
  many new tokens, so articulation never sees a thought cut mid-sentence, which such a model never saw.
* **Articulation** (the speaking brain), round *n*: a fresh fork of the base, plus
  :func:`articulation_suffix` (reasoning so far, ``\\n</think>\\n``, the reply already produced), continued
  for ``reply_segment_tokens`` reply tokens. Once formulation has ended, one *final* round continues the
  reply to its end with the complete reasoning; it may finish or correct what was said.

``think_first`` starts round 1 after the first segment; ``speak_first`` starts it at once with the empty
think block (``<think>\\n\\n</think>\\n``). Later rounds are released by a :class:`ReleaseGate` (the
streaming layer's playback clock: "the listener is about to run out of audio"), then, under the ``wait``
lag policy, only once a new segment exists (or reasoning has ended); under ``speak`` a round goes with the
reasoning so far. A round whose reply reaches ``<|EOT|>`` before reasoning has ended waits for the end of
reasoning; the final round then sees the whole reply and may add a correction.

Both streams are ordinary ``engine.generate`` calls, so an engine that batches its streams (the
TorchEngine does) decodes them in the same step. This module is text-only and knows nothing of audio; the
realtime server wraps it in ``streaming.think_while_speaking`` and ``stepaudio-rt eval`` drives it with
an :class:`ImmediateGate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from stepaudio_rt.model.engine import CancelToken, Context, Engine, FinishReason, SamplingParams
from stepaudio_rt.model.tokenizer import THINK_CLOSE

ThinkingMode = Literal["sequential", "think_first", "speak_first"]
THINKING_MODES: tuple[ThinkingMode, ...] = ("sequential", "think_first", "speak_first")
LagPolicy = Literal["wait", "speak"]
SegmentBoundary = Literal["tokens", "sentence"]
# A sentence of reasoning ends with one of these followed by whitespace ("4.4 per second" is one sentence).
# Think-incomplete SFT cuts its training thoughts with the same rule (training.think_incomplete).
SENTENCE_END_MARKS = ".!?"

# The paper's formulation segment (Tc = 80 tokens).
DEFAULT_REASONING_SEGMENT_TOKENS = 80
# The paper's Tr = 100 tokens are Step-Audio 2's interleaved text+speech (about 20 text + 80 speech
# tokens, ~3 s of audio). R1 writes text only; 24 text tokens are one or two clauses (5-7 s of speech):
# short enough that the first round commits to little before any reasoning exists, long enough that the
# per-round re-prefill stays a small share of the decode work.
DEFAULT_REPLY_SEGMENT_TOKENS = 24


@dataclass(frozen=True)
class MindPacedConfig:
    mode: Literal["think_first", "speak_first"]
    reasoning_segment_tokens: int = DEFAULT_REASONING_SEGMENT_TOKENS
    reply_segment_tokens: int = DEFAULT_REPLY_SEGMENT_TOKENS
    lag_policy: LagPolicy = "wait"  # when the listener needs more reply but no new segment exists
    # "tokens": a segment every reasoning_segment_tokens tokens (the paper); "sentence": at the first
    # sentence end after at least that many (the reasoning as think-incomplete SFT cuts it)
    segment_boundary: SegmentBoundary = "tokens"
    # Round n sees exactly the next segment (n segments in think_first, n - 1 in speak_first) instead of
    # the latest one: reproducible under greedy decoding whatever the timing, for evaluation. It models a
    # listener that needs the next round exactly when the next segment is written.
    lockstep: bool = False

    @classmethod
    def for_checkpoint(
        cls,
        generation_config: dict,
        mode: str,
        reasoning_segment_tokens: int | None = None,
        reply_segment_tokens: int | None = None,
        **kwargs: object,
    ) -> MindPacedConfig:
        """Segment sizes given here, else those the checkpoint declares, else the built-in defaults."""
        declared = checkpoint_thinking_defaults(generation_config)
        if "segment_boundary" in declared:
            kwargs.setdefault("segment_boundary", declared["segment_boundary"])
        return cls(
            mode,  # type: ignore[arg-type]
            int(reasoning_segment_tokens or declared.get("reasoning_segment_tokens", DEFAULT_REASONING_SEGMENT_TOKENS)),  # type: ignore[call-overload]
            int(reply_segment_tokens or declared.get("reply_segment_tokens", DEFAULT_REPLY_SEGMENT_TOKENS)),  # type: ignore[call-overload]
            **kwargs,  # type: ignore[arg-type]
        )

    def __post_init__(self) -> None:
        if self.mode not in ("think_first", "speak_first"):
            raise ValueError(f"mind-paced mode must be think_first or speak_first, got {self.mode!r}")
        if self.reasoning_segment_tokens < 1 or self.reply_segment_tokens < 1:
            raise ValueError("segment sizes must be >= 1 token")
        if self.lag_policy not in ("wait", "speak"):
            raise ValueError(f"lag_policy must be 'wait' or 'speak', got {self.lag_policy!r}")
        if self.segment_boundary not in ("tokens", "sentence"):
            raise ValueError(f"segment_boundary must be 'tokens' or 'sentence', got {self.segment_boundary!r}")


def checkpoint_thinking_defaults(generation_config: dict) -> dict[str, object]:
    """Think-while-speaking defaults a checkpoint declares in its generation_config.json (keys
    ``thinking_mode``, ``reasoning_segment_tokens``, ``reply_segment_tokens``, ``segment_boundary``),
    absent keys omitted."""
    keys = ("thinking_mode", "reasoning_segment_tokens", "reply_segment_tokens", "segment_boundary")
    return {k: generation_config[k] for k in keys if generation_config.get(k) is not None}


def articulation_suffix(reasoning: str, reply: str) -> str:
    """What an articulation round appends to the base (which ends in ``<think>\\n``): the reasoning so
    far with trailing whitespace removed (the training format ``<think>\\n{reasoning}\\n</think>\\n``),
    the think-close line, and the reply produced so far, verbatim."""
    return f"{reasoning.rstrip()}\n{THINK_CLOSE}\n{reply}"


# ----- events -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReasoningText:
    """New reasoning text from the formulation stream (never contains ``</think>``)."""

    text: str


@dataclass(frozen=True)
class ReasoningEnded:
    text: str  # the whole reasoning
    tokens: int  # formulation tokens generated (the think-close tag included)
    finish_reason: FinishReason


@dataclass
class RoundRecord:
    """One articulation round: when it was released, what it saw, what it cost. Seconds are measured
    from the start of the generation."""

    index: int
    final: bool
    released_s: float
    reasoning_tokens: int  # reasoning tokens visible to the round
    prompt_tokens: int  # tokens re-prefilled after the shared prefix (reasoning, close tag, reply so far)
    fork_s: float  # engine time to fork the base (KV copy or share)
    prefill_s: float  # engine time to prefill prompt_tokens
    waited_playback_s: float = 0.0  # held by the release gate (the listener still had audio)
    waited_reasoning_s: float = 0.0  # held because no new reasoning segment existed yet
    queued_ms: float = 0.0  # the gate's queued-audio figure at release
    reply_tokens: int = 0
    stopped: bool = False  # the round reached the end of the reply


@dataclass(frozen=True)
class RoundStarted:
    record: RoundRecord


@dataclass(frozen=True)
class ReplyText:
    text: str
    round: int


@dataclass(frozen=True)
class RoundEnded:
    record: RoundRecord


MindPacedEvent = ReasoningText | ReasoningEnded | RoundStarted | ReplyText | RoundEnded


class ReleaseGate(Protocol):
    """Decides when the listener needs the next round (the streaming layer's playback clock)."""

    async def wait(self) -> None: ...

    def queued_ms(self) -> float: ...


class ImmediateGate:
    """No listener: every round may start as soon as its reasoning condition holds (eval, text output)."""

    async def wait(self) -> None:
        return None

    def queued_ms(self) -> float:
        return 0.0


_END = object()


# ----- the generation ------------------------------------------------------------------------------------
class MindPacedGeneration:
    """Drive formulation and articulation over ``base``; iterate :meth:`events`. ``base`` stays the
    caller's (it is only forked); every fork is released here. ``sampling`` supplies temperature, top_p,
    seed and stop ids."""

    def __init__(
        self,
        engine: Engine,
        base: Context,
        config: MindPacedConfig,
        sampling: SamplingParams,
        think_budget: int,
        max_reply_tokens: int,
        gate: ReleaseGate | None = None,
    ) -> None:
        self.engine = engine
        self.base = base
        self.config = config
        self.sampling = sampling
        self.think_budget = think_budget
        self.max_reply_tokens = max_reply_tokens
        self.gate: ReleaseGate = gate or ImmediateGate()
        # Results, complete once events() is exhausted.
        self.reasoning_text = ""
        self.reasoning_tokens = 0
        self.reply_text = ""
        self.reply_tokens = 0
        self.rounds: list[RoundRecord] = []
        self.finish_reason: FinishReason = "stop"
        self.reasoning_end_s: float | None = None
        self._segments: list[tuple[int, str]] = []  # (reasoning tokens, reasoning text) at each boundary
        self._reasoning_done = False
        self._changed = asyncio.Event()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancels: list[CancelToken] = []
        self._cancelled = False
        self._t0 = 0.0

    @property
    def segments(self) -> list[str]:
        """The reasoning text at each segment boundary published so far."""
        return [text for _, text in self._segments]

    def cancel(self) -> None:
        """Stop both streams within one decode step."""
        self._cancelled = True
        for token in self._cancels:
            token.cancel()

    def _now(self) -> float:
        return time.perf_counter() - self._t0

    def _token(self) -> CancelToken:
        token = CancelToken()
        if self._cancelled:
            token.cancel()
        self._cancels.append(token)
        return token

    async def events(self) -> AsyncIterator[MindPacedEvent]:
        self._t0 = time.perf_counter()
        tasks = [
            asyncio.create_task(self._guard(self._formulate()), name="formulation"),
            asyncio.create_task(self._guard(self._articulate()), name="articulation"),
        ]
        try:
            while True:
                item = await self._queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            self.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, coro: object) -> None:
        try:
            await coro  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # delivered to the consumer of events()
            self._queue.put_nowait(exc)

    # ----- formulation -----
    async def _formulate(self) -> None:
        close_len = len(self.engine.tokenizer.think_close_ids)
        params = dataclasses.replace(
            self.sampling,
            max_tokens=self.think_budget + close_len + 1,
            think_budget=self.think_budget,
            starts_in_think=True,
        )
        ctx = self.engine.fork(self.base)
        token = self._token()
        raw = ""  # generated text, tag included
        sent = 0  # characters of reasoning already published
        sentence_segments = self.config.segment_boundary == "sentence"
        due = self.config.reasoning_segment_tokens  # sentence segments: the next one ends after this many tokens
        finish: FinishReason = "stop"
        try:
            async with contextlib.aclosing(self.engine.generate(ctx, params, token)) as stream:
                async for d in stream:
                    if d.finish_reason is not None:
                        finish = d.finish_reason
                        break
                    self.reasoning_tokens += 1
                    if sentence_segments and _starts_sentence(raw, d.text) and self.reasoning_tokens > due:
                        # the previous token ended a sentence: the thought so far is a whole number of them
                        self._segments.append((self.reasoning_tokens - 1, raw.rstrip()))
                        self._changed.set()
                        due = self.reasoning_tokens - 1 + self.config.reasoning_segment_tokens
                    raw += d.text
                    # Only the new text (and a tag it may complete) can hold </think>: no rescan of it all.
                    tag_at = raw.find(THINK_CLOSE, max(0, len(raw) - len(d.text) - len(THINK_CLOSE)))
                    closed = tag_at >= 0 or not d.in_think
                    visible = raw[:tag_at] if tag_at >= 0 else raw
                    publish = len(visible) if closed else _safe_end(visible)
                    if publish > sent:
                        self._queue.put_nowait(ReasoningText(visible[sent:publish]))
                        sent = publish
                    if closed:
                        break
                    if not sentence_segments and self.reasoning_tokens % self.config.reasoning_segment_tokens == 0:
                        self._segments.append((self.reasoning_tokens, visible))
                        self._changed.set()
        finally:
            token.cancel()
            self.engine.release(ctx)
            self.reasoning_text = raw.split(THINK_CLOSE, 1)[0].strip()
            self._reasoning_done = True
            self.reasoning_end_s = self._now()
            self._changed.set()
        self._queue.put_nowait(ReasoningEnded(self.reasoning_text, self.reasoning_tokens, finish))

    # ----- articulation -----
    async def _wait_reasoning(self, seen: int, *, until_done: bool = False) -> float:
        """Wait for a segment beyond ``seen`` (or the end of reasoning); returns seconds waited."""
        t0 = time.perf_counter()
        while not self._reasoning_done and (until_done or len(self._segments) <= seen):
            self._changed.clear()
            await self._changed.wait()
        return time.perf_counter() - t0

    async def _articulate(self) -> None:
        cfg = self.config
        seen = 0  # segments the previous round saw
        stopped = False
        index = 0
        try:
            while not self._cancelled:
                waited_playback = waited_reasoning = 0.0
                if stopped:  # the reply is complete: only the final round with all reasoning may add to it
                    waited_reasoning = await self._wait_reasoning(seen, until_done=True)
                elif index == 0:
                    if cfg.mode == "think_first":
                        waited_reasoning = await self._wait_reasoning(0)
                else:
                    t0 = time.perf_counter()
                    await self.gate.wait()
                    waited_playback = time.perf_counter() - t0
                    if cfg.lag_policy == "wait":
                        waited_reasoning = await self._wait_reasoning(seen)
                final = self._reasoning_done
                speak_first_opening = index == 0 and cfg.mode == "speak_first" and not final
                if final:
                    reasoning, n_reasoning = self.reasoning_text, self.reasoning_tokens
                elif self._segments and not speak_first_opening:
                    n_reasoning, reasoning = self._segments[min(seen, len(self._segments) - 1) if cfg.lockstep else -1]
                else:
                    reasoning, n_reasoning = "", 0
                if cfg.lockstep:
                    seen = seen if speak_first_opening else min(seen + 1, len(self._segments))
                else:
                    seen = len(self._segments)
                record = await self._round(index, final, reasoning, n_reasoning)
                record.waited_playback_s, record.waited_reasoning_s = waited_playback, waited_reasoning
                stopped = stopped or record.stopped
                index += 1
                if final or self.reply_tokens >= self.max_reply_tokens:
                    self.finish_reason = "stop" if stopped else "length"
                    break
            if self._cancelled:
                self.finish_reason = "cancelled"
        finally:
            self._queue.put_nowait(_END)

    async def _round(self, index: int, final: bool, reasoning: str, n_reasoning: int) -> RoundRecord:
        released = self._now()
        queued = self.gate.queued_ms()
        ctx = self.engine.fork(self.base)
        token = self._token()
        try:
            await self.engine.append_text(ctx, articulation_suffix(reasoning, self.reply_text))
            prefill = await self.engine.flush(ctx)
            fork_s = sum(t.seconds for t in ctx.timings if t.kind == "fork")
            record = RoundRecord(
                index=index,
                final=final,
                released_s=released,
                reasoning_tokens=n_reasoning,
                prompt_tokens=len(ctx) - len(self.base),
                fork_s=fork_s,
                prefill_s=prefill.seconds,
                queued_ms=queued,
            )
            self.rounds.append(record)
            self._queue.put_nowait(RoundStarted(record))
            budget = self.max_reply_tokens - self.reply_tokens
            params = dataclasses.replace(
                self.sampling,
                max_tokens=budget if final else min(budget, self.config.reply_segment_tokens),
                think_budget=None,
                starts_in_think=False,
            )
            async with contextlib.aclosing(self.engine.generate(ctx, params, token)) as stream:
                async for d in stream:
                    if d.finish_reason is not None:
                        record.stopped = d.finish_reason == "stop"
                        break
                    record.reply_tokens += 1
                    self.reply_tokens += 1
                    if d.text:
                        self.reply_text += d.text
                        self._queue.put_nowait(ReplyText(d.text, index))
        finally:
            token.cancel()
            self.engine.release(ctx)
        self._queue.put_nowait(RoundEnded(record))
        return record


def _starts_sentence(before: str, token_text: str) -> bool:
    """Whether ``token_text`` opens a new sentence after ``before``: the text so far ends in one of
    ``SENTENCE_END_MARKS`` and the token starts with whitespace."""
    return bool(before) and before[-1] in SENTENCE_END_MARKS and token_text[:1].isspace()


def _safe_end(text: str) -> int:
    """Length of ``text`` that cannot be the start of a ``</think>`` tag still arriving."""
    for k in range(min(len(THINK_CLOSE) - 1, len(text)), 0, -1):
        if THINK_CLOSE.startswith(text[-k:]):
            return len(text) - k
    return len(text)
