"""The official Step-Audio-R1 prompt format (reference §4), as strings and as token ids.

A turn is ``<|BOT|>{role}\\n{content}<|EOT|>``; the generation prefix is ``<|BOT|>assistant\\n<think>\\n``;
each audio chunk is one ``<audio_start><audio_patch>*N<audio_end>`` block; content parts are joined with
``\\n`` as vLLM does with ``--interleave-mm-strings`` (so ``[text, audio]`` renders ``text\\n<audio...>``
and ``[audio, text]`` renders ``<audio...>text``); past assistant turns keep only the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from stepaudio_rt.model.tokenizer import (
    AUDIO_END,
    AUDIO_PATCH,
    AUDIO_START,
    BOT,
    EOT,
    THINK_CLOSE,
    THINK_OPEN,
)

USER_ROLE = "human"  # the official client's name for the user role (``user`` renders identically)
USER_PREFIX = f"{BOT}{USER_ROLE}\n"
END_OF_TURN = EOT
GENERATION_PREFIX = f"{BOT}assistant\n{THINK_OPEN}\n"
# Thinking off: the paper's empty think block, which the model also learns for non-reasoning targets.
EMPTY_THINK = f"{THINK_OPEN}\n\n{THINK_CLOSE}\n"
NO_THINK_PREFIX = f"{BOT}assistant\n{EMPTY_THINK}"


def system_block(text: str) -> str:
    return f"{BOT}system\n{text}{EOT}"


def assistant_history_block(reply: str) -> str:
    """A past assistant turn. The reasoning is dropped, as in StepFun's demos."""
    return f"{BOT}assistant\n{reply}{EOT}"


def audio_block(n_patches: int) -> str:
    return AUDIO_START + AUDIO_PATCH * n_patches + AUDIO_END


@dataclass
class AudioPart:
    """One audio chunk (<= 25 s) already counted in adaptor tokens."""

    n_tokens: int


@dataclass
class Message:
    role: Literal["system", "user", "human", "assistant"]
    content: str | Sequence[str | AudioPart] = ""
    reasoning: str = ""  # kept for the record; never rendered into history
    audio: list[AudioPart] = field(default_factory=list)


def render_content(content: str | Sequence[str | AudioPart]) -> str:
    if isinstance(content, str):
        # The official template maps "<audio_patch>\n" in string content to a bare "<audio_patch>".
        return content.replace(f"{AUDIO_PATCH}\n", AUDIO_PATCH)
    out = ""
    for i, part in enumerate(content):
        piece = audio_block(part.n_tokens) if isinstance(part, AudioPart) else part
        if i > 0 and not (isinstance(content[i - 1], AudioPart) and isinstance(part, str)):
            # Parts are joined with "\n", except that the "\n" after an audio block is removed.
            out += "\n"
        out += piece
    return out


def render_prompt(messages: Sequence[Message], add_generation_prompt: bool = True, think: bool = True) -> str:
    """Render a conversation exactly as the R1 chat template + the official client do."""
    out = ""
    for i, msg in enumerate(messages):
        if msg.role == "system":
            if i == 0:
                out += system_block(render_content(msg.content))
            continue
        if msg.role in ("user", "human"):
            out += f"{USER_PREFIX}{render_content(msg.content)}{EOT}"
        else:
            last = i == len(messages) - 1 and not add_generation_prompt
            out += f"{BOT}assistant\n{render_content(msg.content)}" + ("" if last else EOT)
    if add_generation_prompt:
        out += GENERATION_PREFIX if think else NO_THINK_PREFIX
    return out


def split_reasoning(text: str, starts_in_think: bool = True) -> tuple[str, str]:
    """Split model output into (reasoning, reply) at ``</think>``.

    With ``starts_in_think`` the prompt ended in ``<think>\\n`` so the output begins inside the block.
    Output that never closes the block is all reasoning. The reply loses its leading newline and any
    end-of-turn marker.
    """
    if not starts_in_think:
        if text.lstrip().startswith(THINK_OPEN):
            text = text.lstrip()[len(THINK_OPEN) :]
        elif THINK_CLOSE not in text:
            return "", _clean_reply(text)
    if THINK_CLOSE not in text:
        return text.strip("\n"), ""
    reasoning, reply = text.split(THINK_CLOSE, 1)
    return reasoning.strip("\n"), _clean_reply(reply)


def _clean_reply(text: str) -> str:
    return text.replace(EOT, "").lstrip("\n").rstrip()
