"""Tasks where reasoning pays: the answer needs several heard facts combined, not one perception.

Each generator returns a ``tasks.Sample`` whose label is verifiable (``verify.check_answer``) and whose
reasoning cites values measured on the generated waveform (Hz, dB, seconds, counts; ``acoustics``), so a
model can only reach the answer by hearing and then combining. The reply restates the question and
gives the result in one short sentence. Held-out material follows ``tasks``: eval voices, eval operand
pairs and eval sentences only in the eval split.

The multi-step arithmetic problems favour carries and borrows (two thirds of them), where the column
working matters most.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stepaudio_rt.training.data import acoustics as ac
from stepaudio_rt.training.data import signals as sg
from stepaudio_rt.training.data import tasks as tk
from stepaudio_rt.training.data import text_pools as tp

ORDINALS = ("first", "second", "third")
BURST_GAP_S = 0.45  # a silence longer than this separates two bursts of beeps (beeps are <= 0.25 s apart)
PAUSE_TOLERANCE_S = 0.25
MAX_TWO_PART_S = 7.0  # clips holding two utterances (speakers, rate change, pause) stay under this  # a stated pause length counts as right within this of the measured one


def _has_carry(a: int, op: str, b: int) -> bool:
    return (a % 10 + b % 10 >= 10) if op == "+" else (a % 10 < b % 10)


def _multistep_problem(rng: np.random.Generator, split: tk.Split) -> dict[str, Any]:
    """Three operands (``a op b op c``) or "how much more is a than b"; mostly with a carry or borrow."""
    want_carry = rng.random() < 2 / 3
    for _ in range(200):
        if rng.random() < 0.35:
            a, b = tk._operands(rng, split, "-")
            if a == b or _has_carry(a, "-", b) != want_carry:
                continue
            return {"kind": "more", "ops": ["-"], "operands": [a, b], "steps": [a - b], "result": a - b}
        p = tk._problem(rng, split, two_step_share=1.0)
        carries = [_has_carry(p["operands"][0], p["ops"][0], p["operands"][1])]
        carries.append(_has_carry(p["steps"][0], p["ops"][1], p["operands"][2]))
        if any(carries) == want_carry:
            p["kind"] = "chain"
            return p
    raise RuntimeError("no multi-step problem found")  # pragma: no cover - 200 draws always find one


def multistep_question(p: dict[str, Any]) -> str:
    if p["kind"] == "more":
        a, b = p["operands"]
        return f"how much more is {a} than {b}"
    return "what is " + tk.arith_question(p)


def gen_spoken_multistep(rng: np.random.Generator, split: tk.Split, cot: bool) -> tk.Sample:
    """Spoken "what is 47 plus 38 minus 19" / "how much more is 83 than 46"."""
    p = _multistep_problem(rng, split)
    text = multistep_question(p)
    for _ in range(tk.MAX_ATTEMPTS):
        x, meta = tk._speak(rng, text, tk._pick_voice(rng, split))
        if len(x) <= 5.5 * sg.SAMPLE_RATE:
            break
    x = tk._level_and_noise(rng, x, meta)
    tk._measure(x, meta)
    meta.update(p)
    think = ""
    if cot:
        if p["kind"] == "more":
            a, b = p["operands"]
            think = f"I hear how much more {a} is than {b}, so I subtract. " + tk.arith_working(p)
        else:
            think = f"I hear {tk.arith_question(p)}, two steps. " + tk.arith_working(p)
    instruction = tk._choice(rng, tp.ARITH_AUDIO_INSTRUCTIONS)
    return tk.Sample("spoken_multistep", x, instruction, think, tk.arith_reply(p), str(p["result"]), meta)


def burst_segments(x: np.ndarray) -> list[list[tuple[float, float]]]:
    """Sound events (start_s, end_s) grouped into bursts wherever the silence between two exceeds
    ``BURST_GAP_S``."""
    groups: list[list[tuple[float, float]]] = []
    prev_end = None
    for start, end in ac.segments(x):
        if prev_end is None or start - prev_end > BURST_GAP_S:
            groups.append([])
        groups[-1].append((start, end))
        prev_end = end
    return groups


def _beep_groups(x: np.ndarray) -> list[int]:
    """Beeps per burst."""
    return [len(g) for g in burst_segments(x)]


def gen_beep_bursts(rng: np.random.Generator, split: tk.Split, cot: bool) -> tk.Sample:
    """Two bursts of beeps; "how many beeps in all?" or "how many more in the longer burst?"."""
    total = bool(rng.random() < 0.5)
    for attempt in range(1, tk.MAX_ATTEMPTS + 1):  # noqa: B007 (read after the loop)
        n1, n2 = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        if not total and n1 == n2:
            continue
        freq = float(np.exp(rng.uniform(np.log(400), np.log(2000))))
        beep_s, gap_s = float(rng.uniform(0.08, 0.15)), float(rng.uniform(0.12, 0.22))
        burst_gap = float(rng.uniform(0.7, 1.1))
        amp = float(rng.uniform(0.05, 0.5))
        first = sg.beep_train(n1, freq, beep_s, gap_s, lead_s=float(rng.uniform(0.1, 0.3)), tail_s=0.0, amp=amp)
        second = sg.beep_train(n2, freq, beep_s, gap_s, lead_s=burst_gap, tail_s=float(rng.uniform(0.1, 0.3)), amp=amp)
        x = np.concatenate([first, second])
        groups = _beep_groups(x)
        if groups == [n1, n2]:
            break
    else:
        raise tk._unverified("beep_bursts")
    segs = ac.segments(x)
    pause = segs[n1][0] - segs[n1 - 1][1]
    meta: dict[str, Any] = {
        "counts": [n1, n2],
        "freq_hz": round(freq, 1),
        "burst_gap_s": round(burst_gap, 3),
        "attempts": attempt,
        "kind": "total" if total else "difference",
    }
    m = tk._measure(x, meta)
    m["burst_counts"] = groups
    m["burst_pause_s"] = round(pause, 2)
    answer = n1 + n2 if total else abs(n1 - n2)
    think = ""
    if cot:
        think = (
            f"I hear a burst of {n1} beeps, a pause of {pause:.1f} seconds, then a burst of {n2} beeps. "
        )
        if total:
            think += f"{n1} plus {n2} is {answer}."
        else:
            big, small = max(n1, n2), min(n1, n2)
            think += f"{big} minus {small} is {answer}."
    if total:
        q, reply = tk._choice(rng, tp.BURST_TOTAL_QUESTIONS), f"There are {answer} beeps in all."
    else:
        word = "beep" if answer == 1 else "beeps"
        q, reply = tk._choice(rng, tp.BURST_DIFF_QUESTIONS), f"The longer burst has {answer} more {word}."
    return tk.Sample("beep_bursts", x, q, think, reply, str(answer), meta)


def gen_highest_tone(rng: np.random.Generator, split: tk.Split, cot: bool) -> tk.Sample:
    """Three tones; which is the highest? The highest is at least 1.2x every other one."""
    for attempt in range(1, tk.MAX_ATTEMPTS + 1):  # noqa: B007 (read after the loop)
        top = int(rng.integers(3))
        high = float(np.exp(rng.uniform(np.log(300), np.log(1500))))
        freqs = [high / float(rng.uniform(1.2, 2.2)) for _ in range(3)]
        freqs[top] = high
        tone_s, gap_s = float(rng.uniform(0.25, 0.5)), float(rng.uniform(0.15, 0.35))
        amp = float(rng.uniform(0.1, 0.5))
        parts = [sg.silence(float(rng.uniform(0.1, 0.3)))]
        for i, f in enumerate(freqs):
            if i:
                parts.append(sg.silence(gap_s))
            parts.append(sg.tone(f, tone_s, amp=amp))
        parts.append(sg.silence(float(rng.uniform(0.1, 0.3))))
        x = np.concatenate(parts)
        measured = ac.segment_frequencies_hz(x)
        if len(measured) == 3 and int(np.argmax(measured)) == top:
            break
    else:
        raise tk._unverified("highest_tone")
    meta: dict[str, Any] = {"freqs_hz": [round(f, 1) for f in freqs], "attempts": attempt}
    m = tk._measure(x, meta)
    m["tone_freqs_hz"] = [round(f, 1) for f in measured]
    label = ORDINALS[top]
    think = ""
    if cot:
        a, b, c = (f"{f:.0f}" for f in measured)
        think = (
            f"The tones are about {a} Hz, {b} Hz and {c} Hz. The highest is {measured[top]:.0f} Hz, "
            f"the {label} tone."
        )
    q = tk._choice(rng, tp.HIGHEST_TONE_QUESTIONS)
    return tk.Sample("highest_tone", x, q, think, f"The {label} tone is the highest.", label, meta)


def _rate_part(
    rng: np.random.Generator, text: str, voice: Any, fast: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    if fast:
        return tk._speak(rng, text, voice, rate=(250, 330), length_scale=(0.55, 0.65))
    return tk._speak(rng, text, voice, rate=(90, 125), length_scale=(1.5, 1.8))


def gen_rate_change(rng: np.random.Generator, split: tk.Split, cot: bool) -> tk.Sample:
    """One speaker, two short sentences, one fast and one slow: does the speech speed up or slow down?"""
    speeds_up = bool(rng.random() < 0.5)
    for attempt in range(1, tk.MAX_ATTEMPTS + 1):  # noqa: B007 (read after the loop)
        voice = tk._pick_voice(rng, split)
        texts = [tk._split_sentence(rng, split, short=True), tk._split_sentence(rng, split, short=True)]
        a, meta_a = _rate_part(rng, texts[0], voice, fast=not speeds_up)
        b, meta_b = _rate_part(rng, texts[1], voice, fast=speeds_up)
        rates = [ac.speech_rate_sps(a, texts[0]), ac.speech_rate_sps(b, texts[1])]
        short = len(a) + len(b) <= MAX_TWO_PART_S * sg.SAMPLE_RATE
        if short and ((rates[1] > 1.3 * rates[0]) if speeds_up else (rates[0] > 1.3 * rates[1])):
            break
    else:
        raise tk._unverified("rate_change")
    x = np.concatenate([a, b])
    meta: dict[str, Any] = {
        "voice": voice.name,
        "text": f"{texts[0]} {texts[1]}",
        "parts": [meta_a, meta_b],
        "attempts": attempt,
    }
    level_meta: dict[str, Any] = {}
    x = tk._level_and_noise(rng, x, level_meta, noise_prob=0.0)
    meta.update(level_meta)
    m = tk._measure(x, meta)
    m["part_rates_sps"] = [round(r, 2) for r in rates]
    m["part_active_s"] = [round(ac.active_duration_s(p), 2) for p in (a, b)]
    label = "up" if speeds_up else "down"
    think = ""
    if cot:
        syl = [ac.count_syllables(t) for t in texts]
        verdict = "speeds up" if speeds_up else "slows down"
        think = (
            f"The first part has {syl[0]} syllables in {m['part_active_s'][0]:.1f} seconds, "
            f"{rates[0]:.1f} per second. The second has {syl[1]} syllables in {m['part_active_s'][1]:.1f} "
            f"seconds, {rates[1]:.1f} per second. So the speech {verdict}."
        )
    reply = "The speech speeds up." if speeds_up else "The speech slows down."
    return tk.Sample("rate_change", x, tk._choice(rng, tp.RATE_CHANGE_QUESTIONS), think, reply, label, meta)


def gen_speaker_compare(rng: np.random.Generator, split: tk.Split, cot: bool) -> tk.Sample:
    """Two speakers one after the other: which one is faster, or which one has the higher voice?"""
    aspect = tk._choice(rng, ("faster", "higher"))
    winner = int(rng.integers(2))
    low_female = aspect == "higher" and bool(rng.random() < tk.LOW_FEMALE_SHARE)
    for attempt in range(1, tk.MAX_ATTEMPTS + 1):  # noqa: B007 (read after the loop)
        texts = [tk._split_sentence(rng, split, short=True), tk._split_sentence(rng, split, short=True)]
        parts, metas, values = [], [], []
        for i in range(2):
            if aspect == "faster":
                voice = tk._pick_voice(rng, split)
                x_i, m_i = _rate_part(rng, texts[i], voice, fast=i == winner)
                values.append(ac.speech_rate_sps(x_i, texts[i]))
            else:  # timbre must not tell the answer (see tasks.LOW_FEMALE_SHARE)
                x_i, m_i = tk._speak_pitched(rng, texts[i], split, high=i == winner, low_female=low_female)
                values.append(ac.median_f0_hz(x_i))
            parts.append(x_i)
            metas.append(m_i)
        lo, hi = values[1 - winner], values[winner]
        short = sum(len(p) for p in parts) <= (MAX_TWO_PART_S - 0.6) * sg.SAMPLE_RATE
        if np.isfinite(lo) and np.isfinite(hi) and hi > 1.3 * lo and short:
            break
    else:
        raise tk._unverified("speaker_compare")
    x = np.concatenate([parts[0], sg.silence(float(rng.uniform(0.3, 0.6))), parts[1]])
    meta: dict[str, Any] = {
        "voice": metas[0]["voice"],
        "voices": [mm["voice"] for mm in metas],
        "text": f"{texts[0]} {texts[1]}",
        "aspect": aspect,
        "attempts": attempt,
    }
    level_meta: dict[str, Any] = {}
    x = tk._level_and_noise(rng, x, level_meta, noise_prob=0.0)
    meta.update(level_meta)
    m = tk._measure(x, meta)
    key = "part_rates_sps" if aspect == "faster" else "part_f0_hz"
    m[key] = [round(v, 2 if aspect == "faster" else 1) for v in values]
    label = ORDINALS[winner]
    think = ""
    if cot:
        if aspect == "faster":
            think = (
                f"The first speaker talks at {values[0]:.1f} syllables per second and the second at "
                f"{values[1]:.1f} syllables per second, so the {label} speaker is faster."
            )
        else:
            think = (
                f"The first voice has a median pitch of {values[0]:.0f} Hz and the second {values[1]:.0f} Hz, "
                f"so the {label} speaker has the higher voice."
            )
    if aspect == "faster":
        q, reply = tk._choice(rng, tp.SPEAKER_FASTER_QUESTIONS), f"The {label} speaker is faster."
    else:
        q, reply = tk._choice(rng, tp.SPEAKER_HIGHER_QUESTIONS), f"The {label} speaker has the higher voice."
    return tk.Sample("speaker_compare", x, q, think, reply, label, meta)


def longest_pause(x: np.ndarray) -> tuple[float, float, float]:
    """(pause seconds, end of speech before it, start of speech after it): the longest silence between
    two active stretches of the clip."""
    iv = ac.active_intervals(x) / sg.SAMPLE_RATE
    if len(iv) < 2:
        return 0.0, float("nan"), float("nan")
    gaps = iv[1:, 0] - iv[:-1, 1]
    k = int(np.argmax(gaps))
    return float(gaps[k]), float(iv[k, 1]), float(iv[k + 1, 0])


def gen_pause_length(rng: np.random.Generator, split: tk.Split, cot: bool) -> tk.Sample:
    """Speech, a pause of 0.3-1.6 s, speech again: how long is the pause (answer within 0.25 s)?"""
    for attempt in range(1, tk.MAX_ATTEMPTS + 1):  # noqa: B007 (read after the loop)
        voice = tk._pick_voice(rng, split)
        texts = [tk._split_sentence(rng, split, short=True), tk._split_sentence(rng, split, short=True)]
        a, meta_a = tk._speak(rng, texts[0], voice)
        b, meta_b = tk._speak(rng, texts[1], voice)
        a, b = ac._check_audio(a), ac._check_audio(b)
        trim_a = ac.active_intervals(a)
        trim_b = ac.active_intervals(b)
        if len(trim_a) == 0 or len(trim_b) == 0:
            continue
        a = a[: trim_a[-1, 1]]
        b = b[trim_b[0, 0] :]
        pause = round(float(rng.uniform(0.3, 1.6)), 2)
        x = np.concatenate([sg.silence(0.2), a, sg.silence(pause), b, sg.silence(0.2)])
        measured, end_a, start_b = longest_pause(x)
        if abs(measured - pause) <= 0.1 and len(x) <= MAX_TWO_PART_S * sg.SAMPLE_RATE:
            break
    else:
        raise tk._unverified("pause_length")
    meta: dict[str, Any] = {
        "voice": voice.name,
        "text": f"{texts[0]} {texts[1]}",
        "pause_s": pause,
        "attempts": attempt,
    }
    level_meta: dict[str, Any] = {}
    x = tk._level_and_noise(rng, x, level_meta, noise_prob=0.0)
    meta.update(level_meta)
    m = tk._measure(x, meta)
    measured, end_a, start_b = longest_pause(x)  # on the final signal (a gain does not move the edges)
    m["pause_s"] = round(measured, 2)
    m["speech_edges_s"] = [round(end_a, 2), round(start_b, 2)]
    # the chain's numbers add up exactly: edges rounded to 0.1 s, the pause their difference (within
    # 0.1 s of the measured pause, well inside the answer's tolerance)
    end_r, start_r = round(end_a, 1), round(start_b, 1)
    label = f"{start_r - end_r:.1f}"
    think = ""
    if cot:
        think = (
            f"Speech stops at {end_r:.1f} seconds and starts again at {start_r:.1f} seconds, "
            f"so the pause lasts {label} seconds."
        )
    reply = f"The pause lasts {label} seconds."
    return tk.Sample("pause_length", x, tk._choice(rng, tp.PAUSE_QUESTIONS), think, reply, label, meta)


REASONING_TASKS = {
    "spoken_multistep": gen_spoken_multistep,
    "beep_bursts": gen_beep_bursts,
    "highest_tone": gen_highest_tone,
    "rate_change": gen_rate_change,
    "speaker_compare": gen_speaker_compare,
    "pause_length": gen_pause_length,
}
