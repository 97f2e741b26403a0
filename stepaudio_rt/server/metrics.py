"""Prometheus metrics for ``GET /metrics``.

Each app gets its own :class:`CollectorRegistry` so several apps (tests, benchmarks) can live in one process.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400, 800)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Gauge("stepaudio_rt_sessions", "Open realtime sessions", registry=r)
        self.sessions_total = Counter("stepaudio_rt_sessions_accepted", "Realtime sessions accepted", registry=r)
        self.sessions_rejected = Counter(
            "stepaudio_rt_sessions_rejected", "Connections refused", ["reason"], registry=r
        )
        self.first_packet = Histogram(
            "stepaudio_rt_first_packet_seconds",
            "End of user turn (speech_stopped / commit / response.create) to first audio or text delta",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "stepaudio_rt_stage_seconds",
            "Per-stage latency of a response: finalize (end-of-turn prefill), prefill, reasoning, tts_first_chunk",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.first_packet_by_mode = Histogram(
            "stepaudio_rt_first_packet_by_mode_seconds",
            "First audio or text delta after end of turn, by thinking mode (sequential, think_first, speak_first)",
            ["mode"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.articulation_rounds = Histogram(
            "stepaudio_rt_articulation_rounds",
            "Articulation rounds per think-while-speaking response",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
            registry=r,
        )
        self.articulation_wait = Histogram(
            "stepaudio_rt_articulation_wait_seconds",
            "Time a think-while-speaking response's articulation stream waited for reasoning",
            buckets=(0.0, *_LATENCY_BUCKETS),
            registry=r,
        )
        self.round_overhead = Histogram(
            "stepaudio_rt_articulation_round_overhead_seconds",
            "Engine time to fork and re-prefill one articulation round (reasoning and reply so far)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "stepaudio_rt_decode_tokens_per_second",
            "Decode speed per response",
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        self.output_tokens = Counter("stepaudio_rt_output_tokens", "Generated tokens", registry=r)
        self.responses = Counter(
            "stepaudio_rt_responses", "Responses by final status", ["status"], registry=r
        )
        self.errors = Counter("stepaudio_rt_errors", "Error events sent, by code", ["code"], registry=r)
        self.end_of_turn = Histogram(
            "stepaudio_rt_end_of_turn_score_seconds",
            "semantic_vad: time to score a pause with the end-of-turn model, by verdict",
            ["verdict"],  # complete | likely (ends if the pause lasts) | incomplete | stale (user spoke first) | error
            buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
            registry=r,
        )
        self.speculative_lead = Histogram(
            "stepaudio_rt_speculative_lead_seconds",
            "semantic_vad: how long a released speculative response had run when its turn ended",
            buckets=(0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0),
            registry=r,
        )
        self.speculative = Counter(
            "stepaudio_rt_speculative_responses",
            "semantic_vad: responses started at a pause before the verdict, by outcome",
            ["outcome"],  # released (the turn ended there) | discarded (cancelled, nothing sent)
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
