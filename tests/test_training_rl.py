"""The RL stage (issue 13): PPO math against hand-computed values, the verifiable reward, pass@k selection,
and a miniature end-to-end PPO stage on a tiny checkpoint through the serving engine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio_rt.model.checkpoint import load_checkpoint
from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.training import ppo
from stepaudio_rt.training.data.catalog import generate
from stepaudio_rt.training.data.verify import check_answer
from stepaudio_rt.training.rewards import parse_completion, score
from stepaudio_rt.training.rl_config import RlConfig
from stepaudio_rt.training.rlvr import ValueHead, load_rl_log, policy_forward, run_rl_stage
from stepaudio_rt.training.selection import report, select

# ------------------------------------------------------------------------------------------- PPO math


def test_gae_with_gamma_lambda_one_is_final_reward_minus_value() -> None:
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    values = torch.tensor([[0.5, 0.2, 0.9], [0.3, -0.1, 7.0]])  # 7.0 sits on padding: must be ignored
    rewards = ppo.terminal_rewards(torch.tensor([1.0, 0.0]), mask)
    assert rewards.tolist() == [[0, 0, 1], [0, 0, 0]]
    adv, ret = ppo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # A_t = R - V(s_t), returns = R on every real token, zero on padding
    assert torch.allclose(adv, torch.tensor([[0.5, 0.8, 0.1], [-0.3, 0.1, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))


def test_gae_general_gamma_lambda_hand_computed() -> None:
    mask = torch.ones(1, 3)
    values = torch.tensor([[0.5, 0.2, 0.9]])
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    adv, ret = ppo.gae(rewards, values, mask, gamma=0.5, lam=0.5)
    # delta2 = 1 - 0.9 = 0.1; delta1 = 0.5*0.9 - 0.2 = 0.25; delta0 = 0.5*0.2 - 0.5 = -0.4
    # A2 = 0.1; A1 = 0.25 + 0.25*0.1 = 0.275; A0 = -0.4 + 0.25*0.275 = -0.33125
    assert torch.allclose(adv, torch.tensor([[-0.33125, 0.275, 0.1]]))
    assert torch.allclose(ret, torch.tensor([[0.16875, 0.475, 1.0]]))


def test_clipped_policy_loss_hand_computed_clipping_both_ways() -> None:
    old = torch.tensor([[-1.0, -2.0, -0.5, -1.5]])
    ratio = torch.tensor([[1.5, 0.5, 0.5, 1.5]])
    logp = (old + ratio.log()).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    loss, clipfrac = ppo.policy_loss(logp, old, adv, mask, clip=0.2)
    # a: A=+1, r=1.5 -> max(-1.5, -1.2) = -1.2 (clipped above); b: A=-1, r=0.5 -> max(0.5, 0.8) = 0.8
    # (clipped below); c: A=+1, r=0.5 -> max(-0.5, -0.8) = -0.5; d: A=-1, r=1.5 -> max(1.5, 1.2) = 1.5
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 0.5 + 1.5) / 4)
    assert clipfrac.item() == pytest.approx(0.5)
    loss.backward()
    # clipped tokens get no gradient; d loss / d logp = -A r / 4 on the others
    assert logp.grad is not None
    assert torch.allclose(logp.grad, torch.tensor([[0.0, 0.0, -0.125, 0.375]]))


def test_policy_loss_ignores_padding() -> None:
    old = torch.zeros(1, 2)
    logp = torch.tensor([[np.log(1.1), 5.0]])
    loss, _ = ppo.policy_loss(logp, old, torch.tensor([[1.0, 100.0]]), torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx(-1.1)


def test_value_loss_clipped_and_plain_hand_computed() -> None:
    new, old = torch.tensor([[0.9, 0.4]]), torch.tensor([[0.2, 0.3]])
    ret, mask = torch.tensor([[1.0, 0.0]]), torch.ones(1, 2)
    # token 1: V moved 0.7 > 0.5 -> clipped V 0.7, (0.7 - 1)^2 = 0.09 > (0.9 - 1)^2 = 0.01; token 2: 0.16
    loss, frac = ppo.value_loss(new, old, ret, mask, clip=0.5)
    assert loss.item() == pytest.approx(0.5 * (0.09 + 0.16) / 2)
    assert frac.item() == pytest.approx(0.5)
    plain, _ = ppo.value_loss(new, old, ret, mask, clip=None)
    assert plain.item() == pytest.approx(0.5 * (0.01 + 0.16) / 2)


def test_whitened_advantages_have_zero_mean_unit_variance_on_real_tokens() -> None:
    adv = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    w = ppo.masked_whiten(adv, mask)
    real = w[mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert real.std().item() == pytest.approx(1.0, abs=1e-4)
    assert w[1, 1:].tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------------------------- reward


@pytest.mark.parametrize(
    ("completion", "reward", "problem"),
    [
        ("I count 3 separate beeps.\n</think>\nI heard 3 beeps.", 1.0, ""),  # correct with reasoning
        ("\n</think>\nI heard 3 beeps.", 0.8, ""),  # correct, empty think block
        ("I count 3 separate beeps.\n</think>\nI heard 5 beeps.", 0.2, ""),  # wrong with reasoning
        ("\n</think>\nI heard 5 beeps.", 0.0, ""),
        ("I count 3 separate beeps. So there are 3 beeps", 0.0, "unclosed"),  # budget ran out
        ("<think>3 beeps</think>\n</think>\nI heard 3 beeps.", 0.0, "extra_tags"),  # a second block
        ("3 beeps\n</think>\nI heard 3 beeps.\n</think>\n3", 0.0, "extra_tags"),  # closed twice
    ],
)
def test_audio_reward_is_correct_08_plus_reasoning_02_and_malformed_is_zero(
    completion: str, reward: float, problem: str
) -> None:
    r = score("beep_count", completion, "3", has_audio=True)
    assert r.reward == pytest.approx(reward)
    assert parse_completion(completion).problem == problem
    assert r.well_formed == (problem == "")
    if r.well_formed:  # the reward's correctness is the eval verifier's
        assert r.correct == check_answer("beep_count", completion, "3")


def test_text_reward_is_binary_and_format_reward_off_makes_audio_binary() -> None:
    ok, wrong = "7 + 12 = 19\n</think>\nThe answer is 19.", "7 + 12 = 18\n</think>\nThe answer is 18."
    assert score("text_arithmetic", ok, "19", has_audio=False).reward == 1.0
    assert score("text_arithmetic", "\n</think>\nThe answer is 19.", "19", has_audio=False).reward == 1.0
    assert score("text_arithmetic", wrong, "19", has_audio=False).reward == 0.0
    # a spoken question without its audio attached is scored as text
    assert score("beep_count", "\n</think>\nI heard 3 beeps.", "3", has_audio=False).reward == 1.0
    assert score("beep_count", "\n</think>\nI heard 3 beeps.", "3", True, format_reward=False).reward == 1.0
    assert score("beep_count", "3 beeps\n</think>\nI heard 4 beeps.", "3", True, format_reward=False).reward == 0.0


# ------------------------------------------------------------------------------------------ selection


def test_pass_band_selection_keeps_exactly_three_to_six() -> None:
    counts = [0, 1, 2, 3, 4, 5, 6, 7, 8, 3, 6, 2]
    tasks = ["a"] * 6 + ["b"] * 6
    kept = select(counts, "band", 3, 6)
    assert kept == [3, 4, 5, 6, 9, 10]
    assert select(counts, "failed") == [0]
    assert select(counts, "all") == list(range(12))
    rep = report(counts, tasks, kept, "band", 8)
    assert rep["selected_fraction"] == pytest.approx(6 / 12)
    assert rep["pass_histogram"]["3"] == 2 and rep["pass_histogram"]["0"] == 1
    assert rep["per_task"]["a"] == {"candidates": 6, "selected": 3, "mean_pass_rate": pytest.approx(15 / 48)}
    with pytest.raises(ValueError, match="unknown selection policy"):
        select(counts, "easy")


# ------------------------------------------------------------------------------------- the RL stage


def _questions() -> list:
    rng = np.random.default_rng(3)
    return [generate(t, rng, "train", True) for t in ("text_arithmetic", "beep_count", "tone_compare", "text_arithmetic")]


def test_policy_forward_scores_the_tokens_the_engine_sampled(tmp_path: Path) -> None:
    """Prompt, audio and response positions line up: at a low temperature the engine samples the policy's
    top token, so the trainer's forward gives it probability ~1 (a shifted position would not)."""
    from stepaudio_rt.model.engine import checkpoint_listen_chunk_seconds
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.training.rlvr import _encoder_features
    from stepaudio_rt.training.rollout import sample_completions

    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    qs = _questions()[:2]  # one typed, one with audio
    engine = TorchEngine.from_pretrained(ckpt, max_contexts=16, max_context_tokens=512, progress=False)
    try:
        groups = sample_completions(engine, qs, k=2, temperature=0.05, max_tokens=12, seed=0, concurrency=2)
    finally:
        asyncio.run(engine.aclose())
    policy = load_checkpoint(ckpt, progress=False).model
    feats = _encoder_features(policy, qs, checkpoint_listen_chunk_seconds(engine.generation_config))
    assert len(feats[0]) == 0 and len(feats[1]) >= 1
    rows = [c for g in groups for c in g]
    tok = load_checkpoint(ckpt, progress=False).tokenizer
    with torch.no_grad():
        fw = policy_forward(policy, ValueHead(policy.config.hidden_size), rows, feats, tok.ids.audio_patch, 0, 0.05)
    probs = fw.logp.exp()[fw.mask.bool()]  # at the sampling temperature
    assert len(probs) == sum(len(r.response_ids) for r in rows)
    assert probs.mean().item() > 0.9, probs


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_checkpoint(path, progress=False).model.state_dict().items()}


