"""Load a CosyVoice2 checkpoint in the official layout (a local directory or a hub id).

Layout (as ``FunAudioLLM/CosyVoice2-0.5B`` ships it; what we read)::

    cosyvoice2.yaml             hyper-parameters (HyperPyYAML; read tolerantly, see config.py)
    llm.pt                      Qwen2LM state dict (llm_embedding, llm.model.*, llm_decoder, speech_embedding)
    flow.pt                     CausalMaskedDiffWithXvec state dict
    hift.pt                     HiFTGenerator state dict
    CosyVoice-BlankEN/          the Qwen2 config.json + tokenizer files (the weights come from llm.pt)
    spk2info.pt                 optional: saved speakers (voices), see voices.py

``campplus.onnx`` and ``speech_tokenizer_v2.onnx`` (making new zero-shot speakers from a recording) are not
used. Our modules mirror the upstream module tree, so loading is ``load_state_dict`` after a prefix fix; a
missing or mis-shaped tensor is an error that names it and the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Qwen2Config

from ..base import TTSUnavailableError
from .config import YAML_NAME, CosyVoiceConfig
from .flow import CausalMaskedDiffWithXvec
from .hift import HiFTGenerator
from .llm import Qwen2LM
from .voices import Voice, load_voices

__all__ = ["CosyVoice2Model", "CheckpointError", "load_cosyvoice2", "resolve_checkpoint", "DEFAULT_HUB_ID"]

log = logging.getLogger(__name__)

DEFAULT_HUB_ID = "FunAudioLLM/CosyVoice2-0.5B"
QWEN_DIR = "CosyVoice-BlankEN"
_REQUIRED = (YAML_NAME, "llm.pt", "flow.pt", "hift.pt", f"{QWEN_DIR}/config.json")
_HUB_PATTERNS = [YAML_NAME, "llm.pt", "flow.pt", "hift.pt", "spk2info.pt", f"{QWEN_DIR}/*"]


class CheckpointError(ValueError):
    """The checkpoint is incomplete or does not match the model (the message names the file and tensor)."""


@dataclass
class CosyVoice2Model:
    config: CosyVoiceConfig
    llm: Qwen2LM
    flow: CausalMaskedDiffWithXvec
    hift: HiFTGenerator
    tokenizer: PreTrainedTokenizerBase
    voices: dict[str, Voice]
    root: Path
    device: torch.device


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """A local checkpoint directory, or a hub id downloaded (or found in the cache when HF_HUB_OFFLINE=1)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise CheckpointError(f"CosyVoice2 checkpoint {text} is not a directory (nor a hub id 'org/name')")
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        return Path(snapshot_download(text, allow_patterns=_HUB_PATTERNS, local_files_only=offline))
    except Exception as exc:  # the hub client raises several types; the message says what to do
        hint = " (HF_HUB_OFFLINE is set: download it first or unset it)" if offline else ""
        raise TTSUnavailableError(
            f"cannot fetch CosyVoice2 checkpoint {text!r} from the hub{hint}: {exc}; or pass --tts-model DIR"
        ) from exc


def _load_into(module: nn.Module, path: Path, strip: tuple[str, ...] = ()) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable torch state dict ({exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    for prefix in strip:
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    expected = module.state_dict()
    # Torch's weight-norm compat hook renames old weight_g/weight_v keys while loading; compare on the new names.
    legacy = {k.replace(".weight_g", ".parametrizations.weight.original0")
              .replace(".weight_v", ".parametrizations.weight.original1"): k for k in state}
    missing = [k for k in expected if k not in legacy]
    tied = getattr(module, "tied_optional", set())
    missing = [k for k in missing if k not in tied]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{path.name}: missing tensor {missing[0]!r}{more}")
    for name, tensor in expected.items():
        got = state.get(legacy.get(name, name))
        if got is not None and tuple(got.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path.name}: tensor {name!r} has shape {tuple(got.shape)}, the config expects {tuple(tensor.shape)}"
            )
    unexpected = [k for k in legacy if k not in expected]
    if unexpected:
        log.info("%s: ignoring %d tensors the model does not use (e.g. %s)", path.name, len(unexpected), unexpected[0])
    module.load_state_dict(state, strict=False)


def load_cosyvoice2(path_or_id: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> CosyVoice2Model:
    root = resolve_checkpoint(path_or_id)
    for name in _REQUIRED:
        if not (root / name).is_file():
            raise CheckpointError(f"CosyVoice2 checkpoint {root} lacks {name} (official layout: {', '.join(_REQUIRED)})")
    cfg = CosyVoiceConfig.from_yaml(root / YAML_NAME)
    qwen = Qwen2Config.from_pretrained(root / QWEN_DIR)
    llm = Qwen2LM(cfg.lm, qwen)
    if getattr(qwen, "tie_word_embeddings", False):
        # A tied lm_head is the embedding itself; the speech LM never uses it, so a file may omit it.
        llm.tied_optional = {"llm.model.lm_head.weight"}  # type: ignore[attr-defined]
    _load_into(llm, root / "llm.pt")
    flow = CausalMaskedDiffWithXvec(cfg)
    _load_into(flow, root / "flow.pt")
    hift = HiFTGenerator(cfg.hift)
    _load_into(hift, root / "hift.pt", strip=("generator.",))
    tokenizer = AutoTokenizer.from_pretrained(root / QWEN_DIR)
    dev = torch.device(device)
    llm.to(dev, dtype).eval()
    flow.to(dev, dtype).eval()
    hift.to(dev).eval()  # the vocoder stays in float32: its STFT and phase sums lose too much in half precision
    voices = load_voices(root / "spk2info.pt", cfg)
    return CosyVoice2Model(cfg, llm, flow, hift, tokenizer, voices, root, dev)
