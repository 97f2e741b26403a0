"""Piper voices that stream within a sentence: the VITS graph cut into prior, flow and decoder.

A Piper voice is one ONNX graph, phoneme ids -> the whole sentence's audio, so a sentence's first sample
waits for its last: about a tenth of the sentence's duration on one core (260 ms for "46 plus 37 is 83."
on this project's 2-core CI machine). Only the first part of VITS needs the whole sentence: the text
encoder and the duration predictor (the *prior*: phonemes -> a sequence of latent frames, one per 256
samples). The normalising flow and the HiFi-GAN decoder after it are convolutions along time, so a window
of latent frames with enough context on each side gives exactly the samples the whole sentence would.

This module cuts the graph (``onnx.utils.Extractor``) at the flow's inputs and at the decoder's input,
runs the prior once per sentence, the flow twice (the first window, then the rest) and the decoder on
growing windows (16, 64, 256, 256, ... frames; a tail no longer than a window joins it): a sentence's
first 186 ms of audio come after the prior and one small window, and every later window is computed
while the earlier ones play (a window costs under a tenth of its duration on one core).

- **Cut points** are the scope names torch.onnx gives ``SynthesizerTrn``'s submodules in the voices
  Piper's trainer exports (``/enc_p``, ``/dp``, ``/flow``, ``/dec``). The flow's own gating nodes (a
  TorchScript function) carry no scope name, so the flow's inputs are the tensors its scoped nodes read
  from other *named* nodes.
- **Contexts.** The flow is 4 coupling layers of 4-layer WaveNets with kernel 5: 32 frames each side.
  The decoder's receptive field is under 12 frames each side (measured on the bundled voice: streamed
  output 1e-3 off the whole sentence with 8 frames, within 1e-6 from 12 on).
- **Checked at load.** A voice whose graph lacks the scopes, or whose streamed output differs from its
  whole-sentence output on a calibration sentence (noise scales at zero, so both are deterministic), is
  not streamed: :func:`load_streaming_voice` returns the reason and the backend synthesises sentences whole.
- **Loudness.** Piper scales every sentence to full scale (peak 1.0) after synthesising it, which needs
  the whole sentence. A streamed sentence gets one gain per voice instead: the one Piper's normalisation
  gives the calibration sentence. Levels then follow the voice's own dynamics across sentences instead
  of jumping to full scale on each; samples beyond full scale are clipped, as Piper clips.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    from piper import PiperVoice

__all__ = ["GraphCut", "StreamingVoice", "find_cut", "load_streaming_voice"]

log = logging.getLogger(__name__)

FLOW_CONTEXT = 32  # latent frames each side: 4 coupling layers x 4 WaveNet layers x (kernel 5 // 2)
DECODER_CONTEXT = 12  # latent frames each side (the bundled voice: 1e-3 off at 8, 1e-6 at 12)
FIRST_WINDOW = 16  # latent frames in the first window (~186 ms at 22.05 kHz, hop 256)
ONE_WINDOW = 64  # a sentence this short (~0.74 s, "Yes.") is one window: a split would gain < 20 ms, cost more
MAX_WINDOW = 256  # windows grow 4x up to this (16, 64, 256): each new window costs two contexts
CHECK_TOLERANCE = 1e-3  # streamed vs whole-sentence audio, max absolute difference (full scale 1.0)
CALIBRATION_TEXT = "The quick brown fox jumps over the lazy dog, then it runs back home again."


@dataclass(frozen=True)
class GraphCut:
    """Where a Piper VITS graph is cut: tensor names."""

    flow_inputs: tuple[str, ...]  # what the flow reads from the prior (its sample, the frame mask, ...)
    latent: str  # the decoder's time-varying input (the flow's output, masked)
    decoder_extra: tuple[str, ...]  # the decoder's other inputs (a multi-speaker voice's speaker embedding)


def find_cut(graph: onnx.GraphProto) -> GraphCut:
    """The cut points of a Piper VITS graph; ``ValueError`` when it lacks the ``/flow`` or ``/dec`` scopes."""
    initializers = {t.name for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def read_from_outside(scope: str) -> list[str]:
        """Tensors that nodes in ``scope`` read from named nodes outside it or from the graph inputs."""
        names: list[str] = []
        for node in graph.node:
            if not node.name.startswith(scope):
                continue
            for name in node.input:
                if not name or name in initializers or name in names:
                    continue
                src = producer.get(name)
                if src is None or (
                    src.op_type != "Constant" and src.name.startswith("/") and not src.name.startswith(scope)
                ):
                    names.append(name)
        return names

    def depends_on(name: str, scope: str) -> bool:
        seen: set[str] = set()
        stack = [name]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node.name in seen:
                continue
            if node.name.startswith(scope):
                return True
            seen.add(node.name)
            stack.extend(i for i in node.input if i and i not in initializers)
        return False

    flow_inputs = read_from_outside("/flow/")
    decoder_inputs = read_from_outside("/dec/")
    if not flow_inputs or not decoder_inputs:
        raise ValueError("not a Piper VITS graph: no /flow/ and /dec/ scopes")
    latent = [n for n in decoder_inputs if depends_on(n, "/flow/")]
    if len(latent) != 1:
        raise ValueError(f"expected one decoder input computed by the flow, found {latent}")
    extra = tuple(n for n in decoder_inputs if n != latent[0])
    return GraphCut(tuple(flow_inputs), latent[0], extra)


class StreamingVoice:
    """A Piper voice's graph as three sessions; ``stream`` yields float audio window by window."""

    def __init__(self, model: onnx.ModelProto, cut: GraphCut, hop: int) -> None:
        import onnxruntime as ort
        from onnx.utils import Extractor

        extractor = Extractor(model)
        inputs = [i.name for i in model.graph.input]
        output = model.graph.output[0].name  # the audio (voices patched for alignments have a second output)
        self.cut = cut
        self.hop = hop
        self.gain = 1.0
        self._prior_outputs = [*cut.flow_inputs, *cut.decoder_extra]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # as the whole-sentence voice: concurrency comes from sessions
        options.inter_op_num_threads = 1

        def session(sub: onnx.ModelProto) -> onnxruntime.InferenceSession:
            return ort.InferenceSession(sub.SerializeToString(), options, providers=["CPUExecutionProvider"])

        self._prior = session(extractor.extract_model(inputs, self._prior_outputs))
        self._flow = session(extractor.extract_model(list(cut.flow_inputs), [cut.latent]))
        self._decoder = session(extractor.extract_model([cut.latent, *cut.decoder_extra], [output]))
        self._inputs = {i.name for i in self._prior.get_inputs()}

    def stream(
        self, feeds: dict[str, np.ndarray], stop: threading.Event | None = None
    ) -> Iterator[np.ndarray]:
        """One sentence (the whole graph's ``feeds``: phoneme ids, lengths, scales, speaker id): float32
        audio, unscaled, in windows that together equal the whole graph's output."""
        outputs = self._prior.run(None, {k: feeds[k] for k in self._inputs})
        prior = dict(zip(self._prior_outputs, outputs, strict=True))
        frames = max(int(prior[n].shape[-1]) for n in self.cut.flow_inputs)
        timed = {n for n in self.cut.flow_inputs if prior[n].shape[-1] == frames}  # not the speaker embedding
        extra = {n: prior[n] for n in self.cut.decoder_extra}
        z = np.empty((1, 0, 0), dtype=np.float32)  # the flow's output, exact for frames [0, ready)
        ready = 0

        def flow_until(end: int) -> np.ndarray:
            """The flow's output, exact for frames [0, end) at least."""
            nonlocal z, ready
            if end > ready:
                lo, hi = max(0, ready - FLOW_CONTEXT), min(frames, end + FLOW_CONTEXT)
                feed = {
                    n: np.ascontiguousarray(prior[n][..., lo:hi]) if n in timed else prior[n]
                    for n in self.cut.flow_inputs
                }
                (out,) = self._flow.run(None, feed)
                done = frames if hi == frames else end  # nothing right of the sentence's end is missing
                new = out[..., ready - lo : done - lo]
                z = new if ready == 0 else np.concatenate([z, new], axis=-1)
                ready = done
            return z

        start, width = 0, FIRST_WINDOW
        while start < frames:
            if stop is not None and stop.is_set():
                return
            end = min(frames, start + width)
            if frames - end <= width or frames <= ONE_WINDOW:  # a tail no longer than the window rides with it
                end = frames
            # the first window's flow covers just what its decoder needs; the second call does the rest
            latent = flow_until(min(frames, end + DECODER_CONTEXT) if ready == 0 else frames)
            lo, hi = max(0, start - DECODER_CONTEXT), min(frames, end + DECODER_CONTEXT)
            (audio,) = self._decoder.run(None, {self.cut.latent: np.ascontiguousarray(latent[..., lo:hi]), **extra})
            audio = np.asarray(audio, dtype=np.float32).reshape(-1)
            yield audio[(start - lo) * self.hop : (end - lo) * self.hop]
            start, width = end, min(4 * width, MAX_WINDOW)

