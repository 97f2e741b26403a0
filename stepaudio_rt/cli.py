"""``stepaudio-rt``: the command line. Each command imports its layer lazily so ``--help`` stays fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Realtime speech-to-speech server for Step-Audio-R1 reasoning audio models.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: first-packet latency against a server, engine speed.", no_args_is_help=True)
train_app = typer.Typer(help="The MGRD training pipeline stages.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(train_app, name="train")
console = Console()

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@app.command(context_settings=PASSTHROUGH, add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Start the realtime server (OpenAI Realtime protocol on /v1/realtime). `serve --help` lists the flags."""
    from stepaudio_rt.server.__main__ import main as server_main

    server_main(list(ctx.args))


@app.command()
def inspect(
    path: Annotated[str, typer.Argument(help="checkpoint directory or hub id")],
    values: Annotated[bool, typer.Option(help="also check every value is finite (reads all weights)")] = True,
) -> None:
    """Print a checkpoint's config and parameter counts, and verify every tensor."""
    from stepaudio_rt.model.checkpoint import verify_checkpoint

    report = verify_checkpoint(path, check_values=values)
    t, a = report.config.text, report.config.audio
    table = Table(title=f"{report.path}", show_header=False)
    table.add_row("architecture", "StepAudio2ForCausalLM")
    table.add_row(
        "decoder",
        f"hidden {t.hidden_size}, {t.num_hidden_layers} layers, {t.num_attention_heads}/{t.num_key_value_heads} heads, "
        f"ffn {t.intermediate_size}, vocab {t.vocab_size}, ctx {t.max_position_embeddings}",
    )
    table.add_row(
        "audio encoder",
        f"{a.n_mels} mels, width {a.n_audio_state}, {a.n_audio_layer} layers, {a.n_audio_head} heads; adaptor -> {a.llm_dim}",
    )
    for module, count in report.parameters.items():
        table.add_row(f"params: {module}", f"{count / 1e6:,.2f} M")
    table.add_row("params: total", f"{sum(report.parameters.values()) / 1e6:,.2f} M")
    table.add_row("tensors", f"{report.tensors} ({', '.join(f'{k}: {v}' for k, v in report.dtypes.items())})")
    table.add_row("special tokens", ", ".join(f"{k}={v}" for k, v in report.special_tokens.items()))
    console.print(table)
    if report.problems:
        for p in report.problems:
            console.print(f"[red]problem:[/red] {p}")
        raise typer.Exit(1)
    console.print("[green]all tensors verified[/green]")


