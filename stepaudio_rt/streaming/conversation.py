"""The conversation as the model sees it, and the engine context that holds its committed prefix.

One engine context keeps ``system block + history`` (reasoning dropped: assistant turns are stored as
their spoken/text reply only, as StepFun's demos do). New turns appended at the end are prefilled lazily
on the next :meth:`Conversation.sync`; any edit before the end (delete, insert, truncate, new
instructions) invalidates the prefix and the next sync rebuilds it from the stored turns. Audio turns keep
their 16 kHz samples *and* their chunk boundaries, so a rebuild produces exactly the tokens that
listen-while-thinking prefilled chunk by chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from stepaudio_rt.model.engine import Context, Engine
from stepaudio_rt.model.prompt import END_OF_TURN, USER_PREFIX, assistant_history_block, system_block

Role = Literal["system", "user", "assistant"]


@dataclass
class TextPart:
    text: str


@dataclass
class AudioPart:
    """User audio at 16 kHz; each chunk is rendered as its own ``<audio_start>..<audio_end>`` block."""

    chunks: list[np.ndarray] = field(default_factory=list)

    @property
    def num_samples(self) -> int:
        return sum(len(c) for c in self.chunks)


Part = TextPart | AudioPart


@dataclass
class Turn:
    """One conversation item in model terms. ``id`` is the protocol item id."""

    id: str
    role: Role
    parts: list[Part]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


class ConversationError(KeyError):
    """Unknown item id or bad position."""


async def render_turn(engine: Engine, ctx: Context, turn: Turn) -> None:
    """Prefill one turn into ``ctx`` in the official chat-template shape."""
    if turn.role == "assistant":
        await engine.append_text(ctx, assistant_history_block(turn.text))
        return
    if turn.role == "system":
        await engine.append_text(ctx, system_block(turn.text))
        return
    await engine.append_text(ctx, USER_PREFIX)
    await render_user_parts(engine, ctx, turn.parts)
    await engine.append_text(ctx, END_OF_TURN)


async def render_user_parts(engine: Engine, ctx: Context, parts: Sequence[Part], prev_text: bool = False) -> None:
    """User content joined the vLLM way: a newline between text and a following audio block, none after."""
    for part in parts:
        if isinstance(part, TextPart):
            if part.text:
                await engine.append_text(ctx, part.text)
                prev_text = True
            continue
        if prev_text:
            await engine.append_text(ctx, "\n")
        for chunk in part.chunks:
            await engine.append_audio(ctx, chunk)
        prev_text = False


class Conversation:
    """Ordered turns plus the lazily maintained engine context of their prefix.

    ``epoch`` changes on every mutation; a context forked at epoch ``e`` is an exact prefix of the
    conversation as long as ``epoch == e``. Mutations are synchronous (called from the event loop);
    only :meth:`sync` awaits the engine, under a lock.
    """

    def __init__(self, engine: Engine, instructions: str = "") -> None:
        self.engine = engine
        self._instructions = instructions
        self._turns: list[Turn] = []
        self._ctx: Context | None = None
        self._rendered = 0  # turns[:rendered] are in _ctx
        self._valid = False
        self.epoch = 0
        self._lock = asyncio.Lock()

    # ----- reading -----
    @property
    def turns(self) -> list[Turn]:
        return list(self._turns)

    @property
    def instructions(self) -> str:
        return self._instructions

    def index(self, turn_id: str) -> int:
        for i, t in enumerate(self._turns):
            if t.id == turn_id:
                return i
        raise ConversationError(turn_id)

    def get(self, turn_id: str) -> Turn:
        return self._turns[self.index(turn_id)]

    def __contains__(self, turn_id: object) -> bool:
        return any(t.id == turn_id for t in self._turns)

    def __len__(self) -> int:
        return len(self._turns)

    @property
    def last_id(self) -> str | None:
        return self._turns[-1].id if self._turns else None

    # ----- mutations -----
    def _touch(self, position: int) -> None:
        self.epoch += 1
        if position < self._rendered:
            self._valid = False

    def set_instructions(self, text: str) -> None:
        if text != self._instructions:
            self._instructions = text
            self.epoch += 1
            self._valid = False

    def insert(self, turn: Turn, previous_id: str | None = None, *, at_root: bool = False) -> int:
        """Insert after ``previous_id`` (None = at the end; ``at_root`` = at the start). Returns the index."""
        if turn.id in self:
            raise ConversationError(f"item {turn.id} already exists")
        if at_root:
            pos = 0
        elif previous_id is None:
            pos = len(self._turns)
        else:
            pos = self.index(previous_id) + 1
        self._turns.insert(pos, turn)
        self._touch(pos)
        return pos

    def delete(self, turn_id: str) -> Turn:
        pos = self.index(turn_id)
        turn = self._turns.pop(pos)
        self._touch(pos)
        if pos < self._rendered:
            self._rendered -= 1
        return turn

    def replace_text(self, turn_id: str, text: str) -> None:
        """Replace a turn's text parts with ``text`` (used by truncate: keep only what was heard)."""
        pos = self.index(turn_id)
        turn = self._turns[pos]
        audio = [p for p in turn.parts if isinstance(p, AudioPart)]
        turn.parts = [*audio, TextPart(text)] if text else audio
        self._touch(pos)

    # ----- engine side -----
    async def sync(self) -> Context:
        """Bring the prefix context up to date (rebuild if invalid) and return it (do not release it)."""
        async with self._lock:
            if not self._valid or self._ctx is None:
                if self._ctx is not None:
                    self.engine.release(self._ctx)
                self._ctx = self.engine.new_context()
                self._rendered = 0
                self._valid = True
                await self._append_system(self._ctx, self._instructions)
            while self._rendered < len(self._turns):
                await render_turn(self.engine, self._ctx, self._turns[self._rendered])
                self._rendered += 1
            return self._ctx

    async def _append_system(self, ctx: Context, instructions: str) -> None:
        """The system block. Empty instructions fall back to the checkpoint's own default system prompt
        (``default_system_prompt`` in its generation_config): a small model answers well only under the
        prompt it was trained with. No prompt at all renders no system block, as the official template."""
        text = instructions or self.engine.generation_config.get("default_system_prompt", "")
        if text:
            await self.engine.append_text(ctx, system_block(text))

    async def fork(self) -> tuple[Context, int]:
        """A private copy of the synced prefix, and the epoch it matches."""
        ctx = await self.sync()
        epoch = self.epoch
        return self.engine.fork(ctx), epoch

    async def build_standalone(self, instructions: str, turns: Sequence[Turn] | None = None) -> Context:
        """A fresh context with other instructions or other turns (out-of-band responses)."""
        ctx = self.engine.new_context()
        try:
            await self._append_system(ctx, instructions)
            for turn in self._turns if turns is None else turns:
                await render_turn(self.engine, ctx, turn)
        except BaseException:
            self.engine.release(ctx)
            raise
        return ctx

    def adopt(self, ctx: Context, turn: Turn, epoch: int) -> bool:
        """Append ``turn`` whose rendering already ends ``ctx`` (a fork made at ``epoch``).

        When nothing changed since the fork, ``ctx`` becomes the new prefix context (no re-prefill) and
        True is returned. Otherwise the turn is appended lazily, ``ctx`` released, and False returned.
        """
        if epoch == self.epoch and self._valid and self._rendered == len(self._turns) and not self._lock.locked():
            old = self._ctx
            self._turns.append(turn)
            self.epoch += 1
            self._ctx = ctx
            self._rendered = len(self._turns)
            if old is not None:
                self.engine.release(old)
            return True
        self.engine.release(ctx)
        self.insert(turn)
        return False

    def close(self) -> None:
        """Free the prefix context. Idempotent."""
        if self._ctx is not None:
            self.engine.release(self._ctx)
            self._ctx = None
        self._valid = False