def test_miniature_rl_stage_trains_resumes_and_keeps_the_official_layout(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    work = tmp_path / "work"
    qs = _questions()
    run_rl_stage(ckpt, tmp_path / "out_a", work, RlConfig.mini(steps=2, save_every=1), questions=qs, progress=False)
    first = load_rl_log(work / "rl_log.jsonl")
    assert [r["step"] for r in first] == [1, 2]
    for key in ("mean_reward", "mean_think_tokens", "accuracy", "clip_fraction", "value_loss"):
        assert all(np.isfinite(r[key]) for r in first), key
    assert torch.load(work / "state.pt", weights_only=False)["step"] == 2
    table = json.loads((work / "pass_table.json").read_text())
    assert len(table["counts"]) == len(qs)

    # the same work directory with nothing left to run: the saved step-2 state, exactly
    run_rl_stage(ckpt, tmp_path / "out_a2", work, RlConfig.mini(steps=2), questions=qs, progress=False)
    state_2 = _weights(tmp_path / "out_a")
    assert all(torch.equal(v, _weights(tmp_path / "out_a2")[k]) for k, v in state_2.items())

    # continue to 3 steps in the same work directory: resumes at step 2, runs only step 3
    out = run_rl_stage(ckpt, tmp_path / "out_b", work, RlConfig.mini(steps=3, save_every=1), questions=qs, progress=False)
    log = load_rl_log(work / "rl_log.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3]
    assert log[:2] == first

    # the trained checkpoint loads through the official path; decoder weights moved, the encoder did not
    before, after = _weights(ckpt), _weights(out)
    assert before.keys() == after.keys()
    assert not torch.equal(state_2["lm_head.weight"], after["lm_head.weight"])
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("model.layers."))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("encoder."))
    assert (work / "value_head.pt").exists() and not list(out.glob("value_head*"))
    assert (work / "rl_curves.png").stat().st_size > 0
    metrics = json.loads((work / "metrics.json").read_text())
    assert metrics["selection"]["selected"] == len(qs)

    # another learning rate in the same work directory is another run: trained from the start, not the
    # finished one returned; the pass table (same starting weights) is reused, not sampled again
    table_mtime = (work / "pass_table.json").stat().st_mtime_ns
    other = RlConfig.mini(steps=2, save_every=1, lr=RlConfig.mini().lr / 10)
    run_rl_stage(ckpt, tmp_path / "out_b", work, other, questions=qs, progress=False)
    assert [r["step"] for r in load_rl_log(work / "rl_log.jsonl")] == [1, 2]
    assert json.loads((work / "recipe.json").read_text())["config"]["lr"] == other.lr
    assert (work / "pass_table.json").stat().st_mtime_ns == table_mtime
    assert not torch.equal(_weights(tmp_path / "out_b")["lm_head.weight"], after["lm_head.weight"])


