"""Text -> speech tokens: CosyVoice2's ``Qwen2LM`` (``llm.pt``).

A Qwen2 decoder (transformers' ``Qwen2ForCausalLM``, config from ``CosyVoice-BlankEN/config.json``; its
weights live in ``llm.pt`` under ``llm.model.``) reads [sos, text embeddings, task id, prompt speech
token embeddings] and then one speech token per step: ``llm_decoder`` scores the 6561 speech codes + 3
stop codes, the sampled code is embedded with ``speech_embedding`` and fed back. Sampling is upstream's
repetition-aware sampling (nucleus top-p/top-k, falling back to plain sampling when the nucleus choice
repeats too often in a short window), which avoids the stuck-token loops of greedy decoding.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model
from transformers.cache_utils import DynamicCache

from .config import LMConfig
from .flow import check_stop

__all__ = ["Qwen2LM"]

# transformers renamed the KV-cache argument (past_key_values -> cache); use whichever this version has.
_CACHE_ARG = "cache" if "cache" in inspect.signature(Qwen2Model.forward).parameters else "past_key_values"


class Qwen2Encoder(nn.Module):
    """Holds the Qwen2 model under ``model`` so the keys read ``llm.model.model.layers...`` as upstream."""

    def __init__(self, config: Qwen2Config) -> None:
        super().__init__()
        config._attn_implementation = "sdpa"
        self.model = Qwen2ForCausalLM(config)


class Qwen2LM(nn.Module):
    def __init__(self, cfg: LMConfig, qwen: Qwen2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.sos, self.task_id = 0, 1
        self.llm_embedding = nn.Embedding(2, cfg.llm_input_size)
        self.llm = Qwen2Encoder(qwen)
        self.llm_decoder = nn.Linear(cfg.llm_output_size, cfg.speech_token_size + 3)
        self.speech_embedding = nn.Embedding(cfg.speech_token_size + 3, cfg.llm_input_size)
        self.stop_token_ids = {cfg.speech_token_size + i for i in range(3)}

    def _sample(self, logp: torch.Tensor, decoded: list[int], gen: torch.Generator, allow_stop: bool) -> int:
        cfg = self.cfg
        for _ in range(100):
            token = self._nucleus(logp, gen)
            recent = decoded[-cfg.win_size :]
            if recent.count(token) >= cfg.win_size * cfg.tau_r:
                token = int(torch.multinomial(logp.exp(), 1, generator=gen))
            if allow_stop or token not in self.stop_token_ids:
                return token
        raise RuntimeError("the speech LM kept sampling a stop token before the minimum length")

    def _nucleus(self, logp: torch.Tensor, gen: torch.Generator) -> int:
        probs, ids = logp.exp().sort(descending=True)
        keep = (torch.cumsum(probs, 0) - probs) < self.cfg.top_p  # a token is kept while the mass before it < p
        keep[self.cfg.top_k :] = False
        keep[0] = True
        choice = torch.multinomial(probs[keep], 1, generator=gen)
        return int(ids[keep][choice])

    @torch.inference_mode()
    def generate(self, text: torch.Tensor, prompt_text: torch.Tensor, prompt_speech_token: torch.Tensor,
                 seed: int = 0, stop: threading.Event | None = None,
                 max_tokens: int | None = None) -> Iterator[int]:
        """Yield speech token ids for ``text`` [1, N] (Qwen token ids) until a stop token or the length cap."""
        device = self.llm_decoder.weight.device
        embed_tokens = self.llm.model.model.embed_tokens
        text_emb = embed_tokens(torch.cat([prompt_text, text], dim=1).to(device))
        prompt_emb = self.speech_embedding(prompt_speech_token.to(device))
        lm_input = torch.cat([
            self.llm_embedding.weight[self.sos].view(1, 1, -1), text_emb,
            self.llm_embedding.weight[self.task_id].view(1, 1, -1), prompt_emb,
        ], dim=1).to(text_emb.dtype)
        n_text = text.size(1)
        min_len = int(n_text * self.cfg.min_token_text_ratio)
        max_len = max(1, int(n_text * self.cfg.max_token_text_ratio))
        if max_tokens is not None:
            max_len, min_len = min(max_len, max_tokens), min(min_len, max_tokens)
        gen = torch.Generator().manual_seed(seed)
        cache = DynamicCache()
        decoded: list[int] = []
        for step in range(max_len):
            check_stop(stop)
            out = self.llm.model.model(inputs_embeds=lm_input, use_cache=True, **{_CACHE_ARG: cache})
            logp = self.llm_decoder(out.last_hidden_state[0, -1]).float().log_softmax(-1).cpu()
            token = self._sample(logp, decoded, gen, allow_stop=step >= min_len)
            if token in self.stop_token_ids:
                return
            decoded.append(token)
            yield token
            lm_input = self.speech_embedding.weight[token].view(1, 1, -1)
