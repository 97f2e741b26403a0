"""``session.update``: partial updates validated by the protocol module, then made effective."""

from __future__ import annotations

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server import speculative_response
from stepaudio_rt.server.handlers.voice import resolve_voice
from stepaudio_rt.server.session import RealtimeSession
from stepaudio_rt.streaming.codecs import AudioFormatError
from stepaudio_rt.streaming.smart_turn import SmartTurnUnavailableError
from stepaudio_rt.streaming.vad import VadConfigError


async def session_update(s: RealtimeSession, event: p.SessionUpdateEvent) -> None:
    new = p.apply_session_update(
        s.config, event.session, lock_voice=s.produced_audio, event_id=event.event_id
    )
    # An unknown voice is refused before anything changes (the old settings stay).
    resolve_voice(s, new.audio.output.voice, "session.audio.output.voice", event.event_id)
    if isinstance(new.turn_detection, p.SemanticVad):
        try:  # refuse semantic_vad up front when its model cannot load, keeping the old settings
            s.server.smart_turn()
        except SmartTurnUnavailableError as exc:
            raise p.ProtocolError(
                "invalid_value", f"semantic_vad is unavailable: {exc}", "session.audio.input.turn_detection.type",
                event.event_id,
            ) from None
    try:
        s.apply_config(new)
    except VadConfigError as exc:
        raise p.ProtocolError(
            "invalid_value", str(exc), f"session.audio.input.turn_detection.{exc.param}", event.event_id
        ) from None
    except AudioFormatError as exc:
        raise p.ProtocolError(exc.code, str(exc), "session.audio.input.format", event.event_id) from None
    if new.turn_detection is None and s.speech_item_id is not None:
        s.speech_item_id = None
        await s.scheduler.abandon_listening()
    speculative_response.still_live(s)  # a new turn detection or format ends a speculation
    s.send(p.SessionUpdatedEvent(session=s.config))
