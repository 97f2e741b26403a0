"""Turn-taking benchmark: ``server_vad`` against ``semantic_vad`` on one server, side by side.

Two measurements, each rotating the variants question by question so all see the same server load:

* **latency**: complete questions (Piper) at real-time pace, one session per question, concurrency 1;
  last speech byte sent -> first reply audio (p50/p90), and the end-of-turn delay (last speech byte ->
  ``speech_stopped``). Three variants: ``server_vad``, ``semantic_vad``, and ``semantic_vad`` with input
  transcription on (what transcription costs the first audio).
* **premature end of turn**: questions with a 400-700 ms hesitation inside the sentence (``PausedQuestion``:
  the whole sentence synthesised once, silence inserted at a word boundary); a turn is cut early when
  ``speech_stopped`` arrives before the client has sent the words after the pause. Three sets: a silent
  pause after the first operand ("What is forty six ... plus thirty seven?", where the words before the
  pause are a finished question), the same with a filler before the silence ("What is forty six, um, ...
  plus thirty seven?"), and ``heldout``: other sentences and voices (``hesitations``), not used to choose
  the semantic_vad thresholds.

``stepaudio-rt bench turns --url ...`` writes ``turns.json`` to ``--out`` and prints a table.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stepaudio_rt.clients.bench_stats import summarize
from stepaudio_rt.clients.hesitations import HELD_OUT_HESITATIONS, held_out_questions
from stepaudio_rt.clients.piper_speech import PausedQuestion, speak_piper
from stepaudio_rt.clients.plots import plot_turns
from stepaudio_rt.clients.questions import BUILTIN_QUESTIONS
from stepaudio_rt.clients.realtime_client import RealtimeClient, RealtimeError
from stepaudio_rt.clients.server_metrics import add_growth, scrape, stage_means
from stepaudio_rt.clients.urls import server_root

MODES = ("server_vad", "semantic_vad")
WITH_TRANSCRIPTION = "semantic_vad+transcription"
LATENCY_VARIANTS = (*MODES, WITH_TRANSCRIPTION)
PAUSE_SETS = ("silent", "filler", "heldout")
_NUMBERS = ("twelve", "fifteen", "twenty one", "thirty four", "forty six", "fifty eight", "sixty three", "seventy nine")
_OPS = ("plus", "minus", "times")


@dataclass
class TurnsConfig:
    url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    model: str = "step-audio-r1"
    latency_turns: int = 24  # per variant (the 8 built-in questions, cycled)
    paused_turns: int = 24  # per mode
    pause_min_s: float = 0.4
    pause_max_s: float = 0.7
    chunk_ms: int = 20
    trailing_silence_s: float = 2.5  # above semantic_vad's 2 s maximum silence
    timeout_s: float = 60.0
    seed: int = 0
    out_dir: Path = Path("bench-turns")
    progress: bool = True
    paused_sets: tuple[str, ...] = PAUSE_SETS
    # Sessions at once for the paused sets (latency turns always run one at a time). A cut depends on the
    # audio and the end-of-turn scores, not on response speed, so the sets can run several at a time;
    # only a verdict slower than a natural pause between words would be dropped as stale.
    paused_concurrency: int = 1
    latency_variants: tuple[str, ...] = LATENCY_VARIANTS  # a subset, e.g. without transcription


@dataclass
class TurnResult:
    mode: str
    kind: str  # latency | paused
    question: str
    outcome: str = "ok"
    speech_end_to_first_audio_s: float | None = None
    speech_end_to_speech_stopped_s: float | None = None
    premature: bool | None = None
    error: str | None = None
    voice: str = "piper"
    prefix_is_complete: bool | None = None  # heldout: the words before the pause are a finished sentence


def paused_questions(cfg: TurnsConfig, kind: str = "silent") -> list[PausedQuestion]:
    """Arithmetic questions with a hesitation after the first operand ("What is forty six ... plus
    thirty seven?"; ``filler``: "What is forty six, um, ... plus thirty seven?"), pause lengths drawn
    uniformly from [pause_min_s, pause_max_s] with a fixed seed (the same questions in both sets)."""
    rng = random.Random(cfg.seed)
    out = []
    for _ in range(cfg.paused_turns):
        a, b = rng.sample(_NUMBERS, 2)
        op, pause = rng.choice(_OPS), round(rng.uniform(cfg.pause_min_s, cfg.pause_max_s), 3)
        if kind == "filler":
            out.append(PausedQuestion(f"What is {a}, um, {op} {b}?", 3 + len(a.split()), pause))
        else:
            out.append(PausedQuestion(f"What is {a} {op} {b}?", 2 + len(a.split()), pause))
    return out


def paused_jobs(cfg: TurnsConfig, pause_set: str) -> list[tuple[str, bytes, str, bool | None]]:
    """(label, pcm, voice, prefix_is_complete) for each question of ``pause_set``."""
    if pause_set == "heldout":
        complete = {h.text: h.prefix_is_complete for h in HELD_OUT_HESITATIONS}
        return [(f"{q.label} [{q.pause_s * 1000:.0f} ms, {voice}]", q.pcm, voice, complete[q.text])
                for voice, q in held_out_questions(cfg.paused_turns, cfg.pause_min_s, cfg.pause_max_s, cfg.seed)]
    if pause_set not in PAUSE_SETS:
        raise ValueError(f"unknown paused set {pause_set!r}; choose from {PAUSE_SETS}")
    return [(f"{q.label} [{q.pause_s * 1000:.0f} ms]", q.pcm, "piper", pause_set == "silent")
            for q in paused_questions(cfg, pause_set)]


async def _turn(cfg: TurnsConfig, mode: str, kind: str, label: str, pcm: bytes) -> TurnResult:
    res = TurnResult(mode, kind, label)
    audio_in: dict[str, Any] = {"turn_detection": {"type": mode.split("+")[0]}}
    if mode == WITH_TRANSCRIPTION:
        audio_in["transcription"] = {"model": "whisper-1"}
    try:
        async with RealtimeClient(cfg.url, api_key=cfg.api_key, model=cfg.model, reasoning_events=False) as client:
            await client.update_session({"audio": {"input": audio_in}})
            turn = await client.ask(pcm, chunk_ms=cfg.chunk_ms, lead_silence_s=0.3,
                                    trailing_silence_s=cfg.trailing_silence_s, timeout=cfg.timeout_s)
    except RealtimeError as exc:
        res.outcome, res.error = "error", str(exc)
        return res
    end, stopped = turn.marks.get("speech_end_sent"), turn.marks.get("speech_stopped")
    res.premature = stopped is not None and (end is None or stopped < end)
    if stopped is not None and end is not None:
        res.speech_end_to_speech_stopped_s = round(stopped - end, 4)
    latency = turn.latency("speech_end_sent")
    res.speech_end_to_first_audio_s = None if latency is None or res.premature else round(latency, 4)
    return res


def summarize_turns(results: list[TurnResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in LATENCY_VARIANTS:
        if not any(r.mode == mode for r in results):
            continue  # a variant this run left out
        lat = [r for r in results if r.mode == mode and r.kind == "latency" and r.outcome == "ok"]
        s: dict[str, Any] = {
            "speech_end_to_first_audio_s": summarize(r.speech_end_to_first_audio_s for r in lat),
            "speech_end_to_speech_stopped_s": summarize(r.speech_end_to_speech_stopped_s for r in lat),
            "latency_premature": sum(bool(r.premature) for r in lat),
            "errors": sum(r.outcome != "ok" for r in results if r.mode == mode),
        }
        for pause_set in PAUSE_SETS:
            paused = [r for r in results if r.mode == mode and r.kind == f"paused_{pause_set}" and r.outcome == "ok"]
            if paused:
                cut = sum(bool(r.premature) for r in paused)
                entry: dict[str, Any] = {"turns": len(paused), "premature_cuts": cut,
                                         "premature_rate": round(cut / len(paused), 4)}
                if pause_set == "heldout":  # where the cuts are: by voice, and by what precedes the pause
                    groups = {f"voice={r.voice}" for r in paused} | {"prefix_complete", "prefix_unfinished"}
                    for g in sorted(groups):
                        sel = [r for r in paused if (g == f"voice={r.voice}") or
                               (g == "prefix_complete" and r.prefix_is_complete is True) or
                               (g == "prefix_unfinished" and r.prefix_is_complete is False)]
                        entry[g] = f"{sum(bool(r.premature) for r in sel)}/{len(sel)}"
                s[f"paused_{pause_set}"] = entry
        out[mode] = s
    return out


async def run_turns_bench(cfg: TurnsConfig) -> dict[str, Any]:
    from tqdm.auto import tqdm

    latency_qs = [(q, speak_piper(q)) for q in BUILTIN_QUESTIONS]
    jobs: list[tuple[str, str, str, bytes]] = []
    variants = [v for v in LATENCY_VARIANTS if v in cfg.latency_variants]
    unknown = set(cfg.latency_variants) - set(LATENCY_VARIANTS)
    if unknown or not variants:
        raise ValueError(f"unknown latency variants {sorted(unknown)}; choose from {LATENCY_VARIANTS}")
    for i in range(cfg.latency_turns):
        text, pcm = latency_qs[i % len(latency_qs)]
        k = i % len(variants)  # rotate who goes first
        for mode in variants[k:] + variants[:k]:
            jobs.append((mode, "latency", text, pcm))
    meta: dict[str, tuple[str, bool | None]] = {}
    for pause_set in cfg.paused_sets:
        for i, (label, pcm, voice, prefix_complete) in enumerate(paused_jobs(cfg, pause_set)):
            meta[label] = (voice, prefix_complete)
            for mode in (MODES if i % 2 == 0 else MODES[::-1]):
                jobs.append((mode, f"paused_{pause_set}", label, pcm))
    results: list[TurnResult] = []
    if cfg.latency_turns:  # one unmeasured turn per variant: loads Smart Turn and the transcriber, warms caches
        for mode in variants:
            await _turn(cfg, mode, "warmup", latency_qs[0][0], latency_qs[0][1])
    bar = tqdm(total=len(jobs), unit="turn", desc="turns", disable=not cfg.progress)
    # our server's per-stage breakdown, per variant: /metrics scraped around each latency turn (turns run
    # one at a time, so each growth belongs to that turn's variant); nothing for other servers
    root = server_root(cfg.url)
    stage_totals: dict[str, dict[str, list[float]]] = {}
    for mode, kind, label, pcm in [j for j in jobs if j[1] == "latency"]:
        before = await asyncio.to_thread(scrape, root)
        results.append(await _turn(cfg, mode, kind, label, pcm))
        await asyncio.sleep(0.2)  # let the previous session's teardown finish (and its metrics land)
        add_growth(stage_totals.setdefault(mode, {}), before, await asyncio.to_thread(scrape, root))
        bar.update()
    gate = asyncio.Semaphore(max(1, cfg.paused_concurrency))

    async def paused(mode: str, kind: str, label: str, pcm: bytes) -> TurnResult:
        async with gate:
            res = await _turn(cfg, mode, kind, label, pcm)
            res.voice, res.prefix_is_complete = meta[label]
            bar.update()
            await asyncio.sleep(0.2)
            return res

    results += await asyncio.gather(*(paused(*j) for j in jobs if j[1] != "latency"))
    bar.close()
    doc = {
        "benchmark": "turn taking: server_vad vs semantic_vad",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "api_key"},
        "summary": summarize_turns(results),
        "turns": [asdict(r) for r in results],
    }
    for mode, totals in stage_totals.items():
        means = stage_means({}, {stage: (t, n) for stage, (t, n) in totals.items()})
        if means and mode in doc["summary"]:
            doc["summary"][mode]["server_stages"] = means
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "turns.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot_turns(doc, cfg.out_dir / "turns.png")
    return doc


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    def ms(v: Any) -> str:
        return "-" if v is None else f"{v * 1000:.0f}"

    def cuts(s: dict[str, Any], pause_set: str) -> str:
        p = s.get(f"paused_{pause_set}")
        return "-" if p is None else f"{p['premature_cuts']}/{p['turns']}"

    rows = []
    for mode, s in summary.items():
        lat, eot = s["speech_end_to_first_audio_s"], s["speech_end_to_speech_stopped_s"]
        rows.append([mode, str(lat["n"]), ms(lat["p50"]), ms(lat["p90"]), ms(eot["p50"]),
                     cuts(s, "silent"), cuts(s, "filler"), cuts(s, "heldout"), str(s["errors"])])
    return rows
