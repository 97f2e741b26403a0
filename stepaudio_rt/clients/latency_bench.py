"""First-packet latency benchmark against any server that speaks the OpenAI Realtime protocol.

For each concurrency level (default 1, 2, 4, 8) it runs ``n`` spoken questions through that many
parallel sessions. Workers start ``stagger_s`` apart so turns do not end in lock-step; each question gets
a fresh session (single-turn, like Big Bench Audio, so context growth does not creep into the numbers).
Audio is streamed at real-time pace in ``chunk_ms`` pieces: ``lead_silence_s`` of silence, the speech,
then trailing silence that keeps flowing (as from a live microphone) until the reply ends, so server VAD
ends the turn. The clock stops at the first ``response.output_audio.delta`` (first ``output_text.delta``
in text-only sessions) received by the client. Three start points (``CLOCKS``):

* ``speech_end``: the last byte of the spoken question left the client (trailing silence excluded): the
  true end of user speech at real-time pace. Includes the VAD silence window and network.
* ``speech_stopped``: the server's ``input_audio_buffer.speech_stopped`` arrived (pipecat's TTFB).
  Server-VAD mode only.
* ``commit``: server-VAD mode: ``input_audio_buffer.committed`` arrived (our server sends it right after
  ``speech_stopped``); manual mode (``manual=True``, ``turn_detection: null``): ``input_audio_buffer.commit``
  + ``response.create`` were sent right after the speech (closest to Artificial Analysis' clock).

Each level also reports errors and timeouts, client-side stage means (VAD endpoint delay, commit ->
``response.created``, ``response.created`` -> first audio) and, when the server exports them, its own
per-stage means from Prometheus ``/metrics`` (see ``server_metrics``). Results: ``latency.json``,
``latency_turns.csv``, ``latency_summary.csv`` and ``latency_cdf.png`` in ``out_dir``.
"""

from __future__ import annotations

import asyncio
import csv
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stepaudio_rt.clients.bench_stats import summarize
from stepaudio_rt.clients.plots import plot_latency_cdf
from stepaudio_rt.clients.questions import Question, load_questions
from stepaudio_rt.clients.realtime_client import RealtimeClient, RealtimeError, RealtimeTimeout, Turn
from stepaudio_rt.clients.server_metrics import scrape, stage_means
from stepaudio_rt.clients.urls import realtime_ws_url, server_root

CLOCKS = {
    "speech_end": "last speech byte sent -> first audio",
    "speech_stopped": "speech_stopped received -> first audio",
    "commit": "commit (VAD: committed received; manual: sent) -> first audio",
}
CLIENT_STAGES = ("vad_endpoint", "commit_to_created", "created_to_first_audio")


