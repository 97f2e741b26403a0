"""pass@8 data selection for the cluster: keep the questions the current model answers correctly 3 to 6
times out of 8 (the paper's moderate-difficulty filter), before each RL stage.

Two steps, each a subcommand:

``sample``
    8 responses per row of an RL parquet (``dataset``) from an OpenAI-compatible vLLM server started on
    the previous checkpoint with the project's plugin (``vllm serve <ckpt>``: the plugin's chat template
    ends the prompt in ``<think>\\n``); the audio goes as an ``input_audio`` part (WAV, base64). Writes
    the rows plus a ``responses`` column (list of 8 strings), the layout verl's own
    ``main_generation_server`` writes for text-only rows (its chat requests carry no audio, hence this).
``select``
    scores every response with the reward module's verifier (:func:`count_correct`), keeps the rows whose
    count lies in [3, 6] (:func:`select_by_pass_count`), writes them without ``responses`` (ready for
    ``data.train_files``) and prints the selected fraction.

Run::

    python -m stepaudio_rt.training.verl.selection sample --data rl/train.parquet --out rl/rollouts.parquet \\
        --base-url http://head:8000/v1 --model /ckpt/iter1 --n 8 --temperature 1.0
    python -m stepaudio_rt.training.verl.selection select --rollouts rl/rollouts.parquet --out rl/selected.parquet
"""

from __future__ import annotations

import argparse
import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stepaudio_rt.training.verl.reward import compute_score

PASS_MIN, PASS_MAX, N_SAMPLES = 3, 6, 8


def select_by_pass_count(counts: Sequence[int], lo: int = PASS_MIN, hi: int = PASS_MAX) -> list[int]:
    """Indices of the questions whose number of correct samples lies in [lo, hi]."""
    if lo > hi:
        raise ValueError(f"lo {lo} > hi {hi}")
    return [i for i, c in enumerate(counts) if lo <= c <= hi]


def count_correct(row: dict[str, Any], responses: Sequence[str]) -> int:
    """Correct responses of one row (the verifier's answer check, through the reward module)."""
    gt = row["reward_model"]["ground_truth"]
    return sum(compute_score(row["data_source"], r, gt, row["extra_info"])["correct"] for r in responses)


def chat_messages(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's prompt as OpenAI chat messages, ``<audio>`` replaced by an ``input_audio`` part."""
    from stepaudio_rt.training.verl.dataset import AUDIO_PLACEHOLDER, decode_audio

    audios = list(row.get("audios") or [])
    out = []
    for m in row["prompt"]:
        content = m["content"]
        if AUDIO_PLACEHOLDER not in content:
            out.append({"role": m["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for k, piece in enumerate(content.split(AUDIO_PLACEHOLDER)):
            if k > 0:
                parts.append({"type": "input_audio", "input_audio": {"data": _wav_b64(decode_audio(audios.pop(0))), "format": "wav"}})
            if piece:
                parts.append({"type": "text", "text": piece})
        out.append({"role": m["role"], "content": parts})
    return out


def _wav_b64(audio: Any) -> str:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, 16000, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode()


def sample_rollouts(data: Path, out: Path, base_url: str, model: str, n: int, temperature: float, max_tokens: int) -> Path:
    import pandas as pd
    from openai import OpenAI
    from tqdm.auto import tqdm

    from stepaudio_rt.training.verl.dataset import read_rl_parquet

    client = OpenAI(base_url=base_url, api_key="unused")
    rows = read_rl_parquet(data)
    for row in tqdm(rows, desc="pass@8 sampling", unit="question"):
        # as the official Step-Audio-R1 client asks: keep <think>/</think> whatever their token status
        resp = client.chat.completions.create(
            model=model, messages=chat_messages(row), n=n, temperature=temperature, max_tokens=max_tokens,
            extra_body={"skip_special_tokens": False},
        )
        row["responses"] = [c.message.content or "" for c in resp.choices]
    pd.DataFrame(rows).to_parquet(out, index=False)
    return out


def select_rollouts(rollouts: Path, out: Path, lo: int = PASS_MIN, hi: int = PASS_MAX) -> dict[str, Any]:
    import pandas as pd

    from stepaudio_rt.training.verl.dataset import read_rl_parquet

    rows = read_rl_parquet(rollouts)
    counts = [count_correct(r, r["responses"]) for r in rows]
    keep = select_by_pass_count(counts, lo, hi)
    pd.DataFrame([{k: v for k, v in rows[i].items() if k != "responses"} for i in keep]).to_parquet(out, index=False)
    histogram = {c: counts.count(c) for c in sorted(set(counts))}
    report = {"questions": len(rows), "selected": len(keep), "selected_fraction": len(keep) / max(1, len(rows)),
              "pass_range": [lo, hi], "correct_count_histogram": histogram}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="pass@8 data selection for the verl RL stage")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--base-url", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=int, default=N_SAMPLES)
    s.add_argument("--temperature", type=float, default=1.0)
    s.add_argument("--max-tokens", type=int, default=8192)
    c = sub.add_parser("select")
    c.add_argument("--rollouts", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--lo", type=int, default=PASS_MIN)
    c.add_argument("--hi", type=int, default=PASS_MAX)
    a = ap.parse_args(argv)
    if a.cmd == "sample":
        print(sample_rollouts(a.data, a.out, a.base_url, a.model, a.n, a.temperature, a.max_tokens))
    else:
        print(json.dumps(select_rollouts(a.rollouts, a.out, a.lo, a.hi), indent=2))


if __name__ == "__main__":
    main()