def _feeds(voice: PiperVoice, phoneme_ids: list[int], scales: np.ndarray) -> dict[str, np.ndarray]:
    """The whole graph's inputs for one sentence, as ``PiperVoice.phoneme_ids_to_audio`` builds them."""
    feeds = {
        "input": np.array([phoneme_ids], dtype=np.int64),
        "input_lengths": np.array([len(phoneme_ids)], dtype=np.int64),
        "scales": np.asarray(scales, dtype=np.float32),
    }
    if voice.config.num_speakers > 1:
        feeds["sid"] = np.array([voice.config.default_speaker_id or 0], dtype=np.int64)
    return feeds


def sentence_feeds(voice: PiperVoice, phonemes: list[str], length_scale: float) -> dict[str, np.ndarray]:
    """Inputs for one phonemised sentence with the voice's noise scales."""
    c = voice.config
    scales = np.array([c.noise_scale, length_scale, c.noise_w_scale], dtype=np.float32)
    return _feeds(voice, voice.phonemes_to_ids(phonemes), scales)


_cache: dict[Path, StreamingVoice | str] = {}
_cache_lock = threading.Lock()


def load_streaming_voice(path: Path, voice: PiperVoice) -> StreamingVoice | str:
    """The streaming form of the voice at ``path`` (cached per file), or why it cannot stream."""
    with _cache_lock:
        found = _cache.get(path)
        if found is None:
            found = _cache[path] = _build(path, voice)
            if isinstance(found, str):
                log.warning("Piper voice %s is synthesised a sentence at a time: %s", path.name, found)
        return found


