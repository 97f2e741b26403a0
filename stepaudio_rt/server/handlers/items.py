"""``conversation.item.create|delete|truncate|retrieve``: the item list and the model's conversation."""

from __future__ import annotations

import numpy as np

from stepaudio_rt.model.audio_frontend import MAX_CHUNK_SECONDS, SAMPLE_RATE, resample
from stepaudio_rt.server import protocol as p
from stepaudio_rt.server.session import RealtimeSession
from stepaudio_rt.streaming.codecs import AudioDecodeError, decode_audio
from stepaudio_rt.streaming.conversation import AudioPart, Part, TextPart, Turn


def _not_found(item_id: str, param: str, event_id: str | None) -> p.ProtocolError:
    return p.ProtocolError("item_not_found", f"Item with id '{item_id}' not found.", param, event_id)


def _audio_chunks(s: RealtimeSession, b64: str, param: str, event_id: str | None) -> list[np.ndarray]:
    """An ``input_audio`` part's base64 (session input format) -> 16 kHz chunks of <= 25 s."""
    fmt = s.input.fmt
    try:
        pcm = decode_audio(b64, fmt)
    except AudioDecodeError as exc:
        raise p.ProtocolError("invalid_value", str(exc), param, event_id) from None
    wav = resample(pcm, fmt.sample_rate, SAMPLE_RATE)
    step = int(MAX_CHUNK_SECONDS * SAMPLE_RATE)
    return [wav[i : i + step] for i in range(0, len(wav), step)] if wav.size else []


def item_to_turn(s: RealtimeSession, item: p.Item, event_id: str | None, param: str = "item") -> Turn:
    """A protocol item -> the model's view of it (tool items become plain text turns)."""
    assert item.id is not None
    if isinstance(item, p.FunctionCallItem):
        return Turn(item.id, "assistant", [TextPart(f"[call {item.name}({item.arguments})]")])
    if isinstance(item, p.FunctionCallOutputItem):
        return Turn(item.id, "user", [TextPart(f"[result of call {item.call_id}: {item.output}]")])
    parts: list[Part] = []
    for i, part in enumerate(item.content):
        where = f"{param}.content[{i}]"
        if isinstance(part, p.InputTextPart | p.OutputTextPart | p.BetaTextPart):
            parts.append(TextPart(part.text))
        elif isinstance(part, p.InputAudioPart):
            if part.audio:
                parts.append(AudioPart(_audio_chunks(s, part.audio, f"{where}.audio", event_id)))
            elif part.transcript:
                parts.append(TextPart(part.transcript))
        elif isinstance(part, p.OutputAudioPart | p.BetaAudioPart):
            parts.append(TextPart(part.transcript or ""))
        else:
            raise p.ProtocolError("invalid_value", "This model does not accept image input.", where, event_id)
    return Turn(item.id, item.role, parts)


def _echo(item: p.Item) -> p.Item:
    """The stored/echoed item: completed, without audio bytes (they can be megabytes)."""
    update: dict[str, object] = {"status": "completed"}
    if isinstance(item, p.MessageItem):
        update["content"] = [
            c.model_copy(update={"audio": None}) if isinstance(c, p.InputAudioPart) else c
            for c in item.content
        ]
    return item.model_copy(update=update)


async def item_create(s: RealtimeSession, event: p.ConversationItemCreateEvent) -> None:
    eid = event.event_id
    item = event.item
    if item.id is None:
        item = item.model_copy(update={"id": p.new_id("item")})
    assert item.id is not None
    if item.id in s.items:
        raise p.ProtocolError("invalid_value", f"Item with id '{item.id}' already exists.", "item.id", eid)
    prev = event.previous_item_id
    at_root = prev == "root"
    if prev is not None and not at_root and prev not in s.items:
        raise _not_found(prev, "previous_item_id", eid)
    turn = item_to_turn(s, item, eid)
    stored = _echo(item)
    s.add_item(stored, None if at_root else prev, at_root=at_root)
    conv_prev = s.previous_in_conversation(item.id)
    s.scheduler.conversation.insert(turn, conv_prev, at_root=conv_prev is None)
    previous = s.previous_of(item.id)
    s.send(p.ConversationItemAddedEvent(previous_item_id=previous, item=stored))
    s.send(p.ConversationItemDoneEvent(previous_item_id=previous, item=stored))


async def item_delete(s: RealtimeSession, event: p.ConversationItemDeleteEvent) -> None:
    if event.item_id not in s.items:
        raise _not_found(event.item_id, "item_id", event.event_id)
    s.remove_item(event.item_id)
    if event.item_id in s.scheduler.conversation:  # an in-progress assistant item is not there yet
        s.scheduler.conversation.delete(event.item_id)
    s.send(p.ConversationItemDeletedEvent(item_id=event.item_id))


async def item_retrieve(s: RealtimeSession, event: p.ConversationItemRetrieveEvent) -> None:
    item = s.items.get(event.item_id)
    if item is None:
        raise _not_found(event.item_id, "item_id", event.event_id)
    s.send(p.ConversationItemRetrievedEvent(item=item))


async def item_truncate(s: RealtimeSession, event: p.ConversationItemTruncateEvent) -> None:
    eid = event.event_id
    item = s.items.get(event.item_id)
    if item is None:
        raise _not_found(event.item_id, "item_id", eid)
    if not isinstance(item, p.MessageItem) or item.role != "assistant":
        raise p.ProtocolError(
            "invalid_value", "Only assistant message items can be truncated.", "item_id", eid
        )
    if event.content_index != 0:
        raise p.ProtocolError(
            "invalid_value",
            f"content_index {event.content_index} out of range (items have one part).",
            "content_index",
            eid,
        )
    track = s.tracks.get(event.item_id)
    total = track.total_ms if track is not None else 0.0
    # Clamp, never error, when the client says it played more than we sent (protocol section 5).
    end_ms = int(min(event.audio_end_ms, total))
    if track is not None:
        track.truncated_ms = end_ms
        heard = track.heard(end_ms)
        active = s.response is not None and s.response.item_id == event.item_id
        if not active:
            s.items[event.item_id] = item.model_copy(
                update={"content": [p.OutputAudioPart(transcript=heard)]}
            )
            if event.item_id in s.scheduler.conversation:
                s.scheduler.conversation.replace_text(event.item_id, heard)
    s.send(p.ConversationItemTruncatedEvent(item_id=event.item_id, content_index=0, audio_end_ms=end_ms))
