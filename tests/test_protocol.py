"""The typed Realtime protocol: client parsing and its errors, session updates, server events checked
against the strict models of real clients (pipecat, the openai SDK), and the beta dialect adapter."""

from __future__ import annotations

import base64
import json
import typing
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent as OpenAIServerEvent
from pipecat.services.openai.realtime import events as pipecat_events

from stepaudio_rt.server import beta
from stepaudio_rt.server import protocol as p

# ----------------------------------------------------------------------------------------------------
# client events
# ----------------------------------------------------------------------------------------------------

PCM_100MS = base64.b64encode(b"\x01\x00" * 2400).decode()

CLIENT_SAMPLES: list[tuple[dict[str, Any], type[p.ClientEventBase]]] = [
    (
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Be brief.",
                "audio": {"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}}},
            },
        },
        p.SessionUpdateEvent,
    ),
    ({"type": "input_audio_buffer.append", "audio": PCM_100MS}, p.InputAudioBufferAppendEvent),
    ({"type": "input_audio_buffer.commit"}, p.InputAudioBufferCommitEvent),
    ({"type": "input_audio_buffer.clear"}, p.InputAudioBufferClearEvent),
    (
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {
                "id": "item_client1",
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "hi"},
                    {"type": "input_audio", "audio": PCM_100MS},
                ],
            },
        },
        p.ConversationItemCreateEvent,
    ),
    ({"type": "conversation.item.delete", "item_id": "item_1"}, p.ConversationItemDeleteEvent),
    (
        {"type": "conversation.item.truncate", "item_id": "item_1", "content_index": 0, "audio_end_ms": 1500},
        p.ConversationItemTruncateEvent,
    ),
    ({"type": "conversation.item.retrieve", "item_id": "item_1"}, p.ConversationItemRetrieveEvent),
    (
        {
            "type": "response.create",
            "response": {
                "instructions": "Answer in French.",
                "output_modalities": ["text"],
                "max_output_tokens": 256,
                "metadata": {"client_event_id": "abc"},
                "conversation": "none",
                "input": [{"type": "item_reference", "id": "item_1"}],
                "audio": {"output": {"voice": {"id": "joe"}}},
                "reasoning": {"effort": "low"},
            },
        },
        p.ResponseCreateEvent,
    ),
    ({"type": "response.cancel", "response_id": "resp_1"}, p.ResponseCancelEvent),
    ({"type": "output_audio_buffer.clear"}, p.OutputAudioBufferClearEvent),
]


def test_samples_cover_every_client_event_type() -> None:
    assert {sample["type"] for sample, _ in CLIENT_SAMPLES} == set(p.CLIENT_EVENT_TYPES)


@pytest.mark.parametrize(("sample", "model"), CLIENT_SAMPLES, ids=[s["type"] for s, _ in CLIENT_SAMPLES])
def test_every_client_event_type_parses(sample: dict[str, Any], model: type[p.ClientEventBase]) -> None:
    raw = json.dumps({**sample, "event_id": "evt_client_7", "some_future_field": 1})
    event = p.parse_client_event(raw)
    assert type(event) is model
    assert event.event_id == "evt_client_7"
    assert p.parse_client_event(raw.encode()).model_dump() == event.model_dump()  # bytes frames too


def test_client_event_details_survive_parsing() -> None:
    append = p.parse_client_event(json.dumps(CLIENT_SAMPLES[1][0]))
    assert isinstance(append, p.InputAudioBufferAppendEvent)
    assert append.audio_bytes == b"\x01\x00" * 2400

    create = p.parse_client_event(json.dumps(CLIENT_SAMPLES[8][0]))
    assert isinstance(create, p.ResponseCreateEvent) and create.response is not None
    assert create.response.metadata == {"client_event_id": "abc"}
    assert create.response.max_output_tokens == 256
    assert isinstance(create.response.input[0], p.ItemReference)  # type: ignore[index]
    assert create.response.audio.output.voice == p.VoiceId(id="joe")  # type: ignore[union-attr]

    item = p.parse_client_event(json.dumps(CLIENT_SAMPLES[4][0]))
    assert isinstance(item, p.ConversationItemCreateEvent) and isinstance(item.item, p.MessageItem)
    assert [part.type for part in item.item.content] == ["input_text", "input_audio"]
    assert item.item.id == "item_client1"  # client ids are kept (LiveKit waits for them)


def test_truncate_floors_float_milliseconds() -> None:
    event = p.parse_client_event(
        '{"type": "conversation.item.truncate", "item_id": "i", "audio_end_ms": 1234.9}'
    )
    assert isinstance(event, p.ConversationItemTruncateEvent)
    assert event.audio_end_ms == 1234 and event.content_index == 0


