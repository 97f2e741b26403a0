"""The demo training pipeline in miniature (real synthesis, tokenizer, Whisper encoder, SFT, export, eval),
the SFT collator's exactness against the serving path, and the committed demo checkpoint end to end."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio_rt.model.audio_frontend import SAMPLE_RATE, log_mel_spectrogram, split_at_pauses
from stepaudio_rt.model.checkpoint import load_checkpoint
from stepaudio_rt.model.modeling import StepAudio2ForCausalLM
from stepaudio_rt.model.testing import tiny_config, tiny_tokenizer
from stepaudio_rt.model.tokenizer import EOT
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT, LISTEN_CHUNK_SECONDS, DemoConfig
from stepaudio_rt.training.demo import DEFAULT_OUT_DIR, train_demo, train_demo_tokenizer
from stepaudio_rt.training.sft import (
    IGNORE_INDEX,
    Batch,
    audio_alignment_loss,
    audio_embeddings,
    audio_scale_penalty,
    batch_order,
    chunk_token_counts,
    collate,
    encode_chunks,
    load_loss_log,
    spoken_token_ids,
    tokenize_example,
    train_sft,
)
from tests.conftest import speak_held_out_voice

ESPEAK = shutil.which("espeak-ng") is not None


def test_chunk_token_counts_follow_the_listen_cut() -> None:
    # in silence the cut is the fixed one: 4.5 s -> 2 s + 2 s + 0.5 s; 2 s = 202 mel frames -> 25 tokens,
    # 0.5 s = 52 frames -> 7 tokens
    assert chunk_token_counts(np.zeros(int(4.5 * SAMPLE_RATE), np.float32), 2.0) == [25, 25, 7]
    assert len(chunk_token_counts(np.zeros(2 * SAMPLE_RATE, np.float32), 2.0)) == 1
    # noise has no pause: the cut lands on its quietest 20 ms, never before 60% of the chunk
    noise = np.random.default_rng(0).standard_normal(int(4.5 * SAMPLE_RATE)).astype(np.float32)
    counts = chunk_token_counts(noise, 2.0)
    assert len(counts) == 3 and all(15 <= n <= 25 for n in counts[:2])
    # the recipe's own chunk length: a whole 4 s spoken question is one chunk
    assert len(chunk_token_counts(noise[: int(LISTEN_CHUNK_SECONDS * SAMPLE_RATE)])) == 1


def test_tokenizer_splits_digits_and_keeps_special_tokens() -> None:
    tok = train_demo_tokenizer(["The answer is 47. What is 12 plus 35?"] * 50, vocab_size=300)
    pieces = [tok.decode([i]) for i in tok.encode("is 147.")]
    assert {"1", "4", "7"} <= set(pieces)
    ids = tok.encode(f"<think>\n\n</think>\nok{EOT}")
    assert tok.decode(ids) == f"<think>\n\n</think>\nok{EOT}"
    assert tok.encode("</think>")[0] == tok.think_close_ids[0] and len(tok.think_close_ids) == 1


def test_collate_masks_prompt_and_audio_and_matches_serving_encoder() -> None:
    """Loss only on the assistant part; batched cached features give exactly the embeddings the engine's
    ``encode_audio`` gives each chunk alone."""
    torch.manual_seed(0)
    cfg = tiny_config(audio_state=32)
    model = StepAudio2ForCausalLM(cfg).eval()
    tok = tiny_tokenizer(cfg.vocab_size)
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(int(s * SAMPLE_RATE)).astype(np.float32) * 0.1 for s in (9.0, 1.1, 4.0)]
    store, per_clip = encode_chunks(model.encoder, clips, progress=False)
    assert [len(c) for c in per_clip] == [len(split_at_pauses(c, LISTEN_CHUNK_SECONDS)) for c in clips]
    assert len(per_clip[0]) >= 3 and [len(c) for c in per_clip[1:]] == [1, 1]
    examples = [
        tokenize_example(
            tok, "Count the beeps.", "", f"I hear {k} beeps.", [int(store.tokens[c]) for c in ids], ids, "t"
        )
        for k, ids in enumerate(per_clip)
    ]
    batch = collate(examples, store, pad_id=0)
    patch = tok.ids.audio_patch
    assert int((batch.input_ids == patch).sum()) == sum(batch.chunk_tokens)
    assert batch.clip_tokens == [sum(int(store.tokens[c]) for c in ids) for ids in per_clip]
    for row, e in enumerate(examples):
        labels = batch.labels[row]
        assert bool((labels[: e.target_start] == IGNORE_INDEX).all())
        assert not bool((labels[e.target_start : len(e.input_ids)] == IGNORE_INDEX).any())
        assert int(labels[len(e.input_ids) - 1]) == tok.ids.eot  # the target ends with <|EOT|>
        assert bool((labels[len(e.input_ids) :] == IGNORE_INDEX).all())  # padding is never trained on
        assert not bool((labels == patch).any())
        target = tok.decode(e.input_ids[e.target_start :].tolist())
        assert target == f"\n</think>\nI hear {row} beeps.{EOT}"
    with torch.no_grad():
        got = audio_embeddings(model, batch)
        want = torch.cat(
            [
                model.encode_audio(log_mel_spectrogram(chunk, n_mels=cfg.audio.n_mels)[None])[0]
                for clip in clips
                for chunk in split_at_pauses(clip, LISTEN_CHUNK_SECONDS)
            ]
        )
    assert got is not None and got.shape == want.shape
    # fp16 feature cache: equal up to half-precision rounding of the encoder outputs
    assert torch.allclose(got, want, atol=2e-2, rtol=2e-2)


def test_audio_scale_penalty_pulls_the_adaptor_output_to_the_text_embedding_scale() -> None:
    torch.manual_seed(0)
    model = StepAudio2ForCausalLM(tiny_config())
    text_rms = model.model.embed_tokens.weight.pow(2).mean().sqrt().item()
    feats = torch.randn(2, 20, model.config.audio.n_audio_state)
    on_scale = torch.randn(10, model.config.text.hidden_size) * text_rms
    assert audio_scale_penalty(model, on_scale).item() < 1e-2
    assert audio_scale_penalty(model, on_scale * 100).item() > 20  # log(100)^2 = 21.2
    # one gradient step on the penalty alone shrinks an adaptor output that is too large
    with torch.no_grad():
        model.adapter.linear2.weight.mul_(50.0)
    before = model.adapter(feats).pow(2).mean().sqrt().item()
    opt = torch.optim.SGD(model.adapter.parameters(), lr=1e-3)
    audio_scale_penalty(model, model.adapter(feats)).backward()
    opt.step()
    assert model.adapter(feats).pow(2).mean().sqrt().item() < before
    assert before > 10 * text_rms


def test_spoken_token_ids_are_the_words_as_a_reply_writes_them() -> None:
    tok = train_demo_tokenizer(["what is 35 plus 38. The speaker said: the green dog."] * 50, vocab_size=300)
    ids = spoken_token_ids(tok, "What is 35 plus 38?")
    assert tok.decode([int(i) for i in ids]).replace(" ", "") == "whatis35plus38"
    assert all(tok.decode([int(i)]).strip() for i in ids)  # no white-space-only targets
    assert tokenize_example(tok, "", "", "ok", [], [], "t", spoken_text="hi").spoken is None  # no audio, no target


def test_audio_alignment_loss_rewards_frames_that_look_like_the_spoken_words() -> None:
    torch.manual_seed(0)
    model = StepAudio2ForCausalLM(tiny_config())
    table = model.model.embed_tokens.weight.detach()
    blank = 3
    words = torch.tensor([10, 11, 12])
    aligned = table[torch.tensor([blank, 10, 10, blank, 11, blank, 12, blank])]  # 8 frames saying 10, 11, 12
    shuffled = table[torch.tensor([blank, 12, 12, blank, 10, blank, 11, blank])]  # the same words, wrong order
    silence = table[torch.full((5,), blank)]  # a clip without speech: no target, no loss

    def loss(clips: list[torch.Tensor], targets: list[torch.Tensor | None]) -> torch.Tensor | None:
        sizes = [c.shape[0] for c in clips]
        batch = Batch(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), None, [], 0, sizes, targets)
        return audio_alignment_loss(model, torch.cat(clips), batch, blank)

    good = loss([aligned, silence], [words, None])
    bad = loss([shuffled, silence], [words, None])
    assert good is not None and bad is not None
    assert good.item() < 0.1 and bad.item() > 1.0, (good.item(), bad.item())
    assert loss([silence], [None]) is None
    # its gradient reaches the adaptor
    value = loss([model.adapter(torch.randn(1, 16, model.config.audio.n_audio_state))[0]], [words])
    assert value is not None
    value.backward()
    assert model.adapter.linear2.weight.grad is not None and model.adapter.linear2.weight.grad.abs().sum() > 0


def test_audio_alignment_over_leading_dims_leaves_the_other_dims_free() -> None:
    torch.manual_seed(0)
    model = StepAudio2ForCausalLM(tiny_config())
    hidden = model.config.text.hidden_size
    dims = hidden // 2
    table = model.model.embed_tokens.weight.detach()
    blank, words = 3, torch.tensor([10, 11])
    frames = table[torch.tensor([blank, 10, blank, 11, blank])].clone()
    # what the alignment ignores: a large "how it sounds" component in the free dimensions
    frames[:, dims:] += 5.0 * torch.randn(5, hidden - dims)
    frames.requires_grad_(True)
    batch = Batch(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long), None, [], 0, [5], [words])
    loss_sub = audio_alignment_loss(model, frames, batch, blank, dims=dims)
    loss_all = audio_alignment_loss(model, frames, batch, blank)
    assert loss_sub is not None and loss_all is not None
    assert loss_sub.item() < 0.1 < loss_all.item(), (loss_sub.item(), loss_all.item())
    loss_sub.backward()
    assert frames.grad is not None
    assert frames.grad[:, dims:].abs().sum() == 0 and frames.grad[:, :dims].abs().sum() > 0


def test_a_non_finite_loss_stops_sft_before_the_weights_are_touched(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(audio_state=32)
    model = StepAudio2ForCausalLM(cfg)
    tok = tiny_tokenizer(cfg.vocab_size)
    clip = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 0.1
    store, per_clip = encode_chunks(model.encoder, [clip], progress=False)
    ids = per_clip[0]
    example = tokenize_example(tok, "hi", "", "ok", [int(store.tokens[c]) for c in ids], ids, "t", spoken_text="ok")
    with torch.no_grad():
        model.adapter.linear2.bias.fill_(float("nan"))  # a broken adaptor: every audio frame is NaN
    before = model.model.embed_tokens.weight.detach().clone()
    run_cfg = DemoConfig.mini(steps=2, first_phase_steps=0, first_phase_leads={})
    with pytest.raises(FloatingPointError, match="at step 0"):
        train_sft(model, [example] * 4, store, tok, run_cfg, tmp_path / "sft", resume=False, progress=False)
    assert torch.equal(model.model.embed_tokens.weight, before)  # no optimiser step ran on it
    assert not (tmp_path / "sft" / "state.pt").exists()


def test_batch_order_is_deterministic_and_covers_every_example() -> None:
    lengths = list(np.random.default_rng(1).integers(10, 200, size=103))
    a = batch_order(lengths, 8, seed=3, epoch=0)
    assert a == batch_order(lengths, 8, seed=3, epoch=0)
    assert a != batch_order(lengths, 8, seed=3, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(103))


def test_batch_stream_curriculum_first_draws_from_the_subset_and_resumes_exactly() -> None:
    from stepaudio_rt.training.sft import batch_stream

    lengths = [5 + i % 7 for i in range(40)]
    subset = list(range(0, 40, 4))
    stream = batch_stream(lengths, 4, seed=1, start_step=0, phases=[(6, subset)])
    batches = [next(stream) for _ in range(20)]
    assert all(set(b) <= set(subset) for b in batches[:6])
    assert any(not set(b) <= set(subset) for b in batches[6:])
    for start in (0, 3, 6, 11):  # resuming at any step replays the same batches
        resumed = batch_stream(lengths, 4, seed=1, start_step=start, phases=[(6, subset)])
        assert [next(resumed) for _ in range(20 - start)] == batches[start:]
    plain = batch_stream(lengths, 4, seed=1, start_step=0)
    assert [next(plain) for _ in range(14)] == batches[6:]


def test_first_phase_subset_lists_a_repeated_task_that_many_times() -> None:
    from stepaudio_rt.training.sft import batch_stream, first_phase_subset

    tasks = ["noise", "tone_compare", "text_chat", "tone_compare", "loudness"]
    subset = first_phase_subset(tasks, ("noise", "tone_compare", "loudness"), {"tone_compare": 3})
    assert sorted(subset) == [0, 1, 1, 1, 3, 3, 3, 4]  # text_chat (2) is not a perception task
    assert first_phase_subset(tasks, ("noise",), {"tone_compare": 3}) == [0]
    # the batches of the phase then draw each tone example three times per pass
    stream = batch_stream([6] * 5, 4, seed=0, start_step=0, phases=[(2, subset)])
    drawn = [i for _ in range(2) for i in next(stream)]
    assert drawn.count(1) == 3 and drawn.count(0) == 1


def test_a_lead_task_trains_alone_first_then_the_perception_phase_then_everything() -> None:
    from stepaudio_rt.training.sft import batch_stream, curriculum_phases

    tasks = ["tone_compare", "noise", "text_chat", "tone_compare", "loudness", "text_chat"] * 4
    cfg = DemoConfig.mini(first_phase_steps=5, first_phase_leads={"tone_compare": 2})
    phases = curriculum_phases(tasks, cfg)
    tone = {i for i, t in enumerate(tasks) if t == "tone_compare"}
    perception = {i for i, t in enumerate(tasks) if t in cfg.first_phase_tasks}
    assert [(n, set(sub)) for n, sub in phases] == [(2, tone), (3, perception)]
    lengths = [6] * len(tasks)
    stream = batch_stream(lengths, 4, seed=0, start_step=0, phases=phases)
    batches = [next(stream) for _ in range(12)]
    assert all(set(b) <= tone for b in batches[:2])
    assert all(set(b) <= perception for b in batches[2:5]) and any(not set(b) <= tone for b in batches[2:5])
    assert any(tasks[i] == "text_chat" for b in batches[5:] for i in b)
    for start in (1, 2, 4, 7):  # resuming inside either phase replays the same batches
        resumed = batch_stream(lengths, 4, seed=0, start_step=start, phases=phases)
        assert [next(resumed) for _ in range(12 - start)] == batches[start:]
    with pytest.raises(ValueError, match="more than first_phase_steps"):
        DemoConfig.mini(first_phase_steps=5, first_phase_leads={"tone_compare": 6})
    with pytest.raises(ValueError, match="integer >= 1"):
        DemoConfig.mini(first_phase_leads={"tone_compare": 0})


def test_the_perception_phase_runs_at_its_share_of_the_learning_rate() -> None:
    from stepaudio_rt.training.sft import lr_lambda

    plain = [lr_lambda(s, 2, 10, 0.1) for s in range(10)]
    scaled = [lr_lambda(s, 2, 10, 0.1, first_phase_steps=4, first_phase_scale=0.5) for s in range(10)]
    assert scaled[:4] == pytest.approx([0.5 * v for v in plain[:4]])
    assert scaled[4:] == plain[4:]  # the mixed phase keeps the schedule
    assert plain[1] == 1.0 and plain[-1] > 0.1
    with pytest.raises(ValueError, match="first_phase_lr_scale"):
        DemoConfig.mini(first_phase_lr_scale=0.0)


def test_demo_config_round_trips_through_json() -> None:
    cfg = DemoConfig.mini(
        first_phase_tasks=("noise", "loudness"), first_phase_repeats={"noise": 2}, first_phase_leads={"noise": 1}
    )
    back = DemoConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_demo_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="divisible"):
        DemoConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="unknown DemoConfig keys"):
        DemoConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="first_phase_repeats"):
        DemoConfig(first_phase_repeats={"tone_compare": 0})


@pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not installed")
def test_miniature_pipeline_trains_resumes_exports_and_evaluates(tmp_path: Path) -> None:
    from stepaudio_rt.training.evaluate import evaluate_checkpoint

    work, out = tmp_path / "work", tmp_path / "ckpt"
    cfg = DemoConfig.mini()
    assert train_demo(out, cfg, work_dir=work, progress=False) == out

    ckpt = load_checkpoint(out, progress=False)  # the serving loader, strict on every tensor
    raw = json.loads((out / "config.json").read_text())
    assert raw["architectures"] == ["StepAudio2ForCausalLM"]
    assert raw["audio_encoder_config"]["n_mels"] == 80 and raw["audio_encoder_config"]["n_audio_state"] == 384
    assert ckpt.config.hidden_size == cfg.hidden_size
    gen = json.loads((out / "generation_config.json").read_text())
    assert (
        gen["default_system_prompt"] == DEMO_SYSTEM_PROMPT
        and gen["audio_chunk_seconds"] == LISTEN_CHUNK_SECONDS
    )
    assert (out / "training_loss.png").stat().st_size > 1000
    records = load_loss_log(work / "sft" / "loss.jsonl")
    assert [r["step"] for r in records] == list(range(1, cfg.steps + 1))
    assert all(math.isfinite(r["loss"]) for r in records)
    assert records[-1]["loss"] < records[0]["loss"]  # a few steps on a few dozen samples do fit
    # the alignment loss joins the scale penalty when the perception-only phase ends
    first = cfg.first_phase_steps
    # (a batch of only typed examples has no audio and so no audio loss at all: left out of "aux")
    assert all("align" not in r["aux"] for r in records[:first])
    assert sum("align" in r["aux"] for r in records[first:]) >= len(records[first:]) // 2
    assert all(r["aux"]["align"] > 0 for r in records[first:] if "align" in r["aux"])
    # the acoustic and frame heads train from the first step (the recipe's heads, fitted at the start)
    assert any({"acoustic", "frame"} <= set(r["aux"]) for r in records[:first])
    from stepaudio_rt.training.whisper_encoder import convert_ct2_whisper_encoder

    enc_state, _ = convert_ct2_whisper_encoder()  # the exported encoder is Whisper, untouched by SFT
    assert torch.equal(ckpt.model.encoder.conv1.weight, enc_state["conv1.weight"].half().float())

    # Resume: more steps continue from the saved state; the data set is not rebuilt.
    manifest_mtime = (work / "data" / "manifest.json").stat().st_mtime
    train_demo(out, DemoConfig.mini(steps=cfg.steps + 2), work_dir=work, progress=False)
    assert (work / "data" / "manifest.json").stat().st_mtime == manifest_mtime
    records = load_loss_log(work / "sft" / "loss.jsonl")
    assert [r["step"] for r in records][-2:] == [cfg.steps + 1, cfg.steps + 2]

    # every later stage ran and reported: two self-distillation iterations, then think-incomplete SFT
    for it in (1, 2):
        m = json.loads((work / f"distill_{it}" / "metrics.json").read_text())
        assert m["iteration"] == it and m["chains"] == cfg.sd_questions * cfg.sd_k
        assert 0.0 <= m["kept_fraction"] <= 1.0 and 0.0 <= m["grounding_rate"] <= 1.0
        assert m["mean_think_tokens"] >= 0 and m["tolerances"]["Hz"]["rel"] > 0
        assert len(load_loss_log(work / f"distill_{it}" / "sft" / "loss.jsonl")) == cfg.sd_steps
        assert (work / f"distill_{it}" / "ckpt" / "config.json").exists()
    assert len(load_loss_log(work / "think_incomplete" / "loss.jsonl")) == cfg.ti_steps
    assert (work / "self_distillation.png").stat().st_size > 1000
    assert (work / "think_incomplete" / "loss.png").stat().st_size > 1000
    assert gen["reasoning_segment_tokens"] > 0 and gen["reply_segment_tokens"] > 0
    run = json.loads((out / "training_summary.json").read_text())
    assert {"sft_s", "distill_1_s", "distill_2_s", "think_incomplete_s"} <= set(run["timings_s"])
    assert run["peak_rss_gb_after"]["think_incomplete"] > 0.1
    assert [d["iteration"] for d in run["self_distillation"]] == [1, 2]

    from stepaudio_rt.training.evaluate import ReasoningFigures

    figures = ReasoningFigures(budgets=(0, 4), budget_n=3, sessions=1, session_turns=2, partial_n=3)
    summary = evaluate_checkpoint(
        out, tmp_path / "eval", n=8, data_dir=work / "data", concurrency=3, progress=False, reasoning=figures
    )
    assert summary["n"] == 8
    assert set(summary["accuracy"]) == {"thinking", "empty_think", "think_first", "speak_first"}
    assert all(0.0 <= a <= 1.0 for accs in summary["accuracy"].values() for a in accs.values())
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["n"] == 8
    assert (tmp_path / "eval" / "eval_accuracy.png").stat().st_size > 1000
    reasoning = summary["reasoning"]
    assert set(reasoning["think_budget"]["overall"]) == {"0", "4"}
    assert (tmp_path / "eval" / "eval_think_budget.png").stat().st_size > 1000
    assert reasoning["sessions"]["sessions"] == 1 and set(reasoning["sessions"]["accuracy_per_turn"]) == {"1", "2"}
    assert set(reasoning["partial_reasoning"]["accuracy"]) == {"none", "partial", "full"}
    assert set(reasoning["reply_audio"]) == {"thinking", "empty_think", "think_first", "speak_first"}


needs_checkpoint = pytest.mark.skipif(
    not (DEFAULT_OUT_DIR / "config.json").exists(), reason="demo checkpoint not built yet"
)
needs_espeak = pytest.mark.skipif(not ESPEAK, reason="espeak-ng is not installed")


def _speak_held_out(text: str) -> np.ndarray:
    return speak_held_out_voice(text, pitch=45, rate_wpm=170, level_dbfs=None)


def _ask_checkpoint(user_text: str, audio: np.ndarray | None, thinking_only: bool = False) -> dict[str, str]:
    """Greedy replies with thinking and with the empty think block (``thinking_only``: the served default
    alone)."""
    from stepaudio_rt.model.prompt import GENERATION_PREFIX
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.training.evaluate import MODES, answer_sample

    modes = {"thinking": GENERATION_PREFIX} if thinking_only else MODES

    async def run() -> dict[str, str]:
        engine = TorchEngine.from_pretrained(DEFAULT_OUT_DIR, progress=False)
        try:
            return await answer_sample(engine, user_text, audio, modes=modes)
        finally:
            await engine.aclose()

    return asyncio.run(run())


@needs_checkpoint
@needs_espeak
def test_committed_demo_checkpoint_hears_loudness_of_held_out_voices() -> None:
    """The bundled checkpoint, loaded by the serving loader and run by the serving engine, tells a loud
    from a quiet voice it never heard in training (labels checked on the signal first, as the data set
    does), with thinking and with the empty think block, and acknowledges hearing."""
    from stepaudio_rt.training.data.verify import check_answer

    ckpt = load_checkpoint(DEFAULT_OUT_DIR, progress=False)
    assert sum(p.numel() for p in ckpt.model.parameters()) > 5_000_000
    size = sum(f.stat().st_size for f in DEFAULT_OUT_DIR.iterdir())
    assert size < 60 * 1024**2
    for level, label in ((-16.0, "loud"), (-40.0, "quiet")):
        audio = speak_held_out_voice("the big cat slept in the garden", "en-gb-x-rp+m6", pitch=40, level_dbfs=level)
        for mode, reply in _ask_checkpoint("Is the speaker loud or quiet?", audio).items():
            assert check_answer("loudness", reply, label), (label, mode, reply)
    replies = _ask_checkpoint("Can you hear this?", _speak_held_out("tom buys brown rice"))
    for mode, reply in replies.items():
        assert check_answer("self_cognition", reply, "yes"), (mode, reply)


@needs_checkpoint
@needs_espeak
def test_committed_demo_checkpoint_hears_the_pitch_of_held_out_voices() -> None:
    """Held-out voice-pitch questions (eval split: voices never trained on, labels checked on the measured
    F0), two of each kind: high female voices, low male voices, and female voices at their lowest, where
    timbre says "high" and only the pitch says "low" (the v2 model learned timbre and failed these)."""
    from stepaudio_rt.training.data.tasks import gen_voice_pitch
    from stepaudio_rt.training.data.verify import check_answer

    rng = np.random.default_rng(1234)
    wanted = {("high", False): 2, ("low", False): 2, ("low", True): 2}
    while any(wanted.values()):
        sample = gen_voice_pitch(rng, "eval", True)
        kind = (sample.label, sample.label == "low" and "f" in sample.meta["voice"].split("+")[-1])
        if wanted.get(kind, 0) == 0:
            continue
        wanted[kind] -= 1
        reply = _ask_checkpoint(sample.user_text, sample.audio, thinking_only=True)["thinking"]
        assert check_answer("voice_pitch", reply, sample.label), (sample.meta["voice"], sample.label, reply)


@needs_checkpoint
def test_committed_demo_checkpoint_tells_which_of_two_tones_is_higher() -> None:
    """Tone height was the last perception task the demo model learned (it answered one label for every
    pair until the curriculum gave it a lead): three fixed pairs, both orders, in both think modes."""
    from stepaudio_rt.training.data import acoustics, signals
    from stepaudio_rt.training.data.verify import check_answer

    for f1, f2, label in ((330.0, 620.0, "second"), (900.0, 450.0, "first"), (520.0, 260.0, "first")):
        audio = signals.two_tones(f1, f2, tone_s=0.5, gap_s=0.3, amp=0.3)
        freqs = acoustics.segment_frequencies_hz(audio)
        assert (freqs[1] > freqs[0]) == (label == "second")
        for mode, reply in _ask_checkpoint("Which of the two tones is higher?", audio).items():
            assert check_answer("tone_compare", reply, label), (f1, f2, mode, reply)


@needs_checkpoint
@needs_espeak
def test_committed_demo_checkpoint_answers_a_spoken_sum_from_an_unseen_voice() -> None:
    """The issue's end-to-end check through the engine: a fixed spoken question, held-out voice and
    held-out operand pair, worked out in the think block and answered right in a short reply."""
    from stepaudio_rt.model.prompt import split_reasoning
    from stepaudio_rt.training.data.tasks import is_eval_operands
    from stepaudio_rt.training.data.verify import check_answer, extract_number

    assert is_eval_operands(14, 29)  # the pair was never trained on
    reply = _ask_checkpoint("", _speak_held_out("what is 14 plus 29"), thinking_only=True)["thinking"]
    reasoning, spoken = split_reasoning(reply)
    assert "43" in reasoning and extract_number(spoken) == 43, reply
    assert check_answer("spoken_arithmetic", reply, "43"), reply


@needs_checkpoint
@needs_espeak
def test_committed_demo_checkpoint_answers_while_thinking() -> None:
    """think_first and speak_first (rounds in lockstep with the reasoning, the checkpoint's segment
    sizes) give the same held-out sum right, through the serving code's MindPacedGeneration."""
    from stepaudio_rt.model.torch_engine import TorchEngine
    from stepaudio_rt.training.data.verify import check_answer
    from stepaudio_rt.training.evaluate import MIND_PACED_MODES, answer_sample

    async def run() -> dict[str, str]:
        engine = TorchEngine.from_pretrained(DEFAULT_OUT_DIR, progress=False)
        try:
            return await answer_sample(engine, "", _speak_held_out("what is 14 plus 29"), modes={},
                                       mind_paced_modes=MIND_PACED_MODES)
        finally:
            await engine.aclose()

    replies = asyncio.run(run())
    assert set(replies) == set(MIND_PACED_MODES)
    for mode, reply in replies.items():
        assert "</think>" in reply and check_answer("spoken_arithmetic", reply, "43"), (mode, reply)


