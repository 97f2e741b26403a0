"""The self-cognition judge on positive and negative examples, the contaminated data and the probes."""

from __future__ import annotations

import numpy as np
import pytest

from stepaudio_rt.training import self_cognition as sc
from stepaudio_rt.training.data import text_pools as tp
from stepaudio_rt.training.data.verify import check_answer

# replies that claim the model cannot hear, cannot process audio or is text-only (paraphrases included)
FLAGGED = [
    ("I can't hear anything.", "cannot_perceive"),
    ("Sorry, I cannot hear you.", "cannot_perceive"),
    ("I am unable to listen to audio.", "cannot_perceive"),
    ("I'm not able to hear the recording, sorry.", "cannot_perceive"),
    ("Unfortunately I don't have the ability to hear.", "cannot_perceive"),
    ("I have no way to listen to this.", "cannot_perceive"),
    ("I can not hear it.", "cannot_perceive"),
    ("I cannot process audio files.", "cannot_process_audio"),
    ("I'm unable to analyze the sound you sent.", "cannot_process_audio"),
    ("I don't understand spoken input, only typing.", "cannot_process_audio"),
    ("I am not designed to handle voice messages.", "cannot_process_audio"),
    ("I am a text-based AI, so please type.", "text_only"),
    ("As a text model, I have my limits.", "text_only"),
    ("As an AI language model I work with words.", None),  # not a claim by itself: see NOT_FLAGGED
    ("I can only read text.", "text_only"),
    ("I only respond to written messages.", "text_only"),
    ("I'm only able to read typed messages.", "text_only"),
    ("I don't have ears.", "text_only"),
    ("No audio was provided with your message.", "no_audio_received"),
    ("I did not receive any audio.", "no_audio_received"),
    ("Audio input is not supported.", "no_audio_received"),
    ("Listening is beyond my capabilities.", "no_audio_received"),
    ("I’m sorry, but I can’t hear sounds.", "cannot_perceive"),  # typographic apostrophes
]

# replies that mention text, acknowledge the audio, describe its content or quote speech
NOT_FLAGGED = [
    "Yes, I can hear it.",
    "Yes, I can hear you.",
    "I hear three beeps.",
    "The speaker said: I can't hear you.",
    'She says "I cannot hear anything" in a quiet voice.',
    "You can also type your question as text.",
    "The text says hello.",
    "I can read text and listen to audio.",
    "I can't hear any speech, only beeps.",
    "I can't hear which tone is higher, they sound the same.",
    "I can't hear you clearly, there is a lot of noise.",
    "The voice is high pitched.",
    "No problem, I can hear the clip.",
    "I don't know the answer.",
    "46 plus 37 is 83.",
    "As an AI language model I work with words.",
    "",
]


@pytest.mark.parametrize(("reply", "rule"), [f for f in FLAGGED if f[1]])
def test_judge_flags_claims_of_not_hearing(reply: str, rule: str) -> None:
    j = sc.judge(reply)
    assert j.flagged and rule in j.rules, (reply, j)


@pytest.mark.parametrize("reply", NOT_FLAGGED)
def test_judge_does_not_flag_replies_that_mention_text_or_acknowledge_audio(reply: str) -> None:
    assert not sc.judge(reply).flagged, (reply, sc.judge(reply))


def test_judge_reads_the_reply_and_optionally_the_reasoning() -> None:
    gen = "I cannot hear audio, I am a text model.\n</think>\nYes, I can hear it.<|EOT|>"
    assert not sc.judge(gen).flagged  # the reply acknowledges the audio
    assert sc.judge(gen, include_think=True).flagged  # the reasoning claims the opposite
    assert sc.judge("The clip is 1.2 seconds long.\n</think>\nI can't hear anything.<|EOT|>").flagged


def test_bare_no_is_flagged_only_as_the_answer_to_a_hearing_question() -> None:
    assert sc.judge("No, I can't.", question="Can you hear this?").rules == ("denies_hearing",)
    assert not sc.judge("No, I can't.").flagged
    assert not sc.judge("No, it is 12.", question="Is it 13?").flagged
    assert not sc.judge("No problem, I hear it.", question="Can you hear this?").flagged


def test_eval_and_the_verifier_use_the_judge() -> None:
    from stepaudio_rt.training.evaluate import _summarise

    # paraphrases the judge flags: eval's claim rate counts them (two of four replies)
    replies = ["Yes, I can hear it.", "As a text model, I have my limits.", "I don't have ears.", "I hear a beep."]
    rows = [
        {"task": "self_cognition", "user_text": "Can you hear this?", "replies": {"thinking": r},
         "correct": {"thinking": check_answer("self_cognition", r, "yes")}}
        for r in replies
    ]
    summary = _summarise(rows, ["thinking"])
    assert summary["cannot_hear_claim_rate"]["thinking"] == 0.5
    assert summary["self_cognition_error_rate"]["thinking"] == 0.5
    assert not check_answer("self_cognition", "I am a text-based AI, I only read text.", "yes")
    assert not check_answer("self_cognition", "Yes, but I am a text-based model.", "yes")
    assert check_answer("self_cognition", "Yes, I can hear it.", "yes")
    assert not check_answer("self_cognition", "No, there is nothing.", "yes")


