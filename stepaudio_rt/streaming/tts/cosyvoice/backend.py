"""``--tts cosyvoice``: the CosyVoice2 backend behind the project's TTS interface.

One model per process, shared by every session (weights are read-only in inference; each synthesis keeps
its own streaming state in ``stream.TokenToWav``), so concurrent sessions need no lock. Output is int16 at
24 kHz; the server resamples to each session's rate. Voices are the checkpoint's saved speakers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..base import TTSBackend, TTSUnavailableError
from .checkpoint import DEFAULT_HUB_ID, load_cosyvoice2
from .stream import StreamParams, synthesize_stream

__all__ = ["CosyVoiceTTS"]

_CHUNK_MS = 200  # longest chunk handed on; keeps cancel and websocket messages quick


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class CosyVoiceTTS(TTSBackend):
    """``model_path``: a checkpoint directory or hub id (default ``FunAudioLLM/CosyVoice2-0.5B``);
    ``voice``: the default voice (default: the checkpoint's first speaker); ``device``: cuda when there is
    one; ``dtype``: the LM and flow precision (float16 on CUDA by default, the vocoder stays float32)."""

    name = "cosyvoice"

    def __init__(self, model_path: str | Path | None = None, voice: str | None = None, device: str | None = None,
                 dtype: str | None = None, params: StreamParams | None = None) -> None:
        dev = device or _default_device()
        torch_dtype = getattr(torch, dtype) if dtype else (torch.float16 if dev.startswith("cuda") else torch.float32)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        try:
            self.model = load_cosyvoice2(model_path or DEFAULT_HUB_ID, device=dev, dtype=torch_dtype)
        except (ImportError, RuntimeError) as exc:
            raise TTSUnavailableError(f"CosyVoice2 cannot load on {dev}: {exc}") from exc
        self.sample_rate = self.model.config.sample_rate
        self.params = params or StreamParams()
        names = list(self.model.voices)
        self.default_voice = names[0]
        if voice is not None:
            self.default_voice = self.resolve_voice(voice)  # unknown -> UnknownVoiceError at start-up
        self._chunk = self.sample_rate * _CHUNK_MS // 1000

    def voices(self) -> list[str]:
        names = list(self.model.voices)
        return [self.default_voice] + [n for n in names if n != self.default_voice]

    def synthesize_sync(
        self, text: str, voice: str | None = None, stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if not text.strip():
            return
        spk = self.model.voices[self.resolve_voice(voice)]
        for audio in synthesize_stream(self.model, text, spk, self.params, stop=stop):
            pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
            for start in range(0, len(pcm), self._chunk):
                yield pcm[start : start + self._chunk]
