"""The answer verifiers: is a reply right for a task and label? Shared by the data self-check, ``eval``,
self-distillation's filter and the RL rewards, so that every stage scores answers the same way."""

from __future__ import annotations

import re

from stepaudio_rt.training.data.catalog import TASK_NAMES, TASKS
from stepaudio_rt.training.data.reasoning_tasks import ORDINALS, PAUSE_TOLERANCE_S

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
        ]
    )
}
_TENS_WORDS = {
    w: 10 * i
    for i, w in enumerate(
        ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
    )
    if i > 1
}
_NEGATIONS = ("not ", "n't ", "isn't ", "no ")


def strip_think(reply: str) -> str:
    """The reply part of a generation: whatever follows the last ``</think>`` (or all of it)."""
    return reply.rsplit("</think>", 1)[-1].strip()


def _words_to_numbers(text: str) -> str:
    """Replace spelled-out numbers (0-999, "forty-two", "one hundred and five") by digits."""
    tokens = re.findall(r"[a-z]+|\d+|[^\sa-z\d]", text.lower().replace("-", " "))
    out: list[str] = []
    cur: int | None = None

    def flush() -> None:
        nonlocal cur
        if cur is not None:
            out.append(str(cur))
            cur = None

    for t in tokens:
        if t in _NUMBER_WORDS or t in _TENS_WORDS:
            v = _NUMBER_WORDS.get(t, _TENS_WORDS.get(t, 0))
            hundreds_open = cur is not None and cur >= 100 and cur % 100 == 0
            tens_open = cur is not None and cur % 100 >= 20 and cur % 10 == 0 and v < 10
            if cur is not None and (hundreds_open or tens_open):
                cur += v
            else:
                flush()
                cur = v
        elif t == "hundred" and cur is not None and 1 <= cur < 10:
            cur *= 100
        elif t == "and" and cur is not None and cur >= 100 and cur % 100 == 0:
            continue
        else:
            flush()
            out.append(t)
    flush()
    return " ".join(out)


def extract_number(reply: str) -> int | None:
    """The last integer in the reply (digits or words); None if there is none."""
    nums = re.findall(r"-?\d+", _words_to_numbers(strip_think(reply).replace(",", "")))
    return int(nums[-1]) if nums else None


_KEYWORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # label: (words meaning the label, words meaning the opposite)
    "high": (("high",), ("low", "deep")),
    "low": (("low", "deep"), ("high",)),
    "fast": (("fast", "quick", "rapid"), ("slow",)),
    "slow": (("slow",), ("fast", "quick", "rapid")),
    "loud": (("loud",), ("quiet", "soft")),
    "quiet": (("quiet", "soft"), ("loud",)),
    "clean": (("clean", "clear", "noiseless"), ("noisy", "noise")),
    "noisy": (("noisy", "noise"), ("clean", "clear", "noiseless")),
    "first": (("first",), ("second",)),
    "second": (("second",), ("first",)),
}


def _keyword_votes(text: str, label: str) -> tuple[int, int]:
    """(votes for label, votes for the opposite) with simple negation: "not noisy" votes for clean."""
    pos_words, neg_words = _KEYWORDS[label]
    words = re.findall(r"[a-z']+", text.lower())
    pos = neg = 0
    for i, w in enumerate(words):
        negated = any(p in (" ".join(words[max(0, i - 2) : i]) + " ") for p in _NEGATIONS)
        stem = w.rstrip(",.")
        hit_pos = any(stem == k or stem.startswith(k + "er") or stem == k + "ly" for k in pos_words)
        hit_neg = any(stem == k or stem.startswith(k + "er") or stem == k + "ly" for k in neg_words)
        if label in ("clean", "noisy") and stem == "noise" and negated:
            hit_pos, hit_neg = label == "clean", label == "noisy"
            negated = False
        if hit_pos:
            pos, neg = (pos, neg + 1) if negated else (pos + 1, neg)
        elif hit_neg:
            pos, neg = (pos + 1, neg) if negated else (pos, neg + 1)
    return pos, neg


def _normalize_words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", _words_to_numbers(text.lower()))


_REFUSALS = (
    "cannot",
    "can't",
    "can not",
    "unable",
    "not able",
    "don't",
    "do not",
    "only text",
    "text-based",
    "text based",
    "as a text",
    "no audio",
    "not hear",
    "no,",
)


NUMBER_TASKS = frozenset({"spoken_arithmetic", "text_arithmetic", "beep_count", "spoken_multistep", "beep_bursts"})
ORDINAL_TASKS = frozenset({"highest_tone", "speaker_compare"})


def _ordinal_answer(reply: str) -> str | None:
    """The one ordinal (first/second/third) the reply names, or None when it names none or several."""
    named = {w for w in re.findall(r"[a-z]+", reply.lower()) if w in ORDINALS}
    return named.pop() if len(named) == 1 else None


def extract_seconds(reply: str) -> float | None:
    """The last decimal number of the reply ("The pause lasts 1.2 seconds." -> 1.2); None if none."""
    nums = re.findall(r"\d+(?:\.\d+)?", _words_to_numbers(strip_think(reply)).replace(" . ", "."))
    return float(nums[-1]) if nums else None


def check_answer(task: str, reply_text: str, label: str) -> bool:
    """Verifiable reward: does the reply (think block allowed, ignored) give the label's answer?"""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_NAMES)}")
    reply = strip_think(reply_text)
    if not reply:
        return False
    if task in NUMBER_TASKS:
        return extract_number(reply) == int(label)
    if task in ORDINAL_TASKS:
        return _ordinal_answer(reply) == label
    if task == "rate_change":
        low = reply.lower()
        up = any(k in low for k in ("speeds up", "speed up", "faster", "quicker"))
        down = any(k in low for k in ("slows down", "slow down", "slower"))
        return (up and not down) if label == "up" else (down and not up)
    if task == "pause_length":
        said = extract_seconds(reply)
        return said is not None and abs(said - float(label)) <= PAUSE_TOLERANCE_S
    if task in ("tone_compare", "voice_pitch", "speech_rate", "loudness", "noise"):
        if task == "tone_compare":
            # "The first tone is lower, the second is higher": judge by the clause that says "higher".
            clauses = [c for c in re.split(r"[,;.]| but | and ", reply.lower()) if "high" in c]
            reply = " ".join(clauses) if clauses else reply
        pos, neg = _keyword_votes(reply, label)
        return pos > 0 and neg == 0
    if task == "transcription":
        want, got = _normalize_words(label), _normalize_words(reply)
        return any(got[i : i + len(want)] == want for i in range(len(got) - len(want) + 1))
    if task == "self_cognition":
        # wrong: a claim of not hearing (the self-cognition judge, the one implementation eval uses too)
        # or any other refusal; right: an acknowledgement of hearing
        from stepaudio_rt.training.self_cognition import flags

        low = " " + reply.lower() + " "
        if flags(reply) or any(r in low for r in _REFUSALS):
            return False
        return any(k in low for k in ("yes", "hear", "i can", "listen"))
    # text_chat: the reply carries the expected keyword
    return label.lower() in reply.lower()
