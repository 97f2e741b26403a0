"""The product on a machine with no GPU and no network: ``stepaudio-rt serve`` with no arguments serves the
bundled demo checkpoint, and a spoken question in a voice the model never heard gets a spoken reply with
the right answer, through the official openai SDK's realtime connection (our ``RealtimeClient``)."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from stepaudio_rt.clients.realtime_client import RealtimeClient
from stepaudio_rt.clients.wav_stream import to_pcm16
from stepaudio_rt.model.audio_frontend import SAMPLE_RATE
from stepaudio_rt.settings import DEMO_CHECKPOINT
from tests.conftest import LiveServer, _free_port, run_server, speak_held_out_voice

pytestmark = [
    pytest.mark.skipif(not (DEMO_CHECKPOINT / "config.json").exists(), reason="demo checkpoint not built"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]

def _serve_with_no_arguments(tmp: Path) -> contextlib.AbstractContextManager[LiveServer]:
    """``stepaudio-rt serve --port N``: nothing else, so model, prompt and VAD are the shipped defaults."""
    port = _free_port()
    cmd = [sys.executable, "-m", "stepaudio_rt.cli", "serve", "--port", str(port)]
    return run_server(cmd, port, tmp / "serve.log")


async def test_served_demo_answers_a_spoken_question_from_an_unseen_voice(tmp_path: Path) -> None:
    from stepaudio_rt.training.data.tasks import is_eval_operands
    from stepaudio_rt.training.data.verify import extract_number

    # The same fixed question as the engine-level checkpoint test (the served path adds the VAD, 24 kHz
    # resampling and the session). Measured on 24 random held-out sums through this same path: 17 right.
    assert is_eval_operands(14, 29)  # the operand pair was held out of training too
    question = speak_held_out_voice("what is 14 plus 29", pitch=40, level_dbfs=None)
    with _serve_with_no_arguments(tmp_path) as server:
        async with RealtimeClient(server.http) as client:
            turn = await client.ask(to_pcm16(question, SAMPLE_RATE), lead_silence_s=0.3)
    assert turn.status == "completed", (turn.as_dict(), server.log()[-2000:])
    assert extract_number(turn.transcript) == 43, turn.transcript
    reply = np.frombuffer(turn.audio, "<i2")
    assert len(reply) > 24000 * 0.5  # at least half a second of spoken reply
    assert np.abs(reply).max() > 1000  # and not silence
