"""Load and save ``StepAudio2ForCausalLM`` checkpoints in the official HF layout.

A checkpoint is a directory (or a hub id, downloaded with ``huggingface_hub``) holding ``config.json``,
``model.safetensors`` or sharded ``model-XXXXX-of-YYYYY.safetensors`` + ``model.safetensors.index.json``,
the tokenizer files and optionally ``generation_config.json``. Loading is strict: every parameter under
``encoder.*``, ``adapter.*``, ``model.*`` and ``lm_head.weight`` must be present with its exact shape
(as vLLM's loader requires); the error names the tensor. Tensors are memory-mapped with ``safe_open``
and moved one at a time, so peak memory stays near the model's own size.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding

from stepaudio_rt.model.config import StepAudio2Config
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.tokenizer import StepAudioTokenizer

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]


class CheckpointError(ValueError):
    """A checkpoint that does not match the model: missing, unexpected or misshapen tensors."""


@dataclass
class LoadedCheckpoint:
    model: StepAudio2ForCausalLM
    tokenizer: StepAudioTokenizer
    config: StepAudio2Config
    path: Path
    generation_config: dict


def resolve_checkpoint_dir(path_or_id: str | Path) -> Path:
    """A local directory as is; anything else is treated as a Hugging Face hub id and downloaded."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; a checkpoint is a directory with config.json")
    repo_id = str(path_or_id)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise CheckpointError(f"{path_or_id}: no such checkpoint directory (and not a hub id like 'org/name')")
    from huggingface_hub import snapshot_download  # imported lazily: only the hub path needs it

    log.info("downloading %s from the Hugging Face hub", repo_id)
    return Path(snapshot_download(repo_id, allow_patterns=HUB_PATTERNS))


