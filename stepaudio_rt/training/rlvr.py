"""RLVR: on-policy PPO with a value head and verifiable rewards (the paper's RL stage, at toy scale).

One step: copy the policy's weights into the rollout engine (``TorchEngine``, the serving engine, with the
serving prompt: system prompt + the user's audio/text + ``<|BOT|>assistant\\n<think>\\n``), sample
``samples_per_prompt`` completions for each of ``prompts_per_step`` selected questions, score them
(``rewards.score``, the eval verifier), put each score on its last token, compute GAE advantages with
gamma = lambda = 1 against the value head (``ppo.gae``: ``A_t = R - V(s_t)``), whiten them, and take
``ppo_epochs`` x ``minibatches`` clipped-PPO steps (``ppo.policy_loss`` + ``ppo.value_loss``). No KL term
and no reference model, as in the paper.

Policy and rollout engine are two copies of the model, as verl's actor and vLLM rollout are: the engine
fuses projections and runs its own inference-only forward; the trainer needs autograd. The frozen
encoder's features of every question's listen chunks are computed once and reused by each forward.

The value head (:class:`ValueHead`) reads the decoder's last hidden states, detached: the paper's critic is
a separate model, so the value loss must not move the policy; a head on detached features is that critic
sharing the policy's features, at no extra forward. It is saved apart from the checkpoint
(``work_dir/value_head.pt``), so the served checkpoint keeps the official layout.

Resumable: ``work_dir/state.pt`` (policy, value head, optimiser, step, RNG) every ``save_every`` steps; a
resumed run replays the same questions and sampling seeds (not bit for bit the same tokens: the engine
batches whichever streams are live, and another batch shape rounds differently). Per-step figures go to
``work_dir/rl_log.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stepaudio_rt.model.audio_frontend import log_mel_spectrogram
from stepaudio_rt.model.checkpoint import load_checkpoint, save_checkpoint
from stepaudio_rt.model.engine import checkpoint_listen_chunk_seconds
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.training import ppo
from stepaudio_rt.training import selection as sel
from stepaudio_rt.training.rewards import score, think_tokens
from stepaudio_rt.training.rl_config import RlConfig
from stepaudio_rt.training.rollout import Completion, listen_chunks, sample_completions
from stepaudio_rt.training.stage_recipe import refresh_work_dir, stage_recipe

log = logging.getLogger(__name__)


class ValueHead(nn.Module):
    """``V(s_t)`` from the decoder's hidden state at the position that predicts token ``t``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.detach().float())[..., 0]


@dataclass
class Forward:
    logp: torch.Tensor  # [B, L] log-probabilities of the response tokens (at the sampling temperature)
    values: torch.Tensor  # [B, L]
    mask: torch.Tensor  # [B, L] 1 on response tokens


def policy_forward(
    policy: StepAudio2ForCausalLM,
    head: ValueHead,
    rows: Sequence[Completion],
    chunk_feats: Sequence[Sequence[torch.Tensor]],
    patch_id: int,
    pad_id: int,
    temperature: float,
) -> Forward:
    """One full-sequence forward of prompt + response for each row (right padded: causal attention keeps
    every real position exact). ``chunk_feats[row.question]`` are that question's encoder features."""
    seqs = [r.prompt_ids + r.response_ids for r in rows]
    t_max = max(len(s) for s in seqs)
    ids = torch.full((len(rows), t_max), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
    audio = [policy.adapter(f[None])[0] for r in rows for f in chunk_feats[r.question]]
    embeds = policy.embed(ids, torch.cat(audio) if audio else None, patch_id if audio else None)
    hidden = policy.model(inputs_embeds=embeds).last_hidden_state
    l_max = max(len(r.response_ids) for r in rows)
    j = torch.arange(l_max)
    starts = torch.tensor([len(r.prompt_ids) for r in rows])
    lens = torch.tensor([len(r.response_ids) for r in rows])
    mask = (j[None, :] < lens[:, None]).float()
    pos = (starts[:, None] - 1 + j[None, :]).clamp(max=t_max - 1)  # the position that predicts token j
    h = hidden.gather(1, pos[..., None].expand(-1, -1, hidden.shape[-1]))
    targets = ids.gather(1, (pos + 1).clamp(max=t_max - 1)) * mask.long()
    logits = policy.lm_head(h).float() / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0] * mask
    return Forward(logp, head(h) * mask, mask)


def _encoder_features(policy: StepAudio2ForCausalLM, samples: Sequence[Any], chunk_seconds: float) -> list[list[torch.Tensor]]:
    n_mels = policy.config.audio.n_mels
    with torch.no_grad():
        return [
            [policy.encoder(log_mel_spectrogram(c, n_mels=n_mels)[None])[0] for c in listen_chunks(s.audio, chunk_seconds)]
            for s in samples
        ]


