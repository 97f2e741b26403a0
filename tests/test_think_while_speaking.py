"""Think-while-speaking (Mind-Paced Speaking) on the real TorchEngine, below the server.

The prompts each articulation round sends are checked token for token against the template; cancel is
checked at the level of the engine's decode steps; pacing with the real Piper voice.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stepaudio_rt.model.engine import Context, SamplingParams
from stepaudio_rt.model.mind_paced import (
    MindPacedConfig,
    MindPacedGeneration,
    ReasoningEnded,
    ReplyText,
    RoundStarted,
    articulation_suffix,
)
from stepaudio_rt.model.prompt import GENERATION_PREFIX, USER_PREFIX, split_reasoning, system_block
from stepaudio_rt.model.torch_engine import TorchEngine
from stepaudio_rt.streaming.conversation import TextPart, Turn
from stepaudio_rt.streaming.phrases import PhraseChunker
from stepaudio_rt.streaming.pipeline import AudioDelta, ReasoningDelta, ResponseFinished, ResponseOptions
from stepaudio_rt.streaming.scheduler import Scheduler
from stepaudio_rt.streaming.think_while_speaking import ThinkWhileSpeakingRun

PROMPT = system_block("Be brief.") + USER_PREFIX + "What is two plus three?<|EOT|>"


class RecordingEngine(TorchEngine):
    """The real engine, noting the token ids each context receives and the streams live at each step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[tuple[int, list[int]]] = []
        self.steps: list[tuple[float, int]] = []  # (time, streams not cancelled when the step began)

    async def append_tokens(self, ctx: Context, token_ids: Any) -> Any:
        self.received.append((ctx.id, list(token_ids)))
        return await super().append_tokens(ctx, token_ids)

    def _decode_step(self) -> None:
        live = sum(1 for s in self._streams if not s.cancel.cancelled and not s.ctx.released)
        self.steps.append((time.perf_counter(), live))
        super()._decode_step()


def _engine(path: Path) -> RecordingEngine:
    from stepaudio_rt.model.checkpoint import load_checkpoint

    ck = load_checkpoint(path, progress=False)
    engine = RecordingEngine(ck.model, ck.tokenizer, max_contexts=12, max_context_tokens=2048)
    engine.generation_config = ck.generation_config
    return engine


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path) -> RecordingEngine:
    return _engine(tiny_checkpoint)


@pytest.fixture(scope="module")
def endless_engine(endless_checkpoint: Path) -> RecordingEngine:
    return _engine(endless_checkpoint)


async def _free_slots_when_idle(engine: TorchEngine) -> int:
    """Free KV slots once every job queued so far (releases included) has run on the worker thread."""
    probe = engine.new_context()
    await engine.flush(probe)  # a job: it runs after everything queued before it
    free = engine.cache.free_slots + 1  # + the probe's own slot
    engine.release(probe)
    return free


async def _base(engine: TorchEngine) -> Context:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT + GENERATION_PREFIX)
    await engine.flush(ctx)
    return ctx


@pytest.mark.parametrize("mode", ["speak_first", "think_first"])
async def test_articulation_prompts_are_the_template_token_for_token(endless_engine: RecordingEngine, mode: str) -> None:
    engine = endless_engine
    tok = engine.tokenizer
    budget = 40  # ten segments: reasoning outlasts several rounds however the two streams interleave
    greedy = SamplingParams(temperature=0.0, stop_token_ids=tuple(tok.stop_token_ids))
    # The formulation stream is an ordinary greedy decode from the same prefix: replay it for reference.
    ref_ctx = await _base(engine)
    reference = [
        d.text
        async for d in engine.generate(ref_ctx, SamplingParams(temperature=0.0, max_tokens=budget, think_budget=budget))
        if d.finish_reason is None
    ]
    engine.release(ref_ctx)

    base = await _base(engine)
    engine.received.clear()
    gen = MindPacedGeneration(engine, base, MindPacedConfig(mode, 4, 3), greedy, think_budget=budget, max_reply_tokens=60)
    reply_by_round: dict[int, str] = {}
    starts: list[RoundStarted] = []
    async for ev in gen.events():
        if isinstance(ev, RoundStarted):
            starts.append(ev)
        elif isinstance(ev, ReplyText):
            reply_by_round[ev.round] = reply_by_round.get(ev.round, "") + ev.text
    engine.release(base)

    assert gen.reasoning_tokens == budget + 1  # the random head never closes: the budget does (+ </think>)
    assert len(gen.rounds) >= 3 and gen.rounds[-1].final and not any(r.final for r in gen.rounds[:-1])
    if mode == "speak_first":
        assert gen.rounds[0].reasoning_tokens == 0  # the empty think block
    else:
        assert gen.rounds[0].reasoning_tokens >= 4  # one segment first
    rounds = [ids for ctx_id, ids in engine.received if ctx_id != base.id]
    assert len(rounds) == len(gen.rounds)
    full_reasoning = "".join(reference).split("</think>")[0]
    base_text = tok.decode(base.token_ids)
    assert base_text == PROMPT + GENERATION_PREFIX
    for k, (ids, record) in enumerate(zip(rounds, gen.rounds, strict=True)):
        reasoning = full_reasoning if record.final else "".join(reference[: record.reasoning_tokens])
        reply_so_far = "".join(reply_by_round.get(j, "") for j in range(k))
        suffix = articulation_suffix(reasoning, reply_so_far)
        assert suffix.startswith(reasoning.rstrip() + "\n</think>\n")
        assert ids == tok.encode(suffix), f"round {k}"
        assert tok.decode(base.token_ids + ids) == PROMPT + GENERATION_PREFIX + suffix
        assert record.prompt_tokens == len(ids)
    # The template with no reasoning is R1's own empty think block.
    assert GENERATION_PREFIX + articulation_suffix("", "") == "<|BOT|>assistant\n<think>\n\n</think>\n"