def tensor_files(ckpt_dir: Path) -> dict[str, Path]:
    """Map tensor name -> safetensors file, from the index or the single file."""
    index = ckpt_dir / INDEX_FILE
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: ckpt_dir / fname for name, fname in weight_map.items()}
    single = ckpt_dir / SINGLE_FILE
    if not single.exists():
        raise CheckpointError(f"{ckpt_dir} has neither {INDEX_FILE} nor {SINGLE_FILE}")
    with safe_open(str(single), framework="pt") as f:
        return {name: single for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__


def iter_tensors(files: dict[str, Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) grouped by file so each file is opened (memory-mapped) once."""
    by_file: dict[Path, list[str]] = {}
    for name, fpath in files.items():
        by_file.setdefault(fpath, []).append(name)
    for fpath, names in by_file.items():
        with safe_open(str(fpath), framework="pt") as f:
            for name in names:
                yield name, f.get_tensor(name)


def expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Every persistent tensor the checkpoint must hold (non-persistent buffers like RoPE excluded)."""
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_tensor_names(expected: dict[str, tuple[int, ...]], files: dict[str, Path]) -> None:
    missing = sorted(set(expected) - set(files))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise CheckpointError(f"checkpoint is missing tensor(s): {', '.join(missing[:5])}{more}")
    unexpected = sorted(set(files) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 5} more)" if len(unexpected) > 5 else ""
        raise CheckpointError(f"checkpoint has unexpected tensor(s): {', '.join(unexpected[:5])}{more}")


def build_empty_model(config: StepAudio2Config) -> StepAudio2ForCausalLM:
    """The module tree with parameters on the meta device: no memory, no random init."""
    with torch.device("meta"):
        return StepAudio2ForCausalLM(config)


def load_checkpoint(
    path_or_id: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> LoadedCheckpoint:
    """Load model + tokenizer. ``dtype=None`` keeps float32 on CPU and the config's dtype elsewhere."""
    ckpt_dir = resolve_checkpoint_dir(path_or_id)
    config_path = ckpt_dir / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{ckpt_dir} has no config.json")
    config = StepAudio2Config.from_file(config_path)
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else getattr(torch, config.torch_dtype, torch.bfloat16)

    model = build_empty_model(config)
    expected = expected_shapes(model)
    files = tensor_files(ckpt_dir)
    check_tensor_names(expected, files)

    state: dict[str, torch.Tensor] = {}
    bar = tqdm(total=len(files), desc=f"loading {ckpt_dir.name}", unit="tensor", disable=not progress)
    for name, tensor in iter_tensors(files):
        if tuple(tensor.shape) != expected[name]:
            raise CheckpointError(f"tensor {name} has shape {tuple(tensor.shape)}, the config implies {expected[name]}")
        state[name] = tensor.to(device=device, dtype=dtype)
        bar.update()
    bar.close()
    model.load_state_dict(state, strict=True, assign=True)
    # RoPE tables are non-persistent buffers (not in the checkpoint): rebuild them on the real device.
    model.model.rotary_emb = Qwen2RotaryEmbedding(config=config.text).to(device)
    model.eval().requires_grad_(False)

    gen_path = ckpt_dir / "generation_config.json"
    generation_config = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    eos = generation_config.get("eos_token_id", [])
    extra_eos = tuple(eos if isinstance(eos, list) else [eos])
    tokenizer = StepAudioTokenizer.from_pretrained(ckpt_dir, extra_eos_ids=extra_eos)
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(f"tokenizer has {len(tokenizer)} tokens but the model vocabulary is {config.vocab_size}")
    return LoadedCheckpoint(model, tokenizer, config, ckpt_dir, generation_config)


def save_checkpoint(
    model: StepAudio2ForCausalLM,
    tokenizer: StepAudioTokenizer,
    out_dir: str | Path,
    max_shard_bytes: int = 2 * 1024**3,
    dtype: torch.dtype | None = None,
    generation_config: dict | None = None,
) -> Path:
    """Write the official layout: config.json, (sharded) safetensors + index, tokenizer, generation config."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # clone(): parameters may be views into fused tensors (TorchEngine), which safetensors refuses.
    state = {k: (v.to(dtype) if dtype else v).detach().cpu().clone() for k, v in model.state_dict().items()}
    config = model.config
    if dtype is not None:
        config.torch_dtype = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(out / SINGLE_FILE), metadata=meta)
    else:
        weight_map = {}
        for i, shard in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata=meta)
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.numel() * t.element_size() for t in state.values())
        (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))

    tokenizer.save_pretrained(out)
    gen = generation_config or {
        "eos_token_id": list(tokenizer.stop_token_ids),
        "pad_token_id": tokenizer.ids.endoftext,
        "temperature": 0.7,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "max_new_tokens": 32000,
    }
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return out


@dataclass
class CheckpointReport:
    path: Path
    config: StepAudio2Config
    parameters: dict[str, int]  # per top-level module
    tensors: int
    dtypes: dict[str, int]
    special_tokens: dict[str, int]
    problems: list[str]


def verify_checkpoint(path_or_id: str | Path, check_values: bool = True, progress: bool = True) -> CheckpointReport:
    """Check every tensor's name, shape and (optionally) finiteness without building the model in memory."""
    ckpt_dir = resolve_checkpoint_dir(path_or_id)
    config = StepAudio2Config.from_file(ckpt_dir / "config.json")
    expected = expected_shapes(build_empty_model(config))
    files = tensor_files(ckpt_dir)
    problems: list[str] = []
    try:
        check_tensor_names(expected, files)
    except CheckpointError as exc:
        problems.append(str(exc))
    params: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    bar = tqdm(total=len(files), desc="verifying", unit="tensor", disable=not progress)
    for name, tensor in iter_tensors(files):
        bar.update()
        dtypes[str(tensor.dtype).removeprefix("torch.")] = dtypes.get(str(tensor.dtype).removeprefix("torch."), 0) + 1
        params[name.split(".")[0]] = params.get(name.split(".")[0], 0) + tensor.numel()
        if name in expected and tuple(tensor.shape) != expected[name]:
            problems.append(f"tensor {name} has shape {tuple(tensor.shape)}, the config implies {expected[name]}")
        elif check_values and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            problems.append(f"tensor {name} holds NaN or Inf values")
    bar.close()
    special: dict[str, int] = {}
    try:
        tok = StepAudioTokenizer.from_pretrained(ckpt_dir)
        special = {name: getattr(tok.ids, name) for name in ("bot", "eot", "audio_start", "audio_end", "audio_patch")}
    except (ValueError, OSError) as exc:
        problems.append(f"tokenizer: {exc}")
    return CheckpointReport(ckpt_dir, config, params, len(files), dtypes, special, problems)
