"""Step-Audio-R1 as transformers ``PreTrainedModel`` classes, for verl's FSDP actor and critic.

verl builds the actor with ``AutoModelForCausalLM.from_pretrained`` and the critic with
``AutoModelForTokenClassification.from_pretrained`` (num_labels=1), then calls
``model(input_ids=..., attention_mask=..., position_ids=..., use_cache=False, **multi_modal_inputs)``
and reads ``output.logits``. ``multi_modal_inputs`` are the processor's extra outputs
(:mod:`stepaudio_rt.training.verl.hf_processor`): ``input_features`` (every audio chunk's log-mel,
time-major, concatenated: [sum of frames, n_mels]) and ``audio_chunk_frames`` (frames per chunk). Both
concatenate along dim 0 across samples, which is how verl merges a micro-batch's inputs.

The module tree is the project's :class:`stepaudio_rt.model.modeling.StepAudio2ForCausalLM` (``encoder.*``,
``adapter.*``, ``model.*``, ``lm_head.weight``), so an official-layout checkpoint loads with no renaming;
the audio encoding and the ``<audio_patch>`` merge reuse that class's methods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, TokenClassifierOutput
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

from stepaudio_rt.model.checkpoint import CheckpointError
from stepaudio_rt.model.config import ARCHITECTURE
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM as ProjectModel
from stepaudio_rt.model.modeling import audio_token_lengths
from stepaudio_rt.model.tokenizer import AUDIO_PATCH, REAL_TOKEN_IDS
from stepaudio_rt.vllm_plugin.hf_config import StepAudio2Config


def _find_audio_patch_id(config: StepAudio2Config, path: str | Path | None) -> int | None:
    """``<audio_patch>``'s id: the config's if set, the real vocabulary's, or the checkpoint tokenizer's."""
    if getattr(config, "audio_patch_token_id", None) is not None:
        return int(config.audio_patch_token_id)
    if config.text_config.vocab_size > REAL_TOKEN_IDS[AUDIO_PATCH]:
        return REAL_TOKEN_IDS[AUDIO_PATCH]
    if path is not None and Path(path).is_dir():
        from stepaudio_rt.model.tokenizer import StepAudioTokenizer

        return StepAudioTokenizer.from_pretrained(path).ids.audio_patch
    return None


class StepAudio2PreTrainedModel(PreTrainedModel):
    config_class = StepAudio2Config
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["Qwen2DecoderLayer", "ResidualAttentionBlock"]  # noqa: RUF012 - transformers API
    _supports_sdpa = True
    _supports_flash_attn = True
    _fresh_prefixes: tuple[str, ...] = ()  # heads a checkpoint may lack (newly initialised)

    def _build_backbone(self, config: StepAudio2Config) -> None:
        # Modules of the project's model, adopted under the same attribute names (= tensor names).
        core = ProjectModel(config.to_project_config())
        self.encoder, self.adapter, self.model = core.encoder, core.adapter, core.model
        self._lm_head_from_core = core.lm_head
        self.audio_patch_token_id: int | None = _find_audio_patch_id(config, None)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        # A policy with randomly initialised backbone weights would train without complaint: refuse it.
        missing = sorted(k for k in info["missing_keys"] if not k.startswith(cls._fresh_prefixes))
        if missing:
            more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
            raise CheckpointError(f"checkpoint is missing tensor(s): {', '.join(missing[:5])}{more}")
        if model.audio_patch_token_id is None:
            model.audio_patch_token_id = _find_audio_patch_id(model.config, pretrained_model_name_or_path)
        return (model, info) if want_info else model

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Only what a checkpoint does not hold: the critic's fresh head and the RoPE tables.
        if isinstance(module, Qwen2RotaryEmbedding):
            inv_freq, scaling = module.rope_init_fn(module.config, module.inv_freq.device)
            module.inv_freq.copy_(inv_freq)
            module.original_inv_freq.copy_(inv_freq)
            module.attention_scaling = scaling
        elif getattr(module, "_is_value_head", False):
            module.weight.normal_(0.0, getattr(self.config.text_config, "initializer_range", 0.02))
            if module.bias is not None:
                module.bias.zero_()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def audio_embeddings(self, input_features: torch.Tensor, audio_chunk_frames: torch.Tensor) -> torch.Tensor:
        """Every chunk's adaptor outputs, concatenated in prompt order: [n_patches, hidden]. Chunks are
        encoded as one padded batch with their lengths, which the project's model makes equal to encoding
        each alone (what the vLLM plugin does)."""
        sizes = [int(f) for f in audio_chunk_frames.reshape(-1)]
        if sum(sizes) > input_features.shape[0]:
            raise ValueError(f"audio_chunk_frames sum to {sum(sizes)} but input_features has {input_features.shape[0]} frames")
        dtype = self.encoder.conv1.weight.dtype
        chunks = torch.split(input_features[: sum(sizes)].to(dtype), sizes)
        mel = pad_sequence(list(chunks), batch_first=True).transpose(1, 2)  # [n, n_mels, T]
        lens = torch.tensor(sizes, device=mel.device)
        out = ProjectModel.encode_audio(self, mel, lens)  # type: ignore[arg-type]
        n = audio_token_lengths(lens)
        return torch.cat([out[i, : int(n[i])] for i in range(len(sizes))])

    def backbone_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        input_features: torch.Tensor | None,
        audio_chunk_frames: torch.Tensor | None,
    ) -> torch.Tensor:
        audio = None
        if input_features is not None and input_features.numel():
            if audio_chunk_frames is None:
                raise ValueError("input_features needs audio_chunk_frames (frames per audio chunk)")
            if self.audio_patch_token_id is None:
                raise ValueError(f"the id of {AUDIO_PATCH} is unknown: set config.audio_patch_token_id")
            audio = self.audio_embeddings(input_features, audio_chunk_frames)
        embeds = ProjectModel.embed(self, input_ids, audio, self.audio_patch_token_id)  # type: ignore[arg-type]
        out = self.model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.last_hidden_state


class StepAudio2ForCausalLMHF(StepAudio2PreTrainedModel):
    """The verl actor (and reference policy): logits over the vocabulary for every position."""

    def __init__(self, config: StepAudio2Config) -> None:
        super().__init__(config)
        self._build_backbone(config)
        self.lm_head = self._lm_head_from_core
        del self._lm_head_from_core
        self.post_init()

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """The official layout, served as is by the vLLM plugin and the TorchEngine: transformers writes
        this class's name into ``architectures``; the checkpoint must declare the official one."""
        super().save_pretrained(save_directory, *args, **kwargs)
        self.config.architectures = [ARCHITECTURE]
        self.config.save_pretrained(save_directory)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_chunk_frames: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **_: Any,  # use_cache, return_dict, ...: a full-sequence forward has no cache to use
    ) -> CausalLMOutputWithPast:
        hidden = self.backbone_hidden(input_ids, attention_mask, position_ids, input_features, audio_chunk_frames)
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutputWithPast(loss=loss, logits=logits)


class StepAudio2ForTokenClassification(StepAudio2PreTrainedModel):
    """The verl critic: the same backbone and a fresh ``score`` head, one value per token (num_labels=1).

    Loaded from an actor checkpoint, ``lm_head.weight`` is unused and ``score.*`` is newly initialised,
    as with transformers' own ``Qwen2ForTokenClassification``."""

    _keys_to_ignore_on_load_unexpected = [r"^lm_head\."]  # noqa: RUF012 - transformers API
    _fresh_prefixes = ("score.",)

    def __init__(self, config: StepAudio2Config) -> None:
        super().__init__(config)
        self._build_backbone(config)
        del self._lm_head_from_core
        self.num_labels = config.num_labels  # verl sets 1
        self.score = nn.Linear(config.text_config.hidden_size, self.num_labels)
        self.score._is_value_head = True  # type: ignore[assignment]
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        audio_chunk_frames: torch.Tensor | None = None,
        **_: Any,
    ) -> TokenClassifierOutput:
        hidden = self.backbone_hidden(input_ids, attention_mask, position_ids, input_features, audio_chunk_frames)
        return TokenClassifierOutput(logits=self.score(hidden))
