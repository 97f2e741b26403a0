"""Piper, whole sentences vs streamed windows: time to the first chunk and to the last, side by side.

    python scripts/piper_streaming_bench.py [--repeats 7] [--out docs/bench/piper_streaming]

Replies of the lengths the server speaks (a word to two clauses), each synthesised by the same voice both
ways, the two ways interleaved in every repeat so that machine noise hits both alike; medians are
reported, with the streamed/whole ratio. Writes ``piper_streaming.json`` and ``piper_streaming.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from matplotlib.figure import Figure
from tqdm.auto import tqdm

from stepaudio_rt.streaming.tts.piper import PiperTTS

REPLIES = [
    "Yes.",
    "It is louder.",
    "The second tone is higher.",
    "46 plus 37 is 83.",
    "There were seven beeps in the first burst and four in the second.",
    "The speaker slows down toward the end, from about five to three syllables per second.",
]


def _time(tts: PiperTTS, text: str) -> tuple[float, float, float]:
    """Seconds to the first chunk and to the last, and seconds of audio."""
    start = time.perf_counter()
    first = None
    samples = 0
    for chunk in tts.synthesize_sync(text):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk)
    assert first is not None
    return first, time.perf_counter() - start, samples / tts.sample_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("docs/bench/piper_streaming"))
    args = ap.parse_args()
    ways = {"whole": PiperTTS(streaming=False), "streamed": PiperTTS()}
    assert ways["streamed"].streams(), "the bundled voice should stream"
    for tts in ways.values():
        _time(tts, "Hello there.")  # warm-up
    runs: dict[str, dict[str, list[tuple[float, float, float]]]] = {w: {r: [] for r in REPLIES} for w in ways}
    for i in tqdm(range(args.repeats), desc="repeats"):
        for reply in REPLIES:
            for way in (list(ways) if i % 2 == 0 else list(ways)[::-1]):
                runs[way][reply].append(_time(ways[way], reply))
    rows = []
    for reply in REPLIES:
        row: dict[str, object] = {"reply": reply, "audio_s": round(runs["whole"][reply][0][2], 2)}
        for way in ways:
            row[f"{way}_first_ms"] = round(1000 * statistics.median(r[0] for r in runs[way][reply]), 1)
            row[f"{way}_total_ms"] = round(1000 * statistics.median(r[1] for r in runs[way][reply]), 1)
        row["first_ratio"] = round(row["streamed_first_ms"] / row["whole_first_ms"], 3)  # type: ignore[operator]
        row["total_ratio"] = round(row["streamed_total_ms"] / row["whole_total_ms"], 3)  # type: ignore[operator]
        rows.append(row)
        print(json.dumps(row))
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "piper whole sentences vs streamed windows", "repeats": args.repeats, "rows": rows}
    (args.out / "piper_streaming.json").write_text(json.dumps(result, indent=2) + "\n")
    fig = Figure(figsize=(8.0, 4.0), dpi=110, layout="constrained")
    ax = fig.subplots()
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["whole_first_ms"] for r in rows], 0.4, label="whole sentence")  # type: ignore[misc]
    ax.bar([i + 0.2 for i in x], [r["streamed_first_ms"] for r in rows], 0.4, label="streamed windows")  # type: ignore[misc]
    ax.set_xticks(list(x), [f"{r['audio_s']} s" for r in rows])
    ax.set_xlabel("reply length (seconds of audio)")
    ax.set_ylabel("first chunk (ms, median)")
    ax.set_title("Piper joe voice, one CPU thread")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.savefig(args.out / "piper_streaming.png")
    print(f"results: {args.out / 'piper_streaming.json'}, piper_streaming.png")


if __name__ == "__main__":
    main()
