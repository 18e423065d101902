"""Read a prepared dataset folder: `corpus`, `queries`, `qrels/<split>`, `negatives/<source>`.

Every table is a `datasets.load_from_disk` folder, memory-mapped, never loaded whole. Ids are strings;
`IdIndex` turns them into row numbers once so that batches are joined by integer position.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from led_hf.errors import LedError


class IdIndex:
    """Maps string ids to row positions of a table.

    MS MARCO-like collections whose ids are exactly "0", "1", ... in row order use an identity mapping
    (no memory); other collections build one hash map of id -> row.
    """

    def __init__(self, ids: pa.ChunkedArray | pa.Array, source: str = "table"):
        self.source = source
        self._size = len(ids)
        self._identity = _is_identity(ids)
        self._mapping: dict[str, int] | None = None
        if not self._identity:
            self._mapping = {}
            for row, value in enumerate(_iter_strings(ids)):
                self._mapping.setdefault(value, row)

    def __len__(self) -> int:
        return self._size

    @property
    def is_identity(self) -> bool:
        """True when id "k" is row k for every row (ids can then be resolved by integer parsing)."""
        return self._identity

    def __contains__(self, value: str) -> bool:
        return self.get(value) is not None

    def get(self, value: str) -> int | None:
        if self._identity:
            if value.isdigit() and (value == "0" or value[0] != "0"):
                row = int(value)
                return row if row < self._size else None
            return None
        return self._mapping.get(value)

    def rows(self, values, strict: bool = True) -> np.ndarray:
        """Row positions of `values`; unknown ids raise (strict) or map to -1."""
        out = np.empty(len(values), dtype=np.int64)
        for i, value in enumerate(values):
            row = self.get(value)
            if row is None:
                if strict:
                    raise LedError(f"id {value!r} is not in {self.source}")
                row = -1
            out[i] = row
        return out


def _iter_strings(ids):
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    for chunk in chunks:
        yield from chunk.to_pylist()


def _is_identity(ids) -> bool:
    n = len(ids)
    if n == 0:
        return True
    try:
        as_int = pc.cast(ids, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    # "007" casts to 7 but is not the id "7": require the canonical spelling too.
    if not pc.all(pc.equal(pc.cast(as_int, pa.string()), ids)).as_py():
        return False
    return bool(pc.all(pc.equal(as_int, pa.array(np.arange(n, dtype=np.int64)))).as_py())


def resolve_ids(values, ids, identity: bool) -> np.ndarray:
    """Row of each string in ``values`` within the id column ``ids`` (-1 when absent), vectorised."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    if identity:  # ids are "0", "1", ... in row order: parse instead of hashing millions of strings
        try:
            as_int = pc.cast(values, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            as_int = None
        if as_int is not None:
            canonical = pc.equal(pc.cast(as_int, pa.string()), values).fill_null(False)
            rows = as_int.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            ok = canonical.to_numpy(zero_copy_only=False) & (rows >= 0) & (rows < len(ids))
            return np.where(ok, rows, -1)
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    return pc.index_in(values, value_set=ids).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


class PreparedData:
    """A prepared dataset folder (the output of `led prepare`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "corpus").is_dir():
            raise LedError(f"{self.root} is not a prepared dataset (no corpus/ folder; run `led prepare`)")

    @staticmethod
    def _load(path: Path):
        from datasets import load_from_disk

        if not path.is_dir():
            raise LedError(f"{path} does not exist")
        return load_from_disk(str(path))

    @cached_property
    def corpus(self):
        return self._load(self.root / "corpus")

    @cached_property
    def queries(self):
        return self._load(self.root / "queries")

    def qrels(self, split: str):
        path = self.root / "qrels" / split
        if not path.is_dir():
            raise LedError(
                f"no qrels split {split!r} in {self.root} (have: {', '.join(self.splits()) or 'none'})"
            )
        return self._load(path)

    def negatives(self, source: str):
        path = self.root / "negatives" / source
        if not path.is_dir():
            have = ", ".join(self.negative_sources()) or "none"
            raise LedError(f"no negatives source {source!r} in {self.root} (have: {have})")
        return self._load(path)

    def splits(self) -> list[str]:
        return _subfolders(self.root / "qrels")

    def negative_sources(self) -> list[str]:
        return _subfolders(self.root / "negatives")

    def candidates(self, split: str):
        """Re-ranking candidates {qid, pids} for a split (MS MARCO top1000.<split>)."""
        path = self.root / "candidates" / split
        if not path.is_dir():
            have = ", ".join(_subfolders(self.root / "candidates")) or "none"
            raise LedError(f"no candidates for split {split!r} in {self.root} (have: {have})")
        return self._load(path)

    @cached_property
    def pid_index(self) -> IdIndex:
        return IdIndex(self.corpus.data.column("pid"), source=f"{self.root}/corpus")

    @cached_property
    def qid_index(self) -> IdIndex:
        return IdIndex(self.queries.data.column("qid"), source=f"{self.root}/queries")

    def qrels_dict(self, split: str) -> dict[str, dict[str, int]]:
        """{qid: {pid: grade}} for a split (small enough to hold: one entry per judgment)."""
        table = self.qrels(split).data
        result: dict[str, dict[str, int]] = {}
        for qid, pid, score in zip(*(table.column(c).to_pylist() for c in ("qid", "pid", "score"))):
            result.setdefault(qid, {})[pid] = int(score)
        return result


def _subfolders(path: Path) -> list[str]:
    return (
        sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if path.is_dir()
        else []
    )
