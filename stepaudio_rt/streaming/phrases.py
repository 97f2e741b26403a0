"""Cut streamed reply text into speakable phrases for the TTS stage.

TTS sounds right only on whole clauses (prosody needs to know where the sentence goes), but waiting for
the whole reply would add seconds of latency. So text is released at sentence / clause boundaries once a
phrase is long enough, and the *first* phrase may be short (e.g. "Sure," or "Yes.") so the first audio
starts as early as possible.

A boundary is ``. ! ? ; : ,`` (possibly repeated, possibly followed by closing quotes/brackets) followed
by whitespace, a newline, or CJK punctuation (``。！？；，、``, which needs no following space). Requiring
whitespace after ASCII punctuation keeps numbers like ``3.5`` or ``1,000`` whole even when the digits
arrive in a later delta. A newline always ends a phrase, whatever its length. A few abbreviations (``Dr.``, ``e.g.``, single initials) are not boundaries.
"""

from __future__ import annotations

import re

__all__ = ["PhraseChunker"]

_BOUNDARY = re.compile(r"[.!?;:,]+[\"'\u201d\u2019)\]]*(?=\s)|\n|[\u3002\uff01\uff1f\uff1b\uff0c\u3001]")
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "vs", "e.g", "i.e", "approx", "no", "fig"})
_LAST_WORD = re.compile(r"(\S+)$")


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


class PhraseChunker:
    """Accumulates text deltas; ``push`` returns phrases ready to speak, ``flush`` the remainder.

    - ``min_chars``: a phrase is released at a boundary only once it has this many characters;
      shorter ones keep growing to the next boundary (so "Yes. I think so." is one phrase).
    - ``first_min_chars``: the same for the first phrase of the reply, lower to cut time to first audio.
    - ``max_chars``: with no boundary in sight, text is cut at the last space before this length, so a
      long unpunctuated run cannot hold back audio indefinitely.
    """

    def __init__(self, min_chars: int = 20, *, first_min_chars: int = 4, max_chars: int = 200) -> None:
        if min_chars < 1 or first_min_chars < 1:
            raise ValueError(
                f"min_chars and first_min_chars must be >= 1, got {min_chars}, {first_min_chars}"
            )
        if max_chars < max(min_chars, first_min_chars):
            raise ValueError(f"max_chars ({max_chars}) must be >= min_chars ({min_chars})")
        self.min_chars = min_chars
        self.first_min_chars = first_min_chars
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = 0

    def push(self, text_delta: str) -> list[str]:
        if not isinstance(text_delta, str):
            raise TypeError(f"text_delta must be str, got {type(text_delta).__name__}")
        self._buf += text_delta
        return self._drain()

    def flush(self) -> list[str]:
        """End of the reply: return whatever is left (if it has anything to say) and start over."""
        out = self._drain()
        rest = self._buf.strip()
        if _speakable(rest):
            out.append(rest)
        self.reset()
        return out

    def take_words(self) -> str:
        """Release the whole words buffered so far (up to the last whitespace), boundary or not: for a
        speaker that would otherwise fall silent while the rest of the clause is still being written."""
        cut = max(self._buf.rfind(" "), self._buf.rfind("\n"))
        if cut <= 0 or not _speakable(self._buf[:cut]):
            return ""
        phrase, self._buf = self._buf[:cut].strip(), self._buf[cut:]
        self._emitted += 1
        return phrase

    def reset(self) -> None:
        """Drop buffered text (e.g. when the response is cancelled)."""
        self._buf = ""
        self._emitted = 0

    def _drain(self) -> list[str]:
        out: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return out
            phrase = self._buf[:cut].strip()
            self._buf = self._buf[cut:]
            if _speakable(phrase):
                out.append(phrase)
                self._emitted += 1

    def _next_cut(self) -> int | None:
        """Index to cut the buffer at, or None to keep waiting for more text."""
        need = self.first_min_chars if self._emitted == 0 else self.min_chars
        for match in _BOUNDARY.finditer(self._buf):
            if self._is_abbreviation(match):
                continue
            head = self._buf[: match.end()].strip()
            if not _speakable(head):
                return match.end()  # bare punctuation ("...", "—"): cut it off, _drain drops it
            if len(head) >= need or match.group() == "\n":
                return match.end()  # a newline (paragraph, list item) always ends a phrase
        if len(self._buf) > self.max_chars:
            space = self._buf.rfind(" ", 0, self.max_chars)
            if space > 0:
                return space
        return None

    def _is_abbreviation(self, match: re.Match[str]) -> bool:
        if match.group() != ".":
            return False
        word = _LAST_WORD.search(self._buf, 0, match.start())
        if word is None:
            return False
        token = word.group(1).lstrip("(\"'")
        return token.lower() in _ABBREVIATIONS or (len(token) == 1 and token.isupper())
