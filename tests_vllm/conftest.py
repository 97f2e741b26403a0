"""Fixtures for the vLLM tests (``make test-vllm``, run in ``.venv-vllm``; the normal suite never imports vLLM).

One tiny checkpoint in the official layout with head_dim 32 (vLLM's CPU attention supports 32 and up; the
main suite's tiny checkpoint has 16), one VLLMEngine and one TorchEngine on it for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

# vLLM's CPU KV cache is preallocated; 1 GiB is plenty for the tiny model and leaves room on 24 GiB machines.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

TINY = dict(hidden=128, intermediate=256, heads=4, kv_heads=2, layers=2, vocab=512)
MAX_MODEL_LEN = 2048
# vLLM's CPU attention takes multiples of 32; its CPU default, 128, would leave short test prompts uncached.
BLOCK_SIZE = 32


@pytest.fixture(scope="session")
def vllm_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stepaudio_rt.model.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-vllm"), seed=3, **TINY)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vllm_engine(vllm_checkpoint: Path) -> AsyncIterator[object]:
    from stepaudio_rt.model.vllm_engine import VLLMEngine, VLLMOptions

    engine = VLLMEngine.from_pretrained(
        vllm_checkpoint, VLLMOptions(dtype="float32", max_model_len=MAX_MODEL_LEN, enforce_eager=True, block_size=BLOCK_SIZE)
    )
    yield engine
    await engine.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def torch_engine(vllm_checkpoint: Path) -> AsyncIterator[object]:
    from stepaudio_rt.model.torch_engine import TorchEngine

    engine = TorchEngine.from_pretrained(vllm_checkpoint, max_contexts=8, max_context_tokens=MAX_MODEL_LEN, progress=False)
    yield engine
    await engine.aclose()
