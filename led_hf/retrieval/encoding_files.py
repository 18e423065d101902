"""Names and readers shared by every encoding folder, dense or sparse (no torch: search stays light).

OUT/manifest.json                      what was encoded, by which model (see led_hf.retrieval.encode)
OUT/shard-00000-of-00004/ids.txt       one id per line, row r = line r+1: "d1\nd7\n" -> ["d1", "d7"]
OUT/shard-00000-of-00004/embeddings.npy   (dense; sparse shards hold CSR arrays instead)
"""

from __future__ import annotations

import json
from pathlib import Path

from led_hf.errors import InputError, LedError

MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
IDS = "ids.txt"


def shard_dirname(shard_index: int, num_shards: int) -> str:
    """(1, 4) -> "shard-00001-of-00004"."""
    return f"shard-{shard_index:05d}-of-{num_shards:05d}"


def read_manifest(out: str | Path) -> dict | None:
    """OUT/manifest.json parsed, or None when absent; invalid JSON is an InputError naming its line."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, err.lineno, f"not valid JSON ({err.msg})") from err
    except UnicodeDecodeError as err:
        raise InputError(path, None, f"not UTF-8 text ({err.reason})") from err


def read_ids(path: Path) -> list[str]:
    """The ids of `path`; a missing or non-UTF-8 file, an empty id or one with whitespace is an InputError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, None, "missing") from None
    except UnicodeDecodeError as err:
        raise InputError(path, None, f"not UTF-8 ({err.reason})") from None
    ids = text.split("\n")
    if ids and ids[-1] == "":
        ids.pop()
    for line, value in enumerate(ids, start=1):
        if not value or any(c.isspace() for c in value):
            raise InputError(path, line, f"id {value!r} is empty or contains whitespace")
    return ids


def shard_folders(folder: str | Path, manifest: dict) -> list[Path]:
    """The n shard folders in order; all must exist (a partial encoding is refused, not half-indexed)."""
    folder = Path(folder)
    n = manifest["num_shards"]
    folders = [folder / shard_dirname(i, n) for i in range(n)]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise LedError(
            f"{folder} is incomplete: {len(missing)} of {n} shards missing (first: {missing[0]}); "
            "finish `led encode` first"
        )
    return folders
