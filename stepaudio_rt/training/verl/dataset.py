"""Training rows of the MGRD RL stage in verl's RL parquet format (``verl/utils/dataset/README.md``).

One row per question::

    data_source   "stepaudio_audio" | "stepaudio_text"
    prompt        [{"role": "system", "content": <the demo system prompt>},
                   {"role": "user", "content": "<question text>\\n<audio>"}]   (no "<audio>" for text rows)
    audios        [{"audio": <FLAC bytes or a path>, "sampling_rate": 16000}]  (null for text rows)
    reward_model  {"style": "rule", "ground_truth": <label>}
    extra_info    {"index", "task", "modality", "split", "question"}

verl's ``RLHFDataset`` turns ``<audio>`` into an ``{"type": "audio", ...}`` part (``data.audio_key=audios``);
the prompt puts the user's text before the audio, as the realtime server does. The clip is embedded as
16-bit FLAC bytes by default (self-contained parquet, ~45% of raw int16), or written next to the parquet
and referenced by path (``embed="path"``) for large sets on a shared file system.

Run: ``python -m stepaudio_rt.training.verl.dataset --data runs/demo/data --split train --out rl/train.parquet``.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT
from stepaudio_rt.training.data.tasks import TEXT_ONLY_TASKS

SAMPLE_RATE = 16000
AUDIO_SOURCE, TEXT_SOURCE = "stepaudio_audio", "stepaudio_text"
AUDIO_PLACEHOLDER = "<audio>"


def _flac_bytes(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 32767 / 32768), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def sample_row(
    sample: Any,
    index: int,
    split: str = "train",
    embed: Literal["bytes", "path"] = "bytes",
    audio_dir: Path | None = None,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
) -> dict[str, Any]:
    """The verl row of one ``tasks.Sample``."""
    audio = sample.audio is not None and sample.task not in TEXT_ONLY_TASKS
    user = f"{sample.user_text}\n{AUDIO_PLACEHOLDER}" if audio and sample.user_text else (
        AUDIO_PLACEHOLDER if audio else sample.user_text
    )
    audios = None
    if audio:
        if embed == "bytes":
            ref: Any = _flac_bytes(sample.audio)
        elif embed == "path":
            if audio_dir is None:
                raise ValueError("embed='path' needs audio_dir")
            audio_dir.mkdir(parents=True, exist_ok=True)
            path = audio_dir / f"{split}_{index:07d}.flac"
            path.write_bytes(_flac_bytes(sample.audio))
            ref = str(path)
        else:
            raise ValueError(f"embed must be 'bytes' or 'path', got {embed!r}")
        audios = [{"audio": ref, "sampling_rate": SAMPLE_RATE}]
    return {
        "data_source": AUDIO_SOURCE if audio else TEXT_SOURCE,
        "prompt": [{"role": "system", "content": system_prompt}, {"role": "user", "content": user}],
        "audios": audios,
        "reward_model": {"style": "rule", "ground_truth": str(sample.label)},
        "extra_info": {
            "index": index,
            "task": sample.task,
            "modality": "audio" if audio else "text",
            "split": split,
            "question": sample.user_text,
        },
    }


def write_rl_parquet(
    samples: Iterable[Any],
    out_path: str | Path,
    split: str = "train",
    embed: Literal["bytes", "path"] = "bytes",
    indices: Sequence[int] | None = None,
) -> Path:
    """Write the rows of ``samples`` to ``out_path`` (parquet); ``indices`` default 0..n-1."""
    import pandas as pd

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    audio_dir = out.with_name(out.stem + "_audio") if embed == "path" else None
    samples = list(samples)
    idx = list(indices) if indices is not None else list(range(len(samples)))
    rows = [sample_row(s, i, split, embed, audio_dir) for s, i in zip(samples, idx, strict=True)]
    pd.DataFrame(rows).to_parquet(out, index=False)
    return out


def decode_audio(entry: dict[str, Any]) -> np.ndarray:
    """The float32 waveform of one ``audios`` entry (FLAC bytes or a path)."""
    ref = entry["audio"]
    data, sr = sf.read(io.BytesIO(ref) if isinstance(ref, bytes | bytearray) else ref, dtype="float32")
    if sr != entry.get("sampling_rate", SAMPLE_RATE):
        raise ValueError(f"audio at {sr} Hz, the row says {entry.get('sampling_rate')}")
    return data


def read_rl_parquet(path: str | Path) -> list[dict[str, Any]]:
    """Rows back as plain Python (lists and dicts, not numpy arrays), audio still encoded."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def main(argv: list[str] | None = None) -> None:
    from stepaudio_rt.training.data.build import load_split

    ap = argparse.ArgumentParser(description="write verl RL parquet from a synthesised data set")
    ap.add_argument("--data", type=Path, required=True, help="a training.data.build output directory")
    ap.add_argument("--split", default="train", choices=("train", "eval"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--embed", default="bytes", choices=("bytes", "path"))
    ap.add_argument("--limit", type=int, default=0, help="first N samples only (0: all)")
    a = ap.parse_args(argv)
    samples = load_split(a.data / f"{a.split}.jsonl")
    if a.limit:
        samples = samples[: a.limit]
    print(write_rl_parquet(samples, a.out, a.split, a.embed))


if __name__ == "__main__":
    main()
