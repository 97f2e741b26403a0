"""Input audio transcription events for a committed user audio item, kept off the response's critical path.

After a user audio item is committed and ``audio.input.transcription`` is set, a background task waits
until the response that turn started has sent its first audio (or text) packet, or has ended, and only
then transcribes the turn on a worker thread: on a small CPU the transcriber would otherwise compete with
the end-of-turn prefill, the first decode steps and the first TTS chunk. It then sends
``conversation.item.input_audio_transcription.delta`` (one per segment), ``.completed`` (with duration
usage) and stores the transcript on the item (``conversation.item.retrieve`` shows it); any failure is a
``.failed`` event and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import numpy as np

from stepaudio_rt.server import protocol as p
from stepaudio_rt.streaming.conversation import AudioPart, Turn
from stepaudio_rt.streaming.transcribe import load_transcriber_async

if TYPE_CHECKING:
    from stepaudio_rt.server.session import RealtimeSession

log = logging.getLogger(__name__)

# Longest wait for the response's first packet before transcribing anyway (a stuck response must not
# starve the transcript).
_MAX_WAIT_S = 30.0
# Manual turns: the client's response.create follows its commit; give it this long to arrive.
_CREATE_GRACE_S = 0.5


def turn_audio(turn: Turn) -> np.ndarray:
    chunks = [c for part in turn.parts if isinstance(part, AudioPart) for c in part.chunks]
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def start_transcription(s: RealtimeSession, item_id: str, audio_16k: np.ndarray) -> None:
    """Transcribe ``item_id`` in the background if the session asks for transcription."""
    cfg = s.config.audio.input.transcription
    if cfg is None:
        return
    task = asyncio.create_task(_transcribe(s, item_id, audio_16k, cfg), name=f"transcribe-{item_id}")
    s.transcriptions.add(task)
    task.add_done_callback(s.transcriptions.discard)


async def _after_first_packet(s: RealtimeSession) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _CREATE_GRACE_S
    await asyncio.sleep(0)  # a VAD turn registers its response before this task first runs
    while s.response is None and loop.time() < deadline:
        await asyncio.sleep(0.05)
    response = s.response
    if response is not None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(response.first_packet.wait(), _MAX_WAIT_S)


async def _transcribe(s: RealtimeSession, item_id: str, audio: np.ndarray, cfg: p.InputTranscription) -> None:
    await _after_first_packet(s)
    try:
        transcriber = await load_transcriber_async(cfg.model, s.settings.transcription_model)
        result = await transcriber.transcribe_async(audio, cfg.language, cfg.prompt)
    except Exception as exc:  # a broken model or bad audio: report it on the item, keep the session
        log.warning("transcription of %s failed: %s", item_id, exc)
        s.send(
            p.InputAudioTranscriptionFailedEvent(
                item_id=item_id,
                error=p.ErrorDetail(type="transcription_error", code="transcription_failed", message=str(exc)),
            )
        )
        return
    for segment in result.segments:
        if segment.strip():
            s.send(p.InputAudioTranscriptionDeltaEvent(item_id=item_id, delta=segment))
    text = result.text
    s.send(
        p.InputAudioTranscriptionCompletedEvent(
            item_id=item_id,
            transcript=text,
            usage=p.TranscriptionUsage(seconds=round(result.audio_seconds, 3)),
        )
    )
    item = s.items.get(item_id)
    if isinstance(item, p.MessageItem) and item.content and isinstance(item.content[0], p.InputAudioPart):
        part = item.content[0].model_copy(update={"transcript": text})
        s.items[item_id] = item.model_copy(update={"content": [part, *item.content[1:]]})
