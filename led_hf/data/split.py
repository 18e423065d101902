"""Carve a dev split out of a prepared dataset's training queries (`led split`, `led prepare --dev-from-train`).

Choices made on the test split overfit it: weights, learning rates, epochs and teachers should be chosen
on queries the model never trains on, and test read once per final configuration. Few collections ship
such a split, so this one moves a seeded share of the training queries, with every qrels row they have,
from ``qrels/<source>`` to ``qrels/<target>``:

    DATA/qrels/train   150 queries  ->  DATA/qrels/train  120 queries
                                        DATA/qrels/dev     30 queries (fraction 0.2, seed 13)

The queries are drawn by ``numpy.random.default_rng(seed)`` from the source split's query ids in their
order of appearance, so the same (data, fraction, seed) always gives the same dev queries. On a small
collection one dev carve is too few queries to see a difference (Cranfield: 30), so the same permutation
also gives disjoint folds: fold k holds its positions ``[k * m, (k + 1) * m)`` for ``m`` dev queries, fold 0
is the plain carve, and running a choice on every fold scores it on every training query once
(cross-validation, docs/quality.md). Negative
tables are left alone: training reads only the rows of ``qrels/<source>`` queries. Both new qrels
folders are written beside the old ones and renamed into place only when complete; ``manifest.json``
records the carve (``dev_splits``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from led_hf.atomic import atomic_file
from led_hf.errors import LedError


def check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise LedError(f"the dev fraction must be between 0 and 1 (exclusive), got {fraction:g}")
    return fraction


def num_folds(fraction: float) -> int:
    """How many disjoint dev folds of ``fraction`` one permutation holds: ``floor(1 / fraction)``."""
    return int(1.0 / check_fraction(fraction) + 1e-9)


def check_fold(fraction: float, fold: int) -> int:
    """`fold` when it is one of ``num_folds(fraction)`` (which checks the fraction first)."""
    folds = num_folds(fraction)
    if not 0 <= int(fold) < folds:
        raise LedError(
            f"dev fold {fold} does not exist: a fraction of {fraction:g} gives folds 0 to {folds - 1}"
        )
    return int(fold)


def carve_dev_split(
    data_root: str | Path,
    fraction: float,
    seed: int,
    source: str = "train",
    target: str = "dev",
    fold: int = 0,
) -> dict:
    """Move ``m = round(fraction * n)`` (at least 1, at most n - 1) of the n queries of ``qrels/<source>``,
    with all their rows, into a new ``qrels/<target>``: positions ``[fold * m, (fold + 1) * m)`` of the
    seeded permutation. Returns what moved (also appended to manifest.json)."""
    from datasets import load_from_disk

    fraction = check_fraction(fraction)
    fold = check_fold(fraction, fold)
    root = Path(data_root)
    qrels_root = root / "qrels"
    source_path, target_path = qrels_root / source, qrels_root / target
    if not source_path.is_dir():
        raise LedError(f"{source_path} does not exist (no qrels split {source!r} to carve from)")
    if target_path.exists():
        raise LedError(f"{target_path} already exists: choose another target split name")
    if Path(target).name != target or target.startswith("."):
        raise LedError(f"target split {target!r} must be a plain folder name")

    qrels = load_from_disk(str(source_path))
    qids = pc.unique(qrels.data.column("qid").combine_chunks())  # order of first appearance
    num_queries = len(qids)
    if num_queries < 2:
        raise LedError(f"{source_path}: {num_queries} query, nothing to hold out")
    num_dev = min(num_queries - 1, max(1, round(fraction * num_queries)))
    if (fold + 1) * num_dev > num_queries:
        raise LedError(
            f"{source_path}: {num_queries} queries hold {num_queries // num_dev} folds of {num_dev}, not fold {fold}"
        )
    chosen = np.random.default_rng(int(seed)).permutation(num_queries)[fold * num_dev : (fold + 1) * num_dev]
    dev_qids = qids.take(np.sort(chosen))
    in_dev = pc.is_in(qrels.data.column("qid"), value_set=dev_qids).to_numpy(zero_copy_only=False)

    staged = []
    try:
        for name, rows in ((target, np.flatnonzero(in_dev)), (source, np.flatnonzero(~in_dev))):
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=qrels_root))
            staged.append(staging)
            qrels.select(rows).save_to_disk(str(staging))
        old = qrels_root / f".{source}.old-{os.getpid()}"
        del qrels  # release the memory map of the folder about to move
        source_path.rename(old)
        try:
            staged[1].rename(source_path)
            staged[0].rename(target_path)
        except OSError:
            if not source_path.exists():
                old.rename(source_path)  # leave the dataset as it was
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        for staging in staged:
            shutil.rmtree(staging, ignore_errors=True)

    record = {
        "source": source,
        "target": target,
        "fraction": fraction,
        "seed": int(seed),
        "fold": fold,
        "queries": {source: num_queries - num_dev, target: num_dev},
        "rows": {source: int((~in_dev).sum()), target: int(in_dev.sum())},
    }
    _record_in_manifest(root, record)
    return record


def _record_in_manifest(root: Path, record: dict) -> None:
    path = root / "manifest.json"
    manifest = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise LedError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    manifest.setdefault("dev_splits", []).append(record)
    with atomic_file(path) as handle:
        handle.write(json.dumps(manifest, indent=2) + "\n")
