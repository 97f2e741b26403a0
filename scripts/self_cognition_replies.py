"""What the model says to "can you hear this?" asked in phrasings it never trained on, reply by reply.

    python scripts/self_cognition_replies.py stepaudio_rt/demo_checkpoint runs/mgrd/dpo_ckpt [-n 256 --seed 7]

The eval's self-cognition probes count only claims that the model cannot hear (the paper's error). This
sorts every reply with ``self_cognition.probe_reply_kind``: **hears**, **cannot hear** (the judge's flag),
**broken chain** (blank lines in the think block, or arithmetic, which no probe asks for) and **other
task** (a well-formed answer to another question about the clip: its pitch, its loudness).

Measured (256 probes, seed 7; hears / cannot hear / broken / other): the DPO model 190 / 0 / 2 / 64, the
committed model (DPO + error-weighted SFT at lr 2e-4) 182 / 0 / 19 / 55, the same stage at lr 1e-4
187 / 0 / 9 / 60. The held-out eval's own phrasings: no broken chain in any of the three (896 replies to
the perception tasks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections

from stepaudio_rt.model.torch_engine import TorchEngine
from stepaudio_rt.training.self_cognition import (
    PROBE_REPLY_KINDS,
    make_probes,
    probe_replies,
    probe_reply_kind,
)


async def replies(path: str, probes: list) -> list[str]:
    engine = TorchEngine.from_pretrained(path, max_contexts=20, progress=False)
    try:
        return await probe_replies(engine, probes)
    finally:
        await engine.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--show", type=int, default=3, help="replies printed per kind other than 'hears'")
    args = ap.parse_args()
    probes = make_probes(args.n, args.seed)
    for path in args.checkpoints:
        kinds: dict[str, list[str]] = collections.defaultdict(list)
        for p, r in zip(probes, asyncio.run(replies(path, probes)), strict=True):
            kinds[probe_reply_kind(r, p.user_text)].append(r)
        counts = ", ".join(f"{k} {len(kinds[k])}" for k in PROBE_REPLY_KINDS)
        print(f"{path}: {counts} (of {len(probes)})")
        for kind, rs in kinds.items():
            if kind != "hears":
                for r in rs[: args.show]:
                    print(f"  {kind}: {r!r}")


if __name__ == "__main__":
    main()
