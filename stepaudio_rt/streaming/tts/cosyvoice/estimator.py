"""The flow-matching vector-field estimator: CosyVoice2's ``CausalConditionalDecoder`` (a 1-D U-Net of
causal ResNet blocks and transformer blocks, weight names as under ``decoder.estimator.`` in ``flow.pt``).

Inputs are stacked along channels: the noisy mel x, the encoder output mu, the speaker vector repeated over
time, and the prompt mel (cond). Every convolution is causal and attention is limited to static chunks of
``static_chunk_size`` frames in streaming mode, so a frame never sees audio from a later chunk.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import EstimatorConfig
from .encoder import chunk_mask

__all__ = ["CausalConditionalDecoder"]


class CausalConv1d(nn.Conv1d):
    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(cin, cout, kernel)
        self.causal_padding = kernel - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.causal_padding, 0)))


class _Transpose(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class CausalBlock1D(nn.Module):
    """conv -> LayerNorm over channels -> Mish. Keys ``block.0`` (conv), ``block.2`` (norm)."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(CausalConv1d(dim, dim_out, 3), _Transpose(), nn.LayerNorm(dim_out), _Transpose(),
                                   nn.Mish())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.block(x * mask) * mask


class CausalResnetBlock1D(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_emb_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_emb_dim, dim_out))
        self.block1 = CausalBlock1D(dim, dim_out)
        self.block2 = CausalBlock1D(dim_out, dim_out)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.block1(x, mask) + self.mlp(t).unsqueeze(-1)
        return self.block2(h, mask) + self.res_conv(x * mask)


class Attention(nn.Module):
    """diffusers' ``Attention`` as used by matcha's transformer block: q/k/v without bias, ``to_out.0``."""

    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
                   for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed.unsqueeze(1))
        return self.to_out[0](out.transpose(1, 2).reshape(b, t, -1))


class GELUProj(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.ModuleList([GELUProj(dim, dim * mult), nn.Dropout(0.0), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.net:
            x = module(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), allowed)
        return x + self.ff(self.norm3(x))


class TimestepEmbedding(nn.Module):
    def __init__(self, cin: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(t)))


def sinusoidal_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    emb = scale * t.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([emb.sin(), emb.cos()], dim=-1)


class CausalConditionalDecoder(nn.Module):
    def __init__(self, cfg: EstimatorConfig) -> None:
        super().__init__()
        ch = cfg.channels[0]
        self.in_channels = cfg.in_channels
        self.static_chunk_size = cfg.static_chunk_size
        time_dim = ch * 4
        self.time_mlp = TimestepEmbedding(cfg.in_channels, time_dim)

        def blocks() -> nn.ModuleList:
            return nn.ModuleList(
                BasicTransformerBlock(ch, cfg.num_heads, cfg.attention_head_dim) for _ in range(cfg.n_blocks)
            )

        self.down_blocks = nn.ModuleList([
            nn.ModuleList([CausalResnetBlock1D(cfg.in_channels, ch, time_dim), blocks(), CausalConv1d(ch, ch, 3)])
        ])
        self.mid_blocks = nn.ModuleList(
            nn.ModuleList([CausalResnetBlock1D(ch, ch, time_dim), blocks()]) for _ in range(cfg.num_mid_blocks)
        )
        self.up_blocks = nn.ModuleList([
            nn.ModuleList([CausalResnetBlock1D(2 * ch, ch, time_dim), blocks(), CausalConv1d(ch, ch, 3)])
        ])
        self.final_block = CausalBlock1D(ch, ch)
        self.final_proj = nn.Conv1d(ch, cfg.out_channels, 1)

    def _attend(self, x: torch.Tensor, blocks: nn.ModuleList, allowed: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        for block in blocks:
            x = block(x, allowed)
        return x.transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, spks: torch.Tensor,
                cond: torch.Tensor, streaming: bool = True) -> torch.Tensor:
        """x, mu, cond [B, mel, T]; mask [B, 1, T]; t [B]; spks [B, mel] -> velocity [B, mel, T]."""
        temb = self.time_mlp(sinusoidal_embedding(t, self.in_channels).to(x.dtype))
        frames = x.size(-1)
        h = torch.cat([x, mu, spks.unsqueeze(-1).expand(-1, -1, frames), cond], dim=1)
        allowed = chunk_mask(frames, self.static_chunk_size if streaming else 0, x.device).unsqueeze(0)
        # A boolean mask (upstream adds a -1e10 bias, which is -inf in float16 and 0 x -inf = NaN there).
        allowed = allowed & mask.bool()
        resnet, blocks, down = self.down_blocks[0]
        h = resnet(h, mask, temb)
        h = self._attend(h, blocks, allowed)
        skip = h
        h = down(h * mask)
        for resnet, blocks in self.mid_blocks:
            h = self._attend(resnet(h, mask, temb), blocks, allowed)
        resnet, blocks, up = self.up_blocks[0]
        h = resnet(torch.cat([h, skip], dim=1), mask, temb)
        h = up(self._attend(h, blocks, allowed) * mask)
        h = self.final_block(h, mask)
        return self.final_proj(h * mask) * mask
