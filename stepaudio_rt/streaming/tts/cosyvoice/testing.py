"""A tiny RANDOM CosyVoice2 checkpoint in the official layout, for tests and CPU benchmarks.

Same file names and tensor names as ``FunAudioLLM/CosyVoice2-0.5B`` (``cosyvoice2.yaml`` in upstream's
HyperPyYAML style, ``llm.pt``, ``flow.pt``, ``hift.pt``, ``CosyVoice-BlankEN/`` with a Qwen2 config and a
byte-level BPE tokenizer, optionally ``spk2info.pt``), with tiny dimensions. ``full=True`` writes the real
CosyVoice2-0.5B shapes (about 2 GB of random weights) for the GPU benchmark. Random weights speak noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .config import YAML_NAME, CosyVoiceConfig, EncoderConfig, EstimatorConfig, HiFTConfig, LMConfig

__all__ = ["build_tiny_checkpoint", "tiny_config", "TINY_SPEAKERS"]

TINY_SPEAKERS = ("alice", "bob")  # alice: a zero-shot speaker with a prompt; bob: an SFT speaker (embedding only)

_CORPUS = [
    "Hello there. The answer is forty two. I think the tone is rising.",
    "What is fourteen plus twenty nine? It is forty three. Good morning, how can I help you today?",
    "The quick brown fox jumps over the lazy dog, and then it rests in the sun.",
]

_YAML = """# tiny random CosyVoice2 checkpoint (stepaudio_rt testing); same structure as upstream cosyvoice2.yaml
sample_rate: 24000
llm_input_size: {llm}
llm_output_size: {llm}
spk_embed_dim: 192
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2
chunk_size: 25
num_decoding_left_chunks: -1

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: {speech}
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: {flow_in}
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {speech}
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: {enc}
        attention_heads: {enc_heads}
        linear_units: {enc_ff}
        num_blocks: {enc_blocks}
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: {flow_in}
        use_cnn_module: False
        macaron_style: False
        static_chunk_size: !ref <chunk_size>
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [{est}]
            dropout: 0.0
            attention_head_dim: {est_head}
            n_blocks: {est_blocks}
            num_mid_blocks: {est_mid}
            num_heads: {est_heads}
            act_fn: 'gelu'
            static_chunk_size: !ref <chunk_size> * <token_mel_ratio>
            num_decoding_left_chunks: !ref <num_decoding_left_chunks>

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: {hift}
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3, 7, 11]
    resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: {hift}
"""

_TINY = dict(llm=32, speech=64, flow_in=32, enc=32, enc_heads=2, enc_ff=64, enc_blocks=1, est=32, est_head=8,
             est_blocks=1, est_mid=1, est_heads=2, hift=32)
_FULL = dict(llm=896, speech=6561, flow_in=512, enc=512, enc_heads=8, enc_ff=2048, enc_blocks=6, est=256,
             est_head=64, est_blocks=4, est_mid=12, est_heads=8, hift=512)
# Qwen2-0.5B (CosyVoice-BlankEN/config.json) vs a tiny Qwen2.
_QWEN_FULL = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                  tie_word_embeddings=True)
_QWEN_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=4096, rope_theta=10000.0, tie_word_embeddings=True)


def tiny_config() -> CosyVoiceConfig:
    """The config the tiny checkpoint's yaml describes (handy for unit tests of single modules)."""
    t = _TINY
    return CosyVoiceConfig(
        flow_input_size=t["flow_in"], vocab_size=t["speech"],
        lm=LMConfig(llm_input_size=t["llm"], llm_output_size=t["llm"], speech_token_size=t["speech"]),
        encoder=EncoderConfig(output_size=t["enc"], attention_heads=t["enc_heads"], linear_units=t["enc_ff"],
                              num_blocks=t["enc_blocks"]),
        estimator=EstimatorConfig(channels=[t["est"]], attention_head_dim=t["est_head"], n_blocks=t["est_blocks"],
                                  num_mid_blocks=t["est_mid"], num_heads=t["est_heads"]),
        hift=HiFTConfig(base_channels=t["hift"], f0_cond_channels=t["hift"]),
    )


def _write_tokenizer(folder: Path) -> int:
    """A byte-level BPE (Qwen2's tokenizer family) trained on a few sentences; returns its vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer)
    tok.model.save(str(folder))  # vocab.json + merges.txt, the files Qwen2Tokenizer reads
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "bos_token": None, "model_max_length": 32768,
    }, indent=2))
    return tok.get_vocab_size()


def build_tiny_checkpoint(root: Path, speakers: bool = True, full: bool = False, seed: int = 0) -> Path:
    """Write a random checkpoint to ``root`` (created) and return it. ``speakers``: also ``spk2info.pt``."""
    from transformers import Qwen2Config

    from .flow import CausalMaskedDiffWithXvec
    from .hift import HiFTGenerator
    from .llm import Qwen2LM

    torch.manual_seed(seed)
    root = Path(root)
    qwen_dir = root / "CosyVoice-BlankEN"
    qwen_dir.mkdir(parents=True, exist_ok=True)
    dims = _FULL if full else _TINY
    (root / YAML_NAME).write_text(_YAML.format(**dims))
    vocab = _write_tokenizer(qwen_dir)
    qwen_kw = dict(_QWEN_FULL if full else {**_QWEN_TINY, "vocab_size": vocab})
    qwen = Qwen2Config(architectures=["Qwen2ForCausalLM"], **qwen_kw)
    qwen.save_pretrained(qwen_dir)
    cfg = CosyVoiceConfig.from_yaml(root / YAML_NAME)
    torch.save(Qwen2LM(cfg.lm, qwen).state_dict(), root / "llm.pt")
    torch.save(CausalMaskedDiffWithXvec(cfg).state_dict(), root / "flow.pt")
    torch.save(HiFTGenerator(cfg.hift).state_dict(), root / "hift.pt")
    if speakers:
        gen = torch.Generator().manual_seed(seed)
        prompt_tokens = 7
        spk2info = {
            "alice": {  # what upstream's add_zero_shot_spk stores
                "prompt_text": torch.randint(0, vocab, (1, 5), generator=gen, dtype=torch.int32),
                "prompt_text_len": torch.tensor([5], dtype=torch.int32),
                "llm_prompt_speech_token": torch.randint(0, cfg.vocab_size, (1, prompt_tokens), generator=gen,
                                                         dtype=torch.int32),
                "llm_prompt_speech_token_len": torch.tensor([prompt_tokens], dtype=torch.int32),
                "flow_prompt_speech_token": torch.randint(0, cfg.vocab_size, (1, prompt_tokens), generator=gen,
                                                          dtype=torch.int32),
                "flow_prompt_speech_token_len": torch.tensor([prompt_tokens], dtype=torch.int32),
                "prompt_speech_feat": torch.randn(1, 2 * prompt_tokens, cfg.mel_bins, generator=gen),
                "prompt_speech_feat_len": torch.tensor([2 * prompt_tokens], dtype=torch.int32),
                "llm_embedding": torch.randn(1, cfg.spk_embed_dim, generator=gen),
                "flow_embedding": torch.randn(1, cfg.spk_embed_dim, generator=gen),
            },
            "bob": {"embedding": torch.randn(1, cfg.spk_embed_dim, generator=gen)},  # an SFT speaker
        }
        torch.save(spk2info, root / "spk2info.pt")
    return root
