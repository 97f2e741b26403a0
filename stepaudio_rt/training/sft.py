"""Cold-start SFT (MGRD stage a) of the adaptor and decoder on cached frozen-encoder features.

Why a plain PyTorch loop and not TRL's ``SFTTrainer``: the encoder is frozen, so we run it once per audio
chunk before training and train on its cached outputs (several times faster on 2 CPU cores). A batch is
then token ids + a ragged list of per-chunk encoder features, which fits neither TRL's tokenising
dataset path nor its ``model(**batch)`` call on an ``nn.Module`` that returns ``(logits, loss)``; TRL
would also bring gradient checkpointing, bf16 and accelerate defaults that all have to be switched off on
CPU. The loop below is what TRL would do for us here: AdamW, linear warmup + cosine decay, gradient
clipping, loss only on the assistant part (reasoning, ``</think>``, reply, ``<|EOT|>``), checkpoints every
N steps with exact resume (model, optimiser, schedule, data order), a tqdm bar and a JSONL loss log.
Four additions that TRL does not have and this model needed (all measured, see ``DemoConfig``): a
curriculum whose first steps see only the perception tasks, a penalty that keeps the adaptor's output on
the scale of the text embeddings (:func:`audio_scale_penalty`), a CTC loss that aligns the adaptor's
frames with the text embeddings of the words spoken in them (:func:`audio_alignment_loss`), and a
training-only head that keeps how the audio sounds readable from the adaptor's output
(``training.acoustic_probe``).

Prompts are built exactly as the realtime server builds them (:func:`prompt_segments`): the system
prompt, the user's text, then the audio cut into chunks of at most ``LISTEN_CHUNK_SECONDS`` at pauses
(``split_at_pauses``), each its own ``<audio_start><audio_patch>*N<audio_end>`` block encoded alone, then
``<|EOT|>`` and the generation prefix ``<|BOT|>assistant\\n<think>\\n``.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from stepaudio_rt.model.audio_frontend import (
    audio_token_count,
    log_mel_spectrogram,
    mel_frame_count,
    split_at_pauses,
)
from stepaudio_rt.model.modeling import AudioEncoder, StepAudio2ForCausalLM
from stepaudio_rt.model.prompt import END_OF_TURN, GENERATION_PREFIX, USER_PREFIX, system_block
from stepaudio_rt.model.tokenizer import EOT, StepAudioTokenizer
from stepaudio_rt.training.acoustic_probe import FIT_CHUNKS, acoustic_probe_loss, fit_head, pooled_frames
from stepaudio_rt.training.config import DEMO_SYSTEM_PROMPT, LISTEN_CHUNK_SECONDS, DemoConfig

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


# ------------------------------------------------------------------------------------------- prompts


def prompt_segments(
    user_text: str, system_prompt: str = DEMO_SYSTEM_PROMPT, has_audio: bool = True
) -> tuple[list[str], list[str]]:
    """(text pieces before the audio blocks, pieces after them) of a user turn.

    The pieces are the server's own ``append_text`` calls (``streaming/conversation.py``); each is
    tokenised on its own, so training sees the exact token boundaries that serving produces. The
    generation prefix is left to the caller (``<think>\\n`` or the empty think block). The server puts
    a ``\\n`` after typed text only when audio follows it (``has_audio``).
    """
    before = [system_block(system_prompt), USER_PREFIX]
    if user_text:
        before += [user_text, "\n"] if has_audio else [user_text]
    return before, [END_OF_TURN]


def target_text(think: str, answer: str) -> str:
    """What the model generates after ``<think>\\n``: reasoning (or nothing), ``</think>``, reply, EOT."""
    body = f"{think}\n" if think else "\n"
    return f"{body}</think>\n{answer}{EOT}"


def chunk_token_counts(clip: np.ndarray, chunk_seconds: float = LISTEN_CHUNK_SECONDS) -> list[int]:
    """Audio tokens of each listen chunk of ``clip`` (the server's cut, ``split_at_pauses``)."""
    return [audio_token_count(mel_frame_count(len(c))) for c in split_at_pauses(clip, chunk_seconds)]


@dataclass
class SftExample:
    """One tokenised training sample. ``chunks`` index the feature store, in prompt order."""

    input_ids: np.ndarray  # int32 [T]
    target_start: int  # first position whose token is trained on
    chunks: list[int]
    task: str
    spoken: np.ndarray | None = None  # token ids of what is said in the clip (alignment loss targets)


def tokenize_example(
    tokenizer: StepAudioTokenizer,
    user_text: str,
    think: str,
    answer: str,
    chunk_tokens: Sequence[int],
    chunk_ids: Sequence[int],
    task: str,
    system_prompt: str = DEMO_SYSTEM_PROMPT,
    spoken_text: str | None = None,
) -> SftExample:
    """Token ids of prompt + target. Segments are tokenised separately, as the engine appends them.

    ``spoken_text`` is the transcript of the clip, when it holds speech: the alignment loss's target.
    """
    before, after = prompt_segments(user_text, system_prompt)
    ids: list[int] = []
    for piece in before:
        ids += tokenizer.encode(piece)
    for n in chunk_tokens:
        ids += tokenizer.audio_block_ids(n)
    for piece in [*after, GENERATION_PREFIX]:
        ids += tokenizer.encode(piece)
    start = len(ids)
    ids += tokenizer.encode(target_text(think, answer))
    spoken = spoken_token_ids(tokenizer, spoken_text) if spoken_text and chunk_ids else None
    return SftExample(np.asarray(ids, dtype=np.int32), start, list(chunk_ids), task, spoken)


def spoken_token_ids(tokenizer: StepAudioTokenizer, text: str) -> np.ndarray:
    """Targets of the alignment loss: the text's tokens as a reply would write them (lower case, no
    punctuation), without the tokens that are only white space (nothing is heard for them)."""
    words = "".join(c if c.isalnum() or c in " '" else " " for c in text.lower()).split()
    ids = tokenizer.encode(" ".join(words))
    return np.asarray([i for i in ids if tokenizer.decode([i]).strip()], dtype=np.int64)


# ------------------------------------------------------------------------------- encoder feature cache


@dataclass
class FeatureStore:
    """Frozen-encoder outputs (25 Hz, before the adaptor) of every listen chunk, concatenated.

    Chunk ``i`` is ``feats[offsets[i]:offsets[i + 1]]``; ``tokens[i]`` is its audio-token count.
    """

    feats: np.ndarray  # float16 [frames, D]
    offsets: np.ndarray  # int64 [n_chunks + 1]
    tokens: np.ndarray  # int32 [n_chunks]
    # per chunk, its clip's measured acoustic values (acoustic_probe.acoustic_targets); set by the caller
    # from the samples, not saved with the features
    acoustic: np.ndarray | None = None
    # per adaptor frame, in chunk order (chunk i's rows start at tokens[:i].sum()), the frame head's targets
    # (acoustic_probe.frame_targets); set by the caller from the clips, not saved with the features
    frame: np.ndarray | None = None

    def chunk(self, i: int) -> np.ndarray:
        return self.feats[self.offsets[i] : self.offsets[i + 1]]

    def frame_rows(self, ids: Sequence[int]) -> np.ndarray:
        """The frame targets of chunks ``ids``, concatenated in that order (the order of their adaptor
        frames in ``audio_embeddings``)."""
        assert self.frame is not None
        starts = np.concatenate([[0], np.cumsum(self.tokens, dtype=np.int64)])
        return np.concatenate([self.frame[starts[i] : starts[i] + self.tokens[i]] for i in ids])

    def stacked(self, ids: Sequence[int]) -> torch.Tensor:
        """Chunks ``ids`` as one float32 batch [len(ids), longest, D], zero-padded at the end."""
        parts = [self.chunk(i) for i in ids]
        feats = torch.zeros(len(parts), max(p.shape[0] for p in parts), self.feats.shape[1])
        for k, p in enumerate(parts):
            feats[k, : p.shape[0]] = torch.from_numpy(p.astype(np.float32))
        return feats

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, feats=self.feats, offsets=self.offsets, tokens=self.tokens)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> FeatureStore:
        with np.load(path) as z:
            return cls(z["feats"], z["offsets"], z["tokens"])


