"""``actor_rollout_ref.model.external_lib`` of the verl recipe: imported by verl in every worker.

What it registers: the checkpoint's config class (``AutoConfig`` for ``model_type`` "step_audio_2", the
class the vLLM plugin serves with), so verl's workers can read a Step-Audio-R1 ``config.json``; and
(``register_models``) the HF classes of ``hf_model`` / ``hf_processor``: the actor for
``AutoModelForCausalLM`` (takes ``input_features`` + ``audio_chunk_frames`` from ``multi_modal_inputs``),
the one-value-per-token critic for ``AutoModelForTokenClassification``, and the processor for
``AutoProcessor``, whose ``<audio_patch>`` count equals the vLLM plugin's for every clip. The rollout side
needs nothing more: vLLM loads the model through the project's plugin (entry point
``vllm.general_plugins``), in every vLLM process.

verl 0.9.1's ``hf_processor`` knows only a fixed list of processor classes; the package's ``verl.plugins``
entry point (:mod:`~stepaudio_rt.training.verl.plugin`) makes it return ours. Nothing here has run on GPUs
or across nodes.
"""

from __future__ import annotations


def register() -> None:
    from transformers import AutoConfig

    from stepaudio_rt.model.config import MODEL_TYPE
    from stepaudio_rt.vllm_plugin.hf_config import StepAudio2Config, StepAudio2EncoderConfig

    AutoConfig.register(MODEL_TYPE, StepAudio2Config, exist_ok=True)
    AutoConfig.register(StepAudio2EncoderConfig.model_type, StepAudio2EncoderConfig, exist_ok=True)


register()  # verl imports the module by name; the import is the registration


def register_models() -> None:
    """The HF actor, critic and processor verl's FSDP workers load (``training/verl/hf_model.py``)."""
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoProcessor

    from stepaudio_rt.training.verl.hf_model import StepAudio2ForCausalLMHF, StepAudio2ForTokenClassification
    from stepaudio_rt.training.verl.hf_processor import StepAudio2Processor
    from stepaudio_rt.vllm_plugin.hf_config import StepAudio2Config

    AutoModelForCausalLM.register(StepAudio2Config, StepAudio2ForCausalLMHF, exist_ok=True)
    AutoModelForTokenClassification.register(StepAudio2Config, StepAudio2ForTokenClassification, exist_ok=True)
    AutoProcessor.register(StepAudio2Config, StepAudio2Processor, exist_ok=True)


register_models()