def _session(**fields: Any) -> dict[str, Any]:
    return {"type": "session.update", "event_id": "evt_bad", "session": {"type": "realtime", **fields}}


BAD_INPUTS: list[tuple[str, str | bytes, str, str | None, str | None]] = [
    # id, raw message, code, param, event_id echoed
    ("not-json", '{"type": "input_audio_buffer.commit"', "invalid_json", None, None),
    ("not-utf8", b"\xff\xfe{", "invalid_json", None, None),
    ("array", '[{"type": "input_audio_buffer.commit"}]', "invalid_event", None, None),
    ("number", "42", "invalid_event", None, None),
    ("missing-type", '{"event_id": "evt_bad"}', "missing_required_parameter", "type", "evt_bad"),
    ("type-not-string", '{"type": 3, "event_id": "evt_bad"}', "invalid_type", "type", "evt_bad"),
    (
        "unknown-type",
        '{"type": "response.explode", "event_id": "evt_bad"}',
        "invalid_value",
        "type",
        "evt_bad",
    ),
    (
        "beta-type-in-ga",
        '{"type": "transcription_session.update", "event_id": "evt_bad"}',
        "invalid_value",
        "type",
        "evt_bad",
    ),
    (
        "missing-field",
        '{"type": "conversation.item.delete", "event_id": "evt_bad"}',
        "missing_required_parameter",
        "item_id",
        "evt_bad",
    ),
    (
        "mistyped-field",
        '{"type": "conversation.item.truncate", "event_id": "evt_bad", "item_id": "i", "audio_end_ms": "10"}',
        "invalid_type",
        "audio_end_ms",
        "evt_bad",
    ),
    (
        "negative-ms",
        '{"type": "conversation.item.truncate", "event_id": "evt_bad", "item_id": "i", "audio_end_ms": -5}',
        "invalid_value",
        "audio_end_ms",
        "evt_bad",
    ),
    (
        "bad-base64",
        '{"type": "input_audio_buffer.append", "event_id": "evt_bad", "audio": "not base64!"}',
        "invalid_value",
        "audio",
        "evt_bad",
    ),
    (
        "missing-role",
        '{"type": "conversation.item.create", "event_id": "evt_bad", "item": {"type": "message", "content": []}}',
        "missing_required_parameter",
        "item.role",
        "evt_bad",
    ),
    (
        "bad-item-type",
        '{"type": "conversation.item.create", "event_id": "evt_bad", "item": {"type": "video"}}',
        "invalid_value",
        "item.type",
        "evt_bad",
    ),
    (
        "part-not-for-role",
        json.dumps(
            {
                "type": "conversation.item.create",
                "event_id": "evt_bad",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "output_text", "text": "x"}],
                },
            }
        ),
        "invalid_value",
        "item.content",
        "evt_bad",
    ),
    (
        "bad-part-field",
        json.dumps(
            {
                "type": "conversation.item.create",
                "event_id": "evt_bad",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 7}]},
            }
        ),
        "invalid_type",
        "item.content[0].text",
        "evt_bad",
    ),
    (
        "bad-enum",
        json.dumps(
            _session(audio={"input": {"turn_detection": {"type": "semantic_vad", "eagerness": "eager"}}})
        ),
        "invalid_value",
        "session.audio.input.turn_detection.eagerness",
        "evt_bad",
    ),
    (
        "threshold-out-of-range",
        json.dumps(_session(audio={"input": {"turn_detection": {"type": "server_vad", "threshold": 1.5}}})),
        "invalid_value",
        "session.audio.input.turn_detection.threshold",
        "evt_bad",
    ),
    (
        "bool-not-int",
        json.dumps(
            _session(audio={"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": True}}})
        ),
        "invalid_type",
        "session.audio.input.turn_detection.silence_duration_ms",
        "evt_bad",
    ),
    (
        "unknown-vad-type",
        json.dumps(_session(audio={"input": {"turn_detection": {"type": "push_to_talk"}}})),
        "invalid_value",
        "session.audio.input.turn_detection.type",
        "evt_bad",
    ),
    (
        "max-tokens-too-big",
        json.dumps(_session(max_output_tokens=5000)),
        "invalid_value",
        "session.max_output_tokens",
        "evt_bad",
    ),
    (
        "max-tokens-zero",
        json.dumps(_session(max_output_tokens=0)),
        "invalid_value",
        "session.max_output_tokens",
        "evt_bad",
    ),
    (
        "max-tokens-word",
        json.dumps(_session(max_output_tokens="lots")),
        "invalid_value",
        "session.max_output_tokens",
        "evt_bad",
    ),
    (
        "max-tokens-float",
        json.dumps(_session(max_output_tokens=12.5)),
        "invalid_type",
        "session.max_output_tokens",
        "evt_bad",
    ),
    (
        "two-modalities",
        json.dumps(_session(output_modalities=["text", "audio"])),
        "invalid_value",
        "session.output_modalities",
        "evt_bad",
    ),
    (
        "speed",
        json.dumps(_session(audio={"output": {"speed": 3}})),
        "invalid_value",
        "session.audio.output.speed",
        "evt_bad",
    ),
    (
        "rate",
        json.dumps(_session(audio={"input": {"format": {"type": "audio/pcm", "rate": 16000}}})),
        "invalid_value",
        "session.audio.input.format.rate",
        "evt_bad",
    ),
    (
        "format-no-type",
        json.dumps(_session(audio={"output": {"format": {"rate": 24000}}})),
        "missing_required_parameter",
        "session.audio.output.format.type",
        "evt_bad",
    ),
    (
        "tool-no-name",
        json.dumps(_session(tools=[{"type": "function"}])),
        "missing_required_parameter",
        "session.tools[0].name",
        "evt_bad",
    ),
    (
        "tool-choice",
        json.dumps(_session(tool_choice="sometimes")),
        "invalid_value",
        "session.tool_choice",
        "evt_bad",
    ),
    (
        "effort",
        json.dumps(_session(reasoning={"effort": "maximal"})),
        "invalid_value",
        "session.reasoning.effort",
        "evt_bad",
    ),
    (
        "session-not-object",
        '{"type": "session.update", "event_id": "evt_bad", "session": []}',
        "invalid_type",
        "session",
        "evt_bad",
    ),
    (
        "session-without-type",
        '{"type": "session.update", "event_id": "evt_bad", "session": {}}',
        "missing_required_parameter",
        "session.type",
        "evt_bad",
    ),
    (
        "transcription-session",
        '{"type": "session.update", "event_id": "evt_bad", "session": {"type": "transcription"}}',
        "invalid_value",
        "session.type",
        "evt_bad",
    ),
    (
        "beta-key-in-ga",
        json.dumps(_session(turn_detection=None)),
        "unknown_parameter",
        "session.turn_detection",
        "evt_bad",
    ),
    (
        "metadata-too-many",
        json.dumps(
            {
                "type": "response.create",
                "event_id": "evt_bad",
                "response": {"metadata": {str(i): "v" for i in range(17)}},
            }
        ),
        "invalid_value",
        "response.metadata",
        "evt_bad",
    ),
    (
        "metadata-not-strings",
        json.dumps({"type": "response.create", "event_id": "evt_bad", "response": {"metadata": {"k": 1}}}),
        "invalid_type",
        "response.metadata.k",
        "evt_bad",
    ),
    (
        "event-id-not-string",
        '{"type": "input_audio_buffer.commit", "event_id": 5}',
        "invalid_type",
        "event_id",
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "code", "param", "event_id"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_raises_protocol_error(
    raw: str | bytes, code: str, param: str | None, event_id: str | None
) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_client_event(raw)
    err = caught.value
    assert (err.code, err.param, err.event_id, err.type) == (code, param, event_id, "invalid_request_error")
    assert err.message and len(err.message) < 1000
    if param:
        assert param in err.message
    # ... and it becomes an error event that pipecat can read
    wire = p.serialize(err.to_event())
    parsed = pipecat_events.parse_server_event(wire)
    assert parsed.error.code == code and parsed.error.event_id == event_id and parsed.error.param == param


def test_oversized_append_is_rejected_without_decoding() -> None:
    raw = json.dumps(
        {"type": "input_audio_buffer.append", "event_id": "e", "audio": "A" * (p.MAX_APPEND_BASE64_CHARS + 4)}
    )
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_client_event(raw)
    assert (caught.value.code, caught.value.param) == ("invalid_value", "audio")
    assert "A" * 100 not in caught.value.message  # the payload is not echoed back


def test_events_sent_by_pipecat_parse() -> None:
    """pipecat's own client event models, dumped the way pipecat sends them, are accepted."""
    session = pipecat_events.SessionProperties(
        instructions="Be brief.",
        output_modalities=["audio"],
        audio=pipecat_events.AudioConfiguration(
            input=pipecat_events.AudioInput(
                format=pipecat_events.PCMAudioFormat(),
                transcription=pipecat_events.InputAudioTranscription(model="gpt-4o-transcribe"),
                turn_detection=pipecat_events.TurnDetection(silence_duration_ms=800),
                noise_reduction=pipecat_events.InputAudioNoiseReduction(type="near_field"),
            ),
            output=pipecat_events.AudioOutput(
                format=pipecat_events.PCMAudioFormat(), voice="marin", speed=1.1
            ),
        ),
        tool_choice="auto",
        max_output_tokens=4096,
    )
    sent = [
        pipecat_events.SessionUpdateEvent(session=session),
        pipecat_events.InputAudioBufferAppendEvent(audio=PCM_100MS),
        pipecat_events.InputAudioBufferCommitEvent(),
        pipecat_events.ConversationItemCreateEvent(
            item=pipecat_events.ConversationItem(
                type="message",
                role="user",
                content=[pipecat_events.ItemContent(type="input_text", text="hi")],
            )
        ),
        pipecat_events.ConversationItemTruncateEvent(item_id="item_1", content_index=0, audio_end_ms=640),
        pipecat_events.ResponseCreateEvent(response=pipecat_events.ResponseProperties(instructions="x")),
        pipecat_events.ResponseCancelEvent(),
    ]
    for event in sent:
        parsed = p.parse_client_event(json.dumps(event.model_dump(exclude_none=True)))
        assert parsed.type == event.type and parsed.event_id == event.event_id
    update = p.parse_client_event(json.dumps(sent[0].model_dump(exclude_none=True)))
    assert isinstance(update, p.SessionUpdateEvent)
    config = p.apply_session_update(p.SessionConfig(), update.session)
    assert config.audio.output.voice == "marin" and config.audio.output.speed == 1.1
    assert isinstance(config.turn_detection, p.ServerVad) and config.turn_detection.silence_duration_ms == 800
    assert config.audio.input.transcription == p.InputTranscription(model="gpt-4o-transcribe")
    assert config.max_output_tokens == 4096


# ----------------------------------------------------------------------------------------------------
# session configuration
# ----------------------------------------------------------------------------------------------------


def test_default_session_config_is_what_the_server_runs() -> None:
    config = p.SessionConfig()
    assert config.output_modalities == ["audio"]
    assert config.audio.input.format == p.PcmFormat() and config.audio.output.format.rate == 24000  # type: ignore[union-attr]
    vad = config.turn_detection
    assert isinstance(vad, p.ServerVad)
    assert (vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms) == (0.5, 300, 500)
    assert vad.create_response and vad.interrupt_response
    assert config.audio.output.voice == "joe" and config.reasoning_events is False
    assert config.id.startswith("sess_") and config.id != p.SessionConfig().id


def test_partial_update_changes_only_present_fields() -> None:
    base = p.apply_session_update(
        p.SessionConfig(),
        {"type": "realtime", "instructions": "Be brief.", "audio": {"output": {"voice": "amy"}}},
    )
    updated = p.apply_session_update(
        base,
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 0.7}}},
        },
    )
    assert updated.instructions == "Be brief." and updated.audio.output.voice == "amy"
    vad = updated.turn_detection
    assert isinstance(vad, p.ServerVad)
    assert (vad.threshold, vad.silence_duration_ms) == (0.7, 500)  # same type: merged
    assert base.turn_detection == p.ServerVad()  # the input config is never modified
    assert updated.id == base.id


