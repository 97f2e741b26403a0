"""The response scheduler on the real TorchEngine with a tiny checkpoint (no server)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from stepaudio_rt.model.audio_frontend import split_at_pauses
from stepaudio_rt.model.torch_engine import TorchEngine
from stepaudio_rt.streaming.conversation import TextPart, Turn
from stepaudio_rt.streaming.scheduler import (
    ReasoningDelta,
    ResponseFinished,
    ResponseOptions,
    Scheduler,
    TextDelta,
)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> TorchEngine:
    return TorchEngine.from_pretrained(tiny_checkpoint, max_contexts=16, max_context_tokens=2048, progress=False)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


async def test_listen_while_thinking_prefills_chunks_and_matches_a_rebuild(engine: TorchEngine) -> None:
    sched = Scheduler(engine, None, instructions="Be brief.", listen_chunk_seconds=1.0)
    sched.conversation.insert(Turn("u0", "user", [TextPart("hello")]))
    sched.start_listening("u1")
    audio = _noise(3.4)
    for i in range(0, len(audio), 640):  # 40 ms appends, as a client streams them
        sched.feed(audio[i : i + 640])
        await asyncio.sleep(0)
    result = await sched.commit_listening()
    # The live cut equals the offline one (at pauses, at most 1 s each); all but the last chunk were queued
    # while "speaking", only the tail was left to encode at end of turn.
    want = split_at_pauses(audio, 1.0)
    assert len(want) >= 4 and all(len(c) <= 16000 for c in want)
    got = result.turn.parts[0].chunks
    assert [len(c) for c in got] == [len(c) for c in want]
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert result.stats.chunks_before_end == len(want) - 1
    assert result.stats.tail_seconds == pytest.approx(len(want[-1]) / 16000)
    assert result.stats.adopted
    live = list((await sched.conversation.sync()).token_ids)
    # Invalidate and rebuild from the stored turns: chunk boundaries are kept, so the tokens are identical.
    sched.conversation.set_instructions("Be brief!")
    sched.conversation.set_instructions("Be brief.")
    rebuilt = list((await sched.conversation.sync()).token_ids)
    assert rebuilt == live
    assert live.count(engine.tokenizer.ids.audio_start) == len(want)
    await sched.aclose()


async def test_response_streams_reasoning_then_reply_and_updates_history(engine: TorchEngine) -> None:
    sched = Scheduler(engine, None)
    sched.conversation.insert(Turn("u0", "user", [TextPart("What is 2+2?")]))
    run = sched.response(ResponseOptions(audio=False, max_output_tokens=40, think_budget=5, seed=3))
    events = [ev async for ev in run.events()]
    fin = events[-1]
    assert isinstance(fin, ResponseFinished)
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    reply = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert fin.usage.reasoning_tokens <= 5 + len(engine.tokenizer.think_close_ids)
    assert fin.reasoning_text == reasoning.strip()
    assert fin.reply_text == reply.strip()
    assert "<think>" not in reply and "</think>" not in reply
    assert fin.usage.input_tokens > 0 and fin.usage.output_tokens > 0
    assert fin.timings.prefill_s is not None and fin.timings.first_token_s is not None
    await sched.aclose()


async def test_cancel_stops_generation_at_once(engine: TorchEngine) -> None:
    sched = Scheduler(engine, None)
    sched.conversation.insert(Turn("u0", "user", [TextPart("Talk.")]))
    run = sched.response(ResponseOptions(audio=False, max_output_tokens=1500, think_budget=1000, seed=1))
    seen = 0
    fin = None
    async for ev in run.events():
        if isinstance(ev, ResponseFinished):
            fin = ev
            break
        seen += 1
        if seen == 3:
            run.cancel()
    assert fin is not None and fin.finish_reason == "cancelled"
    assert fin.usage.output_tokens < 1500
    for _ in range(50):
        if engine.stats()["active_streams"] == 0:
            break
        await asyncio.sleep(0.02)
    assert engine.stats()["active_streams"] == 0
    await sched.aclose()


async def test_empty_instructions_use_the_checkpoints_default_system_prompt(engine: TorchEngine) -> None:
    engine.generation_config = {**engine.generation_config, "default_system_prompt": "Answer briefly."}
    try:
        ctx = await Scheduler(engine, None, instructions="").conversation.sync()
        assert engine.tokenizer.decode(ctx.token_ids) == "<|BOT|>system\nAnswer briefly.<|EOT|>"
        own = await Scheduler(engine, None, instructions="Be a pirate.").conversation.sync()
        assert engine.tokenizer.decode(own.token_ids) == "<|BOT|>system\nBe a pirate.<|EOT|>"
    finally:
        engine.generation_config.pop("default_system_prompt")
    assert list((await Scheduler(engine, None, instructions="").conversation.sync()).token_ids) == []
