"""The parts of the vLLM integration that need no vLLM: the ``step_audio_2`` config class, the R1 chat
template, the ``--engine vllm`` flags, and the rule that nothing else imports vLLM."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from transformers import AutoConfig

from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG
from stepaudio_rt.model.prompt import AudioPart, Message, audio_block, render_prompt
from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.model.tokenizer import AUDIO_PATCH, StepAudioTokenizer
from stepaudio_rt.server.__main__ import parse_args
from stepaudio_rt.vllm_plugin import CHAT_TEMPLATE
from stepaudio_rt.vllm_plugin.hf_config import StepAudio2Config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    AutoConfig.register("step_audio_2", StepAudio2Config, exist_ok=True)


def _load(tmp_path: Path, data: dict) -> StepAudio2Config:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return AutoConfig.from_pretrained(tmp_path, trust_remote_code=False)


def test_official_nested_config_loads_without_remote_code(tmp_path: Path) -> None:
    cfg = _load(tmp_path, STEP_AUDIO_R1_CONFIG)  # carries the official auto_map: must not be followed
    assert isinstance(cfg, StepAudio2Config)
    t = cfg.get_text_config()
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (5120, 64, 40, 8)
    assert (t.vocab_size, t.max_position_embeddings, t.architectures) == (158720, 65536, ["Qwen2ForCausalLM"])
    assert t.eos_token_id == [151643, 151645, 151665]  # as StepFun's vLLM config forces for R1
    a = cfg.audio_encoder_config
    assert (a.n_mels, a.n_audio_state, a.n_audio_layer, a.llm_dim, a.adapter_hidden_size) == (128, 1280, 32, 5120, 2048)
    cfg.save_pretrained(tmp_path / "again")  # round trip through transformers' own serialisation
    again = AutoConfig.from_pretrained(tmp_path / "again")
    assert again.get_text_config().to_dict() == t.to_dict() and again.audio_encoder_config.n_audio_head == 20


def test_flat_layout_reads_the_same(tmp_path: Path) -> None:
    flat = {k: v for k, v in copy.deepcopy(STEP_AUDIO_R1_CONFIG).items() if k != "text_config"}
    flat.update(STEP_AUDIO_R1_CONFIG["text_config"])
    cfg = _load(tmp_path, flat)
    (tmp_path / "nested").mkdir()
    nested = _load(tmp_path / "nested", STEP_AUDIO_R1_CONFIG)
    assert cfg.get_text_config().to_dict() == nested.get_text_config().to_dict()


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = copy.deepcopy(STEP_AUDIO_R1_CONFIG)
    bad["audio_encoder_config"]["llm_dim"] = 4096
    with pytest.raises(ValueError, match="llm_dim=4096 != hidden_size=5120"):
        _load(tmp_path, bad)


def _render(tok: StepAudioTokenizer, messages: list[dict], **kw: object) -> str:
    return tok.hf.apply_chat_template(messages, chat_template=CHAT_TEMPLATE.read_text(), tokenize=False, **kw)


def test_chat_template_renders_like_the_project_prompt(tmp_path: Path) -> None:
    """What `vllm serve` renders (before the processor expands each <audio_patch>) is the project's prompt."""
    tok = StepAudioTokenizer.from_pretrained(build_tiny_checkpoint(tmp_path / "ck"))
    n = 13
    audio = {"type": "audio"}  # how vLLM hands an input_audio part to an "openai"-format template
    cases = [
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Q?"}, audio]}],
         [Message("system", "Be brief."), Message("user", ["Q?", AudioPart(n)])]),
        ([{"role": "user", "content": [audio, {"type": "text", "text": "What did you hear?"}, audio]}],
         [Message("user", [AudioPart(n), "What did you hear?", AudioPart(n)])]),
        ([{"role": "user", "content": f"{AUDIO_PATCH}\nhello"}, {"role": "assistant", "content": "Hi."},
          {"role": "user", "content": "again"}],
         [Message("user", f"{AUDIO_PATCH}\nhello"), Message("assistant", "Hi."), Message("user", "again")]),
    ]  # fmt: skip
    for chat, project in cases:
        rendered = _render(tok, chat, add_generation_prompt=True).replace(AUDIO_PATCH, audio_block(n))
        expected = render_prompt(project).replace(audio_block(n), AUDIO_PATCH).replace(AUDIO_PATCH, audio_block(n))
        assert rendered == expected
    assert _render(tok, cases[0][0], add_generation_prompt=True).endswith("<|BOT|>assistant\n<think>\n")
    # the official client's way: a final assistant "<think>\n" continued, no generation prompt
    cont = _render(tok, [*cases[0][0], {"role": "assistant", "content": "<think>\n"}], continue_final_message=True)
    assert cont == _render(tok, cases[0][0], add_generation_prompt=True)


def test_engine_flags_reach_the_settings() -> None:
    s = parse_args(
        ["--engine", "vllm", "-tp", "4", "--pipeline-parallel-size", "2", "--data-parallel-size", "2",
         "--distributed-executor-backend", "ray", "--max-model-len", "16384", "--gpu-memory-utilization", "0.85",
         "--quantization", "fp8", "--kv-block-size", "32", "--enforce-eager"]
    )  # fmt: skip
    assert (s.engine, s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size) == ("vllm", 4, 2, 2)
    assert (s.distributed_executor_backend, s.max_model_len, s.gpu_memory_utilization) == ("ray", 16384, 0.85)
    assert (s.quantization, s.kv_block_size, s.enforce_eager) == ("fp8", 32, True)
    assert parse_args([]).engine == "torch"
    with pytest.raises(SystemExit):
        parse_args(["--engine", "tgi"])


def test_only_the_plugin_and_the_engine_module_import_vllm() -> None:
    allowed = {ROOT / "stepaudio_rt" / "model" / "vllm_engine.py"}
    pattern = re.compile(r"^\s*(from vllm\b|import vllm\b)", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "stepaudio_rt").rglob("*.py")
        if p not in allowed and "vllm_plugin" not in p.parts and pattern.search(p.read_text())
    ]
    assert offenders == []
