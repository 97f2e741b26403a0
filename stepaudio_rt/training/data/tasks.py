"""Task generators: one function per task, each returning a `Sample` with a verifiable label.

Every audio perception label is checked against a measurement on the generated waveform before the
sample is kept (rejection sampling with a margin around the decision threshold), so the label, the
audio and the chain-of-thought numbers always agree. The thresholds in `DECISION` are shared with the
data self-check (`selfcheck.py`).

Held-out evaluation material: voices (`synth.EVAL_VOICES`), arithmetic operand pairs (a stable-hash 15%
split, `is_eval_operands`) and transcription sentences (same hash split). Train samples never use any
of them; eval samples use only them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from stepaudio_rt.training.data import acoustics as ac
from stepaudio_rt.training.data import signals as sg
from stepaudio_rt.training.data import synth
from stepaudio_rt.training.data import text_pools as tp

Split = Literal["train", "eval"]
SPLITS: tuple[Split, ...] = ("train", "eval")
EMPTY_THINK = "<think>\n\n</think>\n"
EVAL_PERCENT = 15
MAX_ATTEMPTS = 12
PIPER_SHARE = 0.08  # share of training utterances spoken by Piper (slower to synthesize than espeak)

# Decision thresholds on measured values, and the margins a generated sample must clear.
DECISION: dict[str, float] = {
    "pitch_hz": 165.0,  # median F0 above -> high
    "pitch_high_min": 185.0,
    "pitch_low_max": 145.0,
    "rate_sps": 5.0,  # syllables per second above -> fast
    "rate_fast_min": 6.0,
    "rate_slow_max": 4.2,
    "loud_dbfs": -29.0,  # active RMS above -> loud
    "loud_min": -24.0,
    "quiet_max": -34.0,
    "snr_db": 20.0,  # estimated SNR below -> noisy
    "noisy_max": 15.0,
    "clean_min": 30.0,
}


@dataclass
class Sample:
    """One training/eval example. ``think`` empty means the empty think block (no reasoning)."""

    task: str
    audio: np.ndarray | None
    user_text: str
    think: str
    answer: str
    label: str
    meta: dict[str, Any] = field(default_factory=dict)


def format_target(sample: Sample) -> str:
    """The assistant text the model is trained to produce (think block, then the reply)."""
    if not sample.think:
        return EMPTY_THINK + sample.answer
    return f"<think>\n{sample.think}\n</think>\n{sample.answer}"


# ---------------------------------------------------------------------------------------------- splits


def _stable_bucket(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % 100


def is_eval_operands(a: int, b: int) -> bool:
    """True when the ordered operand pair (a, b) is reserved for evaluation (about 15% of pairs)."""
    return _stable_bucket(f"ops:{a},{b}") < EVAL_PERCENT


def is_eval_sentence(text: str) -> bool:
    return _stable_bucket(f"sent:{text}") < EVAL_PERCENT


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# ------------------------------------------------------------------------------------------- helpers


def _choice(rng: np.random.Generator, seq: tuple[Any, ...] | list[Any]) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _sentence(rng: np.random.Generator, short: bool = False) -> str:
    if short or rng.random() < 0.5:
        return f"{_choice(rng, tp.NAMES)} {_choice(rng, tp.LIKES)} {_choice(rng, tp.FOODS)}"
    return (
        f"the {_choice(rng, tp.ADJECTIVES)} {_choice(rng, tp.NOUNS)} {_choice(rng, tp.VERBS)} "
        f"{_choice(rng, tp.PLACES)}"
    )


def _split_sentence(rng: np.random.Generator, split: Split, short: bool = False) -> str:
    while True:
        s = _sentence(rng, short)
        if is_eval_sentence(s) == (split == "eval"):
            return s


def _pick_voice(
    rng: np.random.Generator,
    split: Split,
    pool: Callable[[synth.Voice], bool] | None = None,
    piper: bool = True,
) -> synth.Voice:
    piper_voice = synth.Voice("piper", synth.PIPER_VOICE_NAME)
    # Without the optional Piper extra every utterance is espeak-ng (the data then differs from a build
    # with Piper, but stays deterministic for that environment).
    piper_ok = split == "train" and piper and synth.piper_available() and (pool is None or pool(piper_voice))
    if piper_ok and rng.random() < PIPER_SHARE:
        return piper_voice
    voices = synth.EVAL_VOICES if split == "eval" else synth.TRAIN_VOICES
    cands = [v for v in voices if v.engine == "espeak" and (pool is None or pool(v))]
    if not cands:
        raise RuntimeError("no voice matches the requested pool")
    return _choice(rng, cands)


def _speak(
    rng: np.random.Generator,
    text: str,
    voice: synth.Voice,
    rate: tuple[int, int] = (140, 220),
    pitch: tuple[int, int] = (20, 80),
    length_scale: tuple[float, float] = (0.85, 1.2),
) -> tuple[np.ndarray, dict[str, Any]]:
    """Speak ``text`` with random prosody in the given ranges, pad with silence; returns audio and params."""
    params = synth.SpeechParams(
        voice=voice.name,
        rate_wpm=int(rng.integers(rate[0], rate[1] + 1)),
        pitch=int(rng.integers(pitch[0], pitch[1] + 1)),
        length_scale=round(float(rng.uniform(*length_scale)), 3),
    )
    x = synth.speak(text, params)
    x = sg.pad(x, float(rng.uniform(0.1, 0.3)), float(rng.uniform(0.1, 0.3)))
    meta: dict[str, Any] = {"voice": voice.name, "text": text}
    if voice.engine == "piper":
        meta["length_scale"] = params.length_scale
    else:
        meta.update(rate_wpm=params.rate_wpm, pitch=params.pitch)
    return x, meta


def _level_and_noise(
    rng: np.random.Generator, x: np.ndarray, meta: dict[str, Any], noise_prob: float = 0.25
) -> np.ndarray:
    """Random moderate level and, sometimes, mild background noise (robustness for non-noise tasks)."""
    level = float(rng.uniform(-30, -16))
    x = sg.set_level(x, level)
    meta["level_dbfs"] = round(level, 1)
    if rng.random() < noise_prob:
        snr = float(rng.uniform(18, 35))
        color = _choice(rng, ("white", "pink"))
        x = sg.add_noise(x, snr, rng, color)
        meta.update(noise_snr_db=round(snr, 1), noise_color=color)
    return x


def _unverified(task: str) -> RuntimeError:
    # Never keep a sample whose label the audio does not support: that would teach the model noise.
    return RuntimeError(f"no {task} sample passed the acoustic check in {MAX_ATTEMPTS} attempts")


def _measure(x: np.ndarray, meta: dict[str, Any], text: str | None = None) -> dict[str, float]:
    m = ac.measure(x, text)
    meta["measured"] = m
    return m


# ------------------------------------------------------------------------------------------ arithmetic


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b


def _operands(rng: np.random.Generator, split: Split, op: str) -> tuple[int, int]:
    while True:
        a, b = int(rng.integers(0, 100)), int(rng.integers(0, 100))
        if op == "-" and b > a:
            a, b = b, a
        if is_eval_operands(a, b) == (split == "eval"):
            return a, b


def _problem(rng: np.random.Generator, split: Split, two_step_share: float = 0.2) -> dict[str, Any]:
    """An arithmetic problem whose every operand pair lies in ``split`` (train never sees eval pairs)."""
    op1 = _choice(rng, ("+", "-"))
    a, b = _operands(rng, split, op1)
    r1 = _apply(a, op1, b)
    if rng.random() >= two_step_share:
        return {"ops": [op1], "operands": [a, b], "steps": [r1], "result": r1}
    while True:
        op2 = _choice(rng, ("+", "-"))
        c = int(rng.integers(0, 100))
        if op2 == "-" and c > r1:
            continue
        # the second step's pair must be a training pair in train; in eval the first pair already is held out
        if split == "train" and is_eval_operands(r1, c):
            continue
        r2 = _apply(r1, op2, c)
        return {"ops": [op1, op2], "operands": [a, b, c], "steps": [r1, r2], "result": r2}


def column_step(a: int, op: str, b: int) -> str:
    """One operation worked column by column, the way it is taught: "47 plus 38: 7 plus 8 is 15, 4 plus
    3 plus 1 is 8, so 85." / "52 minus 17: 12 minus 7 is 5, 5 minus 1 minus 1 is 3, so 35."

    Why: a 4-layer decoder trained for an hour does not learn to write a two-digit sum in one go (measured:
    5% on text problems after 6,000 steps), but every token here is a one-digit fact or a copy of a digit
    a few tokens back, which it learns quickly. Operands below 10 get a tens digit of 0 so that every
    problem has the same shape.
    """
    a1, a0, b1, b0 = a // 10, a % 10, b // 10, b % 10
    word = tp.OP_WORDS[op]
    if op == "+":
        units, carry = a0 + b0, int(a0 + b0 >= 10)
        tens = a1 + b1 + carry
        ones = f"{a0} plus {b0} is {units}"
        tens_text = f"{a1} plus {b1} plus 1 is {tens}" if carry else f"{a1} plus {b1} is {tens}"
    else:
        borrow = int(a0 < b0)
        units = 10 * borrow + a0 - b0
        tens = a1 - b1 - borrow
        ones = f"{10 * borrow + a0} minus {b0} is {units}"
        tens_text = f"{a1} minus {b1} minus 1 is {tens}" if borrow else f"{a1} minus {b1} is {tens}"
    result = _apply(a, op, b)
    return f"{a} {word} {b}: {ones}, {tens_text}, so {result}."


def arith_working(p: dict[str, Any]) -> str:
    """Column-by-column working of every step of the problem; its last number is the answer."""
    ops, nums, steps = p["ops"], p["operands"], p["steps"]
    parts = [column_step(nums[0], ops[0], nums[1])]
    if len(ops) == 2:
        parts.append(column_step(steps[0], ops[1], nums[2]))
    return " ".join(parts)


def arith_question(p: dict[str, Any]) -> str:
    """The problem restated in words: "46 plus 37", "51 minus 9 plus 30", "83 minus 46" ("how much more")."""
    ops, nums = p["ops"], p["operands"]
    text = f"{nums[0]} {tp.OP_WORDS[ops[0]]} {nums[1]}"
    if len(ops) == 2:
        text += f" {tp.OP_WORDS[ops[1]]} {nums[2]}"
    return text


def arith_reply(p: dict[str, Any]) -> str:
    """The spoken reply: the problem restated, then the result ("46 plus 37 is 83."; "how much more is 83
    than 46" -> "83 minus 46 is 37.", so the answer is always the reply's last number). The working never
    goes here: it is in the think block (or, with an empty think block, nowhere), because a voice
    assistant that reads out column arithmetic talks for 6-7 s where 2 s would do."""
    return f"{arith_question(p)} is {p['result']}."


def _arith_words(
    p: dict[str, Any],
    templates_one: dict[str, tuple[str, ...]] | tuple[str, ...],
    templates_two: tuple[str, ...],
    rng: np.random.Generator,
) -> str:
    ops, nums = p["ops"], p["operands"]
    if len(ops) == 1:
        t = (
            _choice(rng, templates_one[ops[0]])
            if isinstance(templates_one, dict)
            else _choice(rng, templates_one)
        )
        return t.format(a=nums[0], b=nums[1], op=tp.OP_WORDS[ops[0]])
    return _choice(rng, templates_two).format(
        a=nums[0], b=nums[1], c=nums[2], op1=tp.OP_WORDS[ops[0]], op2=tp.OP_WORDS[ops[1]]
    )


def gen_spoken_arithmetic(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    """The question is spoken ("what is 12 plus 7"); the user text is empty or a fixed instruction."""
    p = _problem(rng, split)
    text = _arith_words(p, tp.ARITH_ONE_STEP, tp.ARITH_TWO_STEP, rng)
    for _ in range(MAX_ATTEMPTS):
        voice = _pick_voice(rng, split)
        x, meta = _speak(rng, text, voice)
        if len(x) <= 4.5 * sg.SAMPLE_RATE:
            break
    x = _level_and_noise(rng, x, meta)
    m = _measure(x, meta)
    meta.update(p)
    meta["spoken_s"] = m["active_s"]
    # the reasoning first writes down what was heard (the operands), then works the columns
    think = f"I hear {arith_question(p)}. " + arith_working(p) if cot else ""
    return Sample(
        "spoken_arithmetic",
        x,
        _choice(rng, tp.ARITH_AUDIO_INSTRUCTIONS),
        think,
        arith_reply(p),
        str(p["result"]),
        meta,
    )


def gen_text_arithmetic(rng: np.random.Generator, split: Split, cot: bool = True) -> Sample:
    """Text-only arithmetic; with ``cot`` the working goes in the think block (the paper's text CoT data)."""
    p = _problem(rng, split, two_step_share=0.35)
    ops_text = {"+": tp.ARITH_TEXT_ONE_STEP, "-": tp.ARITH_TEXT_ONE_STEP}
    q = _arith_words(p, ops_text, tp.ARITH_TEXT_TWO_STEP, rng)
    return Sample(
        "text_arithmetic",
        None,
        q,
        arith_working(p) if cot else "",
        arith_reply(p),
        str(p["result"]),
        dict(p),
    )


# ------------------------------------------------------------------------------------------ perception


def gen_beep_count(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    meta: dict[str, Any] = {}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        n = int(rng.integers(1, 7))
        freq = float(np.exp(rng.uniform(np.log(400), np.log(2000))))
        beep_s, gap_s = float(rng.uniform(0.08, 0.2)), float(rng.uniform(0.12, 0.35))
        x = sg.beep_train(
            n,
            freq,
            beep_s=beep_s,
            gap_s=gap_s,
            lead_s=float(rng.uniform(0.1, 0.4)),
            tail_s=float(rng.uniform(0.1, 0.4)),
            amp=float(rng.uniform(0.05, 0.6)),
        )
        meta = {
            "count": n,
            "freq_hz": round(freq, 1),
            "beep_s": round(beep_s, 3),
            "gap_s": round(gap_s, 3),
            "attempts": attempt,
        }
        if rng.random() < 0.3:
            snr = float(rng.uniform(20, 35))
            x = sg.add_noise(x, snr, rng, "white")
            meta["noise_snr_db"] = round(snr, 1)
        measured = ac.count_beeps(x)
        if measured == n:
            break
    else:
        raise _unverified("beep_count")
    m = _measure(x, meta)
    m["beep_count"] = measured
    word = "beep" if n == 1 else "beeps"
    think = ""
    if cot:
        think = (
            f"I detect {measured} separate tone bursts at about {freq:.0f} Hz in {m['duration_s']:.1f} "
            f"seconds, so there {'is' if n == 1 else 'are'} {measured} {word}."
        )
    return Sample(
        "beep_count", x, _choice(rng, tp.BEEP_QUESTIONS), think, f"I hear {n} {word}.", str(n), meta
    )


def gen_tone_compare(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    meta: dict[str, Any] = {}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        low = float(np.exp(rng.uniform(np.log(200), np.log(1200))))
        high = low * float(rng.uniform(1.2, 2.2))
        second_higher = bool(rng.random() < 0.5)
        f1, f2 = (low, high) if second_higher else (high, low)
        x = sg.two_tones(
            f1,
            f2,
            tone_s=float(rng.uniform(0.3, 0.8)),
            gap_s=float(rng.uniform(0.15, 0.5)),
            amp=float(rng.uniform(0.1, 0.5)),
        )
        meta = {"first_hz": round(f1, 1), "second_hz": round(f2, 1), "attempts": attempt}
        freqs = ac.segment_frequencies_hz(x)
        if len(freqs) == 2 and (freqs[1] > freqs[0]) == second_higher:
            break
    else:
        raise _unverified("tone_compare")
    m = _measure(x, meta)
    m["tone_freqs_hz"] = [round(f, 1) for f in freqs]
    label = "second" if second_higher else "first"
    think = ""
    if cot and len(freqs) == 2:
        hi, lo = (freqs[1], freqs[0]) if second_higher else (freqs[0], freqs[1])
        think = (
            f"The first tone is about {freqs[0]:.0f} Hz and the second is about {freqs[1]:.0f} Hz. "
            f"{hi:.0f} Hz is higher than {lo:.0f} Hz, so the {label} tone is higher."
        )
    return Sample(
        "tone_compare", x, _choice(rng, tp.TONE_QUESTIONS), think, f"The {label} tone is higher.", label, meta
    )


def _female(v: synth.Voice) -> bool:
    return v.is_female


def _not_female(v: synth.Voice) -> bool:
    # croak is creaky phonation: no stable F0 (pYIN finds no voicing), so "high or low" is ill-posed.
    return not v.is_female and v.variant != "croak"


# Share of "low" pitch examples spoken by female voices at their lowest pitch. Without them every high
# example was a female voice and every low one male, so timbre told the label as well as F0 did; the v2
# checkpoint learned timbre and called held-out low male voices (espeak's m6 variant) high (1/46 after
# the cold start, scripts/pitch_probe.py). espeak's female voices at pitch 0-10 reach <= 145 Hz about 80% of
# the time (retried below); its male voices never reach the 185 Hz of "high" (171 Hz median at pitch 99).
LOW_FEMALE_SHARE = 0.4


def _speak_pitched(
    rng: np.random.Generator, text: str, split: Split, high: bool, low_female: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """``text`` in a high voice (a female variant at raised pitch) or a low one: a female variant at its
    lowest pitch when ``low_female``, else a male/neutral variant at lowered pitch."""
    if high:
        return _speak(rng, text, _pick_voice(rng, split, _female, piper=False), pitch=(65, 99))
    if low_female:
        return _speak(rng, text, _pick_voice(rng, split, _female, piper=False), pitch=(0, 10))
    return _speak(rng, text, _pick_voice(rng, split, _not_female), pitch=(0, 40))


def gen_voice_pitch(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    """High voices: female variants at raised pitch; low: male/neutral variants at lowered pitch, and
    female variants at their lowest (``LOW_FEMALE_SHARE``), so that only F0 tells the two apart."""
    high = bool(rng.random() < 0.5)
    low_female = not high and bool(rng.random() < LOW_FEMALE_SHARE)
    x, meta, f0 = np.zeros(1, np.float32), {}, float("nan")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        text = _sentence(rng)
        x, meta = _speak_pitched(rng, text, split, high, low_female)
        x = _level_and_noise(rng, x, meta, noise_prob=0.0)
        f0 = ac.median_f0_hz(x)
        meta["attempts"] = attempt
        if (high and f0 >= DECISION["pitch_high_min"]) or (not high and f0 <= DECISION["pitch_low_max"]):
            break
    else:
        raise _unverified("voice_pitch")
    m = _measure(x, meta, text)
    label = "high" if high else "low"
    think = ""
    if cot:
        rel = "above" if high else "below"
        think = (
            f"The voice has a median pitch of {f0:.0f} Hz, {rel} {DECISION['pitch_hz']:.0f} Hz, "
            f"so it is {label}."
        )
    meta["f0_hz"] = m["f0_hz"]
    return Sample(
        "voice_pitch",
        x,
        _choice(rng, tp.PITCH_QUESTIONS),
        think,
        f"The voice is {label} pitched.",
        label,
        meta,
    )


def gen_speech_rate(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    fast = bool(rng.random() < 0.5)
    x, meta, rate = np.zeros(1, np.float32), {}, float("nan")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        text = _sentence(rng, short=True)
        voice = _pick_voice(rng, split)
        if fast:
            x, meta = _speak(rng, text, voice, rate=(270, 360), length_scale=(0.5, 0.62))
        else:
            x, meta = _speak(rng, text, voice, rate=(85, 120), length_scale=(1.6, 1.9))
        x = _level_and_noise(rng, x, meta, noise_prob=0.0)
        rate = ac.speech_rate_sps(x, text)
        meta["attempts"] = attempt
        if (fast and rate >= DECISION["rate_fast_min"]) or (not fast and rate <= DECISION["rate_slow_max"]):
            break
    else:
        raise _unverified("speech_rate")
    m = _measure(x, meta, text)
    label = "fast" if fast else "slow"
    think = ""
    if cot:
        rel = "above" if fast else "below"
        think = (
            f"About {ac.count_syllables(text)} syllables are spoken in {m['active_s']:.1f} seconds, "
            f"{rate:.1f} syllables per second, {rel} {DECISION['rate_sps']:.0f}, so the speech is {label}."
        )
    return Sample(
        "speech_rate", x, _choice(rng, tp.RATE_QUESTIONS), think, f"The speech is {label}.", label, meta
    )


def gen_loudness(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    loud = bool(rng.random() < 0.5)
    x, meta, db = np.zeros(1, np.float32), {}, float("nan")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        text = _sentence(rng)
        x, meta = _speak(rng, text, _pick_voice(rng, split))
        target = float(rng.uniform(-20, -13) if loud else rng.uniform(-46, -38))
        x = sg.set_level(x, target)
        meta.update(level_dbfs=round(target, 1), attempts=attempt)
        db = ac.rms_dbfs(x)
        if (loud and db >= DECISION["loud_min"]) or (not loud and db <= DECISION["quiet_max"]):
            break
    else:
        raise _unverified("loudness")
    _measure(x, meta)
    label = "loud" if loud else "quiet"
    think = ""
    if cot:
        rel = "above" if loud else "below"
        think = (
            f"The speech level is {db:.0f} dBFS, {rel} {DECISION['loud_dbfs']:.0f} dBFS, so it is {label}."
        )
    return Sample(
        "loudness", x, _choice(rng, tp.LOUDNESS_QUESTIONS), think, f"The audio is {label}.", label, meta
    )


def gen_noise(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    noisy = bool(rng.random() < 0.5)
    x, meta, snr = np.zeros(1, np.float32), {}, float("nan")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        text = _sentence(rng)
        x, meta = _speak(rng, text, _pick_voice(rng, split))
        x = sg.set_level(x, float(rng.uniform(-30, -16)))
        if noisy:
            target = float(rng.uniform(0, 10))
            color = _choice(rng, ("white", "pink"))
            x = sg.add_noise(x, target, rng, color)
            meta.update(noise_snr_db=round(target, 1), noise_color=color)
        meta["attempts"] = attempt
        snr = ac.snr_db(x)
        if (noisy and snr <= DECISION["noisy_max"]) or (not noisy and snr >= DECISION["clean_min"]):
            break
    else:
        raise _unverified("noise")
    _measure(x, meta)
    label = "noisy" if noisy else "clean"
    think = ""
    if cot:
        rel = "below" if noisy else "above"
        think = (
            f"The estimated signal-to-noise ratio is {snr:.0f} dB, {rel} {DECISION['snr_db']:.0f} dB, "
            f"so the background is {label}."
        )
    return Sample(
        "noise", x, _choice(rng, tp.NOISE_QUESTIONS), think, f"The background is {label}.", label, meta
    )


# --------------------------------------------------------------------------- transcription, cognition


def gen_transcription(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    text = _split_sentence(rng, split)
    x, meta = _speak(rng, text, _pick_voice(rng, split))
    x = _level_and_noise(rng, x, meta)
    m = _measure(x, meta)
    think = (
        f"The clip holds {m['active_s']:.1f} seconds of speech at {m['rms_dbfs']:.0f} dBFS." if cot else ""
    )
    return Sample(
        "transcription",
        x,
        _choice(rng, tp.TRANSCRIBE_QUESTIONS),
        think,
        f"The speaker said: {text}.",
        text,
        meta,
    )


def gen_self_cognition(rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    """ "Can you hear this?" over speech, beeps, tones or noise; the right answer acknowledges hearing."""
    if rng.random() < 0.2:
        q = _choice(rng, tp.HEAR_TEXT_QUESTIONS)
        reply = "Yes, I can hear you." if q == "Can you hear me?" else "Yes, I can hear and understand audio."
        return Sample("self_cognition", None, q, "", reply, "yes", {"kind": "text"})
    kind = _choice(rng, ("speech", "speech", "beeps", "tones", "noise"))
    meta: dict[str, Any]
    if kind == "speech":
        x, meta = _speak(rng, _sentence(rng), _pick_voice(rng, split))
        x = _level_and_noise(rng, x, meta)
    elif kind == "beeps":
        x = sg.beep_train(int(rng.integers(1, 5)), float(rng.uniform(400, 2000)))
        meta = {}
    elif kind == "tones":
        x = sg.two_tones(float(rng.uniform(200, 800)), float(rng.uniform(200, 800)))
        meta = {}
    else:
        n = int(rng.uniform(1.0, 2.5) * sg.SAMPLE_RATE)
        noise = sg.pink_noise(n, rng) if rng.random() < 0.5 else sg.white_noise(n, rng)
        x = sg.set_level(noise, float(rng.uniform(-35, -20)))
        meta = {}
    meta["kind"] = kind
    m = _measure(x, meta)
    q = _choice(rng, tp.HEAR_QUESTIONS)
    answer = "Yes, I can hear you." if q == "Can you hear me?" else "Yes, I can hear it."
    think = ""
    if cot:
        think = (
            f"The clip is {m['duration_s']:.1f} seconds long with sound at {m['rms_dbfs']:.0f} dBFS, "
            f"so there is something to hear."
        )
    return Sample("self_cognition", x, q, think, answer, "yes", meta)


def gen_text_chat(rng: np.random.Generator, split: Split, cot: bool = False) -> Sample:
    user, reply, key = _choice(rng, tp.CHAT)
    return Sample("text_chat", None, user, "", reply, key, {})


Generator = Callable[[np.random.Generator, Split, bool], Sample]

# The tasks of this module; ``reasoning_tasks`` builds more on its helpers, and ``catalog`` holds them all.
BASE_TASKS: dict[str, Generator] = {
    "spoken_arithmetic": gen_spoken_arithmetic,
    "beep_count": gen_beep_count,
    "tone_compare": gen_tone_compare,
    "voice_pitch": gen_voice_pitch,
    "speech_rate": gen_speech_rate,
    "loudness": gen_loudness,
    "noise": gen_noise,
    "transcription": gen_transcription,
    "self_cognition": gen_self_cognition,
    "text_arithmetic": gen_text_arithmetic,
    "text_chat": gen_text_chat,
}
TEXT_ONLY_TASKS = frozenset({"text_arithmetic", "text_chat"})
