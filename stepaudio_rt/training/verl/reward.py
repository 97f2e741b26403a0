"""verl reward function of the MGRD RL stage: ``custom_reward_function.path=<this file>``,
``custom_reward_function.name=compute_score``.

Same reward as the toy-scale stage (``training.rewards``), written self-contained so that verl's workers
need nothing but the project's verifiers (``verify.check_answer``, the one ``stepaudio-rt eval`` scores with):

- audio questions (``extra_info["modality"] == "audio"``, or a ``data_source`` ending in ``_audio``):
  ``0.8 x correct + 0.2 x reasoning present`` (a well-formed, non-empty think block);
- text questions: ``1`` if correct else ``0``;
- a malformed think block scores ``0``: never closed (no reply), a second ``</think>`` or an extra
  ``<think>`` (a guess hidden in a fake block must not be paid).

verl decodes the response with ``skip_special_tokens=True``: ``<|EOT|>`` is gone, ``<think>`` /
``</think>`` stay (the project's tokenizers add them as normal tokens). The prompt's generation prefix
(the chat template's ``<|BOT|>assistant\\n<think>\\n``) opens the block, so a response is
``reasoning</think>reply``; one that opens the block itself (a template without the prefix) is accepted
the same way. verl writes the score at the last response token (terminal reward).
"""

from __future__ import annotations

from typing import Any

from stepaudio_rt.training.data.tasks import TEXT_ONLY_TASKS
from stepaudio_rt.training.data.verify import check_answer

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CORRECT_WEIGHT, REASONING_WEIGHT = 0.8, 0.2


def parse_response(text: str) -> tuple[str, str, bool]:
    """(reasoning, reply, well formed) of a decoded response."""
    body = text.lstrip()
    if body.startswith(THINK_OPEN):
        body = body[len(THINK_OPEN) :]
    if THINK_CLOSE not in body:
        return body.strip(), "", False
    think, reply = body.split(THINK_CLOSE, 1)
    if THINK_OPEN in body or THINK_CLOSE in reply:
        return think.strip(), reply.strip(), False
    return think.strip(), reply.replace("<|EOT|>", "").strip(), True


def is_audio(data_source: str, extra_info: dict[str, Any] | None) -> bool:
    info = extra_info or {}
    if info.get("task") in TEXT_ONLY_TASKS:
        return False
    if "modality" in info:
        return info["modality"] == "audio"
    return str(data_source).endswith("_audio")


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """verl's custom reward signature; returns ``score`` plus logged fields (``correct``,
    ``reasoning``, ``well_formed``, ``audio``). ``extra_info["task"]`` names the verifier."""
    info = extra_info or {}
    task = info.get("task")
    if task is None:
        raise ValueError(f"extra_info has no 'task' (data_source {data_source!r}); the dataset builder writes it")
    audio = is_audio(data_source, info)
    think, reply, well_formed = parse_response(solution_str)
    correct = well_formed and check_answer(task, reply, str(ground_truth))
    reasoning = well_formed and bool(think)
    if not well_formed:
        score = 0.0
    elif audio:
        score = CORRECT_WEIGHT * correct + REASONING_WEIGHT * reasoning
    else:
        score = float(correct)
    return {"score": float(score), "correct": bool(correct), "reasoning": bool(reasoning),
            "well_formed": well_formed, "audio": audio}
