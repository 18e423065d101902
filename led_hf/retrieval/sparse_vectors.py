"""Read sharded sparse (CSR) term-weight folders written by `led encode` for a SPLADE model.

    ENC/manifest.json   {"kind": "sparse", "vocab_size": V, "num_shards": n, "what": ..., ...}
    ENC/vocab.txt       token string per vocabulary id (line v+1 = id v)
    ENC/shard-00000-of-00002/{indptr.npy int64 [N+1], indices.npy int32, values.npy float32 > 0, ids.txt}

Every read is checked: a bad shard raises `InputError` naming the file and the row (by id) at fault.
No torch import here, so the inverted index and the Lucene export stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from led_hf.errors import InputError, LedError
from led_hf.retrieval.encoding_files import IDS, MANIFEST, read_ids, read_manifest, shard_folders

VOCAB = "vocab.txt"


@dataclass
class SparseShard:
    """One shard: row r has terms `indices[indptr[r]:indptr[r+1]]` with weights `values[...]`."""

    folder: Path
    indptr: np.ndarray  # int64 [N + 1]
    indices: np.ndarray  # int32 [nnz]
    values: np.ndarray  # float32 [nnz]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def read_sparse_manifest(folder: str | Path) -> dict:
    """ENC/manifest.json, checked to describe a complete sparse encoding."""
    path = Path(folder) / MANIFEST
    manifest = read_manifest(folder)
    if manifest is None:
        raise LedError(
            f"{folder} is not a sparse vectors folder (no {MANIFEST}; run `led encode` with a SPLADE model)"
        )
    if manifest.get("kind") != "sparse":
        raise InputError(
            path, None, f"kind is {manifest.get('kind')!r}, expected 'sparse' (SPLADE term weights)"
        )
    for key in ("vocab_size", "num_shards"):
        if not isinstance(manifest.get(key), int) or manifest[key] < 1:
            raise InputError(path, None, f"{key} must be a positive integer, found {manifest.get(key)!r}")
    return manifest


def read_vocabulary(folder: str | Path, vocab_size: int) -> list[str] | None:
    """ENC/vocab.txt as a list (None when absent); its length must equal vocab_size."""
    path = Path(folder) / VOCAB
    if not path.is_file():
        return None
    tokens = path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) != vocab_size:
        raise InputError(path, None, f"has {len(tokens)} tokens, the manifest says vocab_size={vocab_size}")
    return tokens


def _load_npy(path: Path, dtype) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, None, "missing") from None
    except (OSError, ValueError) as err:
        raise InputError(path, None, f"not a readable .npy array ({err})") from None
    if array.ndim != 1 or array.dtype != np.dtype(dtype):
        raise InputError(
            path, None, f"expected a 1-d {np.dtype(dtype).name} array, found {array.ndim}-d {array.dtype}"
        )
    return array


def load_sparse_shard(folder: Path, vocab_size: int) -> SparseShard:
    """Load and check one shard (arrays in memory: a shard is the unit of work)."""
    indptr = np.asarray(_load_npy(folder / "indptr.npy", np.int64))
    indices = np.asarray(_load_npy(folder / "indices.npy", np.int32))
    values = np.asarray(_load_npy(folder / "values.npy", np.float32))
    ids = read_ids(folder / IDS)
    if len(indptr) != len(ids) + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise InputError(
            folder / "indptr.npy", None, f"is not a CSR row pointer for the {len(ids)} ids of {IDS}"
        )
    if indptr[-1] != len(indices) or len(values) != len(indices):
        raise InputError(
            folder / "indptr.npy",
            None,
            f"ends at {indptr[-1]} but indices/values hold {len(indices)}/{len(values)} entries",
        )
    rows_of = lambda bad: np.searchsorted(indptr, np.flatnonzero(bad)[0], side="right") - 1  # noqa: E731
    bad = (indices < 0) | (indices >= vocab_size)
    if bad.any():
        row = rows_of(bad)
        raise InputError(
            folder / "indices.npy", None, f"row of id {ids[row]!r} has a term id outside [0, {vocab_size})"
        )
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = rows_of(bad)
        raise InputError(
            folder / "values.npy", None, f"row of id {ids[row]!r} has a negative or non-finite weight"
        )
    # A term twice in one row would be scored twice by one engine and once by another.
    if len(indices) > 1:
        rows = np.repeat(np.arange(len(ids)), np.diff(indptr))
        if np.all((np.diff(indices) > 0) | (np.diff(rows) != 0)):
            return SparseShard(
                folder, indptr, indices, values, ids
            )  # increasing within rows (led encode's order)
        order = np.lexsort((indices, rows))
        dup = (np.diff(indices[order]) == 0) & (np.diff(rows[order]) == 0)
        if dup.any():
            row = rows[order][np.flatnonzero(dup)[0]]
            raise InputError(folder / "indices.npy", None, f"row of id {ids[row]!r} lists a term id twice")
    return SparseShard(folder, indptr, indices, values, ids)


def load_sparse_vectors(folder: str | Path) -> tuple[dict, SparseShard]:
    """All shards of a (small) folder, e.g. encoded queries, concatenated into one SparseShard."""
    manifest = read_sparse_manifest(folder)
    shards = [load_sparse_shard(f, manifest["vocab_size"]) for f in shard_folders(folder, manifest)]
    offsets = np.cumsum([0] + [len(s.indices) for s in shards])
    indptr = np.concatenate([[0]] + [s.indptr[1:] + off for s, off in zip(shards, offsets)]).astype(np.int64)
    return manifest, SparseShard(
        Path(folder),
        indptr,
        np.concatenate([s.indices for s in shards]),
        np.concatenate([s.values for s in shards]),
        [i for s in shards for i in s.ids],
    )


class MappedSparseRows:
    """The rows of a sparse encoding folder, memory-mapped: `rows[corpus_rows]` gathers just those rows
    (any order) from the shards' mapped `indptr/indices/values` into a scipy CSR [len(rows), V], so a
    corpus of tens of GB is paged in only where looked up (RSS: the gathered rows, not the corpus).

    Each gathered row is checked like `load_sparse_shard` checks a shard (term ids in [0, V), weights
    finite and >= 0); the whole folder's ids are read shard by shard by `ids_in_order`.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_sparse_manifest(folder)
        self.vocab_size = self.manifest["vocab_size"]
        self.shard_folders = shard_folders(folder, self.manifest)
        self.indptr, self.indices, self.values = [], [], []
        for shard in self.shard_folders:
            indptr = _load_npy(shard / "indptr.npy", np.int64)
            indices = _load_npy(shard / "indices.npy", np.int32)
            values = _load_npy(shard / "values.npy", np.float32)
            if len(indptr) < 1 or indptr[0] != 0 or indptr[-1] != len(indices) or len(values) != len(indices):
                raise InputError(
                    shard / "indptr.npy", None, f"is not a CSR row pointer for {len(indices)} entries"
                )
            self.indptr.append(indptr)
            self.indices.append(indices)
            self.values.append(values)
        self.offsets = np.cumsum([0] + [len(p) - 1 for p in self.indptr]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.vocab_size

    def ids_in_order(self):
        """Yield each shard's ids (one shard in memory at a time); a shard whose row count differs from
        its indptr is an InputError."""
        for shard, indptr in zip(self.shard_folders, self.indptr):
            ids = read_ids(shard / IDS)
            if len(ids) != len(indptr) - 1:
                raise InputError(shard / "indptr.npy", None, f"has {len(indptr) - 1} rows, {IDS} {len(ids)}")
            yield ids

    def __getitem__(self, rows):
        import scipy.sparse

        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise LedError(f"{self.folder}: row {int(rows.max())} outside the {len(self)} encoded rows")
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        order = np.argsort(shard_of, kind="stable")  # rows grouped by shard, then put back in order
        lengths = np.zeros(len(rows), dtype=np.int64)
        indices, values = [], []
        for shard in np.unique(shard_of):
            positions = order[shard_of[order] == shard]
            local = rows[positions] - self.offsets[shard]
            starts = np.asarray(self.indptr[shard][local])
            counts = np.asarray(self.indptr[shard][local + 1]) - starts
            lengths[positions] = counts
            # every gathered entry's position: start of its row + its rank inside the row
            take = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            indices.append(np.asarray(self.indices[shard][take]))
            values.append(np.asarray(self.values[shard][take]))
            self._check(shard, indices[-1], values[-1])
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths[order], out=indptr[1:])
        empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))
        grouped = scipy.sparse.csr_matrix(
            (
                np.concatenate(values) if values else empty[1],
                np.concatenate(indices) if indices else empty[0],
                indptr,
            ),
            shape=(len(rows), self.vocab_size),
        )
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return grouped[inverse]

    def _check(self, shard: int, indices: np.ndarray, values: np.ndarray) -> None:
        folder = self.shard_folders[shard]
        if len(indices) and (indices.min() < 0 or indices.max() >= self.vocab_size):
            raise InputError(folder / "indices.npy", None, f"has a term id outside [0, {self.vocab_size})")
        if len(values) and not (np.isfinite(values).all() and values.min() >= 0):
            raise InputError(folder / "values.npy", None, "has a negative or non-finite weight")
