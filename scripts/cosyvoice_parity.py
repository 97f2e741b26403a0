"""Parity check of our CosyVoice2 flow + HiFT modules against StepFun's ``token2wav-cosyvoice-stepaudio2``
(Apache-2.0), an independent implementation of the same upstream modules: same state dict (names, shapes,
counts) and the same outputs on shared random weights at the full CosyVoice2-0.5B shapes, on CPU.

Not part of the test suite: that package needs diffusers and einops (and imports torchaudio at package
level, which is why its modules are loaded here file by file). Run once by hand:

    pip download --no-deps -d /tmp/t2w token2wav-cosyvoice-stepaudio2 && unzip -d /tmp/t2w/x /tmp/t2w/*.whl
    pip install --no-deps --target /tmp/dfx diffusers einops
    PYTHONPATH=.:/tmp/dfx python scripts/cosyvoice_parity.py /tmp/t2w/x

Measured (2026-11-29): max |ours - theirs| 9e-8 (encoder: chunked, full attention, look-ahead context),
0.0 (estimator, chunked and full), 0.0 (F0 predictor), 1e-7 (HiFT decode).
"""

from __future__ import annotations

import importlib.util
import sys
import types

import torch

from stepaudio_rt.streaming.tts.cosyvoice.config import CosyVoiceConfig
from stepaudio_rt.streaming.tts.cosyvoice.flow import CausalMaskedDiffWithXvec
from stepaudio_rt.streaming.tts.cosyvoice.hift import HiFTGenerator

ROOT = (sys.argv[1] if len(sys.argv) > 1 else "/tmp/t2w/x").rstrip("/") + "/"
PKG = "stepaudio2.flashcosyvoice.modules"


def _load(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT + name.replace(".", "/") + ".py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _report(what: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    print(f"{what:40s} max|diff| {(ours - theirs).abs().max().item():.3g}  (max|out| {theirs.abs().max().item():.3g})")


def main() -> None:
    torch.set_num_threads(1)
    for name in ["stepaudio2", "stepaudio2.flashcosyvoice", PKG, f"{PKG}.flow_components", f"{PKG}.hifigan_components"]:
        package = types.ModuleType(name)
        package.__path__ = [ROOT + name.replace(".", "/")]
        sys.modules[name] = package
    _load(f"{PKG}.flow_components.upsample_encoder")
    _load(f"{PKG}.flow_components.estimator")
    _load(f"{PKG}.hifigan_components.layers")
    their_flow_mod, their_hift_mod = _load(f"{PKG}.flow"), _load(f"{PKG}.hifigan")

    torch.manual_seed(0)
    ours = CausalMaskedDiffWithXvec(CosyVoiceConfig()).eval()
    for param in ours.parameters():
        param.data.normal_(0, 0.05)  # non-trivial everywhere (default inits leave zero biases)
    theirs = their_flow_mod.CausalMaskedDiffWithXvec().eval()
    assert set(theirs.state_dict()) == set(ours.state_dict()), "flow.pt names differ"
    theirs.load_state_dict(ours.state_dict())
    n = 60
    emb = ours.input_embedding(torch.randint(0, 6561, (1, n)))
    with torch.inference_mode():
        for streaming in (True, False):
            b, _ = theirs.encoder(emb, torch.tensor([n]), streaming=streaming)
            _report(f"encoder (streaming={streaming})", ours.encoder(emb, None, streaming=streaming), b)
        b, _ = theirs.encoder(emb[:, :-3], torch.tensor([n - 3]), context=emb[:, -3:], streaming=True)
        _report("encoder (look-ahead context)", ours.encoder(emb[:, :-3], emb[:, -3:], streaming=True), b)
        x, mu, cond = (torch.randn(2, 80, 2 * n) for _ in range(3))
        mask, t, spks = torch.ones(2, 1, 2 * n), torch.rand(2), torch.randn(2, 80)
        for streaming in (True, False):
            a = ours.decoder.estimator(x, mask, mu, t, spks, cond, streaming)
            _report(f"estimator (streaming={streaming})", a,
                    theirs.decoder.estimator(x, mask, mu, t, spks, cond, streaming=streaming))

    our_hift = HiFTGenerator(CosyVoiceConfig().hift).eval()
    their_hift = their_hift_mod.HiFTGenerator().eval()
    assert set(their_hift.state_dict()) == set(our_hift.state_dict()), "hift.pt names differ"
    their_hift.load_state_dict(our_hift.state_dict())
    mel = torch.randn(1, 80, 40)
    with torch.inference_mode():
        _report("f0 predictor", our_hift.f0_predictor(mel), their_hift.f0_predictor(mel))
        source = torch.randn(1, 1, 40 * 480) * 0.1
        _report("hift decode", our_hift._decode(mel, source), their_hift.decode(mel, source))


if __name__ == "__main__":
    main()
