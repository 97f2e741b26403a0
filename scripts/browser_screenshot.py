"""Refresh ``docs/screenshots/browser.png``: the browser page after one spoken question, on a running server.

    python -m stepaudio_rt.server --port 8013 &          # the bundled demo checkpoint
    python scripts/browser_screenshot.py --url http://127.0.0.1:8013 [--question "What is twelve plus seven?"]

Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright, as ``tests/test_browser.py`` does,
with Chromium's fake microphone playing the question spoken by Piper followed by silence. The page asks
for ``semantic_vad`` and input transcription, so the picture shows the user's words as the server heard
them. (``tests/test_browser.py`` checks the same page against the tiny random test checkpoint, whose
replies are noise: not a picture for the docs.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from stepaudio_rt.clients.piper_speech import speak_piper

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8013")
    ap.add_argument("--question", default="What is twelve plus seven?")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "browser.png")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    pcm = np.frombuffer(speak_piper(args.question), "<i2").astype(np.float32) / 32768
    audio = np.concatenate([np.zeros(12000), pcm, np.zeros(24000 * 12)])  # the fake mic loops the file
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        wav = Path(tmp) / "question.wav"
        sf.write(wav, soxr.resample(audio, 24000, 48000), 48000, subtype="PCM_16")
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=[*ARGS, f"--use-file-for-fake-audio-capture={wav}"])
        page = browser.new_page(viewport={"width": 1200, "height": 560})
        page.goto(args.url + "/")
        page.click("#start")
        page.wait_for_function("Number(document.body.dataset.responses || 0) >= 1", timeout=60_000)
        page.wait_for_function("Number(document.body.dataset.transcripts || 0) >= 1", timeout=60_000)
        page.wait_for_timeout(1500)  # let the reply audio finish playing and the readouts settle
        print("user:", page.inner_text("#transcript .user .text"))
        print("assistant:", page.inner_text("#transcript .assistant .text"))
        print("latency:", page.inner_text("#latency"))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print("wrote", args.out)


if __name__ == "__main__":
    main()
