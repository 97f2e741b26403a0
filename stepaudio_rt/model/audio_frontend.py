"""The Step-Audio audio front end: 16 kHz mono waveform -> log-mel features, chunking and token counts.

The mel recipe must match the official Step-Audio-R1 / Step-Audio 2 ``utils.py`` bit for bit, because the
checkpoint's encoder was trained on exactly these features (see
``reference/step-audio-r1-checkpoint.md`` section 6). It is Whisper's log-mel with one twist: the waveform
is right-padded with 479 zeros before the STFT, which adds two frames and changes the frame count to
``(n_samples + 479) // 160``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch

__all__ = [
    "HARD_MAX_CHUNK_SECONDS",
    "HOP_LENGTH",
    "MAX_CHUNK_SECONDS",
    "N_FFT",
    "RIGHT_PADDING",
    "SAMPLE_RATE",
    "audio_token_count",
    "audio_token_count_for_samples",
    "load_audio",
    "log_mel_spectrogram",
    "mel_filters",
    "mel_frame_count",
    "listen_cut",
    "resample",
    "split_audio",
    "split_at_pauses",
    "take_listen_chunks",
]

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
# Official Step-Audio padding; with center=True STFT and the dropped last frame it yields 100*T + 2 frames.
RIGHT_PADDING = 479
# Long audio is cut into 25 s chunks, no overlap (``max_duration=25.0`` in the official vLLM example).
MAX_CHUNK_SECONDS = 25.0
# The encoder position table has 1500 entries (30 s at 50 Hz); vLLM rejects chunks above 29.98 s.
HARD_MAX_CHUNK_SECONDS = 29.98
# Listen chunks end on this grid (20 ms = two mel frames), in the quietest step of the chunk's last
# 1 - LISTEN_CUT_MIN_FRACTION (see listen_cut)
LISTEN_CUT_STEP = 320
LISTEN_CUT_MIN_FRACTION = 0.6


def _as_float32(wav: np.ndarray) -> np.ndarray:
    """Return ``wav`` as float32, scaling integer PCM to [-1, 1] so callers may pass raw int16 samples."""
    wav = np.asarray(wav)
    if wav.dtype == np.int16:
        return wav.astype(np.float32) / 32768.0
    if wav.dtype == np.int32:
        return (wav.astype(np.float64) / 2147483648.0).astype(np.float32)
    if wav.dtype == np.uint8:  # 8-bit WAV is unsigned with a 128 offset
        return (wav.astype(np.float32) - 128.0) / 128.0
    if not np.issubdtype(wav.dtype, np.floating):
        raise TypeError(f"audio must be float or int16/int32/uint8 PCM, got dtype {wav.dtype}")
    return wav.astype(np.float32, copy=False)


def _check_mono(wav: np.ndarray, what: str) -> None:
    if wav.ndim != 1:
        raise ValueError(f"{what} expects mono 1-D audio, got shape {tuple(wav.shape)}")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono audio with soxr (high quality); returns float32. int16 input is scaled to [-1, 1]."""
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sr={orig_sr}, target_sr={target_sr}")
    wav = _as_float32(wav)
    _check_mono(wav, "resample")
    if orig_sr == target_sr or wav.size == 0:
        return np.array(wav, dtype=np.float32, copy=True)
    return np.asarray(soxr.resample(wav, orig_sr, target_sr), dtype=np.float32)


def load_audio(path: str | Path, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file with soundfile, keep the first channel (as the official loader does), resample."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return resample(data[:, 0], int(sr), target_sr)


@functools.lru_cache(maxsize=4)
def _mel_filters_cached(n_mels: int) -> torch.Tensor:
    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels))


def mel_filters(n_mels: int) -> torch.Tensor:
    """Slaney mel filter bank ``[n_mels, n_fft//2 + 1]`` (librosa defaults, float32), cached per ``n_mels``."""
    if n_mels <= 0:
        raise ValueError(f"n_mels must be positive, got {n_mels}")
    return _mel_filters_cached(int(n_mels))


def log_mel_spectrogram(wav: np.ndarray | torch.Tensor, n_mels: int = 128) -> torch.Tensor:
    """Step-Audio log-mel features ``[n_mels, (n_samples + 479) // 160]`` (float32) of 16 kHz mono audio.

    128 mels for the real Step-Audio-R1 encoder; 80 for the Whisper tiny.en demo encoder.
    """
    if isinstance(wav, torch.Tensor):
        audio = wav.detach().to(device="cpu")
        if not torch.is_floating_point(audio):
            audio = torch.from_numpy(_as_float32(audio.numpy()))
        audio = audio.to(torch.float32)
    else:
        audio = torch.from_numpy(np.ascontiguousarray(_as_float32(wav)))
    if audio.ndim != 1:
        raise ValueError(f"log_mel_spectrogram expects mono 1-D audio, got shape {tuple(audio.shape)}")
    if audio.numel() == 0:
        raise ValueError("log_mel_spectrogram got empty audio (0 samples)")
    if not bool(torch.isfinite(audio).all()):
        raise ValueError("log_mel_spectrogram got non-finite samples (NaN or inf)")
    filters = mel_filters(n_mels)

    audio = torch.nn.functional.pad(audio, (0, RIGHT_PADDING))
    window = torch.hann_window(N_FFT)
    stft = torch.stft(
        audio, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    magnitudes = stft[..., :-1].abs() ** 2  # drop the last frame, as the official recipe does
    mel_spec = filters @ magnitudes

    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)  # 80 dB dynamic range per clip
    return (log_spec + 4.0) / 4.0


