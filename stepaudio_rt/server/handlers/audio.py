"""``input_audio_buffer.append|commit|clear`` and the server-VAD turn they drive.

VAD turn: speech_started (+ barge-in: the active response is cancelled and closed first) -> the user turn
is prefilled chunk by chunk while the user speaks (listen-while-thinking) -> speech_stopped -> committed ->
conversation.item.added / .done -> (create_response) a response whose context is already prefilled.

semantic_vad: a speculative response starts early in each pause (``PauseStarted``, held until the verdict;
``server/speculative_response.py``); at each short pause (``PauseDetected``) the turn so far is scored by the end-of-turn model
on a worker thread; a "surely complete" verdict for a pause that is still going on ends the turn at once
(``TurnDetector.end_turn``), a "probably complete" one when the pause gets longer
(``TurnDetector.end_turn_after``), otherwise the VAD's maximum silence does. Every handler here and the verdict
run under ``session.turn_lock``, so a verdict lands between two appends, never inside one.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server import speculative_response as speculative
from stepaudio_rt.server.handlers.response import start_response
from stepaudio_rt.server.input_audio import SAMPLE_RATE, InputBufferFull
from stepaudio_rt.server.session import RealtimeSession, cancel_task
from stepaudio_rt.server.transcription import start_transcription, turn_audio
from stepaudio_rt.streaming.codecs import AudioDecodeError, decode_audio_bytes
from stepaudio_rt.streaming.smart_turn import WINDOW_SAMPLES
from stepaudio_rt.streaming.vad import (
    FRAME_MS,
    IdleTimeout,
    PauseDetected,
    PauseStarted,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
)

_MS = SAMPLE_RATE // 1000
log = logging.getLogger(__name__)


def _user_item(item_id: str) -> p.MessageItem:
    return p.MessageItem(id=item_id, role="user", status="completed", content=[p.InputAudioPart()])


async def buffer_append(s: RealtimeSession, event: p.InputAudioBufferAppendEvent) -> None:
    async with s.turn_lock:
        await _append(s, event)


async def _append(s: RealtimeSession, event: p.InputAudioBufferAppendEvent) -> None:
    try:
        pcm = decode_audio_bytes(event.audio_bytes, s.input.fmt)
    except AudioDecodeError as exc:
        raise p.ProtocolError("invalid_value", str(exc), "audio", event.event_id) from None
    manual = s.input.vad is None
    try:
        for step in s.input.push(pcm):
            fed = False
            for ev in step.events:
                if isinstance(ev, SpeechStarted):
                    await _speech_started(s, ev)
                    fed = True
                elif isinstance(ev, SpeechStopped) and s.speech_item_id is not None:
                    if not fed:
                        s.scheduler.feed(step.samples)
                    fed = True
                    await _speech_stopped(s, ev)
                elif isinstance(ev, PauseStarted) and s.speech_item_id is not None:
                    speculative.speculate(s, s.speech_item_id, ev.audio_end_ms)  # held until the verdict
                elif isinstance(ev, PauseDetected) and s.speech_item_id is not None:
                    await _score_pause(s, s.speech_item_id, ev)
                elif isinstance(ev, IdleTimeout):
                    s.send(
                        p.InputAudioBufferTimeoutTriggeredEvent(
                            audio_start_ms=ev.audio_end_ms,
                            audio_end_ms=ev.audio_end_ms,
                            item_id=p.new_id("item"),
                        )
                    )
            if s.speculation is not None:  # the user spoke again: the speculative response is moot
                speculative.still_live(s)
            if fed:
                continue
            if manual:
                if s.scheduler.listening is None:
                    s.scheduler.start_listening(p.new_id("item"))
                    s.scheduler.feed(s.input.samples())
                else:
                    s.scheduler.feed(step.samples)
            elif s.speech_item_id is not None:
                s.scheduler.feed(step.samples)
    except InputBufferFull as exc:
        raise p.ProtocolError("input_audio_buffer_full", str(exc), "audio", event.event_id) from None
    if not manual and s.speech_item_id is None:
        _trim_silence(s)


def _trim_silence(s: RealtimeSession) -> None:
    """Outside speech only the prefix padding can still become part of a turn: drop older audio."""
    td = s.config.turn_detection
    pad_ms = td.prefix_padding_ms if isinstance(td, p.ServerVad) else 300
    keep = (pad_ms + 500) * _MS
    if s.input.num_samples > keep + 2 * SAMPLE_RATE:
        s.input.drop_before(s.input.end - keep)


async def _score_pause(s: RealtimeSession, item_id: str, ev: PauseDetected) -> None:
    """Start scoring the turn at this pause (the last 8 s, as the model reads); an older score is moot."""
    assert s.input.vad is not None
    await cancel_task(s.eot_task)
    audio = s.input.samples(s.input.end - WINDOW_SAMPLES, s.input.end).copy()
    s.eot_task = asyncio.create_task(_end_if_complete(s, item_id, ev.pause, audio, s.input.vad), name="eot")
    speculative.speculate(s, item_id, ev.audio_end_ms)  # started at PauseStarted already, unless discarded


async def _end_if_complete(
    s: RealtimeSession, item_id: str, pause: int, audio: np.ndarray, detector: TurnDetector
) -> None:
    t0 = time.perf_counter()
    hist = s.server.metrics.end_of_turn
    try:
        probability = await s.server.smart_turn().score(audio)
    except Exception:  # the model failed: the maximum silence still ends the turn
        log.exception("end-of-turn scoring failed")
        hist.labels(verdict="error").observe(time.perf_counter() - t0)
        speculative.discard(s, pause * FRAME_MS)
        return
    async with s.turn_lock:
        live = not s.closed and s.speech_item_id == item_id and s.input.vad is detector
        cfg = detector.config
        if not live or probability < cfg.likely_threshold:
            verdict = "stale" if not live else "incomplete"
            hist.labels(verdict=verdict).observe(time.perf_counter() - t0)
            speculative.discard(s, pause * FRAME_MS)
            return
        if probability >= cfg.end_of_turn_threshold:
            ev = detector.end_turn(pause)
        else:  # probably complete: the VAD ends the turn if the pause lasts likely_silence_ms
            ev = detector.end_turn_after(pause, cfg.likely_silence_ms)
            if ev is None:
                hist.labels(verdict="likely").observe(time.perf_counter() - t0)
                return
        hist.labels(verdict="stale" if ev is None else "complete").observe(time.perf_counter() - t0)
        if ev is None:
            speculative.discard(s, pause * FRAME_MS)
            return
        s.eot_task = None  # this task is finishing the turn; a later pause must not cancel it
        try:  # as the reader loop would: a failure becomes an error event, the session lives on
            await _speech_stopped(s, ev)
        except p.ProtocolError as exc:
            s.error(exc)
        except Exception as exc:
            log.exception("ending the turn failed")
            s.error(p.ProtocolError("server_error", f"Internal error: {exc}", type="server_error"))


async def _speech_started(s: RealtimeSession, ev: SpeechStarted) -> None:
    await cancel_task(s.eot_task)
    speculative.discard(s)
    td = s.config.turn_detection
    if s.response is not None and (td is None or td.interrupt_response):
        await s.response.cancel_and_wait("turn_detected")
    await s.scheduler.abandon_listening()
    item_id = p.new_id("item")
    s.speech_item_id = item_id
    s.send(p.InputAudioBufferSpeechStartedEvent(audio_start_ms=ev.audio_start_ms, item_id=item_id))
    s.scheduler.start_listening(item_id)
    s.scheduler.feed(s.input.samples(ev.audio_start_ms * _MS, s.input.end))


async def _speech_stopped(s: RealtimeSession, ev: SpeechStopped) -> None:
    turn_end = time.perf_counter()
    item_id = s.speech_item_id
    assert item_id is not None
    s.speech_item_id = None
    s.send(p.InputAudioBufferSpeechStoppedEvent(audio_end_ms=ev.audio_end_ms, item_id=item_id))
    spec = speculative.take(s, item_id, ev.audio_end_ms)  # a response started at this pause, held so far
    try:
        finalize_s = await commit_turn(s, item_id, None, spec)
        s.input.drop_before(s.input.end)
        td = s.config.turn_detection
        if td is not None and td.create_response and s.response is None:
            start_response(
                s, p.ResponseCreateParams(), turn_end=turn_end, finalize_s=finalize_s, event_id=None, speculation=spec
            )
    finally:
        if spec is not None and not spec.released:
            spec.cancel()


async def commit_turn(
    s: RealtimeSession, item_id: str, event_id: str | None, speculation: speculative.SpeculativeResponse | None = None
) -> float:
    """Announce the user item, finish its prefill (from the speculation's snapshot when there is one);
    returns the end-of-turn finalize time (s)."""
    t0 = time.perf_counter()
    item = _user_item(item_id)
    previous = s.order[-1] if s.order else None
    s.add_item(item)
    s.send(p.InputAudioBufferCommittedEvent(previous_item_id=previous, item_id=item_id))
    s.send(p.ConversationItemAddedEvent(previous_item_id=previous, item=item))
    s.send(p.ConversationItemDoneEvent(previous_item_id=previous, item=item))
    committed = await speculation.commit() if speculation is not None else None
    if committed is None:
        committed = await s.scheduler.commit_listening(s.previous_in_conversation(item_id))
    finalize_s = time.perf_counter() - t0
    start_transcription(s, item_id, turn_audio(committed.turn))
    return finalize_s


async def buffer_commit(s: RealtimeSession, event: p.InputAudioBufferCommitEvent) -> None:
    async with s.turn_lock:
        await _commit(s, event)


async def _commit(s: RealtimeSession, event: p.InputAudioBufferCommitEvent) -> None:
    await cancel_task(s.eot_task)
    speculative.discard(s)
    if s.input.duration_ms < s.settings.min_commit_ms:
        raise p.ProtocolError(
            "input_audio_buffer_commit_empty",
            f"Error committing input audio buffer: buffer too small. Expected at least {s.settings.min_commit_ms}ms "
            f"of audio, but buffer only has {s.input.duration_ms:.2f}ms of audio.",
            None,
            event.event_id,
        )
    listening = s.scheduler.listening
    if listening is None:
        item_id = s.speech_item_id or p.new_id("item")
        s.scheduler.start_listening(item_id)
        s.scheduler.feed(s.input.samples())
    else:
        item_id = listening.turn_id
    s.speech_item_id = None
    await commit_turn(s, item_id, event.event_id)
    s.input.clear()


async def buffer_clear(s: RealtimeSession, event: p.InputAudioBufferClearEvent) -> None:
    async with s.turn_lock:
        await cancel_task(s.eot_task)
        speculative.discard(s)
        await _clear(s)


async def _clear(s: RealtimeSession) -> None:
    s.speech_item_id = None
    await s.scheduler.abandon_listening()
    s.input.clear()
    s.send(p.InputAudioBufferClearedEvent())
