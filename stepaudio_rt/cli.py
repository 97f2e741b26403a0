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


@bench_app.command("engine")
def bench_engine_cmd(
    prompt_tokens: int = 256,
    new_tokens: int = 64,
    rounds: int = 3,
    hidden: int = 384,
    layers: int = 8,
    out: Annotated[Path | None, typer.Option(help="write the result as JSON")] = None,
) -> None:
    """TorchEngine prefill tokens/s and decode ms/token vs transformers generate(), same weights, same run."""
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


@bench_app.command("gpu")
def bench_gpu_cmd(out: Path | None = None, new_tokens: int = 64) -> None:
    """Full Step-Audio-R1 shapes (33B, bf16, random weights) on a CUDA GPU through the TorchEngine."""
    import asyncio

    from stepaudio_rt.model.bench_gpu import run_bench

    result = asyncio.run(run_bench(new_tokens))
    console.print_json(json.dumps(result))
    if out:
        out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
