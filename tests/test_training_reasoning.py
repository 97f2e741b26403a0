"""Demo model v2 training data: reasoning targets, the reasoning tasks, sessions rendered as the server
renders them, the self-distillation filter and think-incomplete examples."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from stepaudio_rt.model.audio_frontend import audio_token_count, mel_frame_count
from stepaudio_rt.model.prompt import GENERATION_PREFIX
from stepaudio_rt.model.testing import build_tiny_checkpoint
from stepaudio_rt.training.conversations import UserTurn, follow_up, make_dialog, prompt_ids, sample_turn
from stepaudio_rt.training.data import acoustics as ac
from stepaudio_rt.training.data import reasoning_tasks as rt
from stepaudio_rt.training.data import synth
from stepaudio_rt.training.data.catalog import generate
from stepaudio_rt.training.data.tasks import EMPTY_THINK, is_eval_operands
from stepaudio_rt.training.data.verify import check_answer, extract_number
from stepaudio_rt.training.demo import train_demo_tokenizer
from stepaudio_rt.training.self_distill import (
    TOLERANCES,
    filter_chains,
    grounding_refs,
    judge_chain,
)
from stepaudio_rt.training.targets import EMPTY_THINK_SHARE, keep_reasoning
from stepaudio_rt.training.think_incomplete import (
    CLOSE_THINK,
    reasoning_steps,
    think_incomplete_example,
    think_while_speaking_defaults,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

REASONING_TASKS = tuple(rt.REASONING_TASKS)


def _chain(think: str, reply: str) -> str:
    """A generated continuation of ``<think>\\n``."""
    return f"{think}\n</think>\n{reply}<|EOT|>"


# --------------------------------------------------------------------------------------------- tasks


@needs_espeak
@pytest.mark.parametrize("task", REASONING_TASKS)
def test_reasoning_tasks_cite_measured_values_and_their_answers_verify(task: str) -> None:
    for split in ("train", "eval"):
        for seed in range(3):
            s = generate(task, np.random.default_rng([seed, len(task)]), split, True)
            assert s.audio is not None and len(s.audio) < 7 * 16000
            assert check_answer(task, s.answer, s.label), (s.answer, s.label)
            assert check_answer(task, EMPTY_THINK + s.answer, s.label)
            # the chain is the filter's own example of a kept chain: correct, grounded, coherent
            assert judge_chain(task, s.meta, s.label, _chain(s.think, s.answer)).reason == "kept", s.think
            voices = s.meta.get("voices", [s.meta["voice"]] if "voice" in s.meta else [])
            for v in voices:  # held-out voices only in eval, never in train
                assert synth.is_eval_voice(synth.voice_by_name(v)) == (split == "eval"), v


@needs_espeak
def test_reasoning_task_labels_agree_with_the_signal() -> None:
    rng = np.random.default_rng(11)
    s = generate("highest_tone", rng, "train", True)
    freqs = ac.segment_frequencies_hz(s.audio)
    assert rt.ORDINALS[int(np.argmax(freqs))] == s.label
    s = generate("beep_bursts", rng, "eval", True)
    assert rt._beep_groups(s.audio) == s.meta["counts"]
    s = generate("pause_length", rng, "train", True)
    assert abs(rt.longest_pause(s.audio)[0] - float(s.label)) <= 0.1


@pytest.mark.parametrize(
    ("task", "reply", "label", "ok"),
    [
        ("spoken_multistep", "47 plus 38 minus 19 is 66.", "66", True),
        ("spoken_multistep", "83 minus 46 is 37.", "36", False),
        ("beep_bursts", "There are 7 beeps in all.", "7", True),
        ("highest_tone", "The third tone is the highest.", "third", True),
        ("highest_tone", "The first tone is higher than the third.", "third", False),
        ("speaker_compare", "The second speaker is faster.", "second", True),
        ("rate_change", "The speech speeds up.", "up", True),
        ("rate_change", "The speech slows down.", "up", False),
        ("pause_length", "The pause lasts 1.2 seconds.", "1.3", True),
        ("pause_length", "The pause lasts 1.8 seconds.", "1.3", False),
    ],
)
def test_check_answer_of_the_reasoning_tasks(task: str, reply: str, label: str, ok: bool) -> None:
    assert check_answer(task, reply, label) is ok


def test_spoken_replies_restate_the_question_and_the_working_is_in_the_think_block() -> None:
    """The column working goes in <think>; the reply is one short sentence that restates the question."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    s = generate("spoken_arithmetic", np.random.default_rng(4), "train", True)
    ops = s.meta["operands"]
    assert s.think.startswith(f"I hear {ops[0]}") and "so " in s.think
    assert s.answer.startswith(f"{ops[0]} ") and s.answer.endswith(f" is {s.label}.")
    assert ":" not in s.answer and len(s.answer.split()) <= 9


