"""``python -m stepaudio_rt.server --model PATH --port N ...``: start the realtime server.

Flags override ``STEPAUDIO_RT_*`` environment variables, which override the defaults in ``Settings``.
"""

from __future__ import annotations

import argparse
import json
import sys

from stepaudio_rt.settings import DEFAULT_EFFORT_BUDGETS, Settings, SettingsError


def parse_args(argv: list[str] | None = None) -> Settings:
    ap = argparse.ArgumentParser(prog="python -m stepaudio_rt.server", description=__doc__)
    ap.add_argument("--model", dest="model_path", help="checkpoint directory or hub id (default: bundled demo)")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    ap.add_argument("--device")
    ap.add_argument("--dtype")
    ap.add_argument("--torch-threads", type=int, help="CPU threads of the torch engine (default: all cores but one)")
    ap.add_argument("--api-key", action="append", dest="api_keys", help="repeat for several keys")
    ap.add_argument("--max-sessions", type=int)
    ap.add_argument("--max-event-bytes", type=int)
    ap.add_argument("--max-input-buffer-seconds", type=float)
    ap.add_argument("--max-output-tokens", type=int)
    ap.add_argument("--max-context-tokens", type=int)
    ap.add_argument("--tts", dest="tts_backend")
    ap.add_argument("--voice", dest="tts_voice", help="piper: a voice .onnx (or folder); cosyvoice: a speaker name")
    ap.add_argument("--tts-model", dest="tts_model", help="cosyvoice: checkpoint directory or hub id")
    ap.add_argument("--tts-device", dest="tts_device", help="cosyvoice: torch device (default: cuda if available)")
    ap.add_argument("--tts-dtype", dest="tts_dtype", help="cosyvoice: float16 / bfloat16 / float32")
    ap.add_argument("--reasoning-effort", dest="default_reasoning_effort")
    ap.add_argument("--effort-budgets", type=json.loads, help='JSON, e.g. \'{"low": 64}\' (merged with defaults)')
    ap.add_argument("--listen-chunk-seconds", type=float)
    ap.add_argument(
        "--thinking-mode",
        choices=["sequential", "think_first", "speak_first"],
        help="think-while-speaking default (sessions may override); default: the checkpoint's, else sequential",
    )
    ap.add_argument("--reasoning-segment-tokens", type=int, help="reasoning tokens per segment (paper: 80)")
    ap.add_argument("--reply-segment-tokens", type=int, help="reply tokens per articulation round (default 24)")
    ap.add_argument("--playback-lead-ms", type=float, help="release the next round below this much unplayed audio")
    ap.add_argument("--reasoning-lag-policy", choices=["wait", "speak"], help="when reasoning falls behind playback")
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--log-level")
    ap.add_argument("--smart-turn-model", help="semantic_vad's Smart Turn ONNX file (default: pipecat-ai's copy)")
    ap.add_argument("--transcription-model", help="faster-whisper name or path for input transcription")
    vllm = ap.add_argument_group("engine", "--engine vllm serves through upstream vLLM (these pass through to it)")
    vllm.add_argument("--engine", choices=["torch", "vllm"])
    vllm.add_argument("--tensor-parallel-size", "-tp", type=int)
    vllm.add_argument("--pipeline-parallel-size", "-pp", type=int)
    vllm.add_argument("--data-parallel-size", "-dp", type=int)
    vllm.add_argument("--distributed-executor-backend", choices=["mp", "ray"])
    vllm.add_argument("--max-model-len", type=int)
    vllm.add_argument("--gpu-memory-utilization", type=float)
    vllm.add_argument("--quantization")
    vllm.add_argument("--kv-block-size", type=int)
    vllm.add_argument("--enforce-eager", action="store_true", default=None)
    args = {k: v for k, v in vars(ap.parse_args(argv)).items() if v is not None}
    if "effort_budgets" in args:
        args["effort_budgets"] = {**DEFAULT_EFFORT_BUDGETS, **args["effort_budgets"]}
    return Settings(**args)


def main(argv: list[str] | None = None) -> None:
    from stepaudio_rt.server.app import run_server

    try:
        settings = parse_args(argv)
        run_server(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
