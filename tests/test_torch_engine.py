"""TorchEngine: incremental prefill, batched decode, fork, cancel, budgets, audio blocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio_rt.model.audio_frontend import audio_token_count_for_samples
from stepaudio_rt.model.engine import CancelToken, EngineError, SamplingParams, TokenDelta
from stepaudio_rt.model.prompt import GENERATION_PREFIX
from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.model.torch_engine import TorchEngine

PROMPT = "<|BOT|>system\nYou listen.<|EOT|><|BOT|>human\nwhat is twelve plus seven?<|EOT|>" + GENERATION_PREFIX


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_engine"))


@pytest.fixture
async def engine(ckpt_dir: Path) -> AsyncIterator[TorchEngine]:
    eng = TorchEngine.from_pretrained(ckpt_dir, max_contexts=16, max_context_tokens=512, progress=False)
    yield eng
    await eng.aclose()


async def collect(engine: TorchEngine, ctx, params: SamplingParams, cancel: CancelToken | None = None) -> list[TokenDelta]:
    return [d async for d in engine.generate(ctx, params, cancel)]


async def wait_idle(engine: TorchEngine) -> bool:
    """The worker drops finished streams right after its step; give it a moment."""
    for _ in range(100):
        if engine.stats()["active_streams"] == 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_incremental_prefill_matches_single_prefill(engine: TorchEngine) -> None:
    ids = engine.tokenizer.encode(PROMPT)
    whole, parts = engine.new_context(), engine.new_context()
    await engine.append_tokens(whole, ids)
    for chunk in (ids[:5], ids[5:6], ids[6:20], ids[20:]):
        await engine.append_tokens(parts, chunk)
        await engine.flush(parts)  # force one forward pass per chunk
    await engine.flush(whole)
    a = engine._states[whole.id].last_logits
    b = engine._states[parts.id].last_logits
    assert a is not None and b is not None
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # ...and both equal the model's plain full-sequence forward.
    with torch.no_grad():
        full, _ = engine.model(torch.tensor([ids]))
    torch.testing.assert_close(a, full[0, -1], atol=1e-4, rtol=1e-4)


async def test_decode_logits_match_full_forward(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)
    deltas = await collect(engine, ctx, SamplingParams(temperature=0, max_tokens=12, stop_token_ids=()))
    generated = [d.token_id for d in deltas if d.finish_reason is None]
    # Greedy decoding through our KV cache must equal argmax of the full forward at every step.
    seq = engine.tokenizer.encode(PROMPT)
    with torch.no_grad():
        for tok in generated:
            logits, _ = engine.model(torch.tensor([seq]))
            assert int(logits[0, -1].argmax()) == tok
            seq.append(tok)


@pytest.mark.parametrize("copies", [1, 2], ids=["3 rows (row by row on CPU)", "6 rows (gathered, masked)"])
async def test_batched_decode_equals_one_at_a_time(engine: TorchEngine, copies: int) -> None:
    prompts = [PROMPT, "<|BOT|>human\nhello<|EOT|>" + GENERATION_PREFIX, "<|BOT|>human\nhi there, how are you?<|EOT|>"]
    prompts = prompts * copies
    greedy = SamplingParams(temperature=0, max_tokens=20)
    alone = []
    for p in prompts:
        ctx = engine.new_context()
        await engine.append_text(ctx, p)
        alone.append([d.token_id for d in await collect(engine, ctx, greedy)])
        engine.release(ctx)
    ctxs = []
    for p in prompts:  # different lengths: exercises the per-row mask of the batched step
        ctx = engine.new_context()
        await engine.append_text(ctx, p)
        ctxs.append(ctx)
    together = await asyncio.gather(*(collect(engine, c, greedy) for c in ctxs))
    assert [[d.token_id for d in run] for run in together] == alone


async def test_fork_decodes_identically_with_same_seed(engine: TorchEngine) -> None:
    parent = engine.new_context()
    await engine.append_text(parent, PROMPT)
    child = engine.fork(parent)
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, repetition_penalty=1.1, seed=7, max_tokens=25)
    a = await collect(engine, parent, params)
    b = await collect(engine, child, params)
    assert [d.token_id for d in a] == [d.token_id for d in b]
    assert len(child) == len(parent)  # the fork got the parent's prefix, then its own tokens


async def test_cancel_stops_a_running_stream(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)
    cancel = CancelToken()
    seen: list[TokenDelta] = []
    async for d in engine.generate(ctx, SamplingParams(temperature=1.0, max_tokens=400, seed=1), cancel):
        seen.append(d)
        if len(seen) == 3:
            cancel.cancel()
    assert seen[-1].finish_reason == "cancelled"
    assert len(seen) <= 5  # at most one more decode step ran after cancel()
    assert await wait_idle(engine)


async def test_abandoned_stream_is_dropped(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)
    gen = engine.generate(ctx, SamplingParams(temperature=1.0, max_tokens=400, seed=1))
    await gen.__anext__()
    await gen.aclose()  # a client that disconnects mid-response
    assert await wait_idle(engine)


async def test_a_stream_whose_event_loop_closed_does_not_stop_the_engine(engine: TorchEngine) -> None:
    """A consumer's loop torn down mid-response (its generator never closed) must not kill the worker.

    Regression: the worker's emit raised "Event loop is closed", and its error handler emitted again,
    so the thread died and every later request on the engine hung.
    """
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)

    def abandon_in_a_private_loop() -> None:
        loop = asyncio.new_event_loop()
        gen = engine.generate(ctx, SamplingParams(temperature=1.0, max_tokens=400, seed=1))
        loop.run_until_complete(gen.__anext__())
        loop.close()  # the generator is left open: its stream stays live in the worker

    await asyncio.to_thread(abandon_in_a_private_loop)
    assert await wait_idle(engine)
    other = engine.new_context()
    await engine.append_text(other, PROMPT)
    deltas = await asyncio.wait_for(collect(engine, other, SamplingParams(temperature=0.0, max_tokens=5)), 30)
    assert deltas[-1].finish_reason in ("length", "stop")


async def test_token_budget_and_stop(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)
    deltas = await collect(engine, ctx, SamplingParams(temperature=1.0, max_tokens=7, seed=3))
    assert deltas[-1].finish_reason in ("length", "stop")
    assert len([d for d in deltas if d.finish_reason is None]) <= 7
    # Make the engine's own stop list fire: greedy decoding with the first greedy token as a stop id.
    ctx2 = engine.new_context()
    await engine.append_text(ctx2, PROMPT)
    first = (await collect(engine, ctx2, SamplingParams(temperature=0, max_tokens=1)))[0].token_id
    engine.tokenizer.stop_token_ids = (*engine.tokenizer.stop_token_ids, first)
    try:
        ctx3 = engine.new_context()
        await engine.append_text(ctx3, PROMPT)
        run = await collect(engine, ctx3, SamplingParams(temperature=0, max_tokens=10))
        assert len(run) == 1 and run[0].finish_reason == "stop" and run[0].token_id == first
    finally:
        engine.tokenizer.stop_token_ids = engine.tokenizer.stop_token_ids[:-1]


async def test_think_budget_closes_the_think_block(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)
    deltas = await collect(engine, ctx, SamplingParams(temperature=1.0, seed=5, max_tokens=30, think_budget=6))
    forced = [d for d in deltas if d.forced]
    assert [d.token_id for d in forced] == engine.tokenizer.encode("</think>\n")
    assert forced[0].in_think and not forced[-1].in_think
    think = [d for d in deltas if d.in_think and not d.forced and d.finish_reason is None]
    assert len(think) <= 6
    after = [d for d in deltas if not d.in_think and d.finish_reason is None]
    assert all(not d.in_think for d in after) and deltas.index(forced[-1]) < len(deltas) - 1


async def test_audio_chunk_appends_one_block(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, "<|BOT|>human\n")
    wav = (0.1 * np.sin(np.arange(32000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    timing = await engine.append_audio(ctx, wav)
    n = audio_token_count_for_samples(len(wav))
    ids = engine.tokenizer.ids
    block = ctx.token_ids[-(n + 2) :]
    assert block[0] == ids.audio_start and block[-1] == ids.audio_end and block[1:-1] == [ids.audio_patch] * n
    assert timing.tokens == n + 2 and ctx.audio_tokens == n + 2
    # Audio context then decodes like any other.
    await engine.append_text(ctx, "<|EOT|>" + GENERATION_PREFIX)
    assert (await collect(engine, ctx, SamplingParams(temperature=0, max_tokens=3)))[-1].finish_reason


async def test_misuse_is_reported(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    with pytest.raises(EngineError, match="at least one appended token"):
        await collect(engine, ctx, SamplingParams())
    engine.release(ctx)
    with pytest.raises(EngineError, match="released"):
        await engine.append_text(ctx, "hello")
    with pytest.raises(EngineError, match="exceed"):
        await engine.append_tokens(engine.new_context(), [5] * 600)


async def test_slots_are_recycled(engine: TorchEngine) -> None:
    for _ in range(40):  # more than max_contexts: release must return slots
        ctx = engine.new_context()
        await engine.append_text(ctx, "hi")
        engine.release(ctx)
    await asyncio.sleep(0.05)
    assert engine.stats()["free_slots"] > 0


async def test_static_decode_step_equals_eager_forward(engine: TorchEngine) -> None:
    """The shape-static step that CUDA graphs capture computes what the eager step computes."""
    prompts = [PROMPT, "<|BOT|>human\nhello<|EOT|>"]
    ctxs = []
    for p in prompts:
        ctx = engine.new_context()
        await engine.append_text(ctx, p)
        ctxs.append(ctx)
    for c in ctxs:
        await engine.flush(c)
    slots = [engine._states[c.id].slot for c in ctxs]
    starts = [len(c) for c in ctxs]
    feeds = [11, 42]
    with torch.inference_mode():
        eager = engine._forward(engine.model.model.embed_tokens(torch.tensor([[f] for f in feeds])), slots, starts)
        eager_logits = engine.model.lm_head(eager[:, -1]).float()
        static = engine._decode_static(torch.tensor(feeds), torch.tensor(slots), torch.tensor(starts))
    torch.testing.assert_close(static, eager_logits, atol=1e-4, rtol=1e-4)


async def test_sampling_error_reaches_the_caller_and_frees_the_context(engine: TorchEngine) -> None:
    ctx = engine.new_context()
    await engine.append_text(ctx, PROMPT)
    with pytest.raises(RuntimeError):  # NaN probabilities: torch.multinomial refuses them
        await collect(engine, ctx, SamplingParams(temperature=float("nan"), max_tokens=5))
    assert await wait_idle(engine)
    assert (await collect(engine, ctx, SamplingParams(temperature=0, max_tokens=3)))[-1].finish_reason


async def test_deferred_text_is_prefilled_once_with_the_next_audio_or_generation(engine: TorchEngine) -> None:
    wav = (0.1 * np.sin(np.arange(16000) * 2 * np.pi * 300 / 16000)).astype(np.float32)
    eager, lazy = engine.new_context(), engine.new_context()
    for piece in ("<|BOT|>human\n", "listen:\n"):
        await engine.append_text(eager, piece)
        await engine.flush(eager)
        timing = await engine.append_text(lazy, piece)
        assert timing.seconds == 0.0 and engine._states[lazy.id].kv_len == 0
    await engine.append_audio(eager, wav)
    await engine.append_audio(lazy, wav)  # deferred text + audio block in one forward pass
    assert engine._states[lazy.id].kv_len == len(lazy) == len(eager)
    for c in (eager, lazy):
        await engine.append_text(c, "<|EOT|>" + GENERATION_PREFIX)
    child = engine.fork(lazy)  # inherits the deferred tail without flushing it
    greedy = SamplingParams(temperature=0, max_tokens=8)
    a = [d.token_id for d in await collect(engine, eager, greedy)]
    b = [d.token_id for d in await collect(engine, lazy, greedy)]
    c = [d.token_id for d in await collect(engine, child, greedy)]
    assert a == b == c
    prefills = [t for t in lazy.timings if t.kind != "encode_audio"]
    assert len(prefills) == 2  # audio block (+ its text) and the generation's flush: two passes