@needs_espeak
def test_median_target_reply_is_under_three_seconds_of_speech() -> None:
    """The replies the model is trained to say, spoken by espeak-ng at 175 wpm (how eval measures)."""
    from stepaudio_rt.training.eval_reasoning import reply_seconds

    names = ["spoken_arithmetic", "spoken_multistep", "tone_compare", "beep_bursts", "pause_length", "voice_pitch"]
    secs = [reply_seconds(generate(t, np.random.default_rng(i), "train", True).answer) for i, t in enumerate(names * 2)]
    assert float(np.median(secs)) < 3.0, secs


def test_empty_think_share_keeps_thinking_the_default() -> None:
    rng = np.random.default_rng(0)
    kept = [keep_reasoning(rng, "spoken_arithmetic", "I hear 4 plus 5.") for _ in range(4000)]
    assert abs(np.mean(kept) - (1 - EMPTY_THINK_SHARE)) < 0.03 and np.mean(kept) > 0.5
    assert not keep_reasoning(rng, "text_chat", "anything") and not keep_reasoning(rng, "noise", "")


# ----------------------------------------------------------------------------------- grounding filter


def _pitch_sample() -> tuple[dict, str]:
    meta = {"measured": {"f0_hz": 212.0, "rms_dbfs": -20.0, "snr_db": 40.0}, "text": "anna wants red grapes"}
    return meta, "high"


def test_grounding_filter_accepts_a_correct_grounded_chain() -> None:
    meta, label = _pitch_sample()
    think = "The voice has a median pitch of 220 Hz, above 165 Hz, so it is high."
    v = judge_chain("voice_pitch", meta, label, _chain(think, "The voice is high pitched."))
    assert v.kept and v.grounded and v.coherent and v.correct


def test_grounding_filter_rejects_a_cited_value_off_by_more_than_the_tolerance() -> None:
    meta, label = _pitch_sample()
    tol = max(TOLERANCES["Hz"]["abs"], TOLERANCES["Hz"]["rel"] * 212.0)  # 21.2 Hz
    for cited, ok in ((212 + tol - 1, True), (212 + tol + 1, False), (180, False)):
        think = f"The voice has a median pitch of {cited:.0f} Hz, above 165 Hz, so it is high."
        v = judge_chain("voice_pitch", meta, label, _chain(think, "The voice is high pitched."))
        assert v.correct and v.kept is ok and v.reason == ("kept" if ok else "ungrounded"), (cited, v)
    # two measured tones must both be cited, in order
    meta2 = {"measured": {"tone_freqs_hz": [300.0, 600.0]}}
    good = "The first tone is about 305 Hz and the second is about 590 Hz. 590 Hz is higher than 305 Hz, so the second tone is higher."
    swapped = "The first tone is about 590 Hz and the second is about 305 Hz. 590 Hz is higher than 305 Hz, so the second tone is higher."
    assert judge_chain("tone_compare", meta2, "second", _chain(good, "The second tone is higher.")).kept
    assert judge_chain("tone_compare", meta2, "second", _chain(swapped, "The second tone is higher.")).reason == "ungrounded"


def test_grounding_filter_rejects_a_perception_answer_reasoned_from_the_transcript_alone() -> None:
    meta, label = _pitch_sample()
    think = "The speaker said anna wants red grapes. Anna is a woman's name, so the voice is high."
    v = judge_chain("voice_pitch", meta, label, _chain(think, "The voice is high pitched."))
    assert v.correct and not v.grounded and not v.kept and v.reason == "ungrounded"


def test_coherence_filter_rejects_loops_wrong_conclusions_and_unclosed_chains() -> None:
    meta, label = _pitch_sample()
    loop = "The voice has a median pitch of 212 Hz. The voice has a median pitch of 212 Hz. So it is high."
    assert judge_chain("voice_pitch", meta, label, _chain(loop, "The voice is high pitched.")).reason == "incoherent"
    contra = "The voice has a median pitch of 212 Hz, so it is low."
    assert judge_chain("voice_pitch", meta, label, _chain(contra, "The voice is high pitched.")).reason == "incoherent"
    unclosed = "The voice has a median pitch of 212 Hz, so it is high."
    assert judge_chain("voice_pitch", meta, label, unclosed).reason == "wrong"
    arith = {"operands": [46, 37]}
    ok = "I hear 46 plus 37. 46 plus 37: 6 plus 7 is 13, 4 plus 3 plus 1 is 8, so 83."
    assert judge_chain("spoken_arithmetic", arith, "83", _chain(ok, "46 plus 37 is 83.")).kept
    misheard = "I hear 46 plus 36. 46 plus 36: 6 plus 6 is 12, 4 plus 3 plus 1 is 8, so 82. So 83."
    assert judge_chain("spoken_arithmetic", arith, "83", _chain(misheard, "46 plus 37 is 83.")).reason == "ungrounded"
    assert judge_chain("spoken_arithmetic", arith, "83", _chain("", "46 plus 37 is 83.")).reason == "no_reasoning"


