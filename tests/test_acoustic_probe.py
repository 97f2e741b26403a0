"""The training-only acoustic and frame heads (``training.acoustic_probe``): targets, the ridge fit, the loss,
and their place in ``train_sft`` (saved with the state, resumed, never in the checkpoint)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from stepaudio_rt.model.audio_frontend import SAMPLE_RATE
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.testing import tiny_config, tiny_tokenizer
from stepaudio_rt.training.acoustic_probe import (
    ACOUSTIC_KEYS,
    FRAME_KEYS,
    FRAME_SECONDS,
    acoustic_probe_loss,
    acoustic_targets,
    fit_head,
    frame_targets,
    pooled_frames,
)
from stepaudio_rt.training.config import DemoConfig
from stepaudio_rt.training.sft import encode_chunks, tokenize_example, train_sft


@dataclass
class _Sample:
    meta: dict = field(default_factory=dict)


def test_targets_are_standardised_per_value_log_for_pitch_and_nan_where_unmeasured() -> None:
    samples = [
        _Sample({"measured": {"f0_hz": 100.0, "rms_dbfs": -30.0, "snr_db": 60.0}}),
        _Sample({"measured": {"f0_hz": 400.0, "rms_dbfs": -10.0, "snr_db": 10.0, "rate_sps": 4.0}}),
        _Sample({}),  # typed question: no audio, no chunks
        _Sample({"measured": {"rms_dbfs": -20.0, "f0_hz": None, "snr_db": float("nan")}}),
    ]
    per_clip = [[0, 1], [2], [], [3]]  # the first clip was cut into two listen chunks
    t = acoustic_targets(samples, per_clip, 4)
    f0, rms, snr, rate = (ACOUSTIC_KEYS.index(k) for k in ("f0_hz", "rms_dbfs", "snr_db", "rate_sps"))
    assert t.shape == (4, len(ACOUSTIC_KEYS)) and t.dtype == np.float32
    assert t[0, f0] == t[1, f0] < 0 < t[2, f0] and math.isnan(
        t[3, f0]
    )  # both chunks carry their clip's value
    # log scale: 100 and 400 Hz are one log2-unit either side of 200 Hz, so they standardise to -1 / +1
    # over the three pitched chunks (two at 100 Hz): mean log2 = log2(100) + 2/3
    present = t[:3, f0]
    assert abs(float(present.mean())) < 1e-5 and abs(float(present.std()) - 1.0) < 1e-5
    levels = np.array([-30.0, -30.0, -10.0, -20.0])  # per chunk
    assert abs(t[3, rms] - (-20.0 - levels.mean()) / levels.std()) < 1e-5
    assert math.isnan(t[3, snr]) and np.isnan(t[:, rate]).sum() == 3  # only clip 2 has a rate


def test_ridge_fit_recovers_a_linear_read_out_and_the_loss_skips_unmeasured_values() -> None:
    torch.manual_seed(0)
    pooled = torch.randn(300, 16)
    w = torch.randn(16, 2)
    targets = pooled @ w + 0.01 * torch.randn(300, 2)
    targets[::3, 1] = float("nan")  # a value measured on only some clips
    head = nn.Linear(16, 2)
    before = acoustic_probe_loss(head, pooled, targets)
    fit_head(head, pooled, targets)
    after = acoustic_probe_loss(head, pooled, targets)
    assert before is not None and after is not None
    assert after.item() < 1e-3 < before.item()
    assert math.isfinite(after.item())
    assert acoustic_probe_loss(head, pooled, torch.full((300, 2), float("nan"))) is None


def test_pooled_frames_average_only_the_real_frames_of_each_chunk() -> None:
    adapted = torch.zeros(2, 4, 3)
    adapted[0, :2] = 1.0  # chunk 0: 2 real frames, then padding
    adapted[1] = 2.0
    got = pooled_frames(adapted, [2, 4])
    assert torch.equal(got, torch.tensor([[1.0] * 3, [2.0] * 3]))


def test_train_sft_fits_saves_and_resumes_the_head_and_the_checkpoint_stays_the_module_tree(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(audio_state=32)
    model = StepAudio2ForCausalLM(cfg)
    tok = tiny_tokenizer(cfg.vocab_size)
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(SAMPLE_RATE).astype(np.float32) * a for a in (0.01, 0.03, 0.1, 0.3)]
    store, per_clip = encode_chunks(model.encoder, clips, progress=False)
    samples = [_Sample({"measured": {"rms_dbfs": 20 * math.log10(a)}}) for a in (0.01, 0.03, 0.1, 0.3)]
    store.acoustic = acoustic_targets(samples, per_clip, len(store.tokens))
    examples = [
        tokenize_example(tok, "how loud?", "", "ok", [int(store.tokens[c]) for c in ids], ids, "loudness")
        for ids in per_clip
    ]
    run_cfg = DemoConfig.mini(
        steps=2, first_phase_steps=0, first_phase_leads={}, acoustic_weight=1.0, batch_size=4
    )
    train_sft(model, examples, store, tok, run_cfg, tmp_path / "sft", resume=False, progress=False)
    state = torch.load(tmp_path / "sft" / "state.pt", weights_only=False)
    assert set(state["acoustic_head"]) == {"weight", "bias"}
    assert state["acoustic_head"]["weight"].shape == (len(ACOUSTIC_KEYS), cfg.text.hidden_size)
    assert not any(k.startswith("acoustic") for k in model.state_dict())  # not part of the checkpoint
    # with the head on, the audio losses are larger than without it (same data, same seed)
    with_head = [r["aux_loss"] for r in _log(tmp_path / "sft")]
    torch.manual_seed(0)
    plain = StepAudio2ForCausalLM(cfg)
    train_sft(
        plain,
        examples,
        store,
        tok,
        DemoConfig.mini(steps=2, first_phase_steps=0, first_phase_leads={}, batch_size=4, acoustic_weight=0.0),
        tmp_path / "plain",
        resume=False,
        progress=False,
    )
    assert with_head[0] > [r["aux_loss"] for r in _log(tmp_path / "plain")][0]
    # resume continues with the saved head and optimiser (2 more steps)
    more = DemoConfig.mini(
        steps=4, first_phase_steps=0, first_phase_leads={}, acoustic_weight=1.0, batch_size=4
    )
    train_sft(model, examples, store, tok, more, tmp_path / "sft", resume=True, progress=False)
    assert [r["step"] for r in _log(tmp_path / "sft")] == [1, 2, 3, 4]


def _tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


def test_frame_targets_give_each_frame_its_time_in_its_chunk_and_whether_the_clip_sounds_there() -> None:
    from stepaudio_rt.model.audio_frontend import split_at_pauses

    # 0.48 s silence, 0.96 s tone, 2.4 s silence, 0.96 s tone, 0.32 s silence: 5.12 s, two listen chunks,
    # the cut inside the long silence (where the server cuts a live stream)
    clip = np.concatenate([_silence(0.48), _tone(0.96), _silence(2.4), _tone(0.96), _silence(0.32)])
    short = np.concatenate([_silence(0.16), _tone(0.4)])  # one chunk
    clips: list[np.ndarray | None] = [clip, None, short]  # a typed turn in between has no chunks
    pieces = split_at_pauses(clip, 4.0)
    assert len(pieces) == 2
    per_clip = [[0, 1], [], [2]]
    tokens = [int(np.ceil(len(p) / SAMPLE_RATE / FRAME_SECONDS)) for p in [*pieces, short]]
    t = frame_targets(clips, per_clip, tokens, 4.0)
    assert t.shape == (sum(tokens), len(FRAME_KEYS)) and not np.isnan(t).any()
    time_s = t[:, FRAME_KEYS.index("time_s")] * 1.15 + 2.0
    sounding = t[:, FRAME_KEYS.index("sounding")] > 0
    first, second = slice(0, tokens[0]), slice(tokens[0], tokens[0] + tokens[1])
    assert np.allclose(time_s[first], np.arange(tokens[0]) * FRAME_SECONDS, atol=1e-5)
    assert np.allclose(time_s[second], np.arange(tokens[1]) * FRAME_SECONDS, atol=1e-5)  # restarts per chunk
    # the first tone covers frames 6..17 of chunk 0 (0.48-1.44 s), give or take the edge frame
    on = np.flatnonzero(sounding[first])
    assert abs(int(on[0]) - 6) <= 1 and abs(int(on[-1]) - 17) <= 1 and len(on) >= 11
    # the second tone sits at the end of the clip, in chunk 1, after the rest of the pause
    start_2 = 0.48 + 0.96 + 2.4 - len(pieces[0]) / SAMPLE_RATE
    on2 = np.flatnonzero(sounding[second])
    assert abs(on2[0] * FRAME_SECONDS - start_2) <= FRAME_SECONDS and 11 <= len(on2) <= 13
    assert sounding[tokens[0] + tokens[1] :].sum() in (5, 6)  # the short clip's 0.4 s tone


def test_train_sft_trains_saves_and_resumes_the_frame_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(audio_state=32)
    model = StepAudio2ForCausalLM(cfg)
    tok = tiny_tokenizer(cfg.vocab_size)
    clips = [np.concatenate([_silence(s), _tone(0.5), _silence(0.3)]) for s in (0.1, 0.3, 0.5, 0.7)]
    store, per_clip = encode_chunks(model.encoder, clips, progress=False)
    store.frame = frame_targets(clips, per_clip, store.tokens, 4.0)
    examples = [
        tokenize_example(tok, "when?", "", "ok", [int(store.tokens[c]) for c in ids], ids, "pause_length")
        for ids in per_clip
    ]

    def run_cfg(steps: int, weight: float) -> DemoConfig:
        return DemoConfig.mini(
            steps=steps, first_phase_steps=0, first_phase_leads={}, acoustic_weight=0.0, frame_weight=weight, batch_size=4
        )

    train_sft(model, examples, store, tok, run_cfg(2, 1.0), tmp_path / "sft", resume=False, progress=False)
    state = torch.load(tmp_path / "sft" / "state.pt", weights_only=False)
    assert state["frame_head"]["weight"].shape == (len(FRAME_KEYS), cfg.text.hidden_size)
    assert "acoustic_head" not in state and not any(k.startswith("frame") for k in model.state_dict())
    torch.manual_seed(0)
    plain = StepAudio2ForCausalLM(cfg)
    train_sft(plain, examples, store, tok, run_cfg(2, 0.0), tmp_path / "plain", resume=False, progress=False)
    assert _log(tmp_path / "sft")[0]["aux_loss"] > _log(tmp_path / "plain")[0]["aux_loss"]
    first_s = float(state["elapsed_s"])
    resumed = train_sft(model, examples, store, tok, run_cfg(4, 1.0), tmp_path / "sft", resume=True, progress=False)
    log = _log(tmp_path / "sft")
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    # the clock continues across the resume: the log's times never go back and the result counts both runs
    assert [r["elapsed_s"] for r in log] == sorted(r["elapsed_s"] for r in log) and resumed.seconds >= first_s
    # a finished stage run again reports its last loss and its time, not NaN and zero
    again = train_sft(model, examples, store, tok, run_cfg(4, 1.0), tmp_path / "sft", resume=True, progress=False)
    saved = torch.load(tmp_path / "sft" / "state.pt", weights_only=False)
    assert again.final_loss == log[-1]["loss"] and again.seconds == saved["elapsed_s"] >= first_s
    # a state saved without the head this recipe trains is refused, not silently given a fresh head
    with pytest.raises(ValueError, match="frame head"):
        train_sft(plain, examples, store, tok, run_cfg(4, 1.0), tmp_path / "plain", resume=True, progress=False)


def _log(run: Path) -> list[dict]:
    from stepaudio_rt.training.sft import load_loss_log

    return load_loss_log(run / "loss.jsonl")
