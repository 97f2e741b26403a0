"""Held-out questions with a silent hesitation inside the sentence, in several voices (turn-taking bench).

``bench turns`` tunes nothing on these: the semantic_vad thresholds were chosen on the arithmetic
questions (``bench_turns.paused_questions``) and the bench's complete questions. These are other
sentences, with the pause where people hesitate (after a function word or before the word they are
looking for, "What is the capital of ... Australia?"), and some where the words before the pause are a
finished question on their own ("Who wrote the novel ... Pride and Prejudice?"), which no end-of-turn
model can tell from a finished turn by the words alone.

Voices: Piper's joe (the sentence synthesised once, silence inserted at the word boundary from Piper's
phoneme alignments: ``piper_speech.PausedQuestion``) and two espeak-ng voices held out of the rest of the
bench (the sentence spoken once with an SSML ``<break>`` at the word boundary, so espeak-ng keeps the
sentence's intonation across it). Voices rotate question by question.
"""

from __future__ import annotations

import functools
import io
import random
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from stepaudio_rt.clients.piper_speech import PausedQuestion
from stepaudio_rt.clients.wav_stream import AudioInputError, to_pcm16

__all__ = ["HELD_OUT_HESITATIONS", "HELD_OUT_VOICES", "Hesitation", "held_out_questions"]

_SILENCE = 10 ** (-45 / 20)


@dataclass(frozen=True)
class Hesitation:
    text: str
    after_word: int  # the pause comes after this many words
    prefix_is_complete: bool  # the words before the pause are a finished sentence by themselves


HELD_OUT_HESITATIONS: tuple[Hesitation, ...] = (
    Hesitation("Can you tell me how far it is to the nearest train station?", 4, False),
    Hesitation("I would like to order a large pizza with mushrooms.", 5, False),
    Hesitation("What time does the museum open on Sundays?", 4, False),
    Hesitation("How do I convert fifty miles into kilometers?", 4, False),
    Hesitation("Could you remind me to call my sister tomorrow morning?", 5, False),
    Hesitation("What is the capital of Australia?", 5, False),
    Hesitation("Please set an alarm for seven thirty tomorrow.", 5, False),
    Hesitation("Tell me a short story about a dragon and a knight.", 6, False),
    Hesitation("Which planet is the largest in our solar system?", 4, False),
    Hesitation("What is the difference between a crocodile and an alligator?", 5, False),
    Hesitation("I am looking for a recipe that uses chicken and rice.", 8, False),
    Hesitation("What should I pack for a week in Iceland?", 5, False),
    Hesitation("How many minutes are in three and a half hours?", 4, False),
    Hesitation("When did the first person walk on the moon?", 5, False),
    Hesitation("What is the best way to learn a new language?", 6, False),
    Hesitation("How long should I boil an egg for a soft yolk?", 6, False),
    Hesitation("How many days are there in a leap year?", 5, True),
    Hesitation("Who wrote the novel Pride and Prejudice?", 4, True),
    Hesitation("Is it going to rain tomorrow afternoon?", 5, True),
    Hesitation("Can you recommend a good book for a long flight?", 6, True),
    Hesitation("Why is the sky blue during the day?", 4, True),
    Hesitation("Could you play some relaxing music for me?", 6, True),
    Hesitation("How far is the moon from the earth?", 5, True),
    Hesitation("Where can I find a good coffee shop nearby?", 8, True),
)
HELD_OUT_VOICES = ("piper", "en-us", "en-gb-x-rp")  # espeak-ng voices by name


class EspeakPausedQuestion:
    """``text`` spoken once by espeak-ng ``voice`` with ``pause_s`` of silence after word ``after_word``."""

    def __init__(self, text: str, after_word: int, pause_s: float, voice: str) -> None:
        words = text.split()
        if not 1 <= after_word < len(words):
            raise ValueError(f"{text!r} has no word boundary after word {after_word}")
        self.text, self.after_word, self.pause_s, self.voice = text, after_word, pause_s, voice
        self.pcm = _espeak_ssml(" ".join(words[:after_word]), " ".join(words[after_word:]), int(pause_s * 1000), voice)

    @property
    def label(self) -> str:
        words = self.text.split()
        return f"{' '.join(words[: self.after_word])} ... {' '.join(words[self.after_word :])}"


@functools.lru_cache(maxsize=256)
def _espeak_ssml(head: str, tail: str, pause_ms: int, voice: str) -> bytes:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioInputError("espeak-ng is not installed (apt-get install espeak-ng)")
    ssml = f'<speak>{head} <break time="{pause_ms}ms"/> {tail}</speak>'
    wav = subprocess.run([exe, "-m", "-v", voice, "--stdout", ssml], check=True, capture_output=True, timeout=60)
    audio, sr = sf.read(io.BytesIO(wav.stdout), dtype="float32")
    loud = np.flatnonzero(np.abs(audio) >= _SILENCE)
    if loud.size == 0:
        raise AudioInputError(f"espeak-ng produced silence for {head} ... {tail}")
    return to_pcm16(audio[loud[0] : loud[-1] + 1], int(sr))


def held_out_questions(
    n: int, pause_min_s: float, pause_max_s: float, seed: int = 0
) -> list[tuple[str, PausedQuestion | EspeakPausedQuestion]]:
    """``n`` (voice, question) pairs: the held-out sentences in order (cycled), voices rotating, pause
    lengths uniform in [pause_min_s, pause_max_s] from ``seed``."""
    rng = random.Random(seed)
    out: list[tuple[str, PausedQuestion | EspeakPausedQuestion]] = []
    for i in range(n):
        h = HELD_OUT_HESITATIONS[i % len(HELD_OUT_HESITATIONS)]
        voice = HELD_OUT_VOICES[i % len(HELD_OUT_VOICES)]
        pause = round(rng.uniform(pause_min_s, pause_max_s), 3)
        if voice == "piper":
            out.append((voice, PausedQuestion(h.text, h.after_word, pause)))
        else:
            out.append((voice, EspeakPausedQuestion(h.text, h.after_word, pause, voice)))
    return out