def test_rl_config_rejects_a_band_outside_k_and_zero_temperature() -> None:
    with pytest.raises(ValueError, match="pass_high"):
        RlConfig(pass_k=4, pass_high=6)
    with pytest.raises(ValueError, match="temperature"):
        RlConfig(temperature=0.0)


def test_ablation_runner_writes_side_by_side_curves_and_figures(tmp_path: Path) -> None:
    from stepaudio_rt.training.ablations import VARIANTS, run_rl_ablations

    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    # a random model fails everything: a band of [0, 2] out of 2 keeps every question, as failed-only does
    cfg = RlConfig.mini(steps=2, pass_low=0, pass_high=2)
    summary = run_rl_ablations(ckpt, tmp_path / "out", tmp_path / "work", cfg, questions=_questions(), progress=False)
    assert set(summary["variants"]) == set(VARIANTS)
    for name, v in summary["variants"].items():
        assert [r["step"] for r in v["curves"]] == [1, 2], name
        assert v["settings"] == VARIANTS[name]
        assert v["selection"]["policy"] == VARIANTS[name]["selection"]
    # one pass table for all variants, sampled once from the starting checkpoint (copied: same mtime)
    tables = [tmp_path / "work" / n / "pass_table.json" for n in VARIANTS]
    assert len({t.stat().st_mtime_ns for t in tables}) == 1
    for title in ("format", "selection"):
        assert (tmp_path / "out" / f"ablation_rl_{title}.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "ablation_rl.json").read_text())["variants"].keys() == set(VARIANTS)


def test_rollout_engine_decodes_with_the_policys_updated_weights(tmp_path: Path) -> None:
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.training.rlvr import sync_rollout_weights

    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    policy = load_checkpoint(ckpt, progress=False).model
    engine = TorchEngine.from_pretrained(ckpt, max_contexts=2, max_context_tokens=64, progress=False)
    try:
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(0.01 * torch.randn_like(p))
        sync_rollout_weights(engine, policy)
        attn = policy.model.layers[0].self_attn
        fused_qkv = engine._qkv[0][0]  # what the engine's decode multiplies by
        assert torch.equal(fused_qkv, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        mlp = policy.model.layers[1].mlp
        assert torch.equal(engine._gate_up[1], torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]))
        assert torch.equal(engine.model.lm_head.weight, policy.lm_head.weight)
    finally:
        asyncio.run(engine.aclose())
