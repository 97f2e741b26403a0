"""``stepaudio-rt bench engine``: TorchEngine prefill and decode speed against transformers ``generate()``.

Both run the same randomly initialised weights in the same process, interleaved round by round
(A, B, A, B, ...) so that machine noise hits both alike; we report medians and their ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from transformers import Qwen2ForCausalLM
from transformers.utils import logging as hf_logging

from stepaudio_rt.model.engine import SamplingParams
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.testing import tiny_config, tiny_tokenizer
from stepaudio_rt.model.torch_engine import TorchEngine


@dataclass
class EngineBenchResult:
    params_m: float
    prompt_tokens: int
    new_tokens: int
    rounds: int
    engine_prefill_tok_s: float
    engine_decode_ms: float
    engine_batch8_decode_ms_per_step: float
    hf_prefill_tok_s: float
    hf_decode_ms: float
    decode_speedup: float
    threads: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def build_bench_model(hidden: int = 384, layers: int = 8, vocab: int = 4096) -> tuple[StepAudio2ForCausalLM, object]:
    torch.manual_seed(0)
    config = tiny_config(
        hidden=hidden, layers=layers, heads=6, kv_heads=2, intermediate=1024, vocab=vocab, audio_state=64, audio_layers=1
    )
    model = StepAudio2ForCausalLM(config).eval().requires_grad_(False)
    return model, tiny_tokenizer(512)


async def _engine_round(engine: TorchEngine, prompt: list[int], new_tokens: int, batch: int) -> tuple[float, float]:
    """(prefill seconds, mean decode seconds per step) for ``batch`` parallel greedy streams."""
    ctxs = [engine.new_context() for _ in range(batch)]
    t0 = time.perf_counter()
    await engine.append_tokens(ctxs[0], prompt)
    await engine.flush(ctxs[0])  # text prefill is deferred until needed: force it to measure it
    prefill_s = time.perf_counter() - t0
    for c in ctxs[1:]:
        await engine.append_tokens(c, prompt)
        await engine.flush(c)
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, stop_token_ids=())

    async def run(ctx) -> list[float]:  # type: ignore[no-untyped-def]
        return [d.step_seconds async for d in engine.generate(ctx, params) if d.finish_reason is None]

    steps = await asyncio.gather(*(run(c) for c in ctxs))
    for c in ctxs:
        engine.release(c)
    decode = [s for s in steps[0][1:]]  # the first token comes from the prefill logits
    return prefill_s, statistics.mean(decode)


def _hf_round(hf: Qwen2ForCausalLM, prompt: list[int], new_tokens: int) -> tuple[float, float]:
    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)
    kw = dict(do_sample=False, attention_mask=mask, pad_token_id=0, eos_token_id=None)
    t0 = time.perf_counter()
    hf.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
    prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
    total = time.perf_counter() - t0
    assert out.shape[1] == len(prompt) + new_tokens
    return prefill_s, (total - prefill_s) / (new_tokens - 1)


def bench_engine(
    prompt_tokens: int = 256, new_tokens: int = 64, rounds: int = 3, hidden: int = 384, layers: int = 8
) -> EngineBenchResult:
    hf_logging.set_verbosity_error()
    model, tokenizer = build_bench_model(hidden, layers)
    hf = Qwen2ForCausalLM(model.config.text).eval()
    hf.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith(("model.", "lm_head."))})
    hf.generation_config.cache_implementation = None
    prompt = torch.randint(10, model.config.vocab_size, (prompt_tokens,)).tolist()
    params_m = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("encoder", "adapter"))) / 1e6

    async def run() -> EngineBenchResult:
        engine = TorchEngine(model, tokenizer, max_contexts=9, max_context_tokens=prompt_tokens + new_tokens + 8)  # type: ignore[arg-type]
        e_pre, e_dec, e_b8, h_pre, h_dec = [], [], [], [], []
        with torch.inference_mode():
            await _engine_round(engine, prompt, 8, 1)  # warm-up both paths
            _hf_round(hf, prompt, 4)
            for _ in range(rounds):
                p, d = await _engine_round(engine, prompt, new_tokens, 1)
                e_pre.append(p)
                e_dec.append(d)
                hp, hd = _hf_round(hf, prompt, new_tokens)
                h_pre.append(hp)
                h_dec.append(hd)
                e_b8.append((await _engine_round(engine, prompt, new_tokens, 8))[1])
        await engine.aclose()
        med = statistics.median
        return EngineBenchResult(
            params_m=round(params_m, 2),
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            rounds=rounds,
            engine_prefill_tok_s=round(prompt_tokens / med(e_pre), 1),
            engine_decode_ms=round(1000 * med(e_dec), 3),
            engine_batch8_decode_ms_per_step=round(1000 * med(e_b8), 3),
            hf_prefill_tok_s=round(prompt_tokens / med(h_pre), 1),
            hf_decode_ms=round(1000 * med(h_dec), 3),
            decode_speedup=round(med(h_dec) / med(e_dec), 2),
            threads=torch.get_num_threads(),
        )

    return asyncio.run(run())
