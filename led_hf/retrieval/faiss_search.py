"""Exact inner-product search with faiss over a sharded embeddings folder (the output of `led encode`).

Folder contract (written by `led_hf.retrieval.encode`)::

    ENC/manifest.json                          {"kind": "dense", "dim": H, "num_shards": n, ...}
    ENC/shard-00000-of-0000n/embeddings.npy    float32 or float16 [N_i, H]
    ENC/shard-00000-of-0000n/ids.txt           N_i ids, one per line, UTF-8

Search: one `IndexFlatIP` per passage shard (on the GPUs when faiss has any), every query batch searched
against it, the shard's top-k merged into a running top-k, so peak memory is one shard plus [Q, 2k]
scores. Scores are inner products s(q, p) = <e_q, e_p> in float32; the merge keeps the k largest
(ties: the earlier shard row first, i.e. corpus order).

    >>> scores, indices = search_dense(query_embeddings, [shard0, shard1], depth=3)
    >>> indices     # [Q, 3] positions in the concatenation shard0 ++ shard1; -1 where fewer than 3 exist
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from led_hf.errors import InputError, LedError
from led_hf.retrieval.encoding_files import EMBEDDINGS, IDS, MANIFEST, read_ids, read_manifest, shard_dirname
from led_hf.retrieval.pairing import check_pair

GPU_MAX_K = 2048  # faiss GPU k-selection limit

logger = logging.getLogger(__name__)


class EmbeddingShard:
    """One shard folder: `ids` and lazily memory-mapped `embeddings` [N, H]."""

    def __init__(self, folder: Path, dim: int | None = None):
        self.folder = Path(folder)
        ids_path = self.folder / IDS
        emb_path = self.folder / EMBEDDINGS
        for path in (ids_path, emb_path):
            if not path.is_file():
                raise LedError(f"{path} is missing (an incomplete `led encode` run?)")
        self.ids = read_ids(ids_path)
        try:
            self._embeddings = np.load(emb_path, mmap_mode="r", allow_pickle=False)
        except ValueError as err:
            raise InputError(emb_path, None, f"not a plain .npy array ({err})") from None
        shape = self._embeddings.shape
        if self._embeddings.dtype not in (np.float32, np.float16) or len(shape) != 2:
            raise InputError(
                emb_path,
                None,
                f"expected a float32/float16 [N, H] array, found {self._embeddings.dtype} {list(shape)}",
            )
        if shape[0] != len(self.ids):
            raise InputError(emb_path, None, f"{shape[0]} rows but {ids_path} has {len(self.ids)} ids")
        if dim is not None and shape[1] != dim:
            raise InputError(emb_path, None, f"width {shape[1]} differs from the manifest's dim {dim}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self._embeddings.shape[1])

    def embeddings(self) -> np.ndarray:
        """The shard as a contiguous float32 array (float16 shards are upcast: faiss computes in float32)."""
        return np.ascontiguousarray(self._embeddings, dtype=np.float32)


def open_embeddings(folder: str | Path) -> tuple[dict, list[EmbeddingShard]]:
    """Read ENC/manifest.json and its shard folders (checked: all present, same width, kind dense)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = read_manifest(folder)
    if manifest is None:
        raise LedError(f"{folder} is not an embeddings folder (no {MANIFEST}; run `led encode`)")
    if not isinstance(manifest, dict):
        raise InputError(manifest_path, None, "expected a JSON object")
    if manifest.get("kind", "dense") != "dense":
        raise LedError(f"{folder} holds {manifest.get('kind')!r} embeddings; faiss search needs dense ones")
    num_shards = manifest.get("num_shards")
    dim = manifest.get("dim")
    if not isinstance(num_shards, int) or num_shards < 1 or not isinstance(dim, int) or dim < 1:
        raise InputError(
            manifest_path, None, f"needs integer num_shards >= 1 and dim >= 1, has {num_shards}, {dim}"
        )
    shards = [EmbeddingShard(folder / shard_dirname(i, num_shards), dim) for i in range(num_shards)]
    return manifest, shards


def gpu_count() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _flat_index(embeddings: np.ndarray, use_gpu: bool):
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    if use_gpu:
        # exact search: sharding the flat index over every GPU keeps each GPU's share of the corpus small
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True
        index = faiss.index_cpu_to_all_gpus(index, co=options)
    index.add(embeddings)
    return index


