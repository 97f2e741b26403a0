"""``stepaudio-rt bench turns``: the paused questions it speaks and how it counts premature cuts."""

from __future__ import annotations

import numpy as np

from stepaudio_rt.clients.bench_turns import (
    TurnResult,
    TurnsConfig,
    paused_questions,
    summarize_turns,
    summary_rows,
)
from stepaudio_rt.clients.piper_speech import PausedQuestion, speak_piper


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768


def test_pause_is_inserted_inside_the_sentence_at_a_word_boundary() -> None:
    q = PausedQuestion("What is forty six plus thirty seven?", 4, 0.5)
    assert q.label == "What is forty six ... plus thirty seven?"
    audio = _samples(q.pcm)
    start = int(q.pause_start_s * 24000)
    gap = audio[start + 240 : start + 12000 - 240]  # 10 ms margins: the 22.05 -> 24 kHz resampler rings
    assert np.abs(gap).max() < 1e-3  # 500 ms of silence ...
    assert np.abs(audio[:start]).max() > 0.05 and np.abs(audio[start + 12000 :]).max() > 0.05  # ... between words
    assert 0.3 < start / len(audio) < 0.8
    whole = _samples(speak_piper("What is forty six plus thirty seven?"))
    assert abs(len(audio) - 12000 - len(whole)) < 2400  # the same sentence, plus the pause


def test_paused_question_sets_are_reproducible_and_in_range() -> None:
    cfg = TurnsConfig(paused_turns=4, seed=3)
    silent, filler = paused_questions(cfg, "silent"), paused_questions(cfg, "filler")
    assert [q.label for q in silent] == [q.label for q in paused_questions(cfg, "silent")]
    for s, f in zip(silent, filler, strict=True):
        assert 0.4 <= s.pause_s <= 0.7 and s.pause_s == f.pause_s
        assert f.label.replace(", um, ...", " ...") == s.label  # the filler comes right before the pause


def test_summary_counts_premature_cuts_per_mode_and_set() -> None:
    results = [
        TurnResult("server_vad", "paused_silent", "q1", premature=True),
        TurnResult("server_vad", "paused_silent", "q2", premature=True),
        TurnResult("semantic_vad", "paused_silent", "q1", premature=False),
        TurnResult("semantic_vad", "paused_silent", "q2", premature=True),
        TurnResult("semantic_vad", "latency", "q3", speech_end_to_first_audio_s=0.4,
                   speech_end_to_speech_stopped_s=0.2, premature=False),
        TurnResult("semantic_vad", "latency", "q4", outcome="error", error="boom"),
    ]
    summary = summarize_turns(results)
    assert summary["server_vad"]["paused_silent"] == {"turns": 2, "premature_cuts": 2, "premature_rate": 1.0}
    assert summary["semantic_vad"]["paused_silent"]["premature_rate"] == 0.5
    assert summary["semantic_vad"]["speech_end_to_first_audio_s"]["p50"] == 0.4
    assert summary["semantic_vad"]["errors"] == 1
    rows = {r[0]: r for r in summary_rows(summary)}
    assert rows["semantic_vad"][2] == "400" and rows["server_vad"][5] == "2/2" and rows["server_vad"][6] == "-"


def _longest_silence_s(audio: np.ndarray, rate: int = 24000) -> tuple[float, float]:
    """(length, start) of the longest run of 10 ms blocks below -45 dBFS."""
    block = rate // 100
    quiet = np.abs(audio[: len(audio) // block * block].reshape(-1, block)).max(axis=1) < 10 ** (-45 / 20)
    best = (0, 0)
    run = 0
    for i, q in enumerate(quiet):
        run = run + 1 if q else 0
        if run > best[0]:
            best = (run, i - run + 1)
    return best[0] / 100, best[1] / 100


def test_held_out_hesitations_are_other_sentences_in_three_voices() -> None:
    from stepaudio_rt.clients.bench_turns import paused_jobs
    from stepaudio_rt.clients.hesitations import HELD_OUT_HESITATIONS, HELD_OUT_VOICES

    cfg = TurnsConfig(paused_turns=24, seed=5)
    jobs = paused_jobs(cfg, "heldout")
    assert len(jobs) == 24 and len({label.split(" [")[0] for label, *_ in jobs}) == 24
    assert {voice for _, _, voice, _ in jobs} == set(HELD_OUT_VOICES)
    assert {h.prefix_is_complete for h in HELD_OUT_HESITATIONS} == {True, False}
    tuning = {q.text for q in paused_questions(cfg, "silent")}
    assert not tuning & {h.text for h in HELD_OUT_HESITATIONS}
    for label, pcm, voice, _ in jobs[:3]:  # one per voice: the pause is the longest silence, inside
        audio = _samples(pcm)
        pause_s = float(label.split("[")[1].split(" ms")[0]) / 1000
        gap, start = _longest_silence_s(audio)
        assert abs(gap - pause_s) < 0.12, (voice, gap, pause_s)
        assert 0.15 < start / (len(audio) / 24000) < 0.85, voice


def test_heldout_summary_splits_cuts_by_voice_and_prefix() -> None:
    results = [
        TurnResult("semantic_vad", "paused_heldout", "a", premature=True, voice="en-us", prefix_is_complete=True),
        TurnResult("semantic_vad", "paused_heldout", "b", premature=False, voice="piper", prefix_is_complete=False),
        TurnResult("semantic_vad", "paused_heldout", "c", premature=True, voice="piper", prefix_is_complete=False),
    ]
    held = summarize_turns(results)["semantic_vad"]["paused_heldout"]
    assert held["premature_cuts"] == 2 and held["voice=piper"] == "1/2" and held["voice=en-us"] == "1/1"
    assert held["prefix_complete"] == "1/1" and held["prefix_unfinished"] == "1/2"
