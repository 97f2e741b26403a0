"""Build a small byte-level BPE tokenizer that carries the real model's special tokens and chat format.

Special (control) tokens get the lowest ids; ``<think>`` / ``</think>`` are added as normal tokens so
that decoding with ``skip_special_tokens=True`` (as TRL and verl do) keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from stepaudio_rt.model.tokenizer import ENDOFTEXT, SPECIAL_TOKENS, THINK_TOKENS


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2, split_digits: bool = False
) -> PreTrainedTokenizerFast:
    """``split_digits`` makes every digit its own pre-token, as Qwen2's tokenizer does (arithmetic
    is then learned digit by digit instead of over arbitrary merged number chunks)."""
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens(list(THINK_TOKENS))
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t != ENDOFTEXT],
        clean_up_tokenization_spaces=False,
    )
    return hf
