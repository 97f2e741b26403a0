"""The ``voice`` field against the server's TTS: installed voices only, checked when a client sets one."""

from __future__ import annotations

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.session import RealtimeSession
from stepaudio_rt.streaming.tts import UnknownVoiceError


def resolve_voice(s: RealtimeSession, voice: p.Voice | None, param: str, event_id: str | None) -> str | None:
    """The installed voice ``voice`` selects (None without TTS); an unknown name is a ``ProtocolError``.

    The protocol's default (``joe``, the bundled Piper voice) means "the server's default voice" on a
    backend that lacks it, so a session that never names a voice works with any backend.
    """
    tts = s.server.tts
    if tts is None or voice is None:
        return None
    name = p.voice_name(voice)
    if name == p.DEFAULT_VOICE and name not in tts.voices():
        name = None
    try:
        return tts.resolve_voice(name)
    except UnknownVoiceError as exc:
        raise p.ProtocolError("invalid_value", str(exc), param, event_id) from None
