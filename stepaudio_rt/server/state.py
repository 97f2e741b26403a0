"""Process-wide server state shared by every session: settings, engine, TTS, metrics, session registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stepaudio_rt.model.engine import Engine
from stepaudio_rt.server.metrics import Metrics
from stepaudio_rt.settings import Settings
from stepaudio_rt.streaming.smart_turn import SmartTurn, load_smart_turn
from stepaudio_rt.streaming.tts import TTSBackend

if TYPE_CHECKING:
    from stepaudio_rt.server.session import RealtimeSession


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    tts: TTSBackend | None
    metrics: Metrics = field(default_factory=Metrics)
    sessions: set[RealtimeSession] = field(default_factory=set)
    # Sessions admitted but not yet registered (counted so a burst of connects cannot overshoot the cap).
    reserved: int = 0

    def smart_turn(self) -> SmartTurn:
        """semantic_vad's end-of-turn model, loaded on first use (raises SmartTurnUnavailableError)."""
        return load_smart_turn(self.settings.smart_turn_model)

    def try_reserve(self) -> bool:
        if len(self.sessions) + self.reserved >= self.settings.max_sessions:
            return False
        self.reserved += 1
        return True
