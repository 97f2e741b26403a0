"""TTS backends behind one interface (see ``base.TTSBackend``), chosen by name.

- ``piper`` (default, CPU): Piper with the bundled joe voice; needs the ``tts`` extra.
- ``cosyvoice`` (GPU): CosyVoice2 (``cosyvoice/``), weights from a local directory or the hub
  (``FunAudioLLM/CosyVoice2-0.5B``); runs on CPU too, slowly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import TTSBackend, TTSUnavailableError, UnknownVoiceError

__all__ = ["TTSBackend", "TTSUnavailableError", "UnknownVoiceError", "create_tts", "register_tts", "available_tts"]


def _piper(**kw: Any) -> TTSBackend:
    from .piper import PiperTTS  # lazy: piper-tts is an optional (GPL) extra

    return PiperTTS(**kw)


def _cosyvoice(**kw: Any) -> TTSBackend:
    from .cosyvoice.backend import CosyVoiceTTS  # lazy: loads torch + transformers

    return CosyVoiceTTS(**kw)


_REGISTRY: dict[str, Callable[..., TTSBackend]] = {"piper": _piper, "cosyvoice": _cosyvoice}


def register_tts(name: str, factory: Callable[..., TTSBackend]) -> None:
    """Make a backend available to ``create_tts`` (e.g. a user's CosyVoice 2 wrapper)."""
    _REGISTRY[name] = factory


def available_tts() -> list[str]:
    return sorted(_REGISTRY)


def create_tts(name: str = "piper", **kw: Any) -> TTSBackend:
    """Build the TTS backend called ``name``; keyword arguments go to its constructor."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown TTS backend {name!r}; available: {', '.join(available_tts())}")
    return factory(**kw)
