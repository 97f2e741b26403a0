"""The evaluation summary: per-task, per-voice and self-cognition figures from scored replies."""

from __future__ import annotations

import pytest

from stepaudio_rt.training.evaluate import _summarise, format_summary


def _row(task: str, voice: str | None, ok: tuple[bool, bool], reply: str = "ok") -> dict:
    return {
        "task": task,
        "voice": voice,
        "replies": {"thinking": reply, "empty_think": reply},
        "correct": {"thinking": ok[0], "empty_think": ok[1]},
    }


def test_summary_counts_tasks_voices_and_claims_of_not_hearing() -> None:
    rows = [
        _row("spoken_arithmetic", "en-us+f4", (True, True)),
        _row("spoken_arithmetic", "en-us+f4", (False, True)),
        _row("spoken_arithmetic", "en-029+m6", (False, False)),
        _row("loudness", "en-029+m6", (True, True)),
        _row("text_chat", None, (True, True)),
        _row("self_cognition", "en-us+f4", (False, False), "Sorry, I can't hear audio."),
    ]
    s = _summarise(rows, ["thinking", "empty_think"])
    assert s["n"] == 6
    assert s["counts"] == {"loudness": 1, "self_cognition": 1, "spoken_arithmetic": 3, "text_chat": 1}
    assert s["accuracy"]["thinking"]["spoken_arithmetic"] == 1 / 3
    assert s["accuracy"]["empty_think"]["spoken_arithmetic"] == 2 / 3
    # text-only samples have no voice and are left out of the per-voice figures
    assert s["voice_counts"] == {"en-029+m6": 2, "en-us+f4": 3}
    assert s["accuracy_by_voice"]["thinking"] == {"en-029+m6": 0.5, "en-us+f4": 1 / 3}
    assert s["accuracy_by_voice"]["empty_think"] == {"en-029+m6": 0.5, "en-us+f4": 2 / 3}
    assert s["self_cognition_error_rate"] == {"thinking": 1.0, "empty_think": 1.0}
    assert s["cannot_hear_claim_rate"]["thinking"] == 1 / 6
    text = format_summary(s)
    assert "weakest voices (thinking): en-us+f4 33% of 3, en-029+m6 50% of 2" in text


def test_eval_can_compute_one_reasoning_figure_alone() -> None:
    """``stepaudio-rt eval --figures partial``: the partial-reasoning figure alone (before/after
    think-incomplete SFT), and an unknown figure name is refused with the known ones listed."""
    from stepaudio_rt.training.evaluate import ReasoningFigures

    figures = ReasoningFigures.full().only(["partial"])
    assert figures.partial_n == ReasoningFigures.full().partial_n > 0
    assert figures.budget_n == 0 and figures.sessions == 0
    with pytest.raises(ValueError, match="budgets.*choose from budget, sessions, partial"):
        ReasoningFigures.full().only(["budgets"])


def test_summary_gives_each_accuracy_its_wilson_interval() -> None:
    """18 of 24 right is 75%, but the sample only places it between 55% and 88% (Wilson, 95%): the
    interval is in eval.json and beside each task in the table; it narrows as n grows."""
    from stepaudio_rt.training.evaluate import wilson_interval

    rows = [_row("beep_bursts", None, (i < 18, i < 12)) for i in range(24)]
    s = _summarise(rows, ["thinking", "empty_think"])
    lo, hi = s["accuracy_ci95"]["thinking"]["beep_bursts"]
    assert lo < 0.75 < hi
    assert lo == pytest.approx(0.551, abs=0.002) and hi == pytest.approx(0.880, abs=0.002)
    assert s["accuracy_ci95"]["empty_think"]["beep_bursts"][1] < hi  # 12 of 24 sits lower
    wide, narrow = wilson_interval(18, 24), wilson_interval(180, 240)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert "beep_bursts" in format_summary(s) and "55-88%" in format_summary(s)
