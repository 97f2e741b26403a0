"""Smart Turn v3.2: is the user's turn complete? An end-of-turn model on the audio itself (ONNX, CPU).

The model (Whisper-tiny encoder + a small classifier, ~8M parameters, int8) reads Whisper log-mel
features of the last 8 s of a turn and returns the probability that the speaker has finished. It hears
intonation and syntax: "I need to book a flight to" scores low even after a pause, a finished question
scores high. ``semantic_vad`` asks it at every short pause the VAD sees (see ``vad.TurnDetector``).

Weights: ``smart-turn-v3.2-cpu.onnx`` (8.7 MB) ships inside the ``pipecat-ai`` wheel, a runtime
dependency of this project; we locate the file through the installed distribution's file list, without
importing pipecat. ``STEPAUDIO_RT_SMART_TURN_MODEL`` (``--smart-turn-model``) points at another copy.
Smart Turn and pipecat are BSD-2-Clause, Copyright (c) 2024-2026, Daily; the notice is in
``docs/third_party.md``.

Features: exactly what pipecat's ``LocalSmartTurnAnalyzerV3`` feeds the model (its numpy port of
``transformers.WhisperFeatureExtractor(chunk_length=8)``): keep the last 8 s (zero-pad at the start when
shorter), normalise the waveform to zero mean and unit variance, centred 400-point STFT with a periodic
Hann window and hop 160, power spectrum, 80-bin Slaney mel (the same librosa filter bank as
``model.audio_frontend``), log10 with a 1e-10 floor, drop the last frame, clamp to 8 decades below the
maximum, ``(x + 4) / 4``. ``model.audio_frontend.log_mel_spectrogram`` is not reused as is because the
Step-Audio recipe right-pads 479 samples (802 frames instead of 800) and does not normalise the waveform.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stepaudio_rt.model.audio_frontend import HOP_LENGTH, N_FFT, SAMPLE_RATE, mel_filters

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "MODEL_FILE",
    "WINDOW_SAMPLES",
    "SmartTurn",
    "SmartTurnUnavailableError",
    "locate_model",
    "load_smart_turn",
    "smart_turn_features",
]

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
_DISTRIBUTION = "pipecat-ai"
WINDOW_SAMPLES = 8 * SAMPLE_RATE  # the model reads exactly the last 8 s
_N_MELS = 80
_NORM_EPS = 1e-7

# One inference takes ~45 ms on one core; two workers keep a burst of pauses from queueing while leaving
# the other cores to the engine. Each ONNX run uses a single thread (a second thread gains nothing).
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


class SmartTurnUnavailableError(RuntimeError):
    """The Smart Turn model or onnxruntime is missing; the message says how to install it."""


def locate_model(path: str | Path | None = None) -> Path:
    """The ONNX file: ``path`` when given, else the copy inside the installed ``pipecat-ai`` wheel."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise SmartTurnUnavailableError(f"Smart Turn model not found: {p}")
        return p
    try:
        files = importlib.metadata.files(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise SmartTurnUnavailableError(
            f"semantic_vad needs the Smart Turn v3.2 model, which ships in the {_DISTRIBUTION} wheel: "
            f"pip install '{_DISTRIBUTION}>=1.14', or pass --smart-turn-model PATH/{MODEL_FILE}"
        ) from None
    for f in files:
        if f.name == MODEL_FILE:
            located = Path(str(f.locate()))
            if located.is_file():
                return located
    raise SmartTurnUnavailableError(
        f"the installed {_DISTRIBUTION} has no {MODEL_FILE} (older than 1.14?): upgrade it, "
        f"or pass --smart-turn-model PATH/{MODEL_FILE}"
    )


@functools.lru_cache(maxsize=1)
def _filters() -> np.ndarray:
    return mel_filters(_N_MELS).numpy().astype(np.float64)  # [80, 201]


_HANN = np.hanning(N_FFT + 1)[:-1]  # periodic Hann window (torch.hann_window)


def smart_turn_features(audio_16k: np.ndarray) -> np.ndarray:
    """Log-mel features ``[80, 800]`` (float32) of the last 8 s of 16 kHz mono float audio."""
    x = np.asarray(audio_16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"Smart Turn expects mono 1-D audio, got shape {x.shape}")
    x = x[-WINDOW_SAMPLES:]
    if x.size < WINDOW_SAMPLES:
        x = np.pad(x, (WINDOW_SAMPLES - x.size, 0))
    x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
    pad = N_FFT // 2
    padded = np.pad(x.astype(np.float64), (pad, pad), mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # [801, 201]
    log_spec = np.log10(np.maximum(1e-10, _filters() @ power.T))[:, :-1]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


class SmartTurn:
    """One loaded model. ``probability`` is thread-safe (an ONNX Runtime session may run concurrently)."""

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise SmartTurnUnavailableError("semantic_vad needs onnxruntime: pip install onnxruntime") from exc
        opts = ort.SessionOptions()
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session: onnxruntime.InferenceSession = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a truncated or foreign file: say which file
            raise SmartTurnUnavailableError(f"cannot load Smart Turn model {path}: {exc}") from exc
        self.path = path

    def probability(self, audio_16k: np.ndarray) -> float:
        """Probability (0..1) that the turn in ``audio_16k`` (16 kHz mono float, the turn so far) is complete."""
        features = smart_turn_features(audio_16k)[None]
        (out,) = self.session.run(["logits"], {"input_features": features})
        return float(np.asarray(out).reshape(-1)[0])  # the graph ends in a sigmoid: already a probability

    async def score(self, audio_16k: np.ndarray) -> float:
        """``probability`` on a worker thread, so the event loop keeps serving audio meanwhile."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_get_executor(), self.probability, audio_16k)


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smart-turn")
        return _executor


_models: dict[Path, SmartTurn] = {}
_models_lock = threading.Lock()


def load_smart_turn(path: str | Path | None = None) -> SmartTurn:
    """The process-wide model (loaded once, ~0.1 s), shared by every session."""
    located = locate_model(path).resolve()
    with _models_lock:
        model = _models.get(located)
        if model is None:
            model = _models[located] = SmartTurn(located)
        return model
