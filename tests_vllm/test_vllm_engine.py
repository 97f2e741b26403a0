"""VLLMEngine against the TorchEngine on the same tiny official-layout checkpoint: the same greedy tokens,
the same contexts, the same think-budget and fork behaviour; cancellation; prefix-cache hits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stepaudio_rt.model.engine import CancelToken, Context, Engine, SamplingParams
from stepaudio_rt.model.prompt import END_OF_TURN, GENERATION_PREFIX, USER_PREFIX, system_block

pytestmark = pytest.mark.asyncio(loop_scope="session")

SR = 16000


def tone(seconds: float, freq: float = 330.0, seed: int = 0) -> np.ndarray:
    """A tone plus noise, ``round(seconds * SR)`` samples (odd counts included)."""
    n = round(seconds * SR)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    return (0.2 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


async def listened_turn(engine: Engine, chunks: list[np.ndarray], question: str = "what is twelve plus seven?") -> Context:
    ctx = engine.new_context()
    await engine.append_text(ctx, system_block("You are a helpful voice assistant.") + USER_PREFIX + question + "\n")
    for chunk in chunks:
        await engine.append_audio(ctx, chunk)
    await engine.append_text(ctx, END_OF_TURN + GENERATION_PREFIX)
    return ctx


async def tokens_of(engine: Engine, ctx: Context, params: SamplingParams) -> tuple[list[int], list[bool], list[bool], str]:
    deltas = [d async for d in engine.generate(ctx, params)]
    body = [d for d in deltas if d.finish_reason is None]
    reason = deltas[-1].finish_reason
    assert reason is not None
    return [d.token_id for d in body], [d.in_think for d in body], [d.forced for d in body], reason


GREEDY = SamplingParams(temperature=0.0, max_tokens=24, stop_token_ids=())

CASES = {
    "0.37s (odd samples)": [tone(0.3701)],
    "1s": [tone(1.0, 440)],
    "2.7s (odd samples)": [tone(2.70007, 520, seed=1)],
    "two chunks 3.1s + 1.9s": [tone(3.1, 300, seed=2), tone(1.9, 600, seed=3)],
    "25s chunk + 0.5s": [tone(25.0, 250, seed=4), tone(0.5, 700, seed=5)],
}


@pytest.mark.parametrize("name", list(CASES))
async def test_greedy_tokens_equal_torch_engine(vllm_engine: Engine, torch_engine: Engine, name: str) -> None:
    chunks = CASES[name]
    results = []
    for engine in (torch_engine, vllm_engine):
        ctx = await listened_turn(engine, chunks)
        prompt = list(ctx.token_ids)
        results.append((prompt, ctx.audio_tokens, await tokens_of(engine, ctx, GREEDY), list(ctx.token_ids)))
        engine.release(ctx)
    (t_prompt, t_audio, t_out, t_ctx), (v_prompt, v_audio, v_out, v_ctx) = results
    assert v_prompt == t_prompt and v_audio == t_audio
    assert v_out == t_out
    assert len(v_out[0]) == GREEDY.max_tokens and v_out[3] == "length"
    assert v_ctx == t_ctx  # generated tokens joined the context the same way (all but the budget's last)


async def test_stop_tokens_and_think_budget_match(vllm_engine: Engine, torch_engine: Engine) -> None:
    chunks = [tone(1.3, 410, seed=7)]
    outputs = []
    for engine in (torch_engine, vllm_engine):
        ctx = await listened_turn(engine, chunks)
        free = await tokens_of(engine, ctx, SamplingParams(temperature=0.0, max_tokens=12, stop_token_ids=()))
        # stop on the 4th token the model chooses by itself: the stream ends there with "stop"
        stop_at = free[0][3]
        ctx2 = await listened_turn(engine, chunks)
        stopped = await tokens_of(engine, ctx2, SamplingParams(temperature=0.0, max_tokens=12, stop_token_ids=(stop_at,)))
        ctx3 = await listened_turn(engine, chunks)
        budget = await tokens_of(engine, ctx3, SamplingParams(temperature=0.0, max_tokens=16, stop_token_ids=(), think_budget=5))
        outputs.append((free, stopped, budget, list(ctx3.token_ids)))
        for c in (ctx, ctx2, ctx3):
            engine.release(c)
    assert outputs[1] == outputs[0]
    free, stopped, budget, _ = outputs[1]
    assert stopped[3] == "stop" and stopped[0] == free[0][: free[0].index(free[0][3])]
    close = list(vllm_engine.tokenizer.encode("</think>\n"))
    assert budget[0][5 : 5 + len(close)] == close and all(budget[2][5 : 5 + len(close)])  # forced close
    assert not any(budget[2][:5]) and budget[1][:5] == [True] * 5


async def test_fork_shares_the_prefix(vllm_engine: Engine, torch_engine: Engine) -> None:
    """The think-while-speaking pattern: fork + append_text + flush + generate with stops and a budget."""
    chunks = [tone(2.1, 350, seed=9)]
    outputs = []
    for engine in (torch_engine, vllm_engine):
        base = await listened_turn(engine, chunks)
        await engine.flush(base)
        a, b = engine.fork(base), engine.fork(base)
        await engine.append_text(a, "we heard a tone")
        await engine.flush(a)
        await engine.append_text(b, "</think>\n")
        params = SamplingParams(temperature=0.0, max_tokens=10, stop_token_ids=())
        close = engine.tokenizer.think_close_ids  # the formulation stream stops at </think>
        formulation = SamplingParams(temperature=0.0, max_tokens=10, stop_token_ids=close[-1:])
        articulation = SamplingParams(temperature=0.0, max_tokens=6, starts_in_think=False)  # default stops
        ra, rb = await asyncio.gather(tokens_of(engine, a, formulation), tokens_of(engine, b, articulation))
        rbase = await tokens_of(engine, base, params)
        outputs.append((ra, rb, rbase, list(a.token_ids), list(b.token_ids)))
        for c in (a, b, base):
            engine.release(c)
    assert outputs[1] == outputs[0]


async def test_cancel_stops_within_a_step(vllm_engine: Engine) -> None:
    ctx = await listened_turn(vllm_engine, [tone(1.0)])
    cancel = CancelToken()
    deltas = []
    async for d in vllm_engine.generate(ctx, SamplingParams(temperature=0.0, max_tokens=1000, stop_token_ids=()), cancel):
        deltas.append(d)
        if len(deltas) == 3:
            cancel.cancel()
    assert deltas[-1].finish_reason == "cancelled"
    assert len(deltas) <= 5  # three tokens, at most one step more, then the final delta
    for _ in range(100):  # the request is gone from vLLM (aborted, not left decoding)
        if vllm_engine.llm.get_num_unfinished_requests() == 0:
            break
        await asyncio.sleep(0.02)
    assert vllm_engine.llm.get_num_unfinished_requests() == 0
    vllm_engine.release(ctx)


async def test_end_of_turn_computes_only_the_tail(vllm_engine: Engine) -> None:
    """Listen-while-thinking by prefix caching: each chunk's prefill computes that chunk (plus less than one
    KV block of what came before); at the end of the turn only the tail is computed, for a 2 s and a 20 s
    utterance alike (vLLM's own per-request prefix-cache hit counts)."""
    block = vllm_engine.block_size
    tails = {}
    for seconds in (2, 20):
        chunks = [tone(2.0, 200 + 40 * i, seed=100 * seconds + i) for i in range(seconds // 2)]
        ctx = vllm_engine.new_context()
        await vllm_engine.append_text(ctx, system_block(f"Listen {seconds}.") + USER_PREFIX)
        for chunk in chunks:
            before = len(ctx)
            timing = await vllm_engine.append_audio(ctx, chunk)
            assert timing.tokens <= len(ctx) - before + block + 8  # the new chunk (+ deferred text, + a partial block)
        await vllm_engine.append_text(ctx, END_OF_TURN + GENERATION_PREFIX)
        tail = len(vllm_engine.tokenizer.encode(END_OF_TURN + GENERATION_PREFIX))
        deltas = [d async for d in vllm_engine.generate(ctx, SamplingParams(temperature=0.0, max_tokens=2, stop_token_ids=()))]
        assert deltas[-1].finish_reason == "length"
        state = vllm_engine._states[ctx.id]
        computed = state.last_prompt_tokens - state.last_cached_tokens
        assert state.last_prompt_tokens == len(ctx) - 1  # the context minus the budget's last token
        assert computed <= tail + block
        assert ctx.timings[-1].kind == "prefill_text" and ctx.timings[-1].tokens == computed
        tails[seconds] = computed
        vllm_engine.release(ctx)
    assert tails[20] <= tail + block and tails[2] <= tail + block  # flat in utterance length
    assert len(ctx) > 5 * tails[20]  # a 20 s turn is hundreds of tokens; its end computes a few dozen


async def test_data_parallel_keeps_a_conversation_on_one_rank(vllm_checkpoint, vllm_engine: Engine) -> None:
    """Two data-parallel ranks (two engine cores, each with its own KV cache): conversations take the
    ranks in turn, a fork stays on its parent's rank and finds the parent's prefix in that rank's cache,
    and the tokens are those of the single-rank engine."""
    from stepaudio_rt.model.vllm_engine import VLLMEngine, VLLMOptions
    from tests_vllm.conftest import BLOCK_SIZE, MAX_MODEL_LEN

    dp = VLLMEngine.from_pretrained(
        vllm_checkpoint,
        VLLMOptions(dtype="float32", max_model_len=MAX_MODEL_LEN, enforce_eager=True, block_size=BLOCK_SIZE,
                    data_parallel_size=2),
    )  # fmt: skip
    try:
        params = SamplingParams(temperature=0.0, max_tokens=6, stop_token_ids=())
        for i, expected_rank in enumerate([0, 1, 0]):
            chunks = [tone(1.4, 300 + 90 * i, seed=40 + i)]
            ctx = await listened_turn(dp, chunks)
            await dp.flush(ctx)
            child = dp.fork(ctx)
            assert dp._states[ctx.id].dp_rank == dp._states[child.id].dp_rank == expected_rank
            got = await tokens_of(dp, child, params)
            assert dp._states[child.id].last_cached_tokens >= len(ctx) - BLOCK_SIZE  # the parent's blocks, same rank
            single = await listened_turn(vllm_engine, chunks)
            assert got == await tokens_of(vllm_engine, single, params)
            for c in (ctx, child, single):
                (dp if c is not single else vllm_engine).release(c)
    finally:
        await dp.aclose()


async def test_a_missing_tensor_is_named_before_vllm_starts(vllm_checkpoint, tmp_path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from stepaudio_rt.model.checkpoint import CheckpointError
    from stepaudio_rt.model.vllm_engine import VLLMEngine

    broken = shutil.copytree(vllm_checkpoint, tmp_path / "broken")
    weights = load_file(broken / "model.safetensors")
    del weights["encoder.blocks.0.attn.key.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\): encoder\.blocks\.0\.attn\.key\.weight"):
        VLLMEngine.from_pretrained(broken)
