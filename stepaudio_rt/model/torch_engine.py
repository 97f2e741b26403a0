"""TorchEngine: the engine contract on plain PyTorch, for CPU and one GPU.

One worker thread owns the model and runs a loop: take one queued job (prefill text or audio, fork,
release, start a stream), then advance every active stream by one batched decode step. The decode step
is our own forward over the checkpoint's Qwen2 modules with a preallocated slot KV cache
(:mod:`kv_cache`), not ``generate()``: no per-step allocation of caches, no Python-side model kwargs
plumbing, several conversations batched in one step, and cancellation checked before every step.

Async callers never block the event loop: each call enqueues a job and awaits a future that the worker
completes with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

from stepaudio_rt.model.audio_frontend import audio_token_count, log_mel_spectrogram
from stepaudio_rt.model.checkpoint import load_checkpoint
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
from stepaudio_rt.model.kv_cache import SlotKVCache
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.sampling import sample_token
from stepaudio_rt.model.tokenizer import THINK_CLOSE, IncrementalDetokenizer, StepAudioTokenizer

log = logging.getLogger(__name__)

_DONE = object()
_KV = torch.Tensor | list[torch.Tensor]  # all rows' cached keys (or values), or one view per row


@dataclass
class _CtxState:
    """Engine-side state of a context (touched only by the worker thread)."""

    slot: int
    kv_len: int = 0  # tokens whose K/V are in the slot
    pending: list[int] = field(default_factory=list)  # appended text tokens not yet prefilled
    last_logits: torch.Tensor | None = None  # logits after the last prefilled token
    busy: bool = False  # a stream is generating from it


@dataclass
class _Stream:
    ctx: Context
    params: SamplingParams
    cancel: CancelToken
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[Any]
    detok: IncrementalDetokenizer
    generator: torch.Generator | None
    in_think: bool
    think_tokens: int = 0
    generated: int = 0
    feed: int | None = None  # sampled token not yet in the KV cache
    forced: collections.deque[int] = field(default_factory=collections.deque)
    recent: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    last_step_s: float = 0.0

    def emit(self, item: Any) -> None:
        # The consumer's event loop can close under a live stream (a client task torn down without
        # closing its generator). Its items have nowhere to go: drop them and cancel the stream, so the
        # worker thread, which serves every other stream, never dies of one abandoned consumer.
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # "Event loop is closed"
            self.cancel.cancel()


class TorchEngine(Engine):
    def __init__(
        self,
        model: StepAudio2ForCausalLM,
        tokenizer: StepAudioTokenizer,
        max_contexts: int = 32,
        max_context_tokens: int = 4096,
        kv_dtype: torch.dtype | None = None,
        cuda_graphs: bool | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        cfg = model.config.text
        self.n_heads = cfg.num_attention_heads
        self.n_kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.n_mels = model.config.audio.n_mels
        self.max_context_tokens = min(max_context_tokens, cfg.max_position_embeddings)
        self.cache = SlotKVCache(
            n_layers=cfg.num_hidden_layers,
            n_slots=max_contexts + 1,  # one scratch slot: padding rows of graphed decode batches write there
            n_kv_heads=self.n_kv_heads,
            max_tokens=self.max_context_tokens,
            head_dim=self.head_dim,
            dtype=kv_dtype or self.dtype,
            device=self.device,
        )
        self._scratch_slot = self.cache.allocate()
        self._think_close = tuple(tokenizer.encode(THINK_CLOSE + "\n"))
        self._act = ACT2FN[cfg.hidden_act]
        self._fuse_projections()
        self._positions = torch.arange(self.max_context_tokens, device=self.device)
        use_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self._graphs = GraphedDecode(self, max_batch=max_contexts) if use_graphs else None
        self._states: dict[int, _CtxState] = {}
        self._next_id = 0
        self._id_lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._streams: list[_Stream] = []
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name="torch-engine", daemon=True)
        self._thread.start()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        max_contexts: int = 32,
        max_context_tokens: int = 4096,
        progress: bool = True,
    ) -> TorchEngine:
        ckpt = load_checkpoint(path, device=device, dtype=dtype, progress=progress)
        engine = cls(ckpt.model, ckpt.tokenizer, max_contexts=max_contexts, max_context_tokens=max_context_tokens)
        engine.generation_config = ckpt.generation_config
        return engine

    def _fuse_projections(self) -> None:
        """Fuse q/k/v and gate/up into one matmul each, as vLLM's ``qkv_proj`` / ``gate_up_proj``.

        The original modules' parameters are re-pointed at slices of the fused tensors, so the model
        keeps its checkpoint names and its full-sequence forward, and no weight is stored twice.
        """
        self._qkv: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._gate_up: list[torch.Tensor] = []
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            projs = (attn.q_proj, attn.k_proj, attn.v_proj)
            w = torch.cat([m.weight.detach() for m in projs])
            b = torch.cat([m.bias.detach() for m in projs]) if projs[0].bias is not None else None
            _repoint(projs, w, b)
            self._qkv.append((w, b))
            gu = torch.cat([mlp.gate_proj.weight.detach(), mlp.up_proj.weight.detach()])
            _repoint((mlp.gate_proj, mlp.up_proj), gu, None)
            self._gate_up.append(gu)
        self._qkv_split = [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim]

    # ------------------------------------------------------------------ public API (any thread)

    def new_context(self) -> Context:
        self._check_open()
        slot = self.cache.allocate()
        with self._id_lock:
            ctx = Context(id=self._next_id)
            self._next_id += 1
        self._states[ctx.id] = _CtxState(slot=slot)
        return ctx

    async def append_tokens(self, ctx: Context, token_ids: Sequence[int]) -> StepTiming:
        """Text is deferred: it is prefilled together with the next audio chunk or at the start of the
        next generation, in one forward pass. On a GPU each eager forward costs tens of milliseconds of
        kernel launches whatever its length, so the end of a turn (``<|EOT|>`` + generation prefix +
        first token) costs one pass instead of three. The returned timing is therefore zero-cost;
        the work shows up in the timing of the call that flushes it (see :meth:`flush`)."""
        ids = list(token_ids)
        return await self._call(lambda: self._defer(ctx, ids))

    async def flush(self, ctx: Context) -> StepTiming:
        """Prefill any deferred text now (e.g. to prefill a shared prefix once before forking)."""
        return await self._call(lambda: self._prefill(ctx, [], None, "prefill_text"))

    async def append_audio(self, ctx: Context, waveform_16k: np.ndarray) -> StepTiming:
        wav = np.asarray(waveform_16k, dtype=np.float32)
        return await self._call(lambda: self._append_audio(ctx, wav))

    def fork(self, ctx: Context) -> Context:
        child = self.new_context()
        self._jobs.put(lambda: self._fork(ctx, child))
        return child

    def release(self, ctx: Context) -> None:
        if ctx.released or self._closed:
            return
        ctx.released = True
        self._jobs.put(lambda: self._release(ctx))

    async def generate(
        self, ctx: Context, params: SamplingParams, cancel: CancelToken | None = None
    ) -> AsyncIterator[TokenDelta]:
        self._check_open()
        cancel = cancel or CancelToken()
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.device)  # sampling runs where the logits are
            generator.manual_seed(params.seed if params.seed is not None else int(time.time_ns() % 2**63))
        stream = _Stream(
            ctx=ctx,
            params=params,
            cancel=cancel,
            loop=asyncio.get_running_loop(),
            out=asyncio.Queue(),
            detok=IncrementalDetokenizer(self.tokenizer),
            generator=generator,
            in_think=params.starts_in_think,
        )
        self._jobs.put(lambda: self._start_stream(stream))
        try:
            while True:
                item = await stream.out.get()
                if isinstance(item, BaseException):
                    raise item
                if item is _DONE:
                    return
                yield item
        finally:
            cancel.cancel()  # consumer gone (or done): the worker drops the stream before its next step

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 5.0)

    def stats(self) -> dict[str, int]:
        return {"free_slots": self.cache.free_slots, "active_streams": len(self._streams)}

    # ------------------------------------------------------------------ worker thread

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError("engine is closed")

    async def _call(self, fn: Callable[[], Any]) -> Any:
        self._check_open()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:  # delivered to the awaiting caller
                loop.call_soon_threadsafe(_set_exception, fut, exc)
            else:
                loop.call_soon_threadsafe(_set_result, fut, result)

        self._jobs.put(job)
        return await fut

    def _worker(self) -> None:
        with torch.inference_mode():
            while True:
                try:
                    job = self._jobs.get(block=not self._streams)
                except queue.Empty:
                    job = _NO_JOB
                if job is None:
                    break
                if job is not _NO_JOB:
                    try:
                        job()
                    except Exception:  # a job's own errors go to its caller; this guards the loop
                        log.exception("engine job failed")
                if self._streams:
                    try:
                        self._decode_step()
                    except Exception as exc:
                        log.exception("decode step failed")
                        streams, self._streams = self._streams, []
                        for s in streams:
                            self._finish(s, None, error=exc)
        for s in self._streams:
            self._finish(s, "cancelled")

    def _state(self, ctx: Context) -> _CtxState:
        if ctx.released:
            raise EngineError(f"context {ctx.id} was released")
        return self._states[ctx.id]

    def _fork(self, parent: Context, child: Context) -> None:
        # Deferred text is copied, not flushed: the child prefills it with its own next tokens, which
        # keeps a forward pass off the critical path at the end of a turn.
        # The prefix KV is copied: at the shapes measured (``bench mps``) a copy costs a small fraction of
        # one decode step, so sharing blocks (and reference-counting them) would buy nothing here.
        t0 = time.perf_counter()
        src, dst = self._state(parent), self._state(child)
        self.cache.copy_prefix(src.slot, dst.slot, src.kv_len)
        child.token_ids = list(parent.token_ids)
        child.audio_tokens = parent.audio_tokens
        dst.kv_len, dst.pending, dst.last_logits = src.kv_len, list(src.pending), src.last_logits
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        child.timings.append(StepTiming("fork", src.kv_len, time.perf_counter() - t0))

    def _release(self, ctx: Context) -> None:
        for s in [s for s in self._streams if s.ctx is ctx]:
            self._streams.remove(s)
            self._finish(s, "cancelled")
        state = self._states.pop(ctx.id, None)
        if state is not None:
            self.cache.free(state.slot)

    def _append_audio(self, ctx: Context, wav: np.ndarray) -> StepTiming:
        t0 = time.perf_counter()
        mel = log_mel_spectrogram(wav, n_mels=self.n_mels).to(self.device, self.dtype)
        embeds = self.model.encode_audio(mel[None])[0]
        n = audio_token_count(mel.shape[-1])
        if embeds.shape[0] != n:
            raise EngineError(f"encoder produced {embeds.shape[0]} audio embeddings, expected {n}")
        encode_s = time.perf_counter() - t0
        ctx.timings.append(StepTiming("encode_audio", n, encode_s))
        ids = self.tokenizer.audio_block_ids(n)
        timing = self._prefill(ctx, ids, embeds, "prefill_audio")
        ctx.audio_tokens += len(ids)
        return StepTiming("prefill_audio", len(ids), encode_s + timing.seconds)

    def _writable(self, ctx: Context, n_new: int) -> _CtxState:
        state = self._state(ctx)
        if state.busy:
            raise EngineError(f"context {ctx.id} is generating; fork it or wait")
        if len(ctx) + n_new > self.max_context_tokens:
            raise EngineError(f"context {ctx.id} would exceed {self.max_context_tokens} tokens")
        return state

    def _defer(self, ctx: Context, ids: list[int]) -> StepTiming:
        state = self._writable(ctx, len(ids))
        state.pending.extend(ids)
        ctx.token_ids.extend(ids)
        return StepTiming("prefill_text", len(ids), 0.0)

    def _prefill(self, ctx: Context, ids: list[int], audio_embeds: torch.Tensor | None, kind: Any) -> StepTiming:
        """Prefill deferred text + ``ids`` in one forward pass."""
        state = self._writable(ctx, len(ids))
        batch = state.pending + ids
        if not batch:
            return StepTiming(kind, 0, 0.0)
        t0 = time.perf_counter()
        input_ids = torch.tensor([batch], device=self.device)
        embeds = self.model.embed(input_ids, audio_embeds, self.tokenizer.ids.audio_patch)
        hidden = self._forward(embeds, [state.slot], [state.kv_len])
        state.last_logits = self.model.lm_head(hidden[0, -1]).float()
        state.kv_len += len(batch)
        state.pending = []
        ctx.token_ids.extend(ids)
        timing = StepTiming(kind, len(batch), time.perf_counter() - t0)
        ctx.timings.append(timing)
        return timing

    def _forward(self, x: torch.Tensor, slots: list[int], starts: list[int]) -> torch.Tensor:
        """Decoder forward over new tokens ``x`` [B, T, H] at ``starts``; writes their K/V into the cache.

        B == 1: any T (prefill or decode), attention over a view of the slot. B > 1: T == 1 (batched
        decode), attention over the gathered slots with a per-row length mask; on a CPU with a few rows,
        row by row over views of each slot instead (no gather copy; see ``_CPU_ROWWISE_ATTENTION``).
        """
        b, t, _ = x.shape
        dev = self.device
        positions = torch.tensor(starts, device=dev)[:, None] + torch.arange(t, device=dev)[None, :]
        if b == 1:
            s0 = starts[0]
            mask = None
            if t > 1:  # causal within the new tokens, full view of the cached prefix
                mask = torch.ones(t, s0 + t, dtype=torch.bool, device=dev).tril(diagonal=s0)

            def kv(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                kc, vc = self.cache.k[i], self.cache.v[i]
                kc[slots[0], :, s0 : s0 + t] = k[0]
                vc[slots[0], :, s0 : s0 + t] = v[0]
                return kc[slots[0], :, : s0 + t][None], vc[slots[0], :, : s0 + t][None]

        else:
            assert t == 1, "batched forward is decode-only"
            slot_idx = torch.tensor(slots, device=dev)
            pos_idx = torch.tensor(starts, device=dev)
            longest = max(starts) + 1
            mask = (torch.arange(longest, device=dev)[None, :] <= pos_idx[:, None])[:, None, None, :]
            if dev.type == "cpu" and b <= _CPU_ROWWISE_ATTENTION:
                mask = None  # each row attends over its own slot's view (see _rowwise)

            def kv(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[_KV, _KV]:
                kc, vc = self.cache.k[i], self.cache.v[i]
                kc[slot_idx, :, pos_idx] = k[:, :, 0]
                vc[slot_idx, :, pos_idx] = v[:, :, 0]
                if mask is None:
                    return _rowwise(kc, slots, starts), _rowwise(vc, slots, starts)
                return kc[slot_idx, :, :longest], vc[slot_idx, :, :longest]

        return self._layers(x, positions, kv, mask)

    def _decode_static(self, tokens: torch.Tensor, slots: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """One decode step with shapes fixed by the batch size alone, for CUDA graph capture.

        ``tokens``, ``slots``, ``starts`` are [B] tensors on the device. Attention runs over the slot's
        whole preallocated length with a position mask, so nothing depends on Python-side lengths.
        Returns float32 logits [B, vocab]. Same result as :meth:`_forward` (tested on CPU).
        """
        mask = (self._positions[None, :] <= starts[:, None])[:, None, None, :]

        def kv(i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            kc, vc = self.cache.k[i], self.cache.v[i]
            kc[slots, :, starts] = k[:, :, 0]
            vc[slots, :, starts] = v[:, :, 0]
            return kc.index_select(0, slots), vc.index_select(0, slots)

        hidden = self._layers(self.model.model.embed_tokens(tokens[:, None]), starts[:, None], kv, mask)
        return self.model.lm_head(hidden)[:, 0].float()

    def _layers(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        kv: Callable[[int, torch.Tensor, torch.Tensor], tuple[_KV, _KV]],
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """The decoder layers over new tokens; ``kv(layer, k, v)`` stores the new K/V, returns all keys/values."""
        b, t, _ = x.shape
        cos, sin = self.model.model.rotary_emb(x, positions)
        for i, layer in enumerate(self.model.model.layers):
            h = self._rms_norm(layer.input_layernorm, x)
            q, k, v = F.linear(h, *self._qkv[i]).split(self._qkv_split, dim=-1)
            q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
            k = k.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
            v = v.view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            keys, values = kv(i, k, v)
            if isinstance(keys, list):  # one view per row (_rowwise): attention row by row, no mask
                out = torch.cat([
                    F.scaled_dot_product_attention(q[r : r + 1], kr, vr, enable_gqa=True)
                    for r, (kr, vr) in enumerate(zip(keys, values, strict=True))
                ])
            else:
                out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, enable_gqa=True)
            x = x + layer.self_attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
            gate, up = F.linear(self._rms_norm(layer.post_attention_layernorm, x), self._gate_up[i]).chunk(2, dim=-1)
            x = x + layer.mlp.down_proj(self._act(gate) * up)
        return self._rms_norm(self.model.model.norm, x)

    def _rms_norm(self, norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``F.rms_norm`` is one fused op instead of Qwen2RMSNorm's seven; equal in float32. In lower
        precision the module's own float32 upcast is kept, so results match the checkpoint's reference."""
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)
        return norm(x)

    # ------------------------------------------------------------------ streams

    def _start_stream(self, stream: _Stream) -> None:
        try:
            state = self._state(stream.ctx)
            if state.busy:
                raise EngineError(f"context {stream.ctx.id} is already generating")
            if state.last_logits is None and not state.pending:
                raise EngineError("generate() needs a context with at least one appended token")
            self._prefill(stream.ctx, [], None, "prefill_text")  # deferred text: one pass, right here
        except EngineError as exc:
            stream.emit(exc)
            return
        assert state.last_logits is not None
        state.busy = True
        stream.seen = set(stream.ctx.token_ids) if stream.params.repetition_penalty != 1.0 else set()
        self._streams.append(stream)
        # The first token comes from the prefill's logits: no forward pass between prefill and it.
        try:
            self._choose(stream, state.last_logits.clone())
        except Exception as exc:  # e.g. sampling on a broken distribution: the caller must hear of it
            self._streams.remove(stream)
            self._finish(stream, None, error=exc)

    def _decode_step(self) -> None:
        live = []
        for s in self._streams:
            if s.cancel.cancelled or s.ctx.released:
                self._finish(s, "cancelled")
            elif s.feed is not None:
                live.append(s)
        self._streams = live
        if not live:
            return
        t0 = time.perf_counter()
        feeds = [s.feed for s in live]
        slots = [self._states[s.ctx.id].slot for s in live]
        starts = [self._states[s.ctx.id].kv_len for s in live]
        if self._graphs is not None:
            logits = self._graphs.run(feeds, slots, starts).clone()  # the graph reuses its output buffer
        else:
            tokens = torch.tensor([[f] for f in feeds], device=self.device)
            hidden = self._forward(self.model.model.embed_tokens(tokens), slots, starts)
            logits = self.model.lm_head(hidden[:, -1]).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # sampling syncs anyway; this makes step_s the real step time
        step_s = time.perf_counter() - t0
        for row, s in enumerate(live):
            assert s.feed is not None
            s.ctx.token_ids.append(s.feed)
            s.seen.add(s.feed)
            s.feed = None
            state = self._states[s.ctx.id]
            state.kv_len += 1
            state.last_logits = logits[row]
            s.last_step_s = step_s
            try:
                self._choose(s, logits[row].clone())
            except Exception as exc:  # one stream's sampling error must not stop the others
                self._finish(s, None, error=exc)
        self._streams = [s for s in live if s.feed is not None]

    def _choose(self, s: _Stream, logits: torch.Tensor) -> None:
        """Pick the stream's next token (sampled or forced), emit it, and either queue it or finish."""
        p = s.params
        forced = False
        if s.in_think and p.think_budget is not None and s.think_tokens >= p.think_budget and not s.forced:
            s.forced.extend(self._think_close)  # budget spent: close the think block ourselves
        if s.forced:
            token, forced = s.forced.popleft(), True
        else:
            seen = torch.tensor(sorted(s.seen), dtype=torch.long, device=logits.device) if s.seen else None
            token = sample_token(logits, p, s.generator, seen)
        index = s.generated
        s.generated += 1
        stops = self.tokenizer.stop_token_ids if p.stop_token_ids is None else p.stop_token_ids
        if token in stops and not forced:
            self._finish(s, "stop", token_id=token, index=index)
            return
        in_think = s.in_think
        if s.in_think:
            s.think_tokens += 1
            s.recent = (s.recent + [token])[-len(self._think_close) :]
            if self._closes_think(s.recent):
                s.in_think = False
        text = s.detok.push(token)
        finish: FinishReason | None = None
        if s.generated >= p.max_tokens or len(s.ctx) + 1 >= self.max_context_tokens:
            finish = "length"
        s.emit(TokenDelta(token, text, index, in_think, forced=forced, step_seconds=s.last_step_s))
        if finish:
            self._finish(s, finish)
        else:
            s.feed = token

    def _closes_think(self, recent: list[int]) -> bool:
        close = self.tokenizer.think_close_ids
        return len(recent) >= len(close) and tuple(recent[-len(close) :]) == close

    def _finish(
        self,
        s: _Stream,
        reason: FinishReason | None,
        token_id: int = -1,
        index: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        state = self._states.get(s.ctx.id)
        if state is not None:
            state.busy = False
        s.feed = None
        if error is not None:
            s.emit(error)
            return
        s.emit(TokenDelta(token_id, "", s.generated if index is None else index, s.in_think, finish_reason=reason))
        s.emit(_DONE)


class GraphedDecode:
    """CUDA graphs of :meth:`TorchEngine._decode_static`, one per padded batch size (1, 2, 4, 8, ...).

    Eager decode of a 64-layer model launches ~2,000 small kernels per token, and the CPU, not the GPU,
    sets the pace. A captured graph replays them with one launch. Batches are padded to the next
    captured size with rows that write into the engine's scratch KV slot. Graphs are captured lazily,
    the first time a batch size is needed (about a second each).
    """

    def __init__(self, engine: TorchEngine, max_batch: int) -> None:
        self.engine = engine
        self.sizes = [1 << i for i in range(max_batch.bit_length() + 1) if (1 << i) // 2 < max_batch]
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]] = {}
        self.pool = None

    def _capture(self, size: int) -> tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]:
        eng = self.engine
        dev = eng.device
        inputs = (
            torch.zeros(size, dtype=torch.long, device=dev),
            torch.full((size,), eng._scratch_slot, dtype=torch.long, device=dev),
            torch.zeros(size, dtype=torch.long, device=dev),
        )
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm-up outside the graph (lazy inits, autotuning)
                eng._decode_static(*inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = eng._decode_static(*inputs)
        self.pool = graph.pool()
        return graph, inputs, logits

    def run(self, tokens: list[int], slots: list[int], starts: list[int]) -> torch.Tensor:
        n = len(tokens)
        size = next(s for s in self.sizes if s >= n)
        if size not in self.graphs:
            self.graphs[size] = self._capture(size)
        graph, (tok_in, slot_in, start_in), logits = self.graphs[size]
        pad = size - n
        tok_in.copy_(torch.tensor(tokens + [0] * pad), non_blocking=True)
        slot_in.copy_(torch.tensor(slots + [self.engine._scratch_slot] * pad), non_blocking=True)
        start_in.copy_(torch.tensor(starts + [0] * pad), non_blocking=True)
        graph.replay()
        return logits[:n]


def _repoint(modules: Sequence[torch.nn.Linear], weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Make each module's weight (and bias) a view of consecutive rows of the fused tensors."""
    row = 0
    for m in modules:
        n = m.weight.shape[0]
        m.weight = torch.nn.Parameter(weight[row : row + n], requires_grad=False)
        if bias is not None:
            m.bias = torch.nn.Parameter(bias[row : row + n], requires_grad=False)
        row += n


# Batched decode on a CPU with at most this many rows attends row by row over views of each slot. The
# gather of the rows' keys and values (one copy per layer) was the largest extra cost of a second stream
# at the demo checkpoint's shapes (profiled: B=2 forward 1.39x B=1 with the gather, 1.25x row by row).
_CPU_ROWWISE_ATTENTION = 4


def _rowwise(cache: torch.Tensor, slots: list[int], starts: list[int]) -> list[torch.Tensor]:
    """Each row's cached keys (or values) through its last position, as views [1, H, len, D]."""
    return [cache[s : s + 1, :, : p + 1] for s, p in zip(slots, starts, strict=True)]


_NO_JOB: Callable[[], None] = lambda: None  # noqa: E731 - sentinel: nothing queued, just decode


def _set_result(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
