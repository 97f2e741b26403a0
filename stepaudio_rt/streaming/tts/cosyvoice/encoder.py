"""The flow's token encoder: CosyVoice2's ``UpsampleConformerEncoder`` (weight names as in ``flow.pt``).

Speech tokens (25 Hz) -> look-ahead conv -> 6 conformer layers (relative-position self-attention, no
conv module, no macaron) -> nearest x2 upsampling + causal conv -> 4 more conformer layers at 50 Hz.
Streaming: attention is restricted to static chunks (25 tokens, 50 frames) so that a chunk's output never
depends on later chunks; the look-ahead layer sees ``pre_lookahead_len`` real future tokens (``context``)
instead of zero padding when the stream is not finished.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig

__all__ = ["UpsampleConformerEncoder", "chunk_mask"]


def chunk_mask(size: int, chunk: int, device: torch.device) -> torch.Tensor:
    """[size, size] bool: position i may attend to j when j is in i's chunk or an earlier one (chunk <= 0: all)."""
    if chunk <= 0:
        return torch.ones(size, size, dtype=torch.bool, device=device)
    pos = torch.arange(size, device=device)
    limit = (pos // chunk + 1) * chunk
    return pos.unsqueeze(0) < limit.unsqueeze(1)


class RelPositionalEncoding(nn.Module):
    """ESPnet's relative positional encoding (``rel_pos_espnet``): scales x by sqrt(d), returns [1, 2T-1, d]."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = x.size(1)
        position = torch.arange(size, dtype=torch.float32, device=x.device).unsqueeze(1)
        div = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32, device=x.device)
                        * -(math.log(10000.0) / self.d_model))
        pos = torch.zeros(size, self.d_model, device=x.device)
        neg = torch.zeros(size, self.d_model, device=x.device)
        pos[:, 0::2], pos[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        neg[:, 0::2], neg[:, 1::2] = torch.sin(-position * div), torch.cos(-position * div)
        pe = torch.cat([torch.flip(pos, [0]), neg[1:]], dim=0).unsqueeze(0).to(x.dtype)
        return x * self.xscale, pe


class LinearEmbed(nn.Module):
    """``LinearNoSubsampling``: Linear -> LayerNorm -> (dropout) -> positional encoding. Keys ``out.0``, ``out.1``."""

    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=1e-5), nn.Dropout(0.0))
        self.pos_enc = RelPositionalEncoding(odim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pos_enc(self.out(x))


class RelPositionAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (``RelPositionMultiHeadedAttention``)."""

    def __init__(self, heads: int, dim: int) -> None:
        super().__init__()
        self.h, self.d_k = heads, dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))

    @staticmethod
    def _rel_shift(x: torch.Tensor) -> torch.Tensor:
        b, h, t1, t2 = x.shape
        padded = torch.cat([x.new_zeros(b, h, t1, 1), x], dim=-1).view(b, h, t2 + 1, t1)
        return padded[:, :, 1:].view_as(x)[:, :, :, : t2 // 2 + 1]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.linear_q(x).view(b, t, self.h, self.d_k)
        k = self.linear_k(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
        if ac.shape != bd.shape:
            bd = self._rel_shift(bd)
        scores = (ac + bd) / math.sqrt(self.d_k)
        blocked = ~mask.unsqueeze(1)  # [b, 1, t, t]
        attn = torch.softmax(scores.masked_fill(blocked, float("-inf")), dim=-1).masked_fill(blocked, 0.0)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, self.h * self.d_k)
        return self.linear_out(out)


class FeedForward(nn.Module):
    """``PositionwiseFeedForward`` with SiLU (``swish``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden)
        self.w_2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(F.silu(self.w_1(x)))


class ConformerLayer(nn.Module):
    """``ConformerEncoderLayer`` as CosyVoice2 configures it: pre-norm attention + pre-norm feed-forward."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.self_attn = RelPositionAttention(heads, dim)
        self.feed_forward = FeedForward(dim, hidden)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-12)
        self.norm_mha = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm_mha(x), mask, pos_emb)
        return x + self.feed_forward(self.norm_ff(x))


class PreLookaheadLayer(nn.Module):
    """Conv over the current token and ``lookahead`` future ones, then a causal conv; residual."""

    def __init__(self, channels: int, lookahead: int) -> None:
        super().__init__()
        self.lookahead = lookahead
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=lookahead + 1)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        out = x.transpose(1, 2)
        if context is not None and context.size(1) > 0:
            out = torch.cat([out, context.transpose(1, 2)], dim=2)
            out = F.pad(out, (0, self.lookahead - context.size(1)))
        else:
            out = F.pad(out, (0, self.lookahead))  # end of stream: the future is silence
        out = F.leaky_relu(self.conv1(out))
        out = self.conv2(F.pad(out, (2, 0)))
        return out.transpose(1, 2) + x


class Upsample1D(nn.Module):
    """Nearest-neighbour x``stride`` then a causal conv (left padding only)."""

    def __init__(self, channels: int, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(channels, channels, stride * 2 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=float(self.stride), mode="nearest")
        return self.conv(F.pad(out, (self.stride * 2, 0)))


class UpsampleConformerEncoder(nn.Module):
    def __init__(self, input_size: int, cfg: EncoderConfig, lookahead: int) -> None:
        super().__init__()
        dim = cfg.output_size
        self.static_chunk_size = cfg.static_chunk_size
        self.embed = LinearEmbed(input_size, dim)
        self.pre_lookahead_layer = PreLookaheadLayer(dim, lookahead)
        self.encoders = nn.ModuleList(
            ConformerLayer(dim, cfg.attention_heads, cfg.linear_units) for _ in range(cfg.num_blocks)
        )
        self.up_layer = Upsample1D(dim, stride=2)
        self.up_embed = LinearEmbed(dim, dim)
        self.up_encoders = nn.ModuleList(
            ConformerLayer(dim, cfg.attention_heads, cfg.linear_units) for _ in range(cfg.num_up_blocks)
        )
        self.after_norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, xs: torch.Tensor, context: torch.Tensor | None = None, streaming: bool = True) -> torch.Tensor:
        """xs [1, T, input] embedded tokens (context: [1, <=lookahead, input] real future tokens) -> [1, 2T, dim]."""
        xs, pos = self.embed(xs)
        if context is not None and context.size(1) > 0:
            context = self.embed.out(context) * self.embed.pos_enc.xscale
        mask = chunk_mask(xs.size(1), self.static_chunk_size if streaming else 0, xs.device).unsqueeze(0)
        xs = self.pre_lookahead_layer(xs, context)
        for layer in self.encoders:
            xs = layer(xs, mask, pos)
        xs = self.up_layer(xs.transpose(1, 2)).transpose(1, 2)
        xs, pos = self.up_embed(xs)
        chunk = self.static_chunk_size * self.up_layer.stride if streaming else 0
        mask = chunk_mask(xs.size(1), chunk, xs.device).unsqueeze(0)
        for layer in self.up_encoders:
            xs = layer(xs, mask, pos)
        return self.after_norm(xs)
