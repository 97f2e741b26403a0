"""``response.create|cancel``: build response options from the session config and start / stop the run."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.handlers.voice import resolve_voice
from stepaudio_rt.server.responder import ActiveResponse
from stepaudio_rt.server.session import RealtimeSession, wire_format
from stepaudio_rt.streaming.codecs import AudioFormat
from stepaudio_rt.streaming.conversation import ConversationError, Turn
from stepaudio_rt.streaming.scheduler import ResponseOptions

if TYPE_CHECKING:
    from stepaudio_rt.server.speculative_response import SpeculativeResponse


def _input_turns(
    s: RealtimeSession, params: p.ResponseCreateParams, event_id: str | None
) -> list[Turn] | None:
    if params.input is None:
        return None
    from stepaudio_rt.server.handlers.items import item_to_turn

    turns: list[Turn] = []
    for i, entry in enumerate(params.input):
        if isinstance(entry, p.ItemReference):
            try:
                turns.append(s.scheduler.conversation.get(entry.id))
            except ConversationError:
                raise p.ProtocolError(
                    "item_not_found",
                    f"Item with id '{entry.id}' not found.",
                    f"response.input[{i}].id",
                    event_id,
                ) from None
        else:
            if entry.id is None:
                entry = entry.model_copy(update={"id": p.new_id("item")})
            turns.append(item_to_turn(s, entry, event_id, f"response.input[{i}]"))
    return turns


@dataclass(frozen=True)
class ResponsePlan:
    """A validated response: the protocol object, the run options, the wire format and where it goes."""

    response: p.Response
    options: ResponseOptions
    out_fmt: AudioFormat
    in_conversation: bool


def plan_response(s: RealtimeSession, params: p.ResponseCreateParams, event_id: str | None = None) -> ResponsePlan:
    """Validate the per-response overrides against the session (raises ``ProtocolError``)."""
    cfg = s.config
    settings = s.settings
    modalities = params.output_modalities or cfg.output_modalities
    audio = modalities == ["audio"]
    if audio and s.server.tts is None:
        raise p.ProtocolError(
            "invalid_value",
            "This server has no TTS backend; use output_modalities ['text'].",
            "response.output_modalities",
            event_id,
        )
    conversation = params.conversation or "auto"
    if conversation not in ("auto", "none"):
        raise p.ProtocolError(
            "invalid_value",
            f"Invalid value: {conversation!r}. Supported values are: 'auto', 'none'.",
            "response.conversation",
            event_id,
        )
    limit = params.max_output_tokens if params.max_output_tokens is not None else cfg.max_output_tokens
    max_tokens = settings.max_output_tokens if limit == "inf" else min(int(limit), settings.max_output_tokens)
    effort = (params.reasoning.effort if params.reasoning else None) or cfg.reasoning.effort
    out_fmt_model = (params.audio.output.format if params.audio and params.audio.output else None) or (
        cfg.audio.output.format
    )
    voice = (
        params.audio.output.voice if params.audio and params.audio.output else None
    ) or cfg.audio.output.voice
    tts_voice = resolve_voice(s, voice, "response.audio.output.voice", event_id) if audio else None
    temperature = settings.temperature_for(s.server.engine.generation_config)
    if cfg.stepaudio.temperature is not None:
        temperature = cfg.stepaudio.temperature
    if params.stepaudio is not None and params.stepaudio.temperature is not None:
        temperature = params.stepaudio.temperature
    session_ext, response_ext = cfg.stepaudio, params.stepaudio or p.StepAudioExtension()
    mind_paced = settings.mind_paced_for(
        s.server.engine.generation_config,
        mode=response_ext.thinking_mode or session_ext.thinking_mode,
        reasoning_segment_tokens=response_ext.reasoning_segment_tokens or session_ext.reasoning_segment_tokens,
        reply_segment_tokens=response_ext.reply_segment_tokens or session_ext.reply_segment_tokens,
    )
    turns = _input_turns(s, params, event_id)
    in_conversation = conversation == "auto" and turns is None
    out_fmt = wire_format(out_fmt_model)
    options = ResponseOptions(
        audio=audio,
        max_output_tokens=max_tokens,
        think_budget=settings.think_budget(effort),
        out_rate=out_fmt.sample_rate,
        chunk_ms=settings.audio_chunk_ms,
        emit_reasoning=cfg.reasoning_events,
        instructions=params.instructions,
        turns=turns,
        temperature=temperature,
        top_p=settings.top_p,
        seed=settings.seed,
        mind_paced=mind_paced,
        playback_lead_ms=settings.playback_lead_ms,
        voice=tts_voice,
    )
    response = p.Response(
        conversation_id=s.conversation_id if in_conversation else None,
        output_modalities=list(modalities),  # type: ignore[arg-type]
        max_output_tokens=limit,
        audio=p.ResponseAudio(output=p.ResponseAudioOutput(format=out_fmt_model, voice=voice))
        if audio
        else None,
        metadata=params.metadata,
    )
    return ResponsePlan(response, options, out_fmt, in_conversation)


def start_response(
    s: RealtimeSession,
    params: p.ResponseCreateParams,
    *,
    turn_end: float,
    finalize_s: float | None = None,
    event_id: str | None = None,
    speculation: SpeculativeResponse | None = None,
) -> ActiveResponse:
    """Validate the per-response overrides against the session, then start the response task.

    ``speculation``: a held speculative run for this turn; used when it was started with the same
    options (otherwise it is discarded and the response starts afresh)."""
    plan = plan_response(s, params, event_id)
    run = speculation.release(plan.options) if speculation is not None else None
    if run is None:
        run = s.scheduler.response(plan.options)
    active = ActiveResponse(s, plan.response, run, plan.out_fmt, plan.in_conversation, turn_end, finalize_s)
    s.response = active
    active.start()
    return active


async def response_create(s: RealtimeSession, event: p.ResponseCreateEvent) -> None:
    if s.response is not None:
        raise p.ProtocolError(
            "conversation_already_has_active_response",
            f"Conversation already has an active response in progress: {s.response.id}. Wait until the response "
            "is finished before creating a new one.",
            None,
            event.event_id,
        )
    start_response(
        s, event.response or p.ResponseCreateParams(), turn_end=time.perf_counter(), event_id=event.event_id
    )


async def response_cancel(s: RealtimeSession, event: p.ResponseCancelEvent) -> None:
    active = s.response
    if active is None or (event.response_id is not None and event.response_id != active.id):
        raise p.ProtocolError(
            "response_cancel_not_active",
            "Cancellation failed: no active response found.",
            None,
            event.event_id,
        )
    await active.cancel_and_wait("client_cancelled")