def _build(path: Path, voice: PiperVoice) -> StreamingVoice | str:
    try:
        import onnx
    except ImportError:
        return "the onnx package is not installed (pip install 'stepaudio-realtime[tts]')"
    model = onnx.load(str(path))
    try:
        streaming = StreamingVoice(model, find_cut(model.graph), int(voice.config.hop_length))
    except Exception as exc:  # an unfamiliar export: synthesise whole sentences
        return f"cannot cut its graph ({type(exc).__name__}: {exc})"
    # Noise scales at zero: the whole graph and the streamed windows are then both deterministic.
    phonemes = voice.phonemize(CALIBRATION_TEXT)[0]
    feeds = _feeds(voice, voice.phonemes_to_ids(phonemes), np.array([0.0, voice.config.length_scale, 0.0]))
    whole = np.asarray(voice.session.run(None, feeds)[0], dtype=np.float32).reshape(-1)
    streamed = np.concatenate(list(streaming.stream(feeds)))
    if streamed.shape != whole.shape:
        return f"streamed {streamed.size} samples where the whole graph gives {whole.size}"
    diff = float(np.abs(streamed - whole).max())
    if diff > CHECK_TOLERANCE:
        return f"streamed audio differs from the whole sentence by up to {diff:.3g}"
    peak = float(np.abs(whole).max())
    streaming.gain = 1.0 / peak if peak > 1e-8 else 1.0
    return streaming
