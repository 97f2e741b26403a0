"""A preallocated, slot-based KV cache.

Every context owns one slot: ``k[layer][slot, kv_head, position, head_dim]``. Allocating the whole pool
up front means no allocation in the decode loop, and batching several contexts in one decode step is
one indexed write and one gather per layer (vLLM's paged cache generalises this to blocks; contexts
here are short conversations, so whole-slot allocation keeps the code small).
"""

from __future__ import annotations

import threading

import torch

from stepaudio_rt.model.engine import EngineError


class SlotKVCache:
    def __init__(
        self,
        n_layers: int,
        n_slots: int,
        n_kv_heads: int,
        max_tokens: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (n_slots, n_kv_heads, max_tokens, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_tokens = max_tokens
        self.n_slots = n_slots
        self._free = list(range(n_slots - 1, -1, -1))
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        with self._lock:
            if not self._free:
                raise EngineError(f"all {self.n_slots} KV cache slots are in use; release contexts or raise max_contexts")
            return self._free.pop()

    def free(self, slot: int) -> None:
        with self._lock:
            if slot not in self._free:
                self._free.append(slot)

    def copy_prefix(self, src: int, dst: int, n_tokens: int) -> None:
        for layer_k, layer_v in zip(self.k, self.v, strict=True):
            layer_k[dst, :, :n_tokens] = layer_k[src, :, :n_tokens]
            layer_v[dst, :, :n_tokens] = layer_v[src, :, :n_tokens]