def merge_topk(
    best_scores: np.ndarray, best_indices: np.ndarray, scores: np.ndarray, indices: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the `depth` largest of two [Q, *] candidate sets; -1 indices (padding) always lose.

    Ties keep the first set's entries first (stable sort), so shards merged in order rank equal scores in
    corpus order.
    """
    all_scores = np.concatenate([best_scores, scores], axis=1)
    all_indices = np.concatenate([best_indices, indices], axis=1)
    all_scores = np.where(all_indices < 0, -np.inf, all_scores)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :depth]
    return np.take_along_axis(all_scores, order, axis=1), np.take_along_axis(all_indices, order, axis=1)


def search_dense(
    query_embeddings: np.ndarray,
    passage_shards: Iterable[np.ndarray | EmbeddingShard],
    depth: int = 1000,
    batch_size: int = 4096,
    use_gpu: bool | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-`depth` inner-product search of queries [Q, H] over passage shards [N_i, H].

    Returns (scores float32 [Q, depth], indices int64 [Q, depth]); indices are positions in the
    concatenation of the shards in the given order; when fewer than `depth` passages exist in total the
    tail is score -inf, index -1. `use_gpu=None` uses the GPUs when faiss sees any.
    """
    query_embeddings = np.ascontiguousarray(query_embeddings, dtype=np.float32)
    if query_embeddings.ndim != 2:
        raise LedError(f"query embeddings must be [Q, H], got shape {list(query_embeddings.shape)}")
    if depth < 1 or batch_size < 1:
        raise LedError(f"depth and batch size must be at least 1, got {depth}, {batch_size}")
    if use_gpu is None:
        use_gpu = gpu_count() > 0
    if use_gpu and depth > GPU_MAX_K:
        logger.warning(
            "faiss GPU search returns at most %d results per query: searching depth %d on the CPU",
            GPU_MAX_K,
            depth,
        )
        use_gpu = False
    num_queries = query_embeddings.shape[0]
    best_scores = np.full((num_queries, 0), -np.inf, dtype=np.float32)
    best_indices = np.full((num_queries, 0), -1, dtype=np.int64)
    offset = 0
    shards = list(passage_shards)
    bar = tqdm(
        total=len(shards) * max(1, -(-num_queries // batch_size)),
        desc="faiss search",
        unit="batch",
        disable=None if progress else True,
    )
    for shard in shards:
        embeddings = (
            shard.embeddings()
            if isinstance(shard, EmbeddingShard)
            else np.ascontiguousarray(shard, np.float32)
        )
        if embeddings.ndim != 2 or embeddings.shape[1] != query_embeddings.shape[1]:
            raise LedError(
                f"passage embeddings {list(embeddings.shape)} do not match query width "
                f"{query_embeddings.shape[1]}"
            )
        if len(embeddings) == 0:
            continue
        index = _flat_index(embeddings, use_gpu)
        k = min(depth, len(embeddings))
        shard_scores = np.empty((num_queries, k), dtype=np.float32)
        shard_indices = np.empty((num_queries, k), dtype=np.int64)
        for start in range(0, num_queries, batch_size):
            stop = min(start + batch_size, num_queries)
            shard_scores[start:stop], shard_indices[start:stop] = index.search(
                query_embeddings[start:stop], k
            )
            bar.update(1)
        shard_indices = np.where(shard_indices >= 0, shard_indices + offset, -1)
        best_scores, best_indices = merge_topk(best_scores, best_indices, shard_scores, shard_indices, depth)
        offset += len(embeddings)
        del index
    bar.close()
    if best_scores.shape[1] < depth:  # fewer passages than depth: pad as faiss does
        pad = depth - best_scores.shape[1]
        best_scores = np.pad(best_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        best_indices = np.pad(best_indices, ((0, 0), (0, pad)), constant_values=-1)
    return best_scores, best_indices


def search_folders(
    queries_folder: str | Path,
    passages_folder: str | Path,
    depth: int = 1000,
    batch_size: int = 4096,
    use_gpu: bool | None = None,
    progress: bool = True,
) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Search a query embeddings folder against a passage one: (qids, scores, indices, pids)."""
    query_manifest, query_shards = open_embeddings(queries_folder)
    passage_manifest, passage_shards = open_embeddings(passages_folder)
    check_pair(query_manifest, queries_folder, passage_manifest, passages_folder)
    if query_shards[0].dim != passage_shards[0].dim:
        raise LedError(
            f"query width {query_shards[0].dim} ({queries_folder}) differs from passage width "
            f"{passage_shards[0].dim} ({passages_folder})"
        )
    qids = _concat_ids(query_shards, queries_folder)
    pids = _concat_ids(passage_shards, passages_folder)
    query_embeddings = (
        np.concatenate([shard.embeddings() for shard in query_shards])
        if qids
        else np.zeros((0, query_shards[0].dim), np.float32)
    )
    scores, indices = search_dense(
        query_embeddings,
        passage_shards,
        depth=depth,
        batch_size=batch_size,
        use_gpu=use_gpu,
        progress=progress,
    )
    return qids, scores, indices, pids


def _concat_ids(shards: Sequence[EmbeddingShard], folder) -> list[str]:
    ids = [value for shard in shards for value in shard.ids]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(value for value in ids if value in seen or seen.add(value))
        raise LedError(f"id {duplicate!r} appears twice in {folder}")
    return ids
