"""``StepAudio2ForCausalLM``: Whisper-style audio encoder -> adaptor -> Qwen2 decoder.

Single-file modeling in the transformers style: the module tree mirrors the checkpoint's weight
names exactly (``encoder.*``, ``adapter.*``, ``model.*``, ``lm_head.weight``), so loading is a plain
``load_state_dict`` with no renaming. Rates: mel 100 Hz -> conv2 50 Hz -> avg-pool 25 Hz -> adaptor
12.5 Hz, one decoder embedding per ``<audio_patch>`` token.

This file holds the full-sequence forward used in training and in tests. The realtime decode loop,
with its preallocated KV cache, lives in :mod:`stepaudio_rt.model.torch_engine` and reuses these
modules' weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2Model

from stepaudio_rt.model.config import AudioEncoderConfig, StepAudio2Config

NEG_INF = -1e10  # the official encoder's additive mask value


def encoder_output_lengths(mel_lens: torch.Tensor) -> torch.Tensor:
    """Frames after conv2 (stride 2, padding 1): 100 Hz -> 50 Hz."""
    return (mel_lens - 1) // 2 + 1


def audio_token_lengths(mel_lens: torch.Tensor) -> torch.Tensor:
    """Adaptor outputs per clip: vLLM's ``get_num_audio_tokens`` on the full mel length."""
    pooled = (mel_lens + 1) // 2 // 2
    return (pooled - 1) // 2 + 1


class MultiHeadAttention(nn.Module):
    """Whisper attention: ``key`` has no bias; q and k are each scaled by ``(D/heads)^-0.25``."""

    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, t, d = x.shape
        h = self.n_head
        scale = (d // h) ** -0.25
        q = self.query(x).view(b, t, h, -1).transpose(1, 2) * scale
        k = self.key(x).view(b, t, h, -1).transpose(1, 2) * scale
        v = self.value(x).view(b, t, h, -1).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)).float()
        if mask is not None:
            scores = scores + mask
        weights = scores.softmax(dim=-1).to(v.dtype)  # softmax in fp32, as the official encoder
        out = (weights @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(out)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = nn.LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x), mask)
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """The frozen Whisper-style encoder: mel [B, n_mels, T] -> features [B, T/4, D] at 25 Hz."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        d = cfg.n_audio_state
        self.conv1 = nn.Conv1d(cfg.n_mels, d, kernel_size=cfg.kernel_size, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=cfg.kernel_size, stride=2, padding=1)
        # A checkpoint weight (not a computed sinusoid) in the official model.
        self.positional_embedding = nn.Embedding(cfg.n_audio_ctx, d)
        self.blocks = nn.ModuleList(ResidualAttentionBlock(d, cfg.n_audio_head) for _ in range(cfg.n_audio_layer))
        self.avg_pooler = nn.AvgPool1d(2, stride=2)
        self.after_norm = nn.LayerNorm(d)

    def forward_blocks(self, mel: torch.Tensor, mel_lens: torch.Tensor | None = None) -> torch.Tensor:
        """Convolutions, positions and transformer blocks: [B, T2, D] at 50 Hz, before pooling."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        t2 = x.shape[1]
        if t2 > self.positional_embedding.num_embeddings:
            raise ValueError(
                f"audio chunk too long: {t2} encoder frames > {self.positional_embedding.num_embeddings} "
                "(max 29.98 s per chunk; split long audio into 25 s chunks)"
            )
        x = x + self.positional_embedding.weight[:t2].to(x.dtype)
        mask = None
        if mel_lens is not None:
            valid = torch.arange(t2, device=x.device)[None, :] < encoder_output_lengths(mel_lens)[:, None]
            mask = torch.zeros(valid.shape, dtype=torch.float32, device=x.device)
            mask = mask.masked_fill(~valid, NEG_INF)[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        return x

    def forward_unpooled(self, mel: torch.Tensor) -> torch.Tensor:
        """Blocks then ``after_norm`` without pooling: what Whisper's own encoder outputs (ln_post)."""
        return self.after_norm(self.forward_blocks(mel))

    def forward(self, mel: torch.Tensor, mel_lens: torch.Tensor | None = None) -> torch.Tensor:
        x = self.forward_blocks(mel, mel_lens)
        x = self.avg_pooler(x.transpose(1, 2)).transpose(1, 2)
        return self.after_norm(x)


class Adaptor(nn.Module):
    """25 Hz encoder features -> 12.5 Hz decoder embeddings (conv stride 2, GELU, 2-layer ReLU MLP)."""

    def __init__(self, cfg: AudioEncoderConfig) -> None:
        super().__init__()
        d = cfg.n_audio_state
        self.conv = nn.Conv1d(d, d, kernel_size=cfg.kernel_size, stride=cfg.adapter_stride, padding=1)
        self.linear1 = nn.Linear(d, cfg.adapter_hidden_size)
        self.linear2 = nn.Linear(cfg.adapter_hidden_size, cfg.llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.linear2(F.relu(self.linear1(x)))


class StepAudio2ForCausalLM(nn.Module):
    """The whole model. Parameter names are the official checkpoint's tensor names."""

    def __init__(self, config: StepAudio2Config) -> None:
        super().__init__()
        self.config = config
        self.encoder = AudioEncoder(config.audio)
        self.adapter = Adaptor(config.audio)
        self.model = Qwen2Model(config.text)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def encode_audio(self, mel: torch.Tensor, mel_lens: torch.Tensor | None = None) -> torch.Tensor:
        """Mel [B, n_mels, T] -> decoder embeddings [B, N, hidden]; N from :func:`audio_token_lengths`.

        In a padded batch, encoder frames past each clip's end are zeroed before the adaptor, whose
        stride-2 convolution would otherwise let padding leak into a clip's last embedding; a padded
        clip then encodes exactly as it does alone.
        """
        feats = self.encoder(mel, mel_lens)
        if mel_lens is not None:
            pooled = (mel_lens + 1) // 2 // 2
            valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < pooled[:, None]
            feats = feats * valid[..., None].to(feats.dtype)
        return self.adapter(feats)

    def embed(
        self,
        input_ids: torch.Tensor,
        audio_embeds: torch.Tensor | None = None,
        audio_patch_id: int | None = None,
    ) -> torch.Tensor:
        """Token embeddings with ``<audio_patch>`` positions replaced by adaptor outputs, in order."""
        embeds = self.model.embed_tokens(input_ids)
        if audio_embeds is None:
            return embeds
        if audio_patch_id is None:
            raise ValueError("audio_patch_id is required with audio_embeds")
        slots = input_ids == audio_patch_id
        n_slots = int(slots.sum())
        if n_slots != audio_embeds.shape[0]:
            raise ValueError(f"{n_slots} <audio_patch> tokens but {audio_embeds.shape[0]} audio embeddings")
        return embeds.masked_scatter(slots[..., None], audio_embeds.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        audio_embeds: torch.Tensor | None = None,
        audio_patch_id: int | None = None,
        labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Full-sequence forward (training, tests). ``audio_embeds`` is [n_patches, hidden], the
        concatenation of every clip's adaptor output in prompt order. Returns (logits, loss)."""
        embeds = self.embed(input_ids, audio_embeds, audio_patch_id)
        hidden = self.model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return logits, loss

    def num_parameters(self) -> dict[str, int]:
        return {
            "encoder": sum(p.numel() for p in self.encoder.parameters()),
            "adapter": sum(p.numel() for p in self.adapter.parameters()),
            "decoder": sum(p.numel() for p in self.model.parameters()),
            "lm_head": self.lm_head.weight.numel(),
        }
