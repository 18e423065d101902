"""Embedded inverted index over SPLADE term weights: exact top-k by impact score, no JVM.

Postings are term-major, i.e. the doc-term matrix D [N, V] stored as CSC (= CSR of Dᵀ [V, N])::

    IDX/manifest.json      {"kind": "inverted", "num_docs": N, "vocab_size": V, "num_postings": P,
                            "quantized": true, "scale": 100, "weights_dtype": "int32", ...}
    IDX/term_ptr.npy       int64 [V + 1]   term t's postings are entries term_ptr[t]:term_ptr[t+1]
    IDX/doc_rows.npy       int32 [P]       document rows, increasing within a term
    IDX/weights.npy        int32 [P] (round(100·w), "quantized") or float32 [P] (w)
    IDX/term_max.npy       per-term largest weight (bounds a query's score: overflow check)
    IDX/doc_ids.bin + doc_id_offsets.npy   id of row r = bin[offsets[r]:offsets[r+1]] (utf-8)
    IDX/vocab.txt          copied from the vectors folder when it has one

score(q, d) = Σ_t q_t · d_t. Quantised, q_t and d_t are round(100·w) integers and the score is the
exact integer that Lucene's impact search computes on the same ×100 vectors, e.g. q = {7: 120, 9: 30},
d = {7: 50, 8: 10} -> 6000. Search is Q @ Dᵀ with scipy in query blocks, then an exact top-k per row
(ties: smaller row first). scipy's sparse product holds the GIL, so blocks go to worker processes that
memory-map the same files (the OS shares the pages). Built one vectors shard at a time into
`.IDX.parts/` (resumable), then merged into IDX atomically.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from led_hf.atomic import atomic_directory
from led_hf.errors import InputError, LedError
from led_hf.retrieval.impact import SCALE, available_cores, quantize
from led_hf.retrieval.lucene import LuceneImpactIndex
from led_hf.retrieval.sparse_vectors import (
    VOCAB,
    load_sparse_shard,
    load_sparse_vectors,
    read_sparse_manifest,
    read_vocabulary,
    shard_folders,
)

FORMAT_VERSION = 1
_INT32_MAX = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------- build
def _source_stamp(folder: Path) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()]


def _build_part(shard_folder: Path, part: Path, vocab_size: int, quantized: bool) -> None:
    """Term-major postings of one shard (local rows), written atomically to `part`."""
    shard = load_sparse_shard(shard_folder, vocab_size)
    weights = quantize(shard.values) if quantized else shard.values.astype(np.float32)
    keep = weights > 0  # ×100 rounds weights below 0.005 to zero: they can never add to a score
    rows = np.repeat(np.arange(len(shard), dtype=np.int32), np.diff(shard.indptr))[keep]
    terms, weights = shard.indices[keep], weights[keep]
    order = np.argsort(terms, kind="stable")  # stable: rows stay increasing inside each term
    with atomic_directory(part, overwrite=True) as staging:
        np.save(staging / "term_counts.npy", np.bincount(terms, minlength=vocab_size).astype(np.int64))
        np.save(staging / "doc_rows.npy", rows[order])
        np.save(staging / "weights.npy", weights[order])
        (staging / "ids.txt").write_text("".join(f"{i}\n" for i in shard.ids), encoding="utf-8")
        stamp = {
            "source": str(shard_folder.resolve()),
            "stamp": _source_stamp(shard_folder),
            "num_docs": len(shard),
            "quantized": quantized,
        }
        (staging / "part.json").write_text(json.dumps(stamp), encoding="utf-8")


def _part_is_current(shard_folder: Path, part: Path, quantized: bool) -> bool:
    try:
        stamp = json.loads((part / "part.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (
        stamp.get("source") == str(shard_folder.resolve())
        and stamp.get("quantized") == quantized
        and stamp.get("stamp") == _source_stamp(shard_folder)
    )


def build_inverted_index(
    vectors: str | Path,
    output: str | Path,
    quantized: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Index the sparse vectors folder `vectors` (passages) into `output`; returns build statistics.

    Each vectors shard becomes a part under `.OUTPUT.parts/` (kept across failures: a rerun rebuilds only
    missing or stale parts), then the parts are merged into memory-mapped arrays in a staging folder
    that replaces `output` only when complete. Returns {"num_docs", "num_postings", "built", "reused"}.
    """
    from tqdm.auto import tqdm

    vectors, output = Path(vectors), Path(output)
    if output.exists() and not overwrite:
        raise LedError(f"{output} already exists (pass --overwrite to replace it)")
    manifest = read_sparse_manifest(vectors)
    vocab_size = manifest["vocab_size"]
    vocabulary = read_vocabulary(vectors, vocab_size)
    folders = shard_folders(vectors, manifest)
    work = output.parent / f".{output.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    built, reused = [], []
    for folder in tqdm(folders, desc="index shards", unit="shard", disable=not progress):
        part = work / folder.name
        if _part_is_current(folder, part, quantized):
            reused.append(folder.name)
            continue
        _build_part(folder, part, vocab_size, quantized)
        built.append(folder.name)
    parts = [work / f.name for f in folders]
    with atomic_directory(output, overwrite=overwrite) as staging:
        num_docs, num_postings = _merge_parts(parts, staging, vocab_size, quantized)
        if vocabulary is not None:
            shutil.copyfile(vectors / VOCAB, staging / VOCAB)
        info = {
            "kind": "inverted",
            "format_version": FORMAT_VERSION,
            "num_docs": num_docs,
            "vocab_size": vocab_size,
            "num_postings": num_postings,
            "quantized": quantized,
            "scale": SCALE if quantized else None,
            "weights_dtype": "int32" if quantized else "float32",
            "vectors": str(vectors.resolve()),
            "model": manifest.get("model"),
        }
        (staging / "manifest.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return {"num_docs": num_docs, "num_postings": num_postings, "built": built, "reused": reused}


def _merge_parts(parts: list[Path], out: Path, vocab_size: int, quantized: bool) -> tuple[int, int]:
    """Concatenate the parts' postings term by term (doc rows offset by the docs before each part)."""
    counts = [np.load(p / "term_counts.npy", allow_pickle=False) for p in parts]
    totals = np.sum(counts, axis=0, dtype=np.int64)
    term_ptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(totals, out=term_ptr[1:])
    num_postings = int(term_ptr[-1])
    if num_postings > _INT32_MAX:
        raise LedError(
            f"{num_postings} postings exceed one index's 2^31-1: split the corpus into several indexes"
        )
    np.save(out / "term_ptr.npy", term_ptr)
    doc_rows = np.lib.format.open_memmap(
        out / "doc_rows.npy", mode="w+", dtype=np.int32, shape=(num_postings,)
    )
    weights = np.lib.format.open_memmap(
        out / "weights.npy", mode="w+", shape=(num_postings,), dtype=np.int32 if quantized else np.float32
    )
    next_slot = term_ptr[:-1].copy()  # where each term's next postings go
    offset_chunks, id_hashes, num_docs, num_bytes = [np.zeros(1, np.int64)], [], 0, 0
    with open(out / "doc_ids.bin", "wb") as blob:
        for part, part_counts in zip(parts, counts):
            part_rows = np.load(part / "doc_rows.npy", allow_pickle=False)
            part_ptr = np.concatenate([[0], np.cumsum(part_counts)])
            dest = np.repeat(next_slot - part_ptr[:-1], part_counts) + np.arange(
                len(part_rows), dtype=np.int64
            )
            doc_rows[dest] = part_rows + num_docs
            weights[dest] = np.load(part / "weights.npy", allow_pickle=False)
            next_slot += part_counts
            ids = (part / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
            encoded = [i.encode("utf-8") for i in ids]
            blob.write(b"".join(encoded))
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            offset_chunks.append(num_bytes + np.cumsum(lengths))
            num_bytes += int(lengths.sum())
            id_hashes.append(np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)))
            num_docs += len(ids)
    np.save(out / "doc_id_offsets.npy", np.concatenate(offset_chunks))
    _check_unique_ids(parts, np.concatenate(id_hashes) if id_hashes else np.zeros(0, np.int64))
    weights_view = np.asarray(weights)
    term_max = np.zeros(vocab_size, dtype=weights_view.dtype)
    nonempty = np.flatnonzero(totals)
    if len(nonempty):
        term_max[nonempty] = np.maximum.reduceat(weights_view, term_ptr[nonempty])
    np.save(out / "term_max.npy", term_max)
    doc_rows.flush()
    weights.flush()
    del doc_rows, weights, weights_view
    return num_docs, num_postings


