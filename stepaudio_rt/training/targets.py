"""Which SFT examples keep their reasoning and which get the paper's empty think block.

Every stored sample carries its full reasoning (``data.build``). A share ``EMPTY_THINK_SHARE`` of the
examples of each reasoning task is trained with the empty block ``<think>\\n\\n</think>\\n`` instead.
Why 0.25: generation starts inside ``<think>\\n`` and the model's first token there decides whether it
reasons; trained on 3 reasoning targets for every empty one, per task, greedy decoding starts reasoning
with a 3:1 margin, so thinking stays the default. The empty examples are still thousands, enough to teach
the answer straight after an empty block, which is what the forced no-think mode (``NO_THINK_PREFIX``)
and think-while-speaking's first round (speak-first) need.
"""

from __future__ import annotations

import numpy as np

EMPTY_THINK_SHARE = 0.25
# tasks whose targets never reason: small talk and the typed "can you hear?" question
NEVER_THINK = frozenset({"text_chat"})


def keep_reasoning(rng: np.random.Generator, task: str, think: str, empty_share: float = EMPTY_THINK_SHARE) -> bool:
    """Whether this example trains on its reasoning (True) or on the empty think block (False)."""
    if not think or task in NEVER_THINK:
        return False
    return bool(rng.random() >= empty_share)
