"""Search encoded evaluation passages held in memory: dense by exact faiss search, SPLADE through the
embedded inverted index (`led index` + `led search`'s code, so the metrics are those of the real pipeline).

    dense   queries [Q, H] float32, passages [N, H] float32   -> faiss IndexFlatIP, exact top-k
    sparse  queries [Q, V] CSR,     passages [N, V] CSR       -> vectors folder -> inverted index (×100
                                                                 quantised impacts) -> exact top-k

Both return (scores [Q, depth], rows [Q, depth]); rows index the passages, -1 pads short lists.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from led_hf.errors import LedError


def as_csr(weights, what: str, rows: int | None = None) -> sp.csr_matrix:
    """Term weights [n, V] (a torch tensor, on any device, or an array) as a float32 CSR matrix.

    A torch tensor is made sparse where it lives (on a GPU only the non-zeros cross to the host).
    """
    if hasattr(weights, "detach"):
        weights = weights.detach().float()
        if weights.ndim != 2 or (rows is not None and weights.shape[0] != rows):
            raise LedError(f"encode_{what} returned shape {list(weights.shape)}, expected [{rows or 'n'}, V]")
        if not bool(weights.isfinite().all()) or bool((weights < 0).any()):
            raise LedError(f"encode_{what} returned negative or non-finite term weights")
        compressed = weights.to_sparse_csr()
        return sp.csr_matrix(
            (
                compressed.values().cpu().numpy().astype(np.float32),
                compressed.col_indices().cpu().numpy().astype(np.int32),
                compressed.crow_indices().cpu().numpy().astype(np.int64),
            ),
            shape=tuple(weights.shape),
        )
    if sp.issparse(weights):
        matrix = sp.csr_matrix(weights, dtype=np.float32)
    else:
        matrix = sp.csr_matrix(np.asarray(weights, dtype=np.float32))
    if matrix.ndim != 2 or (rows is not None and matrix.shape[0] != rows):
        raise LedError(f"encode_{what} returned shape {list(matrix.shape)}, expected [{rows or 'n'}, V]")
    if not np.isfinite(matrix.data).all() or (matrix.data < 0).any():
        raise LedError(f"encode_{what} returned negative or non-finite term weights")
    return matrix


def search_dense_matrix(
    query_embeddings: np.ndarray, passage_embeddings: np.ndarray, depth: int, use_gpu: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    from led_hf.retrieval.faiss_search import search_dense

    return search_dense(query_embeddings, [passage_embeddings], depth=depth, use_gpu=use_gpu, progress=False)


def search_sparse_matrix(
    query_weights: sp.csr_matrix, passage_weights: sp.csr_matrix, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact impact search of `query_weights` over `passage_weights` through an inverted index built in a
    temporary folder (removed afterwards). Scores are the index's ×100 integer impacts."""
    from led_hf.retrieval.encoding_files import IDS, MANIFEST, shard_dirname
    from led_hf.retrieval.inverted_build import build_inverted_index
    from led_hf.retrieval.inverted_index import InvertedIndex

    if query_weights.shape[1] != passage_weights.shape[1]:
        raise LedError(f"queries have {query_weights.shape[1]} term ids, passages {passage_weights.shape[1]}")
    passages = passage_weights.tocsr()
    passages.sort_indices()  # the vectors-folder contract: term ids increase within a row
    with tempfile.TemporaryDirectory(prefix="led-eval-index-") as work:
        vectors, index_path = Path(work) / "vectors", Path(work) / "index"
        shard = vectors / shard_dirname(0, 1)
        shard.mkdir(parents=True)
        manifest = {"kind": "sparse", "vocab_size": int(passages.shape[1]), "num_shards": 1}
        (vectors / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        np.save(shard / "indptr.npy", passages.indptr.astype(np.int64))
        np.save(shard / "indices.npy", passages.indices.astype(np.int32))
        np.save(shard / "values.npy", passages.data.astype(np.float32))
        (shard / IDS).write_text("".join(f"{row}\n" for row in range(passages.shape[0])), encoding="utf-8")
        build_inverted_index(vectors, index_path, quantized=True, progress=False)
        with InvertedIndex(index_path) as index:
            queries = query_weights.tocsr()
            scores, rows = index.search(
                index.queries(queries.indptr, queries.indices, queries.data), depth=depth, workers=1
            )
    return scores.astype(np.float64), rows