@torch.inference_mode()
def encode_chunks(
    encoder: AudioEncoder,
    clips: Sequence[np.ndarray | None],
    chunk_seconds: float = LISTEN_CHUNK_SECONDS,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[FeatureStore, list[list[int]]]:
    """Run the frozen encoder over every listen chunk of every clip.

    Chunks of equal length are batched together with no padding, so each chunk is encoded exactly as the
    engine encodes it alone (``encoder(mel[None])``). Returns the store and, per clip, its chunk ids.
    """
    encoder = encoder.eval()
    n_mels = encoder.conv1.in_channels
    chunks: list[np.ndarray] = []
    per_clip: list[list[int]] = []
    for clip in clips:
        ids: list[int] = []
        if clip is not None:
            for piece in split_at_pauses(clip, chunk_seconds):
                ids.append(len(chunks))
                chunks.append(piece)
        per_clip.append(ids)
    by_len: dict[int, list[int]] = {}
    for i, c in enumerate(chunks):
        by_len.setdefault(len(c), []).append(i)
    outputs: list[np.ndarray | None] = [None] * len(chunks)
    bar = tqdm(total=len(chunks), desc="encode audio chunks", unit="chunk", disable=not progress)
    for idx in by_len.values():
        for s in range(0, len(idx), batch_size):
            group = idx[s : s + batch_size]
            mel = torch.stack([log_mel_spectrogram(chunks[i], n_mels=n_mels) for i in group])
            feats = encoder(mel).to(torch.float16).numpy()
            for row, i in enumerate(group):
                outputs[i] = feats[row]
            bar.update(len(group))
    bar.close()
    lens = [0 if o is None else o.shape[0] for o in outputs]
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lens)
    dim = encoder.after_norm.normalized_shape[0]
    feats_all = (
        np.concatenate([o for o in outputs if o is not None]) if chunks else np.zeros((0, dim), np.float16)
    )
    tokens = np.asarray([audio_token_count(mel_frame_count(len(c))) for c in chunks], dtype=np.int32)
    return FeatureStore(feats_all, offsets, tokens), per_clip