@app.command()
def talk(
    wav: Annotated[Path | None, typer.Argument(help="question audio (WAV/FLAC, any rate); or use --mic")] = None,
    url: Annotated[str, typer.Option(help="server: host:port, http(s)://host:port or ws://.../v1/realtime")] = (
        "http://127.0.0.1:8000"
    ),
    out: Annotated[Path, typer.Option(help="where to save the reply audio (24 kHz WAV)")] = Path("reply.wav"),
    mic: Annotated[float | None, typer.Option(help="record this many seconds from the microphone instead")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="API key (if the server has one)")] = None,
    model: str = "step-audio-r1",
    manual: Annotated[bool, typer.Option(help="commit + response.create instead of server VAD")] = False,
    vad: Annotated[str, typer.Option(help="turn detection: semantic_vad (end-of-turn model) or server_vad")] = (
        "semantic_vad"
    ),
    thinking_mode: Annotated[str | None, typer.Option(
        help="think-while-speaking on our server: sequential, think_first or speak_first")] = None,
    transcribe: Annotated[bool, typer.Option(help="ask the server to transcribe the question, print it")] = True,
    speed: Annotated[float, typer.Option(help="audio pace: 1 = real time; inf = as fast as possible")] = 1.0,
    chunk_ms: Annotated[int, typer.Option(help="audio per append event (20-100 ms is typical)")] = 40,
    reasoning: Annotated[bool, typer.Option(help="ask for and print the model's reasoning")] = True,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the reply")] = 120.0,
) -> None:
    """Ask a spoken question: stream a WAV (or the microphone) to a server, print the reasoning (dimmed)
    and the reply as they stream, save the reply audio and print the first-packet latency."""
    import asyncio

    from stepaudio_rt.clients.realtime_client import RealtimeError
    from stepaudio_rt.clients.talk import TalkOptions, load_input
    from stepaudio_rt.clients.talk import talk as run_talk
    from stepaudio_rt.clients.wav_stream import AudioInputError

    opts = TalkOptions(url=url, api_key=api_key, model=model, out=out, manual=manual, vad=vad, transcribe=transcribe,
                       thinking_mode=thinking_mode, speed=speed,
                       chunk_ms=chunk_ms, reasoning=reasoning, timeout_s=timeout)
    try:
        turn = asyncio.run(run_talk(load_input(wav, mic), opts, console))
    except (AudioInputError, RealtimeError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if turn.status not in ("completed", "incomplete"):
        raise typer.Exit(1)


@bench_app.callback(invoke_without_command=True)
@bench_app.command("latency")
def bench_latency_cmd(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="server speaking the Realtime protocol (ours or another)")] = (
        "http://127.0.0.1:8000"
    ),
    n: Annotated[int, typer.Option(help="turns per concurrency level")] = 16,
    concurrency: Annotated[str, typer.Option(help="comma-separated concurrency levels")] = "1,2,4,8",
    out: Annotated[Path, typer.Option(help="folder for latency.json, CSVs and latency_cdf.png")] = Path(
        "bench-latency"
    ),
    bigbench: Annotated[Path | None, typer.Option(help="folder of BIG-bench task JSON to speak")] = None,
    wav_dir: Annotated[Path | None, typer.Option(help="folder of recorded questions (WAV/FLAC)")] = None,
    questions: Annotated[int, typer.Option(help="distinct questions (cycled)")] = 8,
    chunk_ms: Annotated[int, typer.Option(help="audio per append event, 20-100 ms")] = 40,
    speed: Annotated[float, typer.Option(help="audio pace; anything but 1 is flagged in the results")] = 1.0,
    stagger: Annotated[float, typer.Option(help="seconds between worker starts")] = 0.5,
    trailing_silence: Annotated[float, typer.Option(help="seconds of silence after each question")] = 2.0,
    manual: Annotated[bool, typer.Option(help="commit + response.create instead of server VAD")] = False,
    thinking_mode: Annotated[str | None, typer.Option(
        help="our server's think-while-speaking mode: sequential, think_first or speak_first")] = None,
    vad: Annotated[str, typer.Option(help="turn detection: server_vad or semantic_vad")] = "server_vad",
    timeout: Annotated[float, typer.Option(help="seconds to wait for a reply")] = 60.0,
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY")] = None,
    model: str = "step-audio-r1",
    fast: Annotated[bool, typer.Option(help="smoke run: n=2, concurrency 1,2 (real-time pace kept)")] = False,
) -> None:
    """First-packet latency: N spoken questions at each concurrency level, p50/p90/p95/p99 per clock.

    `stepaudio-rt bench --url ...` (no subcommand) runs this too."""
    if ctx.invoked_subcommand is not None:
        return  # `bench engine` / `bench gpu`: the group callback has nothing to do
    import asyncio

    from stepaudio_rt.clients.latency_bench import BenchConfig, run_bench
    from stepaudio_rt.clients.wav_stream import AudioInputError

    try:
        levels = [int(c) for c in concurrency.split(",") if c.strip()]
    except ValueError:
        console.print(f"[red]error:[/red] --concurrency must be comma-separated integers, got {concurrency!r}")
        raise typer.Exit(2) from None
    opts = dict(url=url, api_key=api_key, model=model, out_dir=out, bigbench_dir=bigbench, wav_dir=wav_dir,
                chunk_ms=chunk_ms, speed=speed, manual=manual, timeout_s=timeout, vad=vad,
                thinking_mode=thinking_mode)
    if fast:
        cfg = BenchConfig.fast(**opts)
    else:
        cfg = BenchConfig(n=n, concurrency=levels, questions=questions, stagger_s=stagger,
                          trailing_silence_s=trailing_silence, **opts)  # type: ignore[arg-type]
    try:
        result = asyncio.run(run_bench(cfg))
    except (AudioInputError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title=f"first-packet latency (ms), {result['server']}")
    for col in ("conc.", "clock", "n", "mean", "p50", "p90", "p95", "p99", "errors", "timeouts"):
        table.add_column(col, no_wrap=True, min_width=14 if col == "clock" else None)
    for level, s in result["levels"].items():
        for clock, st in s["first_packet_s"].items():
            ms = [("-" if st[k] is None else f"{st[k] * 1000:.0f}") for k in ("mean", "p50", "p90", "p95", "p99")]
            table.add_row(level, clock, str(st["n"]), *ms, str(s["errors"]), str(s["timeouts"]))
    console.print(table)
    console.print(f"results: {cfg.out_dir}/latency.json, latency_turns.csv, latency_summary.csv, latency_cdf.png")


