"""The verl plugin (training/verl/plugin.py): after ``import verl``, verl's own ``hf_processor`` gives a
Step-Audio checkpoint its audio processor, and verl's dataset code turns a prompt with audio into the
expanded token ids and mel features the actor takes (verl 0.9.1 shipped returns None for our processor)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import verl  # noqa: F401 (`make install-dev` installs it; the import loads the plugin)

from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.training.data.tasks import Sample
from stepaudio_rt.training.verl import dataset as ds
from stepaudio_rt.training.verl.hf_processor import StepAudio2Processor, clip_patch_counts


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("verl_plugin") / "tiny")


def test_import_verl_loads_the_plugin_everywhere_verl_exposes_hf_processor() -> None:
    import verl.utils
    import verl.utils.tokenizer
    import verl.workers.config.model as worker_model_config  # imported after the plugin ran

    for module in (verl.utils, verl.utils.tokenizer, worker_model_config):
        assert getattr(module.hf_processor, "_step_audio", False), module.__name__


def test_step_audio_checkpoint_gets_its_processor_and_other_models_go_to_verl(ckpt: Path, tmp_path: Path) -> None:
    from verl.utils import hf_processor

    processor = hf_processor(str(ckpt), trust_remote_code=False, use_fast=True)  # verl's own arguments
    assert isinstance(processor, StepAudio2Processor)
    assert processor.config.model_type == "step_audio_2"
    # a text-only Qwen2 directory: verl's function decides, as shipped (no multimodal processor)
    other = tmp_path / "qwen2"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}')
    assert hf_processor(str(other)) is None


def test_verls_dataset_expands_the_audio_of_a_parquet_row(ckpt: Path, tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils import hf_processor
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    seconds = 0.5
    n = round(seconds * 16000)
    clip = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000)).astype(np.float32)
    samples = [
        Sample("beep_count", clip, "How many beeps do you hear?", "", "I hear 3 beeps.", "3", {}),
        Sample("text_arithmetic", None, "What is 12 plus 7?", "", "12 plus 7 is 19.", "19", {}),
    ]
    path = ds.write_rl_parquet(samples, tmp_path / "train.parquet", "train", "bytes")
    processor = hf_processor(str(ckpt))
    # the overlong-prompt filter forks a worker; torch already ran threads in this test process, and a
    # forked child of such a process can hang in torch (the recipe's driver has not, see README)
    config = OmegaConf.create({"max_prompt_length": 512, "cache_dir": str(tmp_path / "cache"),
                               "filter_overlong_prompts": False})
    dataset = RLHFDataset(str(path), processor.tokenizer, config, processor=processor)
    assert len(dataset) == 2
    messages = dataset[0]["raw_prompt"]
    images, videos, audios = asyncio.run(
        RLHFDataset.process_multi_modal_info(messages, image_patch_size=14, config=config)
    )
    assert images is None and videos is None and len(audios) == 1
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = build_multimodal_processor_inputs(
        processor, text=[prompt], images=images, videos=videos, audio=audios, mm_processor_kwargs={}
    )
    patches = int((inputs["input_ids"][0] == processor.audio_token_id).sum())
    assert patches == sum(clip_patch_counts(n)) > 0  # expanded exactly as the vLLM plugin expands it
    frames, mels = inputs["input_features"].shape  # every chunk's mel frames, one after the other
    assert mels == processor.n_mels and inputs["audio_chunk_frames"].tolist() == [frames]
    # the text-only row stays text
    text_messages = dataset[1]["raw_prompt"]
    assert asyncio.run(RLHFDataset.process_multi_modal_info(text_messages, image_patch_size=14, config=config))[2] is None
