"""Mel -> 24 kHz audio: CosyVoice2's HiFT vocoder (``HiFTGenerator``, weight names as in ``hift.pt``).

A neural source-filter front (F0 predicted from the mel, a harmonic sine source at the audio rate) feeds
an iSTFTNet generator (transposed-conv upsampling, Snake ResBlocks, a 16-point inverse STFT). Weight
normalisation uses torch's parametrizations, whose keys (``*.parametrizations.weight.original0/1``) are
those of the released ``hift.pt``; older ``weight_g/weight_v`` files load through torch's own compat hook.

For streaming, ``inference`` accepts the previous call's source tail (``cache_source``) so the harmonic
phase continues across chunks instead of restarting, which would click.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .config import HiFTConfig

__all__ = ["HiFTGenerator"]


class Snake(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha) ** 2


class ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, dilation=d, padding=(kernel * d - d) // 2))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)) for _ in dilations
        )
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2, a1, a2 in zip(self.convs1, self.convs2, self.activations1, self.activations2, strict=True):
            x = x + c2(a2(c1(a1(x))))
        return x


class ConvRNNF0Predictor(nn.Module):
    """Five weight-normed convs with ELU (``condnet.0, 2, 4, 6, 8``), a linear classifier, |.| -> F0 in Hz."""

    def __init__(self, in_channels: int, cond_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [weight_norm(nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3, padding=1)),
                       nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.abs(self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1))


class SourceModuleHnNSF(nn.Module):
    """Harmonic sine source (upstream ``SineGen2``) merged by ``l_linear`` + tanh."""

    def __init__(self, cfg: HiFTConfig, upsample_scale: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.upsample_scale = upsample_scale
        self.l_linear = nn.Linear(cfg.nb_harmonics + 1, 1)

    def forward(self, f0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """f0 [B, samples, 1] at the audio rate -> source [B, samples, 1]."""
        cfg = self.cfg
        harmonics = f0 * torch.arange(1, cfg.nb_harmonics + 2, device=f0.device, dtype=f0.dtype)
        rad = (harmonics / cfg.sampling_rate) % 1
        rand_ini = torch.rand(f0.size(0), harmonics.size(2), generator=generator).to(f0.device, f0.dtype)
        rand_ini[:, 0] = 0
        rad[:, 0, :] = rad[:, 0, :] + rand_ini
        # Integrate phase at the frame rate and interpolate back: cheaper and smoother than per sample.
        rad = F.interpolate(rad.transpose(1, 2), scale_factor=1 / self.upsample_scale, mode="linear")
        phase = torch.cumsum(rad, dim=2) * 2 * np.pi
        phase = F.interpolate(phase * self.upsample_scale, scale_factor=self.upsample_scale, mode="linear")
        sines = torch.sin(phase).transpose(1, 2) * cfg.nsf_alpha
        uv = (f0 > cfg.nsf_voiced_threshold).to(f0.dtype)
        noise_amp = uv * cfg.nsf_sigma + (1 - uv) * cfg.nsf_alpha / 3
        noise = noise_amp * torch.randn(sines.shape, generator=generator).to(f0.device, f0.dtype)
        sines = sines * uv + noise
        return torch.tanh(self.l_linear(sines))


class HiFTGenerator(nn.Module):
    def __init__(self, cfg: HiFTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        base = cfg.base_channels
        self.num_kernels = len(cfg.resblock_kernel_sizes)
        self.upsample_scale = int(np.prod(cfg.upsample_rates)) * cfg.hop_len
        self.m_source = SourceModuleHnNSF(cfg, self.upsample_scale)
        self.conv_pre = weight_norm(nn.Conv1d(cfg.in_channels, base, 7, padding=3))
        self.ups = nn.ModuleList(
            weight_norm(nn.ConvTranspose1d(base // 2**i, base // 2 ** (i + 1), k, u, padding=(k - u) // 2))
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes, strict=True))
        )
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        down_rates = np.cumprod([1] + cfg.upsample_rates[::-1][:-1])[::-1]
        for i, (u, k, d) in enumerate(zip(down_rates, cfg.source_resblock_kernel_sizes,
                                          cfg.source_resblock_dilation_sizes, strict=True)):
            ch = base // 2 ** (i + 1)
            u = int(u)
            conv = (nn.Conv1d(cfg.n_fft + 2, ch, 1) if u == 1
                    else nn.Conv1d(cfg.n_fft + 2, ch, u * 2, u, padding=u // 2))
            self.source_downs.append(conv)
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = base // 2 ** (i + 1)
            for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock(ch, k, d))
        self.conv_post = weight_norm(nn.Conv1d(ch, cfg.n_fft + 2, 7, padding=3))
        self.f0_predictor = ConvRNNF0Predictor(cfg.in_channels, cfg.f0_cond_channels)
        self.register_buffer("stft_window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)

    def _decode(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        n_fft, hop = self.cfg.n_fft, self.cfg.hop_len
        spec = torch.view_as_real(torch.stft(s.squeeze(1), n_fft, hop, n_fft, window=self.stft_window,
                                             return_complex=True))
        s_stft = torch.cat([spec[..., 0], spec[..., 1]], dim=1)
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            xs = sum(self.resblocks[i * self.num_kernels + j](x) for j in range(self.num_kernels))
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))
        magnitude = torch.exp(x[:, : n_fft // 2 + 1]).clamp(max=1e2)
        phase = torch.sin(x[:, n_fft // 2 + 1 :])
        audio = torch.istft(torch.polar(magnitude, phase), n_fft, hop, n_fft, window=self.stft_window)
        return audio.clamp(-self.cfg.audio_limit, self.cfg.audio_limit)

    @torch.inference_mode()
    def inference(self, mel: torch.Tensor, cache_source: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """mel [1, 80, F] -> (audio [1, F x hop], source [1, 1, F x hop]); ``cache_source`` overrides the
        source's first samples (the previous chunk's tail, for phase continuity)."""
        f0 = self.f0_predictor(mel)
        f0_up = F.interpolate(f0.unsqueeze(1), scale_factor=float(self.upsample_scale), mode="nearest")
        source = self.m_source(f0_up.transpose(1, 2), generator).transpose(1, 2)
        if cache_source is not None and cache_source.size(2) > 0:
            source[:, :, : cache_source.size(2)] = cache_source
        return self._decode(mel, source), source
