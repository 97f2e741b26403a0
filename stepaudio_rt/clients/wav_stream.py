"""Audio in and out of the wire format: 24 kHz mono PCM16, the GA Realtime ``audio/pcm`` format.

Clients read any WAV/FLAC/OGG that libsndfile understands, downmix, resample with soxr and convert to
PCM16 bytes; replies are written back as 24 kHz PCM16 WAV. ``paced_chunks`` yields chunks on a
real-time schedule computed from the start time (not by sleeping a fixed amount per chunk), so the
pacing does not drift when a send or the event loop is slow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 24_000
BYTES_PER_SAMPLE = 2
MIN_CHUNK_MS = 10
MAX_CHUNK_MS = 1000


class AudioInputError(ValueError):
    """An input audio file that cannot be used (unreadable, empty, wrong shape)."""


def to_pcm16(audio: np.ndarray, sample_rate: int) -> bytes:
    """Float audio in [-1, 1] (mono, or frames x channels) at any rate -> 24 kHz mono PCM16 LE bytes."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1:
        raise AudioInputError(f"expected mono or frames x channels audio, got shape {audio.shape}")
    if sample_rate <= 0:
        raise AudioInputError(f"sample rate must be positive, got {sample_rate}")
    if sample_rate != SAMPLE_RATE:
        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def read_audio(path: str | Path) -> bytes:
    """Read an audio file as 24 kHz mono PCM16 bytes, with a clear error for anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(f"audio file not found: {path}")
    try:
        audio, sr = sf.read(path, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioInputError(f"cannot read {path} as audio: {exc}") from None
    if len(audio) == 0:
        raise AudioInputError(f"{path} contains no audio samples")
    return to_pcm16(audio, int(sr))


def write_wav(path: str | Path, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write PCM16 LE mono bytes as a WAV file (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    sf.write(path, samples, sample_rate, subtype="PCM_16")
    return path


def silence(seconds: float) -> bytes:
    """Digital silence as PCM16 bytes."""
    return bytes(round(seconds * SAMPLE_RATE) * BYTES_PER_SAMPLE)


def duration_s(pcm: bytes) -> float:
    return len(pcm) / (SAMPLE_RATE * BYTES_PER_SAMPLE)


def chunks(pcm: bytes, chunk_ms: int) -> Iterator[bytes]:
    """Split PCM16 bytes into ``chunk_ms`` pieces (the last may be shorter). Sample-aligned."""
    if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS:
        raise ValueError(f"chunk_ms must be in [{MIN_CHUNK_MS}, {MAX_CHUNK_MS}], got {chunk_ms}")
    step = SAMPLE_RATE * BYTES_PER_SAMPLE * chunk_ms // 1000
    for i in range(0, len(pcm), step):
        yield pcm[i : i + step]


async def paced_chunks(pcm: bytes, chunk_ms: int, speed: float = 1.0) -> AsyncIterator[bytes]:
    """Yield chunks no earlier than their real-time position (``speed`` > 1: faster; ``inf``: no pacing).

    Chunk *k* is released at ``start + k * chunk_ms / speed``: the schedule is absolute, so a late chunk
    is sent at once and the stream catches up instead of drifting later and later.
    """
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    start = time.perf_counter()
    sent_s = 0.0
    for chunk in chunks(pcm, chunk_ms):
        delay = start + sent_s / speed - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield chunk
        sent_s += duration_s(chunk)


async def paced_silence(chunk_ms: int, speed: float = 1.0) -> AsyncIterator[bytes]:
    """Endless silence chunks at ``speed`` x real time: a quiet open microphone. Stop by breaking out."""
    if not 0 < speed < float("inf"):
        raise ValueError(f"an endless stream needs a finite positive speed, got {speed}")
    gap = silence(chunk_ms / 1000)
    start, k = time.perf_counter(), 0
    while True:
        delay = start + k * chunk_ms / 1000 / speed - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield gap
        k += 1
