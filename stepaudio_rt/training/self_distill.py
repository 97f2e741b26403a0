"""MGRD self-distillation (stage 2 of the paper's pipeline, at toy scale).

One iteration: the previous model samples K reasoning chains for each audio question of the training
split, through the serving engine (``TorchEngine``, the same prompt the server builds); a filter keeps
the chains that are

- **correct**: the reply passes the task's verifier (``verify.check_answer``);
- **acoustically grounded**: the reasoning cites every measured quantity the task depends on (pitch in
  Hz, level in dBFS, SNR in dB, rate in syllables per second, durations in seconds, counts of beeps),
  each within a stated tolerance (``TOLERANCES``) of the value measured on the signal itself; a
  perception answer whose reasoning cites no measurement at all (reasoned from the words alone, e.g.
  "the speaker said anna, so the voice is high") is rejected; arithmetic chains must restate the heard
  operands;
- **coherent**: the think block is closed, no sentence repeats (loops), and its conclusion (last
  sentence) states the same answer as the reply;
- **self-aware**: the self-cognition judge (``training.self_cognition``) does not flag the chain
  (reasoning or reply claiming the model cannot hear, cannot process audio or is text-only); the
  paper's judge filter, counted as ``self_cognition_rejected`` in the report;

then supervised refinement on the kept chains plus text reasoning data (and a replay of the cold-start
mixture, so that a tiny model does not forget the tasks it got no chains for). Each iteration reports the
kept fraction, the grounding rate, held-out accuracy and the mean think length (``metrics.json``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from stepaudio_rt.training.data import verify

# --------------------------------------------------------------------------------------- grounding

# unit -> (regex capturing the cited number, absolute tolerance, relative tolerance)
UNITS: dict[str, tuple[re.Pattern[str], float, float]] = {
    "Hz": (re.compile(r"(\d+(?:\.\d+)?)\s*Hz\b"), 15.0, 0.10),
    "dBFS": (re.compile(r"(-?\d+(?:\.\d+)?)\s*dBFS\b"), 3.0, 0.0),
    "dB": (re.compile(r"(-?\d+(?:\.\d+)?)\s*dB\b"), 5.0, 0.0),
    "per_second": (re.compile(r"(\d+(?:\.\d+)?)\s*(?:syllables\s+)?per second"), 1.0, 0.0),
    "seconds": (re.compile(r"(\d+(?:\.\d+)?)\s*seconds\b"), 0.25, 0.0),
    "count": (re.compile(r"(\d+)\s+(?:separate\s+)?(?:tone\s+bursts|beeps?)\b"), 0.0, 0.0),
    "number": (re.compile(r"(?<![\d.])(\d+)(?!\d|\.\d)"), 0.0, 0.0),
}
TOLERANCES = {u: {"abs": a, "rel": r} for u, (_, a, r) in UNITS.items()}


@dataclass(frozen=True)
class Ref:
    """A quantity measured on the signal that a grounded chain must cite."""

    unit: str
    value: float

    def matches(self, cited: float) -> bool:
        _, abs_tol, rel_tol = UNITS[self.unit]
        return abs(cited - self.value) <= max(abs_tol, rel_tol * abs(self.value))


def grounding_refs(task: str, meta: dict[str, Any]) -> list[Ref]:
    """The measured quantities (in order) a chain for this question must cite; [] when the task's
    answer does not rest on a measurement (transcription, hearing at all, chat)."""
    m = meta.get("measured", {})
    if task in ("spoken_arithmetic", "spoken_multistep", "text_arithmetic"):
        return [Ref("number", float(v)) for v in meta["operands"]]
    if task == "voice_pitch":
        return [Ref("Hz", m["f0_hz"])]
    if task == "loudness":
        return [Ref("dBFS", m["rms_dbfs"])]
    if task == "noise":
        return [Ref("dB", m["snr_db"])]
    if task == "speech_rate":
        return [Ref("per_second", m["rate_sps"])]
    if task == "beep_count":
        return [Ref("count", float(m.get("beep_count", meta.get("count", 0))))]
    if task in ("tone_compare", "highest_tone"):
        return [Ref("Hz", f) for f in m["tone_freqs_hz"]]
    if task == "beep_bursts":
        return [Ref("count", float(c)) for c in m["burst_counts"]]
    if task == "rate_change":
        return [Ref("per_second", r) for r in m["part_rates_sps"]]
    if task == "speaker_compare":
        if "part_rates_sps" in m:
            return [Ref("per_second", r) for r in m["part_rates_sps"]]
        return [Ref("Hz", f) for f in m["part_f0_hz"]]
    if task == "pause_length":
        return [Ref("seconds", v) for v in (*m["speech_edges_s"], m["pause_s"])]
    return []


def cited_values(think: str, unit: str) -> list[float]:
    return [float(v) for v in UNITS[unit][0].findall(think)]


def is_grounded(think: str, refs: Sequence[Ref]) -> bool:
    """The first values the chain cites in each unit are the measured ones, in order, each within its
    tolerance (a chain states what it measured before it compares: thresholds and restatements come
    after, so a later "590 Hz is higher than 305 Hz" cannot stand in for a wrong first reading). No refs:
    nothing to ground, True."""
    for unit in {r.unit for r in refs}:
        wanted = [r for r in refs if r.unit == unit]
        cited = cited_values(think, unit)[: len(wanted)]
        if len(cited) < len(wanted) or not all(r.matches(v) for r, v in zip(wanted, cited, strict=True)):
            return False
    return True


# --------------------------------------------------------------------------------------- coherence

_SENT = re.compile(r"(?<=[.!?])\s+")


def _sentences(text: str) -> list[str]:
    return [s.strip().lower() for s in _SENT.split(text.strip()) if s.strip()]


def has_loop(think: str) -> bool:
    """A repeated sentence, or a 6-word window repeated three times."""
    sents = _sentences(think)
    if len(sents) != len(set(sents)):
        return True
    words = think.lower().split()
    grams = [" ".join(words[i : i + 6]) for i in range(max(0, len(words) - 5))]
    return any(grams.count(g) >= 3 for g in set(grams))


def conclusion_agrees(task: str, think: str, reply: str, label: str) -> bool:
    """The conclusion of the reasoning (its last sentence, after its last "so") states the answer the
    reply gives."""
    sents = _sentences(think)
    if not sents:
        return False
    last = re.split(r"\bso\b", sents[-1])[-1]  # "..., so the second tone is higher": the conclusion
    if task in verify.NUMBER_TASKS:
        return verify.extract_number(last) is not None and verify.extract_number(last) == verify.extract_number(reply)
    if task == "pause_length":
        said, told = verify.extract_seconds(last), verify.extract_seconds(reply)
        return said is not None and told is not None and abs(said - told) < 0.05
    if task in ("transcription", "self_cognition", "text_chat"):
        return True  # no conclusion to restate: the reasoning describes the clip
    return verify.check_answer(task, last, label)


@dataclass
class Verdict:
    kept: bool
    correct: bool
    grounded: bool
    coherent: bool
    reason: str
    think: str = ""
    reply: str = ""
    self_cognition_flagged: bool = False


def judge_chain(task: str, meta: dict[str, Any], label: str, generated: str, question: str | None = None) -> Verdict:
    """Apply the filters to one generated continuation of ``<think>\\n`` (reasoning, ``</think>``,
    reply). ``reason`` names the first filter that failed ("self_cognition" first: the judge rejects a
    chain that claims it cannot hear whatever else it gets right), or "kept". ``question`` (the user's
    text) lets the judge read a bare "No" as a denial of hearing."""
    from stepaudio_rt.model.prompt import split_reasoning
    from stepaudio_rt.training.self_cognition import judge

    closed = "</think>" in generated
    think, reply = split_reasoning(generated, starts_in_think=True)
    correct = closed and verify.check_answer(task, reply, label)
    refs = grounding_refs(task, meta)
    grounded = bool(think) and is_grounded(think, refs)
    coherent = closed and bool(think) and not has_loop(think) and conclusion_agrees(task, think, reply, label)
    flagged = judge(generated, question, include_think=True).flagged
    if flagged:
        reason = "self_cognition"
    elif not correct:
        reason = "wrong"
    elif not think:
        reason = "no_reasoning"
    elif not grounded:
        reason = "ungrounded"
    elif not coherent:
        reason = "incoherent"
    else:
        reason = "kept"
    return Verdict(reason == "kept", correct, grounded, coherent, reason, think, reply, flagged)


# ---------------------------------------------------------------------------------------- sampling


async def _sample_question(
    engine: Any, sample: Any, k: int, temperature: float, seed: int, max_tokens: int, chunk_seconds: float
) -> list[str]:
    from stepaudio_rt.model.audio_frontend import split_at_pauses
    from stepaudio_rt.model.engine import SamplingParams
    from stepaudio_rt.model.prompt import GENERATION_PREFIX
    from stepaudio_rt.training.sft import prompt_segments

    ctx = engine.new_context()
    forks: list[Any] = []
    try:
        before, after = prompt_segments(sample.user_text)
        for piece in before:
            await engine.append_text(ctx, piece)
        for chunk in split_at_pauses(sample.audio, chunk_seconds):
            await engine.append_audio(ctx, chunk)
        for piece in after:
            await engine.append_text(ctx, piece)

        async def one(j: int) -> str:
            child = engine.fork(ctx)
            forks.append(child)
            await engine.append_text(child, GENERATION_PREFIX)
            params = SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed * 1000 + j)
            return "".join([d.text async for d in engine.generate(child, params)])

        return list(await asyncio.gather(*(one(j) for j in range(k))))
    finally:
        for c in forks:
            engine.release(c)
        engine.release(ctx)


def sample_chains(
    checkpoint: Path,
    samples: Sequence[Any],
    k: int = 8,
    temperature: float = 0.8,
    seed: int = 0,
    max_tokens: int = 128,
    concurrency: int = 4,
    progress: bool = True,
) -> list[list[str]]:
    """K sampled continuations of ``<think>\\n`` per sample, from the checkpoint through the serving
    engine (each sample's prompt prefilled once, forked K times)."""
    from stepaudio_rt.model.engine import checkpoint_listen_chunk_seconds
    from stepaudio_rt.model.torch_engine import TorchEngine

    # a question in flight holds its prefix and k forks; a finished question's slots return to the pool
    # only when the engine's job queue runs their release, while the next question's prefix is allocated
    # at once: one more slot per concurrent question (without it, sampling under CPU load ran out of slots)
    engine = TorchEngine.from_pretrained(checkpoint, max_contexts=concurrency * (k + 2) + 2, progress=False)
    chunk_seconds = checkpoint_listen_chunk_seconds(engine.generation_config)
    bar = tqdm(total=len(samples), desc="sample chains", unit="question", disable=not progress)

    async def run() -> list[list[str]]:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int, s: Any) -> list[str]:
            async with sem:
                out = await _sample_question(engine, s, k, temperature, seed + i, max_tokens, chunk_seconds)
            bar.update(1)
            return out

        try:
            return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(samples))))
        finally:
            await engine.aclose()

    try:
        return asyncio.run(run())
    finally:
        bar.close()