# ------------------------------------------------------------------------------------------ batching


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] right-padded
    labels: torch.Tensor  # [B, T], IGNORE_INDEX outside targets
    chunk_feats: torch.Tensor | None  # [n_chunks, F, D] zero-padded encoder features
    chunk_tokens: list[int]  # audio tokens per chunk, in prompt order
    n_target_tokens: int
    clip_tokens: list[int] = field(default_factory=list)  # audio tokens per example, in batch order
    spoken: list[torch.Tensor | None] = field(default_factory=list)  # per example, alignment targets
    acoustic: torch.Tensor | None = None  # [n_chunks, K] measured values per chunk (NaN: none)
    frame: torch.Tensor | None = None  # [sum(chunk_tokens), len(FRAME_KEYS)] per-frame targets


def collate(examples: Sequence[SftExample], store: FeatureStore | None, pad_id: int) -> Batch:
    """Pad token ids on the right; labels only on targets; stack each chunk's features zero-padded.

    Right padding with causal attention leaves every real position's output unchanged, so no attention
    mask is needed. Zero-padded features are exact too: the adaptor's last window sees zeros either way
    (its convolution pads with zeros), as in ``StepAudio2ForCausalLM.encode_audio``.
    """
    longest = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    chunk_ids: list[int] = []
    for row, e in enumerate(examples):
        t = torch.from_numpy(e.input_ids.astype(np.int64))
        ids[row, : len(t)] = t
        labels[row, e.target_start : len(t)] = t[e.target_start :]
        chunk_ids.extend(e.chunks)
    feats = None
    tokens: list[int] = []
    if chunk_ids:
        if store is None:
            raise ValueError("examples carry audio chunks but no feature store was given")
        feats = store.stacked(chunk_ids)
        tokens = [int(store.tokens[i]) for i in chunk_ids]
    n_target = int((labels != IGNORE_INDEX).sum())
    per_chunk = iter(tokens)  # chunk token counts in batch order: each example's chunks are consecutive
    clip_tokens = [sum(itertools.islice(per_chunk, len(e.chunks))) for e in examples]
    spoken = [torch.from_numpy(e.spoken) if e.spoken is not None and len(e.spoken) else None for e in examples]
    acoustic = None
    if chunk_ids and store is not None and store.acoustic is not None:
        acoustic = torch.from_numpy(store.acoustic[chunk_ids])
    frame = None
    if chunk_ids and store is not None and store.frame is not None:
        frame = torch.from_numpy(store.frame_rows(chunk_ids))
    return Batch(ids, labels, feats, tokens, n_target, clip_tokens, spoken, acoustic, frame)


