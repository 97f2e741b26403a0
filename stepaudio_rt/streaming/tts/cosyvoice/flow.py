"""Speech tokens -> 80-bin mel at 50 Hz: CosyVoice2's ``CausalMaskedDiffWithXvec`` (``flow.pt``).

token embedding -> upsampling conformer encoder -> ``encoder_proj`` gives mu; a conditional flow-matching
ODE (Euler, cosine time schedule, classifier-free guidance) integrates from fixed noise to the mel, with the
speaker x-vector and the prompt mel as conditions. The noise is one fixed tensor drawn once (seed 0, as
upstream does), so a prefix of the tokens always gets the same noise prefix: that is what lets streaming
recompute the growing prefix each hop and still agree with a one-shot run on the frames already spoken.
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from .config import CosyVoiceConfig
from .encoder import UpsampleConformerEncoder
from .estimator import CausalConditionalDecoder

__all__ = ["CausalMaskedDiffWithXvec", "Cancelled"]

_NOISE_FRAMES = 50 * 300  # upstream: 300 s of mel frames


class Cancelled(Exception):
    """Raised inside the model when the caller's stop event is set (between ODE steps / LM tokens)."""


def check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise Cancelled


class CausalConditionalCFM(nn.Module):
    """The ODE solver around the estimator (keys ``decoder.estimator.*``)."""

    def __init__(self, cfg: CosyVoiceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.estimator = CausalConditionalDecoder(cfg.estimator)
        gen = torch.Generator().manual_seed(0)
        # A plain attribute, not a buffer: it is not in flow.pt.
        self.rand_noise = torch.randn([1, cfg.mel_bins, _NOISE_FRAMES], generator=gen)

    @torch.inference_mode()
    def forward(self, mu: torch.Tensor, spks: torch.Tensor, cond: torch.Tensor, n_steps: int, streaming: bool,
                stop: threading.Event | None = None) -> torch.Tensor:
        frames = mu.size(2)
        x = self.rand_noise[:, :, :frames].to(mu.device, mu.dtype)
        t_span = torch.linspace(0, 1, n_steps + 1, device=mu.device, dtype=mu.dtype)
        if self.cfg.t_scheduler == "cosine":
            t_span = 1 - torch.cos(t_span * 0.5 * torch.pi)
        mask = torch.ones(2, 1, frames, device=mu.device, dtype=mu.dtype)
        # Classifier-free guidance: row 0 conditioned, row 1 with mu / speaker / prompt zeroed.
        mu_in = torch.cat([mu, torch.zeros_like(mu)])
        spks_in = torch.cat([spks, torch.zeros_like(spks)])
        cond_in = torch.cat([cond, torch.zeros_like(cond)])
        rate = self.cfg.inference_cfg_rate
        for step in range(1, len(t_span)):
            check_stop(stop)
            t, dt = t_span[step - 1], t_span[step] - t_span[step - 1]
            v = self.estimator(torch.cat([x, x]), mask, mu_in, t.expand(2), spks_in, cond_in, streaming)
            v_cond, v_uncond = v[:1], v[1:]
            x = x + dt * ((1.0 + rate) * v_cond - rate * v_uncond)
        return x.float()


class CausalMaskedDiffWithXvec(nn.Module):
    def __init__(self, cfg: CosyVoiceConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_embedding = nn.Embedding(cfg.vocab_size, cfg.flow_input_size)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.mel_bins)
        self.encoder = UpsampleConformerEncoder(cfg.flow_input_size, cfg.encoder, cfg.pre_lookahead_len)
        self.encoder_proj = nn.Linear(cfg.encoder.output_size, cfg.mel_bins)
        self.decoder = CausalConditionalCFM(cfg)

    @torch.inference_mode()
    def inference(self, token: torch.Tensor, prompt_token: torch.Tensor, prompt_feat: torch.Tensor,
                  embedding: torch.Tensor, finalize: bool, streaming: bool = True, n_steps: int | None = None,
                  stop: threading.Event | None = None) -> torch.Tensor:
        """token [1, T] (the whole utterance so far); prompt_token [1, P]; prompt_feat [1, 2P, mel];
        embedding [1, spk_embed_dim]. Not ``finalize``: the last ``pre_lookahead_len`` tokens are only
        look-ahead context. Returns the mel of the non-prompt tokens, [1, mel, 2 x (T or T - lookahead)]."""
        spks = self.spk_embed_affine_layer(F.normalize(embedding, dim=1))
        tokens = torch.cat([prompt_token, token], dim=1).clamp(min=0)
        emb = self.input_embedding(tokens)
        context = None
        if not finalize:
            emb, context = emb[:, : -self.cfg.pre_lookahead_len], emb[:, -self.cfg.pre_lookahead_len :]
        h = self.encoder_proj(self.encoder(emb, context, streaming=streaming))
        prompt_frames = prompt_feat.size(1)
        cond = torch.zeros(1, h.size(1), self.cfg.mel_bins, device=h.device, dtype=h.dtype)
        cond[:, :prompt_frames] = prompt_feat
        mel = self.decoder(h.transpose(1, 2).contiguous(), spks, cond.transpose(1, 2), n_steps or self.cfg.flow_steps,
                           streaming, stop)
        return mel[:, :, prompt_frames:]
