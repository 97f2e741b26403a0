"""Streaming sample-rate conversion (24 kHz wire audio -> 16 kHz model/VAD audio, TTS rate -> wire rate).

Built on ``soxr.ResampleStream`` so that chunk boundaries leave no clicks: the filter state is carried
from one chunk to the next, which a per-chunk ``soxr.resample`` call would lose.
"""

from __future__ import annotations

import numpy as np
import soxr

__all__ = ["StreamResampler", "to_float32"]


def to_float32(chunk: np.ndarray) -> np.ndarray:
    """int16 or float samples -> contiguous float32 in [-1, 1] (int16 is scaled by 1/32768)."""
    samples = np.asarray(chunk)
    if samples.ndim != 1:
        raise ValueError(f"expected mono 1-D samples, got shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples.astype(np.float32) * np.float32(1.0 / 32768.0)
    if samples.dtype.kind == "f":
        return np.ascontiguousarray(samples, dtype=np.float32)
    raise ValueError(f"expected int16 or float samples, got dtype {samples.dtype}")


class StreamResampler:
    """Resample a mono stream chunk by chunk.

    ``process`` accepts int16 or float32 chunks of any length and returns float32 in [-1, 1]; ``flush``
    drains the filter tail at end of stream. When the rates match nothing is buffered (identity fast path).
    Quality "HQ" is soxr's default. It holds back up to ~20 ms of audio at 24k -> 16k (output comes in
    ~490-sample bursts); sample positions stay aligned with the input timeline, so VAD timestamps computed
    from the output sample count are exact, only delivered up to one frame later.
    """

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.quality = quality
        self._stream: soxr.ResampleStream | None = None
        if self.in_rate != self.out_rate:
            self._stream = soxr.ResampleStream(
                self.in_rate, self.out_rate, 1, dtype="float32", quality=quality
            )

    @property
    def is_identity(self) -> bool:
        return self._stream is None

    def process(self, chunk: np.ndarray) -> np.ndarray:
        samples = to_float32(chunk)
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=False)

    def flush(self) -> np.ndarray:
        """Return the remaining tail and reset, so the resampler can be reused for a new stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return tail

    def reset(self) -> None:
        """Drop buffered state (e.g. on ``input_audio_buffer.clear``)."""
        if self._stream is not None:
            self._stream.clear()
