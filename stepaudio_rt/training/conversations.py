"""Training examples rendered the way the realtime server renders a session, single-turn or multi-turn.

The server (``streaming/conversation.py``) prefills, piece by piece: the system block; for every past
user turn ``<|BOT|>human\\n``, its typed text, a ``\\n`` only when audio follows the text, each listen
chunk as its own audio block, ``<|EOT|>``; for every past assistant turn ``<|BOT|>assistant\\n{reply}
<|EOT|>`` with the reasoning dropped; then the current user turn and the generation prefix
``<|BOT|>assistant\\n<think>\\n``. :func:`tokenize_dialog` produces exactly those token ids (each piece
tokenised on its own, as the engine appends it), and trains only on the last assistant turn: the past
replies carry no think block, so training on them would teach answering without one.

:func:`make_dialogs` builds the multi-turn mixture from already-synthesised samples (their clips and
cached encoder features are reused, no new synthesis): 2-6 turns mixing spoken and typed questions, topic
switches (any task may follow any other) and typed arithmetic follow-ups ("And plus 10 more?") whose
answer depends on the previous reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stepaudio_rt.model.prompt import (
    END_OF_TURN,
    GENERATION_PREFIX,
    USER_PREFIX,
    assistant_history_block,
    system_block,
)
from stepaudio_rt.model.tokenizer import StepAudioTokenizer
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT
from stepaudio_rt.training.data import tasks as tk
from stepaudio_rt.training.sft import SftExample, spoken_token_ids, target_text

ARITHMETIC_TASKS = frozenset({"spoken_arithmetic", "text_arithmetic", "spoken_multistep", "follow_up"})
FOLLOW_UPS = ("And plus {k} more?", "And minus {k}?", "What about plus {k}?", "Now take away {k}.")


@dataclass
class UserTurn:
    """A user turn: typed text and/or audio given as chunk ids of the feature store (prompt order)."""

    text: str = ""
    chunk_ids: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)


@dataclass
class DialogTurn:
    """One question with what the assistant should think and say, and how to verify the reply."""

    user: UserTurn
    think: str
    reply: str
    task: str
    label: str
    meta: dict[str, Any] = field(default_factory=dict)


def user_turn_pieces(turn: UserTurn) -> list[str | int]:
    """The server's append calls for a user turn: strings are text pieces, ints are audio chunk indexes
    into ``turn.chunk_tokens`` (``render_turn`` + ``render_user_parts``)."""
    pieces: list[str | int] = [USER_PREFIX]
    if turn.text:
        pieces.append(turn.text)
        if turn.chunk_ids:
            pieces.append("\n")
    pieces.extend(range(len(turn.chunk_ids)))
    pieces.append(END_OF_TURN)
    return pieces


def prompt_ids(
    tokenizer: StepAudioTokenizer,
    history: Sequence[tuple[UserTurn, str]],
    current: UserTurn,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
) -> tuple[list[int], list[int]]:
    """(token ids up to and including the generation prefix, feature-store chunk ids in prompt order)."""
    ids = tokenizer.encode(system_block(system_prompt)) if system_prompt else []
    chunks: list[int] = []
    for user, reply in [*history, (current, None)]:
        for piece in user_turn_pieces(user):
            if isinstance(piece, int):
                ids += tokenizer.audio_block_ids(user.chunk_tokens[piece])
                chunks.append(user.chunk_ids[piece])
            else:
                ids += tokenizer.encode(piece)
        if reply is not None:
            ids += tokenizer.encode(assistant_history_block(reply))
    ids += tokenizer.encode(GENERATION_PREFIX)
    return ids, chunks


def tokenize_dialog(
    tokenizer: StepAudioTokenizer,
    history: Sequence[tuple[UserTurn, str]],
    current: UserTurn,
    think: str,
    reply: str,
    task: str,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
    spoken_text: str | None = None,
) -> SftExample:
    """An SFT example: the rendered session, then the trained target (reasoning or the empty think
    block, ``</think>``, reply, ``<|EOT|>``). ``spoken_text`` (the alignment-loss target) is only used for
    a single-turn example, where the example's audio is exactly the clip that says it."""
    ids, chunks = prompt_ids(tokenizer, history, current, system_prompt)
    start = len(ids)
    ids += tokenizer.encode(target_text(think, reply))
    spoken = None
    if spoken_text and current.chunk_ids and not any(u.chunk_ids for u, _ in history):
        spoken = spoken_token_ids(tokenizer, spoken_text)
    return SftExample(np.asarray(ids, dtype=np.int32), start, chunks, task, spoken)


