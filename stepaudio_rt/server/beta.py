"""The beta (``realtime=v1``) dialect as a thin renaming layer over the GA protocol.

Beta clients announce themselves with the header ``OpenAI-Beta: realtime=v1`` or the subprotocol
``openai-beta.realtime-v1`` (see ``negotiation.py``). The server runs GA internally; this module only
rewrites JSON dicts at the edge, in both directions (protocol reference §6-§7):

* client -> server: ``beta_to_ga_client_event`` turns the flat beta session (``modalities``, ``voice``,
  ``input_audio_format: "pcm16"``, ``turn_detection`` ...) and flat ``response.create`` fields into the
  GA nested shape, then ``protocol.validate_client_event`` validates it as usual.
* server -> client: ``ga_to_beta_server_event`` renames event types (``response.output_audio.delta`` ->
  ``response.audio.delta`` ...), folds ``conversation.item.added``/``.done`` into the one beta
  ``conversation.item.created``, renames item content parts and flattens session / response objects.
  Error ``param`` paths are mapped back to beta names so a beta client is told about the field it sent.

Beta ``temperature`` has no GA field; it travels as the extension ``stepaudio.temperature``.
Everything not mentioned passes through unchanged: both dialects share most event and field names.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from stepaudio_rt.server.protocol import (
    ClientEvent,
    ProtocolError,
    load_event_json,
    validate_client_event,
)

BETA_AUDIO_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}
_GA_TO_BETA_FORMAT = {fmt["type"]: name for name, fmt in BETA_AUDIO_FORMATS.items()}

DEFAULT_BETA_TEMPERATURE = 0.8
"""What beta sessions reported when no temperature was set (OpenAI's beta default)."""

_EVENT_RENAMES: tuple[tuple[str, str], ...] = (
    # Longest prefix first: "response.output_audio_transcript." also starts with "response.output_audio".
    ("response.output_audio_transcript.", "response.audio_transcript."),
    ("response.output_audio.", "response.audio."),
    ("response.output_text.", "response.text."),
)
_PART_RENAMES = {"output_text": "text", "output_audio": "audio"}

# GA param path prefix -> beta path prefix, for error events (longest first).
_PARAM_RENAMES: tuple[tuple[str, str], ...] = (
    ("session.audio.input.format", "session.input_audio_format"),
    ("session.audio.input.transcription", "session.input_audio_transcription"),
    ("session.audio.input.noise_reduction", "session.input_audio_noise_reduction"),
    ("session.audio.input.turn_detection", "session.turn_detection"),
    ("session.audio.output.format", "session.output_audio_format"),
    ("session.audio.output.voice", "session.voice"),
    ("session.audio.output.speed", "session.speed"),
    ("session.output_modalities", "session.modalities"),
    ("session.max_output_tokens", "session.max_response_output_tokens"),
    ("session.stepaudio.temperature", "session.temperature"),
    ("response.audio.output.format", "response.output_audio_format"),
    ("response.audio.output.voice", "response.voice"),
    ("response.output_modalities", "response.modalities"),
    ("response.max_output_tokens", "response.max_response_output_tokens"),
    ("response.stepaudio.temperature", "response.temperature"),
)


# --------------------------------------------------------------------------------------------------------
# client -> server
# --------------------------------------------------------------------------------------------------------


def _ga_format(value: Any, param: str, event_id: str | None) -> Any:
    if isinstance(value, str):
        if value not in BETA_AUDIO_FORMATS:
            supported = ", ".join(f"'{name}'" for name in BETA_AUDIO_FORMATS)
            raise ProtocolError(
                "invalid_value",
                f"Invalid value: {value!r}. Supported values are: {supported}.",
                param,
                event_id,
            )
        return dict(BETA_AUDIO_FORMATS[value])
    return value  # an object (GA-style) or a wrong type: GA validation reports it


def _ga_modalities(value: Any) -> Any:
    """Beta ``["text", "audio"]`` means audio plus transcript, which is GA ``["audio"]``."""
    if isinstance(value, list) and all(isinstance(m, str) for m in value):
        return ["audio"] if "audio" in value else ["text"] if "text" in value else value
    return value


def _set(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = {}
            target[key] = child
        target = child
    target[path[-1]] = value


def _merge_into(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        else:
            target[key] = value


def _session_to_ga(session: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "realtime"}
    for key, value in session.items():
        if key == "modalities":
            out["output_modalities"] = _ga_modalities(value)
        elif key == "voice":
            _set(out, ("audio", "output", "voice"), value)
        elif key == "speed":
            _set(out, ("audio", "output", "speed"), value)
        elif key == "input_audio_format":
            _set(out, ("audio", "input", "format"), _ga_format(value, "session.input_audio_format", event_id))
        elif key == "output_audio_format":
            _set(
                out, ("audio", "output", "format"), _ga_format(value, "session.output_audio_format", event_id)
            )
        elif key == "input_audio_transcription":
            _set(out, ("audio", "input", "transcription"), value)
        elif key == "input_audio_noise_reduction":
            _set(out, ("audio", "input", "noise_reduction"), value)
        elif key == "turn_detection":
            _set(out, ("audio", "input", "turn_detection"), value)
        elif key == "max_response_output_tokens":
            out["max_output_tokens"] = value
        elif key == "temperature":
            _set(out, ("stepaudio", "temperature"), value)
        elif key in ("audio", "stepaudio") and isinstance(value, dict):
            # Already nested (a client mixing dialects): merge with what the flat keys produced.
            _merge_into(out.setdefault(key, {}), value)
        else:
            out[key] = value
    return out


def _response_to_ga(response: dict[str, Any], event_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in response.items():
        if key == "modalities":
            out["output_modalities"] = _ga_modalities(value)
        elif key == "voice":
            _set(out, ("audio", "output", "voice"), value)
        elif key == "output_audio_format":
            _set(
                out,
                ("audio", "output", "format"),
                _ga_format(value, "response.output_audio_format", event_id),
            )
        elif key == "max_response_output_tokens":
            out["max_output_tokens"] = value
        elif key == "temperature":
            _set(out, ("stepaudio", "temperature"), value)
        else:
            out[key] = value
    return out


def beta_to_ga_client_event(data: Mapping[str, Any]) -> dict[str, Any]:
    """Translate one beta client event (decoded JSON) to the GA shape; the input is not modified.

    Raises ``ProtocolError`` only for beta-specific bad values (an unknown ``input_audio_format``);
    everything else is left for GA validation to judge.
    """
    out = dict(data)
    event_id = out.get("event_id") if isinstance(out.get("event_id"), str) else None
    kind = out.get("type")
    if kind == "session.update" and isinstance(out.get("session"), dict):
        out["session"] = _session_to_ga(out["session"], event_id)
    elif kind == "response.create" and isinstance(out.get("response"), dict):
        out["response"] = _response_to_ga(out["response"], event_id)
    return out


def parse_beta_client_event(raw: str | bytes | bytearray) -> ClientEvent:
    """Parse one beta client message into the same typed GA events the GA path produces."""
    return validate_client_event(beta_to_ga_client_event(load_event_json(raw)))


# --------------------------------------------------------------------------------------------------------
# server -> client
# --------------------------------------------------------------------------------------------------------


def _beta_format(value: Any) -> Any:
    if isinstance(value, dict):
        return _GA_TO_BETA_FORMAT.get(value.get("type", ""), value.get("type"))
    return value


def _beta_voice(value: Any) -> Any:
    return value.get("id") if isinstance(value, dict) else value


def _beta_modalities(value: Any) -> Any:
    """GA ``["audio"]`` (audio with transcript) was beta ``["text", "audio"]``."""
    if isinstance(value, list) and "audio" in value:
        return ["text", "audio"]
    return value


def _item_to_beta(item: Any) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("content"), list):
        return item
    item = dict(item)
    item["content"] = [
        {**part, "type": _PART_RENAMES[part["type"]]}
        if isinstance(part, dict) and part.get("type") in _PART_RENAMES
        else part
        for part in item["content"]
    ]
    return item


def _session_to_beta(session: dict[str, Any]) -> dict[str, Any]:
    audio = session.get("audio") or {}
    audio_in = audio.get("input") or {}
    audio_out = audio.get("output") or {}
    stepaudio = dict(session.get("stepaudio") or {})
    temperature = stepaudio.pop("temperature", None)
    out: dict[str, Any] = {
        "id": session.get("id"),
        "object": "realtime.session",
        "model": session.get("model"),
        "modalities": _beta_modalities(session.get("output_modalities", ["audio"])),
        "instructions": session.get("instructions", ""),
        "voice": _beta_voice(audio_out.get("voice")),
        "input_audio_format": _beta_format(audio_in.get("format")),
        "output_audio_format": _beta_format(audio_out.get("format")),
        "input_audio_transcription": audio_in.get("transcription"),
        "input_audio_noise_reduction": audio_in.get("noise_reduction"),
        "turn_detection": audio_in.get("turn_detection"),
        "tools": session.get("tools", []),
        "tool_choice": session.get("tool_choice", "auto"),
        "temperature": DEFAULT_BETA_TEMPERATURE if temperature is None else temperature,
        "max_response_output_tokens": session.get("max_output_tokens", "inf"),
        "speed": audio_out.get("speed"),
    }
    if "expires_at" in session:
        out["expires_at"] = session["expires_at"]
    if stepaudio:
        out["stepaudio"] = stepaudio
    return {k: v for k, v in out.items() if v is not None or k in _BETA_NULLABLE_SESSION_KEYS}


_BETA_NULLABLE_SESSION_KEYS = frozenset(
    {"input_audio_transcription", "input_audio_noise_reduction", "turn_detection"}
)


def _response_to_beta(response: dict[str, Any]) -> dict[str, Any]:
    out = dict(response)
    if "output_modalities" in out:
        out["modalities"] = _beta_modalities(out.pop("output_modalities"))
    audio_out = (out.pop("audio", None) or {}).get("output") or {}
    if "voice" in audio_out:
        out["voice"] = _beta_voice(audio_out["voice"])
    if "format" in audio_out:
        out["output_audio_format"] = _beta_format(audio_out["format"])
    if isinstance(out.get("output"), list):
        out["output"] = [_item_to_beta(item) for item in out["output"]]
    return out


def _param_to_beta(param: Any) -> Any:
    if not isinstance(param, str):
        return param
    for ga, beta in _PARAM_RENAMES:
        if param == ga or param.startswith((ga + ".", ga + "[")):
            return beta + param[len(ga) :]
    return param


def ga_to_beta_server_event(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Translate one GA server event (as a dict, e.g. ``event.model_dump(mode="json")``) to what a beta
    client expects: zero events (GA-only ones such as ``conversation.item.done``) or one renamed event."""
    event = copy.deepcopy(dict(data))
    kind = event.get("type", "")
    if kind == "conversation.item.done":
        return []  # beta announced an item once, with conversation.item.created
    if kind == "conversation.item.added":
        event["type"] = "conversation.item.created"
    for ga, beta in _EVENT_RENAMES:
        if kind.startswith(ga):
            event["type"] = beta + kind[len(ga) :]
            break
    if isinstance(event.get("item"), dict):
        event["item"] = _item_to_beta(event["item"])
    if kind in ("session.created", "session.updated") and isinstance(event.get("session"), dict):
        event["session"] = _session_to_beta(event["session"])
    if kind in ("response.created", "response.done") and isinstance(event.get("response"), dict):
        event["response"] = _response_to_beta(event["response"])
    if kind == "error" and isinstance(event.get("error"), dict):
        event["error"]["param"] = _param_to_beta(event["error"].get("param"))
    return [event]
