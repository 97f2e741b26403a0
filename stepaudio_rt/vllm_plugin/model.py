"""``StepAudio2ForCausalLM`` for upstream vLLM: the project's audio encoder + adaptor in front of vLLM's
own Qwen2 language model, and a multimodal processor built on the project's audio front end.

What makes it agree with the TorchEngine token for token:

* the mel is :func:`stepaudio_rt.model.audio_frontend.log_mel_spectrogram` (the official recipe, bit for
  bit), computed per chunk of at most 25 s (:func:`split_audio`), each chunk normalised on its own;
* each chunk becomes ``<audio_start> <audio_patch>*N <audio_end>`` with N from
  :func:`audio_token_count` (vLLM's ``get_num_audio_tokens`` convention on the full mel length, the
  TorchEngine's too);
* each chunk is encoded alone, unpadded and unmasked, by the same modules
  (:class:`~stepaudio_rt.model.modeling.AudioEncoder` / :class:`Adaptor`) the TorchEngine runs.

Token ids are resolved by name from the checkpoint's tokenizer, never hard-coded, so the bundled demo
checkpoint (small vocabulary) and the real R1 (151688..151690) both work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import BatchFeature
from vllm.config import VllmConfig
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.inputs import MultiModalDataDict
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal, SupportsPP
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import AudioProcessorItems, MultiModalDataItems, MultiModalDataParser
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)
from vllm.sequence import IntermediateTensors

from stepaudio_rt.model.audio_frontend import (
    MAX_CHUNK_SECONDS,
    SAMPLE_RATE,
    audio_token_count,
    log_mel_spectrogram,
    mel_frame_count,
    split_audio,
)
from stepaudio_rt.model.modeling import Adaptor, AudioEncoder
from stepaudio_rt.model.tokenizer import AUDIO_END, AUDIO_PATCH, AUDIO_START
from stepaudio_rt.vllm_plugin.hf_config import StepAudio2Config

# One request audio item may be longer than a chunk: it is cut into 25 s chunks, each its own block.
# The encoder cache is sized for items up to this many chunks (100 s); the official client sends one
# item per 25 s chunk anyway.
MAX_CHUNKS_PER_ITEM = 4


def _first_channel(wav: np.ndarray) -> np.ndarray:
    """Mono as the official loader makes it: the first channel (vLLM hands (channels, samples))."""
    wav = np.asarray(wav, dtype=np.float32)
    return wav if wav.ndim == 1 else wav.reshape(-1, wav.shape[-1])[0]


class StepAudio2ProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> StepAudio2Config:
        return self.ctx.get_hf_config(StepAudio2Config)

    def get_data_parser(self) -> MultiModalDataParser:
        # soxr is the resampler the project's own front end uses (audio_frontend.resample).
        return MultiModalDataParser(
            target_sr=SAMPLE_RATE,
            audio_resample_method="soxr",
            expected_hidden_size=self._get_expected_hidden_size(),
            allow_missing_mm_embeddings=self.allow_missing_mm_embeddings,
        )

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"audio": None}

    @cached_property
    def special_ids(self) -> tuple[int, int, int]:
        """(audio_start, audio_patch, audio_end), looked up by name in the checkpoint tokenizer."""
        vocab = self.get_tokenizer().get_vocab()
        missing = [t for t in (AUDIO_START, AUDIO_PATCH, AUDIO_END) if t not in vocab]
        if missing:
            raise ValueError(f"the checkpoint tokenizer lacks {', '.join(missing)}")
        return vocab[AUDIO_START], vocab[AUDIO_PATCH], vocab[AUDIO_END]

    @property
    def n_mels(self) -> int:
        return int(self.get_hf_config().audio_encoder_config.n_mels)

    def get_mm_max_tokens_per_item(
        self, seq_len: int, mm_counts: Mapping[str, int] | None = None
    ) -> Mapping[str, int]:
        per_chunk = audio_token_count(mel_frame_count(round(MAX_CHUNK_SECONDS * SAMPLE_RATE))) + 2
        return {"audio": per_chunk * MAX_CHUNKS_PER_ITEM}


class StepAudio2DummyInputsBuilder(BaseDummyInputsBuilder[StepAudio2ProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return AUDIO_PATCH * mm_counts.get("audio", 0)

    def get_dummy_mm_data(
        self, seq_len: int, mm_counts: Mapping[str, int], mm_options: MultiModalDummyOptions
    ) -> MultiModalDataDict:
        length = round(MAX_CHUNK_SECONDS * MAX_CHUNKS_PER_ITEM * SAMPLE_RATE)
        audios = self._get_dummy_audios(
            length=length, num_audios=mm_counts.get("audio", 0), overrides=mm_options.get("audio")
        )
        # A silent clip's mel is constant; a little noise makes the profile run the real code path.
        rng = np.random.default_rng(0)
        return {"audio": [(0.01 * rng.standard_normal(len(a))).astype(np.float32) for a in audios]}


class StepAudio2MultiModalProcessor(BaseMultiModalProcessor[StepAudio2ProcessingInfo]):
    """No HF processor: the mel comes from the project's front end, one per 25 s chunk."""

    def _call_hf_processor(
        self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]
    ) -> BatchFeature:
        audios = hf_data.get("audio") or []
        mels, frames = [], []
        for wav in audios:  # type: ignore[union-attr]
            chunks = split_audio(_first_channel(wav))
            if len(chunks) > MAX_CHUNKS_PER_ITEM:
                raise ValueError(
                    f"one audio item of {len(_first_channel(wav)) / SAMPLE_RATE:.1f} s is longer than "
                    f"{MAX_CHUNKS_PER_ITEM * MAX_CHUNK_SECONDS:.0f} s: send it as several input_audio parts"
                )
            chunk_mels = [log_mel_spectrogram(c, n_mels=self.info.n_mels) for c in chunks]
            mels.append(torch.cat([m.T for m in chunk_mels]))  # [frames, n_mels], time-major
            frames.append(torch.tensor([m.shape[-1] for m in chunk_mels]))
        return BatchFeature({"audio_mels": mels, "audio_chunk_frames": frames})

    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        return {
            "audio_mels": MultiModalFieldConfig.batched("audio"),
            "audio_chunk_frames": MultiModalFieldConfig.batched("audio", keep_on_cpu=True),
        }

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        start, patch, end = self.info.special_ids
        items = out_mm_kwargs.get("audio", [])

        def replacement(item_idx: int) -> PromptUpdateDetails[list[int]]:
            item = items[item_idx]
            if item is not None:
                frames = [int(f) for f in item["audio_chunk_frames"].data]
            else:  # not in this call's outputs: recompute the counts from the waveform
                wav = mm_items.get_items("audio", AudioProcessorItems).get(item_idx)
                frames = [mel_frame_count(len(c)) for c in split_audio(_first_channel(wav))]
            seq: list[int] = []
            for f in frames:
                seq += [start, *([patch] * audio_token_count(f)), end]
            return PromptUpdateDetails.select_token_id(seq, embed_token_id=patch)

        return [PromptReplacement(modality="audio", target=[patch], replacement=replacement)]


