"""The browser page in headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright).

Chromium's fake microphone plays a WAV with a spoken question (espeak-ng, made at test time) followed by
long silence, so server VAD ends the turn and the reply finishes before the file loops. The test checks
what a user would see: a transcript, received reply audio and a latency readout. A screenshot is saved
under the test's tmp dir. The picture in the docs is made by ``scripts/browser_screenshot.py`` against a
server with the demo checkpoint (the tiny test checkpoint's replies are noise).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.audio_fixtures import pad, resample, speak_espeak
from tests.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
BASE_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]

if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed at /usr/bin/chromium (make system-deps installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the project's test extra")


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spoken question, then 12 s of silence: the fake microphone loops the file."""
    audio, sr = speak_espeak("What is two plus three?")
    wav = resample(pad(audio, sr, 0.5, 12.0), sr, 48000)
    path = tmp_path_factory.mktemp("browser") / "question.wav"
    sf.write(path, np.clip(wav, -1, 1), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def playwright_session() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        yield pw


def _launch(pw: object, *extra: str) -> object:
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=[*BASE_ARGS, *extra])  # type: ignore[attr-defined]


def test_page_speaks_and_shows_the_reply(
    live_server: LiveServer, question_wav: Path, playwright_session: object, tmp_path: Path
) -> None:
    browser = _launch(
        playwright_session,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={question_wav}",
    )
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 720})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live_server.http + "/")
        assert page.title().startswith("stepaudio-rt")
        page.click("#start")
        page.wait_for_function("Number(document.body.dataset.responses || 0) >= 1", timeout=60_000)
        # The user's words: the page asks for input transcription and shows it on the user's line.
        page.wait_for_function("Number(document.body.dataset.transcripts || 0) >= 1", timeout=60_000)
        user_said = page.inner_text("#transcript .user .text")
        transcript = page.inner_text("#transcript")
        assistant = page.inner_text("#transcript .assistant .text")
        reply_ms = int(page.evaluate("document.body.dataset.replyAudioMs || '0'"))
        latency = page.inner_text("#latency")
        status_is_error = page.evaluate("document.body.dataset.error") == "1"
        shot = tmp_path / "browser.png"
        page.screenshot(path=str(shot))
    finally:
        browser.close()
    assert not errors, errors
    assert "You" in transcript and assistant.strip(), transcript
    heard = {w.strip(".,?!").lower() for w in user_said.split()}
    assert heard & {"two", "2"} and heard & {"three", "3"}, user_said
    assert reply_ms > 100, "the page received no reply audio"
    assert latency.endswith("after end of speech") and int(latency.split()[0]) > 0
    assert not status_is_error
    assert shot.stat().st_size > 10_000


def test_page_reports_denied_microphone(live_server: LiveServer, playwright_session: object) -> None:
    # Without --use-fake-ui-for-media-stream nobody answers the permission prompt: it is denied.
    browser = _launch(playwright_session, "--use-fake-device-for-media-stream")
    try:
        page = browser.new_page()
        page.goto(live_server.http + "/")
        page.click("#start")
        page.wait_for_function("document.body.dataset.error === '1'", timeout=20_000)
        status = page.inner_text("#status")
        state = page.evaluate("document.body.dataset.state")
    finally:
        browser.close()
    assert "Microphone access was denied" in status
    assert state == "idle"


def test_page_reports_unreachable_server(live_server: LiveServer, playwright_session: object) -> None:
    browser = _launch(playwright_session, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
    try:
        page = browser.new_page()
        page.goto(live_server.http + "/?server=ws://127.0.0.1:9/v1/realtime")
        assert page.input_value("#server") == "ws://127.0.0.1:9/v1/realtime"
        page.click("#start")
        page.wait_for_function("document.body.dataset.error === '1'", timeout=20_000)
        status = page.inner_text("#status")
    finally:
        browser.close()
    assert "Cannot reach the server at ws://127.0.0.1:9/v1/realtime" in status


@pytest.fixture(scope="module")
def interrupting_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A question, 3 s of silence (the reply starts playing), then the user speaks over the reply."""
    q, sr = speak_espeak("What is two plus three?")
    again, sr2 = speak_espeak("Wait, stop, tell me about the sea instead.")
    assert sr == sr2
    wav = resample(np.concatenate([pad(q, sr, 0.5, 3.0), pad(again, sr, 0.0, 12.0)]), sr, 48000)
    path = tmp_path_factory.mktemp("browser-barge") / "interrupt.wav"
    sf.write(path, np.clip(wav, -1, 1), 48000, subtype="PCM_16")
    return path


def test_page_barge_in_stops_playback_and_truncates(
    live_server: LiveServer, interrupting_wav: Path, playwright_session: object
) -> None:
    browser = _launch(
        playwright_session,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={interrupting_wav}",
    )
    try:
        page = browser.new_page()
        # server_vad: the turn ends 500 ms after the question, so the reply is playing when the user
        # speaks again 3 s later (semantic_vad may wait its 2 s maximum on espeak-ng's flat prosody).
        page.goto(live_server.http + "/?vad=server_vad")
        page.click("#start")
        # Speaking over the playing reply clears the player and tells the server what was heard.
        page.wait_for_function(
            "Number(document.body.dataset.bargeIns || 0) >= 1 && Number(document.body.dataset.truncated || 0) >= 1",
            timeout=60_000,
        )
        # The interruption is itself a question: it gets its own answer.
        page.wait_for_function("Number(document.body.dataset.responses || 0) >= 2", timeout=60_000)
        users = page.locator("#transcript .user").count()
    finally:
        browser.close()
    assert users >= 2
