"""Self-cognition DPO (the paper's last correction step): preference pairs on spoken "can you hear
this?" turns, chosen = a reply that acknowledges and uses the audio, rejected = one claiming the model
cannot hear; then direct preference optimisation of adaptor + decoder against the starting model.

Pairs (:func:`build_pairs`) come from the model's own samples, drawn as self-distillation draws them
(``self_distill.sample_chains``: the serving engine, the server's prompt, K chains per question) on
training-split audio clips asked with the training phrasings (``text_pools.HEAR_QUESTIONS``) and the
contamination's phrasings (``self_cognition.CONTAMINATION_QUESTIONS``, now with audio: the turns where a
contaminated model errs). Each chain is judged (``self_cognition.judge``, reasoning included):

- rejected: a chain the judge flags; where the model produced none for a question (the usual case once
  the error rate is a few percent), a **constructed** rejection: one of ``CONSTRUCTED_REJECTIONS`` with an
  empty think block;
- chosen: a chain the judge passes that the verifier accepts (acknowledges hearing); where the model
  produced none, the question's reference target (reasoning that cites the clip's measured length and
  level, "Yes, I can hear it."), which acknowledges and uses the audio.

The report (``pairs.json``) counts how many of each side are the model's own and how many constructed.

Why an own DPO loss and not TRL's ``DPOTrainer``: ``StepAudio2ForCausalLM`` is a plain ``nn.Module``
(official tensor names, ``forward`` returning ``(logits, loss)``, no ``PreTrainedModel`` config, no
``base_model`` / ``XModel`` + ``XForCausalLM`` split that TRL's fused LM head needs), and our stages train
on cached frozen-encoder features (ragged per-chunk tensors), which ``DPOTrainer``'s
``model(**batch).logits`` call and its reference-model rebuild from ``config._name_or_path`` do not
carry. TRL 1.16 keeps its loss inline in ``DPOTrainer._compute_loss`` (no public function to reuse), so
:func:`dpo_loss` is TRL's ``loss_type="sigmoid"`` (Rafailov et al. 2023) written out, with TRL's default
``beta`` = 0.1: ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` on summed target log
probabilities. The reference log probabilities are computed once with the starting model, before the
first step (the reference is frozen), so only one model is in memory.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from stepaudio_rt.training import self_cognition as sc
from stepaudio_rt.training.sft import IGNORE_INDEX, Batch, SftExample, audio_embeddings, collate
from stepaudio_rt.training.stage_recipe import refresh_work_dir, stage_recipe

CONSTRUCTED_REJECTIONS = (
    "I am a text-based AI, so I cannot hear audio.",
    "Sorry, I can't listen to audio. I can only read text.",
    "I'm unable to hear sounds, please type your question.",
    "As a language model I cannot process audio.",
)


@dataclass(frozen=True)
class DpoConfig:
    """The DPO stage's knobs. Defaults: the toy-scale stage on the demo model (2-core CPU)."""

    seed: int = 0
    n_questions: int = 128  # spoken self-cognition turns to sample
    k: int = 4  # chains per question
    temperature: float = 1.0  # sampling is meant to surface the rare denial
    max_tokens: int = 64
    beta: float = 0.1  # TRL's default and the DPO paper's common setting
    # for the 10M-parameter demo model (trained at 5e-4); full-scale DPO runs commonly use 5e-7..5e-6. At
    # 2e-5 the MGRD run's 100 steps drove the loss to 0 (margin 17.6, the rejected replies are easy to tell
    # apart) and cost 4 points held out (self-cognition answers 100 -> 89%), from an error rate already 0
    lr: float = 5e-6
    warmup_steps: int = 5
    steps: int = 100
    batch_size: int = 8  # pairs per step
    grad_clip: float = 1.0
    save_every: int = 25
    log_every: int = 5
    n_probes: int = 64  # held-out probes for the error rate before/after (0: skip)
    torch_threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("n_questions", "k", "max_tokens", "steps", "batch_size", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.n_probes < 0:
            raise ValueError(f"n_probes must be >= 0, got {self.n_probes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DpoConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown DpoConfig keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def mini(cls, **overrides: Any) -> DpoConfig:
        """The CI miniature: a few questions, a few steps, a few probes."""
        base = dict(n_questions=3, k=2, max_tokens=8, steps=3, batch_size=2, save_every=2, log_every=1,
                    n_probes=2, lr=1e-4, warmup_steps=1, progress=False)
        return cls(**{**base, **overrides})


# --------------------------------------------------------------------------------------------- loss


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log probability of each row's target tokens (labels != IGNORE_INDEX), next-token shifted:
    logits [B, T, V], labels [B, T] -> [B]."""
    logp = logits[:, :-1].float().log_softmax(-1)
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sigmoid DPO loss (mean over pairs) and its usual metrics (implicit rewards, margin, accuracy)."""
    chosen_reward = beta * (policy_chosen - ref_chosen)
    rejected_reward = beta * (policy_rejected - ref_rejected)
    margin = chosen_reward - rejected_reward
    loss = -F.logsigmoid(margin).mean()
    chosen_reward, rejected_reward, margin = chosen_reward.detach(), rejected_reward.detach(), margin.detach()
    metrics = {
        "reward_chosen": float(chosen_reward.mean()),
        "reward_rejected": float(rejected_reward.mean()),
        "margin": float(margin.mean()),
        "accuracy": float((margin > 0).float().mean()),
    }
    return loss, metrics


def pair_logps(model: Any, batch: Batch, audio_patch_id: int) -> torch.Tensor:
    """Summed target log probabilities of every row of ``batch`` under ``model``."""
    embeds = audio_embeddings(model, batch)
    logits, _ = model(batch.input_ids, None, embeds, audio_patch_id if embeds is not None else None)
    return sequence_logps(logits, batch.labels)


# -------------------------------------------------------------------------------------------- pairs


@dataclass
class Pair:
    question: int  # index into the stage's questions
    chosen_think: str
    chosen_reply: str
    rejected_think: str
    rejected_reply: str
    chosen_source: str  # "model" or "constructed"
    rejected_source: str


def dpo_questions(n: int, seed: int) -> list[Any]:
    """``n`` training-split spoken self-cognition turns: ``gen_self_cognition`` clips (train voices),
    asked half with the training phrasings, half with the contamination's phrasings."""
    from stepaudio_rt.training.data import text_pools as tp
    from stepaudio_rt.training.data.tasks import gen_self_cognition

    phrasings = (*tp.HEAR_QUESTIONS, *sc.CONTAMINATION_QUESTIONS)
    out: list[Any] = []
    i = 0
    while len(out) < n:
        rng = np.random.default_rng([seed, 0xD90, i])
        s = gen_self_cognition(rng, "train", True)
        i += 1
        if s.audio is None:
            continue
        s.user_text = phrasings[len(out) % len(phrasings)]
        out.append(s)
    return out


def build_pairs(questions: Sequence[Any], chains: Sequence[Sequence[str]], seed: int = 0) -> tuple[list[Pair], dict[str, Any]]:
    """One pair per question from its sampled chains (see the module docstring); returns the pairs and
    the counts of own and constructed sides."""
    from stepaudio_rt.model.prompt import split_reasoning
    from stepaudio_rt.training.data.verify import check_answer

    rng = np.random.default_rng([seed, 0xD91])
    pairs: list[Pair] = []
    flagged_chains = 0
    for qi, (q, outs) in enumerate(zip(questions, chains, strict=True)):
        chosen = rejected = None
        for text in outs:
            think, reply = split_reasoning(text, starts_in_think=True)
            closed = "</think>" in text
            if sc.judge(text, q.user_text, include_think=True).flagged:
                flagged_chains += 1
                rejected = rejected or (think, reply)
            elif closed and check_answer("self_cognition", reply, q.label):
                chosen = chosen or (think, reply)
        c_src = r_src = "model"
        if chosen is None:
            chosen, c_src = (q.think, q.answer), "constructed"
        if rejected is None:
            rejected = ("", CONSTRUCTED_REJECTIONS[int(rng.integers(len(CONSTRUCTED_REJECTIONS)))])
            r_src = "constructed"
        pairs.append(Pair(qi, chosen[0], chosen[1], rejected[0], rejected[1], c_src, r_src))
    report = {
        "questions": len(questions),
        "chains": sum(len(c) for c in chains),
        "flagged_chains": flagged_chains,
        "pairs": len(pairs),
        "chosen_from_model": sum(p.chosen_source == "model" for p in pairs),
        "chosen_constructed": sum(p.chosen_source == "constructed" for p in pairs),
        "rejected_from_model": sum(p.rejected_source == "model" for p in pairs),
        "rejected_constructed": sum(p.rejected_source == "constructed" for p in pairs),
    }
    return pairs, report


def pair_examples(
    pairs: Sequence[Pair], questions: Sequence[Any], turns: Sequence[Any], tokenizer: Any
) -> list[tuple[SftExample, SftExample]]:
    """(chosen, rejected) SFT examples: the same prompt (the server's rendering), each side's target."""
    from stepaudio_rt.training.conversations import tokenize_dialog

    return [
        (
            tokenize_dialog(tokenizer, [], turns[p.question], p.chosen_think, p.chosen_reply, "dpo_chosen"),
            tokenize_dialog(tokenizer, [], turns[p.question], p.rejected_think, p.rejected_reply, "dpo_rejected"),
        )
        for p in pairs
    ]


def dpo_batch(examples: Sequence[tuple[SftExample, SftExample]], store: Any, pad_id: int) -> Batch:
    """Chosen rows stacked over rejected rows (TRL's layout), one collated batch."""
    return collate([c for c, _ in examples] + [r for _, r in examples], store, pad_id)


# -------------------------------------------------------------------------------------------- stage


def _lr_scale(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / max(1, warmup))


def run_dpo_stage(checkpoint_dir: str | Path, out_dir: str | Path, work_dir: str | Path, cfg: DpoConfig) -> Path:
    """DPO of the checkpoint at ``checkpoint_dir`` on self-cognition pairs; writes the trained checkpoint
    to ``out_dir`` (official layout) and returns it.

    ``work_dir`` holds every resumable piece: ``chains.jsonl`` (the samples), ``pairs.jsonl`` +
    ``pairs.json`` (pairs and their counts), ``ref_logps.pt`` (the frozen reference's log probabilities),
    ``state.pt`` (weights, optimiser, step; every ``cfg.save_every`` steps), ``dpo_log.jsonl`` (loss,
    implicit rewards, margin, accuracy) and ``metrics.json`` (with the self-cognition error rate on the
    held-out probes before and after). A finished stage returns at once."""
    from stepaudio_rt.model.checkpoint import load_checkpoint, save_checkpoint
    from stepaudio_rt.model.engine import checkpoint_listen_chunk_seconds
    from stepaudio_rt.training import self_distill as sd
    from stepaudio_rt.training.conversations import UserTurn
    from stepaudio_rt.training.sft import encode_chunks

    ckpt, out, work = Path(checkpoint_dir), Path(out_dir), Path(work_dir)
    # chains, pairs, reference and state all belong to the recipe
    refresh_work_dir(work, stage_recipe(asdict(cfg), ckpt, ("steps", "save_every", "log_every", "progress", "torch_threads")))
    metrics_path = work / "metrics.json"
    if metrics_path.exists() and (out / "config.json").exists():
        return out
    torch.set_num_threads(cfg.torch_threads)
    (work / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    before = _probe(ckpt, work / "probes_before.json", cfg)

    questions = dpo_questions(cfg.n_questions, cfg.seed)
    chains_path = work / "chains.jsonl"
    if chains_path.exists():
        chains = sd.load_chains(chains_path)
    else:
        chains = sd.sample_chains(ckpt, questions, k=cfg.k, temperature=cfg.temperature, seed=cfg.seed,
                                  max_tokens=cfg.max_tokens, progress=cfg.progress)
        sd.save_chains(chains_path, chains)
    pairs, pair_report = build_pairs(questions, chains, cfg.seed)
    (work / "pairs.json").write_text(json.dumps(pair_report, indent=2) + "\n")
    with (work / "pairs.jsonl").open("w") as f:
        for p in pairs:
            f.write(json.dumps(asdict(p)) + "\n")
    timings["sampling_s"] = time.perf_counter() - t0

    loaded = load_checkpoint(ckpt, progress=False)
    model, tokenizer = loaded.model, loaded.tokenizer
    chunk_s = checkpoint_listen_chunk_seconds(loaded.generation_config)
    store, per_clip = encode_chunks(model.encoder, [q.audio for q in questions], chunk_s, progress=False)
    turns = [UserTurn(q.user_text, ids, [int(store.tokens[c]) for c in ids]) for q, ids in zip(questions, per_clip, strict=True)]
    examples = pair_examples(pairs, questions, turns, tokenizer)
    pad_id = tokenizer.ids.endoftext if tokenizer.ids.endoftext is not None else 0
    patch_id = tokenizer.ids.audio_patch

    ref_path = work / "ref_logps.pt"
    if ref_path.exists():
        ref = torch.load(ref_path)
    else:  # the frozen reference: the starting model, once
        with torch.no_grad():
            parts = []
            for s in range(0, len(examples), cfg.batch_size):
                chunk = examples[s : s + cfg.batch_size]
                lp = pair_logps(model, dpo_batch(chunk, store, pad_id), patch_id)
                parts.append(torch.stack([lp[: len(chunk)], lp[len(chunk) :]], dim=1))
            ref = torch.cat(parts)
        torch.save(ref, ref_path)

    model.encoder.requires_grad_(False).eval()
    for part in (model.adapter, model.model, model.lm_head):
        part.requires_grad_(True).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_scale(s, cfg.warmup_steps))
    state_path, log_path = work / "state.pt", work / "dpo_log.jsonl"
    start = 0
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        if log_path.exists():  # records logged after the last save are redone: drop them
            kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= start]
            log_path.write_text("".join(ln + "\n" for ln in kept))
    elif log_path.exists():
        log_path.unlink()
    t1 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, desc="DPO", unit="step", disable=not cfg.progress)
    with log_path.open("a") as logf:
        for step in range(start, cfg.steps):
            idx = _batch_indices(len(examples), cfg.batch_size, cfg.seed, step)
            batch = dpo_batch([examples[i] for i in idx], store, pad_id)
            lp = pair_logps(model, batch, patch_id)
            n = len(idx)
            loss, m = dpo_loss(lp[:n], lp[n:], ref[idx, 0], ref[idx, 1], cfg.beta)
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"DPO loss is {float(loss.detach())} at step {step}; state.pt is from before it")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            opt.step()
            sched.step()
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", margin=f"{m['margin']:.3f}")
            if done % cfg.log_every == 0 or done == cfg.steps:
                rec = {"step": done, "loss": round(float(loss.detach()), 5), **{k: round(v, 5) for k, v in m.items()},
                       "grad_norm": round(grad_norm, 4), "lr": sched.get_last_lr()[0],
                       "elapsed_s": round(time.perf_counter() - t1, 1)}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
            if done % cfg.save_every == 0 or done == cfg.steps:
                _save_state(state_path, model, opt, sched, done)
    bar.close()
    timings["train_s"] = time.perf_counter() - t1
    dtype = getattr(torch, loaded.config.torch_dtype, torch.float32) if loaded.config.torch_dtype else None
    save_checkpoint(model.eval(), tokenizer, out, dtype=dtype, generation_config=loaded.generation_config or None)
    after = _probe(out, work / "probes_after.json", cfg)
    timings["total_s"] = time.perf_counter() - t0
    metrics = {
        "pairs": pair_report,
        "steps": cfg.steps,
        "final": _last_record(log_path),
        "self_cognition_error_before": before.get("error_rate"),
        "self_cognition_error_after": after.get("error_rate"),
        "probes": cfg.n_probes,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return out


def _batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The pairs of step ``step``: epochs of a seeded permutation, a pure function of the step (so a
    resumed run draws the same batches)."""
    per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, 0xD92, epoch]).permutation(n)
    return [int(i) for i in perm[k * batch_size : k * batch_size + batch_size]] or [int(perm[0])]


def _probe(ckpt: Path, path: Path, cfg: DpoConfig) -> dict[str, Any]:
    if cfg.n_probes == 0:
        return {}
    if path.exists():
        return json.loads(path.read_text())
    result = sc.probe_checkpoint(ckpt, n=cfg.n_probes, seed=cfg.seed, progress=cfg.progress)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _save_state(path: Path, model: Any, opt: Any, sched: Any, step: int) -> None:
    trainable = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    tmp = path.with_suffix(".tmp")
    torch.save({"model": trainable, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step}, tmp)
    os.replace(tmp, path)


def _last_record(path: Path) -> dict[str, Any] | None:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    return json.loads(lines[-1]) if lines else None


__all__ = [
    "CONSTRUCTED_REJECTIONS",
    "DpoConfig",
    "Pair",
    "build_pairs",
    "dpo_batch",
    "dpo_loss",
    "dpo_questions",
    "pair_examples",
    "pair_logps",
    "run_dpo_stage",
    "sequence_logps",
]
