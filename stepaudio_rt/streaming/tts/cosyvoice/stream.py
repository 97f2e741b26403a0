"""The CosyVoice2 streaming driver: speech tokens in as the LM makes them, 24 kHz audio chunks out.

Upstream's scheme (``CosyVoice2Model.tts(stream=True)``), re-implemented per call so each synthesis owns
its state and nothing is shared between sessions:

- Flow runs once a hop of tokens plus ``pre_lookahead_len`` look-ahead tokens is there. The hop is one
  attention chunk (25 tokens; the first hop is padded so prompt + hop fills whole chunks) and doubles after
  each chunk up to 4 chunks, which keeps first audio early and later recomputation rare. Each call re-runs
  flow over the whole utterance so far (chunk-masked attention and fixed noise make the already-emitted
  frames come out the same) and keeps only the mel from ``token_offset`` on.
- HiFT is not causal, so the last ``mel_cache_len`` mel frames and their source signal are held back and
  re-vocoded with the next chunk; the two renderings of that overlap are cross-faded with a Hamming window.

``stop`` (a threading.Event) is checked between LM tokens and between flow ODE steps, so cancelling costs
at most one network step, not one chunk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .checkpoint import CosyVoice2Model
from .flow import Cancelled
from .voices import Voice

__all__ = ["StreamParams", "TokenToWav", "synthesize_stream"]


@dataclass
class StreamParams:
    token_hop_len: int = 25  # first hop; must be a multiple of the flow's chunk (upstream: 25)
    token_max_hop_len: int = 100
    stream_scale_factor: int = 2
    mel_cache_len: int = 8  # mel frames held back for the HiFT cross-fade
    flow_steps: int | None = None  # None = the checkpoint's (10)
    seed: int = 0
    max_speech_tokens: int | None = None  # cap on LM output (None: upstream's 20 x text tokens)


@dataclass
class TokenToWav:
    """Per-utterance state of the flow + HiFT half: where the next chunk starts and the HiFT overlap."""

    model: CosyVoice2Model
    voice: Voice
    params: StreamParams
    token_offset: int = 0
    hop: int = 0  # tokens of the next chunk
    base_hop: int = 0  # the hop without the first chunk's prompt padding; doubles after each chunk
    cache_mel: torch.Tensor | None = None
    cache_source: torch.Tensor | None = None
    cache_speech: torch.Tensor | None = None
    generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        chunk = self.model.config.chunk_size
        if self.params.token_hop_len % chunk or self.params.token_max_hop_len % chunk:
            raise ValueError(f"token hops must be multiples of the flow's attention chunk ({chunk} tokens), got "
                             f"{self.params.token_hop_len} / {self.params.token_max_hop_len}")
        prompt = self.voice.flow_prompt_speech_token.size(1)
        pad = -prompt % chunk  # make prompt + first hop fill whole attention chunks
        self.base_hop = self.params.token_hop_len
        self.hop = self.base_hop + pad
        self.source_cache_len = self.params.mel_cache_len * self.model.config.hift.hop_samples
        self.window = torch.from_numpy(np.hamming(2 * self.source_cache_len).astype(np.float32))
        self.generator.manual_seed(self.params.seed)

    @property
    def lookahead(self) -> int:
        return self.model.config.pre_lookahead_len

    def ready(self, n_tokens: int) -> bool:
        return n_tokens - self.token_offset >= self.hop + self.lookahead

    def step(self, tokens: list[int], finalize: bool, stop: threading.Event | None = None) -> np.ndarray:
        """Audio for tokens[token_offset : token_offset + hop] (all remaining ones when ``finalize``)."""
        m, v = self.model, self.voice
        upto = len(tokens) if finalize else self.token_offset + self.hop + self.lookahead
        token = torch.tensor(tokens[:upto], dtype=torch.long, device=m.device).view(1, -1)
        dtype = m.flow.input_embedding.weight.dtype
        mel = m.flow.inference(
            token, v.flow_prompt_speech_token.to(m.device), v.prompt_speech_feat.to(m.device, dtype),
            v.flow_embedding.to(m.device, dtype), finalize=finalize, n_steps=self.params.flow_steps, stop=stop,
        )
        mel = mel[:, :, self.token_offset * m.config.token_mel_ratio :].float()
        if self.cache_mel is not None:
            mel = torch.cat([self.cache_mel, mel], dim=2)
        speech, source = m.hift.inference(mel, self.cache_source, self.generator)
        speech = speech.cpu()
        if self.cache_speech is not None:
            n = self.source_cache_len
            speech = speech.clone()
            speech[:, :n] = speech[:, :n] * self.window[:n] + self.cache_speech * self.window[n:]
        if not finalize:
            n = self.source_cache_len
            self.cache_mel = mel[:, :, -self.params.mel_cache_len :]
            self.cache_source = source[:, :, -n:]
            self.cache_speech = speech[:, -n:]
            speech = speech[:, :-n]
            self.token_offset += self.hop
            # Grow the un-padded hop, so every chunk ends on an attention-chunk boundary (as upstream does).
            self.base_hop = min(self.params.token_max_hop_len, self.base_hop * self.params.stream_scale_factor)
            self.hop = self.base_hop
        return speech[0].numpy()


def synthesize_stream(model: CosyVoice2Model, text: str, voice: Voice, params: StreamParams | None = None,
                      stop: threading.Event | None = None, stream: bool = True) -> Iterator[np.ndarray]:
    """Yield float32 24 kHz chunks for ``text``. ``stream=False``: one chunk after all tokens (the reference
    a streamed run is compared with). Returns quietly, yielding nothing more, once ``stop`` is set."""
    params = params or StreamParams()
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        return
    text_ids = torch.tensor(ids, dtype=torch.long).view(1, -1)
    t2w = TokenToWav(model, voice, params)
    tokens: list[int] = []
    try:
        for token in model.llm.generate(text_ids, voice.prompt_text, voice.llm_prompt_speech_token,
                                        seed=params.seed, stop=stop, max_tokens=params.max_speech_tokens):
            tokens.append(token)
            if stream and t2w.ready(len(tokens)):
                yield t2w.step(tokens, finalize=False, stop=stop)
        if tokens:
            yield t2w.step(tokens, finalize=True, stop=stop)
    except Cancelled:
        return
