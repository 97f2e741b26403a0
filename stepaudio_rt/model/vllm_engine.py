"""VLLMEngine: the engine contract on upstream vLLM's ``AsyncLLM``, in process (the production path).

The model comes from this project's vLLM plugin (:mod:`stepaudio_rt.vllm_plugin`); vLLM brings paged KV,
continuous batching, tensor / pipeline / data parallelism and Ray multi-node. This module and the plugin
are the only places that import vLLM.

How the contract maps onto vLLM:

* A context is a token list plus the audio segments it holds. vLLM keeps no per-conversation state;
  each call sends the whole context as one prompt, and **automatic prefix caching** finds every full
  16-token block it has computed before (an audio block's hash includes its segment's content hash). A
  segment never changes once appended (the mel is normalised per chunk), so the cache stays valid.
* ``append_audio`` prefills at once (a one-token request over the whole context): at the end of a
  listened turn only the last chunk and the text after it are computed. Text is deferred, as in the
  TorchEngine, and flushed by the next audio chunk, ``flush`` or ``generate``.
* ``fork`` copies the token and segment lists; the two requests then share the prefix's cached blocks.
* ``generate`` streams one request; a :class:`CancelToken` is checked after every step and by a watcher
  that aborts the request within a step; a spent think budget ends the request, the engine adds the
  think-close tokens itself (as the TorchEngine does) and continues with a new request from the
  context, whose prefix is cached.
* A conversation stays on one data-parallel rank: forks inherit their parent's rank.

The prompt sent to vLLM holds one ``<audio_patch>`` per segment, which the plugin's processor expands
into ``<audio_start> <audio_patch>*N <audio_end>`` (the same expansion ``vllm serve`` applies to chat
requests); ``Context.token_ids`` holds the expanded form, as with the TorchEngine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio_rt.model.audio_frontend import MAX_CHUNK_SECONDS, SAMPLE_RATE, audio_token_count_for_samples
from stepaudio_rt.model.checkpoint import (
    build_empty_model,
    check_tensor_names,
    expected_shapes,
    resolve_checkpoint_dir,
    tensor_files,
)
from stepaudio_rt.model.config import StepAudio2Config
from stepaudio_rt.model.engine import (
    CancelToken,
    Context,
    Engine,
    EngineError,
    FinishReason,
    SamplingParams,
    StepTiming,
    TokenDelta,
)
from stepaudio_rt.model.tokenizer import THINK_CLOSE, IncrementalDetokenizer, StepAudioTokenizer

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.01  # how often a CancelToken is checked while a request waits or prefills (each output checks it too)


@dataclass(frozen=True)
class VLLMOptions:
    """What ``stepaudio-rt serve --engine vllm`` passes through to vLLM's engine arguments."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    distributed_executor_backend: str | None = None  # "mp" or "ray" (multi-node)
    max_model_len: int | None = None  # None: the checkpoint's max_position_embeddings
    gpu_memory_utilization: float = 0.9
    quantization: str | None = None  # e.g. "fp8"
    dtype: str = "auto"
    enforce_eager: bool = False
    seed: int = 0
    # Prefix-cache granularity in tokens (None: vLLM's default, 16 on GPUs, 128 on CPUs; CPUs need a
    # multiple of 32). The end of a listened turn recomputes at most one partial block.
    block_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # any other AsyncEngineArgs field

    def engine_args(self, model: str) -> dict[str, Any]:
        args: dict[str, Any] = dict(
            model=model,
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            data_parallel_size=self.data_parallel_size,
            distributed_executor_backend=self.distributed_executor_backend,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            quantization=self.quantization,
            dtype=self.dtype,
            enforce_eager=self.enforce_eager,
            seed=self.seed,
            block_size=self.block_size,
            enable_prefix_caching=True,  # the listen-while-thinking path depends on it
            trust_remote_code=False,  # the plugin registers the config and the model
        )
        args.update(self.extra)
        return args


@dataclass(frozen=True)
class _Segment:
    """One appended audio chunk: the samples exactly as sent (never changed afterwards) and their hash."""

    wav: np.ndarray
    uuid: str