def batch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of batches: shuffled, then sorted by length within windows of 50 batches (less padding),
    and the batches shuffled again. A pure function of (seed, epoch), so resume replays the same order."""
    rng = np.random.default_rng([seed, epoch, 0x5F7])
    perm = rng.permutation(len(lengths))
    window = batch_size * 50
    batches: list[list[int]] = []
    for s in range(0, len(perm), window):
        part = sorted(perm[s : s + window].tolist(), key=lambda i: lengths[i])
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _epochs(lengths: Sequence[int], batch_size: int, seed: int, start_step: int) -> Iterator[list[int]]:
    """Endless batches over epochs of ``batch_order``, starting at step ``start_step``."""
    epoch, step = 0, 0
    while True:
        order = batch_order(lengths, batch_size, seed, epoch)
        for b in order:
            if step >= start_step:
                yield b
            step += 1
        epoch += 1


def first_phase_subset(
    tasks: Sequence[str], phase_tasks: Sequence[str], repeats: Mapping[str, int]
) -> list[int]:
    """Example indices the perception-only phase draws from: those of ``phase_tasks``, each listed
    ``repeats[task]`` times (default once), so a task that is slow to start gets a larger share."""
    return [i for i, t in enumerate(tasks) if t in phase_tasks for _ in range(repeats.get(t, 1))]


def batch_stream(
    n_examples_lengths: Sequence[int],
    batch_size: int,
    seed: int,
    start_step: int,
    phases: Sequence[tuple[int, Sequence[int]]] = (),
) -> Iterator[list[int]]:
    """Endless batches, starting at global step ``start_step``: each ``(steps, subset)`` of ``phases`` in
    turn draws ``steps`` batches only from the examples ``subset`` (a phase with no examples is skipped),
    then every example. A pure function of its arguments, so a resumed run replays the same batches."""
    lengths = n_examples_lengths
    for steps, subset in phases:
        if steps <= 0 or not subset:
            continue
        sub = list(subset)
        if start_step < steps:
            inner = _epochs([lengths[i] for i in sub], batch_size, seed, start_step)
            for _ in range(steps - start_step):
                yield [sub[j] for j in next(inner)]
        start_step = max(0, start_step - steps)
    yield from _epochs(lengths, batch_size, seed, start_step)


def curriculum_phases(tasks: Sequence[str], cfg: DemoConfig) -> list[tuple[int, list[int]]]:
    """The phases before the full mixture: each ``cfg.first_phase_leads`` task alone for its steps, then
    the perception tasks (:func:`first_phase_subset`) for the rest of ``cfg.first_phase_steps``."""
    phases = [
        (steps, [i for i, t in enumerate(tasks) if t == task]) for task, steps in cfg.first_phase_leads.items()
    ]
    lead_steps = sum(cfg.first_phase_leads.values())
    perception = first_phase_subset(tasks, cfg.first_phase_tasks, cfg.first_phase_repeats)
    phases.append((cfg.first_phase_steps - lead_steps, perception))
    return phases


# ------------------------------------------------------------------------------------------ training


def audio_embeddings(model: StepAudio2ForCausalLM, batch: Batch) -> torch.Tensor | None:
    """Adaptor outputs of every chunk, concatenated in prompt order: [sum(tokens), hidden]."""
    adapted = _adapted_chunks(model, batch)
    return None if adapted is None else adapted[0]


def _adapted_chunks(model: StepAudio2ForCausalLM, batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(:func:`audio_embeddings`, each chunk's mean adaptor frame [n_chunks, hidden]) from one adaptor pass."""
    if batch.chunk_feats is None:
        return None
    out = model.adapter(batch.chunk_feats)
    return torch.cat([out[k, :n] for k, n in enumerate(batch.chunk_tokens)]), pooled_frames(out, batch.chunk_tokens)


def audio_scale_penalty(model: StepAudio2ForCausalLM, audio_embeds: torch.Tensor) -> torch.Tensor:
    """Squared log ratio of the audio embeddings' RMS to the text embeddings' RMS.

    Why: the decoder only sees its inputs through RMSNorm, so the cross-entropy is blind to the adaptor's
    output scale, and Adam on a scale-invariant function inflates it step after step (measured: RMS 0.09 at
    init, 15 after 400 steps, 300 after 6,000, against 0.05 for text embeddings). The adaptor's effective
    learning rate falls with the square of that scale, so it stops learning before it has picked up the
    subtle cues (pitch, loudness, tone height) and the model answers those at chance. Pinning the scale
    to the text embeddings' keeps it learning; real checkpoints show the same match of scales.
    """
    audio_rms = audio_embeds.float().pow(2).mean().sqrt()
    text_rms = model.model.embed_tokens.weight.detach().float().pow(2).mean().sqrt()
    return torch.log(audio_rms / text_rms).pow(2)


