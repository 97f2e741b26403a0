"""CosyVoice2 backend on a tiny RANDOM checkpoint in the official layout (random weights speak noise, so
these tests check shapes, chunk boundaries, cancellation, loading and the protocol flow, never content)."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import shutil
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio_rt.streaming.resample import StreamResampler
from stepaudio_rt.streaming.tts import TTSUnavailableError, UnknownVoiceError, create_tts
from stepaudio_rt.streaming.tts.cosyvoice.checkpoint import (
    CheckpointError,
    load_cosyvoice2,
    resolve_checkpoint,
)
from stepaudio_rt.streaming.tts.cosyvoice.config import CosyVoiceConfig
from stepaudio_rt.streaming.tts.cosyvoice.stream import StreamParams, TokenToWav, synthesize_stream
from stepaudio_rt.streaming.tts.cosyvoice.testing import TINY_SPEAKERS, build_tiny_checkpoint, tiny_config
from tests.conftest import DEFAULT_ARGS, LiveServer, _free_port, run_server
from tests.realtime_client import connect

MANUAL = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
FAST = StreamParams(flow_steps=3, max_speech_tokens=120)  # fewer ODE steps: same code paths, less CPU


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("cosyvoice-tiny"))


@pytest.fixture(scope="module")
def model(ckpt: Path):  # noqa: ANN201 - CosyVoice2Model
    return load_cosyvoice2(ckpt)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # Tiny matrices gain nothing from threads, and on a busy 2-core box they lose a lot.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _live_stream_states() -> list[TokenToWav]:
    gc.collect()
    with warnings.catch_warnings():  # touching every object wakes torch's deprecated aliases
        warnings.simplefilter("ignore")
        # type(), not isinstance(): isinstance dereferences weakref proxies, and a dead one left by an
        # earlier test in the same process raises ReferenceError
        return [o for o in gc.get_objects() if type(o) is TokenToWav]


def _tokens(n: int, seed: int = 1) -> list[int]:
    return torch.randint(0, tiny_config().vocab_size, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# ----- layout and loading -----------------------------------------------------------------------------------
def test_tiny_checkpoint_has_the_official_layout_and_names(ckpt: Path) -> None:
    assert {p.name for p in ckpt.iterdir()} == {"cosyvoice2.yaml", "llm.pt", "flow.pt", "hift.pt", "spk2info.pt",
                                               "CosyVoice-BlankEN"}
    assert CosyVoiceConfig.from_yaml(ckpt / "cosyvoice2.yaml") == tiny_config()
    llm = torch.load(ckpt / "llm.pt", weights_only=True)
    flow = torch.load(ckpt / "flow.pt", weights_only=True)
    hift = torch.load(ckpt / "hift.pt", weights_only=True)
    # Names as in FunAudioLLM/CosyVoice2-0.5B (Qwen2LM / CausalMaskedDiffWithXvec / HiFTGenerator).
    assert {"llm_embedding.weight", "llm_decoder.weight", "llm_decoder.bias", "speech_embedding.weight",
            "llm.model.model.embed_tokens.weight", "llm.model.model.layers.1.self_attn.q_proj.bias",
            "llm.model.model.norm.weight"} <= set(llm)
    assert llm["speech_embedding.weight"].shape[0] == llm["llm_decoder.weight"].shape[0] == 64 + 3
    assert {"input_embedding.weight", "spk_embed_affine_layer.weight", "encoder_proj.weight",
            "encoder.embed.out.0.weight", "encoder.pre_lookahead_layer.conv1.weight", "encoder.up_layer.conv.weight",
            "encoder.encoders.0.self_attn.pos_bias_u", "encoder.up_encoders.3.self_attn.linear_pos.weight",
            "encoder.after_norm.weight", "decoder.estimator.time_mlp.linear_1.weight",
            "decoder.estimator.down_blocks.0.0.block1.block.0.weight",
            "decoder.estimator.down_blocks.0.1.0.attn1.to_q.weight",
            "decoder.estimator.mid_blocks.0.1.0.ff.net.0.proj.weight", "decoder.estimator.up_blocks.0.2.weight",
            "decoder.estimator.final_proj.weight"} <= set(flow)
    assert flow["decoder.estimator.down_blocks.0.0.block1.block.0.weight"].shape[1] == 320  # x, mu, spk, cond
    assert {"conv_pre.parametrizations.weight.original0", "ups.2.parametrizations.weight.original1",
            "source_downs.0.weight", "source_resblocks.2.activations1.0.alpha", "resblocks.8.convs2.2.bias",
            "f0_predictor.condnet.8.parametrizations.weight.original0", "f0_predictor.classifier.weight",
            "m_source.l_linear.weight", "conv_post.bias"} <= set(hift)


def test_loads_the_tiny_checkpoint_with_its_speakers(model) -> None:  # noqa: ANN001
    assert list(model.voices) == list(TINY_SPEAKERS)
    alice, bob = model.voices["alice"], model.voices["bob"]
    assert alice.flow_prompt_speech_token.shape == (1, 7) and alice.prompt_speech_feat.shape == (1, 14, 80)
    assert bob.flow_prompt_speech_token.shape == (1, 0) and bob.flow_embedding.shape == (1, 192)
    assert model.config.sample_rate == 24000 and model.config.hift.hop_samples == 480


@pytest.mark.parametrize(
    ("file", "tensor"),
    [
        ("llm.pt", "llm.model.model.layers.1.mlp.down_proj.weight"),
        ("flow.pt", "decoder.estimator.mid_blocks.0.1.0.attn1.to_v.weight"),
        ("hift.pt", "f0_predictor.condnet.4.parametrizations.weight.original1"),
    ],
)
def test_a_checkpoint_missing_a_tensor_is_refused_naming_it(ckpt: Path, tmp_path: Path, file: str,
                                                           tensor: str) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    state = torch.load(broken / file, weights_only=True)
    del state[tensor]
    torch.save(state, broken / file)
    with pytest.raises(CheckpointError, match=rf"{file}: missing tensor '{tensor}'"):
        load_cosyvoice2(broken)


def test_a_mis_shaped_tensor_or_missing_file_is_refused(ckpt: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    state = torch.load(broken / "flow.pt", weights_only=True)
    state["encoder_proj.weight"] = torch.zeros(80, 7)
    torch.save(state, broken / "flow.pt")
    with pytest.raises(CheckpointError, match=r"'encoder_proj.weight' has shape \(80, 7\).*\(80, 32\)"):
        load_cosyvoice2(broken)
    (broken / "hift.pt").unlink()
    with pytest.raises(CheckpointError, match="lacks hift.pt"):
        load_cosyvoice2(broken)


def test_hub_ids_honour_offline_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to find offline
    with pytest.raises(TTSUnavailableError, match=r"nobody/no-such-voice.*HF_HUB_OFFLINE"):
        resolve_checkpoint("nobody/no-such-voice")
    with pytest.raises(CheckpointError, match="not a directory"):
        resolve_checkpoint(str(tmp_path / "missing" / "dir"))


# ----- streaming --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("speaker", ["bob", "alice"])
def test_streamed_flow_chunks_equal_a_one_shot_run(model, one_thread: None, speaker: str) -> None:  # noqa: ANN001
    """Each hop re-runs flow on the prefix with 3 look-ahead tokens; chunk-masked attention and fixed noise
    make every emitted frame equal to the same frame of one run over all tokens."""
    voice, tokens, flow = model.voices[speaker], _tokens(90 if speaker == "bob" else 150), model.flow

    def run(upto: int, finalize: bool) -> torch.Tensor:
        return flow.inference(torch.tensor([tokens[:upto]]), voice.flow_prompt_speech_token,
                              voice.prompt_speech_feat, voice.flow_embedding, finalize=finalize, n_steps=3)

    whole = run(len(tokens), True)
    t2w = TokenToWav(model, voice, FAST)
    parts, hops = [], []
    while t2w.ready(len(tokens)):
        hops.append(t2w.hop)
        parts.append(run(t2w.token_offset + t2w.hop + 3, False)[:, :, 2 * t2w.token_offset :])
        assert parts[-1].shape[2] == 2 * t2w.hop  # exactly the hop's frames: look-ahead tokens give none
        t2w.token_offset += t2w.hop
        t2w.base_hop = min(100, 2 * t2w.base_hop)
        t2w.hop = t2w.base_hop
    parts.append(run(len(tokens), True)[:, :, 2 * t2w.token_offset :])
    # First hop: prompt (7 tokens for alice) + hop fill whole 25-token chunks; later hops double (25, 50,
    # 100), so every chunk ends on a chunk boundary.
    assert hops == ([25, 50] if speaker == "bob" else [43, 50])
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == whole.shape == (1, 80, 2 * len(tokens))
    torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)


def test_streamed_audio_matches_one_shot_audio(model, one_thread: None) -> None:  # noqa: ANN001
    voice, tokens = model.voices["bob"], _tokens(90)
    t2w = TokenToWav(model, voice, FAST)
    chunks = []
    while t2w.ready(len(tokens)):
        chunks.append(t2w.step(tokens, finalize=False))
    chunks.append(t2w.step(tokens, finalize=True))
    one = TokenToWav(model, voice, FAST).step(tokens, finalize=True)
    streamed = np.concatenate(chunks)
    # 90 tokens -> 180 mel frames -> 86,400 samples either way; each streamed chunk holds back the
    # 8-frame (3,840-sample) HiFT overlap, cross-faded into the next chunk.
    assert [len(c) for c in chunks] == [50 * 480 - 3840, 100 * 480, 30 * 480 + 3840]
    assert len(streamed) == len(one) == 180 * 480
    head = len(chunks[0]) - 2000  # before the overlap, the first chunk is the one-shot audio itself
    np.testing.assert_allclose(streamed[:head], one[:head], atol=1e-5)
    assert np.corrcoef(streamed, one)[0, 1] > 0.95  # after: re-vocoded context, smoothly cross-faded
    assert np.abs(streamed).max() <= 0.99


def test_synthesis_streams_chunks_and_frees_its_state(model, one_thread: None) -> None:  # noqa: ANN001
    chunks = list(synthesize_stream(model, "Hello there, the answer is forty two.", model.voices["bob"], FAST))
    assert len(chunks) >= 2 and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    assert sum(len(c) for c in chunks) % 480 == 0  # whole mel frames at 24 kHz
    assert list(synthesize_stream(model, "", model.voices["bob"], FAST)) == []
    assert not _live_stream_states()


def test_cancel_mid_chunk_stops_before_the_next_flow_step(model, one_thread: None) -> None:  # noqa: ANN001
    stop = threading.Event()
    calls = []

    def count(*_: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # inside the first chunk's ODE (3 steps): cancel now
            stop.set()

    handle = model.flow.decoder.estimator.register_forward_hook(count)
    try:
        chunks = list(synthesize_stream(model, "Hello there, the answer is forty two.", model.voices["bob"], FAST,
                                        stop=stop))
    finally:
        handle.remove()
    assert chunks == [] and len(calls) == 2  # no audio for the cancelled chunk, no third step
    assert not _live_stream_states()


# ----- the backend (TTS interface) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tts(ckpt: Path, one_thread: None):  # noqa: ANN201
    return create_tts("cosyvoice", model_path=str(ckpt), device="cpu", params=FAST)


async def test_backend_streams_int16_resampled_to_the_session_rate(tts) -> None:  # noqa: ANN001
    assert tts.sample_rate == 24000 and tts.voices() == ["alice", "bob"] and tts.default_voice == "alice"
    chunks = [c async for c in tts.synthesize("Good morning, how can I help you today?", voice="bob")]
    assert len(chunks) >= 2 and all(c.dtype == np.int16 and 0 < len(c) <= 4800 for c in chunks)  # <= 200 ms
    total = sum(len(c) for c in chunks)
    resampler = StreamResampler(tts.sample_rate, 8000)  # the server's resampler, to a G.711 session
    out = np.concatenate([resampler.process(c) for c in chunks] + [resampler.flush()])
    assert abs(len(out) - total / 3) <= 2


async def test_backend_cancel_stops_synthesis(tts, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(tts.model.llm.cfg, "min_token_text_ratio", 50.0)  # no early stop: >= 2 flow runs
    calls = []
    handle = tts.model.flow.decoder.estimator.register_forward_hook(lambda *_: calls.append(1))
    try:
        text = "The quick brown fox jumps over the lazy dog, and then it rests in the sun."
        full = len([c async for c in tts.synthesize(text)])
        full_calls, calls[:] = len(calls), []
        stream = tts.synthesize(text)
        async for _ in stream:
            break  # barge-in after the first chunk
        await stream.aclose()
        await asyncio.sleep(1.0)
        after = len(calls)
        await asyncio.sleep(0.5)
        # The worker stopped within the second chunk's flow and stays stopped.
        assert full_calls >= 2 * 3 and len(calls) == after < full_calls and full >= 3
    finally:
        handle.remove()


def test_voices_resolve_and_unknown_voices_are_named(tts) -> None:  # noqa: ANN001
    assert tts.resolve_voice("bob") == "bob"
    assert tts.resolve_voice(None) == tts.resolve_voice("alloy") == "alice"  # OpenAI stock names: the default
    with pytest.raises(UnknownVoiceError, match=r"Unknown voice 'carol'; installed voices: alice, bob"):
        tts.resolve_voice("carol")
    with pytest.raises(UnknownVoiceError, match="'carol'"):
        create_tts("cosyvoice", model_path=str(tts.model.root), device="cpu", voice="carol")


# ----- end to end: the real server with --tts cosyvoice -----------------------------------------------------
@pytest.fixture(scope="module")
def cosyvoice_server(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from stepaudio_rt.model.testing import build_tiny_checkpoint as build_tiny_r1

    tmp = tmp_path_factory.mktemp("cosy-srv")
    r1 = build_tiny_r1(tmp / "r1")
    port = _free_port()
    cmd = [sys.executable, "-m", "stepaudio_rt.server", "--model", str(r1), "--port", str(port), *DEFAULT_ARGS,
           "--tts", "cosyvoice", "--tts-model", str(ckpt), "--tts-device", "cpu", "--voice", "bob"]
    with run_server(cmd, port, tmp / "server.log", start_timeout_s=300) as server:
        yield server


async def test_served_with_cosyvoice_speaks_in_the_chosen_voice_at_the_session_rate(
    cosyvoice_server: LiveServer,
) -> None:
    status, body = cosyvoice_server.get("/v1/voices")
    assert status == 200 and json.loads(body) == {
        "object": "list", "backend": "cosyvoice", "default": "bob",
        "data": [{"id": "bob", "object": "voice"}, {"id": "alice", "object": "voice"}],
    }
    async with connect(cosyvoice_server.http) as s:
        # An unknown voice: an error naming it, the session lives on with its old settings.
        await s.conn.session.update(session={**MANUAL, "audio": {"output": {"voice": "carol"}}})
        error = await s.until("error")
        assert "'carol'" in error["error"]["message"] and "installed voices: bob, alice" in error["error"]["message"]  # default first
        assert error["error"]["param"] == "session.audio.output.voice"
        session = {"type": "realtime", "audio": {"input": {"turn_detection": None},
                                                 "output": {"voice": "alice", "format": {"type": "audio/pcmu"}}}}
        await s.conn.session.update(session=session)
        updated = await s.until("session.updated")
        assert updated["session"]["audio"]["output"]["voice"] == "alice"
        await s.text_turn("Say something.")
        done = await s.until("response.done", timeout=240)
        assert done["response"]["status"] == "completed"
        assert done["response"]["audio"]["output"]["voice"] == "alice"
        audio = b"".join(base64.b64decode(e["delta"]) for e in s.check.of_type("response.output_audio.delta"))
        transcript = s.check.of_type("response.output_audio_transcript.done")[-1]["transcript"]
        assert transcript.strip() and len(audio) >= 800  # G.711: 1 byte a sample at 8 kHz, >= 0.1 s
        # Every delta is at most the server's chunk length at the session's 8 kHz (100 ms = 800 bytes).
        assert all(len(base64.b64decode(e["delta"])) <= 800 for e in s.check.of_type("response.output_audio.delta"))
        # A response-level unknown voice is refused too, and the session still answers afterwards.
        await s.conn.response.create(response={"audio": {"output": {"voice": "carol"}}})
        error = await s.until("error")
        assert error["error"]["param"] == "response.audio.output.voice"
        await s.conn.response.create(response={"output_modalities": ["text"]})
        answered = (await s.until("response.done", timeout=120))["response"]
        assert answered["status"] in ("completed", "incomplete") and answered["output"]  # incomplete: token cap


async def test_piper_server_refuses_an_unknown_voice_and_keeps_the_session(live_server: LiveServer) -> None:
    assert json.loads(live_server.get("/v1/voices")[1])["data"] == [{"id": "joe", "object": "voice"}]
    async with connect(live_server.http) as s:
        await s.conn.session.update(session={**MANUAL, "audio": {"output": {"voice": "carol"}}})
        error = await s.until("error")
        assert error["error"]["message"] == "Unknown voice 'carol'; installed voices: joe"
        await s.conn.session.update(session={**MANUAL, "audio": {"output": {"voice": "marin"}}})  # OpenAI stock
        updated = await s.until("session.updated")
        assert updated["session"]["audio"]["output"]["voice"] == "marin"


def test_bench_measures_streamed_and_one_shot_runs_of_equal_audio(one_thread: None) -> None:
    from stepaudio_rt.streaming.tts.cosyvoice.bench import run_bench

    result = run_bench(tokens=40, repeats=1, flow_steps=2, concurrency=(2,))
    streamed, one_shot = result["median"]["streamed"], result["median"]["one_shot"]
    assert streamed["audio_s"] == one_shot["audio_s"] == 40 / 25  # exactly the forced token count
    assert 0.9 * one_shot["total_s"] <= one_shot["first_chunk_s"] <= one_shot["total_s"]  # one-shot: all at once
    assert streamed["first_chunk_s"] < streamed["total_s"]  # streamed: a chunk after 28 of 40 tokens
    assert result["lm_tokens_per_s"] > 0 and result["shapes"] == "tiny (random)"
    assert result["median"]["concurrent_2"]["audio_s"] == 40 / 25  # per stream, two streams at once


def test_half_precision_speaks_finite_audio(ckpt: Path, one_thread: None) -> None:
    """The GPU default is float16 for the LM and flow (the vocoder stays float32): no overflow to NaN."""
    half = load_cosyvoice2(ckpt, dtype=torch.float16)
    assert half.flow.input_embedding.weight.dtype == torch.float16 and half.hift.conv_post.bias.dtype == torch.float32
    chunks = list(synthesize_stream(half, "Hello there, the answer is forty two.", half.voices["alice"], FAST))
    audio = np.concatenate(chunks)
    assert audio.size > 0 and np.isfinite(audio).all() and np.abs(audio).max() > 0