def _step_questions(n_pool: int, per_step: int, seed: int, step: int) -> list[int]:
    """The pool indices of step ``step``: consecutive slices of seeded per-epoch permutations (a pure
    function of its arguments, so a resumed run asks the same questions)."""
    out = []
    for k in range(step * per_step, (step + 1) * per_step):
        epoch, at = divmod(k, n_pool)
        out.append(int(np.random.default_rng([seed, 0x7F, epoch]).permutation(n_pool)[at]))
    return out


def sync_rollout_weights(engine: Any, policy: StepAudio2ForCausalLM) -> None:
    """Copy the policy's weights into the rollout engine's model, in place. The engine's q/k/v and
    gate/up parameters are views of its fused matrices, so the copy lands in the tensors its decode uses.
    Call between rollouts only (no stream running)."""
    with torch.no_grad():
        engine.model.load_state_dict(policy.state_dict(), strict=True)


def _set_trainable(policy: StepAudio2ForCausalLM) -> list[nn.Parameter]:
    policy.encoder.requires_grad_(False).eval()
    for m in (policy.adapter, policy.model, policy.lm_head):
        m.requires_grad_(True).train()
    return [p for p in policy.parameters() if p.requires_grad]


def _save_state(path: Path, policy: nn.Module, head: nn.Module, opt: torch.optim.Optimizer, step: int) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "policy": {k: v for k, v in policy.state_dict().items() if not k.startswith("encoder.")},
            "value_head": head.state_dict(),
            "optimizer": opt.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "step": step,
        },
        tmp,
    )
    os.replace(tmp, path)