# --------------------------------------------------------------------------------- dialog sampling


def typed_arithmetic(rng: np.random.Generator, split: tk.Split) -> DialogTurn:
    s = tk.gen_text_arithmetic(rng, split, cot=True)
    return DialogTurn(UserTurn(s.user_text), s.think, s.answer, s.task, s.label, dict(s.meta))


def follow_up(rng: np.random.Generator, previous: int, split: tk.Split = "train") -> DialogTurn:
    """A typed follow-up on the previous numeric answer: "And plus 10 more?" -> "83 plus 10 is 93.".
    In training the pair (previous, k) is never a held-out operand pair."""
    for _ in range(100):
        template = tk._choice(rng, FOLLOW_UPS)
        op = "+" if "plus" in template else "-"
        k = int(rng.integers(1, 40)) if op == "+" else int(rng.integers(1, max(2, min(40, previous + 1))))
        if op == "-" and k > previous:
            op = "+"
            template = FOLLOW_UPS[0]
        if split == "eval" or not tk.is_eval_operands(previous, k):
            break
    p = {"ops": [op], "operands": [previous, k], "steps": [tk._apply(previous, op, k)]}
    p["result"] = p["steps"][0]
    think = f"The last answer was {previous}. " + tk.arith_working(p)
    return DialogTurn(
        UserTurn(template.format(k=k)), think, tk.arith_reply(p), "follow_up", str(p["result"]), p
    )


def sample_turn(sample: Any, chunk_ids: list[int], chunk_tokens: list[int]) -> DialogTurn:
    """A data-set sample as a dialog turn (spoken when it has audio)."""
    user = UserTurn(sample.user_text, list(chunk_ids), list(chunk_tokens))
    return DialogTurn(user, sample.think, sample.answer, sample.task, sample.label, dict(sample.meta))


def make_dialog(
    rng: np.random.Generator,
    pool: Sequence[DialogTurn],
    split: tk.Split,
    min_turns: int = 2,
    max_turns: int = 6,
    typed_share: float = 0.25,
    follow_up_share: float = 0.35,
) -> list[DialogTurn]:
    """One session: ``min_turns``..``max_turns`` questions drawn from ``pool`` (any task after any other:
    topic switches), a ``typed_share`` of them typed arithmetic, and after a numeric answer a typed
    follow-up with probability ``follow_up_share``."""
    n = int(rng.integers(min_turns, max_turns + 1))
    turns: list[DialogTurn] = []
    while len(turns) < n:
        prev = turns[-1] if turns else None
        if prev is not None and prev.task in ARITHMETIC_TASKS and rng.random() < follow_up_share:
            turns.append(follow_up(rng, int(prev.label), split))  # type: ignore[union-attr]
        elif rng.random() < typed_share:
            turns.append(typed_arithmetic(rng, split))
        else:
            turns.append(pool[int(rng.integers(len(pool)))])
    return turns


def dialog_example(
    tokenizer: StepAudioTokenizer,
    turns: Sequence[DialogTurn],
    think: bool,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
) -> SftExample:
    """The SFT example of a session's last turn (past replies without reasoning)."""
    history = [(t.user, t.reply) for t in turns[:-1]]
    last = turns[-1]
    task = "dialog_" + last.task
    return tokenize_dialog(tokenizer, history, last.user, last.think if think else "", last.reply, task, system_prompt)


__all__ = [
    "DialogTurn",
    "UserTurn",
    "dialog_example",
    "follow_up",
    "make_dialog",
    "prompt_ids",
    "sample_turn",
    "tokenize_dialog",
    "typed_arithmetic",
    "user_turn_pieces",
]
