"""The conversation as if the user's turn ended now: what a speculative response is generated from.

A speculative response (``server/speculative_response.py``) starts at a pause, before the end-of-turn
model has said whether the turn is over. It must see the conversation plus the user turn so far, but it
must not change the conversation: the turn may go on. :class:`SpeculativeConversation` is that view, the
real conversation's turns plus a snapshot of the listening turn (:meth:`ListeningTurn.snapshot`), with the
read-only interface a run uses (``instructions``, ``fork``, ``build_standalone``). Nothing is written to
the real conversation; :meth:`close` frees the snapshot's context.
"""

from __future__ import annotations

from collections.abc import Sequence

from stepaudio_rt.model.engine import Context, Engine
from stepaudio_rt.streaming.conversation import Conversation, Turn
from stepaudio_rt.streaming.turn import ListeningTurn


class SpeculativeConversation:
    """``conversation`` + ``turn`` (not committed); ``ctx`` ends with the rendered turn and is owned here."""

    def __init__(self, conversation: Conversation, turn: Turn, ctx: Context) -> None:
        self.conversation = conversation
        self.engine: Engine = conversation.engine
        self.turn = turn
        self._ctx: Context | None = ctx
        self.epoch = conversation.epoch  # the conversation it extends; a change since means it is stale

    @classmethod
    async def of(cls, listening: ListeningTurn) -> SpeculativeConversation:
        turn, ctx = await listening.snapshot()
        return cls(listening.conversation, turn, ctx)

    @property
    def instructions(self) -> str:
        return self.conversation.instructions

    @property
    def turns(self) -> list[Turn]:
        return [*self.conversation.turns, self.turn]

    async def fork(self) -> tuple[Context, int]:
        if self._ctx is None:
            raise RuntimeError("speculative conversation already closed")
        return self.engine.fork(self._ctx), self.epoch

    async def build_standalone(self, instructions: str, turns: Sequence[Turn] | None = None) -> Context:
        return await self.conversation.build_standalone(instructions, self.turns if turns is None else turns)

    def close(self) -> None:
        """Free the snapshot's context. Idempotent."""
        if self._ctx is not None:
            self.engine.release(self._ctx)
            self._ctx = None
