"""Think-incomplete SFT data (MPS; MGRD stage 5): the articulation role of think-while-speaking.

In think-while-speaking the articulation brain (the same weights) speaks from a thought that is still
being written: its prompt is the conversation, ``<|BOT|>assistant\\n<think>\\n``, the reasoning so far,
``\\n</think>\\n`` and the reply spoken so far, and it continues the reply. The model must learn to give
the full, right reply from a partial thought. Two kinds of example (the paper's recipe, at toy scale):

- **cut reasoning**: the reasoning cut to its first L steps, L drawn uniformly from 0..n (steps are the
  reasoning's sentences, n of them; L = 0 is the empty block of speak-first's first round), closed with
  ``</think>``, and the FULL original reply as the target (not rewritten to fit the partial thought);
- **continuation**: the same, plus the first rounds of the reply already in the prompt (cut at a
  multiple of ``REPLY_SEGMENT_TOKENS``, the runtime's round size), the rest of the reply as the target.

The prompt pieces are tokenised one by one, as the engine appends them; the reply so far is a prefix of
the reply's own token ids, exactly as the runtime feeds back what it already generated.

Runtime defaults written to the checkpoint's ``generation_config.json`` (the lead's runtime reads these
two keys): the demo model's reasoning is 1-3 sentences of 25-70 tokens (column arithmetic ~35 per step,
a measured-value comparison ~30), so a 16-token reasoning segment lands the first articulation round
after about half of the first step and gives 2-4 rounds per chain, where the paper's 80 tokens would be
longer than most whole chains (think-first would degenerate to think-before-speak). Its replies are
8-16 tokens ("46 plus 37 is 83." is 12 with digits split), so 6-token reply rounds give 2-3 rounds per
reply, the paper's ~20 text tokens scaled to these short replies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from stepaudio_rt.model.tokenizer import EOT, THINK_CLOSE, StepAudioTokenizer
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT
from stepaudio_rt.training.conversations import UserTurn, prompt_ids
from stepaudio_rt.training.sft import SftExample

REASONING_SEGMENT_TOKENS = 16
REPLY_SEGMENT_TOKENS = 6
CLOSE_THINK = f"\n{THINK_CLOSE}\n"  # closes the partial thought in every articulation prompt
CONTINUATION_SHARE = 0.3

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def reasoning_steps(think: str) -> list[str]:
    """The reasoning's sentences ("4.4 per second" is not a boundary: no space follows its dot)."""
    return [s for s in _SENTENCE_END.split(think.strip()) if s]


def partial_reasoning(think: str, n_steps: int) -> str:
    return " ".join(reasoning_steps(think)[:n_steps])


def articulation_prompt_ids(
    tokenizer: StepAudioTokenizer,
    history: Sequence[tuple[UserTurn, str]],
    current: UserTurn,
    reasoning_so_far: str,
    reply_so_far_ids: Sequence[int] = (),
    system_prompt: str = DEMO_SYSTEM_PROMPT,
) -> tuple[list[int], list[int]]:
    """(token ids, chunk ids) of an articulation round's prompt: conversation + ``<|BOT|>assistant\\n
    <think>\\n`` + reasoning so far + ``\\n</think>\\n`` + the reply's first tokens."""
    ids, chunks = prompt_ids(tokenizer, history, current, system_prompt)
    if reasoning_so_far:
        ids += tokenizer.encode(reasoning_so_far)
    ids += tokenizer.encode(CLOSE_THINK)
    ids += list(reply_so_far_ids)
    return ids, chunks


def think_incomplete_example(
    tokenizer: StepAudioTokenizer,
    rng: np.random.Generator,
    history: Sequence[tuple[UserTurn, str]],
    current: UserTurn,
    think: str,
    reply: str,
    task: str,
    continuation_share: float = CONTINUATION_SHARE,
    reply_segment_tokens: int = REPLY_SEGMENT_TOKENS,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
) -> SftExample:
    """One example: reasoning cut to its first L steps (L uniform in 0..n), the full reply as target; with
    probability ``continuation_share`` the reply's first rounds move into the prompt."""
    steps = reasoning_steps(think)
    n_steps = int(rng.integers(0, len(steps) + 1))
    reply_ids = tokenizer.encode(reply)
    given = 0
    rounds = [k for k in range(reply_segment_tokens, len(reply_ids), reply_segment_tokens)]
    if rounds and rng.random() < continuation_share:
        given = rounds[int(rng.integers(len(rounds)))]
    ids, chunks = articulation_prompt_ids(
        tokenizer, history, current, " ".join(steps[:n_steps]), reply_ids[:given], system_prompt
    )
    start = len(ids)
    ids += reply_ids[given:] + tokenizer.encode(EOT)
    kind = "continue" if given else "cut"
    return SftExample(np.asarray(ids, dtype=np.int32), start, chunks, f"ti_{kind}_{task}")


def think_while_speaking_defaults() -> dict[str, int]:
    """The generation_config.json keys the think-while-speaking runtime reads."""
    return {"reasoning_segment_tokens": REASONING_SEGMENT_TOKENS, "reply_segment_tokens": REPLY_SEGMENT_TOKENS}
