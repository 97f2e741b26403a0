"""CosyVoice2 voices: the speakers saved in the checkpoint's ``spk2info.pt``.

Upstream saves a speaker with ``CosyVoice2.add_zero_shot_spk(prompt_text, prompt_wav, name)`` +
``save_spkinfo()``: a dict name -> {prompt_text, llm_prompt_speech_token, flow_prompt_speech_token,
prompt_speech_feat, llm_embedding, flow_embedding, ...}. SFT checkpoints store only ``embedding``. Both load
here. Without any saved speaker the checkpoint still speaks with one neutral ``default`` voice (no prompt,
zero speaker vector). Making a new speaker from a recording needs upstream's speech tokenizer and CAM++
ONNX models, which this backend does not run: save it with upstream tools, then it is served here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import CosyVoiceConfig

__all__ = ["Voice", "load_voices", "NEUTRAL_VOICE"]

NEUTRAL_VOICE = "default"


@dataclass
class Voice:
    name: str
    prompt_text: torch.Tensor  # [1, P] Qwen token ids of the prompt's transcript
    llm_prompt_speech_token: torch.Tensor  # [1, L]
    flow_prompt_speech_token: torch.Tensor  # [1, F]
    prompt_speech_feat: torch.Tensor  # [1, 2F, mel]
    flow_embedding: torch.Tensor  # [1, spk_embed_dim]


def _neutral(name: str, cfg: CosyVoiceConfig, embedding: torch.Tensor | None = None) -> Voice:
    empty = torch.zeros(1, 0, dtype=torch.long)
    return Voice(name, empty, empty, empty, torch.zeros(1, 0, cfg.mel_bins),
                 embedding if embedding is not None else torch.zeros(1, cfg.spk_embed_dim))


def _as_voice(name: str, info: dict, cfg: CosyVoiceConfig) -> Voice:
    def tokens(key: str) -> torch.Tensor:
        value = info.get(key)
        return torch.zeros(1, 0, dtype=torch.long) if value is None else torch.as_tensor(value).long().view(1, -1)

    embedding = info.get("flow_embedding", info.get("embedding"))
    if embedding is None:
        raise ValueError(f"spk2info.pt: speaker {name!r} has neither flow_embedding nor embedding")
    embedding = torch.as_tensor(embedding).float().view(1, -1)
    if embedding.size(1) != cfg.spk_embed_dim:
        raise ValueError(f"spk2info.pt: speaker {name!r} embedding has {embedding.size(1)} dims, expected "
                         f"{cfg.spk_embed_dim}")
    if "flow_prompt_speech_token" not in info:
        return _neutral(name, cfg, embedding)  # an SFT speaker: embedding only
    feat = torch.as_tensor(info["prompt_speech_feat"]).float()
    feat = feat.view(1, -1, cfg.mel_bins)
    flow_tokens = tokens("flow_prompt_speech_token")
    if feat.size(1) != cfg.token_mel_ratio * flow_tokens.size(1):
        raise ValueError(f"spk2info.pt: speaker {name!r} has {feat.size(1)} prompt mel frames for "
                         f"{flow_tokens.size(1)} prompt tokens (expected x{cfg.token_mel_ratio})")
    return Voice(name, tokens("prompt_text"), tokens("llm_prompt_speech_token"), flow_tokens, feat, embedding)


def load_voices(path: Path, cfg: CosyVoiceConfig) -> dict[str, Voice]:
    """Every speaker in ``spk2info.pt`` (name order kept); ``{"default": neutral}`` when there is none."""
    if not path.is_file():
        return {NEUTRAL_VOICE: _neutral(NEUTRAL_VOICE, cfg)}
    info = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a dict of speakers, got {type(info).__name__}")
    voices = {str(name): _as_voice(str(name), entry, cfg) for name, entry in info.items()}
    return voices or {NEUTRAL_VOICE: _neutral(NEUTRAL_VOICE, cfg)}