@dataclass
class _CtxState:
    prompt: list[int] = field(default_factory=list)  # token ids with one <audio_patch> per segment
    segments: list[_Segment] = field(default_factory=list)
    dp_rank: int | None = None
    synced: int = 0  # length of ``prompt`` whose KV a finished request has computed (and cached)
    busy: bool = False  # a stream is generating from it
    request_id: str | None = None  # the vLLM request now running for it
    last_prompt_tokens: int = 0  # the last request's prompt length (expanded) ...
    last_cached_tokens: int = 0  # ... and how much of it vLLM found in its prefix cache

    @property
    def dirty(self) -> bool:
        return self.synced < len(self.prompt)


@dataclass
class _Run:
    """Bookkeeping of one ``generate`` call (the TorchEngine's ``_Stream`` without the KV slot)."""

    params: SamplingParams
    stops: tuple[int, ...]
    detok: IncrementalDetokenizer
    in_think: bool
    think_tokens: int = 0
    generated: int = 0
    recent: list[int] = field(default_factory=list)
    feed: int | None = None  # last emitted token, not yet part of the context (as the TorchEngine)
    finish: FinishReason | None = None


def check_checkpoint_tensors(ckpt_dir: Path) -> None:
    """Name a missing or unexpected tensor before vLLM starts: its own loader reports it only in the
    engine-core process's log, behind a generic "Engine core initialization failed"."""
    config = StepAudio2Config.from_file(ckpt_dir / "config.json")
    check_tensor_names(expected_shapes(build_empty_model(config)), tensor_files(ckpt_dir))


