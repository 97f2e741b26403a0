"""A session's input audio: wire decode -> 16 kHz -> buffer + VAD, processed in 20 ms steps.

Stepping through 20 ms slices (one VAD frame) keeps buffer positions and VAD events exact even when a
client appends seconds of audio in one event, so a speech start and stop inside one append still cut the
right samples. The per-slice cost is what ``bench_frame_cost`` measures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stepaudio_rt.streaming.codecs import AudioFormat, decode_audio
from stepaudio_rt.streaming.resample import StreamResampler
from stepaudio_rt.streaming.vad import TurnDetector, VadConfig, VadEvent

SAMPLE_RATE = 16000
SLICE = 320  # 20 ms at 16 kHz


class InputBufferFull(ValueError):
    """Appending would exceed the session's maximum uncommitted audio."""


@dataclass
class Step:
    """One processed slice: its 16 kHz samples and the VAD events it completed."""

    samples: np.ndarray
    events: list[VadEvent]


class InputAudio:
    """Uncommitted input audio at 16 kHz, with optional server VAD.

    ``origin`` is the absolute sample index (since the last reset) of ``buffer[0]``; VAD milliseconds map to
    absolute samples as ``ms * 16``.
    """

    def __init__(self, fmt: AudioFormat, vad: VadConfig | None, max_seconds: float) -> None:
        self.fmt = fmt
        self._resampler = StreamResampler(fmt.sample_rate, SAMPLE_RATE)
        self.vad = TurnDetector(vad) if vad is not None else None
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self._chunks: list[np.ndarray] = []
        self._len = 0
        self.origin = 0
        self._carry = np.zeros(0, np.float32)  # resampled samples waiting to fill a 20 ms slice

    # ----- configuration -----
    def set_format(self, fmt: AudioFormat) -> None:
        if fmt != self.fmt:
            self.fmt = fmt
            self._resampler = StreamResampler(fmt.sample_rate, SAMPLE_RATE)

    def set_vad(self, vad: VadConfig | None) -> None:
        if vad is None:
            self.vad = None
        elif self.vad is None or self.vad.config != vad:
            self.vad = TurnDetector(vad)
            self.clear()

    # ----- buffer -----
    @property
    def num_samples(self) -> int:
        return self._len

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self._len / SAMPLE_RATE

    @property
    def end(self) -> int:
        """Absolute sample index just past the buffer."""
        return self.origin + self._len

    def samples(self, start: int | None = None, end: int | None = None) -> np.ndarray:
        """Buffered audio between absolute sample indices (clamped to the buffer)."""
        if not self._chunks:
            return np.zeros(0, np.float32)
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        buf = self._chunks[0]
        lo = 0 if start is None else min(max(start - self.origin, 0), self._len)
        hi = self._len if end is None else min(max(end - self.origin, lo), self._len)
        return buf[lo:hi]

    def drop_before(self, absolute: int) -> None:
        """Forget audio before an absolute index (committed, or silence older than the prefix padding)."""
        cut = min(max(absolute - self.origin, 0), self._len)
        if cut == 0:
            return
        rest = self.samples()[cut:]
        self._chunks = [rest] if rest.size else []
        self._len = len(rest)
        self.origin += cut

    def clear(self) -> None:
        """Empty the buffer and restart the VAD clock."""
        self._chunks, self._len, self.origin = [], 0, 0
        self._carry = np.zeros(0, np.float32)
        self._resampler.reset()
        if self.vad is not None:
            self.vad.reset()

    # ----- input -----
    def decode(self, audio_b64: object) -> np.ndarray:
        """Wire base64 -> int16 at the wire rate (raises AudioDecodeError)."""
        return decode_audio(audio_b64, self.fmt)  # type: ignore[arg-type]

    def push(self, pcm16: np.ndarray) -> Iterator[Step]:
        """Resample wire samples to 16 kHz and process them 20 ms at a time.

        The caller consumes each step (appending happens before the step is yielded) and may react to the
        VAD events before the next slice is processed.
        """
        incoming = self._resampler.process(pcm16)
        if self._len + len(incoming) + len(self._carry) > self.max_samples and (
            self.vad is None or self.vad.in_speech
        ):
            raise InputBufferFull(
                f"input audio buffer would exceed {self.max_samples / SAMPLE_RATE:.0f} s; commit or clear it"
            )
        data = np.concatenate((self._carry, incoming)) if self._carry.size else incoming
        n = len(data) // SLICE * SLICE
        self._carry = data[n:].copy()
        for start in range(0, n, SLICE):
            piece = data[start : start + SLICE]
            self._chunks.append(piece)
            self._len += SLICE
            events = self.vad.feed(piece) if self.vad is not None else []
            yield Step(piece, events)
