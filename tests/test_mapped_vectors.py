"""Teacher corpus vectors are memory-mapped: `MappedSparseRows[rows]` equals the in-memory concatenation's
rows, and gathering from a 200k-row folder allocates the gathered rows, not the folder."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from led_hf.errors import InputError
from led_hf.retrieval.sparse_vectors import MappedSparseRows, load_sparse_vectors

VOCAB = 1000


def _write_folder(folder, shard_rows: list[int], nnz_per_row: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = len(shard_rows)
    manifest = {"kind": "sparse", "vocab_size": VOCAB, "num_shards": n, "what": "passages"}
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    first = 0
    for i, rows in enumerate(shard_rows):
        shard = folder / f"shard-{i:05d}-of-{n:05d}"
        shard.mkdir()
        counts = rng.integers(0, nnz_per_row + 1, size=rows)
        indptr = np.zeros(rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        # increasing term ids within a row, as `led encode` writes them: 7 * rank + a per-row offset
        rank = np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
        indices = 7 * rank + np.repeat(rng.integers(0, 7, size=rows), counts)
        np.save(shard / "indptr.npy", indptr)
        np.save(shard / "indices.npy", indices.astype(np.int32))
        np.save(shard / "values.npy", rng.random(int(indptr[-1]), dtype=np.float32))
        (shard / "ids.txt").write_text("".join(f"p{first + r}\n" for r in range(rows)))
        first += rows
    return folder


def test_gathered_rows_equal_the_in_memory_matrix(tmp_path):
    import scipy.sparse

    folder = _write_folder(tmp_path / "enc", [7, 0, 5, 9], nnz_per_row=6)
    _, whole = load_sparse_vectors(folder)
    matrix = scipy.sparse.csr_matrix((whole.values, whole.indices, whole.indptr), shape=(21, VOCAB))
    mapped = MappedSparseRows(folder)
    assert len(mapped) == 21 and mapped.shape == (21, VOCAB)
    assert [i for ids in mapped.ids_in_order() for i in ids] == whole.ids
    for rows in ([0], [20, 3, 3, 11, 7, 0], list(range(21))[::-1], []):
        got = mapped[np.array(rows, dtype=np.int64)]
        assert got.shape == (len(rows), VOCAB)
        np.testing.assert_array_equal(got.toarray(), matrix[rows].toarray())


def test_bad_rows_and_bad_entries_are_refused(tmp_path):
    folder = _write_folder(tmp_path / "enc", [4, 4], nnz_per_row=3)
    mapped = MappedSparseRows(folder)
    with pytest.raises(Exception, match="outside the 8 encoded rows"):
        mapped[np.array([8])]
    values = np.load(folder / "shard-00001-of-00002" / "values.npy")
    values[:] = -1.0
    np.save(folder / "shard-00001-of-00002" / "values.npy", values)
    mapped = MappedSparseRows(folder)
    mapped[np.array([0, 1])]  # shard 0 is fine
    with pytest.raises(InputError, match="values.npy: has a negative or non-finite weight"):
        mapped[np.arange(8)]


def test_lookups_do_not_materialise_the_folder(tmp_path):
    # 200k rows, ~25 terms each: ~40 MB of indices + values on disk
    folder = _write_folder(tmp_path / "big", [50_000] * 4, nnz_per_row=50, seed=1)
    on_disk = sum(p.stat().st_size for p in folder.rglob("*.npy"))
    rows = np.random.default_rng(0).choice(200_000, 2_000, replace=False)
    tracemalloc.start()
    try:
        mapped = MappedSparseRows(folder)
        for start in range(0, len(rows), 500):
            mapped[rows[start : start + 500]]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert on_disk > 35e6
    assert peak < 3e6, (
        f"{peak / 1e6:.1f} MB allocated for 500-row lookups (the folder is {on_disk / 1e6:.0f} MB)"
    )