class VLLMEngine(Engine):
    def __init__(
        self,
        llm: Any,
        tokenizer: StepAudioTokenizer,
        max_context_tokens: int,
        data_parallel_size: int = 1,
        generation_config: dict | None = None,
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.max_context_tokens = max_context_tokens
        self.generation_config = generation_config or {}
        self.data_parallel_size = data_parallel_size
        self._think_close = tuple(tokenizer.encode(THINK_CLOSE + "\n"))
        self._states: dict[int, _CtxState] = {}
        self._ids = itertools.count()
        self._requests = itertools.count()
        self._conversations = itertools.count()  # contexts made by new_context (not forks)
        self._id_lock = threading.Lock()
        self._closed = False
        self.prompt_tokens = 0  # prompt tokens sent to vLLM
        self.cached_prompt_tokens = 0  # of which vLLM found in its prefix cache
        self.active_streams = 0

    @classmethod
    def from_pretrained(
        cls, path: str | Path, options: VLLMOptions | None = None, max_context_tokens: int | None = None
    ) -> VLLMEngine:
        """Start vLLM's engine on a checkpoint in the official layout (loaded through the plugin)."""
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from stepaudio_rt.vllm_plugin import register

        register()  # in this process too (vLLM loads plugins itself in the processes it starts)
        options = options or VLLMOptions()
        ckpt_dir = resolve_checkpoint_dir(path)
        if options.extra.get("load_format", "auto") != "dummy":
            check_checkpoint_tensors(ckpt_dir)
        if options.max_model_len is None and max_context_tokens is not None:
            options = dataclasses.replace(options, max_model_len=max_context_tokens)
        llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**options.engine_args(str(ckpt_dir))))
        gen_path = ckpt_dir / "generation_config.json"
        generation_config = json.loads(gen_path.read_text()) if gen_path.exists() else {}
        eos = generation_config.get("eos_token_id", [])
        tokenizer = StepAudioTokenizer.from_pretrained(
            ckpt_dir, extra_eos_ids=tuple(eos if isinstance(eos, list) else [eos])
        )
        return cls(
            llm,
            tokenizer,
            max_context_tokens=llm.model_config.max_model_len,
            data_parallel_size=options.data_parallel_size,
            generation_config=generation_config,
        )

    # ------------------------------------------------------------------ contexts

    def new_context(self) -> Context:
        self._check_open()
        with self._id_lock:
            ctx = Context(id=next(self._ids))
        # New conversations take the data-parallel ranks in turn; forks inherit their parent's (below),
        # so the two streams of one response share the parent's cached prefix on that rank.
        rank = next(self._conversations) % self.data_parallel_size if self.data_parallel_size > 1 else None
        self._states[ctx.id] = _CtxState(dp_rank=rank)
        return ctx

    def fork(self, ctx: Context) -> Context:
        src = self._state(ctx)
        self._check_open()
        with self._id_lock:
            child = Context(id=next(self._ids))
        self._states[child.id] = _CtxState(
            prompt=list(src.prompt), segments=list(src.segments), dp_rank=src.dp_rank, synced=src.synced
        )
        child.token_ids = list(ctx.token_ids)
        child.audio_tokens = ctx.audio_tokens
        return child

    def release(self, ctx: Context) -> None:
        if ctx.released:
            return
        ctx.released = True
        state = self._states.pop(ctx.id, None)
        if state is not None and state.request_id is not None and not self._closed:
            with contextlib.suppress(RuntimeError):  # no running loop: the request ends on its own
                asyncio.get_running_loop().create_task(self.llm.abort(state.request_id))

    async def append_tokens(self, ctx: Context, token_ids: Sequence[int]) -> StepTiming:
        """Deferred, as in the TorchEngine: prefilled with the next audio chunk, ``flush`` or ``generate``."""
        ids = [int(t) for t in token_ids]
        state = self._writable(ctx, len(ids))
        state.prompt.extend(ids)
        ctx.token_ids.extend(ids)
        return StepTiming("prefill_text", len(ids), 0.0)

    async def flush(self, ctx: Context) -> StepTiming:
        state = self._writable(ctx, 0)
        if not state.dirty:
            return StepTiming("prefill_text", 0, 0.0)
        return await self._prefill(ctx, state, "prefill_text")

    async def append_audio(self, ctx: Context, waveform_16k: np.ndarray) -> StepTiming:
        wav = np.ascontiguousarray(np.asarray(waveform_16k, dtype=np.float32))
        if wav.ndim != 1 or wav.size == 0:
            raise EngineError(f"append_audio takes non-empty mono audio, got shape {wav.shape}")
        if wav.size > round(MAX_CHUNK_SECONDS * SAMPLE_RATE):
            raise EngineError(
                f"append_audio takes one chunk of at most {MAX_CHUNK_SECONDS:.0f} s, got {wav.size / SAMPLE_RATE:.2f} s"
            )
        n = audio_token_count_for_samples(wav.size)
        block = self.tokenizer.audio_block_ids(n)
        state = self._writable(ctx, len(block))
        uuid = hashlib.sha256(wav.tobytes()).hexdigest()[:32] + f"-{wav.size}"
        state.segments.append(_Segment(wav, uuid))
        state.prompt.append(self.tokenizer.ids.audio_patch)
        ctx.token_ids.extend(block)
        ctx.audio_tokens += len(block)
        return await self._prefill(ctx, state, "prefill_audio")

    # ------------------------------------------------------------------ generation

    async def generate(
        self, ctx: Context, params: SamplingParams, cancel: CancelToken | None = None
    ) -> AsyncIterator[TokenDelta]:
        self._check_open()
        cancel = cancel or CancelToken()
        state = self._state(ctx)
        if state.busy:
            raise EngineError(f"context {ctx.id} is already generating")
        if not ctx.token_ids:
            raise EngineError("generate() needs a context with at least one appended token")
        run = _Run(
            params=params,
            stops=self.tokenizer.stop_token_ids
            if params.stop_token_ids is None
            else tuple(params.stop_token_ids),
            detok=IncrementalDetokenizer(self.tokenizer),
            in_think=params.starts_in_think,
        )
        state.busy = True
        self.active_streams += 1
        try:
            while run.finish is None:
                if self._think_spent(run):  # budget spent: the engine closes the think block itself
                    for token in self._think_close:
                        yield self._take(ctx, state, run, token, forced=True, step_s=0.0)
                        if run.feed is None:  # the token budget or the context ran out meanwhile
                            run.finish = "length"
                            break
                    continue
                async with contextlib.aclosing(self._request(ctx, state, run, cancel)) as deltas:
                    async for delta in deltas:
                        yield delta
                if cancel.cancelled or ctx.released:
                    run.finish = "cancelled"
            if run.finish != "stop":  # a stop token's own delta is the stream's last
                yield TokenDelta(-1, "", run.generated, run.in_think, finish_reason=run.finish)
        finally:
            cancel.cancel()
            state.busy = False
            self.active_streams -= 1

    def _take(
        self, ctx: Context, state: _CtxState, run: _Run, token: int, forced: bool, step_s: float
    ) -> TokenDelta:
        """One token, by the TorchEngine's ``_choose`` rules: the previous token joins the context now;
        a stop token ends the stream with an empty delta; a token that spends the token budget (or the
        context) is emitted but never joins the context."""
        self._feed(ctx, state, run)
        index = run.generated
        run.generated += 1
        if token in run.stops and not forced:
            run.finish = "stop"
            return TokenDelta(token, "", index, run.in_think, finish_reason="stop")
        in_think = run.in_think
        if run.in_think:
            run.think_tokens += 1
            close = self.tokenizer.think_close_ids
            run.recent = (run.recent + [token])[-len(close) :]
            if tuple(run.recent) == close:
                run.in_think = False
        text = run.detok.push(token)
        if not (run.generated >= run.params.max_tokens or len(ctx) + 1 >= self.max_context_tokens):
            run.feed = token
        return TokenDelta(token, text, index, in_think, forced=forced, step_seconds=step_s)

    @staticmethod
    def _feed(ctx: Context, state: _CtxState, run: _Run) -> None:
        if run.feed is not None:
            ctx.token_ids.append(run.feed)
            state.prompt.append(run.feed)
            run.feed = None

    def _think_spent(self, run: _Run) -> bool:
        budget = run.params.think_budget
        return run.in_think and budget is not None and run.think_tokens >= budget

    async def _request(
        self, ctx: Context, state: _CtxState, run: _Run, cancel: CancelToken
    ) -> AsyncIterator[TokenDelta]:
        """One vLLM request from the context as it stands, until it finishes, a budget is spent
        (``run.finish`` says which) or the think budget needs the engine's close tokens."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = run.params
        self._feed(ctx, state, run)  # the last emitted token becomes part of the prompt
        bound = min(p.max_tokens - run.generated, self.max_context_tokens - len(ctx))
        if run.in_think and p.think_budget is not None:
            bound = min(bound, p.think_budget - run.think_tokens)
        sp = VSamplingParams(
            n=1,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=max(p.top_k, 0),
            repetition_penalty=p.repetition_penalty,
            seed=p.seed,
            max_tokens=max(1, bound),
            stop_token_ids=list(run.stops) or None,
            ignore_eos=True,  # stop exactly on the contract's stop ids, not also on the checkpoint's eos list
            skip_special_tokens=False,
            detokenize=False,  # text comes from the project's incremental detokenizer, as in the TorchEngine
            output_kind=RequestOutputKind.DELTA,
        )
        produced = 0
        last = time.perf_counter()
        async with contextlib.aclosing(self._submit(ctx, state, sp, cancel)) as outputs:
            async for out in outputs:
                now = time.perf_counter()
                step_s, last = now - last, now
                if produced == 0 and run.generated == 0:  # the generation prompt's prefill, as vLLM ran it
                    computed = state.last_prompt_tokens - state.last_cached_tokens
                    ctx.timings.append(StepTiming("prefill_text", computed, step_s))
                completion = out.outputs[0]
                tokens = list(completion.token_ids)
                stop = completion.stop_reason if completion.finish_reason == "stop" else None
                if isinstance(stop, int) and stop not in tokens:
                    tokens.append(stop)  # vLLM kept the stop token out of the output: it is still the end
                for token in tokens:
                    produced += 1
                    yield self._take(ctx, state, run, token, forced=False, step_s=step_s)
                    if run.finish is not None or run.feed is None:
                        run.finish = run.finish or "length"
                        return
                    if self._think_spent(run):
                        return
                if completion.finish_reason == "abort":
                    run.finish = "cancelled"
                    return
        if produced == 0 and run.finish is None:
            run.finish = "cancelled" if cancel.cancelled or ctx.released else "length"

    async def _submit(
        self, ctx: Context, state: _CtxState, sp: Any, cancel: CancelToken | None
    ) -> AsyncIterator[Any]:
        """Send the context as one request; abort it when ``cancel`` fires or the consumer leaves."""
        prompt = self._vllm_prompt(state)
        request_id = f"ctx{ctx.id}-{next(self._requests)}"
        state.request_id = request_id
        watcher = asyncio.create_task(self._watch(cancel, ctx, request_id)) if cancel is not None else None
        finished = counted = False
        try:
            async for out in self.llm.generate(prompt, sp, request_id, data_parallel_rank=state.dp_rank):
                if not counted and out.num_cached_tokens is not None and out.prompt_token_ids is not None:
                    counted = True
                    self.prompt_tokens += len(out.prompt_token_ids)
                    self.cached_prompt_tokens += out.num_cached_tokens
                    state.last_prompt_tokens = len(out.prompt_token_ids)
                    state.last_cached_tokens = out.num_cached_tokens
                finished = out.finished
                yield out
                if cancel is not None and (cancel.cancelled or ctx.released):
                    break
        finally:
            if watcher is not None:
                watcher.cancel()
            state.request_id = None
            if not finished:
                await self.llm.abort(request_id)

    async def _watch(self, cancel: CancelToken, ctx: Context, request_id: str) -> None:
        while not (cancel.cancelled or ctx.released):
            await asyncio.sleep(CANCEL_POLL_S)
        await self.llm.abort(request_id)

    async def _prefill(self, ctx: Context, state: _CtxState, kind: Any) -> StepTiming:
        """Compute the context's KV now (a one-token request): vLLM caches its full blocks for the next
        request. ``tokens`` is what vLLM really computed (prompt minus prefix-cache hits)."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        t0 = time.perf_counter()
        length = len(state.prompt)  # appends made while this runs stay deferred
        sp = VSamplingParams(
            max_tokens=1, temperature=0.0, detokenize=False, output_kind=RequestOutputKind.FINAL_ONLY
        )
        async with contextlib.aclosing(self._submit(ctx, state, sp, None)) as outputs:
            async for _ in outputs:
                pass
        state.synced = max(state.synced, length)
        computed = state.last_prompt_tokens - state.last_cached_tokens
        timing = StepTiming(kind, computed, time.perf_counter() - t0)
        ctx.timings.append(timing)
        return timing

    def _vllm_prompt(self, state: _CtxState) -> dict[str, Any]:
        patches = sum(1 for t in state.prompt if t == self.tokenizer.ids.audio_patch)
        if patches != len(state.segments):
            raise EngineError(
                f"the context holds {patches} <audio_patch> tokens for {len(state.segments)} audio segments "
                "(an <audio_patch> was appended as text)"
            )
        prompt: dict[str, Any] = {"prompt_token_ids": list(state.prompt)}
        if state.segments:
            prompt["multi_modal_data"] = {"audio": [(s.wav, SAMPLE_RATE) for s in state.segments]}
            prompt["multi_modal_uuids"] = {"audio": [s.uuid for s in state.segments]}
        return prompt

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("engine is closed")

    def _state(self, ctx: Context) -> _CtxState:
        if ctx.released or ctx.id not in self._states:
            raise EngineError(f"context {ctx.id} was released")
        return self._states[ctx.id]

    def _writable(self, ctx: Context, n_new: int) -> _CtxState:
        state = self._state(ctx)
        if state.busy:
            raise EngineError(f"context {ctx.id} is generating; fork it or wait")
        if len(ctx) + n_new > self.max_context_tokens:
            raise EngineError(f"context {ctx.id} would exceed {self.max_context_tokens} tokens")
        return state

    @property
    def block_size(self) -> int:
        """vLLM's KV block (and prefix-cache) size in tokens."""
        return int(self.llm.vllm_config.cache_config.block_size)

    def stats(self) -> dict[str, int | str]:
        return {
            "engine": "vllm",
            "contexts": len(self._states),
            "active_streams": self.active_streams,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
        }

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.llm.shutdown()
        # AsyncLLM.__del__ shuts down again, at interpreter exit when the modules it calls are gone.
        self.llm.shutdown = lambda *args, **kwargs: None
