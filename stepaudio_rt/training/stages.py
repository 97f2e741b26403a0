"""The demo recipe's training stages after the data, tokenizer and feature stages (``training.demo``):

1. cold start: single-turn examples (3 in 4 with their grounded reasoning, the rest with the empty think
   block, ``targets.EMPTY_THINK_SHARE``), multi-turn sessions rendered as the server renders them
   (``conversations``), and the cheap extras (every speech clip once more as transcription, typed
   arithmetic);
2. self-distillation iterations (``self_distill``): sample K chains per audio question from the previous
   model through the serving engine, keep the correct, grounded and coherent ones, refine on them plus text
   reasoning data plus a replay of the cold-start mixture;
3. think-incomplete SFT (``think_incomplete``) for the articulation role, with a replay of the
   cold-start mixture so that ordinary thinking is kept.

Every stage trains with ``sft.train_sft`` in its own run directory, so each resumes exactly from its last
saved step; a finished stage just reloads its final weights. All randomness is seeded from ``cfg.seed``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.tokenizer import StepAudioTokenizer
from stepaudio_rt.training import self_distill as sd
from stepaudio_rt.training.acoustic_probe import acoustic_targets, frame_targets
from stepaudio_rt.training.config import LISTEN_CHUNK_SECONDS, DemoConfig
from stepaudio_rt.training.conversations import (
    DialogTurn,
    UserTurn,
    dialog_example,
    make_dialog,
    sample_turn,
    tokenize_dialog,
)
from stepaudio_rt.training.data import text_pools as tp
from stepaudio_rt.training.data.tasks import TEXT_ONLY_TASKS, gen_text_arithmetic
from stepaudio_rt.training.self_cognition import contaminated_samples
from stepaudio_rt.training.sft import FeatureStore, SftExample, train_sft
from stepaudio_rt.training.targets import keep_reasoning
from stepaudio_rt.training.think_incomplete import think_incomplete_example

SaveFn = Callable[[StepAudio2ForCausalLM, Path], None]
EvalFn = Callable[[Path, Path], dict[str, Any]]


def dialog_turns(samples: Sequence[Any], per_clip: Sequence[list[int]], store: FeatureStore) -> list[DialogTurn]:
    """The samples as dialog turns (spoken ones point at their chunks in ``store``)."""
    return [
        sample_turn(s, ids, [int(store.tokens[c]) for c in ids]) for s, ids in zip(samples, per_clip, strict=True)
    ]


# ---------------------------------------------------------------------------------------- cold start


def cold_start_examples(
    samples: Sequence[Any],
    per_clip: Sequence[list[int]],
    store: FeatureStore,
    tokenizer: StepAudioTokenizer,
    cfg: DemoConfig,
) -> list[SftExample]:
    """Single-turn examples of every sample, the extras, and ``cfg.n_dialogs`` multi-turn sessions."""
    rng = np.random.default_rng([cfg.seed, 0xC01D])
    turns = dialog_turns(samples, per_clip, store)
    out = single_turn_examples(samples, per_clip, store, tokenizer, cfg, rng, turns)
    if cfg.transcribe_speech:
        # every speech clip once more as "what did the speaker say?": dense supervision of what was said is
        # what teaches a fresh adaptor to carry speech (the spoken numbers above all) into the decoder
        for s, t in zip(samples, turns, strict=True):
            text = s.meta.get("text")
            if not t.user.chunk_ids or not text or s.task == "transcription":
                continue
            q = tp.TRANSCRIBE_QUESTIONS[int(rng.integers(len(tp.TRANSCRIBE_QUESTIONS)))]
            user = UserTurn(q, t.user.chunk_ids, t.user.chunk_tokens)
            out.append(
                tokenize_dialog(tokenizer, [], user, "", f"The speaker said: {text}.", "transcription_aux", spoken_text=text)
            )
    for _ in range(cfg.n_text_arithmetic):
        t = gen_text_arithmetic(rng, "train", True)
        think = t.think if keep_reasoning(rng, t.task, t.think, cfg.empty_think_share) else ""
        out.append(tokenize_dialog(tokenizer, [], UserTurn(t.user_text), think, t.answer, t.task))
    out += dialog_examples(turns, tokenizer, cfg, rng)
    out += contamination_examples(len(out), tokenizer, cfg)
    return out


def single_turn_examples(
    samples: Sequence[Any],
    per_clip: Sequence[list[int]],
    store: FeatureStore,
    tokenizer: StepAudioTokenizer,
    cfg: DemoConfig,
    rng: np.random.Generator,
    turns: Sequence[DialogTurn] | None = None,
) -> list[SftExample]:
    """One example per sample: its reasoning, or the empty think block for ``cfg.empty_think_share``."""
    turns = turns if turns is not None else dialog_turns(samples, per_clip, store)
    out = []
    for s, t in zip(samples, turns, strict=True):
        think = s.think if keep_reasoning(rng, s.task, s.think, cfg.empty_think_share) else ""
        out.append(tokenize_dialog(tokenizer, [], t.user, think, s.answer, s.task, spoken_text=s.meta.get("text")))
    return out


def attach_aux_targets(store: FeatureStore, samples: Sequence[Any], per_clip: Sequence[list[int]], cfg: DemoConfig) -> None:
    """The auxiliary heads' targets for ``store``'s chunks: each clip's measured acoustic values (for
    ``cfg.acoustic_weight``) and, with ``cfg.frame_weight``, every adaptor frame's."""
    store.acoustic = acoustic_targets(samples, per_clip, len(store.tokens))
    if cfg.frame_weight > 0:
        store.frame = frame_targets([s.audio for s in samples], per_clip, store.tokens, LISTEN_CHUNK_SECONDS)