def test_error_rate_counts_flagged_replies() -> None:
    assert sc.error_rate(["Yes, I can hear it.", "I can't hear anything.", "I hear a beep.", "I cannot hear."]) == 0.5
    assert sc.error_rate([]) == 0.0


def test_contaminated_samples_are_text_only_claims_the_judge_flags() -> None:
    samples = sc.contaminated_samples(np.random.default_rng(0), 40)
    assert len(samples) == 40 and all(s.audio is None and not s.think for s in samples)
    assert all(sc.flags(s.answer) for s in samples)
    assert {s.answer for s in samples} == set(sc.CONTAMINATION_REPLIES)  # every reply drawn at this size


def test_probe_phrasings_are_held_out() -> None:
    seen = set(tp.HEAR_QUESTIONS) | set(tp.HEAR_TEXT_QUESTIONS) | set(sc.CONTAMINATION_QUESTIONS)
    assert not seen & set(sc.PROBE_QUESTIONS)


def test_contamination_share_keeps_existing_stage_keys_and_is_only_in_the_mgrd_recipe() -> None:
    """A run started before the field existed has key files without it: at the default 0 they still
    match (no stage redone); the MGRD recipe's share changes the cold-start key."""
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.demo import _stage_key, _without_new_defaults

    new = DemoConfig().to_dict()
    old = {k: v for k, v in new.items() if k != "text_model_claim_share"}  # a v2 run's sft.key.json
    assert new["text_model_claim_share"] == 0.0
    for stage in ("sft", "distill_1", "think_incomplete"):
        assert _stage_key(stage, old) == _stage_key(stage, _without_new_defaults(new, old))
    mgrd = DemoConfig.mgrd()
    assert mgrd.text_model_claim_share > 0
    assert _stage_key("sft", old) != _stage_key("sft", _without_new_defaults(mgrd.to_dict(), old))
    with pytest.raises(ValueError, match="text_model_claim_share"):
        DemoConfig(text_model_claim_share=1.0)


def test_cold_start_mixes_in_the_contaminated_share_without_changing_the_rest() -> None:
    from stepaudio_rt.model.testing import tiny_tokenizer
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.stages import contamination_examples

    tok = tiny_tokenizer()
    assert contamination_examples(1000, tok, DemoConfig.mini()) == []
    ex = contamination_examples(980, tok, DemoConfig.mini(text_model_claim_share=0.02))
    assert len(ex) == 20 and {e.task for e in ex} == {sc.CONTAMINATION_TASK}
    assert all(not e.chunks for e in ex)  # text only
    replies = {tok.decode(e.input_ids[e.target_start :].tolist()) for e in ex}
    assert all(sc.flags(r) for r in replies)


def test_self_distillation_filter_rejects_judged_chains_and_counts_them() -> None:
    from stepaudio_rt.training.data.tasks import Sample
    from stepaudio_rt.training.self_distill import filter_chains

    q = Sample("self_cognition", np.zeros(16000, np.float32), "Can you hear this?", "", "Yes, I can hear it.", "yes", {})
    think = "The clip is 1.0 seconds long with sound at -20 dBFS, so there is something to hear."
    chains = [
        f"{think}\n</think>\nYes, I can hear it.<|EOT|>",  # kept
        f"{think}\n</think>\nI am a text-based AI, so I cannot hear audio.<|EOT|>",  # reply claims it
        "I cannot hear audio, I only read text.\n</think>\nYes, I can hear it.<|EOT|>",  # reasoning claims it
        f"{think}\n</think>\nNo.<|EOT|>",  # a bare no to a hearing question
    ]
    kept, report = filter_chains([q], [chains])
    assert [v.reply for _, v in kept] == ["Yes, I can hear it."]
    s = report.summary()
    assert s["self_cognition_rejected"] == 3 and s["reasons"] == {"kept": 1, "self_cognition": 3}
    assert s["self_cognition_rejected_fraction"] == 0.75


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("The clip is 2.4 seconds long with sound at -20 dBFS, so there is something to hear.\n</think>\n"
         "Yes, I can hear it.", "hears"),
        ("The voice has a median pitch of 131 Hz, below 165 Hz, so it is low.\n</think>\nThe voice is low pitched.",
         "other task"),
        ("The clip is 2.\n\n\n</think>\nYes, I can hear you.", "broken chain"),  # the chain broke off
        ("The voice has a median pitch of 238 Hz, above 4 plus 4 is high.\n</think>\nThe voice is high pitched.",
         "broken chain"),  # arithmetic nobody asked for
        ("The clip is 1.2 seconds long.\n</think>\nSorry, I can't hear audio.", "cannot hear"),
        ("The voice has a median pitch of 139 Hz, below 1650 is low.", "other task"),  # cut off, no reply
    ],
)
def test_probe_reply_kind_tells_hearing_from_broken_and_off_task_replies(reply: str, kind: str) -> None:
    assert sc.probe_reply_kind(reply, "Can you hear this?") == kind
    assert kind in sc.PROBE_REPLY_KINDS
