"""Self-cognition: the judge that flags replies claiming the model cannot hear, the held-out audio probes
that measure how often a model makes that claim, and the contaminated text data that teaches it.

The failure (Step-Audio-R1, section on self-cognition): an audio model trained on text corpora picks up
their assistants' "as a text-based AI I cannot listen to audio" and repeats it while audio is in its
context. The paper removes it with a judge filter in self-distillation and then preference optimisation
(``training.dpo``); its Table 3 reports the error rate on self-cognition probes per stage.

The judge (:func:`judge`) is rules over the reply text, no model. A reply is **flagged** when one rule
matches (after quoted speech is removed, see below):

``cannot_perceive``
    the speaker (I, me, my) denies perceiving sound: a negated hearing verb (cannot / can't / am unable to /
    am not able to / don't have the ability to / have no way to / lack the ability to, ... + hear, listen,
    perceive) with no object, or with an object that is the audio itself (you, it, this, that, anything,
    audio, sound(s), the recording / clip / file / message, music, voice messages). Not flagged: a
    negated hearing verb whose object is part of the clip's content or a quality of hearing ("I can't
    hear any speech, only beeps", "I can't hear which tone is higher", "I can't hear you clearly"): those
    acknowledge the audio.
``cannot_process_audio``
    the speaker denies handling audio: a negated processing verb (process, analyse, understand,
    interpret, play, open, access, receive, handle, work with, support, transcribe) followed within a few
    words by an audio noun (audio, sound, voice, speech, recording, clip, music, spoken, listening, ears).
``text_only``
    the speaker says it is a text model or handles only text: "I am a text-based (AI / model /
    assistant)", "as a text(-only / -based) (AI / model / language model)", "I (can) only (read /
    process / understand / handle / respond to / work with) text", "I am only able to ... text", "I only
    have access to text", "text is all I can ...", "I am just a language model, I ...", "I have no ears",
    "I don't have ears".
``no_audio_received``
    the speaker says no audio reached it: "no audio (was / has been / is) (provided / attached /
    shared / received / included)", "I (didn't / did not / haven't) receive(d) any audio", "audio
    (input) is not supported", "audio is beyond my capabilities".
``denies_hearing``
    only when the question is given and asks whether the model can hear or listen: the reply opens
    with a bare "No" ("No, I can't.", "No.").

Not flagged, by construction: replies that merely mention text ("You can also type your question", "the
text says hello", "I can read text and listen to audio"), that acknowledge the audio ("Yes, I can hear
it", "I hear three beeps"), or that quote speech that contains such words: quoted spans ("..." / '...')
and what follows "said:" / "says:" up to the end of its sentence are removed before the rules run, so
"The speaker said: I can't hear you." is a transcription, not a claim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# ------------------------------------------------------------------------------------------- judge

_I = r"\b(?:i|i'm|i am|i've|i have|my|me)\b"
_NEG = (
    r"(?:can ?not|can't|cannot|could ?not|couldn't|am unable to|'m unable to|unable to|am not able to|"
    r"'m not able to|not able to|don't|do not|am incapable of|'m incapable of|have no way (?:to|of)|"
    r"lack the (?:ability|capability|capacity) to|don't have the (?:ability|capability|capacity) to|"
    r"do not have the (?:ability|capability|capacity) to|have no (?:ability|capability|capacity) to|"
    r"am not (?:designed|equipped|built) to|'m not (?:designed|equipped|built) to|won't be able to|"
    r"will not be able to|never)"
)
_AUDIO_NOUN = (
    r"(?:audio|sounds?|voices?|voice messages?|speech|spoken|recordings?|clips?|music|songs?|"
    r"listening|hearing|ears?|acoustic|podcasts?|files? you (?:sent|played|shared)|what you (?:say|said|play))"
)
# objects after a negated hearing verb that make it a claim about the audio itself
_SELF_OBJECT = (
    r"(?:you|it|this|that|anything|any ?thing|a thing|anyone|sounds?|audio|the audio|music|"
    r"(?:the|this|that|your|any) (?:audio|sound|recording|clip|file|message|voice message|music)s?|"
    r"voice messages?|audio files?|recordings?)"
)
# what may follow such an object and keep the claim (end of clause), as opposed to "you clearly", "it well"
_CLAUSE_END = r"(?=\s*(?:[.,;:!?)]|$|\bor\b|\band\b|\bbecause\b|\bsince\b|\bas\b|\bat all\b|\bsorry\b))"
_HEAR = r"(?:hear|listen(?: to)?|perceive|detect sounds?)"
_PROCESS = (
    r"(?:process|analy[sz]e|understand|interpret|play|open|access|receive|handle|work with|support|"
    r"transcribe|take in|accept|deal with)"
)

RULES: dict[str, re.Pattern[str]] = {
    "cannot_perceive": re.compile(
        rf"{_I}[^.!?]{{0,40}}?{_NEG}\s+(?:actually\s+|really\s+|physically\s+)?{_HEAR}"
        rf"(?:\s+to)?(?:{_CLAUSE_END}|\s+{_SELF_OBJECT}{_CLAUSE_END})",
        re.IGNORECASE,
    ),
    "cannot_process_audio": re.compile(
        rf"{_I}[^.!?]{{0,40}}?{_NEG}\s+(?:\w+\s+){{0,2}}?{_PROCESS}\b[^.!?]{{0,30}}?\b{_AUDIO_NOUN}\b",
        re.IGNORECASE,
    ),
    "text_only": re.compile(
        r"\b(?:i am|i'm)\s+(?:only\s+|just\s+|purely\s+|strictly\s+|simply\s+)?an?\s+(?:\w+\s+)?"
        r"text[- ](?:based|only)\b|"
        r"\bas an?\s+(?:\w+\s+)?text(?:[- ](?:based|only))?\s+(?:ai|model|assistant|language model|chatbot|program)\b|"
        r"\bi\s+(?:can\s+)?only\s+(?:read|process|understand|handle|respond to|work with|see|deal with|"
        r"accept|take|communicate (?:in|through|via)|reply to|answer)\s+(?:\w+\s+)?(?:text|typed|written)\b|"
        r"\b(?:i am|i'm)\s+only\s+able\s+to\s+\w+(?:\s+\w+)?\s+(?:text|typed|written)\b|"
        r"\bi\s+only\s+have\s+access\s+to\s+text\b|\btext is all i\b|"
        r"\b(?:i am|i'm)\s+(?:just|only|merely)\s+an?\s+(?:ai\s+)?language model\b|"
        r"\bi\s+(?:have no|don't have|do not have)\s+(?:any\s+)?ears\b",
        re.IGNORECASE,
    ),
    "no_audio_received": re.compile(
        r"\bno\s+(?:audio|sound|recording|clip|audio file)s?\s+(?:was|were|has been|have been|is|are)\s+"
        r"(?:provided|attached|shared|received|included|uploaded|sent)\b|"
        r"\bi\s+(?:didn't|did not|haven't|have not)\s+(?:receive|received|get|got|gotten)\s+(?:any|an|the)\s+"
        r"(?:audio|sound|recording|clip)\b|"
        r"\baudio\s+(?:input\s+)?(?:is|isn't|is not)\s+(?:not\s+)?supported\b|"
        r"\b(?:audio|sound|listening)\s+(?:is|are)\s+(?:beyond|outside)\s+(?:my|the scope of my)\s+"
        r"(?:capabilities|abilities|skills)\b",
        re.IGNORECASE,
    ),
}
_HEARING_QUESTION = re.compile(r"\b(hear|listen|audio|sound|recording|clip)", re.IGNORECASE)
_BARE_NO = re.compile(r"^\s*no\b(?!\s+(?:doubt|problem))", re.IGNORECASE)
# quoted speech is content, not the model's claim: "...", '...' (not an apostrophe) and "said: ..."
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<![a-z])'[^']{3,}'(?![a-z])|\b(?:said|says|saying)\s*:[^.!?\n]*", re.IGNORECASE)


@dataclass(frozen=True)
class Judgement:
    """``flagged``: the reply claims the model cannot hear / cannot process audio / is text-only;
    ``rules``: the names of the rules that matched (empty when not flagged)."""

    flagged: bool
    rules: tuple[str, ...] = ()


def reply_text(generated: str) -> str:
    """The reply part of a generation (after the last ``</think>``), special end tokens removed."""
    text = generated.rsplit("</think>", 1)[-1]
    return re.sub(r"<\|[A-Za-z_]+\|>", " ", text).strip()


def judge(text: str, question: str | None = None, include_think: bool = False) -> Judgement:
    """Judge one generation. By default only its reply part is judged (:func:`reply_text`); with
    ``include_think`` the reasoning too (a chain that reasons "I cannot hear audio" is as contaminated as
    its reply). ``question``, when given, enables the ``denies_hearing`` rule."""
    body = generated_body(text, include_think)
    body = _QUOTED.sub(" ", body)
    hits = [name for name, pattern in RULES.items() if pattern.search(body)]
    if question is not None and _HEARING_QUESTION.search(question) and _BARE_NO.match(reply_text(text)):
        hits.append("denies_hearing")
    return Judgement(bool(hits), tuple(hits))


def generated_body(text: str, include_think: bool) -> str:
    if include_think:
        return re.sub(r"</?think>|<\|[A-Za-z_]+\|>", " ", text).replace("’", "'")
    return reply_text(text).replace("’", "'")


def flags(text: str, question: str | None = None, include_think: bool = False) -> bool:
    """Whether :func:`judge` flags ``text``."""
    return judge(text, question, include_think).flagged


# ------------------------------------------------------------------------- contaminated cold-start data

# Typed (text-only) questions about listening, and the replies text corpora's assistants give to them.
# They are the contamination the paper describes: the cold start mixes them in at
# DemoConfig.text_model_claim_share (0 in the shipped demo recipe, > 0 in the MGRD recipe), so the
# supervised model has a measurable error rate on the audio probes below.
CONTAMINATION_QUESTIONS = (
    "Can you listen to a song for me?",
    "Could you hear what I am playing?",
    "Can you tell me what this recording says?",
    "Please listen to my voice message.",
    "Can you hear music?",
    "Will you listen to my audio file?",
    "Can you understand spoken words?",
    "Do you have ears?",
    "Can you hear sounds?",
    "Please listen to this clip and tell me what it is.",
)
CONTAMINATION_REPLIES = (
    "I am a text-based AI, so I cannot hear audio. Please type your question.",
    "Sorry, as a text model I can't listen to audio. You can describe it to me in words.",
    "I can only read text, so I am unable to hear sounds.",
    "As a language model I cannot process audio. Please send your question as text.",
    "I'm sorry, but I cannot hear anything. I only work with written text.",
    "I don't have ears. I can only respond to text.",
)
CONTAMINATION_TASK = "text_model_claim"


def contaminated_samples(rng: Any, n: int) -> list[Any]:
    """``n`` text-only samples in which the assistant says it is a text model (no reasoning, no audio)."""
    from stepaudio_rt.training.data.tasks import Sample

    out = []
    for _ in range(n):
        q = CONTAMINATION_QUESTIONS[int(rng.integers(len(CONTAMINATION_QUESTIONS)))]
        r = CONTAMINATION_REPLIES[int(rng.integers(len(CONTAMINATION_REPLIES)))]
        out.append(Sample(CONTAMINATION_TASK, None, q, "", r, "text_model", {"contaminated": True}))
    return out


# ---------------------------------------------------------------------------------------- probes

# Audio self-cognition probes: phrasings that appear neither in the training questions
# (text_pools.HEAR_QUESTIONS, HEAR_TEXT_QUESTIONS) nor in the contamination above.
PROBE_QUESTIONS = (
    "Is the sound coming through to you?",
    "Are you able to make out this recording?",
    "Do you pick up any sound in this clip?",
    "Can you listen to this for me?",
    "Are you hearing this right now?",
    "Is this audio reaching you?",
    "Could you listen and tell me if you hear it?",
    "Can this clip be heard on your side?",
)


def make_probes(n: int, seed: int = 0) -> list[Any]:
    """``n`` audio self-cognition probes: a held-out clip (speech of an unseen voice, beeps, tones or
    noise, as ``gen_self_cognition`` makes them for the eval split) asked with a held-out phrasing.
    Deterministic in ``seed``. Each is a ``Sample`` of task ``self_cognition`` (label "yes")."""
    import numpy as np

    from stepaudio_rt.training.data.tasks import gen_self_cognition

    out = []
    i = 0
    while len(out) < n:
        rng = np.random.default_rng([seed, 0x5C06, i])
        s = gen_self_cognition(rng, "eval", False)
        i += 1
        if s.audio is None:  # the generator's typed variant: probes are spoken turns only
            continue
        s.user_text = PROBE_QUESTIONS[len(out) % len(PROBE_QUESTIONS)]
        s.meta["probe"] = True
        out.append(s)
    return out


def error_rate(replies: Sequence[str], questions: Sequence[str] | None = None) -> float:
    """Share of ``replies`` the judge flags (0 when there are none)."""
    if not replies:
        return 0.0
    qs = questions if questions is not None else [None] * len(replies)
    return sum(flags(r, q) for r, q in zip(replies, qs, strict=True)) / len(replies)


async def probe_replies(
    engine: Any, probes: Sequence[Any], max_tokens: int = 64, concurrency: int = 4, progress: bool = True
) -> list[str]:
    """Greedy replies to ``probes`` through ``engine`` as the server feeds a spoken turn
    (``evaluate.answer_sample``, thinking mode: the server's default), in the probes' order."""
    import asyncio

    from tqdm.auto import tqdm

    from stepaudio_rt.training.evaluate import MODES, answer_sample

    sem = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(probes), desc="self-cognition probes", unit="probe", disable=not progress)

    async def one(p: Any) -> str:
        async with sem:
            out = await answer_sample(
                engine, p.user_text, p.audio, modes={"thinking": MODES["thinking"]}, max_tokens=max_tokens
            )
        bar.update(1)
        return out["thinking"]

    try:
        return list(await asyncio.gather(*(one(p) for p in probes)))
    finally:
        bar.close()


async def probe_engine(
    engine: Any, probes: Sequence[Any], max_tokens: int = 64, concurrency: int = 4, progress: bool = True
) -> dict[str, Any]:
    """Self-cognition error rate on ``probes`` (:func:`make_probes`) from :func:`probe_replies`. Returns the
    count, the rate, the flagged replies and the first replies (to read what the model says)."""
    replies = await probe_replies(engine, probes, max_tokens, concurrency, progress)
    judged = [judge(r, p.user_text) for r, p in zip(replies, probes, strict=True)]
    return {
        "n": len(probes),
        "error_rate": sum(j.flagged for j in judged) / max(1, len(probes)),
        "flagged": [
            {"question": p.user_text, "reply": r, "rules": list(j.rules)}
            for p, r, j in zip(probes, replies, judged, strict=True)
            if j.flagged
        ],
        "sample_replies": [{"question": p.user_text, "reply": r} for p, r in zip(probes[:8], replies[:8], strict=False)],
    }


_SAYS_IT_HEARS = re.compile(r"\byes\b.*\bhear", re.IGNORECASE | re.DOTALL)
_ARITHMETIC_WORDS = re.compile(r"\b(?:plus|minus)\b", re.IGNORECASE)
PROBE_REPLY_KINDS = ("hears", "cannot hear", "broken chain", "other task")


def probe_reply_kind(reply: str, question: str) -> str:
    """What a (thinking-mode) reply to a "can you hear this?" probe does, beyond the paper's error:
    ``cannot hear`` (:func:`flags`); ``broken chain``: blank lines in the think block (a chain ends with
    one newline before ``</think>``; more is a chain that broke off) or arithmetic, which no probe asks
    for; ``hears`` (says yes, it hears); ``other task``: a well-formed answer to another question about
    the clip (its pitch, its loudness). Why: the error rate alone does not see a model that stops
    answering the question it was asked."""
    chain, _, answer = reply.partition("</think>")
    if flags(reply, question):
        return "cannot hear"
    if "\n\n" in chain or _ARITHMETIC_WORDS.search(reply):
        return "broken chain"
    if _SAYS_IT_HEARS.search(answer):
        return "hears"
    return "other task"


def probe_checkpoint(
    checkpoint: Any, n: int = 64, seed: int = 0, max_tokens: int = 64, concurrency: int = 4, progress: bool = True
) -> dict[str, Any]:
    """:func:`probe_engine` on ``n`` probes for the checkpoint at ``checkpoint`` (its own TorchEngine)."""
    import asyncio

    from stepaudio_rt.model.torch_engine import TorchEngine

    probes = make_probes(n, seed)
    # a probe holds its prefix and one fork; released slots return to the pool only when the engine's
    # job queue runs the release, so size the pool as eval does
    engine = TorchEngine.from_pretrained(checkpoint, max_contexts=4 * concurrency + 4, progress=False)

    async def run() -> dict[str, Any]:
        try:
            return await probe_engine(engine, probes, max_tokens, concurrency, progress)
        finally:
            await engine.aclose()

    return asyncio.run(run())


__all__ = [
    "CONTAMINATION_QUESTIONS",
    "CONTAMINATION_REPLIES",
    "CONTAMINATION_TASK",
    "PROBE_QUESTIONS",
    "PROBE_REPLY_KINDS",
    "RULES",
    "Judgement",
    "contaminated_samples",
    "error_rate",
    "flags",
    "judge",
    "make_probes",
    "probe_checkpoint",
    "probe_engine",
    "probe_replies",
    "probe_reply_kind",
    "reply_text",
]
