"""Held-out voice-pitch probe: fresh ``eval``-split pitch questions, answered with thinking, per checkpoint,
split by voice variant and label (the v2 regression: held-out low "m6" voices called high).

    python scripts/pitch_probe.py stepaudio_rt/demo_checkpoint runs/demo_v2/cold_start_ckpt [-n 80]

Measured (80 questions, seed 1234): v1 79/80, v2 cold start 35/80 (m6 low 1/46), v2 final 42/80 (15/46).
With data format 3 (low female voices among the questions too): v3 cold start 41/80 (f4 high 41/41, f4 low
0/11, m6 low 0/28: "high" every time, the chain citing 288-298 Hz whatever the voice). The cause and the
fix (the acoustic head, ``training/acoustic_probe.py``): ``scripts/pitch_feature_probe.py`` and
``scripts/align_probe.py``; 600 mixed steps after the perception phase, 79/80 with the head, 40/80 without.
"""

from __future__ import annotations

import argparse
import asyncio
import collections

import numpy as np

from stepaudio_rt.model.prompt import GENERATION_PREFIX
from stepaudio_rt.model.torch_engine import TorchEngine
from stepaudio_rt.training.data.tasks import Sample, gen_voice_pitch
from stepaudio_rt.training.data.verify import check_answer
from stepaudio_rt.training.evaluate import answer_sample


async def probe(path: str, samples: list[Sample]) -> None:
    engine = TorchEngine.from_pretrained(path, progress=False)
    by: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    try:
        for s in samples:
            reply = await answer_sample(engine, s.user_text, s.audio, modes={"thinking": GENERATION_PREFIX})
            key = (s.meta["voice"].split("+")[-1], s.label)
            by[key][0] += check_answer("voice_pitch", reply["thinking"], s.label)
            by[key][1] += 1
    finally:
        await engine.aclose()
    right = sum(r for r, _ in by.values())
    parts = ", ".join(f"{variant} {label} {r}/{n}" for (variant, label), (r, n) in sorted(by.items()))
    print(f"{path}: {right}/{len(samples)} ({parts})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("-n", type=int, default=80)
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    samples = [gen_voice_pitch(rng, "eval", True) for _ in range(args.n)]
    for path in args.checkpoints:
        asyncio.run(probe(path, samples))


if __name__ == "__main__":
    main()