async def test_both_streams_share_decode_steps_and_cancel_stops_them_within_one_step(
    endless_engine: RecordingEngine,
) -> None:
    engine = endless_engine
    free = await _free_slots_when_idle(engine)
    sched = Scheduler(engine, None, instructions="Be brief.")
    sched.conversation.insert(Turn("u0", "user", [TextPart("hello")]))
    opts = ResponseOptions(audio=False, max_output_tokens=4000, think_budget=1500, temperature=1.0, seed=3,
                           mind_paced=MindPacedConfig("speak_first", 8, 4))
    run = sched.response(opts)
    assert isinstance(run, ThinkWhileSpeakingRun)
    engine.steps.clear()
    cancel_at = None
    n_reply = 0
    async for ev in run.events():
        if isinstance(ev, ResponseFinished):
            fin = ev
            break
        n_reply += type(ev).__name__ == "TextDelta"
        if cancel_at is None and n_reply >= 6:
            cancel_at = time.perf_counter()
            run.cancel()
    assert cancel_at is not None
    assert fin.finish_reason == "cancelled"
    # Before the cancel both brains decoded in the same batched steps ...
    assert any(live == 2 for t, live in engine.steps if t < cancel_at)
    # ... and no step began with a live stream after it (the step in flight at the cancel may finish).
    assert [live for t, live in engine.steps if t > cancel_at and live] == []
    await sched.aclose()
    assert await _free_slots_when_idle(engine) == free  # every fork released
    assert engine.stats()["active_streams"] == 0


async def test_sequential_run_emits_exactly_the_engines_tokens(engine: RecordingEngine) -> None:
    sched = Scheduler(engine, None, instructions="Be brief.")
    sched.conversation.insert(Turn("u0", "user", [TextPart("What is two plus three?")]))
    opts = ResponseOptions(audio=False, max_output_tokens=40, think_budget=10, temperature=0.8, seed=11)
    fin = [ev async for ev in sched.response(opts).events()][-1]
    assert isinstance(fin, ResponseFinished)
    # The same request straight on the engine, same seed: the run must neither add nor drop a token.
    ctx, _ = await sched.conversation.fork()
    await engine.append_text(ctx, GENERATION_PREFIX)
    params = SamplingParams(temperature=0.8, max_tokens=40, seed=11, think_budget=10,
                            stop_token_ids=tuple(engine.tokenizer.stop_token_ids))
    deltas = [d async for d in engine.generate(ctx, params)]
    engine.release(ctx)
    text = "".join(d.text for d in deltas if d.finish_reason is None)
    assert fin.usage.output_tokens == len(deltas) - (deltas[-1].finish_reason != "stop")
    reasoning, reply = split_reasoning(text)
    from stepaudio_rt.streaming.pipeline import SCRUB

    assert fin.reasoning_text == SCRUB.sub("", reasoning).strip()
    assert fin.reply_text == SCRUB.sub("", reply).strip()
    await sched.aclose()


async def test_rounds_are_released_by_playback(endless_engine: RecordingEngine) -> None:
    from stepaudio_rt.streaming.tts import create_tts

    tts = create_tts("piper")
    lead_ms = 600.0
    sched = Scheduler(endless_engine, tts, instructions="Be brief.")
    sched.conversation.insert(Turn("u0", "user", [TextPart("Tell me a story.")]))
    # 1,000 reasoning tokens outlast the first audio even on a loaded machine.
    opts = ResponseOptions(audio=True, max_output_tokens=72, think_budget=1000, temperature=1.0, seed=5,
                           mind_paced=MindPacedConfig("speak_first", 8, 6), playback_lead_ms=lead_ms)
    run = sched.response(opts)
    audio_ms = 0.0
    reasoning_after_audio = False
    async for ev in run.events():
        if isinstance(ev, AudioDelta):
            audio_ms += ev.duration_ms
        elif isinstance(ev, ReasoningDelta) and audio_ms > 0:
            reasoning_after_audio = True
        elif isinstance(ev, ResponseFinished):
            fin = ev
    await sched.aclose()
    rounds = fin.timings.rounds
    assert len(rounds) >= 4 and audio_ms > 2000
    # A round after the first is released only when at most the lead of unplayed audio is queued ...
    assert all(r.queued_ms <= lead_ms + 1.0 for r in rounds[1:]), [r.queued_ms for r in rounds]
    # ... so with more audio queued than that the articulation stream was held back.
    assert any(r.waited_playback_s > 0.05 for r in rounds[1:]), [r.waited_playback_s for r in rounds]
    # Reasoning kept streaming while the reply was already being spoken.
    assert reasoning_after_audio
    assert fin.usage.input_tokens > sum(r.prompt_tokens for r in rounds)  # the base + every re-prefill
    assert fin.usage.output_tokens == fin.usage.reasoning_tokens + sum(r.reply_tokens for r in rounds)


