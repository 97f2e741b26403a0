"""Reasoning figures of ``stepaudio-rt eval``, beyond per-task accuracy (``training.evaluate``):

- **think budget** (test-time scaling): accuracy when the engine closes the think block after at most
  B tokens (``SamplingParams.think_budget``; 0 closes it at once), for B in ``BUDGETS``;
- **sessions**: held-out spoken questions asked one after another in one session, each reply (without
  its reasoning) kept in the history as the server keeps it; accuracy at turn 1 against turns 2-6;
- **partial reasoning** (think-incomplete): the reply given after the reference reasoning cut to its
  first L steps and closed (the articulation prompt of think-while-speaking), for L = 0, 0 < L < n, n;
- **reply audio length**: each reply spoken by espeak-ng (en-us, 175 wpm), the median and 90th
  percentile in seconds.

Each figure is a function of (engine, samples) returning a JSON-ready dict, so a future ``modes``
dimension (think_first / speak_first) can run the same figures per mode. Prompts are built piece by piece
exactly as the server's conversation renders them (``conversations.user_turn_pieces``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio_rt.model.audio_frontend import split_at_pauses
from stepaudio_rt.model.engine import Engine, SamplingParams, checkpoint_listen_chunk_seconds
from stepaudio_rt.model.prompt import (
    END_OF_TURN,
    GENERATION_PREFIX,
    USER_PREFIX,
    assistant_history_block,
    split_reasoning,
    system_block,
)
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT
from stepaudio_rt.training.data.tasks import TEXT_ONLY_TASKS
from stepaudio_rt.training.data.verify import check_answer
from stepaudio_rt.training.think_incomplete import CLOSE_THINK, reasoning_steps

BUDGETS = (0, 4, 16, 64, 256)
SESSION_TURNS = 6
REPLY_VOICE = "en-us"
REPLY_WPM = 175


async def append_user_turn(engine: Engine, ctx: Any, user_text: str, audio: Any, chunk_seconds: float) -> None:
    """``<|BOT|>human\\n`` + text (+ ``\\n`` when audio follows) + listen chunks + ``<|EOT|>``."""
    await engine.append_text(ctx, USER_PREFIX)
    if user_text:
        await engine.append_text(ctx, user_text)
        if audio is not None:
            await engine.append_text(ctx, "\n")
    if audio is not None:
        for chunk in split_at_pauses(audio, chunk_seconds):
            await engine.append_audio(ctx, chunk)
    await engine.append_text(ctx, END_OF_TURN)


async def _generate(engine: Engine, ctx: Any, prefix_pieces: Sequence[str], params: SamplingParams) -> str:
    child = engine.fork(ctx)
    try:
        for piece in prefix_pieces:
            await engine.append_text(child, piece)
        return "".join([d.text async for d in engine.generate(child, params)])
    finally:
        engine.release(child)


async def _single_turn_context(engine: Engine, s: Any, chunk_seconds: float) -> Any:
    ctx = engine.new_context()
    await engine.append_text(ctx, system_block(DEMO_SYSTEM_PROMPT))
    await append_user_turn(engine, ctx, s.user_text, s.audio, chunk_seconds)
    return ctx


def _acc(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if values else None


# ------------------------------------------------------------------------------------------ budgets


async def think_budget_accuracy(
    engine: Engine, samples: Sequence[Any], budgets: Sequence[int] = BUDGETS, reply_tokens: int = 48, concurrency: int = 8
) -> dict[str, Any]:
    """Accuracy per think budget, overall and per task: {"budgets", "overall", "per_task", "think_tokens"}."""
    chunk_seconds = checkpoint_listen_chunk_seconds(engine.generation_config)
    sem = asyncio.Semaphore(concurrency)
    ok: dict[int, dict[str, list[bool]]] = {b: defaultdict(list) for b in budgets}

    async def one(s: Any) -> None:
        async with sem:
            ctx = await _single_turn_context(engine, s, chunk_seconds)
            try:
                for b in budgets:
                    params = SamplingParams(temperature=0.0, max_tokens=b + reply_tokens + 4, think_budget=b)
                    text = await _generate(engine, ctx, [GENERATION_PREFIX], params)
                    ok[b][s.task].append(check_answer(s.task, text, s.label))
            finally:
                engine.release(ctx)

    await asyncio.gather(*(one(s) for s in samples))
    return {
        "budgets": list(budgets),
        "overall": {str(b): _acc([v for vs in ok[b].values() for v in vs]) for b in budgets},
        "per_task": {t: {str(b): _acc(ok[b][t]) for b in budgets} for t in sorted(ok[budgets[0]])},
    }


# ------------------------------------------------------------------------------------------ sessions


async def session_accuracy(
    engine: Engine, samples: Sequence[Any], turns: int = SESSION_TURNS, max_tokens: int = 160, concurrency: int = 4
) -> dict[str, Any]:
    """Spoken questions asked ``turns`` at a time in one session (greedy, thinking on); accuracy per turn
    index, turn 1 against turns 2..``turns``, and those later questions asked alone in a fresh session
    (``later_alone``, i.e. at turn 1). Turn 1 and the later turns are different questions, so ``turn_1``
    against ``turns_2_plus`` mixes the conversation's effect with the questions' difficulty (and ``turn_1``
    rests on one question per session); ``turns_2_plus`` against ``later_alone`` is the same questions
    with and without the conversation before them (``conversation_cost_points``)."""
    chunk_seconds = checkpoint_listen_chunk_seconds(engine.generation_config)
    spoken = [s for s in samples if s.audio is not None and s.task not in TEXT_ONLY_TASKS]
    sessions = [spoken[i : i + turns] for i in range(0, len(spoken) - turns + 1, turns)]
    per_turn: dict[int, list[bool]] = defaultdict(list)
    alone: list[bool] = []
    sem = asyncio.Semaphore(concurrency)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)

    async def one(session: Sequence[Any]) -> None:
        async with sem:
            ctx = engine.new_context()
            try:
                await engine.append_text(ctx, system_block(DEMO_SYSTEM_PROMPT))
                for k, s in enumerate(session):
                    await append_user_turn(engine, ctx, s.user_text, s.audio, chunk_seconds)
                    text = await _generate(engine, ctx, [GENERATION_PREFIX], params)
                    per_turn[k + 1].append(check_answer(s.task, text, s.label))
                    _, reply = split_reasoning(text, starts_in_think=True)
                    await engine.append_text(ctx, assistant_history_block(reply))  # reasoning dropped
            finally:
                engine.release(ctx)

    async def asked_alone(s: Any) -> None:
        async with sem:
            ctx = await _single_turn_context(engine, s, chunk_seconds)
            try:
                alone.append(check_answer(s.task, await _generate(engine, ctx, [GENERATION_PREFIX], params), s.label))
            finally:
                engine.release(ctx)

    await asyncio.gather(*(one(s) for s in sessions))
    await asyncio.gather(*(asked_alone(s) for session in sessions for s in session[1:]))
    later = [v for k, vs in per_turn.items() if k > 1 for v in vs]
    turns_2_plus, later_alone = _acc(later), _acc(alone)
    return {
        "sessions": len(sessions),
        "turns": turns,
        "accuracy_per_turn": {str(k): _acc(v) for k, v in sorted(per_turn.items())},
        "turn_1": _acc(per_turn.get(1, [])),
        "turns_2_plus": turns_2_plus,
        "later_alone": later_alone,
        # Asked alone, a question is turn 1 of a fresh session (the same context token for token), so
        # every question of the sessions has a turn-1 answer: the first ones in their session, the later
        # ones alone. Over all of them turn 1 is measured on n x turns questions instead of n.
        "turn_1_all_questions": _acc([*per_turn.get(1, []), *alone]),
        # the conversation's own cost: the same questions at turns 2.. against at turn 1, in points
        "conversation_cost_points": None if turns_2_plus is None or later_alone is None
        else round(100 * (later_alone - turns_2_plus), 1),
    }


# ---------------------------------------------------------------------------------- partial reasoning


async def partial_reasoning_accuracy(
    engine: Engine, samples: Sequence[Any], reply_tokens: int = 48, concurrency: int = 8
) -> dict[str, Any]:
    """Reply accuracy after the sample's reference reasoning cut to L steps: L = 0 (empty), 0 < L < n
    (partial: every such L), L = n (full)."""
    chunk_seconds = checkpoint_listen_chunk_seconds(engine.generation_config)
    sem = asyncio.Semaphore(concurrency)
    ok: dict[str, list[bool]] = defaultdict(list)
    by_task: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))

    async def one(s: Any) -> None:
        steps = reasoning_steps(s.think)
        if len(steps) < 2:
            return
        async with sem:
            ctx = await _single_turn_context(engine, s, chunk_seconds)
            try:
                for n in range(len(steps) + 1):
                    kind = "none" if n == 0 else ("full" if n == len(steps) else "partial")
                    pieces = [GENERATION_PREFIX] + ([" ".join(steps[:n])] if n else []) + [CLOSE_THINK]
                    text = await _generate(engine, ctx, pieces, SamplingParams(temperature=0.0, max_tokens=reply_tokens))
                    right = check_answer(s.task, text, s.label)
                    ok[kind].append(right)
                    by_task[s.task][kind].append(right)
            finally:
                engine.release(ctx)

    await asyncio.gather(*(one(s) for s in samples if s.think))
    return {
        "accuracy": {k: _acc(ok[k]) for k in ("none", "partial", "full")},
        "counts": {k: len(ok[k]) for k in ("none", "partial", "full")},
        "per_task": {t: {k: _acc(v[k]) for k in ("none", "partial", "full")} for t, v in sorted(by_task.items())},
    }


# --------------------------------------------------------------------------------- reply audio length


def reply_seconds(text: str) -> float | None:
    """Seconds of espeak-ng speech for a reply (None for an empty reply)."""
    from stepaudio_rt.training.data import synth

    text = text.strip()
    if not text:
        return None
    audio = synth.synth_espeak(text, synth.voice_by_name(REPLY_VOICE), rate_wpm=REPLY_WPM)
    return len(audio) / 16000.0


def reply_length_summary(replies: Sequence[str], starts_in_think: bool = True) -> dict[str, Any]:
    """Median and 90th percentile of the replies' spoken length (reasoning stripped; ``starts_in_think``
    as for ``split_reasoning``: False when the prompt already closed the think block)."""
    texts = [split_reasoning(r, starts_in_think=starts_in_think)[1] for r in replies]
    secs = [s for s in (reply_seconds(t) for t in texts) if s is not None]
    if not secs:
        return {"n": 0, "median_s": None, "p90_s": None, "tts": f"espeak-ng {REPLY_VOICE} {REPLY_WPM} wpm"}
    return {
        "n": len(secs),
        "median_s": round(float(np.median(secs)), 2),
        "p90_s": round(float(np.percentile(secs, 90)), 2),
        "tts": f"espeak-ng {REPLY_VOICE} {REPLY_WPM} wpm",
    }


def plot_budget_curve(result: dict[str, Any], out_path: Path) -> Path:
    """Accuracy against think budget: overall (bold) and per task."""
    from stepaudio_rt.training.plots import plt

    budgets = result["budgets"]
    xs = list(range(len(budgets)))
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for task, accs in result["per_task"].items():
        ax.plot(xs, [100 * (accs[str(b)] or 0) for b in budgets], alpha=0.45, lw=1, label=task)
    ax.plot(xs, [100 * (result["overall"][str(b)] or 0) for b in budgets], color="black", lw=2.5, label="overall")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.set_xlabel("think budget (tokens)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.set_title("held-out accuracy against think budget")
    fig.tight_layout()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
