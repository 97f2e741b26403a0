"""CosyVoice2 hyper-parameters, read from the checkpoint's official ``cosyvoice2.yaml``.

The official file is HyperPyYAML (``!new:cosyvoice.llm.llm.Qwen2LM`` tags that instantiate upstream
classes, ``!ref <name>`` references). We never import upstream code, so the file is read with a tolerant
YAML loader that keeps every tag's mapping/list/scalar as plain data and resolves ``!ref`` expressions
against the top-level keys. Only the numbers our modules need are picked out; anything absent falls back
to the CosyVoice2-0.5B value, so a trimmed yaml still loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CosyVoiceConfig", "EncoderConfig", "EstimatorConfig", "HiFTConfig", "LMConfig", "read_yaml"]

YAML_NAME = "cosyvoice2.yaml"


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that turns any ``!tag`` into the plain value under it (HyperPyYAML tags included)."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    value = loader.construct_scalar(node)
    return f"!ref {value}" if suffix == "ref" else value


_TolerantLoader.add_multi_constructor("!", _construct_tagged)


def _resolve(value: Any, top: dict[str, Any]) -> Any:
    """``!ref <a>`` -> top[a]; ``!ref <a> * <b>`` -> product (the only arithmetic the official file uses)."""
    if isinstance(value, dict):
        return {k: _resolve(v, top) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top) for v in value]
    if isinstance(value, str) and value.startswith("!ref "):
        names = re.findall(r"<([A-Za-z0-9_]+)>", value)
        resolved = [_resolve(top[n], top) for n in names]
        if len(resolved) == 1:
            return resolved[0]
        product = 1
        for item in resolved:
            product *= item
        return product
    return value


def read_yaml(path: Path) -> dict[str, Any]:
    raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_TolerantLoader) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return _resolve(raw, raw)


@dataclass
class LMConfig:
    llm_input_size: int = 896
    llm_output_size: int = 896
    speech_token_size: int = 6561
    top_p: float = 0.8
    top_k: int = 25
    win_size: int = 10
    tau_r: float = 0.1
    min_token_text_ratio: float = 2.0
    max_token_text_ratio: float = 20.0


@dataclass
class EncoderConfig:
    output_size: int = 512
    attention_heads: int = 8
    linear_units: int = 2048
    num_blocks: int = 6
    num_up_blocks: int = 4  # fixed in upstream code, not in the yaml
    static_chunk_size: int = 25


@dataclass
class EstimatorConfig:
    in_channels: int = 320
    out_channels: int = 80
    channels: list[int] = field(default_factory=lambda: [256])
    attention_head_dim: int = 64
    n_blocks: int = 4
    num_mid_blocks: int = 12
    num_heads: int = 8
    static_chunk_size: int = 50


@dataclass
class HiFTConfig:
    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 24000
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: list[int] = field(default_factory=lambda: [8, 5, 3])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 11, 7])
    n_fft: int = 16
    hop_len: int = 4
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    source_resblock_kernel_sizes: list[int] = field(default_factory=lambda: [7, 7, 11])
    source_resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_cond_channels: int = 512

    @property
    def hop_samples(self) -> int:
        """Audio samples per mel frame (480 at 24 kHz: 50 mel frames a second)."""
        product = self.hop_len
        for rate in self.upsample_rates:
            product *= rate
        return product


@dataclass
class CosyVoiceConfig:
    sample_rate: int = 24000
    token_frame_rate: int = 25
    token_mel_ratio: int = 2
    chunk_size: int = 25  # tokens per streaming hop; must match training's static_chunk_size
    spk_embed_dim: int = 192
    # flow
    flow_input_size: int = 512
    mel_bins: int = 80
    vocab_size: int = 6561
    pre_lookahead_len: int = 3
    decoder_spk_emb_dim: int = 80
    inference_cfg_rate: float = 0.7
    t_scheduler: str = "cosine"
    flow_steps: int = 10  # Euler steps of the flow-matching ODE (upstream: 10)
    lm: LMConfig = field(default_factory=LMConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    hift: HiFTConfig = field(default_factory=HiFTConfig)

    @classmethod
    def from_yaml(cls, path: Path) -> CosyVoiceConfig:
        doc = read_yaml(path)
        cfg = cls()
        _pick(cfg, doc, ["sample_rate", "token_frame_rate", "token_mel_ratio", "chunk_size", "spk_embed_dim"])
        llm = doc.get("llm") or {}
        _pick(cfg.lm, llm, ["llm_input_size", "llm_output_size", "speech_token_size"])
        _pick(cfg.lm, llm.get("sampling") or {}, ["top_p", "top_k", "win_size", "tau_r"])
        flow = doc.get("flow") or {}
        _pick(cfg, flow, ["vocab_size", "pre_lookahead_len", "token_mel_ratio", "spk_embed_dim"])
        cfg.flow_input_size = int(flow.get("input_size", cfg.flow_input_size))
        cfg.mel_bins = int(flow.get("output_size", cfg.mel_bins))
        _pick(cfg.encoder, flow.get("encoder") or {}, ["output_size", "attention_heads", "linear_units", "num_blocks",
                                                       "static_chunk_size"])
        decoder = flow.get("decoder") or {}
        cfg.decoder_spk_emb_dim = int(decoder.get("spk_emb_dim", cfg.decoder_spk_emb_dim))
        cfm = decoder.get("cfm_params") or {}
        cfm = cfm.get("content", cfm)  # !new:omegaconf.DictConfig wraps it in "content"
        _pick(cfg, cfm, ["inference_cfg_rate", "t_scheduler"])
        _pick(cfg.estimator, decoder.get("estimator") or {}, ["in_channels", "out_channels", "channels",
                                                              "attention_head_dim", "n_blocks", "num_mid_blocks",
                                                              "num_heads", "static_chunk_size"])
        hift = doc.get("hift") or {}
        _pick(cfg.hift, hift, ["in_channels", "base_channels", "nb_harmonics", "sampling_rate", "nsf_alpha", "nsf_sigma",
                               "nsf_voiced_threshold", "upsample_rates", "upsample_kernel_sizes",
                               "resblock_kernel_sizes", "resblock_dilation_sizes", "source_resblock_kernel_sizes",
                               "source_resblock_dilation_sizes", "lrelu_slope", "audio_limit"])
        istft = hift.get("istft_params") or {}
        cfg.hift.n_fft = int(istft.get("n_fft", cfg.hift.n_fft))
        cfg.hift.hop_len = int(istft.get("hop_len", cfg.hift.hop_len))
        cfg.hift.f0_cond_channels = int((hift.get("f0_predictor") or {}).get("cond_channels", cfg.hift.f0_cond_channels))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if len(self.estimator.channels) != 1:
            raise ValueError(f"only a one-level flow estimator is supported (CosyVoice2: [256]), got {self.estimator.channels}")
        if self.hift.hop_samples * self.token_frame_rate * self.token_mel_ratio != self.sample_rate:
            raise ValueError("hift hop x mel frame rate must equal the sample rate")


def _pick(target: object, source: dict[str, Any], names: list[str]) -> None:
    for name in names:
        if name in source and source[name] is not None:
            current = getattr(target, name)
            value = source[name]
            if isinstance(current, bool):
                value = bool(value)
            elif isinstance(current, int):
                value = int(value)
            elif isinstance(current, float):
                value = float(value)
            setattr(target, name, value)