def test_take_words_releases_whole_words_only() -> None:
    chunker = PhraseChunker()
    assert chunker.push("forty six plus thir") == []
    assert chunker.take_words() == "forty six plus"
    assert chunker.take_words() == ""  # "thir" may still grow
    assert chunker.push("ty seven is eighty three. ") == ["thirty seven is eighty three."]


async def test_a_round_that_ends_the_reply_early_waits_for_the_whole_reasoning(engine: RecordingEngine) -> None:
    # The random tiny model sometimes ends its reply (<|EOT|>) while reasoning is still running. Then no
    # round may go out with partial reasoning any more: the final round, with the complete reasoning,
    # comes after reasoning ended and may still add to the reply.
    found = 0
    for seed in range(24):
        base = await _base(engine)
        gen = MindPacedGeneration(
            engine, base, MindPacedConfig("speak_first", 2, 40),
            SamplingParams(temperature=1.0, seed=seed, stop_token_ids=tuple(engine.tokenizer.stop_token_ids)),
            think_budget=60, max_reply_tokens=80,
        )
        events = [ev async for ev in gen.events()]
        engine.release(base)
        early = [r for r in gen.rounds if r.stopped and not r.final]
        if not early or gen.reasoning_tokens < 20:
            continue
        found += 1
        ended = next(i for i, ev in enumerate(events) if isinstance(ev, ReasoningEnded))
        nxt = gen.rounds[early[0].index + 1]
        assert nxt is gen.rounds[-1] and nxt.final
        assert nxt.reasoning_tokens == gen.reasoning_tokens
        start = next(i for i, ev in enumerate(events) if isinstance(ev, RoundStarted) and ev.record is nxt)
        assert start > ended
        if found == 2:
            break
    assert found, "no reply ended before its reasoning in 24 seeds"


def test_a_sentence_boundary_is_a_token_that_opens_a_new_sentence() -> None:
    from stepaudio_rt.model.mind_paced import _starts_sentence

    assert _starts_sentence("I hear 14 plus 29.", " 14")
    assert _starts_sentence("so it is high.", "\n")
    assert not _starts_sentence("about 4.", "4")  # "4.4 per second" is one sentence
    assert not _starts_sentence("I hear 14 plus", " 29")
    assert not _starts_sentence("", " I")
    with pytest.raises(ValueError, match="segment_boundary"):
        MindPacedConfig("think_first", segment_boundary="words")  # type: ignore[arg-type]


async def test_sentence_segments_give_articulation_whole_sentences_of_the_demo_checkpoint() -> None:
    """The bundled checkpoint declares sentence segments (it was trained on reasoning cut at its
    sentences): every segment an articulation round can see ends a sentence of the final reasoning, and
    think_first's reply to a typed two-step sum is right."""
    from stepaudio_rt.settings import DEMO_CHECKPOINT
    from stepaudio_rt.training.data.verify import extract_number

    engine = _engine(DEMO_CHECKPOINT)
    assert engine.generation_config.get("segment_boundary") == "sentence"
    try:
        base = engine.new_context()
        system = engine.generation_config["default_system_prompt"]
        await engine.append_text(base, system_block(system) + USER_PREFIX + "What is 47 plus 38?<|EOT|>" + GENERATION_PREFIX)
        config = MindPacedConfig.for_checkpoint(engine.generation_config, "think_first", lockstep=True)
        assert config.segment_boundary == "sentence"
        sampling = SamplingParams(temperature=0.0, stop_token_ids=tuple(engine.tokenizer.stop_token_ids))
        gen = MindPacedGeneration(engine, base, config, sampling, think_budget=160, max_reply_tokens=160)
        async for _ in gen.events():
            pass
        engine.release(base)
    finally:
        await engine.aclose()
    assert gen.segments, gen.reasoning_text  # the two-step working has more than one sentence
    for segment in gen.segments:
        assert segment[-1] in ".!?" and gen.reasoning_text.startswith(segment), (segment, gen.reasoning_text)
    assert extract_number(gen.reply_text) == 85, (gen.reasoning_text, gen.reply_text)