@MULTIMODAL_REGISTRY.register_processor(
    StepAudio2MultiModalProcessor, info=StepAudio2ProcessingInfo, dummy_inputs=StepAudio2DummyInputsBuilder
)
class StepAudio2ForCausalLM(nn.Module, SupportsMultiModal, SupportsPP):
    """Checkpoint names: ``encoder.*`` and ``adapter.*`` as they are; ``model.*`` and ``lm_head.*`` move
    under ``language_model.`` (vLLM's Qwen2ForCausalLM stacks q/k/v and gate/up while loading)."""

    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={"model.": "language_model.model.", "lm_head.": "language_model.lm_head."}
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("audio"):
            return AUDIO_PATCH
        raise ValueError("Step-Audio-R1 takes audio only")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config: StepAudio2Config = vllm_config.model_config.hf_config
        self.config = config
        audio_cfg = config.audio_encoder_config.as_project_config()
        with self._mark_tower_model(vllm_config, "audio"):
            self.encoder = AudioEncoder(audio_cfg)
            self.adapter = Adaptor(audio_cfg)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=["Qwen2ForCausalLM"],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def _encode_chunk(self, mel_tn: torch.Tensor) -> torch.Tensor:
        """One chunk's mel [frames, n_mels] -> adaptor outputs [N, hidden], exactly as the TorchEngine
        (one unpadded clip, no mask)."""
        dtype = self.encoder.conv1.weight.dtype
        mel = mel_tn.T.to(device=self.encoder.conv1.weight.device, dtype=dtype)[None]
        out = self.adapter(self.encoder(mel))[0]
        n = audio_token_count(mel.shape[-1])
        if out.shape[0] != n:
            raise RuntimeError(f"encoder produced {out.shape[0]} audio embeddings, expected {n}")
        return out

    def embed_multimodal(self, **kwargs: Any) -> MultiModalEmbeddings:
        mels = kwargs.get("audio_mels")
        frames = kwargs.get("audio_chunk_frames")
        if mels is None:
            return []
        embeds = []
        for item_mel, item_frames in zip(mels, frames, strict=True):
            sizes = [int(f) for f in item_frames]
            chunks = torch.split(item_mel[: sum(sizes)], sizes)
            embeds.append(torch.cat([self._encode_chunk(c) for c in chunks]))
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(
            input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds
        )

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
