"""The processor verl's dataset calls for Step-Audio-R1: chat text + audio clips -> token ids + mel features.

verl's ``RLHFDataset`` renders the prompt with ``processor.apply_chat_template(messages, tokenize=False)``
(one ``<audio_patch>`` per audio part, the plugin's chat template), then calls
``processor(text=[prompt], audio=[clips], return_tensors="pt")``; everything besides ``input_ids`` and
``attention_mask`` becomes the sample's ``multi_modal_inputs`` for the actor and critic
(:mod:`stepaudio_rt.training.verl.hf_model`). verl hands vLLM the already expanded prompt ids, so every
clip expands exactly as the vLLM plugin's processor expands it: cut into 25 s chunks (``split_audio``),
each chunk ``<audio_start> <audio_patch>*N <audio_end>`` with N = ``audio_token_count(mel frames)``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from transformers import BatchFeature

from stepaudio_rt.model.audio_frontend import (
    SAMPLE_RATE,
    audio_token_count,
    load_audio,
    log_mel_spectrogram,
    mel_frame_count,
    resample,
    split_audio,
)
from stepaudio_rt.model.config import StepAudio2Config
from stepaudio_rt.model.tokenizer import AUDIO_PATCH, StepAudioTokenizer

CHAT_TEMPLATE = Path(__file__).resolve().parents[2] / "vllm_plugin" / "chat_template.jinja"


def as_mono_16k(audio: Any, sampling_rate: int | None = None) -> np.ndarray:
    """A clip as verl's dataset hands it (array, FLAC/WAV bytes, a path, or ``{"audio": ..,
    "sampling_rate": ..}``) -> float32 16 kHz mono; more channels -> the first, as the plugin does."""
    if isinstance(audio, dict):
        return as_mono_16k(audio.get("audio", audio.get("audio_url")), audio.get("sampling_rate", sampling_rate))
    if isinstance(audio, (bytes, bytearray)):
        wav, sr = sf.read(io.BytesIO(audio), dtype="float32", always_2d=True)
        return resample(wav[:, 0], sr)
    if isinstance(audio, (str, Path)):
        return load_audio(audio)
    wav = np.asarray(audio, dtype=np.float32)
    wav = wav if wav.ndim == 1 else wav.reshape(-1, wav.shape[-1])[0]
    return resample(wav, sampling_rate) if sampling_rate and sampling_rate != SAMPLE_RATE else wav


def clip_patch_counts(n_samples: int) -> list[int]:
    """``<audio_patch>`` tokens of each chunk of a 16 kHz clip of ``n_samples`` samples."""
    return [audio_token_count(mel_frame_count(len(c))) for c in split_audio(np.zeros(n_samples, np.float32))]


class StepAudio2Processor:
    """The tokenizer plus the project's audio front end, in the call shape verl's dataset uses."""

    def __init__(self, tokenizer: StepAudioTokenizer, n_mels: int) -> None:
        self.step_tokenizer = tokenizer
        self.tokenizer = tokenizer.hf  # verl reads processor.tokenizer for text-only prompts and decoding
        self.n_mels = n_mels
        self.chat_template = CHAT_TEMPLATE.read_text()
        self.feature_extractor = None  # verl then leaves sampling_rate to the clip dicts
        self.audio_token = AUDIO_PATCH
        self.audio_token_id = tokenizer.ids.audio_patch

    @classmethod
    def from_pretrained(cls, path: str | Path, **_: Any) -> StepAudio2Processor:
        config = StepAudio2Config.from_file(Path(path) / "config.json")
        return cls(StepAudioTokenizer.from_pretrained(path), config.audio.n_mels)

    def save_pretrained(self, save_directory: str | Path, **_: Any) -> None:
        """The tokenizer files (verl saves its processing class next to each HF checkpoint)."""
        self.tokenizer.save_pretrained(str(save_directory))

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> Any:
        kwargs.setdefault("chat_template", self.chat_template)
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def expand(self, text: str, clips: Sequence[np.ndarray]) -> tuple[list[int], list[torch.Tensor]]:
        """Token ids with each ``<audio_patch>`` placeholder expanded for its clip, and the chunk mels."""
        ids = self.step_tokenizer.encode(text)
        patch = self.step_tokenizer.ids.audio_patch
        slots = [i for i, t in enumerate(ids) if t == patch]
        if len(slots) != len(clips):
            raise ValueError(f"the prompt has {len(slots)} <audio_patch> placeholder(s) for {len(clips)} audio clip(s)")
        out: list[int] = []
        mels: list[torch.Tensor] = []
        prev = 0
        for slot, wav in zip(slots, clips, strict=True):
            out += ids[prev:slot]
            for chunk in split_audio(wav):
                mel = log_mel_spectrogram(chunk, n_mels=self.n_mels)
                mels.append(mel)
                out += self.step_tokenizer.audio_block_ids(audio_token_count(mel.shape[-1]))
            prev = slot + 1
        return out + ids[prev:], mels

    def __call__(
        self,
        text: str | Sequence[str],
        audio: Sequence[Any] | None = None,
        images: Any = None,
        videos: Any = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        **_: Any,
    ) -> BatchFeature:
        """One prompt's clips in ``audio`` (verl sends one text per call); several texts take clips in
        order, as many as each has placeholders. Left-padded with the pad id (verl pads again itself)."""
        if images is not None or videos is not None:
            raise ValueError("Step-Audio-R1 takes audio only (no images or videos)")
        texts = [text] if isinstance(text, str) else list(text)
        clips = [as_mono_16k(a, sampling_rate) for a in (audio or [])]
        patch = self.step_tokenizer.ids.audio_patch
        encoded = [self.step_tokenizer.encode(t) for t in texts]
        if clips and not any(patch in ids for ids in encoded):
            # verl's agent loop recomputes multi_modal_inputs from the rollout ids decoded with
            # skip_special_tokens=True, which drops every audio token: only the features are wanted then.
            rows, mels = encoded, [log_mel_spectrogram(c, n_mels=self.n_mels) for w in clips for c in split_audio(w)]
        elif any(self.step_tokenizer.ids.audio_start in ids for ids in encoded):
            # Already expanded (e.g. rollout ids decoded with the special tokens kept): keep the ids as they
            # are, after checking they expand these clips.
            rows, mels = encoded, [log_mel_spectrogram(c, n_mels=self.n_mels) for w in clips for c in split_audio(w)]
            have = sum(ids.count(patch) for ids in encoded)
            want = sum(audio_token_count(m.shape[-1]) for m in mels)
            if have != want:
                raise ValueError(f"the prompt holds {have} <audio_patch> tokens; its audio clips need {want}")
        else:
            rows, mels, taken = [], [], 0
            for t, ids in zip(texts, encoded, strict=True):
                n = ids.count(patch)
                row, row_mels = self.expand(t, clips[taken : taken + n])
                rows.append(row)
                mels += row_mels
                taken += n
            if taken != len(clips):
                raise ValueError(f"{len(clips)} audio clip(s) for {taken} <audio_patch> placeholder(s)")
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        data: dict[str, Any] = {
            "input_ids": [[pad] * (width - len(r)) + r for r in rows],
            "attention_mask": [[0] * (width - len(r)) + [1] * len(r) for r in rows],
        }
        if mels:
            data["input_features"] = torch.cat([m.T for m in mels])  # [sum of frames, n_mels], time-major
            data["audio_chunk_frames"] = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
        return BatchFeature(data, tensor_type=return_tensors)
