"""Error-weighted SFT's mixture: the recipe's task weights plus a share drawn where the model errs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stepaudio_rt.training.error_weighted_sft import ErrorWeightedConfig, error_weights


def test_error_share_goes_to_the_tasks_in_proportion_to_their_errors() -> None:
    base = {"beep_bursts": 0.06, "spoken_arithmetic": 0.18, "loudness": 0.035, "text_chat": 0.03}
    errors = {"beep_bursts": 0.25, "spoken_arithmetic": 0.05, "loudness": 0.0, "text_chat": 0.0}
    w = error_weights(base, errors, hard_share=0.4)
    assert sum(w.values()) == pytest.approx(1.0)
    total = sum(base.values())
    # a task the model never misses keeps its recipe share of the other 60%
    assert w["loudness"] == pytest.approx(0.6 * 0.035 / total)
    # the 40% splits 5:1 between the two tasks it misses
    assert w["beep_bursts"] - 0.6 * 0.06 / total == pytest.approx(0.4 * 0.25 / 0.30)
    assert w["spoken_arithmetic"] - 0.6 * 0.18 / total == pytest.approx(0.4 * 0.05 / 0.30)
    assert w["beep_bursts"] > w["spoken_arithmetic"] > base["spoken_arithmetic"] / total * 0.6


def test_a_model_that_errs_nowhere_trains_on_the_recipe_mixture() -> None:
    base = {"a_task": 1.0, "b_task": 3.0}
    assert error_weights(base, {"a_task": 0.0, "b_task": 0.0}, 0.4) == pytest.approx({"a_task": 0.25, "b_task": 0.75})
    assert error_weights(base, {}, 0.4) == pytest.approx({"a_task": 0.25, "b_task": 0.75})
    # hard_share 1: all of the data where the errors are
    assert error_weights(base, {"a_task": 0.2}, 1.0) == pytest.approx({"a_task": 1.0, "b_task": 0.0})


def test_config_round_trips_and_rejects_what_it_does_not_know() -> None:
    cfg = ErrorWeightedConfig.mini()
    assert ErrorWeightedConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown ErrorWeightedConfig keys: hard_shares"):
        ErrorWeightedConfig.from_dict({"hard_shares": 0.5})
    with pytest.raises(ValueError, match="hard_share"):
        ErrorWeightedConfig(hard_share=1.5)


def test_build_dataset_follows_given_weights(tmp_path: Path) -> None:
    """The stage synthesises its fresh clips at the error weights: ``build_dataset(weights=...)``."""
    from stepaudio_rt.training.data.build import build_dataset, load_split

    build_dataset(12, 0, tmp_path, seed=3, workers=1, weights={"text_chat": 3.0, "text_arithmetic": 1.0})
    tasks = [s.task for s in load_split(tmp_path / "train.jsonl")]
    assert sorted(set(tasks)) == ["text_arithmetic", "text_chat"]
    assert tasks.count("text_chat") == 9 and tasks.count("text_arithmetic") == 3
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["task_weights"] == {"text_chat": 3.0, "text_arithmetic": 1.0}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_miniature_stage_on_the_committed_checkpoint_measures_weights_and_trains(tmp_path: Path) -> None:
    """``stepaudio-rt train error-weighted --mini`` on the bundled checkpoint: errors measured on every task,
    data weighted by them, the decoder and adaptor moved, the frozen encoder not; a second run returns the
    finished stage without training again."""
    from safetensors.torch import load_file

    from stepaudio_rt.settings import DEMO_CHECKPOINT
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.data.build import TASK_WEIGHTS
    from stepaudio_rt.training.error_weighted_sft import run_error_weighted_stage

    out, work = tmp_path / "ckpt", tmp_path / "work"
    assert run_error_weighted_stage(DEMO_CHECKPOINT, out, work, ErrorWeightedConfig.mini(), DemoConfig.mgrd(),
                                    progress=False) == out
    metrics = json.loads((work / "metrics.json").read_text())
    assert set(metrics["train_errors"]["error_rate"]) == set(TASK_WEIGHTS) == set(metrics["task_weights"])
    assert sum(metrics["task_weights"].values()) == pytest.approx(1.0, abs=1e-3)
    before, after = load_file(str(DEMO_CHECKPOINT / "model.safetensors")), load_file(str(out / "model.safetensors"))
    moved = {k for k in after if not after[k].equal(before[k])}
    assert any(k.startswith("model.") for k in moved) and any(k.startswith("adapter") for k in moved), sorted(moved)[:5]
    assert not any(k.startswith("encoder.") for k in moved)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    run_error_weighted_stage(DEMO_CHECKPOINT, out, work, ErrorWeightedConfig.mini(), DemoConfig.mgrd(), progress=False)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