def mel_frame_count(n_samples: int) -> int:
    """Mel frames that :func:`log_mel_spectrogram` returns for ``n_samples`` samples at 16 kHz."""
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return (n_samples + RIGHT_PADDING) // HOP_LENGTH


def audio_token_count(mel_len: int) -> int:
    """Audio placeholder tokens for a chunk of ``mel_len`` frames (vLLM ``get_num_audio_tokens`` convention).

    Encoder conv2 (stride 2) and the average pooler (stride 2) take 100 Hz to 25 Hz; the adaptor conv
    (stride 2, padding 1) takes 25 Hz to 12.5 Hz. The same number must be used for the encoder mask length.
    """
    if mel_len <= 0:
        raise ValueError(f"mel_len must be positive, got {mel_len}")
    encoder_len = (mel_len + 1) // 2 // 2
    return (encoder_len - 1) // 2 + 1


def audio_token_count_for_samples(n_samples: int) -> int:
    """Audio placeholder tokens for ``n_samples`` samples of 16 kHz audio (one chunk)."""
    return audio_token_count(mel_frame_count(n_samples))


def _chunk_samples(max_seconds: float) -> int:
    if not math.isfinite(max_seconds) or max_seconds <= 0:
        raise ValueError(f"max_seconds must be a positive number, got {max_seconds}")
    if max_seconds > HARD_MAX_CHUNK_SECONDS:
        raise ValueError(
            f"max_seconds={max_seconds} exceeds {HARD_MAX_CHUNK_SECONDS} s, the longest chunk the encoder's "
            "1500-entry position table (and vLLM) accepts"
        )
    return max(1, round(max_seconds * SAMPLE_RATE))


def split_audio(wav: np.ndarray, max_seconds: float = MAX_CHUNK_SECONDS) -> list[np.ndarray]:
    """Cut 16 kHz audio into consecutive chunks of at most ``max_seconds``, no overlap (official recipe).

    Each chunk becomes its own mel and its own ``<audio_start>...<audio_end>`` block in the prompt.
    """
    chunk = _chunk_samples(max_seconds)
    wav = np.asarray(wav)
    _check_mono(wav, "split_audio")
    return [wav[start : start + chunk] for start in range(0, wav.shape[0], chunk)]


def listen_cut(wav: np.ndarray, max_samples: int) -> int:
    """Length of the next listen chunk of ``wav`` when more than ``max_samples`` samples are left: the end
    of the quietest 20 ms step in the last 40% of the allowed span, on a 20 ms grid (the latest of equally
    quiet steps, so digital silence cuts at the full length).

    Why: each listen chunk is encoded alone, so a fixed cut that falls inside a word leaves half a word at
    each side, which neither chunk's encoding can recognise. Measured on the first demo checkpoint (fixed
    2 s cuts): the first operand of a spoken sum was heard right 98.5% of the time and the second, which
    straddles the cut in most questions, 89.5% ("thirteen" heard as 3, "fifty seven" as 5). The decision
    uses only the first ``max_samples`` samples, so a stream can cut as soon as it has more than that.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    step = LISTEN_CUT_STEP
    hi = max_samples // step
    lo = max(1, math.ceil(LISTEN_CUT_MIN_FRACTION * max_samples / step))
    if hi < lo or len(wav) < hi * step:
        return min(max_samples, len(wav))
    frames = np.asarray(wav[: hi * step], dtype=np.float64).reshape(hi, step)
    energy = np.square(frames).sum(axis=1)[lo - 1 : hi]  # energy of the step that ends at each cut
    latest_quietest = len(energy) - 1 - int(np.argmin(energy[::-1]))
    return (lo + latest_quietest) * step


def split_at_pauses(wav: np.ndarray, max_seconds: float) -> list[np.ndarray]:
    """Cut audio into listen chunks of at most ``max_seconds``, each ending where :func:`listen_cut` puts
    it; audio no longer than ``max_seconds`` is one chunk. What the realtime server's listen-while-thinking
    path feeds the engine (``streaming.turn.ListeningTurn`` cuts a live stream the same way), and so what
    the demo checkpoint is trained and evaluated on."""
    max_samples = _chunk_samples(max_seconds)
    wav = np.asarray(wav)
    _check_mono(wav, "split_at_pauses")
    chunks, rest = take_listen_chunks(wav, max_samples)
    return [*chunks, rest] if rest.size else chunks


def take_listen_chunks(wav: np.ndarray, max_samples: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(the listen chunks of ``wav`` that are already final, the rest): chunks are cut with
    :func:`listen_cut` while more than ``max_samples`` samples are left, so more audio appended to the
    rest never changes them. The one loop behind both the offline and the live cut."""
    chunks: list[np.ndarray] = []
    start = 0
    while wav.shape[0] - start > max_samples:
        cut = listen_cut(wav[start:], max_samples)
        chunks.append(wav[start : start + cut])
        start += cut
    return chunks, wav[start:]
