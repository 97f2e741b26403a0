"""Think-while-speaking through a real server process and the official openai SDK.

The server runs a checkpoint whose reasoning never ends by itself (the think budget closes it, 600 tokens
here), so reasoning is still streaming while the reply is already being spoken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from tests.conftest import LiveServer, start_server
from tests.realtime_client import connect, speech_pcm24

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
SDK_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
CANONICAL = [
    "response.created", "response.output_item.added", "conversation.item.added", "response.content_part.added",
    "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
    "response.output_item.done", "conversation.item.done", "response.done",
]


@pytest.fixture(scope="module")
def mps_server(endless_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with start_server(
        endless_checkpoint, tmp_path_factory.mktemp("mps"),
        "--effort-budgets", '{"low": 600, "medium": 600}', "--max-output-tokens", "80",
        "--temperature", "1.0", "--playback-lead-ms", "800",
    ) as server:
        yield server


def _sdk_parse(events: list[dict[str, Any]]) -> None:
    for ev in events:
        if not ev["type"].startswith("response.reasoning_text."):  # ours, opt-in only
            SDK_EVENTS.validate_python(ev)


@pytest.mark.parametrize("mode", ["speak_first", "think_first"])
async def test_spoken_turn_streams_reasoning_while_the_reply_is_spoken(mps_server: LiveServer, mode: str) -> None:
    stepaudio = {"reasoning_events": True, "thinking_mode": mode, "reasoning_segment_tokens": 16,
                 "reply_segment_tokens": 5}
    async with connect(mps_server.http, allow_extensions=True) as s:
        await s.conn.session.update(session={**MANUAL, "stepaudio": stepaudio})
        updated = await s.until("session.updated")
        assert updated["session"]["stepaudio"]["thinking_mode"] == mode
        await s.stream(speech_pcm24("What is forty six plus thirty seven?"), chunk_ms=100, realtime=False)
        await s.conn.input_audio_buffer.commit()
        await s.until("conversation.item.done")
        await s.conn.response.create()
        done = await s.until("response.done", timeout=120)
        events = s.check.events  # every one already passed pipecat's models and LiveKit's ordering
        _sdk_parse(events)
    assert done["response"]["status"] in ("completed", "incomplete"), done["response"]
    types = [e["type"] for e in events]
    order = [t for t in types if not t.endswith(".delta") and not t.startswith("response.reasoning_text")]
    assert order[order.index("response.created"):] == CANONICAL
    first_audio = types.index("response.output_audio.delta")
    reasoning = [i for i, t in enumerate(types) if t == "response.reasoning_text.delta"]
    assert reasoning and reasoning[-1] > first_audio, "reasoning did not continue while the reply played"
    if mode == "think_first":
        assert reasoning[0] < first_audio  # one reasoning segment comes before the first word
    reasoning_done = next(e for e in events if e["type"] == "response.reasoning_text.done")
    transcript = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert transcript and reasoning_done["text"] not in transcript
    assert "<think>" not in transcript and "</think>" not in transcript
    usage = done["response"]["usage"]
    # Both streams are counted: 600 reasoning tokens (+ the close tag) and the reply.
    assert usage["output_tokens"] > 600
    # Each round re-prefills the reasoning so far: the input grows well past the conversation itself.
    assert usage["input_tokens"] > 2 * 16


async def test_plain_session_gets_no_reasoning_events_in_speak_first(mps_server: LiveServer) -> None:
    async with connect(mps_server.http) as s:  # the checker fails on any extension event
        await s.conn.session.update(session={**MANUAL, "stepaudio": {"thinking_mode": "speak_first"}})
        await s.until("session.updated")
        await s.text_turn("Hello there.")
        done = await s.until("response.done", timeout=120)
        _sdk_parse(s.check.events)
    assert done["response"]["status"] in ("completed", "incomplete")
    assert s.check.of_type("response.output_audio.delta")


@pytest.mark.parametrize(
    ("event", "param"),
    [
        ({"type": "session.update", "session": {"type": "realtime", "stepaudio": {"thinking_mode": "sometimes"}}},
         "session.stepaudio.thinking_mode"),
        ({"type": "session.update", "session": {"type": "realtime", "stepaudio": {"reply_segment_tokens": 0}}},
         "session.stepaudio.reply_segment_tokens"),
        ({"type": "response.create", "response": {"stepaudio": {"reasoning_segment_tokens": "80"}}},
         "response.stepaudio.reasoning_segment_tokens"),
    ],
)
async def test_invalid_thinking_settings_get_an_error_naming_the_field(
    mps_server: LiveServer, event: dict[str, Any], param: str
) -> None:
    async with connect(mps_server.http) as s:
        await s.conn.send({**event, "event_id": "evt_bad"})  # type: ignore[arg-type]
        err = await s.until("error")
        assert err["error"]["param"] == param and err["error"]["event_id"] == "evt_bad"
        # The session lives on with its settings unchanged.
        await s.conn.session.update(session={**MANUAL, "output_modalities": ["text"]})
        updated = await s.until("session.updated")
        assert updated["session"]["stepaudio"].get("thinking_mode") is None


async def test_disconnect_mid_response_leaves_nothing_running(mps_server: LiveServer) -> None:
    async with connect(mps_server.http) as s:
        await s.conn.session.update(session={**MANUAL, "stepaudio": {"thinking_mode": "speak_first"}})
        await s.until("session.updated")
        await s.text_turn("Tell me a long story.")
        await s.until("response.output_audio.delta", timeout=60)
    # Connection closed while both streams were decoding (600 reasoning tokens take longer than this).
    for _ in range(100):
        health = mps_server.health()
        if health["engine"]["active_streams"] == 0 and health["sessions"] == 0:  # type: ignore[index]
            break
        await asyncio.sleep(0.05)
    assert health["engine"]["active_streams"] == 0, health  # type: ignore[index]
    assert health["sessions"] == 0


async def test_metrics_report_each_mode(mps_server: LiveServer) -> None:
    async with connect(mps_server.http) as s:
        for mode in ("sequential", "speak_first"):
            await s.conn.session.update(
                session={**MANUAL, "output_modalities": ["text"], "stepaudio": {"thinking_mode": mode}}
            )
            await s.until("session.updated")
            await s.conn.response.create(response={"reasoning": {"effort": "minimal"}} if mode == "sequential" else {})
            await s.until("response.done", timeout=120)
    for mode in ("speak_first", "sequential"):
        assert mps_server.metric(f'stepaudio_rt_first_packet_by_mode_seconds_count{{mode="{mode}"}}') >= 1
    assert mps_server.metric("stepaudio_rt_articulation_rounds_sum") >= 2
    assert mps_server.metric("stepaudio_rt_articulation_wait_seconds_count") >= 1
    assert json.loads(mps_server.get("/healthz")[1])["status"] == "ok"