@dataclass
class BenchConfig:
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    model: str = "step-audio-r1"
    n: int = 16  # turns per concurrency level
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    chunk_ms: int = 40
    speed: float = 1.0  # 1.0 = real time; anything else is reported as such
    lead_silence_s: float = 0.3
    trailing_silence_s: float = 2.0
    stagger_s: float = 0.5
    timeout_s: float = 60.0
    manual: bool = False
    # Our server's think-while-speaking mode (session "stepaudio.thinking_mode"); None = the server default.
    thinking_mode: str | None = None
    out_dir: Path = Path("bench-latency")
    wav_dir: Path | None = None
    bigbench_dir: Path | None = None
    voice: str = "en-us"
    questions: int = 8  # distinct questions, cycled
    progress: bool = True
    vad: str = "server_vad"  # turn_detection type when not manual: server_vad | semantic_vad

    def validate(self) -> None:
        if self.thinking_mode not in (None, "sequential", "think_first", "speak_first"):
            raise ValueError(f"thinking_mode must be sequential, think_first or speak_first, got {self.thinking_mode!r}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise ValueError(f"concurrency levels must be >= 1, got {self.concurrency}")
        if not 20 <= self.chunk_ms <= 100:
            raise ValueError(f"chunk_ms must be within 20-100 ms, got {self.chunk_ms}")
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.vad not in ("server_vad", "semantic_vad"):
            raise ValueError(f"vad must be server_vad or semantic_vad, got {self.vad!r}")
        if self.trailing_silence_s < 0.5 and not self.manual:
            raise ValueError("server VAD needs trailing silence: trailing_silence_s must be >= 0.5")

    @classmethod
    def fast(cls, **overrides: Any) -> BenchConfig:
        """A small run for tests and smoke checks: 2 turns at concurrency 1 and 2, still at real time."""
        base: dict[str, Any] = {"n": 2, "concurrency": [1, 2], "stagger_s": 0.2, "trailing_silence_s": 1.2,
                                "questions": 2, "timeout_s": 60.0}
        return cls(**{**base, **overrides})


@dataclass
class TurnRecord:
    concurrency: int
    worker: int
    index: int
    question_id: str
    speech_s: float
    outcome: str  # ok | error | timeout
    response_status: str | None = None
    error: str | None = None
    latency_s: dict[str, float | None] = field(default_factory=dict)
    stages_s: dict[str, float | None] = field(default_factory=dict)
    reply_audio_s: float = 0.0
    started_s: float = 0.0  # since the start of the level

    def row(self) -> dict[str, Any]:
        flat = {k: v for k, v in asdict(self).items() if k not in ("latency_s", "stages_s")}
        flat.update({f"latency_{k}_s": _r(v) for k, v in self.latency_s.items()})
        flat.update({f"stage_{k}_s": _r(v) for k, v in self.stages_s.items()})
        return flat


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _diff(turn: Turn, start: str, stop: str) -> float | None:
    a, b = turn.marks.get(start), turn.marks.get(stop)
    return None if a is None or b is None else b - a


def measure(turn: Turn, manual: bool) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """The three first-packet clocks and the client-side stages of one turn."""
    commit_mark = "commit_sent" if manual else "committed"
    latency = {
        "speech_end": turn.latency("speech_end_sent"),
        "speech_stopped": None if manual else turn.latency("speech_stopped"),
        "commit": turn.latency(commit_mark),
    }
    first = "first_audio" if "first_audio" in turn.marks else "first_text"
    stages = {
        "vad_endpoint": None if manual else _diff(turn, "speech_end_sent", "speech_stopped"),
        "commit_to_created": _diff(turn, commit_mark, "response_created"),
        "created_to_first_audio": _diff(turn, "response_created", first),
    }
    return latency, stages


async def _one_turn(cfg: BenchConfig, q: Question, level: int, worker: int, index: int, t0: float) -> TurnRecord:
    rec = TurnRecord(level, worker, index, q.id, round(q.seconds, 3), "error", started_s=round(time.perf_counter() - t0, 3))
    try:
        async with RealtimeClient(cfg.url, api_key=cfg.api_key, model=cfg.model, reasoning_events=False) as client:
            update: dict[str, Any] = {}
            if cfg.manual:
                update["audio"] = {"input": {"turn_detection": None}}
            elif cfg.vad != "server_vad":
                update["audio"] = {"input": {"turn_detection": {"type": cfg.vad}}}
            if cfg.thinking_mode is not None:
                update["stepaudio"] = {"thinking_mode": cfg.thinking_mode}
            if update:
                await client.update_session(update)
            turn = await client.ask(
                q.pcm,
                chunk_ms=cfg.chunk_ms,
                speed=cfg.speed,
                manual=cfg.manual,
                lead_silence_s=cfg.lead_silence_s,
                trailing_silence_s=cfg.trailing_silence_s,
                timeout=cfg.timeout_s + q.seconds + cfg.lead_silence_s,
            )
    except RealtimeError as exc:
        rec.outcome = "timeout" if isinstance(exc, RealtimeTimeout) else "error"
        rec.error = str(exc)
        return rec
    rec.response_status = turn.status
    rec.reply_audio_s = round(turn.audio_seconds, 3)
    rec.latency_s, rec.stages_s = measure(turn, cfg.manual)
    if turn.status not in ("completed", "incomplete"):
        rec.error = f"response {turn.status}: {turn.status_details}"
    elif turn.first_packet is None:
        rec.error = "response finished without any audio or text"
    elif turn.errors:
        rec.error = "; ".join(str(e.get("error", {}).get("message")) for e in turn.errors)
    else:
        rec.outcome = "ok"
    return rec


async def run_level(
    cfg: BenchConfig, questions: list[Question], level: int, on_turn: Callable[[TurnRecord], None] | None = None
) -> list[TurnRecord]:
    """``cfg.n`` turns over ``level`` parallel workers with staggered starts."""
    todo: asyncio.Queue[int] = asyncio.Queue()
    for i in range(cfg.n):
        todo.put_nowait(i)
    records: list[TurnRecord] = []
    t0 = time.perf_counter()

    async def worker(w: int) -> None:
        await asyncio.sleep(w * cfg.stagger_s)
        while not todo.empty():
            i = todo.get_nowait()
            rec = await _one_turn(cfg, questions[i % len(questions)], level, w, i, t0)
            records.append(rec)
            if on_turn is not None:
                on_turn(rec)

    await asyncio.gather(*(worker(w) for w in range(min(level, cfg.n))))
    return sorted(records, key=lambda r: r.index)


def summarize_level(records: list[TurnRecord]) -> dict[str, Any]:
    ok = [r for r in records if r.outcome == "ok"]
    return {
        "turns": len(records),
        "ok": len(ok),
        "errors": sum(r.outcome == "error" for r in records),
        "timeouts": sum(r.outcome == "timeout" for r in records),
        "first_packet_s": {clock: summarize(r.latency_s.get(clock) for r in ok) for clock in CLOCKS},
        "client_stages_s": {s: summarize(r.stages_s.get(s) for r in ok) for s in CLIENT_STAGES},
    }


async def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every level, write the JSON / CSV / PNG results, return the JSON document."""
    from tqdm.auto import tqdm

    cfg.validate()
    questions = load_questions(
        min(cfg.questions, cfg.n), wav_dir=cfg.wav_dir, bigbench_dir=cfg.bigbench_dir, voice=cfg.voice
    )
    root = server_root(cfg.url)
    levels: dict[str, Any] = {}
    all_records: list[TurnRecord] = []
    bar = tqdm(total=cfg.n * len(cfg.concurrency), unit="turn", desc="latency", disable=not cfg.progress)
    try:
        for level in cfg.concurrency:
            bar.set_postfix_str(f"concurrency {level}")
            before = await asyncio.to_thread(scrape, root)
            records = await run_level(cfg, questions, level, on_turn=lambda _r: bar.update(1))
            after = await asyncio.to_thread(scrape, root)
            summary = summarize_level(records)
            summary["server_stages"] = stage_means(before, after)
            levels[str(level)] = summary
            all_records += records
    finally:
        bar.close()
    result = {
        "benchmark": "first-packet latency",
        "server": realtime_ws_url(cfg.url),
        "model": cfg.model,
        "clocks": CLOCKS,
        "config": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "api_key"},
            "realtime_pace": cfg.speed == 1.0,
            "turn_detection": "manual (commit + response.create)" if cfg.manual else (
                "server VAD" if cfg.vad == "server_vad" else cfg.vad
            ),
        },
        "questions": [{"id": q.id, "text": q.text, "speech_s": round(q.seconds, 3)} for q in questions],
        "host": {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()},
        "levels": levels,
        "turns": [r.row() for r in all_records],
    }
    write_results(result, all_records, cfg.out_dir)
    return result


def write_results(result: dict[str, Any], records: list[TurnRecord], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "latency.json",
        "turns_csv": out_dir / "latency_turns.csv",
        "summary_csv": out_dir / "latency_summary.csv",
        "cdf_png": out_dir / "latency_cdf.png",
    }
    paths["json"].write_text(json.dumps(result, indent=2) + "\n")
    rows = [r.row() for r in records]
    with paths["turns_csv"].open("w", newline="") as f:
        fields = list(dict.fromkeys(k for row in rows for k in row)) or ["concurrency"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    with paths["summary_csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["concurrency", "clock", "n", "mean_s", "p50_s", "p90_s", "p95_s", "p99_s", "min_s",
                         "max_s", "errors", "timeouts"])
        for level, s in result["levels"].items():
            for clock, st in s["first_packet_s"].items():
                writer.writerow([level, clock, st["n"], st["mean"], st["p50"], st["p90"], st["p95"], st["p99"],
                                 st["min"], st["max"], s["errors"], s["timeouts"]])
    samples = {
        clock: {
            int(level): [v for r in records if r.concurrency == int(level) and r.outcome == "ok"
                         if (v := r.latency_s.get(clock)) is not None]
            for level in result["levels"]
        }
        for clock in CLOCKS
    }
    plot_latency_cdf(samples, paths["cdf_png"], titles=CLOCKS)
    return paths
