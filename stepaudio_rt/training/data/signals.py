"""Generated test signals: tones, beep trains, two-tone pairs, noises, level and SNR control.

Everything is float32 mono at 16 kHz (the model's input rate). Tones get short raised-cosine ramps so
their onsets are clicks-free: a click would add broadband energy that the beep counter and the pitch
estimator would have to ignore.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
_EPS = 1e-12


def _check_positive(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def tone(
    freq_hz: float, dur_s: float, amp: float = 0.5, ramp_s: float = 0.01, sr: int = SAMPLE_RATE
) -> np.ndarray:
    """A sine tone of ``dur_s`` seconds with raised-cosine on/off ramps of ``ramp_s``."""
    _check_positive("freq_hz", freq_hz)
    _check_positive("dur_s", dur_s)
    if freq_hz >= sr / 2:
        raise ValueError(f"freq_hz {freq_hz} is at or above the Nyquist frequency {sr / 2}")
    if not 0 < amp <= 1:
        raise ValueError(f"amp must be in (0, 1], got {amp}")
    n = int(round(dur_s * sr))
    t = np.arange(n, dtype=np.float64) / sr
    x = amp * np.sin(2 * np.pi * freq_hz * t)
    n_ramp = min(int(ramp_s * sr), n // 2)
    if n_ramp > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_ramp) / n_ramp)
        x[:n_ramp] *= ramp
        x[n - n_ramp :] *= ramp[::-1]
    return x.astype(np.float32)


def silence(dur_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    if dur_s < 0:
        raise ValueError(f"dur_s must be >= 0, got {dur_s}")
    return np.zeros(int(round(dur_s * sr)), dtype=np.float32)


def beep_train(
    count: int,
    freq_hz: float,
    beep_s: float = 0.12,
    gap_s: float = 0.25,
    lead_s: float = 0.2,
    tail_s: float = 0.2,
    amp: float = 0.4,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """``count`` identical beeps separated by ``gap_s`` of silence, with silent lead-in and tail."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    parts = [silence(lead_s, sr)]
    for i in range(count):
        if i:
            parts.append(silence(gap_s, sr))
        parts.append(tone(freq_hz, beep_s, amp=amp, sr=sr))
    parts.append(silence(tail_s, sr))
    return np.concatenate(parts)


def two_tones(
    first_hz: float,
    second_hz: float,
    tone_s: float = 0.5,
    gap_s: float = 0.3,
    lead_s: float = 0.2,
    tail_s: float = 0.2,
    amp: float = 0.4,
    sr: int = SAMPLE_RATE,
) -> np.ndarray:
    """Two tones one after the other (for "which tone is higher")."""
    return np.concatenate(
        [
            silence(lead_s, sr),
            tone(first_hz, tone_s, amp=amp, sr=sr),
            silence(gap_s, sr),
            tone(second_hz, tone_s, amp=amp, sr=sr),
            silence(tail_s, sr),
        ]
    )


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS Gaussian white noise."""
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise, shaped in the frequency domain."""
    if n <= 1:
        return np.zeros(n, dtype=np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x**2)) + _EPS)).astype(np.float32)


def active_power(x: np.ndarray, rel_db: float = -35.0, frame: int = 400) -> float:
    """Mean power over frames within ``rel_db`` of the loudest frame (the "signal" part of a clip).

    Speech clips carry silent padding; averaging power over the whole clip would make the level and the
    SNR depend on the padding length rather than on how loud the speech is.
    """
    n = len(x) // frame
    if n == 0:
        return float(np.mean(np.square(x, dtype=np.float64))) if len(x) else 0.0
    p = np.mean(np.square(x[: n * frame].astype(np.float64)).reshape(n, frame), axis=1)
    keep = p >= p.max() * 10 ** (rel_db / 10)
    return float(p[keep].mean())


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """Add white or pink noise so that active-signal power / noise power equals ``snr_db``."""
    if color not in ("white", "pink"):
        raise ValueError(f"color must be 'white' or 'pink', got {color!r}")
    noise = white_noise(len(x), rng) if color == "white" else pink_noise(len(x), rng)
    p_sig = active_power(x)
    if p_sig <= 0:
        raise ValueError("cannot set an SNR on a silent signal")
    noise *= np.float32(np.sqrt(p_sig / 10 ** (snr_db / 10)))
    return (x + noise).astype(np.float32)


def set_level(x: np.ndarray, dbfs: float, peak_limit: float = 0.99) -> np.ndarray:
    """Scale so the active RMS is ``dbfs`` dB re full scale; never exceed ``peak_limit`` (no clipping).

    If the requested level would clip, the gain is reduced instead: callers that need a level class
    (loud/quiet) re-measure the result rather than trusting the request.
    """
    p = active_power(x)
    if p <= 0:
        raise ValueError("cannot set the level of a silent signal")
    gain = 10 ** (dbfs / 20) / np.sqrt(p)
    peak = float(np.max(np.abs(x))) * gain
    if peak > peak_limit:
        gain *= peak_limit / peak
    return (x * gain).astype(np.float32)


def pad(x: np.ndarray, lead_s: float, tail_s: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    return np.concatenate([silence(lead_s, sr), x.astype(np.float32), silence(tail_s, sr)])
