"""Spoken questions for the latency benchmark: texts, and speech made from them offline.

Sources, in order of preference when several are given:

* ``wav_dir``: your own recordings (every ``*.wav`` / ``*.flac`` in the folder, sorted by name);
* ``bigbench_dir``: BIG-bench task JSON files (``examples[*].input``, plus the task's prefix), the
  categories Big Bench Audio speaks aloud. Read at run time, never copied into the repository;
* the built-in short arithmetic questions (what the bundled demo checkpoint answers).

Texts are spoken with the espeak-ng command-line synthesiser (Debian ``espeak-ng``) and cached on disk,
so a second run starts at once. Speech is trimmed of edge silence: the benchmark adds known silence
around it and therefore knows exactly when the speech ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from stepaudio_rt.clients.wav_stream import AudioInputError, read_audio, to_pcm16

BUILTIN_QUESTIONS = (
    "What is two plus three?",
    "What is seven minus four?",
    "What is six times two?",
    "What is nine plus one?",
    "How much is eight minus five?",
    "What is three times three?",
    "What is ten minus six?",
    "What is four plus five?",
)
CACHE_DIR = Path(tempfile.gettempdir()) / "stepaudio_rt_bench_questions"
_SILENCE = 10 ** (-45 / 20)  # -45 dBFS: quieter edges count as silence


@dataclass(frozen=True)
class Question:
    id: str
    text: str  # empty for recordings
    pcm: bytes  # 24 kHz PCM16, edge silence trimmed for synthesised speech

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 48_000


def bigbench_texts(folder: Path, limit: int, max_words: int = 45) -> list[tuple[str, str]]:
    """Up to ``limit`` (id, text) pairs, taken round-robin across the task files in ``folder``.

    Only inputs of at most ``max_words`` words are kept: a benchmark of first-packet latency wants
    questions of realistic spoken length (Big Bench Audio's are mostly 5-20 s), not minute-long ones.
    """
    files = sorted(folder.glob("*.json"))
    if not files:
        raise AudioInputError(f"no BIG-bench task .json files in {folder}")
    per_task: list[list[tuple[str, str]]] = []
    for path in files:
        try:
            task = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AudioInputError(f"cannot read BIG-bench task {path}: {exc}") from None
        prefix = str(task.get("task_prefix") or task.get("prefix") or "").strip()
        items = []
        for i, ex in enumerate(task.get("examples", [])):
            text = " ".join(f"{prefix} {ex.get('input', '')}".split())
            if text and len(text.split()) <= max_words:
                items.append((f"{task.get('name', path.stem)}-{i}", text))
        per_task.append(items)
    out: list[tuple[str, str]] = []
    for row in range(max((len(t) for t in per_task), default=0)):
        for items in per_task:
            if row < len(items) and len(out) < limit:
                out.append(items[row])
    if not out:
        raise AudioInputError(f"no BIG-bench example in {folder} has at most {max_words} words")
    return out


def speak_espeak(text: str, voice: str = "en-us") -> bytes:
    """``text`` spoken by espeak-ng as 24 kHz PCM16, edge silence trimmed; cached on disk."""
    key = hashlib.sha256(repr((text, voice)).encode()).hexdigest()[:24]
    cached = CACHE_DIR / f"espeak-{key}.pcm"
    if cached.exists():
        return cached.read_bytes()
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioInputError("espeak-ng is not installed (apt-get install espeak-ng), or pass --wav-dir")
    # "--" ends options so a text starting with "-" is spoken, not parsed.
    wav = subprocess.run([exe, "-v", voice, "--stdout", "--", text], check=True, capture_output=True, timeout=120)
    audio, sr = sf.read(io.BytesIO(wav.stdout), dtype="float32")
    loud = np.flatnonzero(np.abs(audio) >= _SILENCE)
    if loud.size == 0:
        raise AudioInputError(f"espeak-ng produced silence for {text!r}")
    pcm = to_pcm16(audio[loud[0] : loud[-1] + 1], int(sr))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{id(pcm)}.tmp")
    tmp.write_bytes(pcm)
    tmp.replace(cached)  # atomic: parallel runs never read half a file
    return pcm


def load_questions(
    n: int,
    *,
    wav_dir: Path | None = None,
    bigbench_dir: Path | None = None,
    voice: str = "en-us",
) -> list[Question]:
    """At most ``n`` distinct questions (the benchmark cycles through them when it needs more turns)."""
    if n < 1:
        raise ValueError(f"need at least one question, got n={n}")
    if wav_dir is not None:
        files = sorted(p for p in Path(wav_dir).iterdir() if p.suffix.lower() in (".wav", ".flac"))
        if not files:
            raise AudioInputError(f"no .wav or .flac files in {wav_dir}")
        return [Question(p.stem, "", read_audio(p)) for p in files[:n]]
    if bigbench_dir is not None:
        texts = bigbench_texts(Path(bigbench_dir), n)
    else:
        texts = [(f"builtin-{i}", t) for i, t in enumerate(BUILTIN_QUESTIONS[:n])]
    return [Question(qid, text, speak_espeak(text, voice)) for qid, text in texts]
