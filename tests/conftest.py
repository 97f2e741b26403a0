"""Shared fixtures: a tiny random checkpoint (built once per session) and live server subprocesses.

The server runs as a real process (``python -m stepaudio_rt.server``) on a free loopback port, exactly as
users start it. Its replies come from a random tiny model, so tests bound them: a small
``max_output_tokens`` and a tiny think budget make every turn end within a second or two.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HELD_OUT_VOICE = "en-029+m6"  # variant m6 is reserved for evaluation (on every accent)


def speak_held_out_voice(
    text: str, voice_name: str = HELD_OUT_VOICE, pitch: int = 45, rate_wpm: int = 165, level_dbfs: float | None = -22.0
) -> np.ndarray:
    """``text`` (16 kHz float) in a voice held out of training, at ``level_dbfs`` (None: espeak-ng's own
    level), with 150 ms of silence either side."""
    from stepaudio_rt.training.data import signals, synth

    voice = synth.voice_by_name(voice_name)
    assert synth.is_eval_voice(voice)  # never heard in training
    audio = synth.speak(text, synth.SpeechParams(voice=voice.name, rate_wpm=rate_wpm, pitch=pitch))
    if level_dbfs is not None:
        audio = signals.set_level(audio, level_dbfs)
    pad = np.zeros(2400, np.float32)
    return np.concatenate([pad, audio, pad])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def get(self, path: str) -> tuple[int, str]:
        with urllib.request.urlopen(self.http + path, timeout=10) as resp:  # noqa: S310 - loopback only
            return resp.status, resp.read().decode()

    def health(self) -> dict[str, object]:
        return json.loads(self.get("/healthz")[1])

    def metric(self, series: str) -> float:
        """The value of one Prometheus series (e.g. ``name_count{mode="speak_first"}``), 0 if absent."""
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stepaudio_rt.model.testing import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-ckpt"))


DEFAULT_ARGS = [
    "--max-output-tokens", "48",
    "--reasoning-effort", "low",
    "--effort-budgets", '{"low": 6, "medium": 12}',
    "--seed", "1",
    "--listen-chunk-seconds", "1.0",
]


@contextlib.contextmanager
def start_server(checkpoint: Path, tmp: Path, *extra: str) -> Iterator[LiveServer]:
    port = _free_port()
    cmd = [sys.executable, "-m", "stepaudio_rt.server", "--model", str(checkpoint), "--port", str(port),
           *DEFAULT_ARGS, *extra]
    with run_server(cmd, port, tmp / f"server-{port}.log") as server:
        yield server


@contextlib.contextmanager
def run_server(
    cmd: list[str], port: int, log_path: Path, health_path: str = "/healthz",
    start_timeout_s: float = 120.0, stop_timeout_s: float = 15.0,
) -> Iterator[LiveServer]:
    """Start ``cmd`` (a server listening on ``port``), wait for ``health_path``, stop it afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = LiveServer(port, proc, log_path)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log()}")
            with contextlib.suppress(OSError):
                if server.get(health_path)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{server.log()}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def live_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The shared server: auth off, small event limit (for the oversized-append test), 24 sessions."""
    with start_server(
        tiny_checkpoint, tmp_path_factory.mktemp("srv"), "--max-event-bytes", "262144", "--max-sessions", "24",
        "--max-input-buffer-seconds", "60",
    ) as server:
        yield server


@pytest.fixture(scope="session")
def auth_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with an API key and room for one session (auth and capacity tests)."""
    with start_server(
        tiny_checkpoint, tmp_path_factory.mktemp("auth"), "--api-key", "sekret", "--max-sessions", "1", "--tts", "none"
    ) as server:
        yield server


@pytest.fixture(scope="session")
def endless_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint's shapes and tokenizer with a head that never closes the think block nor stops,
    so reasoning lasts exactly the think budget (think-while-speaking tests)."""
    from stepaudio_rt.model.testing import build_endless_reasoning_checkpoint

    return build_endless_reasoning_checkpoint(tmp_path_factory.mktemp("endless-ckpt"), tiny_checkpoint)
