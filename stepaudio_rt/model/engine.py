"""The engine contract between ``model/`` and ``streaming/``.

An engine owns the weights and the compute. The realtime scheduler sees only this surface:

* a per-conversation :class:`Context` holding the KV state of everything appended so far;
* ``append_text`` / ``append_tokens`` / ``append_audio`` to grow a context incrementally (prefill);
* ``generate`` as an async stream of :class:`TokenDelta`, with :class:`SamplingParams`, stop tokens,
  a token budget, a think budget, and a :class:`CancelToken` that stops compute within one decode step;
* ``fork`` so two decode streams share a prefix (Mind-Paced Speaking's two brains);
* per-step timings (:class:`StepTiming`) for the latency breakdown.

Two implementations: :class:`~stepaudio_rt.model.torch_engine.TorchEngine` (CPU / one GPU) and
:class:`~stepaudio_rt.model.vllm_engine.VLLMEngine` (production).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from stepaudio_rt.model.tokenizer import StepAudioTokenizer

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings. ``temperature == 0`` means greedy."""

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_tokens: int = 2048
    seed: int | None = None
    # None: the tokenizer's stop ids (<|EOT|>, <|endoftext|>, <|im_end|>); a tuple replaces them
    # (an empty tuple never stops early, for benchmarks).
    stop_token_ids: tuple[int, ...] | None = None
    # Maximum number of tokens generated inside the open ``<think>`` block. When it runs out the
    # engine itself appends the think-close sequence (``think_close_ids``) and the reply follows.
    think_budget: int | None = None
    # Whether the context ends inside an open think block (the generation prefix ends in ``<think>\n``).
    starts_in_think: bool = True


@dataclass(frozen=True)
class StepTiming:
    """Where time went in one engine call (seconds)."""

    kind: Literal["prefill_text", "prefill_audio", "encode_audio", "decode", "fork"]
    tokens: int
    seconds: float


@dataclass(frozen=True)
class TokenDelta:
    """One generated token and the text it completes (may be empty mid UTF-8 sequence)."""

    token_id: int
    text: str
    index: int  # 0-based position within this generation
    in_think: bool  # True while the token belongs to the reasoning (before ``</think>``)
    forced: bool = False  # inserted by the engine (think budget), not sampled
    finish_reason: FinishReason | None = None  # set on the last delta of the stream (which has no text)
    step_seconds: float = 0.0  # wall time of the decode step that produced this token


class CancelToken:
    """A flag the engine checks before every decode step; ``cancel()`` is safe from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class Context:
    """A conversation's state inside an engine. Create with ``engine.new_context()``."""

    id: int
    token_ids: list[int] = field(default_factory=list)
    audio_tokens: int = 0  # how many of ``token_ids`` are audio placeholders (for usage reports)
    timings: list[StepTiming] = field(default_factory=list)
    released: bool = False

    def __len__(self) -> int:
        return len(self.token_ids)


class EngineError(RuntimeError):
    """Raised for engine misuse (released context, context full, ...)."""


# Listen-while-thinking chunk length for a checkpoint whose generation_config declares none.
DEFAULT_LISTEN_CHUNK_SECONDS = 2.0


def checkpoint_listen_chunk_seconds(generation_config: dict) -> float:
    """The listen chunk length a checkpoint was trained with (its ``audio_chunk_seconds``), else 2 s."""
    return float(generation_config.get("audio_chunk_seconds", DEFAULT_LISTEN_CHUNK_SECONDS))


class Engine(abc.ABC):
    """Abstract engine. All methods that touch compute are ``async`` and safe to call concurrently."""

    tokenizer: StepAudioTokenizer
    max_context_tokens: int
    # The checkpoint's generation_config.json. Besides HF's sampling keys, checkpoints built by this
    # project carry serving defaults the model was trained with: "default_system_prompt" and
    # "audio_chunk_seconds" (the listen-while-thinking chunk length).
    generation_config: dict = {}  # noqa: RUF012 - replaced per instance

    @abc.abstractmethod
    def new_context(self) -> Context: ...

    @abc.abstractmethod
    async def append_tokens(self, ctx: Context, token_ids: Sequence[int]) -> StepTiming: ...

    async def append_text(self, ctx: Context, text: str) -> StepTiming:
        """Tokenize ``text`` (special tokens allowed) and prefill it (an engine may defer text and
        prefill it with the next audio chunk or generation, in one pass)."""
        return await self.append_tokens(ctx, self.tokenizer.encode(text))

    async def flush(self, ctx: Context) -> StepTiming:
        """Prefill anything an engine deferred. Engines that never defer have nothing to do."""
        return StepTiming("prefill_text", 0, 0.0)

    @abc.abstractmethod
    async def append_audio(self, ctx: Context, waveform_16k: np.ndarray) -> StepTiming:
        """Encode one audio chunk (<= 25 s, 16 kHz mono float32) and prefill its
        ``<audio_start><audio_patch>*N<audio_end>`` block."""

    @abc.abstractmethod
    def fork(self, ctx: Context) -> Context:
        """A new context sharing ``ctx``'s prefix (its KV state is copied or shared)."""

    @abc.abstractmethod
    def generate(
        self, ctx: Context, params: SamplingParams, cancel: CancelToken | None = None
    ) -> AsyncIterator[TokenDelta]:
        """Stream tokens; generated tokens are appended to ``ctx`` as they are fed back to the model.

        The stream ends with one delta whose ``finish_reason`` is set and whose text is empty (its
        ``token_id`` is the stop token for ``"stop"``). The ``</think>`` tag's own tokens are reported
        with ``in_think=True``; the reply text that follows starts with the format's ``"\n"``. A stop
        token, and the last token of a stream cut by its budget, are not added to the context.
        """

    @abc.abstractmethod
    def release(self, ctx: Context) -> None:
        """Free a context's resources. Idempotent."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Stop worker threads and free memory."""
