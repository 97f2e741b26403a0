"""Small randomly initialised checkpoints in the official layout, for tests and benchmarks.

They go through exactly the loading path a real checkpoint takes (config.json with nested configs,
safetensors, tokenizer.json with the special tokens), so tests exercise the real code, not a shortcut.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from stepaudio_rt.model.bpe import train_bpe_tokenizer
from stepaudio_rt.model.checkpoint import save_checkpoint
from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG, StepAudio2Config
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.tokenizer import StepAudioTokenizer

_CORPUS = [
    "what is twelve plus seven? The answer is 19.",
    "I hear three beeps. The voice is high pitched and the speech is fast.",
    "Hello! How can I help you today? Let me think about what I heard.",
    "The first tone is higher than the second one. The background is noisy.",
    "Yes, I can hear you clearly. The speaker said good morning.",
]


def tiny_config(
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab: int = 512,
    n_mels: int = 80,
    audio_state: int = 32,
    audio_heads: int = 2,
    audio_layers: int = 2,
    **text_overrides: Any,
) -> StepAudio2Config:
    raw = copy.deepcopy(STEP_AUDIO_R1_CONFIG)
    raw["text_config"].update(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_attention_groups=kv_heads,
        num_key_value_heads=kv_heads,
        num_hidden_layers=layers,
        vocab_size=vocab,
        max_seq_len=8192,
        max_position_embeddings=8192,
        eos_token_id=0,
        pad_token_id=0,
        **text_overrides,
    )
    raw["audio_encoder_config"].update(
        n_mels=n_mels,
        n_audio_state=audio_state,
        n_audio_head=audio_heads,
        n_audio_layer=audio_layers,
        llm_dim=hidden,
        adapter_hidden_size=2 * hidden,
    )
    raw["dtype"] = "float32"
    return StepAudio2Config.from_dict(raw)


def tiny_tokenizer(vocab: int = 512) -> StepAudioTokenizer:
    return StepAudioTokenizer(train_bpe_tokenizer(_CORPUS * 20, vocab_size=vocab - 4, min_frequency=1))


def build_tiny_checkpoint(out_dir: str | Path, seed: int = 0, **config_kw: Any) -> Path:
    """Write a random tiny ``StepAudio2ForCausalLM`` checkpoint (official layout) to ``out_dir``."""
    torch.manual_seed(seed)
    config = tiny_config(**config_kw)
    tokenizer = tiny_tokenizer(config.vocab_size)
    model = StepAudio2ForCausalLM(config)
    with torch.no_grad():  # larger-than-default logits make sampled text less uniform
        model.lm_head.weight.mul_(4.0)
    return save_checkpoint(model, tokenizer, out_dir)


def make_reasoning_endless(model: StepAudio2ForCausalLM, tokenizer: StepAudioTokenizer, punctuate: bool = True) -> None:
    """Make ``model``'s head unable to emit ``</think>``, a stop token or an id the tokenizer cannot
    decode, so a reasoning stream runs exactly until the think budget closes it (``bench mps`` forces
    reasoning lengths with it; meant for random weights).

    How: every token embedding gets a large constant in hidden dimension 0, so after the final RMSNorm
    that dimension is large and positive at every text position; the rows of ``lm_head`` for the banned
    tokens are ``-M`` there and zero elsewhere, so their logits are hugely negative whatever the input.
    With ``punctuate`` the same dimension favours whole words (tokens " word") and makes "," and "."
    frequent, so sampled text is words in clauses, as real replies are, and the phrase chunker hands
    the TTS short phrases.
    """
    banned = [tokenizer.think_close_ids[0], *tokenizer.stop_token_ids, *range(len(tokenizer), model.config.vocab_size)]
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 50.0  # far above what the (random) layers add to that dimension
        head = model.lm_head.weight
        head[:, 0] = 0.0
        idx = torch.tensor(banned, device=head.device)
        head[idx] = 0.0
        head[idx, 0] = -1000.0
        if punctuate:
            words = [i for i in range(len(tokenizer)) if _is_word(tokenizer.decode([i]))]
            head[torch.tensor(words, device=head.device), 0] = 0.25
            for mark in (",", "."):
                head[tokenizer.encode(mark)[0], 0] = 0.5


def _is_word(piece: str) -> bool:
    return len(piece) > 2 and piece[0] == " " and piece[1:].isalpha() and piece.isascii()


def build_endless_reasoning_checkpoint(out_dir: str | Path, like: str | Path, seed: int = 0) -> Path:
    """A random checkpoint with ``like``'s shapes, tokenizer and generation config whose reasoning never
    ends by itself (:func:`make_reasoning_endless`)."""
    from stepaudio_rt.model.config import StepAudio2Config

    like = Path(like)
    torch.manual_seed(seed)
    config = StepAudio2Config.from_file(like / "config.json")
    gen_path = like / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    eos = generation.get("eos_token_id", [])
    tokenizer = StepAudioTokenizer.from_pretrained(like, extra_eos_ids=tuple(eos if isinstance(eos, list) else [eos]))
    model = StepAudio2ForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)  # as build_tiny_checkpoint: less uniform sampled text
    make_reasoning_endless(model, tokenizer)
    return save_checkpoint(model, tokenizer, out_dir, generation_config=generation)