def ppo_step(
    policy: StepAudio2ForCausalLM,
    head: ValueHead,
    opt: torch.optim.Optimizer,
    rows: list[Completion],
    scores: torch.Tensor,
    feats: Sequence[Sequence[torch.Tensor]],
    cfg: RlConfig,
    patch_id: int,
    pad_id: int,
    gen: torch.Generator,
) -> dict[str, float]:
    """Advantages from one rollout batch, then the PPO updates; returns the step's loss figures."""
    with torch.no_grad():
        old = policy_forward(policy, head, rows, feats, patch_id, pad_id, cfg.temperature)
    rewards = ppo.terminal_rewards(scores, old.mask)
    adv, returns = ppo.gae(rewards, old.values, old.mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        adv = ppo.masked_whiten(adv, old.mask)
    params = [p for g in opt.param_groups for p in g["params"]]
    figures: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_fraction": [], "value_clip_fraction": []}
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(len(rows), generator=gen).tolist()
        for part in np.array_split(np.asarray(order), cfg.minibatches):
            idx = part.tolist()
            new = policy_forward(policy, head, [rows[i] for i in idx], feats, patch_id, pad_id, cfg.temperature)
            width = new.mask.shape[1]  # the mini-batch's longest response
            sl = (idx, slice(0, width))
            pg, clipfrac = ppo.policy_loss(new.logp, old.logp[sl], adv[sl], new.mask, cfg.clip)
            vf, vclip = ppo.value_loss(new.values, old.values[sl], returns[sl], new.mask, cfg.value_clip)
            loss = pg + cfg.vf_coef * vf
            if not torch.isfinite(loss):
                raise FloatingPointError(f"PPO loss is {float(loss)} (policy {float(pg)}, value {float(vf)})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            for k, v in (("policy_loss", pg), ("value_loss", vf), ("clip_fraction", clipfrac), ("value_clip_fraction", vclip)):
                figures[k].append(float(v.detach()))
    out = {k: float(np.mean(v)) for k, v in figures.items()}
    out["mean_value"] = float(ppo.masked_mean(old.values, old.mask))
    return out


def _candidates(cfg: RlConfig, work: Path, progress: bool) -> tuple[list[Any], Path | None]:
    """Fresh train-split questions (and the held-out split beside them) synthesised into ``work/rl_data``."""
    from stepaudio_rt.training.data.build import build_dataset, load_split

    data = work / "rl_data"
    manifest = data / "manifest.json"
    want = {"seed": cfg.data_seed, "n_train": cfg.n_candidates, "n_eval": cfg.eval_n}
    have = json.loads(manifest.read_text()) if manifest.exists() else {}
    if any(have.get(k) != v for k, v in want.items()):
        build_dataset(cfg.n_candidates, cfg.eval_n, data, seed=cfg.data_seed, workers=min(2, cfg.torch_threads))
    return load_split(data / "train.jsonl"), (data if cfg.eval_n > 0 else None)


def run_rl_stage(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    work_dir: str | Path,
    cfg: RlConfig | None = None,
    questions: Sequence[Any] | None = None,
    progress: bool = True,
    eval_data_dir: str | Path | None = None,
) -> Path:
    """pass@k selection, then ``cfg.steps`` PPO steps from ``checkpoint_dir``; writes the trained checkpoint
    (official layout) to ``out_dir`` and returns it. ``work_dir`` keeps the questions, pass table, state,
    log, value head and metrics. ``questions`` (``tasks.Sample``-like) replace the synthesised candidates;
    ``eval_data_dir`` (a built data directory) then holds the held-out split for the accuracy after."""
    from stepaudio_rt.model.torch_engine import TorchEngine

    cfg = cfg or RlConfig()
    out, work = Path(out_dir), Path(work_dir)
    recipe = stage_recipe(cfg.to_dict(), checkpoint_dir, bookkeeping=("steps", "save_every", "concurrency", "torch_threads"))
    # the questions and the pass table are keyed on their own (the table's meta has the weights' digest)
    refresh_work_dir(work, recipe, keep=("rl_data", "pass_table.json"))
    metrics_path = work / "metrics.json"
    if metrics_path.exists() and (out / "config.json").exists():
        return out  # a finished stage
    torch.set_num_threads(cfg.torch_threads)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    eval_data = Path(eval_data_dir) if eval_data_dir is not None else None
    if questions is None:
        questions, eval_data = _candidates(cfg, work, progress)
    candidates = list(questions)[: cfg.n_candidates]
    ckpt = load_checkpoint(checkpoint_dir, dtype=torch.float32, progress=False)
    policy, tokenizer = ckpt.model, ckpt.tokenizer
    save_dtype = getattr(torch, ckpt.config.torch_dtype or "float32", torch.float32)
    # a question in flight holds its prefix and its forks; twice that, because a release is queued to the
    # engine's worker while the next question already allocates its contexts
    in_flight = max(cfg.concurrency, cfg.prompts_per_step) * (max(cfg.pass_k, cfg.samples_per_prompt) + 1)
    engine = TorchEngine.from_pretrained(
        checkpoint_dir, dtype=torch.float32, max_contexts=2 * in_flight + 2,
        max_context_tokens=cfg.max_context_tokens, progress=False,
    )
    chunk_seconds = checkpoint_listen_chunk_seconds(engine.generation_config)
    try:
        # ------------------------------------------------------------------ pass@k selection
        meta = {"checkpoint": str(Path(checkpoint_dir).resolve()), "weights_sha256": recipe["weights_sha256"],
                "k": cfg.pass_k, "n": len(candidates), "seed": cfg.seed, "data_seed": cfg.data_seed,
                "temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
        table = work / "pass_table.json"
        t0, cpu0 = time.perf_counter(), time.process_time()
        counts = sel.load_counts(table, meta)
        if counts is None:
            counts = sel.pass_counts(engine, candidates, cfg.pass_k, cfg.temperature, cfg.max_tokens,
                                     seed=cfg.seed * 7919 + 17, concurrency=cfg.concurrency, progress=progress)
            sel.save_counts(table, counts, meta)
        selection_s, selection_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        kept = sel.select(counts, cfg.selection, cfg.pass_low, cfg.pass_high)
        sel_report = sel.report(counts, [s.task for s in candidates], kept, cfg.selection, cfg.pass_k)
        (work / "selection.json").write_text(json.dumps(sel_report, indent=2) + "\n")
        print(f"[train rl] selection {cfg.selection}: kept {len(kept)} of {len(candidates)} questions "
              f"({100 * sel_report['selected_fraction']:.1f}%)", flush=True)
        if not kept:
            raise ValueError(
                f"pass@{cfg.pass_k} selection '{cfg.selection}' kept no question of {len(candidates)} "
                f"(histogram {sel_report['pass_histogram']}); use more candidates or another policy"
            )
        pool = [candidates[i] for i in kept]
        feats = _encoder_features(policy, pool, chunk_seconds)

        # ------------------------------------------------------------------ PPO
        params = _set_trainable(policy)
        head = ValueHead(policy.config.hidden_size)
        opt = torch.optim.AdamW(
            [{"params": params, "lr": cfg.lr}, {"params": list(head.parameters()), "lr": cfg.value_lr}],
            weight_decay=cfg.weight_decay, betas=(0.9, 0.999),
        )
        state_path, log_path = work / "state.pt", work / "rl_log.jsonl"
        start = 0
        if state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            loaded = policy.load_state_dict(state["policy"], strict=False)
            if loaded.unexpected_keys or any(not k.startswith("encoder.") for k in loaded.missing_keys):
                raise ValueError(f"{state_path} does not match {checkpoint_dir}: missing "
                                 f"{loaded.missing_keys[:3]}, unexpected {loaded.unexpected_keys[:3]}")
            head.load_state_dict(state["value_head"])
            opt.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            start = int(state["step"])
            _truncate_log(log_path, start)
            log.info("resuming RL at step %d from %s", start, state_path)
        elif log_path.exists():
            log_path.unlink()
        patch_id = tokenizer.ids.audio_patch
        pad_id = tokenizer.ids.endoftext if tokenizer.ids.endoftext is not None else 0
        bar = tqdm(total=cfg.steps, initial=start, desc="RL (PPO)", unit="step", disable=not progress)
        with log_path.open("a") as logf:
            for step in range(start, cfg.steps):
                t0, cpu0 = time.perf_counter(), time.process_time()
                sync_rollout_weights(engine, policy)
                qs = _step_questions(len(pool), cfg.prompts_per_step, cfg.seed, step)
                batch = [pool[i] for i in qs]
                groups = sample_completions(engine, batch, cfg.samples_per_prompt, cfg.temperature, cfg.max_tokens,
                                            seed=(cfg.seed * 100_003 + step) * 64, concurrency=len(batch))
                rows = [Completion(qs[c.question], c.prompt_ids, c.response_ids, c.text, c.finish)
                        for g in groups for c in g]
                scored = [score(pool[r.question].task, r.text, pool[r.question].label, pool[r.question].audio is not None,
                                cfg.format_reward) for r in rows]
                rollout_s = time.perf_counter() - t0
                t1 = time.perf_counter()
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                figures = ppo_step(policy, head, opt, rows, torch.tensor([s.reward for s in scored]), feats, cfg,
                                   patch_id, pad_id, gen)
                rec = {
                    "step": step + 1,
                    "mean_reward": float(np.mean([s.reward for s in scored])),
                    "accuracy": float(np.mean([s.correct for s in scored])),
                    "reasoning_rate": float(np.mean([s.reasoning for s in scored])),
                    "well_formed_rate": float(np.mean([s.well_formed for s in scored])),
                    "mean_think_tokens": float(np.mean([think_tokens(tokenizer, r.text) for r in rows])),
                    "mean_response_tokens": float(np.mean([len(r.response_ids) for r in rows])),
                    **{k: round(v, 5) for k, v in figures.items()},
                    "rollout_s": round(rollout_s, 2),
                    "update_s": round(time.perf_counter() - t1, 2),
                    # CPU seconds of this process (all threads): the cost on a shared machine, where wall
                    # time depends on who else runs
                    "cpu_s": round(time.process_time() - cpu0, 2),
                }
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                bar.update(1)
                bar.set_postfix(reward=f"{rec['mean_reward']:.3f}", think=f"{rec['mean_think_tokens']:.0f}")
                if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps:
                    _save_state(state_path, policy, head, opt, step + 1)
        bar.close()
    finally:
        asyncio.run(engine.aclose())

    policy.eval()
    save_checkpoint(policy, tokenizer, out, dtype=save_dtype, generation_config=ckpt.generation_config)
    torch.save(head.state_dict(), work / "value_head.pt")
    records = load_rl_log(log_path)
    from stepaudio_rt.training.rl_plots import plot_rl_curves

    if records:
        plot_rl_curves({"rl": records}, work / "rl_curves.png")
    metrics: dict[str, Any] = {
        "config": cfg.to_dict(),
        "checkpoint": str(checkpoint_dir),
        "selection": sel_report,
        "first_step": records[0] if records else None,
        "last_step": records[-1] if records else None,
        "selection_s": round(selection_s, 1),
        "selection_cpu_s": round(selection_cpu_s, 1),
        "train_cpu_s": round(sum(r.get("cpu_s", 0.0) for r in records), 1),
    }
    if cfg.eval_n > 0 and eval_data is not None:
        from stepaudio_rt.training.evaluate import evaluate_checkpoint

        summary = evaluate_checkpoint(out, work / "eval", n=cfg.eval_n, data_dir=eval_data, progress=progress,
                                      modes=("thinking",))
        metrics["heldout_accuracy"] = summary["overall_accuracy"]["thinking"]
        metrics["heldout_accuracy_per_task"] = summary["accuracy"]["thinking"]
    metrics["total_s"] = round(time.perf_counter() - t_start, 1)
    metrics["total_cpu_s"] = round(time.process_time() - cpu_start, 1)  # this call's, with the eval
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return out


def load_rl_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after the resumed state's step (written after the last save before a stop)."""
    records = [r for r in load_rl_log(path) if r["step"] <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


__all__ = ["Forward", "RlConfig", "ValueHead", "load_rl_log", "policy_forward", "ppo_step", "run_rl_stage", "sync_rollout_weights"]
