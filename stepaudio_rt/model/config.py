"""Configuration of ``StepAudio2ForCausalLM`` as read from an HF ``config.json``.

The official file nests the decoder under ``text_config`` (a Qwen2.5 configuration) and the audio
encoder under ``audio_encoder_config``. We read both without ``trust_remote_code``: the decoder becomes
a plain ``transformers.Qwen2Config``; the encoder keys are few and listed in :class:`AudioEncoderConfig`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from transformers import Qwen2Config

ARCHITECTURE = "StepAudio2ForCausalLM"
MODEL_TYPE = "step_audio_2"
# vLLM's StepAudio2TextConfig forces these end-of-sequence ids for the real tokenizer.
REAL_EOS_TOKEN_IDS = (151643, 151645, 151665)


@dataclass
class AudioEncoderConfig:
    """Whisper-style encoder + x2 adaptor. Defaults are the real Step-Audio-R1 values."""

    n_mels: int = 128
    n_audio_ctx: int = 1500
    n_audio_state: int = 1280
    n_audio_head: int = 20
    n_audio_layer: int = 32
    n_codebook_size: int = 4096
    llm_dim: int = 5120
    kernel_size: int = 3
    adapter_stride: int = 2
    # Not in the official config (the official adaptor hard-codes 2048); kept as a key so small
    # checkpoints can use a narrower adaptor. Absent -> 2048.
    adapter_hidden_size: int = 2048

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AudioEncoderConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "step_audio_2_encoder", **asdict(self)}


@dataclass
class StepAudio2Config:
    text: Qwen2Config
    audio: AudioEncoderConfig
    torch_dtype: str = "bfloat16"
    raw: dict[str, Any] | None = None  # the config.json as read, for inspection

    @property
    def vocab_size(self) -> int:
        return int(self.text.vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self.text.hidden_size)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StepAudio2Config:
        archs = data.get("architectures") or []
        if archs and ARCHITECTURE not in archs:
            raise ValueError(f"config.json declares {archs}, expected {ARCHITECTURE!r}")
        if "text_config" not in data or "audio_encoder_config" not in data:
            raise ValueError(
                "config.json must nest 'text_config' and 'audio_encoder_config' "
                "(the official StepAudio2ForCausalLM layout; do not load config_origin.json)"
            )
        text = dict(data["text_config"])
        groups = text.pop("num_attention_groups", None)
        if groups is not None and text.setdefault("num_key_value_heads", groups) != groups:
            raise ValueError("text_config: num_attention_groups != num_key_value_heads")
        for key in ("architectures", "model_type", "auto_map", "transformers_version"):
            text.pop(key, None)
        # The official configs carry max_seq_len; Qwen2Config calls it max_position_embeddings.
        if "max_seq_len" in text:
            text.setdefault("max_position_embeddings", text.pop("max_seq_len"))
        text["use_sliding_window"] = False  # StepAudio2Config does the same; sliding_window is unused
        text.setdefault("tie_word_embeddings", False)
        qwen = Qwen2Config(**text)
        qwen.architectures = ["Qwen2ForCausalLM"]
        audio = AudioEncoderConfig.from_dict(data["audio_encoder_config"])
        if audio.llm_dim != qwen.hidden_size:
            raise ValueError(f"audio_encoder_config.llm_dim={audio.llm_dim} != hidden_size={qwen.hidden_size}")
        dtype = str(data.get("torch_dtype") or data.get("dtype") or text.get("torch_dtype") or "bfloat16")
        return cls(text=qwen, audio=audio, torch_dtype=dtype, raw=data)

    @classmethod
    def from_file(cls, path: str | Path) -> StepAudio2Config:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        t = self.text
        text = {
            "model_type": "qwen2",
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_attention_heads": t.num_attention_heads,
            "num_attention_groups": t.num_key_value_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "num_hidden_layers": t.num_hidden_layers,
            "max_seq_len": t.max_position_embeddings,
            "max_position_embeddings": t.max_position_embeddings,
            "vocab_size": t.vocab_size,
            "rms_norm_eps": t.rms_norm_eps,
            "rope_theta": _rope_theta(t),
            "rope_scaling": None,
            "hidden_act": t.hidden_act,
            "eos_token_id": t.eos_token_id,
            "pad_token_id": t.pad_token_id,
            "bos_token_id": t.bos_token_id,
            "tie_word_embeddings": False,
        }
        return {
            "architectures": [ARCHITECTURE],
            "model_type": MODEL_TYPE,
            "text_config": text,
            "audio_encoder_config": self.audio.to_dict(),
            "max_window_layers": None,
            "torch_dtype": self.torch_dtype,
        }


def _rope_theta(cfg: Qwen2Config) -> float:
    """RoPE base, wherever this transformers version keeps it."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict) and "rope_theta" in params:
        return float(params["rope_theta"])
    return float(getattr(cfg, "rope_theta", 10000.0))


# The real Step-Audio-R1 / R1.1 shapes (reference: step-audio-r1-checkpoint.md §1), used by the GPU
# benchmark and by tests that check our config parsing against the official file.
STEP_AUDIO_R1_CONFIG: dict[str, Any] = {
    "architectures": [ARCHITECTURE],
    "model_type": MODEL_TYPE,
    "auto_map": {
        "AutoConfig": "configuration_step_audio_2.StepAudio2Config",
        "AutoModelForCausalLM": "modeling_step_audio_2.StepAudio2ForCausalLM",
    },
    "max_window_layers": None,
    "dtype": "bfloat16",
    "text_config": {
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "num_attention_heads": 40,
        "num_attention_groups": 8,
        "num_key_value_heads": 8,
        "num_hidden_layers": 64,
        "max_seq_len": 65536,
        "max_position_embeddings": 65536,
        "vocab_size": 158720,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "eos_token_id": 151643,
        "pad_token_id": 151643,
        "torch_dtype": "bfloat16",
    },
    "audio_encoder_config": {
        "model_type": "step_audio_2_encoder",
        "n_mels": 128,
        "n_audio_ctx": 1500,
        "n_audio_state": 1280,
        "n_audio_head": 20,
        "n_audio_layer": 32,
        "n_codebook_size": 4096,
        "llm_dim": 5120,
        "kernel_size": 3,
        "adapter_stride": 2,
    },
}