def test_a_recipe_field_added_with_its_default_keeps_the_stages_cached_before_it() -> None:
    """A stage key saved before a DemoConfig field existed still matches while that field holds its
    default, and stops matching once the field is changed."""
    from stepaudio_rt.training.demo import _without_new_defaults

    current = DemoConfig().to_dict()
    saved = {k: v for k, v in current.items() if k != "empty_think_share"}
    assert _without_new_defaults(current, saved) == saved
    assert _without_new_defaults({**current, "empty_think_share": 0.5}, saved) != saved
    assert _without_new_defaults({"vocab_size": 1024}, {"vocab_size": 1024}) == {"vocab_size": 1024}


def test_data_made_by_older_generators_is_not_reused(tmp_path: Path) -> None:
    """The data stage's cache checks the manifest's data format and mixture weights, not only the seed and
    sizes: a work directory synthesised before a generator change (older ``FORMAT_VERSION``) is rebuilt."""
    import json

    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.data.build import FORMAT_VERSION, TASK_WEIGHTS
    from stepaudio_rt.training.demo import data_is_current

    cfg = DemoConfig.mini()
    manifest = {"seed": cfg.seed, "n_train": cfg.n_train, "n_eval": cfg.n_eval,
                "format_version": FORMAT_VERSION, "task_weights": TASK_WEIGHTS}
    assert not data_is_current(cfg, tmp_path)  # nothing there
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert data_is_current(cfg, tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION - 1}))
    assert not data_is_current(cfg, tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "task_weights": {**TASK_WEIGHTS, "noise": 0.5}}))
    assert not data_is_current(cfg, tmp_path)