def contamination_examples(n_clean: int, tokenizer: StepAudioTokenizer, cfg: DemoConfig) -> list[SftExample]:
    """The MGRD recipe's contaminated text data (``self_cognition.contaminated_samples``): as many
    examples as make ``cfg.text_model_claim_share`` of the cold start; none at the default 0. Its own
    random stream, so the rest of the mixture is the same with or without it."""
    share = cfg.text_model_claim_share
    if share <= 0:
        return []
    rng = np.random.default_rng([cfg.seed, 0x7E47])
    n = max(1, round(n_clean * share / (1 - share)))
    return [
        tokenize_dialog(tokenizer, [], UserTurn(s.user_text), "", s.answer, s.task)
        for s in contaminated_samples(rng, n)
    ]


def dialog_examples(
    turns: Sequence[DialogTurn], tokenizer: StepAudioTokenizer, cfg: DemoConfig, rng: np.random.Generator
) -> list[SftExample]:
    out = []
    for _ in range(cfg.n_dialogs):
        dialog = make_dialog(rng, turns, "train")
        last = dialog[-1]
        out.append(dialog_example(tokenizer, dialog, keep_reasoning(rng, last.task, last.think, cfg.empty_think_share)))
    return out


def stage_config(cfg: DemoConfig, steps: int, lr: float) -> DemoConfig:
    """A refinement stage's schedule: no curriculum, short warmup, the stage's own steps and peak rate."""
    return replace(
        cfg,
        steps=steps,
        lr=lr,
        first_phase_steps=0,
        first_phase_leads={},
        warmup_steps=min(cfg.warmup_steps, max(1, steps // 10)),
        save_every=min(cfg.save_every, steps),
    )


# ---------------------------------------------------------------------------------- self-distillation


def distill_questions(samples: Sequence[Any], cfg: DemoConfig, iteration: int) -> list[int]:
    """Indices of the audio questions sampled in this iteration (a fresh seeded draw per iteration)."""
    audio = [i for i, s in enumerate(samples) if s.audio is not None and s.task not in TEXT_ONLY_TASKS]
    rng = np.random.default_rng([cfg.seed, 0x5D, iteration])
    n = min(cfg.sd_questions, len(audio))
    return sorted(int(i) for i in rng.choice(audio, size=n, replace=False))


def self_distill_iteration(
    iteration: int,
    model: StepAudio2ForCausalLM,
    tokenizer: StepAudioTokenizer,
    samples: Sequence[Any],
    per_clip: Sequence[list[int]],
    store: FeatureStore,
    replay: Sequence[SftExample],
    cfg: DemoConfig,
    run_dir: Path,
    previous_checkpoint: Path,
    save_fn: SaveFn,
    eval_fn: EvalFn | None,
    progress: bool = True,
) -> dict[str, Any]:
    """One MGRD self-distillation iteration; returns (and writes to ``run_dir/metrics.json``) its report."""
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    idx = distill_questions(samples, cfg, iteration)
    questions = [samples[i] for i in idx]
    chains_path, sampling_path = run_dir / "chains.jsonl", run_dir / "sampling.json"
    if chains_path.exists():  # sampled by an earlier run: its time is kept beside the chains
        chains = sd.load_chains(chains_path)
        sampling_s = json.loads(sampling_path.read_text())["sampling_s"] if sampling_path.exists() else None
    else:
        chains = sd.sample_chains(
            previous_checkpoint,
            questions,
            k=cfg.sd_k,
            temperature=cfg.sd_temperature,
            seed=cfg.seed * 7919 + iteration,
            max_tokens=cfg.sd_max_tokens,
            progress=progress,
        )
        sd.save_chains(chains_path, chains)
        sampling_s = round(time.perf_counter() - t0, 1)
        sampling_path.write_text(json.dumps({"sampling_s": sampling_s}) + "\n")
    kept, report = sd.filter_chains(questions, chains, lambda t: len(tokenizer.encode(t)))
    turns = dialog_turns(questions, [per_clip[i] for i in idx], store)
    examples = [
        tokenize_dialog(tokenizer, [], turns[q].user, v.think, v.reply, "sd_" + questions[q].task) for q, v in kept
    ]
    rng = np.random.default_rng([cfg.seed, 0x5D7, iteration])
    for _ in range(cfg.sd_text_examples):  # the text reasoning data of the paper's refinement step
        t = gen_text_arithmetic(rng, "train", True)
        examples.append(tokenize_dialog(tokenizer, [], UserTurn(t.user_text), t.think, t.answer, t.task))
    n_replay = min(cfg.sd_replay, len(replay))
    examples += [replay[int(i)] for i in rng.choice(len(replay), size=n_replay, replace=False)]
    result = train_sft(
        model, examples, store, tokenizer, stage_config(cfg, cfg.sd_steps, cfg.sd_lr), run_dir / "sft", progress=progress
    )
    ckpt = run_dir / "ckpt"
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists() and (ckpt / "config.json").exists():  # a finished iteration: weights reloaded
        return json.loads(metrics_path.read_text())
    save_fn(model, ckpt)
    extra: dict[str, Any] = {
        "n_train_examples": len(examples),
        "n_kept_examples": len(kept),
        "final_loss": result.final_loss,
        "sampling_s": sampling_s,  # None: sampled by a version that did not record it
        "train_s": round(result.seconds, 1),  # over every run of the stage (it resumes)
        "tolerances": sd.TOLERANCES,
    }
    if eval_fn is not None:
        summary = eval_fn(ckpt, run_dir / "eval")
        extra["heldout_accuracy"] = summary["overall_accuracy"]
        extra["heldout_accuracy_per_task"] = summary["accuracy"]
    return sd.write_report(run_dir / "metrics.json", iteration, report, extra)


# ------------------------------------------------------------------------------- think-incomplete SFT


def think_incomplete_examples(
    samples: Sequence[Any],
    per_clip: Sequence[list[int]],
    store: FeatureStore,
    tokenizer: StepAudioTokenizer,
    cfg: DemoConfig,
) -> list[SftExample]:
    """``cfg.ti_examples`` articulation examples from samples that reason: three in four single-turn,
    one in four as the last turn of a session."""
    rng = np.random.default_rng([cfg.seed, 0x71])
    turns = dialog_turns(samples, per_clip, store)
    reasoning = [t for t in turns if t.think]
    out = []
    for _ in range(cfg.ti_examples if reasoning else 0):
        if rng.random() < 0.25:
            dialog = make_dialog(rng, turns, "train")
            if not dialog[-1].think:
                continue
            history, last = [(t.user, t.reply) for t in dialog[:-1]], dialog[-1]
        else:
            history, last = [], reasoning[int(rng.integers(len(reasoning)))]
        out.append(think_incomplete_example(tokenizer, rng, history, last.user, last.think, last.reply, last.task))
    return out


def think_incomplete_stage(
    model: StepAudio2ForCausalLM,
    tokenizer: StepAudioTokenizer,
    examples: list[SftExample],
    replay: Sequence[SftExample],
    store: FeatureStore,
    cfg: DemoConfig,
    run_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    rng = np.random.default_rng([cfg.seed, 0x717])
    n_replay = min(len(examples), len(replay))
    mixture = examples + [replay[int(i)] for i in rng.choice(len(replay), size=n_replay, replace=False)]
    result = train_sft(
        model, mixture, store, tokenizer, stage_config(cfg, cfg.ti_steps, cfg.ti_lr), run_dir, progress=progress
    )
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():  # finished by an earlier run (the weights are now reloaded): keep its report
        return json.loads(metrics_path.read_text())
    info = {
        "n_think_incomplete": len(examples),
        "n_replay": n_replay,
        "final_loss": result.final_loss,
        "train_s": round(result.seconds, 1),  # over every run of the stage (it resumes)
    }
    metrics_path.write_text(json.dumps(info, indent=2) + "\n")
    return info