@bench_app.command("turns")
def bench_turns_cmd(
    url: Annotated[str, typer.Option(help="server speaking the Realtime protocol")] = "http://127.0.0.1:8000",
    latency_turns: Annotated[int, typer.Option(help="complete questions per variant")] = 24,
    paused_turns: Annotated[int, typer.Option(help="questions with a mid-sentence pause per VAD mode and set")] = 24,
    out: Annotated[Path, typer.Option(help="folder for turns.json")] = Path("bench-turns"),
    api_key: Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY")] = None,
    model: str = "step-audio-r1",
    paused_sets: Annotated[str, typer.Option(help="comma-separated: silent, filler, heldout")] = "silent,filler,heldout",
    paused_concurrency: Annotated[int, typer.Option(help="sessions at once for the paused sets")] = 1,
    variants: Annotated[str, typer.Option(help="latency variants: server_vad, semantic_vad, "
                                          "semantic_vad+transcription")] = "server_vad,semantic_vad,semantic_vad+transcription",
) -> None:
    """server_vad vs semantic_vad side by side: last speech byte -> first audio, premature end-of-turn rate."""
    import asyncio

    from stepaudio_rt.clients.bench_turns import TurnsConfig, run_turns_bench, summary_rows
    from stepaudio_rt.clients.wav_stream import AudioInputError

    cfg = TurnsConfig(url=url, api_key=api_key, model=model, latency_turns=latency_turns,
                      paused_turns=paused_turns, out_dir=out,
                      paused_sets=tuple(x.strip() for x in paused_sets.split(",") if x.strip()),
                      paused_concurrency=paused_concurrency,
                      latency_variants=tuple(x.strip() for x in variants.split(",") if x.strip()))
    try:
        doc = asyncio.run(run_turns_bench(cfg))
    except (AudioInputError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    table = Table(title="turn taking (ms), concurrency 1")
    for col in ("mode", "n", "first audio p50", "p90", "end of turn p50", "cut: silent pause", "cut: um + pause",
                "cut: held-out", "errors"):
        table.add_column(col)
    for row in summary_rows(doc["summary"]):
        table.add_row(*row)
    console.print(table)
    console.print(f"results: {out}/turns.json, turns.png")


@bench_app.command("engine")
def bench_engine_cmd(
    prompt_tokens: int = 256,
    new_tokens: int = 64,
    rounds: int = 3,
    hidden: int = 384,
    layers: int = 8,
    out: Annotated[Path | None, typer.Option(help="write the result as JSON")] = None,
    engine: Annotated[str, typer.Option(help="torch: vs transformers generate(); vllm: VLLMEngine vs TorchEngine")] = "torch",
    model: Annotated[Path | None, typer.Option(help="checkpoint for --engine vllm (default: the bundled demo)")] = None,
) -> None:
    """TorchEngine prefill tokens/s and decode ms/token vs transformers generate(), same weights, same run
    (``--engine vllm``: the VLLMEngine against the TorchEngine on one checkpoint, same run)."""
    if engine == "vllm":
        _bench_vllm(model, prompt_tokens, new_tokens, rounds, out)
        return
    from stepaudio_rt.model.bench import bench_engine

    with console.status("benchmarking (interleaved rounds)..."):
        result = bench_engine(prompt_tokens, new_tokens, rounds, hidden, layers)
    table = Table(title=f"{result.params_m} M-parameter decoder, {result.threads} threads")
    table.add_column("")
    table.add_column("TorchEngine")
    table.add_column("transformers generate()")
    table.add_row("prefill tokens/s", f"{result.engine_prefill_tok_s}", f"{result.hf_prefill_tok_s}")
    table.add_row("decode ms/token", f"{result.engine_decode_ms}", f"{result.hf_decode_ms}")
    table.add_row("decode step, batch 8 (ms)", f"{result.engine_batch8_decode_ms_per_step}", "-")
    console.print(table)
    console.print(f"decode speed-up: {result.decode_speedup}x")
    if out:
        out.write_text(json.dumps(result.as_dict(), indent=2) + "\n")


@bench_app.command("mps", context_settings=PASSTHROUGH, add_help_option=False)
def bench_mps_cmd(ctx: typer.Context) -> None:
    """Think-while-speaking: first audio vs forced reasoning length per thinking mode, second-stream
    cost, round overhead (CPU, demo shapes; --full-shapes on a GPU). `bench mps --help` lists the flags."""
    from stepaudio_rt.streaming.bench_mps import main as bench_mps_main

    bench_mps_main(list(ctx.args))


@bench_app.command("cosyvoice", context_settings=PASSTHROUGH, add_help_option=False)
def bench_cosyvoice_cmd(ctx: typer.Context) -> None:
    """CosyVoice2 TTS: time to first chunk and real-time factor, streamed vs one-shot, random weights
    (tiny shapes; --full-shapes on a GPU). `bench cosyvoice --help` lists the flags."""
    from stepaudio_rt.streaming.tts.cosyvoice.bench import main as bench_cosyvoice_main

    bench_cosyvoice_main(list(ctx.args))


def _bench_vllm(model: Path | None, prompt_tokens: int, new_tokens: int, rounds: int, out: Path | None) -> None:
    import asyncio

    from stepaudio_rt.model.bench_vllm import bench_vllm_engine
    from stepaudio_rt.settings import DEMO_CHECKPOINT

    with console.status("benchmarking VLLMEngine vs TorchEngine (interleaved rounds)..."):
        result = asyncio.run(bench_vllm_engine(model or DEMO_CHECKPOINT, prompt_tokens, new_tokens, rounds))
    ratios = result.ratios()
    table = Table(title=f"{Path(result.checkpoint).name}, {result.threads} threads, {prompt_tokens}-token prompts")
    for col in ("", "TorchEngine", "VLLMEngine", "vLLM / torch"):
        table.add_column(col)
    table.add_row("prefill tokens/s", f"{result.torch_prefill_tok_s}", f"{result.vllm_prefill_tok_s}", f"{ratios['prefill_tok_s']}")
    table.add_row("decode ms/token", f"{result.torch_decode_ms}", f"{result.vllm_decode_ms}", f"{ratios['decode_ms']}")
    table.add_row("decode step, batch 8 (ms)", f"{result.torch_batch8_step_ms}", f"{result.vllm_batch8_step_ms}", f"{ratios['batch8_step_ms']}")
    table.add_row("end of a 20 s listened turn to first token (ms)", f"{result.torch_end_of_turn_ms}",
                  f"{result.vllm_end_of_turn_ms}", f"{ratios['end_of_turn_ms']}")  # fmt: skip
    flat = result.flatness()
    table.add_row("  the same, 20 s over 2 s (1.0 = flat)", f"{flat['torch']}", f"{flat['vllm']}", "-")
    console.print(table)
    if out:
        out.write_text(json.dumps(result.as_dict(), indent=2) + "\n")


@bench_app.command("gpu")
def bench_gpu_cmd(out: Path | None = None, new_tokens: int = 64) -> None:
    """Full Step-Audio-R1 shapes (33B, bf16, random weights) on a CUDA GPU through the TorchEngine."""
    import asyncio

    from stepaudio_rt.model.bench_gpu import run_bench

    result = asyncio.run(run_bench(new_tokens))
    console.print_json(json.dumps(result))
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n")


@train_app.command("demo")
def train_demo_cmd(
    out: Annotated[Path | None, typer.Option(help="checkpoint directory (default: the bundled one)")] = None,
    work: Annotated[Path, typer.Option(help="data, features and training state (resumable)")] = Path("runs/demo"),
    config: Annotated[Path | None, typer.Option(help="JSON file with DemoConfig fields")] = None,
    fresh: Annotated[bool, typer.Option(help="ignore cached stages and start over")] = False,
    mini: Annotated[bool, typer.Option(help="the CI miniature: a few dozen samples, a few steps")] = False,
) -> None:
    """Rebuild the bundled demo checkpoint: synthetic spoken tasks -> tokenizer -> Whisper tiny.en encoder
    -> cold-start SFT (MGRD stage 1) -> official HF layout."""
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.demo import DEFAULT_OUT_DIR, train_demo

    cfg = DemoConfig.from_file(config) if config else (DemoConfig.mini() if mini else DemoConfig())
    train_demo(out or DEFAULT_OUT_DIR, cfg, resume=not fresh, work_dir=work)


@train_app.command("rl")
def train_rl_cmd(
    model: Annotated[Path | None, typer.Option(help="starting checkpoint (default: the bundled demo)")] = None,
    out: Annotated[Path, typer.Option(help="where the trained checkpoint goes")] = Path("runs/rl/ckpt"),
    work: Annotated[Path, typer.Option(help="questions, pass@k table, state, log, value head (resumable)")] = Path("runs/rl"),
    config: Annotated[Path | None, typer.Option(help="JSON file with RlConfig fields")] = None,
    mini: Annotated[bool, typer.Option(help="the CI miniature: a few questions, a few steps")] = False,
) -> None:
    """MGRD RL stage: pass@8 selection, then PPO (clip 0.2, gamma = lambda = 1, no KL, value head) with the
    0.8 x correct + 0.2 x reasoning audio reward; rollouts through the serving engine."""
    from stepaudio_rt.training.demo import DEFAULT_OUT_DIR
    from stepaudio_rt.training.rl_config import RlConfig
    from stepaudio_rt.training.rlvr import run_rl_stage

    cfg = RlConfig.from_file(config) if config else (RlConfig.mini() if mini else RlConfig())
    run_rl_stage(model or DEFAULT_OUT_DIR, out, work, cfg)


@train_app.command("error-weighted")
def train_error_weighted_cmd(
    model: Annotated[Path | None, typer.Option(help="starting checkpoint (default: the bundled demo)")] = None,
    out: Annotated[Path, typer.Option(help="where the trained checkpoint goes")] = Path("runs/error_weighted/ckpt"),
    work: Annotated[Path, typer.Option(help="errors, data, features, state, metrics (resumable)")] = Path(
        "runs/error_weighted"
    ),
    config: Annotated[Path | None, typer.Option(help="JSON file with ErrorWeightedConfig fields")] = None,
    mini: Annotated[bool, typer.Option(help="the CI miniature: a question per task, a few steps")] = False,
) -> None:
    """MGRD's last stage (error-weighted SFT) on its own, from any checkpoint (``train mgrd`` runs it after
    DPO): measure the model's errors per task on fresh training-split questions, then SFT on fresh clips
    drawn in proportion to them (plus the recipe's mixture, sessions and think-incomplete examples)."""
    from stepaudio_rt.training.config import DemoConfig
    from stepaudio_rt.training.demo import DEFAULT_OUT_DIR
    from stepaudio_rt.training.error_weighted_sft import ErrorWeightedConfig, run_error_weighted_stage

    if config:
        cfg = ErrorWeightedConfig.from_dict(json.loads(config.read_text()))
    else:
        cfg = ErrorWeightedConfig.mini() if mini else ErrorWeightedConfig()
    run_error_weighted_stage(model or DEFAULT_OUT_DIR, out, work, cfg, DemoConfig.mgrd())


@train_app.command("ablate-rl")
def train_ablate_rl_cmd(
    model: Annotated[Path | None, typer.Option(help="starting checkpoint (default: the bundled demo)")] = None,
    out: Annotated[Path, typer.Option(help="ablation_rl.json and the PNG curves")] = Path("runs/ablate_rl"),
    work: Annotated[Path, typer.Option(help="one resumable RL run per variant")] = Path("runs/ablate_rl/work"),
    config: Annotated[Path | None, typer.Option(help="JSON file with RlConfig fields")] = None,
    variants: Annotated[str, typer.Option(help="comma-separated: format_on_band, format_off_band, format_on_failed")] = (
        "format_on_band,format_off_band,format_on_failed"
    ),
) -> None:
    """The paper's RL ablations side by side from one checkpoint: format reward on vs off, pass@8 in
    [3, 6] vs failed-only; curves (PNG), figures and held-out accuracy (JSON)."""
    from stepaudio_rt.training.ablations import run_rl_ablations
    from stepaudio_rt.training.demo import DEFAULT_OUT_DIR
    from stepaudio_rt.training.rl_config import RlConfig

    cfg = RlConfig.from_file(config) if config else RlConfig()
    run_rl_ablations(model or DEFAULT_OUT_DIR, out, work, cfg, tuple(v for v in variants.split(",") if v))


@train_app.command("mgrd")
def train_mgrd_cmd(
    out: Annotated[Path, typer.Option(help="the final (error-weighted SFT) checkpoint")] = Path("runs/mgrd/ckpt"),
    work: Annotated[Path, typer.Option(help="every stage's data, state and checkpoint (resumable)")] = Path("runs/mgrd"),
    config: Annotated[Path | None, typer.Option(help="JSON with 'demo', 'rl', 'dpo', 'error_weighted' recipe fields")] = None,
    mini: Annotated[bool, typer.Option(help="the CI miniature: every stage on a few samples and steps")] = False,
) -> None:
    """The whole MGRD pipeline: supervised stages (contaminated cold start, self-distillation with the
    judge filters, think-incomplete SFT) -> pass@8 selection + PPO -> self-cognition DPO -> error-weighted
    SFT -> the stage table (accuracy per task, think length, self-cognition error after every stage; JSON +
    PNG)."""
    from stepaudio_rt.training.mgrd import MgrdConfig, train_mgrd

    if config:
        cfg = MgrdConfig.from_dict(json.loads(config.read_text()))
    else:
        cfg = MgrdConfig.mini() if mini else MgrdConfig()
    train_mgrd(out, work, cfg)


@app.command("eval")
def eval_cmd(
    model: Annotated[Path | None, typer.Option(help="checkpoint directory (default: the bundled demo)")] = None,
    out: Annotated[Path, typer.Option(help="where eval.json and eval_accuracy.png go")] = Path("runs/eval"),
    n: Annotated[int, typer.Option("-n", help="held-out samples")] = 400,
    seed: int = 0,
    data: Annotated[Path | None, typer.Option(help="a built data directory with eval.jsonl")] = None,
    modes: Annotated[str, typer.Option(help="comma-separated: thinking, empty_think, think_first, speak_first")] = (
        "thinking,empty_think,think_first,speak_first"
    ),
    quick: Annotated[bool, typer.Option(help="per-task accuracy only, no think-budget/session figures")] = False,
    probes: Annotated[int, typer.Option(help="held-out audio self-cognition probes, judged (0: none)")] = 64,
    figures: Annotated[str, typer.Option(help="reasoning figures (comma-separated): budget, sessions, partial")] = (
        "budget,sessions,partial"
    ),
    tasks: Annotated[str | None, typer.Option(
        help="comma-separated tasks: synthesise only these (n samples in all), e.g. to measure a few on more")] = None,
) -> None:
    """Accuracy per task on the held-out spoken tasks, through the TorchEngine: thinking, the empty think
    block, and think-while-speaking (think_first, speak_first); plus accuracy against think budget, turn 1
    vs turns 2-6 of sessions, partial reasoning and reply audio length (unless --quick); prints and saves
    JSON + PNG."""
    from stepaudio_rt.training.demo import DEFAULT_OUT_DIR
    from stepaudio_rt.training.evaluate import ReasoningFigures, evaluate_checkpoint

    task_list = tasks.split(",") if tasks else None
    if task_list is not None:
        from stepaudio_rt.training.data.build import check_tasks

        try:
            check_tasks(task_list)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--tasks") from None
    reasoning = ReasoningFigures() if quick else ReasoningFigures.full().only(figures.split(","))
    evaluate_checkpoint(model or DEFAULT_OUT_DIR, out, n=n, seed=seed, data_dir=data, reasoning=reasoning,
                        modes=modes.split(","), probes=probes, tasks=task_list)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
