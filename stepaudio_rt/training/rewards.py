"""Verifiable rewards of the RL stage (MGRD stage d, the paper's multimodal RL).

A completion is what the model generates after the serving prompt's ``<think>\\n``: reasoning, ``</think>``,
the reply (the stop token itself carries no text). Answers are checked by ``verify.check_answer``, the verifier
``stepaudio-rt eval`` scores with, so the reward and the held-out accuracy measure the same thing.

- **audio questions**: ``0.8 x correct + 0.2 x reasoning present``, where reasoning present means a
  well-formed think block whose content is not empty (the paper's format reward: it keeps the model from
  dropping its reasoning on audio questions, where answering straight away is tempting);
- **text questions** (``TEXT_ONLY_TASKS``): ``1`` if correct else ``0``;
- with ``format_reward=False`` (the ablation) audio questions get the binary text reward too.

**Malformed think block.** The completion starts inside ``<think>``, so it is well formed when it closes
the block exactly once and opens no other: ``... </think> reply``. Two malformations occur:

- never closed (the token budget ran out inside the reasoning): there is no reply, so nothing is
  correct and no reasoning counts; reward ``0``;
- an extra ``<think>`` or a second ``</think>``: reward ``0`` as well. Why not score the text after the
  last ``</think>`` (what ``check_answer`` alone would do): a policy could then put a guess inside a fake
  block and another after it, and be paid for a reply the user never sees as the answer; paying nothing
  for a broken format is the rule-based format check the paper's reward implies, and it is what the
  self-distillation filter already requires (a closed block) of a correct chain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stepaudio_rt.model.tokenizer import THINK_CLOSE, THINK_OPEN
from stepaudio_rt.training.data.tasks import TEXT_ONLY_TASKS
from stepaudio_rt.training.data.verify import check_answer

AUDIO_CORRECT_WEIGHT = 0.8
AUDIO_REASONING_WEIGHT = 0.2


@dataclass(frozen=True)
class ParsedCompletion:
    think: str  # the reasoning, stripped ("" for the empty block)
    reply: str  # the text after </think>, stripped ("" when the block never closed)
    well_formed: bool
    problem: str  # "" when well formed, else "unclosed" or "extra_tags"


def parse_completion(text: str) -> ParsedCompletion:
    """Split a continuation of ``<think>\\n`` into reasoning and reply, and say whether the think block is
    well formed (closed exactly once, no other ``<think>``)."""
    if THINK_CLOSE not in text:
        return ParsedCompletion(text.strip(), "", False, "unclosed")
    think, reply = text.split(THINK_CLOSE, 1)
    if THINK_OPEN in text or THINK_CLOSE in reply:
        return ParsedCompletion(think.strip(), reply.strip(), False, "extra_tags")
    return ParsedCompletion(think.strip(), reply.replace("<|EOT|>", "").strip(), True, "")


def think_tokens(tokenizer: Any, text: str) -> int:
    """Length of the think block of a continuation of ``<think>\n``, in ``tokenizer``'s tokens (0 when
    empty): the think length the RL curves and the MGRD stage table report."""
    think = parse_completion(text).think
    return len(tokenizer.encode(think)) if think else 0


@dataclass(frozen=True)
class Reward:
    reward: float
    correct: bool
    reasoning: bool  # a well-formed, non-empty think block
    well_formed: bool
    audio: bool  # scored as an audio question

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_audio_question(task: str, has_audio: bool) -> bool:
    return has_audio and task not in TEXT_ONLY_TASKS


def score(task: str, completion: str, label: str, has_audio: bool, format_reward: bool = True) -> Reward:
    """The reward of one completion (module docstring)."""
    parsed = parse_completion(completion)
    audio = is_audio_question(task, has_audio)
    if not parsed.well_formed:
        return Reward(0.0, False, False, False, audio)
    correct = check_answer(task, parsed.reply, label)
    reasoning = bool(parsed.think)
    if audio and format_reward:
        value = AUDIO_CORRECT_WEIGHT * correct + AUDIO_REASONING_WEIGHT * reasoning
    else:
        value = float(correct)
    return Reward(float(value), correct, reasoning, True, audio)


__all__ = [
    "AUDIO_CORRECT_WEIGHT",
    "AUDIO_REASONING_WEIGHT",
    "ParsedCompletion",
    "Reward",
    "is_audio_question",
    "parse_completion",
    "score",
    "think_tokens",
]