ALIGN_LOGIT_SCALE = 16.0  # cosine similarities in [-1, 1] -> logits sharp enough over a 1k vocabulary


def audio_alignment_loss(
    model: StepAudio2ForCausalLM, audio_embeds: torch.Tensor, batch: Batch, blank_id: int, dims: int = 0
) -> torch.Tensor | None:
    """CTC loss of each speech clip's adaptor frames against the tokens spoken in it, where a frame's
    score for a token is its cosine similarity to that token's (detached) text embedding and the
    ``<audio_patch>`` embedding stands for "blank". None when the batch has no speech clip.

    Why: the decoder learned to copy operands from written questions (70% on text arithmetic) but heard
    spoken ones at 32% per digit after a full run: it has to find, by content and order, which of ~30
    audio frames says "thirty" and which "five". This loss makes the frames where a word is spoken look
    like that word's embedding, so reading a spoken number becomes the copy it already does from text.
    The frames are the model's own input embeddings; the loss adds no weights to the checkpoint.

    ``dims`` > 0 compares only the first ``dims`` hidden dimensions (frames and embeddings alike) and leaves
    the rest of each frame free, for how the speech sounds (pitch, loudness, timbre). Measured, it keeps
    only a little more pitch in the adaptor than the full alignment (``DemoConfig.audio_align_dims``); the
    recipe keeps pitch with the acoustic head instead (``training.acoustic_probe``).
    """
    rows = [k for k, t in enumerate(batch.spoken) if t is not None]
    if not rows:
        return None
    starts = np.concatenate([[0], np.cumsum(batch.clip_tokens)])
    frames = [audio_embeds[int(starts[k]) : int(starts[k + 1])] for k in rows]
    table = model.model.embed_tokens.weight.detach().float()
    padded = nn.utils.rnn.pad_sequence(frames, batch_first=False)  # [T, N, H]
    if dims > 0:
        table, padded = table[:, :dims], padded[..., :dims]
    table = nn.functional.normalize(table, dim=-1)
    logits = ALIGN_LOGIT_SCALE * nn.functional.normalize(padded.float(), dim=-1) @ table.T
    targets = [batch.spoken[k] for k in rows]
    return nn.functional.ctc_loss(
        logits.log_softmax(-1),
        torch.cat(targets),  # type: ignore[arg-type]
        torch.tensor([f.shape[0] for f in frames]),
        torch.tensor([len(t) for t in targets]),  # type: ignore[arg-type]
        blank=blank_id,
        reduction="mean",
        zero_infinity=True,  # a clip too short for its words contributes nothing rather than inf
    )