# ------------------------------------------------------------------------------------- the filter


@dataclass
class FilterReport:
    questions: int = 0
    chains: int = 0
    kept: int = 0
    correct: int = 0
    with_reasoning: int = 0
    grounded: int = 0
    self_cognition_rejected: int = 0
    think_tokens: list[int] = field(default_factory=list)
    kept_think_tokens: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    per_task_kept: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "chains": self.chains,
            "kept": self.kept,
            "kept_fraction": self.kept / max(1, self.chains),
            "correct_fraction": self.correct / max(1, self.chains),
            # of the chains that reason at all, the share citing every measured quantity within tolerance
            "grounding_rate": self.grounded / max(1, self.with_reasoning),
            # chains the self-cognition judge rejected (claims of not hearing), and their share
            "self_cognition_rejected": self.self_cognition_rejected,
            "self_cognition_rejected_fraction": self.self_cognition_rejected / max(1, self.chains),
            "mean_think_tokens": float(np.mean(self.think_tokens)) if self.think_tokens else 0.0,
            "mean_kept_think_tokens": float(np.mean(self.kept_think_tokens)) if self.kept_think_tokens else 0.0,
            "reasons": dict(sorted(self.reasons.items())),
            "kept_per_task": dict(sorted(self.per_task_kept.items())),
        }


