"""The committed demo checkpoint as a reasoning model, through the serving engine: it works a spoken
two-step problem out in its think block before answering, and keeps answering right later in a spoken
session whose history is rendered as the server renders it (replies kept, reasoning dropped).

Every question uses a held-out voice and operand pairs reserved for evaluation (never trained on)."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest

from stepaudio_rt.settings import DEMO_CHECKPOINT
from tests.conftest import speak_held_out_voice

pytestmark = [
    pytest.mark.skipif(not (DEMO_CHECKPOINT / "config.json").exists(), reason="demo checkpoint not built"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]


def _with_engine(fn: Any) -> Any:
    from stepaudio_rt.model.torch_engine import TorchEngine

    async def run() -> Any:
        engine = TorchEngine.from_pretrained(DEMO_CHECKPOINT, progress=False)
        try:
            return await fn(engine)
        finally:
            await engine.aclose()

    return asyncio.run(run())


def test_committed_demo_checkpoint_reasons_through_a_spoken_two_step_problem() -> None:
    """"what is 25 plus 17 minus 16": a carry then a borrow, both operand pairs held out. With thinking
    the reply is right and the think block holds the working; the reply itself stays short."""
    from stepaudio_rt.model.prompt import split_reasoning
    from stepaudio_rt.training.data.tasks import is_eval_operands
    from stepaudio_rt.training.data.verify import check_answer, extract_number
    from stepaudio_rt.training.evaluate import answer_sample

    assert is_eval_operands(25, 17) and is_eval_operands(42, 16)
    audio = speak_held_out_voice("what is 25 plus 17 minus 16")
    replies = _with_engine(lambda engine: answer_sample(engine, "", audio, modes={"thinking": _thinking_prefix()}))
    text = replies["thinking"]
    reasoning, reply = split_reasoning(text, starts_in_think=True)
    assert check_answer("spoken_multistep", text, "26"), text
    assert extract_number(reply) == 26, text
    assert "42" in reasoning, text  # the intermediate step is worked out in the think block
    assert len(reply.split()) <= 12, text  # the reply restates and answers; the working is not spoken


def test_committed_demo_checkpoint_answers_every_turn_of_a_spoken_session() -> None:
    """Three spoken questions in one session (system prompt, each earlier reply kept without its
    reasoning): the later turns are answered as well as the first (the v1 model lost track here)."""
    from stepaudio_rt.training.data.tasks import Sample, is_eval_operands
    from stepaudio_rt.training.eval_reasoning import session_accuracy

    questions = [("what is 36 plus 26", 36, 26, 62), ("what is 33 minus 17", 33, 17, 16),
                 ("how much more is 31 than 19", 31, 19, 12)]
    samples = []
    for text, a, b, answer in questions:
        assert is_eval_operands(a, b)
        task = "spoken_multistep" if text.startswith("how much") else "spoken_arithmetic"
        samples.append(Sample(task, speak_held_out_voice(text), "", "", "", str(answer), {}))
    result = _with_engine(lambda engine: session_accuracy(engine, samples, turns=len(samples)))
    assert result["sessions"] == 1
    assert result["accuracy_per_turn"] == {"1": 1.0, "2": 1.0, "3": 1.0}, result
    assert result["later_alone"] == 1.0, result  # turns 2-3 asked again, each in a fresh session
    assert result["turn_1_all_questions"] == 1.0 and result["conversation_cost_points"] == 0.0, result


def _thinking_prefix() -> str:
    from stepaudio_rt.model.prompt import GENERATION_PREFIX

    return GENERATION_PREFIX
