"""What a resumable post-training stage (RL, DPO) was run with, so that a changed recipe is not reused.

Why: the RL and DPO stages resume from their work directory and return at once when it holds a finished
run. Without a record of what that run was, changing a setting (e.g. the policy learning rate) or
retraining the checkpoint they start from would silently return the old model. Each stage writes
``recipe.json`` (its config and a digest of the starting weights) and clears its own products when the
current recipe differs; inputs keyed on their own (synthesised questions, a pass table with its meta)
stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RECIPE_FILE = "recipe.json"


def weights_digest(checkpoint_dir: str | Path) -> str:
    """sha256 of the checkpoint's weight files (``*.safetensors``, in name order): the starting point's
    identity, whatever its path."""
    h = hashlib.sha256()
    for f in sorted(Path(checkpoint_dir).glob("*.safetensors")):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def stage_recipe(config: dict[str, Any], checkpoint_dir: str | Path, bookkeeping: Iterable[str] = ()) -> dict[str, Any]:
    """The config without its ``bookkeeping`` fields (those that do not change what is trained at a given
    step: more ``steps`` resume a run, ``save_every`` or thread counts change nothing), and the digest of
    the starting weights."""
    skip = set(bookkeeping)
    return {"config": {k: v for k, v in config.items() if k not in skip}, "weights_sha256": weights_digest(checkpoint_dir)}


def refresh_work_dir(work: Path, recipe: dict[str, Any], keep: Iterable[str] = ()) -> bool:
    """Make ``work`` belong to ``recipe``: if it was run with another recipe (or records none), delete
    everything in it but ``keep`` (names directly under ``work``), then write the recipe. Returns
    whether anything was cleared."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / RECIPE_FILE
    if path.exists() and json.loads(path.read_text()) == recipe:
        return False
    keep = set(keep)
    stale = [p for p in work.iterdir() if p.name not in keep and p.name != RECIPE_FILE]
    if stale:
        log.info("%s was run with another recipe: clearing %s", work, sorted(p.name for p in stale))
        print(f"[train] {work}: another recipe than this one's ran here; starting the stage again", flush=True)
    for p in stale:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    path.write_text(json.dumps(recipe, indent=2) + "\n")
    return bool(stale)


__all__ = ["RECIPE_FILE", "refresh_work_dir", "stage_recipe", "weights_digest"]
