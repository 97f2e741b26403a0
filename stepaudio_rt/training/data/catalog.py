"""Every task of the data set by name, and ``generate``: the base tasks (``tasks``) and the reasoning tasks
(``reasoning_tasks``, built on the base tasks' helpers). Kept apart from both so that imports run one way:
``catalog`` -> ``reasoning_tasks`` -> ``tasks``."""

from __future__ import annotations

import numpy as np

from stepaudio_rt.training.data.reasoning_tasks import REASONING_TASKS
from stepaudio_rt.training.data.tasks import BASE_TASKS, Generator, Sample, Split, _check_split

TASKS: dict[str, Generator] = {**BASE_TASKS, **REASONING_TASKS}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)


def generate(task: str, rng: np.random.Generator, split: Split, cot: bool) -> Sample:
    """Generate one sample of ``task``; text arithmetic always carries its reasoning, chat never does."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASK_NAMES)}")
    _check_split(split)
    if task == "text_arithmetic":
        cot = True
    elif task == "text_chat":
        cot = False
    s = TASKS[task](rng, split, cot)
    s.meta["split"] = split
    return s
