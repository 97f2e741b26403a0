"""``stepaudio-rt bench cosyvoice``: time to first chunk and real-time factor of the CosyVoice2 backend.

Random weights (no download): ``--full-shapes`` builds CosyVoice2-0.5B's real shapes in memory (Qwen2-0.5B
LM, 6+4-layer conformer, 12-mid-block estimator, HiFT at 512 channels), otherwise the tiny test shapes;
``--checkpoint DIR`` measures a real checkpoint instead. Random LMs stop at random, so every utterance is
forced to exactly ``--tokens`` speech tokens (250 = 10 s of audio) and all runs do the same work.

Side by side, interleaved per repeat, on the same utterance:

- ``streamed``: the backend's chunked path (first chunk after 25 + 3 tokens);
- ``one_shot``: all tokens first, then one flow + HiFT pass (first audio = everything) - the baseline the
  streaming first-chunk time is a ratio of.

Reported (medians): time to first chunk, total time, real-time factor (compute / audio seconds; < 1 is
faster than real time), LM tokens/s, and the ratio streamed / one-shot for first audio. With
``--concurrency 1,4,8`` also N streamed syntheses at once (N sessions speaking together, one thread each,
sharing the model): per-stream first chunk and real-time factor against the single-stream run.

    stepaudio-rt bench cosyvoice                                   # tiny shapes, CPU
    python -m stepaudio_rt.streaming.tts.cosyvoice.bench --full-shapes --device cuda --out cosyvoice_gpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import CosyVoice2Model, load_cosyvoice2
from .config import CosyVoiceConfig
from .stream import StreamParams, synthesize_stream

TEXT = "Forty six plus thirty seven is eighty three, and that is the answer to your question."


def _random_model(full: bool, device: str, dtype: torch.dtype, work: Path) -> CosyVoice2Model:
    """Random weights at the chosen shapes, built in memory (full shapes would be 2 GB of files)."""
    from transformers import AutoTokenizer, Qwen2Config

    from . import testing
    from .flow import CausalMaskedDiffWithXvec
    from .hift import HiFTGenerator
    from .llm import Qwen2LM
    from .voices import load_voices

    root = testing.build_tiny_checkpoint(work, speakers=False)  # yaml + tokenizer; tiny weights unused if full
    if not full:
        return load_cosyvoice2(root, device=device, dtype=dtype)
    (root / "cosyvoice2.yaml").write_text(testing._YAML.format(**testing._FULL))
    cfg = CosyVoiceConfig.from_yaml(root / "cosyvoice2.yaml")
    qwen = Qwen2Config(architectures=["Qwen2ForCausalLM"], **testing._QWEN_FULL)
    dev = torch.device(device)
    with dev:
        llm, flow, hift = Qwen2LM(cfg.lm, qwen), CausalMaskedDiffWithXvec(cfg), HiFTGenerator(cfg.hift)
    llm.to(dev, dtype).eval()
    flow.to(dev, dtype).eval()
    hift.to(dev).eval()
    tokenizer = AutoTokenizer.from_pretrained(root / "CosyVoice-BlankEN")
    return CosyVoice2Model(cfg, llm, flow, hift, tokenizer, load_voices(root / "spk2info.pt", cfg), root, dev)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _one_run(model: CosyVoice2Model, params: StreamParams, stream: bool) -> dict[str, float]:
    voice = next(iter(model.voices.values()))
    _sync(model.device)
    start = time.perf_counter()
    first = None
    samples = 0
    for chunk in synthesize_stream(model, TEXT, voice, params, stream=stream):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk)
    _sync(model.device)
    total = time.perf_counter() - start
    audio_s = samples / model.config.sample_rate
    return {"first_chunk_s": first or total, "total_s": total, "audio_s": audio_s, "rtf": total / audio_s}


def _concurrent(model: CosyVoice2Model, params: StreamParams, n: int) -> dict[str, float]:
    """``n`` streamed syntheses started together; medians over the streams."""
    results: list[dict[str, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one() -> None:
        start.wait()
        result = _one_run(model, params, stream=True)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {k: statistics.median(r[k] for r in results) for k in results[0]}


def _lm_rate(model: CosyVoice2Model, tokens: int) -> float:
    ids = torch.tensor(model.tokenizer(TEXT, add_special_tokens=False)["input_ids"]).view(1, -1)
    empty = torch.zeros(1, 0, dtype=torch.long)
    _sync(model.device)
    start = time.perf_counter()
    n = sum(1 for _ in model.llm.generate(ids, empty, empty, max_tokens=tokens))
    _sync(model.device)
    return n / (time.perf_counter() - start)


def run_bench(full: bool = False, checkpoint: str | None = None, device: str = "cpu", dtype: str | None = None,
              tokens: int = 250, repeats: int = 3, flow_steps: int | None = None,
              concurrency: tuple[int, ...] = ()) -> dict[str, Any]:
    torch_dtype = getattr(torch, dtype) if dtype else (torch.float16 if device.startswith("cuda") else torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint:
            model = load_cosyvoice2(checkpoint, device=device, dtype=torch_dtype)
        else:
            model = _random_model(full, device, torch_dtype, Path(tmp))
    # Exactly ``tokens`` speech tokens per utterance: no early stop, capped.
    model.llm.cfg.min_token_text_ratio = 1e6
    params = StreamParams(flow_steps=flow_steps, max_speech_tokens=tokens)
    _one_run(model, StreamParams(flow_steps=flow_steps, max_speech_tokens=min(tokens, 60)), True)  # warm-up
    runs: dict[str, list[dict[str, float]]] = {"streamed": [], "one_shot": []}
    for _ in tqdm(range(repeats), desc="cosyvoice bench", unit="round"):
        for mode in runs:  # interleaved, so machine noise hits both alike
            runs[mode].append(_one_run(model, params, stream=mode == "streamed"))
        for n in concurrency:
            runs.setdefault(f"concurrent_{n}", []).append(_concurrent(model, params, n))
    med = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in runs.items()}
    return {
        "shapes": "checkpoint" if checkpoint else ("CosyVoice2-0.5B (random)" if full else "tiny (random)"),
        "device": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else device,
        "dtype": str(torch_dtype).removeprefix("torch."),
        "speech_tokens": tokens,
        "flow_steps": flow_steps or model.config.flow_steps,
        "repeats": repeats,
        "lm_tokens_per_s": _lm_rate(model, tokens),
        "median": med,
        "first_chunk_ratio_streamed_vs_one_shot": med["streamed"]["first_chunk_s"] / med["one_shot"]["first_chunk_s"],
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="stepaudio-rt bench cosyvoice", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-shapes", action="store_true", help="CosyVoice2-0.5B shapes (random weights)")
    ap.add_argument("--checkpoint", help="a real checkpoint directory or hub id instead of random weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", help="float16 / bfloat16 / float32 (default: float16 on cuda)")
    ap.add_argument("--tokens", type=int, default=250, help="speech tokens per utterance (25 = 1 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--flow-steps", type=int, help="Euler steps of the flow ODE (default: 10, as upstream)")
    ap.add_argument("--concurrency", default="", help="also N streams at once, e.g. 1,4,8")
    ap.add_argument("--out", type=Path, help="write the result as JSON here")
    args = ap.parse_args(argv)
    concurrency = tuple(int(n) for n in args.concurrency.split(",") if n.strip())
    result = run_bench(args.full_shapes, args.checkpoint, args.device, args.dtype, args.tokens, args.repeats,
                       args.flow_steps, concurrency)
    text = json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
