"""``step_audio_2`` as a transformers config class, so vLLM reads Step-Audio-R1 checkpoints without
``trust_remote_code``.

The official ``config.json`` nests the decoder under ``text_config`` and the encoder under
``audio_encoder_config``; some third-party copies put the decoder keys at the top level (the flat layout).
Both go through :meth:`stepaudio_rt.model.config.StepAudio2Config.from_dict`, the parser the TorchEngine
uses, so the two engines can never disagree about a checkpoint's shapes. This module needs only
transformers: it is importable (and tested) without vLLM.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig, Qwen2Config

from stepaudio_rt.model.config import MODEL_TYPE, REAL_EOS_TOKEN_IDS, AudioEncoderConfig
from stepaudio_rt.model.config import StepAudio2Config as ProjectConfig

ENCODER_MODEL_TYPE = "step_audio_2_encoder"
# Top-level keys of the nested layout; everything else at the top of a flat file is a decoder key.
_NON_TEXT_KEYS = {
    "architectures", "model_type", "auto_map", "audio_encoder_config", "text_config", "transformers_version",
    "max_window_layers", "torch_dtype", "dtype", "_name_or_path", "name_or_path", "return_dict",
}  # fmt: skip


def nest_flat_layout(data: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json`` dict in the nested layout, whichever layout it was written in."""
    if "text_config" in data:
        return data
    text = {k: v for k, v in data.items() if k not in _NON_TEXT_KEYS}
    dtype = data.get("torch_dtype") or data.get("dtype")
    if dtype is not None:  # one dtype for the whole file: the decoder's too
        text["torch_dtype"] = dtype
    return {**{k: v for k, v in data.items() if k in _NON_TEXT_KEYS}, "text_config": text}


class StepAudio2EncoderConfig(PretrainedConfig):
    """The Whisper-style encoder + adaptor keys (``audio_encoder_config``)."""

    model_type = ENCODER_MODEL_TYPE

    def __init__(self, **kwargs: Any) -> None:
        enc = AudioEncoderConfig.from_dict(kwargs)
        for key, value in enc.__dict__.items():
            kwargs.pop(key, None)
            setattr(self, key, value)
        super().__init__(**kwargs)

    def as_project_config(self) -> AudioEncoderConfig:
        return AudioEncoderConfig.from_dict(self.__dict__)


class StepAudio2Config(PretrainedConfig):
    """``model_type: step_audio_2``: a Qwen2 ``text_config`` plus an ``audio_encoder_config``."""

    model_type = MODEL_TYPE
    sub_configs = {"text_config": Qwen2Config, "audio_encoder_config": StepAudio2EncoderConfig}  # noqa: RUF012

    def __init__(
        self,
        text_config: dict[str, Any] | Qwen2Config | None = None,
        audio_encoder_config: dict[str, Any] | StepAudio2EncoderConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(text_config, PretrainedConfig):
            text_config = text_config.to_dict()
        if isinstance(audio_encoder_config, PretrainedConfig):
            audio_encoder_config = audio_encoder_config.to_dict()
        if text_config is None and "hidden_size" in kwargs:  # the flat layout
            nested = nest_flat_layout(kwargs)
            text_config = nested["text_config"]
            kwargs = {k: v for k, v in kwargs.items() if k not in text_config}
        # No arguments: transformers builds a default instance (to diff against when saving).
        text = dict(text_config or {})
        audio = dict(audio_encoder_config or {"llm_dim": text.get("hidden_size", Qwen2Config().hidden_size)})
        raw = {"architectures": ["StepAudio2ForCausalLM"], "text_config": text, "audio_encoder_config": audio}
        parsed = ProjectConfig.from_dict(raw)
        if parsed.text.vocab_size > REAL_EOS_TOKEN_IDS[-1]:
            # The real vocabulary: end of sequence on <|endoftext|>, <|im_end|> and <|EOT|>, as StepFun's
            # vLLM config forces, so a request without stop_token_ids still ends at the end of the turn.
            parsed.text.eos_token_id = list(REAL_EOS_TOKEN_IDS)
        self.text_config = parsed.text
        self.audio_encoder_config = StepAudio2EncoderConfig(**parsed.audio.to_dict())
        kwargs.setdefault("architectures", ["StepAudio2ForCausalLM"])
        # vLLM sizes the KV cache and the vocabulary from the text config; mirror the keys it may read
        # from the top-level config so both views agree.
        for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        self.use_sliding_window = False

    def get_text_config(self, *args: Any, **kwargs: Any) -> Qwen2Config:
        return self.text_config

    def to_project_config(self) -> ProjectConfig:
        """The project's own config object (what the TorchEngine builds its modules from)."""
        return ProjectConfig(text=self.text_config, audio=self.audio_encoder_config.as_project_config())
