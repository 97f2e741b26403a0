"""Turn detection on 16 kHz audio with webrtcvad, honouring the Realtime ``turn_detection`` settings.

webrtcvad classifies 20 ms frames as voiced or not; on its own that decision flickers (a cough is one
voiced frame, a stop consonant one unvoiced frame). This module adds the debounce that turns frame
decisions into turns:

- **speech start**: at least 4 of the last 5 frames (80 of 100 ms) voiced. The reported
  ``audio_start_ms`` is the start of the first voiced frame of that window minus ``prefix_padding_ms``
  (clamped at 0), so the committed audio includes a little lead-in as OpenAI's server does.
- **speech continues**: only a run of at least 2 voiced frames (40 ms) counts as "still talking"; a single
  voiced frame inside a pause does not extend the turn.
- **speech stop**: ``silence_duration_ms`` after the end of the last such voiced run. The event is emitted
  at that point; its ``audio_end_ms`` is the end of the last voiced run (the true end of speech), not the
  moment of detection. ``TurnDetector.position_ms`` gives the detection time when needed.

Mapping of the OpenAI fields (documented because webrtcvad has no probability output):

- ``threshold`` (0..1, higher = needs louder / clearer speech) picks the webrtcvad aggressiveness
  ``min(3, int(threshold * 4))`` (0.5 -> mode 2) and an energy floor of ``-60 + 20 * threshold`` dBFS RMS
  (0.5 -> -50 dBFS) below which a frame is never voiced; the floor keeps faint hiss from being "speech".
- Steady background noise: webrtcvad calls loud stationary noise (fans, hiss) speech, notably at stream
  start before its noise model adapts. So a frame must also be ``3 + 12 * threshold`` dB (0.5 -> 9 dB)
  above the noise floor, estimated as the minimum frame energy of the last 3 s (minimum statistics).
  Speech has pauses and quiet frames every few hundred ms, so the minimum tracks the noise, not the voice;
  stationary noise never rises that far above its own minimum.
- ``semantic_vad``: the VAD only proposes pauses; an end-of-turn model decides (``smart_turn``). After
  ``SCORE_PAUSE_MS`` (160 ms) of silence in speech the detector emits one ``PauseDetected`` per pause and
  stays in speech; the caller scores the turn off the event loop. Earlier in the same pause, at
  ``SPECULATE_PAUSE_MS`` (80 ms), one ``PauseStarted`` lets the caller start work it may throw away (the
  server's speculative response). The probability maps to how long to
  wait, per eagerness: at or above ``SEMANTIC_THRESHOLD`` ("surely complete": low 0.98, medium/auto 0.95,
  high 0.8) the caller calls ``end_turn(pause)``, which emits the ``SpeechStopped`` at once; at or above
  ``SEMANTIC_LIKELY_THRESHOLD`` ("probably complete": low 0.7, medium/auto 0.5, high 0.3) it calls
  ``end_turn_after(pause, likely_silence_ms)`` and the turn ends when the pause reaches
  ``SEMANTIC_LIKELY_SILENCE_MS`` (low 1500, medium/auto 800, high 500 ms) unless the user speaks again;
  below that the turn ends after the eagerness's maximum silence (``SEMANTIC_MAX_SILENCE_MS``: low 4 s,
  medium/auto 2 s, high 1 s), well inside the protocol's maximum waits (8 / 4 / 2 s). A stale score (the
  user spoke again since that pause) is ignored, and the next pause is scored afresh over the whole turn.
  Why two levels: on speech with a silent hesitation inside a sentence Smart Turn often says 0.5-0.95 at
  the hesitation, and finished questions mostly score above 0.95 (``scripts/smart_turn_scores.py``; see
  the README), so "end now" only on a near-certain score and "end soon" on a likely one cut far fewer
  hesitations than one 0.5 cut, at the cost of a longer wait for the few finished turns scored in between.
- ``idle_timeout_ms``: after that much audio with no speech (counted from creation, ``reset()``, the last
  speech stop or ``restart_idle_timer()``), one ``IdleTimeout`` is emitted; it re-arms on the next speech
  stop or ``restart_idle_timer()`` (the server calls that when a response finishes playing).
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import webrtcvad

from .codecs import as_int16_mono

__all__ = [
    "VAD_SAMPLE_RATE",
    "FRAME_MS",
    "EAGERNESS_SILENCE_MS",
    "VadConfig",
    "VadConfigError",
    "SpeechStarted",
    "SpeechStopped",
    "IdleTimeout",
    "PauseDetected",
    "PauseStarted",
    "SCORE_PAUSE_MS",
    "SPECULATE_PAUSE_MS",
    "SEMANTIC_MAX_SILENCE_MS",
    "SEMANTIC_THRESHOLD",
    "SEMANTIC_LIKELY_THRESHOLD",
    "SEMANTIC_LIKELY_SILENCE_MS",
    "VadEvent",
    "TurnDetector",
]

VAD_SAMPLE_RATE = 16000
FRAME_MS = 20
_FRAME_SAMPLES = VAD_SAMPLE_RATE * FRAME_MS // 1000

_START_WINDOW = 5  # frames considered for speech onset (100 ms)
_START_VOICED = 4  # voiced frames needed in that window (80 ms)
_RESUME_VOICED = 2  # consecutive voiced frames that count as "still talking" (40 ms)
_NOISE_WINDOW = 150  # frames of energy history for the noise floor (3 s)

# semantic_vad: silence after which a turn ends whatever the end-of-turn model said (its fallback)...
SEMANTIC_MAX_SILENCE_MS: dict[str, int] = {"low": 4000, "medium": 2000, "high": 1000, "auto": 2000}
# ... the probability of "turn complete" that ends the turn at the pause at once ("surely complete") ...
SEMANTIC_THRESHOLD: dict[str, float] = {"low": 0.98, "medium": 0.95, "high": 0.8, "auto": 0.95}
# ... the probability that ends it once the pause reaches SEMANTIC_LIKELY_SILENCE_MS ("probably complete";
# 0.5 is Smart Turn's own cut). The wait is longer than server_vad's default 500 ms: hesitations inside a
# sentence last a few hundred ms, and on those the model often says 0.5-0.95 (see the module docstring) ...
SEMANTIC_LIKELY_THRESHOLD: dict[str, float] = {"low": 0.7, "medium": 0.5, "high": 0.3, "auto": 0.5}
SEMANTIC_LIKELY_SILENCE_MS: dict[str, int] = {"low": 1500, "medium": 800, "high": 500, "auto": 800}
# ... and the pause that triggers a score: long enough to skip gaps between words, short enough that a
# complete turn ends ~200 ms after the last word (pipecat waits 200 ms; upstream suggests 150-200 ms).
SCORE_PAUSE_MS = 160
# ... and, earlier in the same pause, the point where the server starts a speculative response (held until
# the verdict): the response's ~150-250 ms of work then overlaps the rest of the pause and the scoring
# instead of following them. 80 ms skips most gaps between words (a resumed word cancels the run within
# 40 ms), and leaves the speculation 80 ms ahead of the score.
SPECULATE_PAUSE_MS = 80
EAGERNESS_SILENCE_MS = SEMANTIC_MAX_SILENCE_MS  # the name older code imports

Eagerness = Literal["low", "medium", "high", "auto"]


class VadConfigError(ValueError):
    """A ``turn_detection`` field is invalid. ``param`` names the field for the protocol error event."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param
        self.code = "invalid_value"


