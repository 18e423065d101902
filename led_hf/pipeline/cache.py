"""Stage results cached by content hash, so that a baseline is computed once per machine, not once per run.

A pipeline stage marked ``"cache": {"inputs": ["{minilm}", "data/scifact"]}`` (e.g. a zero-shot baseline)
is looked up before it runs:

    key = sha256( the stage's commands and evaluate entry as written (placeholders unfilled: the output
                  folder does not matter), tree_sha256 of every listed input (files or folders), the
                  led-hf / torch / transformers versions, the precision `--precision auto` picks here )
    CACHE/stages/<key>.json      the stage record of the run that computed it (metrics, wall time)

A hit writes that record as the stage's result (``"cached": true``, its original time under
``computed_wall_time_s``) without running the commands. Only the record comes back, not the stage's
files: the runner refuses a cached stage whose outputs a later stage reads. CACHE is ``$LED_HF_CACHE``,
else ``$XDG_CACHE_HOME/led-hf``, else ``~/.cache/led-hf``; ``led pipeline --no-cache`` recomputes and
refreshes the entries.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.errors import LedError

CACHE_ENV = "LED_HF_CACHE"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "led-hf"


def environment() -> dict:
    """What, besides the inputs, changes a stage's numbers: the code and the precision chosen here."""
    import torch
    import transformers

    from led_hf.precision import resolve_precision
    from led_hf.version import __version__

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {
        "led_hf": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "auto_precision": resolve_precision("auto", device),
    }


def stage_key(template: dict, inputs: list[str | Path]) -> str:
    """The cache key of a stage: `template` is its config entry as written, `inputs` the filled paths."""
    from led_hf.work_folder import tree_sha256

    hashes = []
    for path in inputs:
        if not Path(path).exists():
            raise LedError(f"cache input {path} does not exist")
        hashes.append(tree_sha256(path))
    identity = {
        "commands": template.get("commands"),
        "evaluate": template.get("evaluate"),
        "inputs": hashes,
        "environment": environment(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def load(key: str) -> dict | None:
    path = cache_root() / "stages" / f"{key}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # absent, or unreadable (then it is recomputed and rewritten)


def store(key: str, record: dict) -> None:
    path = cache_root() / "stages" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        json.dump(record, handle, indent=2)
