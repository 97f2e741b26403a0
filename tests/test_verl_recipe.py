"""The MGRD RL stage expressed for verl: the config composes over verl's own ppo_trainer schema and passes
verl's validate_config, the reward function scores crafted outputs (also when verl loads it), the dataset
builder round-trips, and pass@8 selection keeps 3..6 correct of 8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio_rt.training.data.tasks import Sample
from stepaudio_rt.training.verl import dataset as ds
from stepaudio_rt.training.verl.reward import compute_score
from stepaudio_rt.training.verl.selection import count_correct, select_by_pass_count, select_rollouts

RECIPE_DIR = Path(__file__).resolve().parent.parent / "stepaudio_rt" / "training" / "verl"
DEMO_CKPT = Path(__file__).resolve().parent.parent / "stepaudio_rt" / "demo_checkpoint"
AUDIO = {"task": "beep_count", "modality": "audio"}
TEXT = {"task": "text_arithmetic", "modality": "text"}


# ------------------------------------------------------------------------------------------- reward


@pytest.mark.parametrize(
    ("source", "response", "truth", "info", "score"),
    [
        ("stepaudio_audio", "I detect 3 separate tone bursts.\n</think>\nI hear 3 beeps.", "3", AUDIO, 1.0),
        ("stepaudio_audio", "\n</think>\nI hear 3 beeps.", "3", AUDIO, 0.8),  # correct, empty think block
        ("stepaudio_audio", "I detect 4 separate tone bursts.\n</think>\nI hear 4 beeps.", "3", AUDIO, 0.2),
        ("stepaudio_audio", "\n</think>\nI hear 4 beeps.", "3", AUDIO, 0.0),
        # malformed think blocks score nothing, whatever the reply says
        ("stepaudio_audio", "I detect 3 tone bursts, so 3 beeps", "3", AUDIO, 0.0),  # never closed
        ("stepaudio_audio", "x\n</think>\nI hear 2.\n</think>\nI hear 3 beeps.", "3", AUDIO, 0.0),  # closed twice
        ("stepaudio_audio", "x <think> y\n</think>\nI hear 3 beeps.", "3", AUDIO, 0.0),  # opened again
        # a response that opens its own block (template without the prefix) counts the same
        ("stepaudio_audio", "<think>\nthree bursts\n</think>\nI hear 3 beeps.", "3", AUDIO, 1.0),
        # text questions: binary, reasoning earns nothing
        ("stepaudio_text", "12 plus 7: 2 plus 7 is 9, 1 plus 0 is 1, so 19.\n</think>\n12 plus 7 is 19.", "19", TEXT, 1.0),
        ("stepaudio_text", "\n</think>\n12 plus 7 is 18.", "19", TEXT, 0.0),
        ("stepaudio_text", "\n</think>\n12 plus 7 is 19.", "19", TEXT, 1.0),
    ],
)
def test_reward_scores_crafted_outputs(source: str, response: str, truth: str, info: dict, score: float) -> None:
    out = compute_score(source, response, truth, info)
    assert out["score"] == pytest.approx(score)
    assert set(out) >= {"score", "correct", "reasoning", "well_formed", "audio"}


def test_reward_without_a_task_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="task"):
        compute_score("stepaudio_audio", "\n</think>\n3", "3", {})


# ------------------------------------------------------------------------------------------ dataset


def _samples() -> list[Sample]:
    rng = np.random.default_rng(0)
    clip = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000) + 0.01 * rng.standard_normal(8000)).astype(np.float32)
    return [
        Sample("beep_count", clip, "How many beeps do you hear?", "I detect 3 separate tone bursts.", "I hear 3 beeps.", "3", {}),
        Sample("text_arithmetic", None, "What is 12 plus 7?", "", "12 plus 7 is 19.", "19", {}),
        Sample("spoken_arithmetic", clip[::-1].copy(), "", "", "", "41", {}),
    ]


@pytest.mark.parametrize("embed", ["bytes", "path"])
def test_dataset_builder_round_trips_through_parquet(tmp_path: Path, embed: str) -> None:
    samples = _samples()
    path = ds.write_rl_parquet(samples, tmp_path / "train.parquet", "train", embed)  # type: ignore[arg-type]
    rows = ds.read_rl_parquet(path)
    assert [r["data_source"] for r in rows] == ["stepaudio_audio", "stepaudio_text", "stepaudio_audio"]
    assert rows[0]["prompt"][1] == {"role": "user", "content": "How many beeps do you hear?\n<audio>"}
    assert rows[1]["prompt"][1]["content"] == "What is 12 plus 7?" and rows[1]["audios"] is None
    assert rows[2]["prompt"][1]["content"] == "<audio>"  # a question spoken only
    assert rows[0]["prompt"][0]["role"] == "system"
    for r, s, i in zip(rows, samples, range(3), strict=True):
        assert r["reward_model"] == {"style": "rule", "ground_truth": s.label}
        assert r["extra_info"]["task"] == s.task and r["extra_info"]["index"] == i
        if s.audio is not None:
            (entry,) = r["audios"]
            assert entry["sampling_rate"] == 16000
            assert isinstance(entry["audio"], bytes if embed == "bytes" else str)
            np.testing.assert_allclose(ds.decode_audio(entry), s.audio, atol=1 / 32768 + 1e-7)  # 16-bit
    # the reward reads what the builder wrote
    r = rows[0]
    assert compute_score(r["data_source"], "x\n</think>\nI hear 3 beeps.", r["reward_model"]["ground_truth"], r["extra_info"])["score"] == 1.0


# ---------------------------------------------------------------------------------------- selection


def test_pass_at_8_keeps_three_to_six_correct() -> None:
    assert select_by_pass_count([0, 1, 2, 3, 4, 5, 6, 7, 8]) == [3, 4, 5, 6]
    assert select_by_pass_count([8, 0]) == []
    with pytest.raises(ValueError):
        select_by_pass_count([1], lo=5, hi=2)


def test_selection_script_scores_rollouts_and_writes_the_kept_rows(tmp_path: Path) -> None:
    import pandas as pd

    samples = _samples()[:2]
    rows = ds.read_rl_parquet(ds.write_rl_parquet(samples, tmp_path / "d.parquet"))
    right, wrong = "ok\n</think>\nI hear 3 beeps.", "ok\n</think>\nI hear 5 beeps."
    rows[0]["responses"] = [right] * 4 + [wrong] * 4  # 4 of 8: kept
    rows[1]["responses"] = ["\n</think>\n12 plus 7 is 19."] * 8  # 8 of 8: too easy
    assert count_correct(rows[0], rows[0]["responses"]) == 4
    pd.DataFrame(rows).to_parquet(tmp_path / "rollouts.parquet", index=False)
    report = select_rollouts(tmp_path / "rollouts.parquet", tmp_path / "selected.parquet")
    assert report["selected"] == 1 and report["selected_fraction"] == 0.5
    assert report["correct_count_histogram"] == {4: 1, 8: 1}
    kept = ds.read_rl_parquet(tmp_path / "selected.parquet")
    assert len(kept) == 1 and "responses" not in kept[0] and kept[0]["extra_info"]["task"] == "beep_count"


# ------------------------------------------------------------------------------------ verl's schema


def _compose(overrides: list[str]):  # type: ignore[no-untyped-def]
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(RECIPE_DIR), version_base=None):
        return compose(config_name="mgrd_ppo", overrides=overrides)


def test_ppo_config_composes_over_verls_schema_with_the_papers_settings() -> None:
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    import stepaudio_rt.training.verl.registration  # noqa: F401  (what external_lib does in a worker)

    ckpt = str(DEMO_CKPT)  # verl reads the model config: any checkpoint in the official layout
    cfg = _compose([f"actor_rollout_ref.model.path={ckpt}", f"critic.model.path={ckpt}"])
    a, actor, rollout = cfg.algorithm, cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert (a.adv_estimator, a.gamma, a.lam, a.use_kl_in_reward, a.kl_ctrl.kl_coef) == ("gae", 1.0, 1.0, False, 0.0)
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.use_kl_loss, actor.kl_loss_coef) == (0.2, 0.2, False, 0.0)
    assert (rollout.name, rollout.n) == ("vllm", 16)
    assert cfg.data.max_prompt_length + cfg.data.max_response_length == 10240
    assert cfg.data.audio_key == "audios"
    assert cfg.actor_rollout_ref.model.external_lib == "stepaudio_rt.training.verl.registration"
    assert need_critic(cfg) and not need_reference_policy(cfg)  # a critic, no reference model (no KL)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    # verl loads our reward function from the config and calls it as its reward manager does
    fn = get_custom_reward_fn(cfg)
    assert fn("stepaudio_audio", "x\n</think>\nI hear 3 beeps.", "3", AUDIO)["score"] == 1.0


def test_a_key_verl_does_not_know_is_rejected() -> None:
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        _compose(["algorithm.gama=1.0"])


def test_verls_rl_dataset_reads_the_parquet_into_text_and_audio_parts(tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    samples = _samples()[:2]
    path = ds.write_rl_parquet(samples, tmp_path / "train.parquet")
    cfg = OmegaConf.create({"filter_overlong_prompts": False, "audio_key": "audios", "cache_dir": str(tmp_path)})
    # the processor is only asserted to exist here (it runs in the rollout's agent loop, not in the dataset)
    data = RLHFDataset(data_files=[str(path)], tokenizer=None, config=cfg, processor=object())
    audio_row, text_row = data[0], data[1]
    user = audio_row["raw_prompt"][1]["content"]
    assert [p["type"] for p in user] == ["text", "audio"] and user[0]["text"] == "How many beeps do you hear?\n"
    assert user[1]["sampling_rate"] == 16000
    np.testing.assert_allclose(ds.decode_audio(user[1]), samples[0].audio, atol=1 / 32768 + 1e-7)
    assert text_row["raw_prompt"][1]["content"] == "What is 12 plus 7?"
    assert audio_row["reward_model"]["ground_truth"] == "3" and audio_row["extra_info"]["task"] == "beep_count"


def test_selection_sends_the_audio_as_an_input_audio_part(tmp_path: Path) -> None:
    import base64
    import io

    import soundfile as sf

    from stepaudio_rt.training.verl.selection import chat_messages

    rows = ds.read_rl_parquet(ds.write_rl_parquet(_samples()[:2], tmp_path / "d.parquet"))
    system, user = chat_messages(rows[0])
    assert system["role"] == "system" and isinstance(system["content"], str)
    assert [p["type"] for p in user["content"]] == ["text", "input_audio"]
    wav = base64.b64decode(user["content"][1]["input_audio"]["data"])
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    assert sr == 16000 and len(audio) == len(_samples()[0].audio)
    assert chat_messages(rows[1])[1] == {"role": "user", "content": "What is 12 plus 7?"}