def _check_int(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VadConfigError(f"turn_detection.{name} must be a non-negative integer, got {value!r}", name)


@dataclass
class VadConfig:
    """Turn detection settings, field names as in the Realtime protocol."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    idle_timeout_ms: int | None = None
    eagerness: Eagerness = "auto"

    def __post_init__(self) -> None:
        if self.type not in ("server_vad", "semantic_vad"):
            raise VadConfigError(
                f"turn_detection.type must be 'server_vad' or 'semantic_vad', got {self.type!r}", "type"
            )
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 <= t <= 1.0 or math.isnan(t):
            raise VadConfigError(
                f"turn_detection.threshold must be a number in [0, 1], got {t!r}", "threshold"
            )
        _check_int("prefix_padding_ms", self.prefix_padding_ms)
        _check_int("silence_duration_ms", self.silence_duration_ms)
        _check_int("idle_timeout_ms", self.idle_timeout_ms, allow_none=True)
        if self.eagerness not in EAGERNESS_SILENCE_MS:
            raise VadConfigError(
                f"turn_detection.eagerness must be one of {sorted(EAGERNESS_SILENCE_MS)}, got {self.eagerness!r}",
                "eagerness",
            )

    @property
    def effective_silence_ms(self) -> int:
        """Silence that ends a turn on its own: ``silence_duration_ms``, or for semantic_vad the eagerness's
        maximum silence (the fallback when the end-of-turn model never says "complete")."""
        if self.type == "semantic_vad":
            return SEMANTIC_MAX_SILENCE_MS[self.eagerness]
        return self.silence_duration_ms

    @property
    def semantic(self) -> bool:
        return self.type == "semantic_vad"

    @property
    def end_of_turn_threshold(self) -> float:
        """semantic_vad: the end-of-turn probability at or above which a pause ends the turn."""
        return SEMANTIC_THRESHOLD[self.eagerness]

    @property
    def likely_threshold(self) -> float:
        """semantic_vad: the probability at or above which the turn ends after ``likely_silence_ms``."""
        return SEMANTIC_LIKELY_THRESHOLD[self.eagerness]

    @property
    def likely_silence_ms(self) -> int:
        """semantic_vad: the pause that ends a "probably complete" turn."""
        return SEMANTIC_LIKELY_SILENCE_MS[self.eagerness]

    @property
    def aggressiveness(self) -> int:
        """webrtcvad mode 0..3 derived from ``threshold``."""
        return min(3, int(self.threshold * 4))

    @property
    def energy_floor_dbfs(self) -> float:
        """RMS level below which a frame is unvoiced whatever webrtcvad says."""
        return -60.0 + 20.0 * self.threshold

    @property
    def noise_margin_db(self) -> float:
        """How far above the tracked noise floor a frame's energy must be to count as voiced."""
        return 3.0 + 12.0 * self.threshold

    @classmethod
    def from_turn_detection(cls, obj: Mapping[str, Any]) -> VadConfig:
        """From a session's ``turn_detection`` object. Fields the VAD does not use (``create_response``,
        ``interrupt_response``, or unknown keys) are ignored here; the session handles them.
        ``turn_detection: null`` (manual turns) is the caller's case: there is no detector then."""
        if not isinstance(obj, Mapping):
            raise VadConfigError(
                f"turn_detection must be an object, got {type(obj).__name__}", "turn_detection"
            )
        kind = obj.get("type", "server_vad")
        kwargs: dict[str, Any] = {"type": kind}
        if kind == "semantic_vad":
            if "eagerness" in obj:
                kwargs["eagerness"] = obj["eagerness"]
        else:
            for key in ("threshold", "prefix_padding_ms", "silence_duration_ms"):
                if obj.get(key) is not None:
                    kwargs[key] = obj[key]
        if "idle_timeout_ms" in obj:
            kwargs["idle_timeout_ms"] = obj["idle_timeout_ms"]
        return cls(**kwargs)


@dataclass(frozen=True)
class SpeechStarted:
    audio_start_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    audio_end_ms: int


@dataclass(frozen=True)
class IdleTimeout:
    audio_end_ms: int


@dataclass(frozen=True)
class PauseDetected:
    """semantic_vad: ``SCORE_PAUSE_MS`` of silence inside speech; score the turn, then maybe ``end_turn``.

    ``pause`` identifies this pause for :meth:`TurnDetector.end_turn` (it changes when speech resumes)."""

    audio_end_ms: int
    pause: int


@dataclass(frozen=True)
class PauseStarted:
    """semantic_vad: ``SPECULATE_PAUSE_MS`` of silence inside speech, the same pause a later
    ``PauseDetected`` scores (same ``pause``); the server starts its speculative response here."""

    audio_end_ms: int
    pause: int


VadEvent = SpeechStarted | SpeechStopped | IdleTimeout | PauseStarted | PauseDetected


@dataclass
class _State:
    frames: int = 0  # 20 ms frames processed since reset
    in_speech: bool = False
    window: collections.deque[tuple[int, bool]] = field(
        default_factory=lambda: collections.deque(maxlen=_START_WINDOW)
    )
    voiced_run: int = 0
    last_speech_end_frame: int = 0  # frame index just after the last confirmed voiced run
    idle_anchor_frame: int = 0
    idle_armed: bool = True
    paused_at: int = -1  # last_speech_end_frame of the pause already reported (semantic_vad)
    started_at: int = -1  # ... and of the pause whose start was already reported
    end_after_pause: int = -1  # semantic_vad: the pause that ends the turn once it lasts end_after_ms
    end_after_ms: int = 0


class TurnDetector:
    """Feed 16 kHz mono audio in chunks of any size; get speech start / stop / idle events back.

    Times in events are milliseconds of audio fed since creation or ``reset()``.
    """

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        # Compare mean squares against a squared int16 floor: avoids a sqrt and a log per frame.
        floor = 32768.0 * 10.0 ** (self.config.energy_floor_dbfs / 20.0)
        self._floor_ms = floor * floor
        self._margin = 10.0 ** (self.config.noise_margin_db / 10.0)
        self._pending = np.zeros(0, dtype=np.int16)
        self._s = _State()
        self._energy = np.full(_NOISE_WINDOW, np.inf)

    @property
    def in_speech(self) -> bool:
        return self._s.in_speech

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio processed (whole frames) since creation or ``reset()``."""
        return self._s.frames * FRAME_MS

    def reset(self) -> None:
        """Forget all state and restart the clock at 0 (e.g. on ``input_audio_buffer.clear``)."""
        self._pending = np.zeros(0, dtype=np.int16)
        self._s = _State()
        self._energy = np.full(_NOISE_WINDOW, np.inf)

    @property
    def current_pause_ms(self) -> int | None:
        """semantic_vad: where the current pause began (``PauseDetected.audio_end_ms``); it changes when
        the user speaks again. None outside speech."""
        return self._s.last_speech_end_frame * FRAME_MS if self._s.in_speech else None

    def restart_idle_timer(self) -> None:
        """Start counting ``idle_timeout_ms`` from now (e.g. when the assistant finished speaking)."""
        self._s.idle_anchor_frame = self._s.frames
        self._s.idle_armed = True

    def end_turn(self, pause: int) -> SpeechStopped | None:
        """semantic_vad: end the turn at ``pause`` (from ``PauseDetected``) because the end-of-turn model
        called it complete. Returns the ``SpeechStopped`` to act on, or None when that pause is over (the
        user spoke again, or the turn already ended)."""
        s = self._s
        if not s.in_speech or s.last_speech_end_frame != pause or s.voiced_run >= _RESUME_VOICED:
            return None
        self._stop(s)
        return SpeechStopped(s.last_speech_end_frame * FRAME_MS)

    def end_turn_after(self, pause: int, silence_ms: int) -> SpeechStopped | None:
        """semantic_vad: end the turn at ``pause`` once its silence lasts ``silence_ms`` (a "probably
        complete" score). Returns the ``SpeechStopped`` when the pause is already that long; otherwise
        ``feed`` emits it when it gets there, unless the user speaks again first. None for a stale pause."""
        s = self._s
        if not s.in_speech or s.last_speech_end_frame != pause or s.voiced_run >= _RESUME_VOICED:
            return None
        if (s.frames - pause) * FRAME_MS >= silence_ms:
            return self.end_turn(pause)
        s.end_after_pause, s.end_after_ms = pause, silence_ms
        return None

    def _stop(self, s: _State) -> None:
        s.in_speech = False
        s.voiced_run = 0
        s.idle_anchor_frame = s.frames
        s.idle_armed = True

    def feed(self, samples_16k: np.ndarray) -> list[VadEvent]:
        """Process 16 kHz mono samples (int16, or float in [-1, 1]); return the events they complete."""
        samples = as_int16_mono(samples_16k)
        buf = np.concatenate((self._pending, samples)) if self._pending.size else samples
        n_frames = buf.size // _FRAME_SAMPLES
        events: list[VadEvent] = []
        for i in range(n_frames):
            frame = buf[i * _FRAME_SAMPLES : (i + 1) * _FRAME_SAMPLES]
            self._step(self._is_voiced(frame), events)
        self._pending = buf[n_frames * _FRAME_SAMPLES :].copy()
        return events

    def _is_voiced(self, frame: np.ndarray) -> bool:
        f = frame.astype(np.float32)
        energy = float(np.dot(f, f)) / f.size
        self._energy[self._s.frames % _NOISE_WINDOW] = energy
        if energy < self._floor_ms or energy < float(self._energy.min()) * self._margin:
            return False
        return self._vad.is_speech(frame.tobytes(), VAD_SAMPLE_RATE)

    def _step(self, voiced: bool, events: list[VadEvent]) -> None:
        s = self._s
        idx = s.frames
        s.frames += 1
        s.voiced_run = s.voiced_run + 1 if voiced else 0
        cfg = self.config
        if not s.in_speech:
            s.window.append((idx, voiced))
            if sum(v for _, v in s.window) >= _START_VOICED:
                onset = next(i for i, v in s.window if v)
                s.in_speech = True
                s.last_speech_end_frame = s.frames
                s.window.clear()
                events.append(SpeechStarted(max(0, onset * FRAME_MS - cfg.prefix_padding_ms)))
                return
            if (
                cfg.idle_timeout_ms is not None
                and s.idle_armed
                and (s.frames - s.idle_anchor_frame) * FRAME_MS >= cfg.idle_timeout_ms
            ):
                s.idle_armed = False
                events.append(IdleTimeout(s.frames * FRAME_MS))
            return
        if s.voiced_run >= _RESUME_VOICED:
            s.last_speech_end_frame = s.frames
            return
        silence_ms = (s.frames - s.last_speech_end_frame) * FRAME_MS
        if silence_ms >= cfg.effective_silence_ms or (
            s.end_after_pause == s.last_speech_end_frame and silence_ms >= s.end_after_ms
        ):
            self._stop(s)
            events.append(SpeechStopped(s.last_speech_end_frame * FRAME_MS))
        elif cfg.semantic and silence_ms >= SCORE_PAUSE_MS and s.paused_at != s.last_speech_end_frame:
            s.paused_at = s.last_speech_end_frame
            events.append(PauseDetected(s.last_speech_end_frame * FRAME_MS, s.last_speech_end_frame))
        elif cfg.semantic and silence_ms >= SPECULATE_PAUSE_MS and s.started_at != s.last_speech_end_frame:
            s.started_at = s.last_speech_end_frame
            events.append(PauseStarted(s.last_speech_end_frame * FRAME_MS, s.last_speech_end_frame))
