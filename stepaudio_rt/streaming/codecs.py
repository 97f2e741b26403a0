"""Wire audio formats of the Realtime protocol: PCM16 at 24 kHz and G.711 mu-law / A-law at 8 kHz.

Audio travels as base64 inside JSON events. This module turns that text into int16 samples and back.
G.711 is done with numpy lookup tables built once at import (the stdlib ``audioop`` module is gone in
Python 3.13), using the same bit-exact algorithm as the classic Sun ``g711.c`` / CPython ``audioop``, so
our output matches what telephony stacks expect.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "AudioFormat",
    "AudioFormatError",
    "AudioDecodeError",
    "PCM16",
    "PCMU",
    "PCMA",
    "decode_audio",
    "decode_audio_bytes",
    "encode_audio",
    "b64encode",
    "float_to_int16",
    "alaw_decode",
    "alaw_encode",
    "ulaw_decode",
    "ulaw_encode",
]


class AudioFormatError(ValueError):
    """A session asked for an audio format we do not speak. ``code`` maps to the protocol error code."""

    def __init__(self, message: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.code = code


class AudioDecodeError(ValueError):
    """Client audio could not be decoded. ``code`` is a stable machine-readable reason:

    - ``invalid_audio_base64``: the ``audio`` field is not valid base64;
    - ``invalid_audio_type``: the ``audio`` field is not a string;
    - ``invalid_audio_length``: PCM16 payload with an odd number of bytes (a torn sample).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioFormat:
    """One of the three wire formats. ``type`` is the GA name, ``rate`` the sample rate in Hz."""

    type: str
    rate: int

    _GA_RATES: ClassVar[dict[str, int]] = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}
    _BETA_TO_GA: ClassVar[dict[str, str]] = {
        "pcm16": "audio/pcm",
        "g711_ulaw": "audio/pcmu",
        "g711_alaw": "audio/pcma",
    }

    def __post_init__(self) -> None:
        expected = self._GA_RATES.get(self.type)
        if expected is None:
            raise AudioFormatError(
                f"unsupported audio format type {self.type!r}; expected one of {sorted(self._GA_RATES)}"
            )
        if self.rate != expected:
            # The protocol fixes each format's rate; accepting others would silently mis-pitch audio.
            raise AudioFormatError(
                f"audio format {self.type!r} supports only rate {expected}, got {self.rate!r}"
            )

    @property
    def sample_rate(self) -> int:
        return self.rate

    @property
    def beta_name(self) -> str:
        """The beta-dialect name (``pcm16``, ``g711_ulaw``, ``g711_alaw``)."""
        return next(b for b, g in self._BETA_TO_GA.items() if g == self.type)

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    def to_session(self) -> dict[str, Any]:
        """The GA session shape, e.g. ``{"type": "audio/pcm", "rate": 24000}``."""
        if self.type == "audio/pcm":
            return {"type": self.type, "rate": self.rate}
        return {"type": self.type}

    def duration_ms(self, n_bytes: int) -> float:
        """Duration of ``n_bytes`` of raw audio in this format."""
        return 1000.0 * n_bytes / (self.bytes_per_sample * self.rate)

    @classmethod
    def from_session(cls, obj: Mapping[str, Any]) -> AudioFormat:
        """From the GA shape ``{"type": "audio/pcm", "rate": 24000}`` (``rate`` optional)."""
        if not isinstance(obj, Mapping):
            raise AudioFormatError(
                f"audio format must be an object like {{'type': 'audio/pcm'}}, got {obj!r}"
            )
        fmt_type = obj.get("type")
        if not isinstance(fmt_type, str):
            raise AudioFormatError(f"audio format needs a string 'type', got {fmt_type!r}")
        if fmt_type not in cls._GA_RATES:
            raise AudioFormatError(
                f"unsupported audio format type {fmt_type!r}; expected one of {sorted(cls._GA_RATES)}"
            )
        rate = obj.get("rate", cls._GA_RATES[fmt_type])
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != int(rate):
            raise AudioFormatError(f"audio format 'rate' must be an integer, got {rate!r}")
        return cls(fmt_type, int(rate))

    @classmethod
    def from_beta(cls, name: str) -> AudioFormat:
        """From a beta name: ``pcm16``, ``g711_ulaw`` or ``g711_alaw``."""
        ga = cls._BETA_TO_GA.get(name) if isinstance(name, str) else None
        if ga is None:
            raise AudioFormatError(
                f"unsupported audio format {name!r}; expected one of {sorted(cls._BETA_TO_GA)}"
            )
        return cls(ga, cls._GA_RATES[ga])

    @classmethod
    def parse(cls, obj: AudioFormat | Mapping[str, Any] | str) -> AudioFormat:
        """Accept any spelling a client may send: an AudioFormat, a GA object, a GA type or a beta name."""
        if isinstance(obj, AudioFormat):
            return obj
        if isinstance(obj, Mapping):
            return cls.from_session(obj)
        if isinstance(obj, str) and obj in cls._GA_RATES:
            return cls(obj, cls._GA_RATES[obj])
        return cls.from_beta(obj)


