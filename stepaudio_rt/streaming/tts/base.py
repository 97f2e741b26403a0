"""The TTS interface: text phrase in, int16 PCM chunks out, asynchronously and cancellably.

Synthesis is CPU-bound (ONNX inference) and would freeze every session on the event loop, so backends
implement a plain synchronous generator (``synthesize_sync``) and this base class runs it in a worker
thread, handing chunks back through an asyncio queue. When the consumer stops iterating (barge-in,
``aclose()``, task cancellation) a stop flag is set and the worker quits before its next inference step,
so at most one in-flight step (one sentence or clause) of compute is wasted. Backends that can stop
sooner (CosyVoice: between LM tokens and flow steps) read the same flag, passed as ``stop``.

Voices: each backend lists its installed voices (``voices()``) and resolves a session's ``voice`` field
with ``resolve_voice``: an installed name, or one of OpenAI's stock voice names / nothing, which mean the
backend's default (so stock clients keep working); any other name is an ``UnknownVoiceError``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["TTSBackend", "TTSUnavailableError", "UnknownVoiceError", "OPENAI_VOICES"]

# OpenAI's stock voice names: clients written for OpenAI send these; they get the backend's default voice.
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                           "verse", "marin", "cedar"})


class TTSUnavailableError(RuntimeError):
    """A TTS backend cannot run here (missing package, weights or hardware); the message says what to do."""


class UnknownVoiceError(ValueError):
    """A voice name this backend does not have; the message names it and the installed ones."""

    def __init__(self, voice: str, installed: list[str]) -> None:
        super().__init__(f"Unknown voice {voice!r}; installed voices: {', '.join(installed)}")
        self.voice = voice
        self.installed = installed


_DONE = object()


@dataclass
class _Failure:
    exc: BaseException


class TTSBackend(abc.ABC):
    """Base class of all TTS backends. Subclasses set ``sample_rate`` and ``name`` and implement
    ``synthesize_sync``; they must be safe to call from several threads at once (one call per session)."""

    sample_rate: int
    name: str
    default_voice: str = "default"

    @abc.abstractmethod
    def synthesize_sync(
        self, text: str, voice: str | None = None, stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        """Blocking synthesis: yield mono int16 chunks at ``sample_rate``. Runs in a worker thread.

        Must be a lazy generator: the caller stops consuming it to cancel, so each ``yield`` is a point
        where no further compute happens until the next chunk is requested. ``voice``: an installed voice
        (None = the default). ``stop``: set when the consumer has gone; a backend may check it mid-chunk.
        """

    def voices(self) -> list[str]:
        """The installed voices, default first."""
        return [self.default_voice]

    def resolve_voice(self, voice: str | None) -> str:
        """The installed voice a session's ``voice`` value selects (see the module docstring)."""
        installed = self.voices()
        if voice in installed:
            return voice
        if voice is None or voice == "" or voice.lower() in OPENAI_VOICES:
            return self.default_voice
        raise UnknownVoiceError(voice, installed)

    def warmup(self) -> None:
        """Load weights and run one tiny synthesis so the first real request pays no start-up cost."""
        for _ in self.synthesize_sync("Hello."):
            pass

    async def synthesize(self, text: str, voice: str | None = None) -> AsyncIterator[np.ndarray]:
        """Stream int16 chunks for ``text`` without blocking the event loop.

        Stop iterating (``break``, ``aclose()``) or cancel the consuming task to abort: the worker notices
        before its next inference step and exits.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        voice = self.resolve_voice(voice)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def deliver(item: object) -> None:
            # The loop may already be closed if the consumer went away during shutdown: nothing to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def produce() -> None:
            gen = self.synthesize_sync(text, voice=voice, stop=stop)
            try:
                for chunk in gen:
                    if stop.is_set():
                        break
                    deliver(chunk)
            except BaseException as exc:  # re-raised in the consumer, which owns error handling
                deliver(_Failure(exc))
            finally:
                gen.close()
                deliver(_DONE)

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, _Failure):
                    raise item.exc
                assert isinstance(item, np.ndarray)
                yield item
            await worker
        finally:
            stop.set()
