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
(ties: smaller row first). A block's score matrix holds one entry (score + column, 8 bytes) per query
and matched document: 4.5 GB for 64 queries at 8.8M documents, where common terms match nearly every
document. So a block takes as many queries as fit `memory_budget` (256 MiB per process by default,
counted at 12 bytes an entry: 64 queries at SciFact size, 2 at 8.8M documents); smaller blocks are no
slower (docs/scaling.md). scipy's sparse product holds the GIL, so blocks go to worker processes that
memory-map the same files (the OS shares the pages). The index is built by
`inverted_build.build_inverted_index`.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from led_hf.errors import LedError
from led_hf.retrieval.impact import INT32_MAX, available_cores, quantize
from led_hf.retrieval.lucene import LuceneImpactIndex
from led_hf.retrieval.pairing import check_pair
from led_hf.retrieval.sparse_vectors import VOCAB, load_sparse_vectors

MEMORY_BUDGET = 256 * 2**20  # bytes of score matrix per process and query block (see the module doc)
# one score matrix entry: an int32/float32 score (int64 when int32 could overflow) + an int32 column,
# or int32 score + int64 column past 2^31 entries
_SCORE_ENTRY_BYTES = 12


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
        self._term_df = np.diff(term_ptr)  # postings per term: bounds a query's matched documents
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
            if bound.size and bound.max() > INT32_MAX:
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

    def query_blocks(
        self, queries: sp.csr_matrix, block_size: int = 64, memory_budget: int = MEMORY_BUDGET
    ) -> list[tuple[int, int]]:
        """Consecutive (start, stop) query ranges of at most `block_size` queries whose score matrices
        fit `memory_budget` bytes; a query that alone exceeds it gets a block of its own.

        A query matches at most min(N, Σ_t df_t) documents (df_t: postings of its term t); its block
        share is that × 12 bytes.
        """
        if block_size < 1 or memory_budget < 1:
            raise LedError(
                f"block_size and memory_budget must be positive, got {block_size}, {memory_budget}"
            )
        postings = np.cumsum(self._term_df[queries.indices], dtype=np.int64)
        postings = np.concatenate([[0], postings])[queries.indptr]
        cost = (np.minimum(np.diff(postings), self.num_docs) * _SCORE_ENTRY_BYTES).tolist()
        blocks, start, used = [], 0, 0
        for query, query_cost in enumerate(cost):
            if query > start and (used + query_cost > memory_budget or query - start >= block_size):
                blocks.append((start, query))
                start, used = query, 0
            used += query_cost
        if start < len(cost):
            blocks.append((start, len(cost)))
        return blocks

    def search(
        self,
        queries: sp.csr_matrix,
        depth: int = 1000,
        workers: int | None = 1,
        block_size: int = 64,
        memory_budget: int = MEMORY_BUDGET,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-`depth` for each query row: (scores [Q, depth], rows [Q, depth]); row -1 pads short lists.

        Scores are int64 (quantised index) or float32. Queries are scored in blocks of at most
        `block_size` whose score matrices fit `memory_budget` bytes (per process, `query_blocks`); the
        results do not depend on either. `workers` > 1 (None = all cores) spreads the blocks over
        processes; a single block runs here.
        """
        if queries.shape[1] != self.vocab_size:
            raise LedError(
                f"queries have {queries.shape[1]} term ids, the index has vocab_size={self.vocab_size}"
            )
        if depth < 1:
            raise LedError(f"depth must be at least 1, got {depth}")
        queries = queries.tocsr()
        blocks = [queries[a:b] for a, b in self.query_blocks(queries, block_size, memory_budget)]
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
    index_manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    kind = index_manifest.get("kind")
    if kind not in ("inverted", "lucene-impact"):
        raise LedError(
            f"{index_path} holds a {kind!r} index; sparse search needs `led index --vectors` output"
        )
    query_manifest, queries = load_sparse_vectors(query_vectors_path)
    check_pair(query_manifest, query_vectors_path, index_manifest, index_path)
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
