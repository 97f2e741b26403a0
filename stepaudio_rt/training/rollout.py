"""Sampled completions through the serving engine, as token ids, for the RL stage and pass@k selection.

Each question is prefilled the way the realtime server prefills a spoken turn (``training.sft.
prompt_segments``: system prompt, user text, the audio cut at pauses into chunks of at most the checkpoint's
``audio_chunk_seconds``, each encoded alone, ``<|EOT|>``), then forked K times; each fork appends the
generation prefix ``<|BOT|>assistant\\n<think>\\n`` and samples. All questions of a batch run concurrently,
so the engine batches every live stream into one decode step.

A completion's ``response_ids`` are the sampled tokens plus the stop token when the stream stopped (the
policy is trained to stop, and the reward sits on that last token); ``prompt_ids`` are the context's tokens
(audio blocks as ``<audio_patch>`` placeholders) that the trainer's forward replays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from stepaudio_rt.model.audio_frontend import split_at_pauses
from stepaudio_rt.model.engine import Engine, SamplingParams, checkpoint_listen_chunk_seconds
from stepaudio_rt.model.prompt import GENERATION_PREFIX
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT
from stepaudio_rt.training.sft import prompt_segments


@dataclass
class Completion:
    question: int  # index into the batch's questions
    prompt_ids: list[int]
    response_ids: list[int]
    text: str  # the decoded response (the stop token has no text)
    finish: str  # "stop" or "length"


async def _complete_question(
    engine: Engine,
    index: int,
    sample: Any,
    k: int,
    params: SamplingParams,
    seed: int,
    chunk_seconds: float,
    system_prompt: str,
) -> list[Completion]:
    ctx = engine.new_context()
    forks: list[Any] = []
    try:
        before, after = prompt_segments(sample.user_text, system_prompt, has_audio=sample.audio is not None)
        for piece in before:
            await engine.append_text(ctx, piece)
        if sample.audio is not None:
            for chunk in split_at_pauses(sample.audio, chunk_seconds):
                await engine.append_audio(ctx, chunk)
        for piece in after:
            await engine.append_text(ctx, piece)
        await engine.flush(ctx)  # the shared prefix once, before the forks copy it

        async def one(j: int) -> Completion:
            child = engine.fork(ctx)
            forks.append(child)
            await engine.append_text(child, GENERATION_PREFIX)
            prompt = list(child.token_ids)
            ids: list[int] = []
            text: list[str] = []
            finish = "length"
            p = SamplingParams(
                temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens, seed=seed * 1000 + j
            )
            async for d in engine.generate(child, p):
                if d.finish_reason is None:
                    ids.append(d.token_id)
                    text.append(d.text)
                    continue
                finish = d.finish_reason
                if finish == "stop":
                    ids.append(d.token_id)
            return Completion(index, prompt, ids, "".join(text), finish)

        return list(await asyncio.gather(*(one(j) for j in range(k))))
    finally:
        for c in forks:
            engine.release(c)
        engine.release(ctx)


def sample_completions(
    engine: Engine,
    samples: Sequence[Any],
    k: int,
    temperature: float,
    max_tokens: int,
    seed: int,
    concurrency: int,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
    progress: bool = False,
    desc: str = "rollouts",
) -> list[list[Completion]]:
    """K completions per sample (``seed`` fixes them), at most ``concurrency`` questions in flight."""
    chunk_seconds = checkpoint_listen_chunk_seconds(engine.generation_config)
    params = SamplingParams(temperature=temperature, max_tokens=max_tokens)
    bar = tqdm(total=len(samples), desc=desc, unit="question", disable=not progress, leave=False)

    async def run() -> list[list[Completion]]:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int, s: Any) -> list[Completion]:
            async with sem:
                out = await _complete_question(engine, i, s, k, params, seed + i, chunk_seconds, system_prompt)
            bar.update(1)
            return out

        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(samples))))

    try:
        return _run(run())
    finally:
        bar.close()


def _run(coro: Any) -> Any:
    """``asyncio.run``: the engine's futures are bound to the loop that awaits them, and a fresh loop per
    call is fine because the engine's worker thread is not tied to any loop."""
    return asyncio.run(coro)


def listen_chunks(audio: np.ndarray | None, chunk_seconds: float) -> list[np.ndarray]:
    """The audio chunks the engine encodes for a question, in prompt order (none for a typed question)."""
    return [] if audio is None else list(split_at_pauses(audio, chunk_seconds))


__all__ = ["Completion", "listen_chunks", "sample_completions"]
