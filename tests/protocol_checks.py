"""Checks every server event a test sees: pipecat's strict models and LiveKit's ordering/id rules.

pipecat parses each event against its own pydantic models and ends the session on any unknown type or
missing field; LiveKit asserts ``response.created`` before ``response.output_item.added`` and keys deltas
by an ``item_id`` it must already know. ``EventChecker.feed`` enforces all of it on a live stream.
"""

from __future__ import annotations

import json
from typing import Any

from pipecat.services.openai.realtime import events as pipecat_events

EXTENSION_TYPES = {"response.reasoning_text.delta", "response.reasoning_text.done"}
DELTA_TYPES = {
    "response.output_audio.delta",
    "response.output_audio_transcript.delta",
    "response.output_text.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.output_text.done",
    "response.content_part.added",
    "response.content_part.done",
}
USAGE_KEYS = {"total_tokens", "input_tokens", "output_tokens", "input_token_details", "output_token_details"}


class EventChecker:
    def __init__(self, allow_extensions: bool = False) -> None:
        self.allow_extensions = allow_extensions
        self.events: list[dict[str, Any]] = []
        self.event_ids: set[str] = set()
        self.responses: dict[str, str] = {}  # response id -> state
        self.items: dict[str, str] = {}  # output item id -> response id

    def feed(self, raw: str | bytes) -> dict[str, Any]:
        data = json.loads(raw)
        kind = data["type"]
        eid = data.get("event_id")
        assert isinstance(eid, str) and eid, f"event without event_id: {data}"
        assert eid not in self.event_ids, f"duplicate event_id {eid}"
        self.event_ids.add(eid)
        if kind in EXTENSION_TYPES:
            assert self.allow_extensions, f"extension event {kind} sent to a session that did not opt in"
        else:
            # pipecat: any type it does not know, or a missing required field, raises.
            pipecat_events.parse_server_event(json.dumps(data))
        self._order(kind, data)
        self.events.append(data)
        return data

    def _order(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "response.created":
            rid = data["response"]["id"]
            assert rid not in self.responses
            self.responses[rid] = "created"
            assert data["response"]["status"] == "in_progress"
        elif kind == "response.output_item.added":
            rid = data["response_id"]
            assert self.responses.get(rid) == "created", "output_item.added before response.created"
            self.items[data["item"]["id"]] = rid
        elif kind in DELTA_TYPES or kind in EXTENSION_TYPES:
            assert data["item_id"] in self.items, f"{kind} for unknown item {data['item_id']}"
            assert self.items[data["item_id"]] == data["response_id"]
            assert self.responses[data["response_id"]] == "created", f"{kind} after response.done"
        elif kind == "response.output_item.done":
            assert data["item"]["id"] in self.items
        elif kind == "response.done":
            resp = data["response"]
            assert self.responses.get(resp["id"]) == "created", "response.done without response.created"
            self.responses[resp["id"]] = "done"
            assert resp["status"] in ("completed", "cancelled", "incomplete", "failed")
            assert set(resp["usage"]) >= USAGE_KEYS, resp["usage"]
            assert resp["usage"]["total_tokens"] == resp["usage"]["input_tokens"] + resp["usage"]["output_tokens"]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]
