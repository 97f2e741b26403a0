"""Self-cognition DPO: the loss against a hand-computed value, pair construction, and a miniature stage on
a tiny checkpoint (sampling through the serving engine, training, resume, probes before/after)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.training import dpo
from stepaudio_rt.training import self_cognition as sc
from stepaudio_rt.training.data.tasks import Sample


def test_dpo_loss_matches_a_hand_computed_value() -> None:
    # policy log p: chosen -1.0, rejected -2.0; reference: both -1.5; beta 0.1
    # margin = 0.1 * ((-1.0 + 1.5) - (-2.0 + 1.5)) = 0.1; loss = -log sigmoid(0.1) = log(1 + e^-0.1)
    loss, m = dpo.dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), 0.1)
    assert float(loss) == pytest.approx(0.6443969, abs=1e-6)
    assert m["reward_chosen"] == pytest.approx(0.05) and m["reward_rejected"] == pytest.approx(-0.05)
    assert m["margin"] == pytest.approx(0.1) and m["accuracy"] == 1.0
    # a pair the policy prefers the wrong way: 0.5 * ((-3 + 2) - (-1 + 0.4)) = -0.2 -> log(1 + e^0.2) = 0.7981389
    loss, m = dpo.dpo_loss(torch.tensor([-3.0]), torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-0.4]), 0.5)
    assert float(loss) == pytest.approx(0.7981389, abs=1e-6) and m["accuracy"] == 0.0


def test_dpo_config_round_trips_and_rejects_bad_values() -> None:
    cfg = dpo.DpoConfig.mini()
    assert dpo.DpoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        dpo.DpoConfig.from_dict({"betta": 0.1})
    with pytest.raises(ValueError, match="beta"):
        dpo.DpoConfig(beta=0)


def test_sequence_logps_sums_the_shifted_target_tokens() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]]))  # [1, 3, 2]
    labels = torch.tensor([[-100, 1, 0]])  # position 1 predicted from 0 (p=0.5), position 2 from 1 (p=0.2)
    assert float(dpo.sequence_logps(logits, labels)[0]) == pytest.approx(math.log(0.5) + math.log(0.2), abs=1e-6)


def _question() -> Sample:
    return Sample("self_cognition", np.zeros(16000, np.float32), "Can you hear this?",
                  "The clip is 1.0 seconds long with sound at -20 dBFS, so there is something to hear.",
                  "Yes, I can hear it.", "yes", {})


def test_pairs_use_the_models_own_judged_samples_and_construct_the_missing_side() -> None:
    q = _question()
    own_yes = "I hear a beep.\n</think>\nYes, I can hear it.<|EOT|>"
    own_no = "\n</think>\nSorry, I am a text model and cannot hear audio.<|EOT|>"
    pairs, report = dpo.build_pairs([q, q, q], [[own_yes, own_no], ["garbage"], [own_no]])
    assert (pairs[0].chosen_source, pairs[0].rejected_source) == ("model", "model")
    assert pairs[0].chosen_reply == "Yes, I can hear it." and sc.flags(pairs[0].rejected_reply)
    assert (pairs[1].chosen_source, pairs[1].rejected_source) == ("constructed", "constructed")
    assert pairs[1].chosen_think == q.think and pairs[1].rejected_reply in dpo.CONSTRUCTED_REJECTIONS
    assert (pairs[2].chosen_source, pairs[2].rejected_source) == ("constructed", "model")
    assert report == {"questions": 3, "chains": 4, "flagged_chains": 2, "pairs": 3, "chosen_from_model": 1,
                      "chosen_constructed": 2, "rejected_from_model": 2, "rejected_constructed": 1}
    assert all(sc.flags(r) for r in dpo.CONSTRUCTED_REJECTIONS)


def test_miniature_dpo_stage_trains_resumes_and_reports_the_error_rate(tmp_path: Path) -> None:
    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    cfg = dpo.DpoConfig.mini()
    out = dpo.run_dpo_stage(ckpt, tmp_path / "out", tmp_path / "work", cfg)
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    work = tmp_path / "work"
    metrics = json.loads((work / "metrics.json").read_text())
    assert metrics["pairs"]["pairs"] == cfg.n_questions
    assert metrics["pairs"]["chains"] == cfg.n_questions * cfg.k
    assert 0.0 <= metrics["self_cognition_error_before"] <= 1.0
    assert 0.0 <= metrics["self_cognition_error_after"] <= 1.0
    log = [json.loads(x) for x in (work / "dpo_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in log)
    # at step 1 the policy is the reference: margin 0, loss log 2
    assert log[0]["loss"] == pytest.approx(math.log(2), abs=1e-4) and log[0]["margin"] == pytest.approx(0, abs=1e-4)
    # the weights moved
    from stepaudio_rt.model.checkpoint import load_checkpoint

    a, b = load_checkpoint(ckpt, progress=False).model, load_checkpoint(out, progress=False).model
    assert not torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert torch.equal(a.encoder.conv1.weight, b.encoder.conv1.weight)  # the encoder stays frozen
    # resume: three more steps continue from the saved state (step 3) and log only steps 4-6
    (work / "metrics.json").unlink()
    dpo.run_dpo_stage(ckpt, tmp_path / "out", work, dpo.DpoConfig.mini(steps=6))
    log = [json.loads(x) for x in (work / "dpo_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
