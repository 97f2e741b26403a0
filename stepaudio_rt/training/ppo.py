"""PPO's math for the RL stage: terminal rewards, GAE, the clipped policy loss and the value loss.

Pure functions on ``[B, T]`` tensors over the response tokens (``mask`` 1 on real tokens, 0 on padding).
The formulas are verl's (``verl.trainer.ppo.core_algos``: ``compute_gae_advantage_return``,
``compute_policy_loss_vanilla``, ``compute_value_loss``, ``masked_whiten``, token-mean aggregation), so
the toy stage here and the full-scale verl config optimise the same objective.

Why our own ~80 lines and not a library: TRL removed its PPO trainer and value-head models (reference
``training-stack.md`` §2.1), and its GRPO/RLOO trainers are critic-free and image-only; importing verl's
``core_algos`` pulls in Ray and verl's data protocol (about 10 s per import, and verl pins a transformers
older than the one this project runs). The paper's settings make the math small anyway.

With gamma = lambda = 1 and the reward only at the last token, GAE telescopes: the advantage of every
token is ``R - V(s_t)`` and every token's return is ``R`` (reference §4); ``tests/test_training_rl.py``
checks that and the general gamma/lambda recursion against hand-computed values.
"""

from __future__ import annotations

import torch


def terminal_rewards(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` rewards: each sequence's score on its last real token, zero elsewhere (verl's reward
    managers write the score at ``valid_response_length - 1``)."""
    rewards = torch.zeros_like(mask, dtype=torch.float32)
    last = mask.long().sum(-1) - 1
    if bool((last < 0).any()):
        raise ValueError("every response needs at least one token")
    rewards[torch.arange(mask.shape[0]), last] = scores.float()
    return rewards


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance over the real tokens of the batch (verl whitens GAE advantages)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if n > 1:  # unbiased, as verl's masked_var
        var = var * n / (n - 1)
    return (x - mean) * torch.rsqrt(var + eps) * mask


@torch.no_grad()
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both ``[B, T]`` and zero on padding.

    ``delta_t = r_t + gamma V_{t+1} - V_t``, ``A_t = delta_t + gamma lam A_{t+1}``, with ``V`` and ``A``
    zero after the last real token; ``returns = A + V`` are the value targets."""
    mask = mask.float()
    values = values * mask
    b, t = rewards.shape
    next_value = torch.zeros(b, dtype=values.dtype, device=values.device)
    next_adv = torch.zeros_like(next_value)
    advantages = torch.zeros_like(values)
    for i in reversed(range(t)):
        delta = rewards[:, i] + gamma * next_value - values[:, i]
        adv = delta + gamma * lam * next_adv
        # a padding position passes the next real token's values through (right padding: there are none)
        next_adv = adv * mask[:, i] + next_adv * (1 - mask[:, i])
        next_value = values[:, i] * mask[:, i] + next_value * (1 - mask[:, i])
        advantages[:, i] = adv
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clip fraction): ``mean_t max(-A r, -A clip(r, 1 - clip, 1 + clip))`` with
    ``r = exp(logp - old_logp)``, token-mean over the batch; the clip fraction is the share of tokens
    where the clipped term is the larger (those whose gradient is cut)."""
    mask = mask.float()
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean(torch.gt(clipped, unclipped).float(), mask)
    return loss, clipfrac.detach()


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clip fraction): ``0.5 mean_t max((V - G)^2, (V_old + clip(V - V_old, +-clip) - G)^2)``,
    token-mean; ``clip=None`` is the plain squared error. The clipped form is verl's critic loss
    (``critic.cliprange_value`` 0.5): see ``RlConfig.value_clip`` for why the stage keeps it."""
    mask = mask.float()
    err = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(err, mask), torch.zeros(())
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    err_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    return loss, masked_mean(torch.gt(err_clipped, err).float(), mask).detach()


__all__ = ["gae", "masked_mean", "masked_whiten", "policy_loss", "terminal_rewards", "value_loss"]