def _check_unique_ids(parts: list[Path], hashes: np.ndarray) -> None:
    values, counts = np.unique(hashes, return_counts=True)
    suspects = set(values[counts > 1].tolist())
    if not suspects:
        return
    seen: dict[str, str] = {}
    for part in parts:
        for line, doc_id in enumerate(
            (part / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1], start=1
        ):
            if hash(doc_id) in suspects:
                if doc_id in seen:
                    raise InputError(
                        Path(part.name) / "ids.txt", line, f"id {doc_id!r} also appears in {seen[doc_id]}"
                    )
                seen[doc_id] = part.name


# ----------------------------------------------------------------------------- search
def _top_k(scores: np.ndarray, rows: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Best `depth` entries by score, ties by smaller row, sorted: scores [m], rows [m], m <= depth.

    >>> _top_k(np.array([3, 5, 5, 1]), np.array([9, 4, 2, 7]), 2)
    (array([5, 5]), array([2, 4]))
    """
    if len(scores) > depth:
        kth = np.partition(scores, len(scores) - depth)[len(scores) - depth]  # the depth-th best score
        chosen = np.flatnonzero(scores >= kth)
        if (
            len(chosen) > depth
        ):  # ties at the cut: keep the smaller rows, as the doc-ordered Lucene collector does
            at_cut = scores[chosen] == kth
            tied = chosen[at_cut]
            tied = tied[np.argsort(rows[tied], kind="stable")[: depth - int((~at_cut).sum())]]
            chosen = np.concatenate([chosen[~at_cut], tied])
        scores, rows = scores[chosen], rows[chosen]
    order = np.lexsort((rows, -scores))
    return scores[order], rows[order]


class InvertedIndex:
    """A loaded (memory-mapped) inverted index; `search` is exact top-k by Σ_t q_t·d_t."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            raise LedError(f"{self.path} is not an index folder (no manifest.json; run `led index`)")
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if self.manifest.get("kind") != "inverted":
            raise LedError(
                f"{self.path} holds a {self.manifest.get('kind')!r} index, not an embedded inverted index"
            )
        self.num_docs, self.vocab_size = self.manifest["num_docs"], self.manifest["vocab_size"]
        self.quantized = bool(self.manifest["quantized"])
        load = lambda name: np.load(self.path / name, mmap_mode="r", allow_pickle=False)  # noqa: E731
        # int32 pointers keep scipy from copying the int32 doc rows to int64 on every product.
        term_ptr = np.asarray(load("term_ptr.npy")).astype(np.int32)
        self.postings = sp.csr_matrix(
            (load("weights.npy"), load("doc_rows.npy"), term_ptr),
            shape=(self.vocab_size, self.num_docs),
            copy=False,
        )
        self.term_max = np.asarray(load("term_max.npy"))
        blob = self.path / "doc_ids.bin"
        self._id_blob = (
            np.memmap(blob, dtype=np.uint8, mode="r") if blob.stat().st_size else np.zeros(0, np.uint8)
        )
        self._id_offsets = load("doc_id_offsets.npy")
        self._pool: ProcessPoolExecutor | None = None
        self._pool_workers = 0

    @classmethod
    def load(cls, path: str | Path) -> InvertedIndex:
        return cls(path)

    @property
    def weight_dtype(self):
        return np.int32 if self.quantized else np.float32

    def doc_id(self, row: int) -> str:
        return bytes(self._id_blob[self._id_offsets[row] : self._id_offsets[row + 1]]).decode("utf-8")

    def doc_ids(self) -> list[str]:
        blob = bytes(self._id_blob)
        offsets = self._id_offsets.tolist()
        return [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]

    def queries(self, indptr, indices, values) -> sp.csr_matrix:
        """A query CSR [Q, V] in the index's weight form (×100 integers when quantised)."""
        values = quantize(values) if self.quantized else np.array(values, dtype=np.float32)
        # copies: eliminate_zeros compacts the arrays in place, and the caller's arrays must stay intact
        matrix = sp.csr_matrix(
            (values, np.array(indices, np.int32), np.array(indptr, np.int32)),
            shape=(len(indptr) - 1, self.vocab_size),
        )
        matrix.eliminate_zeros()
        return matrix

    def _search_block(self, queries: sp.csr_matrix, depth: int) -> tuple[np.ndarray, np.ndarray]:
        postings = self.postings
        if self.quantized:
            # int32 sums are exact unless Σ_t q_t·max_d d_t could pass 2^31-1; then pay for an int64 copy.
            bound = queries.astype(np.int64) @ self.term_max.astype(np.int64)
            if bound.size and bound.max() > _INT32_MAX:
                postings = postings.astype(np.int64)
                queries = queries.astype(np.int64)
        scores = (queries.astype(postings.dtype, copy=False) @ postings).tocsr()
        out_scores = np.zeros((queries.shape[0], depth), dtype=np.int64 if self.quantized else np.float32)
        out_rows = np.full((queries.shape[0], depth), -1, dtype=np.int64)
        for i in range(queries.shape[0]):
            span = slice(scores.indptr[i], scores.indptr[i + 1])
            best, rows = _top_k(scores.data[span], scores.indices[span], depth)
            out_scores[i, : len(best)], out_rows[i, : len(rows)] = best, rows
        return out_scores, out_rows

    def search(
        self, queries: sp.csr_matrix, depth: int = 1000, workers: int | None = 1, block_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-`depth` for each query row: (scores [Q, depth], rows [Q, depth]); row -1 pads short lists.

        Scores are int64 (quantised index) or float32. `workers` > 1 (None = all cores) spreads query
        blocks over processes; a single block runs here.
        """
        if queries.shape[1] != self.vocab_size:
            raise LedError(
                f"queries have {queries.shape[1]} term ids, the index has vocab_size={self.vocab_size}"
            )
        if depth < 1:
            raise LedError(f"depth must be at least 1, got {depth}")
        queries = queries.tocsr()
        blocks = [queries[start : start + block_size] for start in range(0, queries.shape[0], block_size)]
        workers = available_cores() if workers is None else workers
        if workers <= 1 or len(blocks) <= 1:
            results = [self._search_block(block, depth) for block in blocks]
        else:
            pool = self._worker_pool(workers)
            results = list(pool.map(_worker_search, blocks, [depth] * len(blocks)))
        if not results:
            return (
                np.zeros((0, depth), dtype=np.int64 if self.quantized else np.float32),
                np.zeros((0, depth), dtype=np.int64),
            )
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def _worker_pool(self, workers: int) -> ProcessPoolExecutor:
        if self._pool is None or self._pool_workers != workers:
            self.close()
            # spawn, not fork: the parent may hold a JVM or threads that a forked child must not inherit.
            self._pool = ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_worker_init, initargs=(str(self.path),)
            )
            self._pool_workers = workers
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_WORKER_INDEX: InvertedIndex | None = None


def _worker_init(path: str) -> None:
    global _WORKER_INDEX
    _WORKER_INDEX = InvertedIndex(path)


def _worker_search(queries: sp.csr_matrix, depth: int):
    return _WORKER_INDEX._search_block(queries, depth)


# ----------------------------------------------------------------------------- vectors folder -> results
def _check_vocabulary(index_path: Path, vectors: Path, vocab_size: int, index_vocab_size: int) -> None:
    if vocab_size != index_vocab_size:
        raise LedError(
            f"{vectors} has vocab_size={vocab_size}, the index {index_path} has {index_vocab_size}"
        )
    mine, theirs = index_path / VOCAB, vectors / VOCAB
    if mine.is_file() and theirs.is_file() and mine.read_bytes() != theirs.read_bytes():
        raise LedError(f"{theirs} differs from {mine}: queries and passages come from different vocabularies")


def search_sparse(
    index_path: str | Path, query_vectors_path: str | Path, depth: int = 1000, workers: int | None = None
) -> dict[str, list[tuple[str, float]]]:
    """Search an index folder (`led index`: inverted or Lucene impact) with encoded queries.

    Returns {qid: [(pid, score), ...]} best first, ready for `led_hf.data.runs.write_run`.
    """
    index_path, query_vectors_path = Path(index_path), Path(query_vectors_path)
    manifest_path = index_path / "manifest.json"
    if not manifest_path.is_file():
        raise LedError(f"{index_path} is not an index folder (no manifest.json; run `led index`)")
    kind = json.loads(manifest_path.read_text(encoding="utf-8")).get("kind")
    query_manifest, queries = load_sparse_vectors(query_vectors_path)
    if kind == "lucene-impact":
        with LuceneImpactIndex(index_path) as lucene:
            _check_vocabulary(index_path, query_vectors_path, query_manifest["vocab_size"], lucene.vocab_size)
            return lucene.search_vectors(queries, depth=depth, threads=workers or available_cores())
    if kind != "inverted":
        raise LedError(
            f"{index_path} holds a {kind!r} index; sparse search needs `led index --vectors` output"
        )
    with InvertedIndex(index_path) as index:
        _check_vocabulary(index_path, query_vectors_path, query_manifest["vocab_size"], index.vocab_size)
        scores, rows = index.search(
            index.queries(queries.indptr, queries.indices, queries.values), depth, workers
        )
        blob, offsets = bytes(index._id_blob), index._id_offsets
        results = {}
        for qid, query_scores, query_rows in zip(queries.ids, scores.tolist(), rows.tolist()):
            results[qid] = [
                (blob[offsets[r] : offsets[r + 1]].decode("utf-8"), float(s))
                for s, r in zip(query_scores, query_rows)
                if r >= 0
            ]
        return results
