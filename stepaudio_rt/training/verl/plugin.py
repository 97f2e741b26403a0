"""verl plugin (entry point ``verl.plugins``): gives Step-Audio-R1 checkpoints their audio processor in verl.

verl builds every processor through ``verl.utils.hf_processor``, which accepts only a fixed list of
processor class names (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, GLM-4V, Mllama, Gemma4 in 0.9.1) and returns None
for any other, so the dataset, the agent loop and the workers would treat audio prompts as plain text.
``import verl`` loads the ``verl.plugins`` entry points of installed packages in every process it runs in
(driver and Ray workers; ``VERL_USE_EXTERNAL_PLUGINS``, default ``auto``), before verl's trainer and
worker modules are imported. This module then:

- registers the checkpoint's config and HF classes (:mod:`~stepaudio_rt.training.verl.registration`);
- wraps ``hf_processor``: a checkpoint whose ``model_type`` is Step-Audio's gets
  :class:`~stepaudio_rt.training.verl.hf_processor.StepAudio2Processor` (with ``processor.config``, as
  verl sets it for its own processors); every other model goes to verl's function unchanged.

The wrapper replaces the name wherever verl exposes it (``verl.utils``, ``verl.utils.tokenizer`` and any
``verl.*`` module that already imported it), so later ``from verl.utils import hf_processor`` get it too.
Nothing in verl is edited; without this package installed verl behaves as shipped.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from stepaudio_rt.model.config import MODEL_TYPE


def _step_audio_config(name_or_path: Any, kwargs: dict[str, Any]) -> Any | None:
    """The checkpoint's config when it is a Step-Audio checkpoint, else None (also when it has no
    readable config: verl's own function then reports what is wrong)."""
    from transformers import AutoConfig

    config_kwargs = {k: v for k, v in kwargs.items() if k in ("trust_remote_code", "revision", "token")}
    try:
        config = AutoConfig.from_pretrained(name_or_path, **config_kwargs)
    except (OSError, ValueError):
        return None
    return config if getattr(config, "model_type", None) == MODEL_TYPE else None


def with_step_audio(verl_hf_processor: Callable[..., Any]) -> Callable[..., Any]:
    """``verl_hf_processor`` that also knows Step-Audio checkpoints."""
    if getattr(verl_hf_processor, "_step_audio", False):
        return verl_hf_processor  # already wrapped (the plugin loaded twice)

    @functools.wraps(verl_hf_processor)
    def hf_processor(name_or_path: Any, **kwargs: Any) -> Any:
        config = _step_audio_config(name_or_path, kwargs)
        if config is None:
            return verl_hf_processor(name_or_path, **kwargs)
        from stepaudio_rt.training.verl.hf_processor import StepAudio2Processor

        processor = StepAudio2Processor.from_pretrained(name_or_path)
        processor.config = config
        return processor

    hf_processor._step_audio = True  # type: ignore[attr-defined]
    return hf_processor


def install() -> None:
    """Register the classes and put the wrapped ``hf_processor`` wherever verl exposes the name."""
    import verl.utils.tokenizer.tokenizer as verl_tokenizer

    from stepaudio_rt.training.verl import registration  # noqa: F401 (the import registers)

    original = verl_tokenizer.hf_processor
    wrapped = with_step_audio(original)
    for name, module in list(sys.modules.items()):
        if (name == "verl" or name.startswith("verl.")) and getattr(module, "hf_processor", None) is original:
            module.hf_processor = wrapped


install()  # verl loads the entry point by importing this module