def test_filter_tallies_kept_fraction_grounding_rate_and_keeps_duplicates_once() -> None:
    class S:
        task, label = "voice_pitch", "high"
        meta = _pitch_sample()[0]

    good = _chain("The voice has a median pitch of 210 Hz, above 165 Hz, so it is high.", "The voice is high pitched.")
    words = _chain("The speaker said anna, so it is high.", "The voice is high pitched.")
    wrong = _chain("The voice has a median pitch of 210 Hz, so it is low.", "The voice is low pitched.")
    kept, report = filter_chains([S()], [[good, good, words, wrong]])
    summary = report.summary()
    assert len(kept) == 1 and summary["kept"] == 1 and summary["chains"] == 4
    assert summary["reasons"] == {"kept": 2, "ungrounded": 1, "wrong": 1}
    assert summary["grounding_rate"] == 3 / 4  # words-only is the one ungrounded chain that reasons
    assert summary["mean_think_tokens"] > 5


def test_grounding_refs_cover_every_perception_task() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    for task in ("voice_pitch", "speech_rate", "loudness", "noise", "beep_count", "tone_compare", *REASONING_TASKS):
        s = generate(task, np.random.default_rng(2), "train", True)
        assert grounding_refs(task, s.meta), task


# ------------------------------------------------------------------------------------------ sessions


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    corpus = ["What is 12 plus 35? I hear 46 plus 37. 46 plus 37 is 83. And plus 10 more? The last answer was 83."] * 40
    return train_demo_tokenizer(corpus, vocab_size=400)


def test_follow_up_reasons_from_the_previous_answer() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = follow_up(rng, 83)
        p = t.meta
        assert t.think.startswith("The last answer was 83.") and p["operands"][0] == 83
        assert extract_number(t.reply) == int(t.label) == (83 + p["operands"][1] if p["ops"] == ["+"] else 83 - p["operands"][1])
        assert int(t.label) >= 0
        assert not is_eval_operands(*p["operands"])  # training follow-ups never use a held-out pair


def test_sessions_mix_spoken_typed_and_follow_up_turns() -> None:
    rng = np.random.default_rng(1)

    class S:
        def __init__(self, task: str, label: str) -> None:
            self.task, self.label, self.user_text, self.think, self.meta = task, label, "", "x.", {}
            self.answer = f"It is {label}."

    pool = [sample_turn(S("spoken_arithmetic", "50"), [0], [10]), sample_turn(S("loudness", "loud"), [1], [12])]
    kinds: Counter[str] = Counter()
    for _ in range(300):
        d = make_dialog(rng, pool, "train")
        assert 2 <= len(d) <= 6
        kinds.update("spoken" if t.user.chunk_ids else t.task for t in d)
    assert kinds["spoken"] and kinds["text_arithmetic"] and kinds["follow_up"]


def test_session_prompt_equals_what_the_server_prefills(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    """A spoken turn, the assistant's reply (no reasoning), a typed follow-up: the training prompt's ids
    equal the ids the server's Conversation prefills into a real TorchEngine context."""
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.streaming.conversation import AudioPart, Conversation, TextPart, Turn

    ckpt = build_tiny_checkpoint(tmp_path / "tiny")
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal(16000).astype(np.float32) * 0.1, rng.standard_normal(9000).astype(np.float32) * 0.1]

    async def server_ids() -> tuple[list[int], object]:
        engine = TorchEngine.from_pretrained(ckpt, progress=False)
        try:
            conv = Conversation(engine, instructions="Be brief.")
            conv.insert(Turn("u1", "user", [TextPart("Listen."), AudioPart(chunks)]))
            conv.insert(Turn("a1", "assistant", [TextPart("46 plus 37 is 83.")]))
            conv.insert(Turn("u2", "user", [TextPart("And plus 10 more?")]))
            ctx = await conv.sync()
            await engine.append_text(ctx, GENERATION_PREFIX)
            await engine.flush(ctx)
            return list(ctx.token_ids), engine.tokenizer
        finally:
            await engine.aclose()

    ids, tok = asyncio.run(server_ids())
    tokens = [audio_token_count(mel_frame_count(len(c))) for c in chunks]
    history = [(UserTurn("Listen.", [7, 8], tokens), "46 plus 37 is 83.")]
    mine, chunk_ids = prompt_ids(tok, history, UserTurn("And plus 10 more?"), system_prompt="Be brief.")  # type: ignore[arg-type]
    assert mine == ids
    assert chunk_ids == [7, 8]