def sft_loss(
    model: StepAudio2ForCausalLM,
    batch: Batch,
    audio_patch_id: int,
    audio_scale_weight: float = 0.0,
    audio_align_weight: float = 0.0,
    audio_align_dims: int = 0,
    acoustic_head: nn.Linear | None = None,
    acoustic_weight: float = 0.0,
    frame_head: nn.Linear | None = None,
    frame_weight: float = 0.0,
    parts: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss to minimise, cross-entropy alone): token cross-entropy on the targets plus
    ``audio_scale_weight`` times :func:`audio_scale_penalty` plus ``audio_align_weight`` times
    :func:`audio_alignment_loss` (over the first ``audio_align_dims`` hidden dimensions; 0: all) plus
    ``acoustic_weight`` times ``acoustic_probe.acoustic_probe_loss`` (with ``acoustic_head``) plus
    ``frame_weight`` times the same loss of ``frame_head`` on every adaptor frame. ``parts``, when given,
    receives each auxiliary term as weighted in the total ("scale", "align", "acoustic", "frame")."""
    adapted = _adapted_chunks(model, batch)
    embeds, pooled = adapted if adapted is not None else (None, None)
    _, ce = model(
        batch.input_ids, None, embeds, audio_patch_id if embeds is not None else None, batch.labels
    )
    assert ce is not None
    total = ce
    if embeds is None:
        return total, ce
    terms: dict[str, torch.Tensor] = {}
    if audio_scale_weight > 0:
        terms["scale"] = audio_scale_weight * audio_scale_penalty(model, embeds)
    if audio_align_weight > 0:
        align = audio_alignment_loss(model, embeds, batch, audio_patch_id, audio_align_dims)
        if align is not None:
            terms["align"] = audio_align_weight * align
    if acoustic_head is not None and acoustic_weight > 0 and batch.acoustic is not None:
        probe = acoustic_probe_loss(acoustic_head, pooled, batch.acoustic)
        if probe is not None:
            terms["acoustic"] = acoustic_weight * probe
    if frame_head is not None and frame_weight > 0 and batch.frame is not None:
        probe = acoustic_probe_loss(frame_head, embeds, batch.frame)
        if probe is not None:
            terms["frame"] = frame_weight * probe
    for name, term in terms.items():
        total = total + term
        if parts is not None:
            parts[name] = float(term.detach())
    return total, ce


def lr_lambda(
    step: int, warmup: int, total: int, min_ratio: float, first_phase_steps: int = 0, first_phase_scale: float = 1.0
) -> float:
    """Linear warmup, then cosine decay to ``min_ratio`` of the peak; the first ``first_phase_steps``
    (the perception-only curriculum) run at ``first_phase_scale`` times that."""
    scale = first_phase_scale if step < first_phase_steps else 1.0
    if step < warmup:
        return scale * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return scale * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: nn.Module, cfg: DemoConfig, head: nn.Module | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on norms, biases and embeddings; the adaptor's
    learning rate scaled by ``cfg.adapter_lr_scale``, and so is the training-only acoustic ``head``'s."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decays = p.ndim >= 2 and "embed_tokens" not in name
        groups.setdefault((decays, name.startswith("adapter.")), []).append(p)
    param_groups = [
        {
            "params": params,
            "weight_decay": cfg.weight_decay if decays else 0.0,
            "lr": cfg.lr * (cfg.adapter_lr_scale if adapter else 1.0),
        }
        for (decays, adapter), params in sorted(groups.items())
    ]
    if head is not None:
        param_groups.append({"params": list(head.parameters()), "weight_decay": 0.0, "lr": cfg.lr * cfg.adapter_lr_scale})
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-8)


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float  # training time of the stage over all its runs (resumes continue the clock)
    log_path: Path


def train_sft(
    model: StepAudio2ForCausalLM,
    examples: Sequence[SftExample],
    store: FeatureStore | None,
    tokenizer: StepAudioTokenizer,
    cfg: DemoConfig,
    run_dir: Path,
    resume: bool = True,
    progress: bool = True,
    on_log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train adaptor + decoder (the encoder stays frozen) for ``cfg.steps`` steps.

    ``run_dir`` holds ``state.pt`` (written every ``cfg.save_every`` steps and at the end, atomically) and
    ``loss.jsonl``. With ``resume`` an existing state continues where it stopped, bit for bit in data order.
    """
    if not examples:
        raise ValueError("no training examples")
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path = run_dir / "state.pt", run_dir / "loss.jsonl"
    model.encoder.requires_grad_(False).eval()
    model.adapter.train()
    model.model.train()
    model.lm_head.train()
    head = _acoustic_head(model, examples, store, cfg)
    frame_head = _frame_head(model, examples, store, cfg)
    heads = nn.ModuleList([h for h in (head, frame_head) if h is not None])
    opt = make_optimizer(model, cfg, heads if len(heads) else None)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: lr_lambda(
            s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio, cfg.first_phase_steps, cfg.first_phase_lr_scale
        ),
    )
    start = 0
    before_s = 0.0  # training seconds of earlier runs of this stage (a resume continues the clock)
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        trainable = {k: v for k, v in state["model"].items()}
        missing = model.load_state_dict(trainable, strict=False)
        if missing.unexpected_keys:
            raise ValueError(f"{state_path}: unexpected keys {missing.unexpected_keys[:3]}")
        if head is not None:
            if "acoustic_head" not in state:
                raise ValueError(f"{state_path} was saved without the acoustic head this recipe trains; delete it")
            head.load_state_dict(state["acoustic_head"])
        if frame_head is not None:
            if "frame_head" not in state:
                raise ValueError(f"{state_path} was saved without the frame head this recipe trains; delete it")
            frame_head.load_state_dict(state["frame_head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start = int(state["step"])
        before_s = float(state.get("elapsed_s", 0.0))
        log.info("resuming SFT at step %d from %s", start, state_path)
    else:
        if head is not None:
            _fit_acoustic_head(head, model, examples, store, cfg.seed)
        if frame_head is not None:
            _fit_frame_head(frame_head, model, examples, store, cfg.seed)
        if log_path.exists():
            log_path.unlink()
    if start >= cfg.steps:  # finished earlier: report that run's last loss and its time
        records = load_loss_log(log_path)
        return TrainResult(start, records[-1]["loss"] if records else float("nan"), before_s, log_path)

    pad_id = tokenizer.ids.endoftext if tokenizer.ids.endoftext is not None else 0
    patch_id = tokenizer.ids.audio_patch
    lengths = [len(e.input_ids) for e in examples]
    phases = curriculum_phases([e.task for e in examples], cfg)
    stream = batch_stream(lengths, cfg.batch_size, cfg.seed, start, phases)
    t0 = time.perf_counter()
    running: float | None = None
    loss_value = float("nan")
    bar = tqdm(total=cfg.steps, initial=start, desc="SFT", unit="step", disable=not progress)
    window: list[float] = []
    aux_window: list[float] = []  # the auxiliary losses together, weighted as in the total
    part_windows: dict[str, list[float]] = {}  # each auxiliary loss alone (sft_loss's parts)
    tokens_seen = 0
    with log_path.open("a") as logf:
        for step in range(start, cfg.steps):
            batch = collate([examples[i] for i in next(stream)], store, pad_id)
            # alignment starts with the mixed phase: on from step 0 it held voice pitch at 35-65% after the
            # 750 perception steps that otherwise reach 94% (measured on the cached demo features)
            align = cfg.audio_align_weight if step >= cfg.first_phase_steps else 0.0
            parts: dict[str, float] = {}
            loss, ce = sft_loss(
                model,
                batch,
                patch_id,
                cfg.audio_scale_weight,
                align,
                cfg.audio_align_dims,
                head,
                cfg.acoustic_weight,
                frame_head,
                cfg.frame_weight,
                parts,
            )
            for name, value in parts.items():
                part_windows.setdefault(name, []).append(value)
            loss_value, total_value = float(ce.detach()), float(loss.detach())
            if not math.isfinite(total_value):  # checked before the step: the weights stay finite
                raise FloatingPointError(
                    f"SFT loss is {total_value} at step {step} (cross-entropy {loss_value}); "
                    f"the state saved in {state_path} is from before it"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad] + list(heads.parameters()),
                    cfg.grad_clip,
                )
            )
            opt.step()
            sched.step()
            running = loss_value if running is None else 0.95 * running + 0.05 * loss_value
            window.append(loss_value)
            aux_window.append(total_value - loss_value)
            tokens_seen += int(batch.input_ids.numel())
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                rec = {
                    "step": done,
                    "loss": round(sum(window) / len(window), 5),
                    "aux_loss": round(sum(aux_window) / len(aux_window), 5),
                    # per auxiliary loss: its mean over the steps of the window that had it
                    "aux": {k: round(sum(v) / len(v), 5) for k, v in sorted(part_windows.items())},
                    "lr": sched.get_last_lr()[0],
                    "grad_norm": round(grad_norm, 4),
                    "tokens_per_s": round(tokens_seen / max(1e-9, time.perf_counter() - t0), 1),
                    "elapsed_s": round(before_s + time.perf_counter() - t0, 1),
                }
                window, aux_window, part_windows = [], [], {}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                if on_log is not None:
                    on_log(rec)
            if done % cfg.save_every == 0 or done == cfg.steps:
                elapsed = before_s + time.perf_counter() - t0
                _save_state(state_path, model, opt, sched, done, elapsed, head, frame_head)
    bar.close()
    return TrainResult(cfg.steps, loss_value, before_s + time.perf_counter() - t0, log_path)


