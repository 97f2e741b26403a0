"""Offline Smart Turn scores behind the semantic_vad thresholds (no server; real VAD, real model).

    python scripts/smart_turn_scores.py [--at detected|started] [--later MS] [--out docs/bench/turns_demo_cpu/smart_turn_scores.json]

For each question the real ``TurnDetector`` (semantic_vad) is fed 20 ms frames and the turn so far is
scored at the pause event ``--at`` names: ``PauseDetected`` (160 ms of silence, the default) or
``PauseStarted`` (80 ms), to see whether the score can be taken earlier in the pause; ``--later MS``
scores MS of silence after that event instead (would a second score, later in the pause, end more
finished turns before the "probably complete" wait, and how many hesitations with them?):

* hesitations: the probability at the first pause inside the question (the inserted 400-700 ms one, or
  a shorter natural one before it), for the arithmetic set ``bench turns`` tunes on ("silent") and the
  held-out set (``clients.hesitations``; Piper and the two espeak-ng voices, every sentence in each);
* finished questions: the probability at the pause after the last word, for the held-out sentences and
  the bench's built-in questions, in the same three voices.

Prints, per set and voice, how many score at or above each candidate threshold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soxr

from stepaudio_rt.clients.bench_turns import TurnsConfig, paused_questions
from stepaudio_rt.clients.hesitations import HELD_OUT_HESITATIONS, HELD_OUT_VOICES, EspeakPausedQuestion
from stepaudio_rt.clients.piper_speech import PausedQuestion, speak_piper
from stepaudio_rt.clients.questions import BUILTIN_QUESTIONS, speak_espeak
from stepaudio_rt.streaming.smart_turn import WINDOW_SAMPLES, load_smart_turn
from stepaudio_rt.streaming.vad import PauseDetected, PauseStarted, TurnDetector, VadConfig

THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)


def _16k(pcm: bytes) -> np.ndarray:
    return soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, 24000, 16000)


PAUSE_EVENTS = {"detected": PauseDetected, "started": PauseStarted}


def first_pause_score(audio: np.ndarray, at: type = PauseDetected, later_ms: int = 0) -> float | None:
    """Score at the first pause the VAD reports, or ``later_ms`` after it (0.3 s of lead silence, 2 s after)."""
    model = load_smart_turn()
    det = TurnDetector(VadConfig(type="semantic_vad"))
    stream = np.concatenate([np.zeros(4800, np.float32), audio, np.zeros(32000, np.float32)])
    for i in range(0, len(stream), 320):
        if any(isinstance(e, at) for e in det.feed(stream[i : i + 320])):
            end = i + 320 + 16 * later_ms
            return round(model.probability(stream[max(0, end - WINDOW_SAMPLES) : end]), 4)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--at", choices=sorted(PAUSE_EVENTS), default="detected", help="the pause event scored")
    ap.add_argument("--later", type=int, default=0, help="score this many ms of silence after the event")
    ap.add_argument("--out", type=Path, default=Path("docs/bench/turns_demo_cpu/smart_turn_scores.json"))
    args = ap.parse_args()
    at = PAUSE_EVENTS[args.at]
    if args.later < 0:
        ap.error("--later must be >= 0")
    from tqdm.auto import tqdm

    sets: dict[str, list[float | None]] = {}
    sets["hesitation silent (arithmetic, piper)"] = [
        first_pause_score(_16k(q.pcm), at, args.later) for q in tqdm(paused_questions(TurnsConfig(paused_turns=24)), desc="silent")]
    finished = [h.text for h in HELD_OUT_HESITATIONS] + list(BUILTIN_QUESTIONS)
    for voice in HELD_OUT_VOICES:
        scores = []
        for k, h in enumerate(tqdm(HELD_OUT_HESITATIONS, desc=f"held-out {voice}")):
            pause = 0.4 + 0.3 * ((k * 7) % 24) / 23  # spread over 400-700 ms, the same for every voice
            q = (PausedQuestion(h.text, h.after_word, pause) if voice == "piper"
                 else EspeakPausedQuestion(h.text, h.after_word, pause, voice))
            scores.append(first_pause_score(_16k(q.pcm), at, args.later))
        sets[f"hesitation held-out ({voice})"] = scores
        sets[f"finished ({voice})"] = [
            first_pause_score(_16k(speak_piper(t) if voice == "piper" else speak_espeak(t, voice)), at, args.later)
            for t in tqdm(finished, desc=f"finished {voice}")]
    table = {name: {f">={t}": sum(s is not None and s >= t for s in scores) for t in THRESHOLDS} | {"n": len(scores)}
             for name, scores in sets.items()}
    for name, row in table.items():
        print(f"{name:42s} n={row['n']:3d}  " + "  ".join(f"{k}:{v:2d}" for k, v in row.items() if k != "n"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"counts": table, "scores": sets}, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
