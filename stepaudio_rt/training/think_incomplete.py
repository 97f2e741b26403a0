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
two keys). Measured on 300 training samples of the v2 mixture with the demo tokenizer (digits split):
reasoning is 1-3 sentences, median 40 tokens (10th percentile 24, 90th 63; column arithmetic 43, a
three-operand problem 84, a measured-value comparison 25-54); replies median 9 tokens (90th 14). So:

- ``reasoning_segment_tokens`` = 16: the first articulation round comes after about the first sentence's
  worth of a short chain, and a median chain gives 2-3 rounds; the paper's 80 tokens would be longer than
  90% of these chains, and think-first would degenerate into think-before-speak;
- ``reply_segment_tokens`` = 6: the first round is about the restated question ("46 plus 37 is"), which
  needs no reasoning, and the second carries the result; the paper's ~20 text tokens per round would be
  the whole reply;
- ``segment_boundary`` = "sentence": a segment ends at the first sentence end after those 16 tokens, so
  an articulation round sees whole steps, as these examples cut them. Measured on the v2 checkpoint
  (`eval -n 400`, rounds in lockstep): think_first 63.5% with 16-token cuts (mid-sentence thoughts it
  never saw: "14 plus 29 is 33." after "... 4 plus 9 is 13, 1"), 84.2% with sentence segments (thinking
  89.0%); speak_first 68.2% -> 78.8-79.2% (two runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from stepaudio_rt.model.mind_paced import SENTENCE_END_MARKS
from stepaudio_rt.model.tokenizer import EOT, THINK_CLOSE, StepAudioTokenizer
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT
from stepaudio_rt.training.conversations import UserTurn, prompt_ids
from stepaudio_rt.training.sft import SftExample

REASONING_SEGMENT_TOKENS = 16
REPLY_SEGMENT_TOKENS = 6
SEGMENT_BOUNDARY = "sentence"
CLOSE_THINK = f"\n{THINK_CLOSE}\n"  # closes the partial thought in every articulation prompt
CONTINUATION_SHARE = 0.3

_SENTENCE_END = re.compile(rf"(?<=[{re.escape(SENTENCE_END_MARKS)}])\s+")  # as the runtime cuts segments


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


def think_while_speaking_defaults() -> dict[str, int | str]:
    """The generation_config.json keys the think-while-speaking runtime reads."""
    return {
        "reasoning_segment_tokens": REASONING_SEGMENT_TOKENS,
        "reply_segment_tokens": REPLY_SEGMENT_TOKENS,
        "segment_boundary": SEGMENT_BOUNDARY,
    }
