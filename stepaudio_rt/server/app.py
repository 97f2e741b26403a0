"""The FastAPI application: ``/v1/realtime`` (WebSocket), ``/healthz``, ``/metrics``, ``/v1/models``,
``/v1/voices``."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, Response

from stepaudio_rt.model.engine import Engine
from stepaudio_rt.server.state import ServerState
from stepaudio_rt.server.transport import realtime_endpoint
from stepaudio_rt.server.web import mount_web
from stepaudio_rt.settings import Settings, SettingsError
from stepaudio_rt.streaming.tts import TTSBackend, create_tts

log = logging.getLogger(__name__)

CONTEXTS_PER_SESSION = 3  # conversation prefix + user turn being listened to + running response


def cpu_threads(settings: Settings) -> int:
    """The torch engine's CPU threads: the setting, else every core but one (TTS and turn detection's)."""
    if settings.torch_threads is not None:
        return settings.torch_threads
    return max(1, (os.cpu_count() or 1) - 1)


def load_engine(settings: Settings) -> Engine:
    """The configured engine for the configured checkpoint (raises SettingsError when there is none)."""
    if settings.engine == "vllm":
        return load_vllm_engine(settings)
    import torch

    from stepaudio_rt.model.torch_engine import TorchEngine

    path = settings.resolved_model_path()
    dtype = getattr(torch, settings.dtype) if settings.dtype else None
    if torch.device(settings.device).type == "cpu":
        torch.set_num_threads(cpu_threads(settings))
    return TorchEngine.from_pretrained(
        path,
        device=settings.device,
        dtype=dtype,
        max_contexts=settings.max_sessions * CONTEXTS_PER_SESSION + 2,
        max_context_tokens=settings.max_context_tokens,
    )


def load_vllm_engine(settings: Settings) -> Engine:
    """The VLLMEngine (needs vLLM installed: the Docker image, or ``make test-vllm``'s venv)."""
    try:
        from stepaudio_rt.model.vllm_engine import VLLMEngine, VLLMOptions
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SettingsError(f"--engine vllm needs vLLM installed ({exc})") from None

    options = VLLMOptions(
        tensor_parallel_size=settings.tensor_parallel_size,
        pipeline_parallel_size=settings.pipeline_parallel_size,
        data_parallel_size=settings.data_parallel_size,
        distributed_executor_backend=settings.distributed_executor_backend,
        max_model_len=settings.max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        quantization=settings.quantization,
        dtype=settings.dtype or "auto",
        enforce_eager=settings.enforce_eager,
        seed=settings.seed or 0,
        block_size=settings.kv_block_size,
    )
    return VLLMEngine.from_pretrained(str(settings.resolved_model_path()), options)


def load_tts(settings: Settings) -> TTSBackend | None:
    if settings.tts_backend == "none":
        return None
    kw: dict[str, object] = {"voice_path": settings.tts_voice} if settings.tts_voice else {}
    if settings.tts_backend == "cosyvoice":
        kw = {"model_path": settings.tts_model, "voice": settings.tts_voice, "device": settings.tts_device,
              "dtype": settings.tts_dtype}
    tts = create_tts(settings.tts_backend, **kw)
    tts.warmup()
    return tts


def _preload_smart_turn(state: ServerState) -> None:
    """Load semantic_vad's model now rather than in the first session that asks; without it the server
    still runs (server_vad, manual turns) and session.update to semantic_vad gets an error."""
    from stepaudio_rt.streaming.smart_turn import SmartTurnUnavailableError

    try:
        state.smart_turn()
    except SmartTurnUnavailableError as exc:
        log.warning("semantic_vad unavailable: %s", exc)


def create_app(settings: Settings, engine: Engine | None = None, tts: TTSBackend | None = None) -> FastAPI:
    """Build the app. Without ``engine`` / ``tts`` they are loaded from ``settings`` at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        eng = engine if engine is not None else load_engine(settings)
        speech = tts if tts is not None else load_tts(settings)
        app.state.realtime = ServerState(settings=settings, engine=eng, tts=speech)
        _preload_smart_turn(app.state.realtime)
        try:
            yield
        finally:
            state: ServerState = app.state.realtime
            for session in list(state.sessions):
                await session.aclose()
            if own_engine:
                await eng.aclose()

    app = FastAPI(title="stepaudio-rt", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        state: ServerState = app.state.realtime
        stats = getattr(state.engine, "stats", None)
        return {
            "status": "ok",
            "model": settings.model_name,
            "sessions": len(state.sessions),
            "active_responses": sum(1 for s in state.sessions if s.response is not None),
            "engine": stats() if callable(stats) else {},
        }

    @app.get("/metrics")
    async def metrics() -> Response:
        state: ServerState = app.state.realtime
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    @app.get("/v1/models")
    async def models() -> dict[str, object]:
        return {
            "object": "list",
            "data": [{"id": settings.model_name, "object": "model", "created": 0, "owned_by": "stepaudio-rt"}],
        }

    @app.get("/v1/voices")
    async def voices() -> dict[str, object]:
        """The voices the ``voice`` field accepts (the TTS backend's installed voices, default first)."""
        tts = app.state.realtime.tts
        names = tts.voices() if tts is not None else []
        return {
            "object": "list",
            "backend": tts.name if tts is not None else None,
            "default": names[0] if names else None,
            "data": [{"id": name, "object": "voice"} for name in names],
        }

    app.add_api_websocket_route("/v1/realtime", realtime_endpoint)
    mount_web(app)  # the browser page at / (stepaudio_rt/server/web.py)
    return app


def run_server(settings: Settings) -> None:
    """Serve until interrupted. uvicorn's WebSocket message limit sits above ours so that an oversized
    event gets an ``error`` event instead of a dropped connection."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.resolved_model_path()  # fail fast with a clear message before binding the port
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_max_size=settings.max_event_bytes * 2 + 1024,
        ws="websockets",
    )
