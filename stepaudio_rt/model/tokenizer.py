"""The checkpoint's tokenizer with its special tokens resolved by name.

The real Step-Audio-R1 tokenizer is a ``Qwen2TokenizerFast`` (vocab padded to 158720); the bundled demo
checkpoint ships a small BPE tokenizer that carries the same special tokens. Either way ids are looked
up by name at load time, never hard-coded, and for the real vocabulary the confirmed ids are checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

log = logging.getLogger(__name__)

BOT = "<|BOT|>"
EOT = "<|EOT|>"
ENDOFTEXT = "<|endoftext|>"
IM_END = "<|im_end|>"
AUDIO_START = "<audio_start>"
AUDIO_END = "<audio_end>"
AUDIO_PATCH = "<audio_patch>"
TTS_START = "<tts_start>"
TTS_END = "<tts_end>"
TTS_PAD = "<tts_pad>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Tokens that must exist as single tokens in any Step-Audio-R1-class tokenizer.
REQUIRED_SPECIAL_TOKENS = (BOT, EOT, AUDIO_START, AUDIO_END, AUDIO_PATCH)
# Special (control) tokens a tokenizer built by this project carries, in id order.
SPECIAL_TOKENS = (ENDOFTEXT, IM_END, BOT, EOT, AUDIO_START, AUDIO_END, AUDIO_PATCH, TTS_START, TTS_END, TTS_PAD)
# Added as normal (non-special) tokens so that ``skip_special_tokens`` never deletes them.
THINK_TOKENS = (THINK_OPEN, THINK_CLOSE)
# Ids confirmed in the official code/config (reference §3); checked when the vocabulary is the real one.
REAL_TOKEN_IDS = {EOT: 151665, AUDIO_START: 151688, AUDIO_PATCH: 151690}


@dataclass(frozen=True)
class SpecialTokenIds:
    bot: int
    eot: int
    audio_start: int
    audio_end: int
    audio_patch: int
    endoftext: int | None
    im_end: int | None


class StepAudioTokenizer:
    """Thin wrapper over an HF fast tokenizer: special ids, stop ids, think-tag ids."""

    def __init__(self, hf: PreTrainedTokenizerBase, extra_eos_ids: tuple[int, ...] = ()) -> None:
        self.hf = hf
        missing = [t for t in REQUIRED_SPECIAL_TOKENS if self._single_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks required special tokens: {', '.join(missing)}")

        def need(token: str) -> int:
            tid = self._single_id(token)
            assert tid is not None
            return tid

        self.ids = SpecialTokenIds(
            bot=need(BOT),
            eot=need(EOT),
            audio_start=need(AUDIO_START),
            audio_end=need(AUDIO_END),
            audio_patch=need(AUDIO_PATCH),
            endoftext=self._single_id(ENDOFTEXT),
            im_end=self._single_id(IM_END),
        )
        if len(hf) > 151690:  # the real vocabulary: verify the confirmed ids
            for name, expected in REAL_TOKEN_IDS.items():
                if self._single_id(name) != expected:
                    raise ValueError(f"{name} has id {self._single_id(name)}, the official tokenizer uses {expected}")
        stops = [self.ids.eot, *(i for i in (self.ids.endoftext, self.ids.im_end) if i is not None)]
        self.stop_token_ids: tuple[int, ...] = tuple(dict.fromkeys([*stops, *extra_eos_ids]))
        # "<think>" / "</think>" may be single added tokens or several pieces (official code treats them
        # as strings); the engine matches the id sequence either way.
        self.think_open_ids: tuple[int, ...] = tuple(self.encode(THINK_OPEN))
        self.think_close_ids: tuple[int, ...] = tuple(self.encode(THINK_CLOSE))

    @classmethod
    def from_pretrained(cls, path: str | Path, extra_eos_ids: tuple[int, ...] = ()) -> StepAudioTokenizer:
        # AutoTokenizer peeks at config.json and warns that `step_audio_2` is an unknown model type;
        # the tokenizer files alone decide the class, so that warning is noise.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            hf = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        finally:
            hf_logging.set_verbosity(level)
        return cls(hf, extra_eos_ids=extra_eos_ids)

    def _single_id(self, token: str) -> int | None:
        tid = self.hf.convert_tokens_to_ids(token)
        if tid is None or (self.hf.unk_token_id is not None and tid == self.hf.unk_token_id):
            return None
        return int(tid)

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special-token strings in it become their ids. No BOS is added."""
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        # Never skip special tokens: <think> tags may be special in some tokenizers (reference §3).
        return str(self.hf.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def audio_block_ids(self, n_patches: int) -> list[int]:
        """``<audio_start> <audio_patch>*N <audio_end>`` for one audio chunk."""
        return [self.ids.audio_start, *([self.ids.audio_patch] * n_patches), self.ids.audio_end]

    def save_pretrained(self, out_dir: str | Path) -> None:
        self.hf.save_pretrained(str(out_dir))


class IncrementalDetokenizer:
    """Turns a growing token list into text deltas without splitting multi-byte characters.

    Byte-level BPE tokens can end mid UTF-8 sequence; decoding them alone yields U+FFFD. We decode a
    short window of recent tokens and emit only the new, complete suffix (the approach of vLLM and TGI).
    """

    def __init__(self, tokenizer: StepAudioTokenizer) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # tokens whose text has been emitted

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        prefix_text = self._tok.decode(self._ids[self._prefix : self._read])
        full_text = self._tok.decode(self._ids[self._prefix :])
        if full_text.endswith("\ufffd") or len(full_text) <= len(prefix_text):
            return ""  # incomplete character: wait for the next token
        self._prefix, self._read = self._read, len(self._ids)
        return full_text[len(prefix_text) :]