def _acoustic_head(
    model: StepAudio2ForCausalLM, examples: Sequence[SftExample], store: FeatureStore | None, cfg: DemoConfig
) -> nn.Linear | None:
    """The training-only head of ``acoustic_probe`` when the recipe weights it and the store has targets."""
    if cfg.acoustic_weight <= 0 or store is None or store.acoustic is None:
        return None
    if not any(e.chunks for e in examples):
        return None
    return nn.Linear(model.config.text.hidden_size, store.acoustic.shape[1])


def _frame_head(
    model: StepAudio2ForCausalLM, examples: Sequence[SftExample], store: FeatureStore | None, cfg: DemoConfig
) -> nn.Linear | None:
    """The training-only per-frame head of ``acoustic_probe`` (time in chunk, sounding) when the recipe
    weights it and the store has its targets."""
    if cfg.frame_weight <= 0 or store is None or store.frame is None or not any(e.chunks for e in examples):
        return None
    return nn.Linear(model.config.text.hidden_size, store.frame.shape[1])


@torch.no_grad()
def _adaptor_frames(model: StepAudio2ForCausalLM, store: FeatureStore, ids: Sequence[int]) -> list[torch.Tensor]:
    """The adaptor's real frames [tokens_i, hidden] of each chunk in ``ids``, in eval mode, 64 chunks a pass."""
    was_training = model.adapter.training
    model.adapter.eval()
    frames: list[torch.Tensor] = []
    for s in range(0, len(ids), 64):
        group = ids[s : s + 64]
        out = model.adapter(store.stacked(group))
        frames.extend(out[k, : int(store.tokens[i])] for k, i in enumerate(group))
    model.adapter.train(was_training)
    return frames


