"""Resumable work folders of long jobs (`led mine`, `led score-teacher`): a plan, then parts that appear whole.

    WORK/plan.json      everything the parts depend on (options, inputs' hashes); a rerun resumes only when
                        the plan it computes is equal, and otherwise refuses (or, with --overwrite, starts over)
    WORK/<part>         written under a temporary name and renamed when complete: a present part is done

E.g. a job killed after 3 of 8 parts reruns with the same options, finds plan.json equal and 3 parts
present, and computes parts 4-8 only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.errors import LedError

PLAN = "plan.json"


def tree_sha256(path: str | Path) -> str:
    """sha256 over the sorted relative names and contents of every file under `path` (or of one file)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path) if file != path else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
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