def filter_chains(
    samples: Sequence[Any], chains: Sequence[Sequence[str]], count_tokens: Any = None
) -> tuple[list[tuple[int, Verdict]], FilterReport]:
    """Judge every chain; returns the kept ones as (sample index, verdict) and the tallies.
    ``count_tokens(text) -> int`` measures think length (default: words)."""
    count = count_tokens or (lambda t: len(t.split()))
    report = FilterReport(questions=len(samples))
    kept: list[tuple[int, Verdict]] = []
    for i, (s, outs) in enumerate(zip(samples, chains, strict=True)):
        seen: set[str] = set()
        for text in outs:
            v = judge_chain(s.task, s.meta, s.label, text, getattr(s, "user_text", None))
            report.chains += 1
            report.self_cognition_rejected += v.self_cognition_flagged
            report.correct += v.correct
            report.reasons[v.reason] = report.reasons.get(v.reason, 0) + 1
            if v.think:
                report.with_reasoning += 1
                report.grounded += v.grounded
                report.think_tokens.append(count(v.think))
            if v.kept and (v.think, v.reply) not in seen:  # identical chains are kept once
                seen.add((v.think, v.reply))  # type: ignore[arg-type]
                kept.append((i, v))
                report.kept += 1
                report.kept_think_tokens.append(count(v.think))
                report.per_task_kept[s.task] = report.per_task_kept.get(s.task, 0) + 1
    return kept, report


def write_report(path: Path, iteration: int, report: FilterReport, extra: dict[str, Any]) -> dict[str, Any]:
    data = {"iteration": iteration, **report.summary(), **extra}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data


def save_chains(path: Path, chains: Sequence[Sequence[str]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(list(c)) + "\n" for c in chains))
    tmp.replace(path)


def load_chains(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = [
    "TOLERANCES",
    "FilterReport",
    "Ref",
    "Verdict",
    "cited_values",
    "conclusion_agrees",
    "filter_chains",
    "grounding_refs",
    "has_loop",
    "is_grounded",
    "judge_chain",
    "load_chains",
    "sample_chains",
    "save_chains",
    "write_report",
]
