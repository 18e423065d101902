"""Resumable work folders of long jobs (`led mine`, `led score-teacher`): a plan, then parts that appear whole.

    WORK/plan.json      everything the parts depend on (options, inputs' hashes); a rerun resumes only when
                        the plan it computes is equal, and otherwise refuses (or, with --overwrite, starts over)
    WORK/<part>         written under a temporary name and renamed when complete: a present part is done

E.g. a job killed after 3 of 8 parts reruns with the same options, finds plan.json equal and 3 parts
present, and computes parts 4-8 only.

Inputs are identified by `tree_sha256`, which must not cost a read of the whole corpus at every start
(tens of GB at MS MARCO). Writers of large folders (Arrow tables, negatives, encoding shards) call
`record_content_hashes(folder)` once when a folder is complete: FOLDER/.content-sha256.json holds each
file's size, mtime, inode and sha256. `tree_sha256` takes a file's hash from that record when the file's
size, mtime and inode still match, and reads (hashes) only files without a matching record: a rewritten,
truncated or replaced file is hashed again, so a changed shard still changes the digest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.errors import LedError

PLAN = "plan.json"
CONTENT_RECORD = ".content-sha256.json"
# Data derived from a folder's inputs and rebuilt from them (e.g. DATA/.led-cache/pools): not content.
DERIVED_FOLDER = ".led-cache"


def file_sha256(path: Path) -> str:
    """sha256 of one file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_key(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def record_content_hashes(folder: str | Path) -> None:
    """Write FOLDER/.content-sha256.json: {name: {"stat": [size, mtime_ns, inode], "sha256": ...}} for the
    files directly in `folder`; called once by the writer of a complete folder."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != CONTENT_RECORD)
    record = {file.name: {"stat": _stat_key(file), "sha256": file_sha256(file)} for file in files}
    (folder / CONTENT_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")


def _recorded(folder: Path, cache: dict) -> dict:
    if folder not in cache:
        try:
            cache[folder] = json.loads((folder / CONTENT_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cache[folder] = {}  # no record, or a damaged one: the files are hashed
    return cache[folder]


def tree_sha256(path: str | Path) -> str:
    """sha256 over the sorted relative names and content hashes of every file under `path` (or of one
    file), content hashes taken from the folders' records where they still match (see the docstring);
    `DERIVED_FOLDER` folders are left out (a training run's pool cache does not change its data's hash)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    files = [f for f in files if DERIVED_FOLDER not in f.relative_to(path).parts] if path.is_dir() else files
    cache: dict = {}
    for file in files:
        if file.name == CONTENT_RECORD:
            continue
        entry = _recorded(file.parent, cache).get(file.name)
        if isinstance(entry, dict) and entry.get("stat") == _stat_key(file):
            sha = entry["sha256"]
        else:
            sha = file_sha256(file)
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        digest.update(sha.encode() + b"\0")
    return digest.hexdigest()


def start_work_folder(work: Path, plan: dict, overwrite: bool = False, what: str = "work") -> bool:
    """Create `work` with plan.json, or check that the plan there equals `plan`; True when resuming.

    A different plan is refused unless `overwrite` (then the old work is deleted); a non-empty folder
    without plan.json is never deleted.
    """
    work = Path(work)
    path = work / PLAN
    if path.is_file():
        existing = json.loads(path.read_text(encoding="utf-8"))
        if existing == plan:
            return True
        differs = next(key for key in sorted(set(plan) | set(existing)) if plan.get(key) != existing.get(key))
        if not overwrite:
            raise LedError(
                f"{work} holds {what} for another run ({differs} differs); pass --overwrite to "
                "discard it, or --work-dir to use another folder"
            )
        shutil.rmtree(work)
    elif work.exists() and any(work.iterdir()):
        raise LedError(f"{work} exists and is not a {what} folder (no {PLAN})")
    work.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as handle:
        json.dump(plan, handle, indent=2, sort_keys=True)
    return False
