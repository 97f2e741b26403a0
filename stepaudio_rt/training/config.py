"""The demo recipe: every knob of ``stepaudio-rt train demo`` in one dataclass, plus the two serving constants
the trained model depends on.

The defaults are sized for a 2-core CPU with a fixed seed: the v1 recipe (synthesis, tokenizer,
frozen-encoder features, cold-start SFT) took about 69 minutes; the v2 stages after it (two
self-distillation iterations, think-incomplete SFT) are sized to keep the whole rebuild well inside the
4 hours issue 12 allows (not yet measured end to end). :meth:`DemoConfig.mini` is the
miniature used by CI (a few dozen samples, a few steps).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# The realtime server cuts the user's speech into chunks of at most this length, each ending at a pause
# (model.audio_frontend.split_at_pauses), and appends each as its own <audio_start>...<audio_end> block,
# encoded alone (listen-while-thinking). Training uses the same cut so the demo model sees at training time
# exactly what the server feeds it; the checkpoint's generation_config carries it to the server.
# 4 s rather than 2 s: measured on the previous demo checkpoint (trained on fixed 2 s cuts), the second
# operand of held-out spoken sums was heard right 89.5% of the time with 2 s chunks (fixed or at pauses)
# and 92.5% with 4 s chunks at pauses, the whole sum 85% -> 90%; most questions then fit one chunk. The
# price is a longer tail to encode at end of turn (at most 4 s of audio instead of 2 s).
LISTEN_CHUNK_SECONDS = 4.0

# The system prompt of every training sample, and the one the server sends by default: a small model only
# answers well under the system prompt it was trained with.
DEMO_SYSTEM_PROMPT = "You are a helpful voice assistant. Listen carefully and answer briefly."


@dataclass(frozen=True)
class DemoConfig:
    """Recipe of the bundled demo checkpoint (data sizes, model dimensions, optimisation)."""

    seed: int = 0
    # data
    n_train: int = 16000
    n_eval: int = 400
    data_workers: int = 2
    # SFT-time additions (no synthesis, no encoder cost): each speech clip once more as a transcription
    # example, and extra text-only chain-of-thought arithmetic problems
    transcribe_speech: bool = True
    n_text_arithmetic: int = 8000
    # tokenizer
    vocab_size: int = 1024
    # decoder (Qwen2) and adaptor
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 1
    intermediate_size: int = 768
    adapter_hidden_size: int = 512
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    # optimisation
    steps: int = 7400  # 1,400 perception-only steps, then 6,000 of the full mixture
    batch_size: int = 32
    # measured: at 2e-3 the model never learned pitch, loudness or tone height (chance after 6,000 steps);
    # at 5e-4 pitch is learned in 100 steps and loudness in 300 (perception-only runs, same data)
    lr: float = 5e-4
    # the adaptor starts from nothing between two trained ends (encoder, decoder): let it move faster
    adapter_lr_scale: float = 2.0
    min_lr_ratio: float = 0.05
    warmup_steps: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # curriculum: the first steps train only on the perception tasks. Measured: alone, pitch and loudness
    # are learned in 100-300 steps; inside the full mixture they were still at chance after 2,250 steps
    # (the dense transcription and text targets dominate the adaptor's gradient until then). On the 4 s
    # listen chunks, perception-only from scratch: loudness, noise, rate and pitch at 100% by step 400,
    # beep count 69%; a longer phase gives beep count more time before the mixture starts.
    first_phase_steps: int = 1400
    first_phase_tasks: tuple[str, ...] = (
        "beep_count",
        "tone_compare",
        "voice_pitch",
        "speech_rate",
        "loudness",
        "noise",
    )
    # how many times each example of a task is drawn per pass of the perception-only phase (default 1).
    # Measured on the cached demo features: tone height alone is learned in 200 steps (97% held out); at
    # its plain share of the perception phase (20%) it was still at chance after 600 steps, drawn 4x it was
    # at 97% after 200 steps, but voice pitch then started slowly (65% at step 600). In a full run (3x)
    # tone height did not survive the mixed phase (56%) and voice pitch never recovered (55%). On the 4 s
    # listen chunks, 4x over a 1,200-step phase learned neither tone height nor pitch, loudness or noise
    # (constant answers at step 1,250). So the recipe draws every task once.
    first_phase_repeats: dict[str, int] = field(default_factory=dict)
    # steps at the start of the perception-only phase (and counted in it) that train one task alone, in
    # order, e.g. {"tone_compare": 200}. Measured on the 4 s listen chunks' cached features: tone height
    # alone is at 89% after 100 steps and 100% after 300, but in the six-task perception phase it stays
    # at chance; 200 steps of tone alone, then the six tasks, kept it at 97-100% through step 700 while
    # loudness, noise and rate reached 100% (pitch 65%, beep count 76% at that point). In a longer probe
    # (1,000-step perception phase, then the full mixture) tone held at 94-100% to step 1,400, but pitch
    # (65%) and loudness (34-66%) were not learned, where without the lead both are by step 1,000. With
    # the real run's schedule (peak lr 5e-4 over 7,000 steps) the lead made loudness, noise and pitch flip
    # between constant answers for 1,400 steps; at half that learning rate (first_phase_lr_scale) all
    # of tone, pitch, loudness, noise and rate were at 94-100% by step 700 (probe on the cached features).
    # The lead placed after 600 perception steps instead did not learn tone in its 200 steps. The
    # committed checkpoint (this recipe): tone height 99.3% held out, where every run without the lead
    # answered one label for every pair (49-51%).
    first_phase_leads: dict[str, int] = field(default_factory=lambda: {"tone_compare": 200})
    # the learning rate of the perception-only phase, as a share of the schedule's (see above: at the full
    # rate the binary perception answers flip between constants from one 100-step check to the next)
    first_phase_lr_scale: float = 0.5
    # keeps the adaptor's output on the text embeddings' scale (see training.sft.audio_scale_penalty)
    audio_scale_weight: float = 0.1
    # CTC of the adaptor's frames against the spoken words' text embeddings (training.sft.
    # audio_alignment_loss), from the end of the perception-only phase on: lets the decoder read spoken
    # numbers the way it copies written ones (operand digits heard 28% after 1,250 steps, against chance
    # at that point without it and 32% after a whole run)
    audio_align_weight: float = 0.5
    # hidden dimensions the alignment compares (0: all); the rest stay free for how the speech sounds.
    # Measured (scripts/align_probe.py, 600 mixed steps from the same perception-phase state): the linear
    # pitch probe on the adaptor read 126/160 with all 256, 133/160 with the first 192, 142/160 with no
    # alignment at all, so the mixture itself erodes pitch and this knob alone does not keep it.
    audio_align_dims: int = 0
    # training-only linear head on each chunk's mean adaptor frame that predicts the clip's measured F0,
    # level, SNR and rate (training.acoustic_probe): keeps how the speech sounds in the adaptor's output.
    # Measured as above: with it the adaptor keeps 159/160 (as after the perception phase) and the model
    # answers 79/80 held-out pitch questions right (40/80 without: "low" every time), low female voices
    # included; transcription and spoken arithmetic at that point the same as without it
    acoustic_weight: float = 1.0
    # training-only linear head on every adaptor frame that predicts the frame's time in its listen chunk and
    # whether the clip is sounding there (training.acoustic_probe.frame_targets): keeps where things happen
    # in the adaptor's output, which pause lengths and beep counts are read from
    frame_weight: float = 1.0
    # --- demo model v2 (issue 12): targets, conversations, MGRD self-distillation, think-incomplete SFT
    # share of the reasoning examples trained with the empty think block (training.targets explains 0.25)
    empty_think_share: float = 0.25
    # multi-turn sessions (2-6 turns) rendered as the server renders history, last turn trained
    n_dialogs: int = 7000  # v2 (4,000): turns 2-6 of held-out sessions 76.8% against 92.0% at turn 1
    # self-distillation iterations after the cold start (0: none), each: sd_questions audio questions,
    # sd_k chains each, sampled at sd_temperature; then sd_steps of refinement at sd_lr on the kept chains
    # + sd_text_examples text reasoning problems + sd_replay cold-start examples
    sd_iterations: int = 2
    sd_questions: int = 400
    sd_k: int = 8
    sd_temperature: float = 0.8
    sd_max_tokens: int = 128
    sd_steps: int = 600
    sd_lr: float = 2e-4
    sd_text_examples: int = 1500
    sd_replay: int = 6000
    sd_eval_n: int = 200  # held-out samples evaluated after each iteration (0: none)
    # think-incomplete SFT (0 steps: none): ti_examples articulation examples + as many replayed
    ti_steps: int = 800
    ti_lr: float = 2e-4
    ti_examples: int = 6000
    # --- MGRD self-cognition (issue 13): share of the cold-start examples that are contaminated text-only
    # samples in which the assistant says it is a text model (training.self_cognition), added on top of
    # the mixture. 0 in the shipped demo recipe; DemoConfig.mgrd() sets it. Added after the v2 recipe's
    # runs: at its default it does not invalidate their cached stages (demo._without_new_defaults).
    text_model_claim_share: float = 0.0
    save_every: int = 250
    log_every: int = 10
    torch_threads: int = 2
    # export
    dtype: str = "float16"  # lossless for the fp16 Whisper weights; halves the size

    @classmethod
    def mini(cls, **overrides: Any) -> DemoConfig:
        """The CI miniature: same code path, a few dozen samples and a few steps."""
        base = cls(
            n_train=40,
            n_eval=12,
            data_workers=1,
            n_text_arithmetic=10,
            vocab_size=400,
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=128,
            adapter_hidden_size=128,
            steps=6,
            first_phase_steps=2,
            first_phase_leads={"tone_compare": 1},
            batch_size=8,
            lr=3e-3,
            warmup_steps=2,
            save_every=3,
            log_every=1,
            n_dialogs=6,
            sd_iterations=2,
            sd_questions=2,
            sd_k=2,
            sd_max_tokens=24,
            sd_steps=2,
            sd_text_examples=2,
            sd_replay=6,
            sd_eval_n=0,
            ti_steps=2,
            ti_examples=6,
        )
        return replace(base, **overrides)

    @classmethod
    def mgrd(cls, **overrides: Any) -> DemoConfig:
        """The MGRD recipe's supervised part: the demo recipe with contaminated cold-start data (text-only
        "I am a text model" replies, ``text_model_claim_share``), so that the supervised model shows the
        self-cognition error the judge filter and DPO then remove. 2%: the order of the paper's base error
        rate (6.76%); the probes measure what it gives (training.self_cognition.probe_checkpoint)."""
        return replace(cls(), **{"text_model_claim_share": 0.02, **overrides})

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_phase_tasks", tuple(self.first_phase_tasks))  # JSON gives a list
        for name in ("first_phase_repeats", "first_phase_leads"):  # task -> a count of draws or steps
            object.__setattr__(self, name, dict(getattr(self, name)))
            for task, n in getattr(self, name).items():
                if not isinstance(n, int) or n < 1:
                    raise ValueError(f"{name}[{task!r}] must be an integer >= 1, got {n!r}")
        if sum(self.first_phase_leads.values()) > self.first_phase_steps:
            raise ValueError(
                f"first_phase_leads take {sum(self.first_phase_leads.values())} steps, more than "
                f"first_phase_steps ({self.first_phase_steps}); shorten them, or set first_phase_leads "
                "to {} for no lead"
            )
        if not 0 < self.first_phase_lr_scale <= 10:
            raise ValueError(f"first_phase_lr_scale must be in (0, 10], got {self.first_phase_lr_scale}")
        if self.first_phase_steps < 0:
            raise ValueError(f"first_phase_steps must be >= 0, got {self.first_phase_steps}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}"
            )
        if not 0.0 <= self.text_model_claim_share < 1.0:
            raise ValueError(f"text_model_claim_share must be in [0, 1), got {self.text_model_claim_share}")
        if not 0.0 <= self.empty_think_share <= 1.0:
            raise ValueError(f"empty_think_share must be in [0, 1], got {self.empty_think_share}")
        for name in ("n_dialogs", "sd_iterations", "sd_steps", "sd_eval_n", "ti_steps", "ti_examples", "sd_replay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("sd_questions", "sd_k", "sd_max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("n_train", "steps", "batch_size", "vocab_size", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_eval < 0:
            raise ValueError(f"n_eval must be >= 0, got {self.n_eval}")
        if self.dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16 or float32, got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists), so a recipe read back from JSON compares equal."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DemoConfig keys: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> DemoConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
