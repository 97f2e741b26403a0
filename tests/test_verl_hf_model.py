"""The HF actor, critic and processor verl's FSDP workers load for Step-Audio-R1 (training/verl/hf_model.py,
hf_processor.py): loaded through transformers' Auto classes after the recipe's registration, on a tiny
official-layout checkpoint, against the project's own model and the vLLM plugin's token counts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoProcessor

from stepaudio_rt.model.audio_frontend import (
    audio_token_count,
    log_mel_spectrogram,
    mel_frame_count,
    split_audio,
)
from stepaudio_rt.model.checkpoint import CheckpointError, load_checkpoint
from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.training.verl import registration
from stepaudio_rt.training.verl.hf_model import StepAudio2ForCausalLMHF, StepAudio2ForTokenClassification
from stepaudio_rt.training.verl.hf_processor import StepAudio2Processor, clip_patch_counts


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    registration.register()
    registration.register_models()
    return build_tiny_checkpoint(tmp_path_factory.mktemp("verl_hf") / "tiny")


def _tone(seconds: float, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    n = round(seconds * 16000)
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / 16000) + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _messages() -> list[dict]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": [{"type": "text", "text": "How many beeps?"}, {"type": "audio", "audio": "x"}]},
    ]


def _inputs(ckpt: Path, clips: list) -> dict:
    processor = AutoProcessor.from_pretrained(ckpt)
    prompt = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    return processor(text=[prompt], audio=clips, return_tensors="pt")


def test_actor_loads_through_auto_class_with_every_tensor(ckpt: Path) -> None:
    model, info = AutoModelForCausalLM.from_pretrained(ckpt, output_loading_info=True)
    assert isinstance(model, StepAudio2ForCausalLMHF)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    reference = load_checkpoint(ckpt, progress=False).model
    state = model.state_dict()
    assert set(state) == set(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_actor_logits_equal_the_project_model_on_a_prompt_with_audio(ckpt: Path) -> None:
    clips = [_tone(1.3), _tone(0.7, 880.0, seed=1)]
    processor = AutoProcessor.from_pretrained(ckpt)
    messages = _messages()
    messages[1]["content"].append({"type": "audio", "audio": "y"})
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt], audio=clips, return_tensors="pt")
    actor = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    with torch.no_grad():
        out = actor(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=torch.arange(batch["input_ids"].shape[1])[None],
            use_cache=False,
            input_features=batch["input_features"],
            audio_chunk_frames=batch["audio_chunk_frames"],
        )

    loaded = load_checkpoint(ckpt, progress=False)
    ref_model, tok = loaded.model, loaded.tokenizer
    # The reference: each clip encoded alone, as the TorchEngine and the vLLM plugin do.
    audio = torch.cat([ref_model.encode_audio(log_mel_spectrogram(c, n_mels=80)[None])[0] for c in clips])
    with torch.no_grad():
        ref_logits, _ = ref_model(batch["input_ids"], batch["attention_mask"], audio, tok.ids.audio_patch)
    assert out.logits.shape == ref_logits.shape
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-4, rtol=1e-4)
    # The audio really reaches the logits: another clip changes them.
    other = processor(text=[prompt], audio=[_tone(1.3, 220.0), clips[1]], return_tensors="pt")
    with torch.no_grad():
        moved = actor(**{k: other[k] for k in ("input_ids", "attention_mask", "input_features", "audio_chunk_frames")})
    assert not torch.allclose(moved.logits, out.logits, atol=1e-3)


def test_actor_trains_with_a_loss_and_gradients_into_the_adaptor(ckpt: Path) -> None:
    batch = _inputs(ckpt, [_tone(0.9)])
    actor = AutoModelForCausalLM.from_pretrained(ckpt).train()
    actor.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # as verl does
    assert actor.model.gradient_checkpointing
    out = actor(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert actor.adapter.linear2.weight.grad is not None and actor.adapter.linear2.weight.grad.abs().sum() > 0


def test_critic_returns_one_value_per_token_on_the_same_backbone(ckpt: Path) -> None:
    critic, info = AutoModelForTokenClassification.from_pretrained(ckpt, num_labels=1, output_loading_info=True)
    assert isinstance(critic, StepAudio2ForTokenClassification)
    assert info["missing_keys"] == {"score.weight", "score.bias"}  # the fresh value head, nothing else
    actor = AutoModelForCausalLM.from_pretrained(ckpt)
    actor_state = actor.state_dict()
    for name, tensor in critic.state_dict().items():
        if not name.startswith("score."):
            assert torch.equal(tensor, actor_state[name]), name
    b1 = _inputs(ckpt, [_tone(0.8)])
    b2 = _inputs(ckpt, [_tone(1.5, 660.0)])
    width = max(b1["input_ids"].shape[1], b2["input_ids"].shape[1])

    def left_pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (width - t.shape[1], 0))

    ids = torch.cat([left_pad(b1["input_ids"]), left_pad(b2["input_ids"])])
    mask = torch.cat([left_pad(b1["attention_mask"]), left_pad(b2["attention_mask"])])
    # merged as verl's actor and critic merge a micro-batch's multi_modal_inputs
    from verl.utils.model import extract_multi_modal_inputs

    mm = [{k: v for k, v in b.items() if k not in ("input_ids", "attention_mask")} for b in (b1, b2)]
    merged = extract_multi_modal_inputs(mm)
    feats, frames = merged["input_features"], merged["audio_chunk_frames"]
    assert feats.shape[0] == b1["input_features"].shape[0] + b2["input_features"].shape[0]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = critic(input_ids=ids, attention_mask=mask, position_ids=position_ids, input_features=feats,
                     audio_chunk_frames=frames, use_cache=False)  # fmt: skip
    values = out.logits.squeeze(-1)
    assert values.shape == ids.shape
    assert torch.isfinite(values).all()


@pytest.mark.parametrize("seconds", [0.01, 0.37, 1.0, 2.5, 12.34, 25.0, 25.01, 31.7])
def test_processor_patch_counts_equal_the_vllm_plugins(ckpt: Path, seconds: float) -> None:
    processor = StepAudio2Processor.from_pretrained(ckpt)
    wav = _tone(seconds)
    ids, mels = processor.expand("<audio_patch>", [wav])
    # The plugin's replacement (vllm_plugin/model.py _get_prompt_updates): per 25 s chunk,
    # audio_token_count(mel_frame_count(chunk)) patches between <audio_start> and <audio_end>.
    plugin = [audio_token_count(mel_frame_count(len(c))) for c in split_audio(wav)]
    t = processor.step_tokenizer.ids
    expected: list[int] = []
    for n in plugin:
        expected += [t.audio_start, *([t.audio_patch] * n), t.audio_end]
    assert ids == expected
    assert clip_patch_counts(len(wav)) == plugin
    assert [m.shape[-1] for m in mels] == [mel_frame_count(len(c)) for c in split_audio(wav)]


def test_processor_takes_flac_bytes_as_the_verl_parquet_stores_them(ckpt: Path) -> None:
    wav = _tone(1.1)
    buf = io.BytesIO()
    sf.write(buf, wav, 16000, format="FLAC", subtype="PCM_16")
    from_bytes = _inputs(ckpt, [{"audio": buf.getvalue(), "sampling_rate": 16000}])
    from_array = _inputs(ckpt, [wav])
    assert torch.equal(from_bytes["input_ids"], from_array["input_ids"])
    torch.testing.assert_close(from_bytes["input_features"], from_array["input_features"], atol=2e-2, rtol=0)


def test_clips_and_placeholders_that_disagree_are_errors(ckpt: Path) -> None:
    processor = StepAudio2Processor.from_pretrained(ckpt)
    with pytest.raises(ValueError, match="2 <audio_patch> placeholder"):
        processor(text=["one <audio_patch> two <audio_patch>"], audio=[_tone(0.5)])
    # ids without audio tokens (verl's feature-only recompute) cannot reach the model with features
    features_only = processor(text=["no audio here"], audio=[_tone(0.5)])
    actor = AutoModelForCausalLM.from_pretrained(ckpt)
    with pytest.raises(ValueError, match="0 <audio_patch> tokens but"):
        actor(**features_only)


def test_checkpoint_missing_a_tensor_is_reported_by_name(ckpt: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in ckpt.iterdir():
        if f.name != "model.safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    state = load_file(str(ckpt / "model.safetensors"))
    del state["adapter.linear1.weight"]
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\): adapter\.linear1\.weight"):
        AutoModelForCausalLM.from_pretrained(broken)
    with pytest.raises(CheckpointError, match=r"adapter\.linear1\.weight"):
        AutoModelForTokenClassification.from_pretrained(broken, num_labels=1)


def test_verl_picks_the_registered_classes_with_its_own_loading_arguments(ckpt: Path) -> None:
    from transformers import AutoConfig
    from verl.utils.model import get_hf_auto_model_class

    config = AutoConfig.from_pretrained(ckpt)
    assert get_hf_auto_model_class(config) is AutoModelForCausalLM
    # the critic as verl's load_valuehead_model builds it (sdpa here: no flash-attn on a CPU)
    critic_config = AutoConfig.from_pretrained(ckpt, num_labels=1)
    critic = AutoModelForTokenClassification.from_pretrained(
        ckpt, torch_dtype=torch.bfloat16, config=critic_config, attn_implementation="sdpa"
    )
    assert critic.score.out_features == 1 and critic.score.weight.dtype == torch.bfloat16
    assert critic.model.config._attn_implementation == "sdpa"
    batch = _inputs(ckpt, [_tone(0.6)])
    with torch.no_grad():
        values = critic(**batch, use_cache=False).logits  # bf16 weights, float32 mel from the processor
    assert values.dtype == torch.bfloat16 and values.shape == (*batch["input_ids"].shape, 1)
    # verl's FSDP wrap policy wraps the classes named in _no_split_modules (looked up by class name in the
    # model; verl.utils.fsdp_utils itself needs peft, which this project does not install)
    present = {type(m).__name__ for m in critic.modules()}
    assert set(critic._no_split_modules) <= present


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_processor_features_survive_verls_recompute_from_rollout_ids(ckpt: Path, skip_special_tokens: bool) -> None:
    # verl's agent loop rebuilds multi_modal_inputs by decoding the expanded prompt ids and calling the
    # processor again with the same clips; the features must come out the same.
    clips = [_tone(27.0)]  # two chunks
    first = _inputs(ckpt, clips)
    processor = StepAudio2Processor.from_pretrained(ckpt)
    text = processor.tokenizer.decode(first["input_ids"][0].tolist(), skip_special_tokens=skip_special_tokens)
    again = processor(text=[text], audio=clips, return_tensors="pt")
    assert torch.equal(again["input_features"], first["input_features"])
    assert torch.equal(again["audio_chunk_frames"], first["audio_chunk_frames"])
    if not skip_special_tokens:
        assert torch.equal(again["input_ids"], first["input_ids"])
        with pytest.raises(ValueError, match="audio clips need"):
            processor(text=[text], audio=[_tone(3.0)])


def test_a_saved_actor_is_an_official_checkpoint_again(ckpt: Path, tmp_path: Path) -> None:
    # what verl writes at a checkpoint (model + processing class) must load in the TorchEngine and vLLM
    actor = AutoModelForCausalLM.from_pretrained(ckpt)
    with torch.no_grad():
        actor.adapter.linear2.bias.add_(0.5)  # a "trained" weight
    out = tmp_path / "saved"
    actor.save_pretrained(out)
    StepAudio2Processor.from_pretrained(ckpt).save_pretrained(out)
    loaded = load_checkpoint(out, progress=False)
    assert loaded.config.to_dict()["architectures"] == ["StepAudio2ForCausalLM"]
    for name, tensor in actor.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert isinstance(AutoModelForCausalLM.from_pretrained(out), StepAudio2ForCausalLMHF)
