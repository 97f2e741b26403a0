"""Synthetic spoken-task data: determinism, coverage, held-out splits, answer checking, measurements."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stepaudio_rt.training.data import acoustics as ac
from stepaudio_rt.training.data import signals as sg
from stepaudio_rt.training.data import synth
from stepaudio_rt.training.data.build import build_dataset, load_split, make_sample, task_schedule
from stepaudio_rt.training.data.catalog import TASK_NAMES, generate
from stepaudio_rt.training.data.reasoning_tasks import MAX_TWO_PART_S
from stepaudio_rt.training.data.selfcheck import oracle_check
from stepaudio_rt.training.data.tasks import (
    EMPTY_THINK,
    Sample,
    _problem,
    arith_reply,
    arith_working,
    column_step,
    format_target,
    gen_text_arithmetic,
    is_eval_operands,
    is_eval_sentence,
)
from stepaudio_rt.training.data.verify import check_answer, extract_number

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

N_TRAIN, N_EVAL = 44, 22


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out = tmp_path_factory.mktemp("synth_a")
    build_dataset(N_TRAIN, N_EVAL, out, seed=3, workers=1)
    return out


@pytest.fixture(scope="module")
def train(built: Path) -> list[Sample]:
    return load_split(built / "train.jsonl")


@pytest.fixture(scope="module")
def evals(built: Path) -> list[Sample]:
    return load_split(built / "eval.jsonl")


# ------------------------------------------------------------------------------------------- dataset


@needs_espeak
def test_build_is_deterministic_across_worker_counts(built: Path, tmp_path: Path) -> None:
    build_dataset(N_TRAIN, N_EVAL, tmp_path, seed=3, workers=2)
    for split in ("train", "eval"):
        assert (built / f"{split}.jsonl").read_bytes() == (tmp_path / f"{split}.jsonl").read_bytes()
        a, b = (
            sf.read(built / f"{split}.flac", dtype="int16")[0],
            sf.read(tmp_path / f"{split}.flac", dtype="int16")[0],
        )
        assert len(a) > 16000 and np.array_equal(a, b)


@needs_espeak
def test_other_seed_gives_other_data(built: Path, tmp_path: Path) -> None:
    paths = build_dataset(12, 0, tmp_path, seed=4, workers=1)
    assert len(load_split(paths.train)) == 12 and load_split(paths.eval) == []
    assert (tmp_path / "train.jsonl").read_text() != "".join(
        (built / "train.jsonl").read_text().splitlines(keepends=True)[:12]
    )


def test_every_task_appears_in_schedule() -> None:
    sched = task_schedule(N_TRAIN, seed=3, split="train")
    assert len(sched) == N_TRAIN
    assert set(sched) == set(TASK_NAMES)
    big = task_schedule(1000, seed=0, split="train")
    assert big.count("spoken_arithmetic") == 180 and big.count("text_chat") == 30  # 0.18 and 0.03 of 1,000


def test_every_task_appears(train: list[Sample], evals: list[Sample]) -> None:
    assert len(train) == N_TRAIN and len(evals) == N_EVAL
    assert {s.task for s in train} == set(TASK_NAMES)
    assert {s.task for s in evals} == set(TASK_NAMES)


def test_audio_is_present_short_and_not_silent(train: list[Sample]) -> None:
    for s in train:
        if s.task in ("text_arithmetic", "text_chat") or (
            s.task == "self_cognition" and s.meta["kind"] == "text"
        ):
            assert s.audio is None
            continue
        assert s.audio is not None and s.audio.dtype == np.float32
        # two utterances (two speakers, a rate change, a pause between) take longer than one
        longest = MAX_TWO_PART_S if s.task in ("speaker_compare", "rate_change", "pause_length") else 5.0
        assert 0.5 <= len(s.audio) / sg.SAMPLE_RATE <= longest, (s.task, len(s.audio))
        assert ac.rms_dbfs(s.audio) > -55.0, s.task
        assert np.max(np.abs(s.audio)) < 1.0


def test_stored_audio_matches_regeneration(built: Path, train: list[Sample]) -> None:
    sched = task_schedule(N_TRAIN, seed=3, split="train")
    for i in (0, 1, 2):
        fresh = make_sample(sched[i], 3, "train", i)
        assert fresh.answer == train[i].answer and fresh.label == train[i].label
        if fresh.audio is not None:
            assert train[i].audio is not None
            assert np.max(np.abs(fresh.audio - train[i].audio)) <= 1.0 / 32768 + 1e-6


def test_targets_use_think_blocks(train: list[Sample]) -> None:
    for s in train:
        target = format_target(s)
        if s.think:
            assert target.startswith("<think>\n" + s.think) and "</think>\n" in target
        else:
            assert target == EMPTY_THINK + s.answer
        assert check_answer(s.task, target, s.label), (s.task, target, s.label)
    # every sample is stored with its reasoning (SFT picks the empty think block for a share of them);
    # only small talk and the typed "can you hear?" question have none
    assert all(s.think for s in train if s.task not in ("text_chat", "self_cognition"))


def test_perception_labels_agree_with_measurements(train: list[Sample], evals: list[Sample]) -> None:
    results = oracle_check(train + evals)
    assert set(results) == {"voice_pitch", "speech_rate", "loudness", "noise", "beep_count", "tone_compare"}
    for r in results.values():
        assert r.accuracy == 1.0, (r.task, r.ranges)


# ------------------------------------------------------------------------------------------ held out


def test_voice_split_is_disjoint_and_covers_all() -> None:
    train_names = {v.name for v in synth.TRAIN_VOICES}
    eval_names = {v.name for v in synth.EVAL_VOICES}
    assert not train_names & eval_names
    assert train_names | eval_names == {v.name for v in synth.ALL_VOICES}
    assert any(v.is_female for v in synth.EVAL_VOICES) and any(not v.is_female for v in synth.EVAL_VOICES)


def test_held_out_voices_are_new_speakers_of_accents_heard_in_training() -> None:
    train_accents = {v.accent for v in synth.TRAIN_VOICES if v.engine == "espeak"}
    assert train_accents == set(synth.ESPEAK_ACCENTS)
    for accent in synth.ESPEAK_ACCENTS:
        held = {v.variant for v in synth.EVAL_VOICES if v.accent == accent}
        assert held == set(synth.EVAL_VARIANTS)
    assert not {v.variant for v in synth.TRAIN_VOICES} & synth.EVAL_VARIANTS


def test_held_out_voices_and_sentences_never_in_train(train: list[Sample], evals: list[Sample]) -> None:
    eval_names = {v.name for v in synth.EVAL_VOICES}
    train_voices = {s.meta["voice"] for s in train if "voice" in s.meta}
    eval_voices = {s.meta["voice"] for s in evals if "voice" in s.meta}
    assert train_voices and eval_voices
    assert not train_voices & eval_names
    assert eval_voices <= eval_names
    for s in train:
        if s.task == "transcription":
            assert not is_eval_sentence(s.label)
    for s in evals:
        if s.task == "transcription":
            assert is_eval_sentence(s.label)


def test_held_out_operand_pairs_never_in_train(train: list[Sample], evals: list[Sample]) -> None:
    def pairs(p: dict) -> list[tuple[int, int]]:
        ops, steps = p["operands"], p["steps"]
        out = [(ops[0], ops[1])]
        if len(ops) == 3:
            out.append((steps[0], ops[2]))
        return out

    rng = np.random.default_rng(0)
    train_pairs = {pr for _ in range(3000) for pr in pairs(_problem(rng, "train"))}
    eval_first = {pairs(_problem(rng, "eval"))[0] for _ in range(600)}
    assert not any(is_eval_operands(a, b) for a, b in train_pairs)
    assert all(is_eval_operands(a, b) for a, b in eval_first)
    assert not train_pairs & eval_first
    share = np.mean([is_eval_operands(a, b) for a in range(100) for b in range(100)])
    assert 0.12 < share < 0.18
    for s in train:
        if "operands" in s.meta:
            assert not any(is_eval_operands(a, b) for a, b in pairs(s.meta))
    for s in evals:
        if "operands" in s.meta:
            assert is_eval_operands(*pairs(s.meta)[0])


# --------------------------------------------------------------------------------------- check_answer


@pytest.mark.parametrize(
    ("task", "reply", "label", "ok"),
    [
        ("spoken_arithmetic", "<think>\n12 plus 7 is 19.\n</think>\nThe answer is 19.", "19", True),
        ("spoken_arithmetic", "It's nineteen.", "19", True),
        ("spoken_arithmetic", "12 plus 7 gives 19", "19", True),
        ("spoken_arithmetic", "The answer is 18.", "19", False),
        ("text_arithmetic", "one hundred and five", "105", True),
        ("text_arithmetic", "The result is forty-two.", "42", True),
        ("beep_count", "I hear three beeps.", "3", True),
        ("beep_count", "There are 4 beeps.", "3", False),
        ("beep_count", "", "3", False),
        ("voice_pitch", "The speaker has a high voice.", "high", True),
        ("voice_pitch", "It is a deep voice.", "low", True),
        ("voice_pitch", "The voice is not high, it is low.", "high", False),
        ("speech_rate", "They talk quickly.", "fast", True),
        ("speech_rate", "The speech is slow.", "fast", False),
        ("loudness", "The audio is rather soft.", "quiet", True),
        ("noise", "There is no noise in the background.", "clean", True),
        ("noise", "It isn't noisy.", "clean", True),
        ("noise", "The background is noisy.", "clean", False),
        ("noise", "Lots of background noise.", "noisy", True),
        ("tone_compare", "The second one is higher.", "second", True),
        ("tone_compare", "The first tone is lower and the second is higher.", "second", True),
        ("tone_compare", "The first tone is higher.", "second", False),
        ("transcription", 'They said "The red cat sat on the mat".', "the red cat sat on the mat", True),
        (
            "transcription",
            "The speaker said: the red dog sat on the mat.",
            "the red cat sat on the mat",
            False,
        ),
        ("self_cognition", "Yes, I can hear it.", "yes", True),
        ("self_cognition", "Sure, I hear you clearly.", "yes", True),
        ("self_cognition", "I'm sorry, as a text model I cannot hear audio.", "yes", False),
        ("self_cognition", "No, I can't.", "yes", False),
        ("text_chat", "You are very welcome!", "welcome", True),
    ],
)
def test_check_answer(task: str, reply: str, label: str, ok: bool) -> None:
    assert check_answer(task, reply, label) is ok


@pytest.mark.parametrize(
    ("a", "op", "b", "text"),
    [
        (47, "+", 38, "47 plus 38: 7 plus 8 is 15, 4 plus 3 plus 1 is 8, so 85."),
        (42, "+", 35, "42 plus 35: 2 plus 5 is 7, 4 plus 3 is 7, so 77."),
        (94, "+", 89, "94 plus 89: 4 plus 9 is 13, 9 plus 8 plus 1 is 18, so 183."),
        (7, "+", 8, "7 plus 8: 7 plus 8 is 15, 0 plus 0 plus 1 is 1, so 15."),
        (52, "-", 17, "52 minus 17: 12 minus 7 is 5, 5 minus 1 minus 1 is 3, so 35."),
        (52, "-", 48, "52 minus 48: 12 minus 8 is 4, 5 minus 4 minus 1 is 0, so 4."),
    ],
)
def test_column_working(a: int, op: str, b: int, text: str) -> None:
    assert column_step(a, op, b) == text


def test_arithmetic_working_goes_in_the_think_block_and_the_reply_restates_the_problem() -> None:
    two = {"ops": ["-", "+"], "operands": [51, 9, 30], "steps": [42, 72], "result": 72}
    assert arith_working(two) == (
        "51 minus 9: 11 minus 9 is 2, 5 minus 0 minus 1 is 4, so 42. 42 plus 30: 2 plus 0 is 2, 4 plus 3 is 7, so 72."
    )
    assert arith_reply(two) == "51 minus 9 plus 30 is 72."
    rng = np.random.default_rng(3)
    for _ in range(300):
        p = _problem(rng, "train", two_step_share=0.5)
        reply = arith_reply(p)
        assert extract_number(reply) == p["result"]
        assert check_answer("text_arithmetic", reply, str(p["result"]))
        assert ":" not in reply  # no column working spoken aloud
    for cot in (True, False):
        s = gen_text_arithmetic(np.random.default_rng(5), "train", cot)
        assert (s.think == arith_working(s.meta)) == cot
        assert s.answer == arith_reply(s.meta) and extract_number(s.answer) == int(s.label)


def test_check_answer_rejects_unknown_task() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        check_answer("nope", "x", "y")


# ---------------------------------------------------------------------------------------- acoustics


@pytest.mark.parametrize("freq", [110.0, 220.0, 330.0])
def test_pitch_of_tone(freq: float) -> None:
    x = sg.tone(freq, 1.0, amp=0.3)
    assert ac.median_f0_hz(x) == pytest.approx(freq, rel=0.02)
    assert ac.peak_frequency_hz(x) == pytest.approx(freq, rel=0.005)


def test_pyin_pitch_of_tone() -> None:
    assert ac.median_f0_pyin_hz(sg.tone(220.0, 0.6, amp=0.3)) == pytest.approx(220.0, rel=0.02)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6])
def test_beep_count_exact(count: int) -> None:
    rng = np.random.default_rng(count)
    for beep_s, gap_s, freq in ((0.08, 0.12, 400.0), (0.2, 0.35, 1900.0), (0.12, 0.2, 1000.0)):
        x = sg.beep_train(count, freq, beep_s=beep_s, gap_s=gap_s)
        assert ac.count_beeps(x) == count
        assert ac.count_beeps(sg.add_noise(x, 20.0, rng)) == count


def test_two_tone_frequencies_in_order() -> None:
    f = ac.segment_frequencies_hz(sg.two_tones(300.0, 450.0))
    assert len(f) == 2
    assert f[0] == pytest.approx(300.0, rel=0.01) and f[1] == pytest.approx(450.0, rel=0.01)


def test_loudness_ordering_and_level() -> None:
    x = sg.pad(sg.tone(440.0, 0.5), 0.2, 0.2)
    quiet, loud = sg.set_level(x, -40.0), sg.set_level(x, -15.0)
    assert ac.rms_dbfs(quiet) == pytest.approx(-40.0, abs=1.0)
    assert ac.rms_dbfs(loud) == pytest.approx(-15.0, abs=1.0)
    assert ac.rms_dbfs(quiet) < ac.rms_dbfs(x * 0.5) < ac.rms_dbfs(loud)
    assert np.max(np.abs(sg.set_level(x, 0.0))) <= 0.99  # never clips


def test_snr_estimate_orders_noise_levels() -> None:
    rng = np.random.default_rng(0)
    x = sg.pad(sg.beep_train(3, 600.0, beep_s=0.3, gap_s=0.3), 0.3, 0.3)
    clean = ac.snr_db(x)
    snr20 = ac.snr_db(sg.add_noise(x, 20.0, rng))
    snr5 = ac.snr_db(sg.add_noise(x, 5.0, rng))
    pink5 = ac.snr_db(sg.add_noise(x, 5.0, rng, color="pink"))
    assert clean >= 50.0 and snr5 < snr20 < clean
    assert snr5 == pytest.approx(5.0, abs=2.0)
    # pink noise frames fluctuate more, so the quietest-frames floor is biased low; still clearly "noisy"
    assert pink5 < 15.0


def test_syllables_and_rate() -> None:
    assert ac.count_syllables("the quick brown fox") == 4
    assert ac.count_syllables("what is 12 plus 77") == 3 + 1 + 5  # twelve = 1, seventy-seven = 3 + 2
    x = sg.pad(sg.tone(200.0, 2.0), 0.5, 0.5)
    assert ac.speech_rate_sps(x, "one two three four") == pytest.approx(2.0, rel=0.05)


def test_pink_noise_has_more_low_than_high_energy() -> None:
    x = sg.pink_noise(32000, np.random.default_rng(1))
    spec = np.abs(np.fft.rfft(x)) ** 2
    assert spec[10:200].mean() > 10 * spec[-2000:].mean()
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=0.01)


# ---------------------------------------------------------------------------------------- synthesis


@needs_espeak
def test_espeak_pitch_and_rate_parameters_take_effect() -> None:
    v = synth.voice_by_name("en-us+f3")
    low = synth.synth_espeak("the red cat sat on the mat", v, pitch=5)
    high = synth.synth_espeak("the red cat sat on the mat", v, pitch=95)
    fast = synth.synth_espeak("the red cat sat on the mat", v, rate_wpm=320)
    assert ac.median_f0_hz(high) > ac.median_f0_hz(low) + 80
    assert len(fast) < 0.75 * len(low)


@pytest.mark.skipif(not synth.piper_available(), reason="piper-tts not installed")
def test_piper_is_deterministic_and_length_scale_slows() -> None:
    a = synth.synth_piper("what is twelve plus seven", length_scale=1.0)
    b = synth.synth_piper("what is twelve plus seven", length_scale=1.0)
    slow = synth.synth_piper("what is twelve plus seven", length_scale=1.6)
    assert np.array_equal(a, b)
    assert len(slow) > 1.3 * len(a)
    assert ac.rms_dbfs(a) > -40


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: synth.synth_espeak("hi", synth.voice_by_name("en-us"), rate_wpm=10), "rate_wpm"),
        (lambda: synth.synth_espeak("  ", synth.voice_by_name("en-us")), "empty"),
        (lambda: synth.synth_espeak("hi", synth.voice_by_name("en-us"), pitch=120), "pitch"),
        (lambda: sg.tone(9000.0, 1.0), "Nyquist"),
        (lambda: sg.beep_train(0, 500.0), "count"),
        (lambda: sg.set_level(np.zeros(1000, np.float32), -20.0), "silent"),
        (lambda: ac.rms_dbfs(np.zeros((2, 2), np.float32)), "mono"),
        (lambda: generate("juggling", np.random.default_rng(0), "train", False), "unknown task"),
        (lambda: generate("beep_count", np.random.default_rng(0), "test", False), "split"),  # type: ignore[arg-type]
        (lambda: task_schedule(-1, 0, "train"), "n must be"),
    ],
)
def test_bad_input_gives_clear_errors(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_voice() -> None:
    with pytest.raises(KeyError, match="unknown voice"):
        synth.voice_by_name("en-xx+f9")


def test_load_split_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "train.jsonl")
    with pytest.raises(ValueError, match="jsonl"):
        load_split(tmp_path / "train.flac")


def test_voice_pitch_labels_do_not_follow_the_speakers_sex() -> None:
    """Low examples include female voices at their lowest pitch (else timbre tells the label): every
    label still matches the F0 measured on the clip."""
    import numpy as np

    from stepaudio_rt.training.data import acoustics, synth
    from stepaudio_rt.training.data.tasks import DECISION, gen_voice_pitch

    female = {v.name for v in synth.TRAIN_VOICES if v.is_female}
    rng = np.random.default_rng(7)
    low_voices = []
    for _ in range(24):
        s = gen_voice_pitch(rng, "train", True)
        f0 = acoustics.median_f0_hz(s.audio)
        assert (f0 >= DECISION["pitch_high_min"]) if s.label == "high" else (f0 <= DECISION["pitch_low_max"])
        if s.label == "low":
            low_voices.append(s.meta["voice"] in female)
    assert any(low_voices) and not all(low_voices)  # low voices of both kinds


def test_speaker_compare_lower_voice_is_sometimes_female() -> None:
    """In "which speaker has the higher voice" the lower voice is sometimes a female one at its lowest
    pitch (else the female voice always wins): the answer is the speaker with the higher measured F0."""
    import numpy as np

    from stepaudio_rt.training.data import synth
    from stepaudio_rt.training.data.reasoning_tasks import ORDINALS, gen_speaker_compare

    female = {v.name for v in synth.TRAIN_VOICES if v.is_female}
    rng = np.random.default_rng(11)
    lower_is_female = []
    while len(lower_is_female) < 10:
        s = gen_speaker_compare(rng, "train", True)
        if s.meta["aspect"] != "higher":
            continue
        f0 = s.meta["measured"]["part_f0_hz"]
        winner = ORDINALS.index(s.label)
        assert f0[winner] > 1.3 * f0[1 - winner]
        lower_is_female.append(s.meta["voices"][1 - winner] in female)
    assert any(lower_is_female) and not all(lower_is_female)


def test_build_dataset_can_synthesise_only_some_tasks(tmp_path: Path) -> None:
    """``tasks`` (``eval --tasks``) keeps those tasks at their relative weights; an unknown one is named."""
    import json

    paths = build_dataset(0, 6, tmp_path / "d", seed=3, workers=1, tasks=["loudness", "noise"])
    samples = load_split(paths.eval)
    assert len(samples) == 6 and {s.task for s in samples} == {"loudness", "noise"}
    assert set(json.loads(paths.manifest.read_text())["task_weights"]) == {"loudness", "noise"}
    with pytest.raises(ValueError, match="unknown tasks \\['pitch'\\]"):
        build_dataset(0, 6, tmp_path / "e", workers=1, tasks=["pitch"])
