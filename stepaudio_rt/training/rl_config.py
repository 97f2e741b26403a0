"""Every knob of the RL stage (``training.rlvr``) in one dataclass, with the paper's value where it has one
and the reason wherever the toy stage departs from it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from stepaudio_rt.training.selection import POLICIES


@dataclass(frozen=True)
class RlConfig:
    seed: int = 0
    # --- PPO (paper: clip 0.2, gamma = lambda = 1, no KL to a reference, reward at the last token)
    steps: int = 30
    prompts_per_step: int = 8
    # paper: 16. 8 on a CPU: half the rollout cost per question, which is what bounds a step here; with a
    # critic the advantage is R - V(s_t), not a group mean, so the group size only sets how many answers
    # per question a step sees, and 8 x 8 = 64 completions a step still mix both outcomes of [3, 6] questions
    samples_per_prompt: int = 8
    # 1.0: the rollouts are samples of the policy itself, so PPO's ratio is taken against the distribution
    # that produced them (verl's rollout default too)
    temperature: float = 1.0
    max_tokens: int = 160  # as eval: a three-operand problem's reasoning is about 85 tokens, its reply 15
    clip: float = 0.2
    gamma: float = 1.0
    lam: float = 1.0
    # clipped value loss, verl's critic default (cliprange_value 0.5): rewards lie in [0, 1] and each step's
    # value targets are one batch's noisy returns; the clip keeps one batch from moving a token's value by
    # more than half the reward range, so a lucky or unlucky batch does not swing the next advantages
    value_clip: float | None = 0.5
    vf_coef: float = 1.0  # the head sees detached features (ValueHead): this only scales its own step
    whiten_advantages: bool = True  # verl's GAE whitens over the batch
    ppo_epochs: int = 1
    # updates per rollout batch (verl's ppo_mini_batch_size < train_batch_size): the second and later
    # mini-batches are slightly off-policy, which is what the clip is for
    minibatches: int = 2
    # paper (33B): actor 1e-6, critic 1e-5. A 12M-parameter model trained at 5e-4 needs a larger step.
    # Measured on the v1 demo checkpoint (README, 64 completions a step): at 1e-5 the policy barely moved
    # (clip fraction 0 to 0.006 over 4 steps); at 1e-4 on pass@8 [3, 6] questions the accuracy on them rose
    # from 0.54 to about 0.8 within 12 steps; at 2e-4 on unselected questions (mostly all-right or
    # all-wrong groups) held-out accuracy fell from 80% to 58-63%. On the MGRD run's supervised model
    # (which reasons and is 93% right on 200 held-out samples), 30 steps at 1e-4 broke the decoder's digit
    # facts ("9 plus 6 is 14"): held-out 78.5%, spoken arithmetic 90 -> 56%, while the accuracy on the
    # selected questions never rose; at 1e-5 it rose from 0.58 to about 0.8 and held-out was 94.0%.
    lr: float = 1e-5
    value_lr: float = 1e-3
    # no weight decay: with no KL anchor, decay would be the only force on weights the reward does not
    # touch, pulling them toward zero rather than toward the supervised model
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    # --- reward (rewards.py): audio 0.8 x correct + 0.2 x reasoning; off = binary for audio too (ablation)
    format_reward: bool = True
    # --- pass@k selection (selection.py): paper k = 8, band [3, 6]
    selection: str = "band"
    pass_k: int = 8
    pass_low: int = 3
    pass_high: int = 6
    n_candidates: int = 400  # fresh train-split questions sampled for the pass table
    data_seed: int = 1  # seed of their synthesis (the demo data used seed 0: these are new draws)
    # --- held-out accuracy after the stage (eval's verifier, thinking mode; 0: none)
    eval_n: int = 200
    # --- bookkeeping
    save_every: int = 5
    concurrency: int = 8  # questions in flight during pass@k sampling
    max_context_tokens: int = 1024
    # 1: rollouts are many small ops a second thread barely speeds up, and on a shared machine a second
    # thread mostly spins: measured under load, about 19 CPU s per step with 2 threads, 7-9 with 1
    torch_threads: int = 1

    @classmethod
    def mini(cls, **overrides: Any) -> RlConfig:
        """The CI miniature: same code path, a few questions, two answers each, a few steps."""
        base = cls(
            steps=3,
            prompts_per_step=2,
            samples_per_prompt=2,
            max_tokens=16,
            minibatches=2,
            lr=1e-3,
            selection="all",
            pass_k=2,
            pass_low=1,
            pass_high=1,
            n_candidates=4,
            eval_n=0,
            save_every=2,
            concurrency=2,
            max_context_tokens=512,
        )
        return replace(base, **overrides)

    def __post_init__(self) -> None:
        if self.selection not in POLICIES:
            raise ValueError(f"selection must be one of {', '.join(POLICIES)}, got {self.selection!r}")
        if not 0 <= self.pass_low <= self.pass_high <= self.pass_k:
            raise ValueError(f"need 0 <= pass_low <= pass_high <= pass_k, got {self.pass_low}, {self.pass_high}, {self.pass_k}")
        for name in ("steps", "prompts_per_step", "samples_per_prompt", "max_tokens", "ppo_epochs", "minibatches",
                     "pass_k", "n_candidates", "save_every", "concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.minibatches > self.prompts_per_step * self.samples_per_prompt:
            raise ValueError("minibatches must not exceed prompts_per_step x samples_per_prompt")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0: PPO needs the sampling distribution's log-probabilities")
        if not 0 < self.clip < 1:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if self.eval_n < 0:
            raise ValueError(f"eval_n must be >= 0, got {self.eval_n}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RlConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown RlConfig keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> RlConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


__all__ = ["RlConfig"]