def _fit_sample(ids: Collection[int], size: int, seed: int, stream: int) -> list[int]:
    """Up to ``size`` of ``ids`` for a head's initial fit, drawn from the head's own random stream."""
    rng = np.random.default_rng([seed, stream])
    return [int(i) for i in rng.choice(sorted(ids), size=min(size, len(ids)), replace=False)]


def _fit_frame_head(
    head: nn.Linear, model: StepAudio2ForCausalLM, examples: Sequence[SftExample], store: FeatureStore, seed: int
) -> None:
    """As :func:`_fit_acoustic_head`, on every frame of up to ``FIT_CHUNKS`` // 4 chunks."""
    ids = _fit_sample({c for e in examples for c in e.chunks}, FIT_CHUNKS // 4, seed, 0xF4A)
    fit_head(head, torch.cat(_adaptor_frames(model, store, ids)), torch.from_numpy(store.frame_rows(ids)))


def _fit_acoustic_head(
    head: nn.Linear, model: StepAudio2ForCausalLM, examples: Sequence[SftExample], store: FeatureStore, seed: int
) -> None:
    """Fit the head to the adaptor as it is now (``acoustic_probe.fit_head``) on up to ``FIT_CHUNKS``
    chunks of the stage's examples, so its first gradients already point somewhere sensible."""
    assert store.acoustic is not None
    ids = {c for e in examples for c in e.chunks if not np.isnan(store.acoustic[c]).all()}
    if not ids:
        return
    ids = _fit_sample(ids, FIT_CHUNKS, seed, 0xAC0)
    pooled = torch.stack([f.mean(0) for f in _adaptor_frames(model, store, ids)])
    fit_head(head, pooled, torch.from_numpy(store.acoustic[ids]))


def _save_state(
    path: Path,
    model: StepAudio2ForCausalLM,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    elapsed_s: float,
    head: nn.Module | None = None,
    frame_head: nn.Module | None = None,
) -> None:
    """Atomic training state: trainable weights (the frozen encoder is rebuilt from Whisper), the acoustic
    and frame heads if any, optimiser, schedule, RNG, step and training seconds so far."""
    trainable = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    tmp = path.with_suffix(".tmp")
    state = {
        "model": trainable,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "step": step,
        "elapsed_s": round(elapsed_s, 1),
    }
    if head is not None:
        state["acoustic_head"] = head.state_dict()
    if frame_head is not None:
        state["frame_head"] = frame_head.state_dict()
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_loss_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = [
    "IGNORE_INDEX",
    "Batch",
    "FeatureStore",
    "SftExample",
    "TrainResult",
    "batch_order",
    "chunk_token_counts",
    "collate",
    "encode_chunks",
    "load_loss_log",
    "prompt_segments",
    "audio_alignment_loss",
    "audio_scale_penalty",
    "sft_loss",
    "spoken_token_ids",
    "target_text",
    "tokenize_example",
    "train_sft",
]