PCM16 = AudioFormat("audio/pcm", 24000)
PCMU = AudioFormat("audio/pcmu", 8000)
PCMA = AudioFormat("audio/pcma", 8000)


# --- G.711 tables --------------------------------------------------------------------------------------
# Built from the Sun g711.c reference algorithm, vectorised over every code (256) and every int16 (65536).

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # 14-bit magnitude clip, as in g711.c
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = ((u & 0x0F) << 3) + _ULAW_BIAS
    t = t << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


def _build_ulaw_encode() -> np.ndarray:
    """Table indexed by the int16 sample reinterpreted as uint16."""
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_SEG_UEND, mag, side="left")
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _build_alaw_encode() -> np.ndarray:
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_SEG_AEND, mag, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = (np.minimum(seg, 7) << 4) | ((mag >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


_ULAW_DECODE = _build_ulaw_decode()
_ALAW_DECODE = _build_alaw_decode()
_ULAW_ENCODE = _build_ulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()


def ulaw_decode(codes: bytes | np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes -> int16 samples."""
    return _ULAW_DECODE[np.frombuffer(codes, dtype=np.uint8)]


def alaw_decode(codes: bytes | np.ndarray) -> np.ndarray:
    """G.711 A-law bytes -> int16 samples."""
    return _ALAW_DECODE[np.frombuffer(codes, dtype=np.uint8)]


def ulaw_encode(pcm16: np.ndarray) -> np.ndarray:
    """int16 samples -> G.711 mu-law codes (uint8)."""
    return _ULAW_ENCODE[np.ascontiguousarray(pcm16, dtype=np.int16).view(np.uint16)]


def alaw_encode(pcm16: np.ndarray) -> np.ndarray:
    """int16 samples -> G.711 A-law codes (uint8)."""
    return _ALAW_ENCODE[np.ascontiguousarray(pcm16, dtype=np.int16).view(np.uint16)]


# --- wire encode / decode ------------------------------------------------------------------------------


def decode_audio_bytes(raw: bytes, fmt: AudioFormat | Mapping[str, Any] | str) -> np.ndarray:
    """Raw wire bytes in ``fmt`` -> int16 samples at ``fmt.sample_rate``."""
    fmt = AudioFormat.parse(fmt)
    if fmt.type == "audio/pcm":
        if len(raw) % 2:
            raise AudioDecodeError(
                f"PCM16 audio must have an even number of bytes, got {len(raw)}", "invalid_audio_length"
            )
        # '<i2' makes the little-endian wire order explicit; astype copies into a native, writable array.
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if fmt.type == "audio/pcmu":
        return ulaw_decode(raw)
    return alaw_decode(raw)


def decode_audio(b64: str | bytes, fmt: AudioFormat | Mapping[str, Any] | str) -> np.ndarray:
    """Base64 text from an ``input_audio_buffer.append`` event -> int16 samples at ``fmt.sample_rate``."""
    if not isinstance(b64, str | bytes):
        raise AudioDecodeError(
            f"audio must be a base64 string, got {type(b64).__name__}", "invalid_audio_type"
        )
    try:
        # validate=True rejects stray characters instead of silently skipping them (which would
        # desynchronise PCM16 sample boundaries and turn speech into noise).
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AudioDecodeError(f"audio is not valid base64: {exc}", "invalid_audio_base64") from exc
    return decode_audio_bytes(raw, fmt)


def as_int16_mono(samples: np.ndarray) -> np.ndarray:
    """Mono samples as int16: int16 passes through, float in [-1, 1] is converted with clipping."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {samples.shape}")
    if samples.dtype.kind == "f":
        return float_to_int16(samples)
    if samples.dtype != np.int16:
        raise ValueError(f"expected int16 or float samples, got dtype {samples.dtype}")
    return samples


def encode_audio(pcm16: np.ndarray, fmt: AudioFormat | Mapping[str, Any] | str) -> bytes:
    """int16 samples (already at ``fmt.sample_rate``) -> raw wire bytes in ``fmt``.

    Float input in [-1, 1] is accepted too and converted with clipping, so TTS output can be passed as is.
    """
    fmt = AudioFormat.parse(fmt)
    samples = as_int16_mono(pcm16)
    if fmt.type == "audio/pcm":
        return samples.astype("<i2", copy=False).tobytes()
    if fmt.type == "audio/pcmu":
        return ulaw_encode(samples).tobytes()
    return alaw_encode(samples).tobytes()


def b64encode(raw: bytes) -> str:
    """Raw bytes -> base64 text for a JSON event."""
    return base64.b64encode(raw).decode("ascii")


def float_to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> int16 with clipping (values outside the range saturate, never wrap)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
