"""The model: checkpoint layout and strict loading, numerical equivalence, prompt format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import Qwen2ForCausalLM

from stepaudio_rt.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG, StepAudio2Config
from stepaudio_rt.model.modeling import audio_token_lengths
from stepaudio_rt.model.prompt import AudioPart, Message, render_prompt, split_reasoning
from stepaudio_rt.model.testing import build_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


def test_official_config_parses_to_real_shapes() -> None:
    cfg = StepAudio2Config.from_dict(STEP_AUDIO_R1_CONFIG)
    assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.text.num_key_value_heads) == (5120, 64, 8)
    assert cfg.text.vocab_size == 158720 and cfg.text.use_sliding_window is False
    assert cfg.text.rope_parameters["rope_theta"] == 1e6
    assert (cfg.audio.n_mels, cfg.audio.n_audio_state, cfg.audio.adapter_hidden_size) == (128, 1280, 2048)
    # A round trip through our writer keeps every field the loader reads.
    again = StepAudio2Config.from_dict(cfg.to_dict())
    assert again.text.intermediate_size == 27648 and again.audio.n_audio_layer == 32


def test_config_rejects_flat_internal_layout() -> None:
    with pytest.raises(ValueError, match="text_config"):
        StepAudio2Config.from_dict({"architectures": ["StepAudio2ForCausalLM"], "hidden_size": 5120})


def test_checkpoint_layout_and_load(ckpt_dir: Path) -> None:
    names = {p.name for p in ckpt_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    config = json.loads((ckpt_dir / "config.json").read_text())
    assert config["architectures"] == ["StepAudio2ForCausalLM"]
    tensors = load_file(str(ckpt_dir / "model.safetensors"))
    assert "encoder.blocks.0.attn.key.weight" in tensors and "encoder.blocks.0.attn.key.bias" not in tensors
    assert {"adapter.linear2.weight", "lm_head.weight", "model.embed_tokens.weight"} <= set(tensors)
    ck = load_checkpoint(ckpt_dir, progress=False)
    for name, t in ck.model.state_dict().items():
        assert torch.equal(t, tensors[name]), name


def test_sharded_checkpoint_loads(ckpt_dir: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(ckpt_dir, progress=False)
    out = save_checkpoint(ck.model, ck.tokenizer, tmp_path / "sharded", max_shard_bytes=100_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    again = load_checkpoint(out, progress=False)
    assert torch.equal(again.model.lm_head.weight, ck.model.lm_head.weight)


@pytest.mark.parametrize("victim", ["encoder.blocks.1.attn.key.weight", "adapter.linear1.bias", "lm_head.weight"])
def test_missing_tensor_is_named(ckpt_dir: Path, tmp_path: Path, victim: str) -> None:
    broken = _copy_checkpoint(ckpt_dir, tmp_path)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors[victim]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=victim.replace(".", r"\.")):
        load_checkpoint(broken, progress=False)


def test_misshapen_tensor_is_named(ckpt_dir: Path, tmp_path: Path) -> None:
    broken = _copy_checkpoint(ckpt_dir, tmp_path)
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["model.layers.0.self_attn.q_proj.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.self_attn\.q_proj\.weight has shape \(3, 3\)"):
        load_checkpoint(broken, progress=False)


def test_missing_directory_is_clear(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        load_checkpoint(tmp_path / "nope" / "deeper" / "x", progress=False)


def _copy_checkpoint(src: Path, tmp: Path) -> Path:
    dst = tmp / "ckpt"
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_decoder_logits_equal_transformers_qwen2(ckpt_dir: Path) -> None:
    ck = load_checkpoint(ckpt_dir, progress=False)
    hf = Qwen2ForCausalLM(ck.config.text).eval()
    state = {k: v for k, v in ck.model.state_dict().items() if k.startswith(("model.", "lm_head."))}
    hf.load_state_dict(state, strict=True)
    ids = torch.randint(0, 400, (2, 23))
    with torch.no_grad():
        ours, _ = ck.model(ids)
        theirs = hf(ids).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def reference_encoder(sd: dict[str, torch.Tensor], mel: torch.Tensor, n_head: int, n_layers: int) -> torch.Tensor:
    """An independent functional Whisper-style encoder as described in the checkpoint reference."""
    x = F.gelu(F.conv1d(mel, sd["encoder.conv1.weight"], sd["encoder.conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, sd["encoder.conv2.weight"], sd["encoder.conv2.bias"], stride=2, padding=1))
    x = x.permute(0, 2, 1) + sd["encoder.positional_embedding.weight"][: x.shape[-1]]
    d = x.shape[-1]
    for i in range(n_layers):
        p = f"encoder.blocks.{i}."
        h = F.layer_norm(x, (d,), sd[p + "attn_ln.weight"], sd[p + "attn_ln.bias"])
        q = F.linear(h, sd[p + "attn.query.weight"], sd[p + "attn.query.bias"])
        k = F.linear(h, sd[p + "attn.key.weight"])  # no key bias
        v = F.linear(h, sd[p + "attn.value.weight"], sd[p + "attn.value.bias"])
        split = lambda t: t.view(t.shape[0], t.shape[1], n_head, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        att = torch.softmax((q @ k.transpose(-1, -2)) / (d // n_head) ** 0.5, dim=-1) @ v
        x = x + F.linear(att.transpose(1, 2).reshape(x.shape), sd[p + "attn.out.weight"], sd[p + "attn.out.bias"])
        h = F.layer_norm(x, (d,), sd[p + "mlp_ln.weight"], sd[p + "mlp_ln.bias"])
        h = F.linear(F.gelu(F.linear(h, sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"])), sd[p + "mlp.2.weight"], sd[p + "mlp.2.bias"])
        x = x + h
    x = F.avg_pool1d(x.transpose(1, 2), 2, 2).transpose(1, 2)
    return F.layer_norm(x, (d,), sd["encoder.after_norm.weight"], sd["encoder.after_norm.bias"])


def test_audio_encoder_equals_reference(ckpt_dir: Path) -> None:
    ck = load_checkpoint(ckpt_dir, progress=False)
    sd = ck.model.state_dict()
    a = ck.config.audio
    for frames in (202, 203, 52):
        mel = torch.randn(1, a.n_mels, frames)
        with torch.no_grad():
            ours = ck.model.encoder(mel)
            embeds = ck.model.encode_audio(mel)
        ref = reference_encoder(sd, mel, a.n_audio_head, a.n_audio_layer)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
        assert embeds.shape[1] == int(audio_token_lengths(torch.tensor(frames)))


def test_padded_encoder_batch_matches_single_clips(ckpt_dir: Path) -> None:
    ck = load_checkpoint(ckpt_dir, progress=False)
    a = ck.config.audio
    short, long = torch.randn(a.n_mels, 102), torch.randn(a.n_mels, 202)
    batch = torch.zeros(2, a.n_mels, 202)
    batch[0, :, :102], batch[1] = short, long
    with torch.no_grad():
        out = ck.model.encode_audio(batch, torch.tensor([102, 202]))
        alone = ck.model.encode_audio(short[None])
    n = alone.shape[1]
    torch.testing.assert_close(out[0, :n], alone[0], atol=1e-4, rtol=1e-4)


def test_prompt_format_matches_official_template() -> None:
    msgs = [
        Message("system", "You are helpful."),
        Message("user", ["Which is higher?", AudioPart(2)]),
        Message("assistant", "The first."),
        Message("user", [AudioPart(1), "And now?"]),
    ]
    p = render_prompt(msgs)
    assert p == (
        "<|BOT|>system\nYou are helpful.<|EOT|>"
        "<|BOT|>human\nWhich is higher?\n<audio_start><audio_patch><audio_patch><audio_end><|EOT|>"
        "<|BOT|>assistant\nThe first.<|EOT|>"
        "<|BOT|>human\n<audio_start><audio_patch><audio_end>And now?<|EOT|>"
        "<|BOT|>assistant\n<think>\n"
    )
    assert render_prompt(msgs[:1], think=False).endswith("<|BOT|>assistant\n<think>\n\n</think>\n")


def test_split_reasoning() -> None:
    assert split_reasoning("pitch is 210 Hz\n</think>\nIt is high.<|EOT|>") == ("pitch is 210 Hz", "It is high.")
    assert split_reasoning("still thinking") == ("still thinking", "")
    assert split_reasoning("<think>\n\n</think>\nHi", starts_in_think=False) == ("", "Hi")