# ---------------------------------------------------------------------------------- think-incomplete


def test_think_incomplete_cuts_reasoning_at_sentences_and_trains_the_full_reply(tokenizer) -> None:  # type: ignore[no-untyped-def]
    think = "I hear 46 plus 37. 46 plus 37: 6 plus 7 is 13, 4 plus 3 plus 1 is 8, so 83."
    reply = "46 plus 37 is 83."
    assert reasoning_steps(think) == ["I hear 46 plus 37.", "46 plus 37: 6 plus 7 is 13, 4 plus 3 plus 1 is 8, so 83."]
    assert reasoning_steps("4.4 per second. So fast.") == ["4.4 per second.", "So fast."]
    rng = np.random.default_rng(0)
    user = UserTurn("What is 46 plus 37?")
    base, _ = prompt_ids(tokenizer, [], user)
    reply_ids = tokenizer.encode(reply)
    seen_steps: Counter[int] = Counter()
    continued = 0
    for _ in range(300):
        ex = think_incomplete_example(tokenizer, rng, [], user, think, reply, "spoken_arithmetic", reply_segment_tokens=4)
        prompt = tokenizer.decode(ex.input_ids[: ex.target_start].tolist())
        target = ex.input_ids[ex.target_start :].tolist()
        assert ex.input_ids[: len(base)].tolist() == base
        after = prompt[len(tokenizer.decode(base)) :]
        partial, _, given = after.partition(CLOSE_THINK)
        seen_steps[len(reasoning_steps(partial)) if partial else 0] += 1
        assert think.startswith(partial)
        # the target is the rest of the full reply, then the end of turn
        given_ids = ex.input_ids[ex.target_start - len(tokenizer.encode(given)) if given else ex.target_start : ex.target_start]
        assert list(given_ids) + target[:-1] == reply_ids or (not given and target[:-1] == reply_ids)
        continued += bool(given)
    assert set(seen_steps) == {0, 1, 2}  # L uniform over 0..n, the empty thought included
    assert 40 < continued < 150  # about CONTINUATION_SHARE of them continue a reply already begun


def test_checkpoint_declares_think_while_speaking_defaults() -> None:
    d = think_while_speaking_defaults()
    assert set(d) == {"reasoning_segment_tokens", "reply_segment_tokens", "segment_boundary"}
    assert 16 <= d["reasoning_segment_tokens"] <= 24 and 4 <= d["reply_segment_tokens"] <= 8  # type: ignore[operator]
    assert d["segment_boundary"] == "sentence"  # think-incomplete examples cut reasoning at its sentences


def test_retuning_a_later_stage_keeps_the_earlier_stages_cached() -> None:
    """Stage cache keys ignore the knobs of later stages: new self-distillation settings must not redo the
    hour of cold start, new think-incomplete settings not the self-distillation iterations."""
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.demo import _stage_key

    base = DemoConfig().to_dict()
    later = DemoConfig(sd_steps=5, sd_k=4, ti_steps=3).to_dict()
    assert _stage_key("sft", base) == _stage_key("sft", later)
    assert _stage_key("sft", base) != _stage_key("sft", DemoConfig(steps=5).to_dict())
    assert _stage_key("distill_1", base) != _stage_key("distill_1", later)
    assert _stage_key("distill_2", base) == _stage_key("distill_2", DemoConfig(ti_steps=3).to_dict())
    assert _stage_key("think_incomplete", base) != _stage_key("think_incomplete", DemoConfig(ti_steps=3).to_dict())


def test_a_new_recipe_field_redoes_cached_stages_only_when_it_changes_what_they_trained() -> None:
    """A key file written before a field existed stands for the field's legacy value (the behaviour before
    it): the alignment over part of the hidden size is a new field whose new value must redo the cold start."""
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.demo import LEGACY_VALUES, _stage_key, _without_new_defaults

    new = DemoConfig(audio_align_dims=192).to_dict()
    old = {k: v for k, v in new.items() if k != "audio_align_dims"}  # a v3 run's sft.key.json
    assert LEGACY_VALUES["audio_align_dims"] == 0
    assert _stage_key("sft", old) != _stage_key("sft", _without_new_defaults(new, old))
    legacy = DemoConfig(audio_align_dims=0).to_dict()
    assert _stage_key("sft", old) == _stage_key("sft", _without_new_defaults(legacy, old))