def test_turn_detection_null_means_manual_and_type_change_replaces() -> None:
    config = p.apply_session_update(
        p.SessionConfig(),
        {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}}},
        },
    )
    manual = p.apply_session_update(
        config, {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    )
    assert manual.turn_detection is None
    again = p.apply_session_update(manual, {"type": "realtime", "instructions": "x"})
    assert again.turn_detection is None  # manual mode survives unrelated updates
    assert '"turn_detection":null' in p.serialize(p.SessionUpdatedEvent(session=again))
    semantic = p.apply_session_update(
        config, {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}
    )
    assert semantic.turn_detection == p.SemanticVad()  # a new type starts from that type's defaults
    assert semantic.turn_detection.max_wait_ms == 4000  # type: ignore[union-attr]


def test_update_clears_instructions_tools_and_replaces_formats() -> None:
    config = p.apply_session_update(
        p.SessionConfig(),
        {
            "type": "realtime",
            "instructions": "x",
            "tools": [{"type": "function", "name": "get_time", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_time"},
            "audio": {"input": {"format": {"type": "audio/pcmu"}}},
        },
    )
    assert config.tools[0].name == "get_time" and config.tool_choice == p.ToolChoiceFunction(name="get_time")
    assert config.audio.input.format == p.PcmuFormat()
    cleared = p.apply_session_update(
        config, {"type": "realtime", "instructions": "", "tools": [], "tool_choice": "auto"}
    )
    assert cleared.instructions == "" and cleared.tools == [] and cleared.tool_choice == "auto"
    back = p.apply_session_update(
        config, {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm"}}}}
    )
    assert back.audio.input.format == p.PcmFormat()


def test_update_ignores_model_and_id_and_reads_extension() -> None:
    config = p.SessionConfig(model="step-audio-r1")
    updated = p.apply_session_update(
        config,
        {
            "type": "realtime",
            "model": "gpt-realtime",
            "id": "sess_client",
            "stepaudio": {"reasoning_events": True, "future_knob": 3},
            "reasoning": {"effort": "high"},
            "max_output_tokens": "inf",
            "truncation": {"type": "retention_ratio", "retention_ratio": 0.5},
            "tracing": "auto",
            "include": ["item.input_audio_transcription.logprobs"],
        },
    )
    assert updated.model == "step-audio-r1" and updated.id == config.id
    assert updated.reasoning_events is True and updated.reasoning.effort == "high"
    assert updated.stepaudio.temperature is None
    again = p.apply_session_update(updated, {"type": "realtime", "stepaudio": {"temperature": 0.6}})
    assert again.reasoning_events is True and again.stepaudio.temperature == 0.6  # extension merges


def test_update_errors_carry_path_and_event_id() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        p.apply_session_update(
            p.SessionConfig(),
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": -1}}},
            },
            event_id="evt_9",
        )
    assert caught.value.param == "session.audio.input.turn_detection.threshold"
    assert caught.value.event_id == "evt_9" and caught.value.code == "invalid_value"


def test_voice_locks_after_audio() -> None:
    config = p.SessionConfig()
    same = p.apply_session_update(
        config, {"type": "realtime", "audio": {"output": {"voice": {"id": "joe"}}}}, lock_voice=True
    )
    assert p.voice_name(same.audio.output.voice) == "joe"
    with pytest.raises(p.ProtocolError) as caught:
        p.apply_session_update(
            config, {"type": "realtime", "audio": {"output": {"voice": "amy"}}}, lock_voice=True
        )
    assert caught.value.param == "session.audio.output.voice"


# ----------------------------------------------------------------------------------------------------
# server events
# ----------------------------------------------------------------------------------------------------


def _assistant_item(status: str = "completed") -> p.MessageItem:
    return p.MessageItem(
        id="item_a1",
        role="assistant",
        status=status,
        content=[p.OutputAudioPart(transcript="Four.")],  # type: ignore[arg-type]
    )


def _user_item() -> p.MessageItem:
    return p.MessageItem(
        id="item_u1", role="user", status="completed", content=[p.InputAudioPart(transcript=None)]
    )


def _server_samples() -> list[p.ServerEventBase]:
    ref = {"response_id": "resp_1", "item_id": "item_a1", "output_index": 0, "content_index": 0}
    session = p.apply_session_update(
        p.SessionConfig(),
        {
            "type": "realtime",
            "tools": [
                {
                    "type": "function",
                    "name": "get_time",
                    "description": "Time.",
                    "parameters": {"type": "object", "properties": {}},
                }
            ],
            "audio": {
                "input": {
                    "transcription": {"model": "whisper-tiny", "language": "en"},
                    "noise_reduction": {"type": "near_field"},
                }
            },
            "stepaudio": {"reasoning_events": True},
        },
    )
    call = p.FunctionCallItem(
        id="item_f1", call_id="call_1", name="get_time", arguments="{}", status="completed"
    )
    done = p.Response(
        id="resp_1",
        status="completed",
        output=[_assistant_item(), call],
        conversation_id="conv_1",
        audio=p.ResponseAudio(),
        metadata={"client_event_id": "abc"},
        usage=p.Usage.from_counts(
            input_text=10, input_audio=50, output_text=30, output_audio=0, cached_text=4
        ),
    )
    return [
        p.ErrorEvent(error=p.ErrorDetail(code="response_cancel_not_active", message="No active response.")),
        p.SessionCreatedEvent(session=p.SessionConfig()),
        p.SessionUpdatedEvent(session=session),
        p.InputAudioBufferSpeechStartedEvent(audio_start_ms=120, item_id="item_u1"),
        p.InputAudioBufferSpeechStoppedEvent(audio_end_ms=2300, item_id="item_u1"),
        p.InputAudioBufferCommittedEvent(item_id="item_u1"),
        p.InputAudioBufferClearedEvent(),
        p.InputAudioBufferTimeoutTriggeredEvent(audio_start_ms=0, audio_end_ms=5000, item_id="item_u2"),
        p.ConversationItemAddedEvent(previous_item_id=None, item=_user_item()),
        p.ConversationItemDoneEvent(previous_item_id="item_0", item=_user_item()),
        p.ConversationItemRetrievedEvent(item=call),
        p.ConversationItemTruncatedEvent(item_id="item_a1", audio_end_ms=640),
        p.ConversationItemDeletedEvent(item_id="item_a1"),
        p.InputAudioTranscriptionDeltaEvent(item_id="item_u1", delta="what is"),
        p.InputAudioTranscriptionCompletedEvent(item_id="item_u1", transcript="what is two plus two"),
        p.InputAudioTranscriptionFailedEvent(
            item_id="item_u1",
            error=p.ErrorDetail(type="transcription_error", code="audio_unintelligible", message="x"),
        ),
        p.ResponseCreatedEvent(response=p.Response(id="resp_1", metadata={"client_event_id": "abc"})),
        p.ResponseDoneEvent(response=done),
        p.ResponseOutputItemAddedEvent(response_id="resp_1", item=_assistant_item("in_progress")),
        p.ResponseOutputItemDoneEvent(response_id="resp_1", item=_assistant_item()),
        p.ResponseContentPartAddedEvent(**ref, part=p.ResponsePart(type="audio", transcript="")),
        p.ResponseContentPartDoneEvent(**ref, part=p.ResponsePart(type="audio", transcript="Four.")),
        p.ResponseOutputAudioDeltaEvent(**ref, delta=PCM_100MS),
        p.ResponseOutputAudioDoneEvent(**ref),
        p.ResponseOutputAudioTranscriptDeltaEvent(**ref, delta="Fo"),
        p.ResponseOutputAudioTranscriptDoneEvent(**ref, transcript="Four."),
        p.ResponseOutputTextDeltaEvent(**ref, delta="Fo"),
        p.ResponseOutputTextDoneEvent(**ref, text="Four."),
        p.ResponseFunctionCallArgumentsDeltaEvent(
            response_id="resp_1", item_id="item_f1", call_id="call_1", delta="{"
        ),
        p.ResponseFunctionCallArgumentsDoneEvent(
            response_id="resp_1", item_id="item_f1", call_id="call_1", name="get_time", arguments="{}"
        ),
        p.RateLimitsUpdatedEvent(
            rate_limits=[p.RateLimit(name="tokens", limit=1000, remaining=900, reset_seconds=1.5)]
        ),
        p.ResponseReasoningTextDeltaEvent(**ref, delta="2 + 2"),
        p.ResponseReasoningTextDoneEvent(**ref, text="2 + 2 = 4"),
    ]


SERVER_SAMPLES = _server_samples()


def test_samples_cover_every_server_event_type() -> None:
    assert sorted(e.type for e in SERVER_SAMPLES) == sorted(p.SERVER_EVENT_TYPES)  # type: ignore[attr-defined]


@pytest.mark.parametrize("event", SERVER_SAMPLES, ids=[e.type for e in SERVER_SAMPLES])  # type: ignore[attr-defined]
def test_server_event_validates_against_pipecat(event: p.ServerEventBase) -> None:
    wire = p.serialize(event)
    parsed = pipecat_events.parse_server_event(wire)
    kind = json.loads(wire)["type"]
    if kind in p.OPT_IN_EVENT_TYPES:
        # pipecat does not know these: they must only go to sessions that asked for them
        assert parsed is None and kind not in pipecat_events._server_event_types
        return
    assert parsed is not None, f"pipecat does not know {kind}"
    assert parsed.type == kind and parsed.event_id == event.event_id


_OPENAI_MODELS = {
    typing.get_args(model.model_fields["type"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(OpenAIServerEvent)[0])
}


@pytest.mark.parametrize("event", SERVER_SAMPLES, ids=[e.type for e in SERVER_SAMPLES])  # type: ignore[attr-defined]
def test_server_event_validates_against_openai_sdk_models(event: p.ServerEventBase) -> None:
    data = json.loads(p.serialize(event))
    model = _OPENAI_MODELS.get(data["type"])
    if data["type"] in p.EXTENSION_EVENT_TYPES:
        assert model is None  # our own names do not collide with OpenAI's
        return
    assert model is not None, data["type"]
    model.model_validate(data)  # raises on a missing required field or a wrong type / literal


@pytest.mark.parametrize("event", SERVER_SAMPLES, ids=[e.type for e in SERVER_SAMPLES])  # type: ignore[attr-defined]
def test_server_event_round_trips_through_our_parser(event: p.ServerEventBase) -> None:
    wire = p.serialize(event)
    again = p.parse_server_event(wire)
    assert again is not None and p.serialize(again) == wire
    assert event.model_dump(mode="json") == json.loads(wire)  # the dict form beta.py rewrites


def test_serialization_keeps_required_nulls_and_drops_the_rest() -> None:
    created = json.loads(p.serialize(p.ResponseCreatedEvent(response=p.Response())))
    response = created["response"]
    assert response["status_details"] is None and response["object"] == "realtime.response"
    assert response["output"] == [] and response["status"] == "in_progress"
    assert "audio" not in response  # optional and unset
    committed = json.loads(p.serialize(p.InputAudioBufferCommittedEvent(item_id="i")))
    assert committed["previous_item_id"] is None
    session = json.loads(p.serialize(p.SessionCreatedEvent(session=p.SessionConfig())))["session"]
    assert "idle_timeout_ms" not in session["audio"]["input"]["turn_detection"]
    assert session["audio"]["input"]["transcription"] is None
    error = json.loads(p.serialize(p.ProtocolError("invalid_value", "bad").to_event()))["error"]
    assert error == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "bad",
        "param": None,
        "event_id": None,
    }


def test_event_ids_are_unique_and_prefixed() -> None:
    ids = {p.InputAudioBufferClearedEvent().event_id for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("event_") for i in ids)
    assert p.new_id("resp").startswith("resp_") and p.new_id("item") != p.new_id("item")
    with pytest.raises(ValueError):
        p.new_id("bad prefix")


REFERENCE_USAGE = {
    "total_tokens": 0,
    "input_tokens": 0,
    "output_tokens": 0,
    "input_token_details": {
        "text_tokens": 0,
        "audio_tokens": 0,
        "image_tokens": 0,
        "cached_tokens": 0,
        "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 0, "audio_tokens": 0},
}


def test_usage_always_serialises_completely() -> None:
    for response in (p.Response(), p.Response(usage=p.Usage())):
        data = json.loads(p.serialize(p.ResponseDoneEvent(response=response)))
        assert data["response"]["usage"] == REFERENCE_USAGE
    usage = json.loads(p.Usage.from_counts(input_audio=40, output_text=25, cached_audio=8).model_dump_json())
    assert usage.keys() == REFERENCE_USAGE.keys()
    assert usage["input_token_details"].keys() == REFERENCE_USAGE["input_token_details"].keys()
    assert (usage["total_tokens"], usage["input_tokens"], usage["output_tokens"]) == (65, 40, 25)
    assert usage["input_token_details"]["cached_tokens_details"]["audio_tokens"] == 8
    parsed = pipecat_events.parse_server_event(
        p.serialize(p.ResponseDoneEvent(response=p.Response(usage=p.Usage())))
    )
    assert parsed.response.usage.input_tokens == 0  # pipecat reads this without a None check


def test_serialize_rejects_non_events() -> None:
    with pytest.raises(TypeError):
        p.serialize({"type": "error"})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# beta dialect
# ----------------------------------------------------------------------------------------------------

BETA_SESSION = {
    "modalities": ["text", "audio"],
    "instructions": "Be brief.",
    "voice": "amy",
    "input_audio_format": "g711_ulaw",
    "output_audio_format": "pcm16",
    "input_audio_transcription": {"model": "whisper-1"},
    "turn_detection": {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 200,
        "silence_duration_ms": 700,
    },
    "tools": [
        {"type": "function", "name": "get_time", "description": "Time.", "parameters": {"type": "object"}}
    ],
    "tool_choice": "auto",
    "temperature": 0.7,
    "max_response_output_tokens": 1024,
}


def test_beta_session_update_becomes_ga() -> None:
    ga = beta.beta_to_ga_client_event({"type": "session.update", "event_id": "e1", "session": BETA_SESSION})
    assert ga["session"]["type"] == "realtime"
    assert ga["session"]["output_modalities"] == ["audio"]
    assert ga["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert ga["session"]["audio"]["output"] == {
        "voice": "amy",
        "format": {"type": "audio/pcm", "rate": 24000},
    }
    assert ga["session"]["stepaudio"] == {"temperature": 0.7}
    assert ga["session"]["max_output_tokens"] == 1024
    event = p.validate_client_event(ga)
    assert isinstance(event, p.SessionUpdateEvent) and event.event_id == "e1"
    config = p.apply_session_update(p.SessionConfig(), event.session)
    assert config.audio.input.turn_detection == p.ServerVad(
        threshold=0.6, prefix_padding_ms=200, silence_duration_ms=700
    )
    assert "modalities" in BETA_SESSION  # the caller's dict is not modified


def test_beta_session_round_trips_to_the_flat_shape() -> None:
    event = beta.parse_beta_client_event(json.dumps({"type": "session.update", "session": BETA_SESSION}))
    assert isinstance(event, p.SessionUpdateEvent)
    config = p.apply_session_update(p.SessionConfig(), event.session)
    wire = json.loads(p.serialize(p.SessionUpdatedEvent(session=config)))
    [out] = beta.ga_to_beta_server_event(wire)
    session = out["session"]
    assert out["type"] == "session.updated" and "audio" not in session and "output_modalities" not in session
    for key, value in BETA_SESSION.items():
        if key == "turn_detection":
            assert {k: session[key][k] for k in value} == value
        elif key == "tools":
            assert session[key][0]["name"] == "get_time"
        else:
            assert session[key] == value, key
    manual = p.apply_session_update(
        config,
        beta.beta_to_ga_client_event({"type": "session.update", "session": {"turn_detection": None}})[
            "session"
        ],
    )
    [flat] = beta.ga_to_beta_server_event(json.loads(p.serialize(p.SessionUpdatedEvent(session=manual))))
    assert flat["session"]["turn_detection"] is None and flat["session"]["temperature"] == 0.7


def test_beta_response_create_becomes_ga() -> None:
    raw = {
        "type": "response.create",
        "response": {
            "modalities": ["text"],
            "voice": "amy",
            "output_audio_format": "g711_alaw",
            "temperature": 0.9,
            "max_response_output_tokens": "inf",
        },
    }
    event = beta.parse_beta_client_event(json.dumps(raw))
    assert isinstance(event, p.ResponseCreateEvent) and event.response is not None
    assert event.response.output_modalities == ["text"] and event.response.max_output_tokens == "inf"
    assert event.response.audio.output.voice == "amy"  # type: ignore[union-attr]
    assert event.response.audio.output.format == p.PcmaFormat()  # type: ignore[union-attr]
    assert event.response.stepaudio.temperature == 0.9  # type: ignore[union-attr]


def test_beta_rejects_unknown_audio_format_with_beta_param() -> None:
    with pytest.raises(p.ProtocolError) as caught:
        beta.parse_beta_client_event(
            '{"type": "session.update", "event_id": "e5", "session": {"input_audio_format": "opus"}}'
        )
    assert (caught.value.code, caught.value.param, caught.value.event_id) == (
        "invalid_value",
        "session.input_audio_format",
        "e5",
    )


def test_beta_validation_error_param_maps_back_to_beta_names() -> None:
    raw = '{"type": "session.update", "event_id": "e6", "session": {"turn_detection": {"type": "server_vad", "threshold": 9}}}'
    with pytest.raises(p.ProtocolError) as caught:
        beta.parse_beta_client_event(raw)
    assert caught.value.param == "session.audio.input.turn_detection.threshold"
    [out] = beta.ga_to_beta_server_event(json.loads(p.serialize(caught.value.to_event())))
    assert out["error"]["param"] == "session.turn_detection.threshold" and out["error"]["event_id"] == "e6"


BETA_RENAMES = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}


@pytest.mark.parametrize("event", SERVER_SAMPLES, ids=[e.type for e in SERVER_SAMPLES])  # type: ignore[attr-defined]
def test_ga_to_beta_renames_and_drops(event: p.ServerEventBase) -> None:
    data = json.loads(p.serialize(event))
    out = beta.ga_to_beta_server_event(data)
    if data["type"] == "conversation.item.done":
        assert out == []
        return
    [converted] = out
    assert converted["type"] == BETA_RENAMES.get(data["type"], data["type"])
    assert converted["event_id"] == data["event_id"]
    text = json.dumps(converted)
    assert '"output_audio"' not in text and '"output_text"' not in text  # content parts renamed
    assert json.loads(p.serialize(event)) == data  # the GA dict was not modified


def test_ga_to_beta_response_object() -> None:
    done = next(e for e in SERVER_SAMPLES if e.type == "response.done")  # type: ignore[attr-defined]
    [out] = beta.ga_to_beta_server_event(json.loads(p.serialize(done)))
    response = out["response"]
    assert response["modalities"] == ["text", "audio"] and response["voice"] == "joe"
    assert response["output_audio_format"] == "pcm16" and "audio" not in response
    assert response["output"][0]["content"][0] == {"type": "audio", "transcript": "Four."}
    assert response["usage"] == json.loads(p.serialize(done))["response"]["usage"]


def test_parse_server_event_tolerates_unknown_types_and_reports_bad_ones() -> None:
    assert p.parse_server_event('{"type": "output_audio_buffer.started", "event_id": "e"}') is None
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_server_event('{"type": "response.output_audio.delta", "event_id": "e", "response_id": "r"}')
    assert caught.value.code == "missing_required_parameter" and caught.value.param == "item_id"
