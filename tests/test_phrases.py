"""Phrase chunking of streamed reply text for TTS."""

from __future__ import annotations

import pytest

from stepaudio_rt.streaming.phrases import PhraseChunker


def _stream(chunker: PhraseChunker, text: str, step: int) -> list[str]:
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.push(text[i : i + step])
    return out + chunker.flush()


REPLY = (
    "Sure, the answer is 3.5 liters. That is because 7 divided by 2 equals 3.5; "
    "in other words, half of seven. Dr. Smith agrees!\nAnything else?"
)


@pytest.mark.parametrize("step", [1, 3, 17, len(REPLY)])
def test_phrases_are_independent_of_delta_sizes(step: int) -> None:
    phrases = _stream(PhraseChunker(), REPLY, step)
    assert phrases == [
        "Sure,",
        "the answer is 3.5 liters.",
        "That is because 7 divided by 2 equals 3.5;",
        "in other words, half of seven.",
        "Dr. Smith agrees!",
        "Anything else?",
    ]
    # Nothing is lost or reordered.
    assert " ".join(phrases).split() == REPLY.split()


def test_number_split_across_deltas_is_not_cut() -> None:
    chunker = PhraseChunker()
    assert chunker.push("Well, the total is 3.") == ["Well,"]
    assert chunker.push("5") == []
    assert chunker.push(" dollars and 1,000 cents. Next") == ["the total is 3.5 dollars and 1,000 cents."]
    assert chunker.flush() == ["Next"]


def test_short_sentences_merge_until_min_chars_after_the_first() -> None:
    chunker = PhraseChunker(min_chars=20)
    assert chunker.push("Yes. No. Ok. ") == ["Yes."]
    assert chunker.push("Maybe later, friend. ") == ["No. Ok. Maybe later,"]
    assert chunker.flush() == ["friend."]


def test_first_phrase_waits_for_first_min_chars() -> None:
    chunker = PhraseChunker(first_min_chars=6)
    assert chunker.push("Hi, there you go. ") == ["Hi, there you go."]


def test_push_waits_for_whitespace_after_punctuation() -> None:
    chunker = PhraseChunker()
    assert chunker.push("Hello.") == []
    assert chunker.push(" ") == ["Hello."]


def test_long_unpunctuated_text_is_cut_at_a_space() -> None:
    chunker = PhraseChunker(max_chars=40)
    words = "one two three four five six seven eight nine ten eleven twelve"
    out = chunker.push(words)
    assert out and all(len(p) <= 40 for p in out)
    assert " ".join(out + chunker.flush()).split() == words.split()


def test_cjk_punctuation_is_a_boundary() -> None:
    chunker = PhraseChunker(min_chars=4, first_min_chars=2)
    assert chunker.push("你好。今天天气很好，我们出去走走吧") == ["你好。", "今天天气很好，"]
    assert chunker.flush() == ["我们出去走走吧"]


def test_unspeakable_fragments_are_dropped_and_flush_resets() -> None:
    chunker = PhraseChunker()
    assert chunker.push("... ") == []
    assert chunker.flush() == []
    assert chunker.push("— \n") == []
    assert chunker.push("Ok, go. ") == ["Ok, go."]  # "Ok," alone is under first_min_chars
    chunker.reset()
    assert chunker.flush() == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        PhraseChunker(min_chars=0)
    with pytest.raises(ValueError):
        PhraseChunker(min_chars=50, max_chars=10)
    with pytest.raises(TypeError):
        PhraseChunker().push(None)  # type: ignore[arg-type]
