"""The corpus side of dense mining, built once per process and searched for every query shard.

    index = CorpusIndex(shards, first_row=0)                 # exact: the memory-mapped shards themselves
    index = CorpusIndex(shards, factory="IVF4096,Flat", nprobe=64)   # approximate, CPU (faiss index_factory)
    scores, rows = index.search(query_embeddings, depth)     # [Q, depth], rows in the whole corpus

- Exact on the CPU: no index is built at all; every shard is searched in place with `faiss.knn` on its
  memory-mapped float32 array (float16 shards are upcast one shard at a time), and the shard top-k merged
  as `led_hf.retrieval.faiss_search.merge_topk` does (ties: corpus order).
- Exact on a GPU: each shard's `IndexFlatIP` is put on *this process's* GPU once and kept; under
  `accelerate launch` with W processes, process r holds the r-th contiguous block of corpus shards only,
  and `gather_topk` merges the W per-process top-k lists (all-gather + merge in process order, which keeps
  corpus order on ties): the flat index is sharded over the GPUs, not cloned on each.
- `factory` (e.g. "HNSW32", "IVF4096,Flat"): one faiss index over the whole corpus, trained on at most
  `train_rows` rows sampled evenly, built once per process; `nprobe` (IVF) / `ef_search` (HNSW) set the
  search effort. Approximate: docs/mining.md records its recall against the exact search.
"""

from __future__ import annotations

import numpy as np

from led_hf.errors import LedError
from led_hf.retrieval.faiss_search import EmbeddingShard, merge_topk


def _as_float32(shard: EmbeddingShard) -> np.ndarray:
    """The shard's rows as float32, without a copy when they are float32 on disk (the memory map)."""
    array = shard._embeddings
    return array if array.dtype == np.float32 and array.flags.c_contiguous else shard.embeddings()


class CorpusIndex:
    def __init__(
        self,
        shards: list[EmbeddingShard],
        first_row: int = 0,
        factory: str | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
        gpu_device: int | None = None,
        train_rows: int = 200_000,
    ):
        self.shards, self.first_row = list(shards), first_row
        self.offsets = np.cumsum([0] + [len(s) for s in self.shards]).astype(np.int64)
        self.dim = self.shards[0].dim if self.shards else None
        self.factory, self.gpu_device = factory, gpu_device
        self.gpu_indexes = None
        self.index = None
        if factory:
            self.index = self._build_factory(factory, nprobe, ef_search, train_rows)
        elif gpu_device is not None:
            self.gpu_indexes = [self._gpu_flat(shard) for shard in self.shards]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _gpu_flat(self, shard: EmbeddingShard):
        import faiss

        if not hasattr(self, "_resources"):
            self._resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(self._resources, self.gpu_device, faiss.IndexFlatIP(shard.dim))
        index.add(shard.embeddings())
        return index

    def _build_factory(self, factory: str, nprobe, ef_search, train_rows: int):
        import faiss

        try:
            index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            raise LedError(
                f"--index-factory {factory!r}: faiss cannot build it ({str(err).strip()[:200]})"
            ) from None
        if not index.is_trained:
            step = max(1, len(self) // train_rows)
            sample = np.concatenate([self._rows(np.arange(0, len(self), step)[:train_rows])])
            index.train(sample)
        for shard in self.shards:
            index.add(_as_float32(shard))
        params = faiss.ParameterSpace()
        if nprobe is not None:
            params.set_index_parameter(index, "nprobe", nprobe)
        if ef_search is not None:
            params.set_index_parameter(index, "efSearch", ef_search)
        return index

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        shard_of = np.searchsorted(self.offsets, rows, side="right") - 1
        for s in np.unique(shard_of):
            where = shard_of == s
            out[where] = self.shards[s]._embeddings[rows[where] - self.offsets[s]]
        return out

    def search(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-`depth` (scores float32, corpus rows int64) per query over this index's shards; rows are
        `first_row` + position in the shards' concatenation; -inf / -1 pad when fewer exist."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(queries)
        best_scores = np.full((n, 0), -np.inf, dtype=np.float32)
        best_rows = np.full((n, 0), -1, dtype=np.int64)
        if self.index is not None:
            best_scores, best_rows = self.index.search(queries, min(depth, max(1, len(self))))
            best_rows = np.where(best_rows >= 0, best_rows + self.first_row, -1)
        else:
            for s, shard in enumerate(self.shards):
                if len(shard) == 0:
                    continue
                k = min(depth, len(shard))
                if self.gpu_indexes is not None:
                    scores, positions = self.gpu_indexes[s].search(queries, k)
                else:
                    scores, positions = faiss.knn(
                        queries, _as_float32(shard), k, metric=faiss.METRIC_INNER_PRODUCT
                    )
                rows = np.where(positions >= 0, positions + self.offsets[s] + self.first_row, -1)
                best_scores, best_rows = merge_topk(best_scores, best_rows, scores, rows, depth)
        return pad_topk(best_scores, best_rows, depth)


def pad_topk(scores: np.ndarray, rows: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """[Q, k<=depth] -> [Q, depth], padded with -inf / -1 as faiss pads."""
    pad = depth - scores.shape[1]
    if pad > 0:
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return scores.astype(np.float32, copy=False), rows.astype(np.int64, copy=False)


def gather_topk(scores: np.ndarray, rows: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge every process's top-`depth` [Q, depth] (each over its own corpus block) into the global top
    `depth`: an all-gather (torch.distributed, any backend) and a merge in process order, so equal scores
    keep corpus order when process r holds the r-th block. Without torch.distributed: the input."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return scores, rows
    world = dist.get_world_size()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    parts = []
    for array in (scores, rows):
        tensor = torch.from_numpy(np.ascontiguousarray(array)).to(device)
        gathered = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(gathered, tensor)
        parts.append([g.cpu().numpy() for g in gathered])
    best_scores, best_rows = parts[0][0], parts[1][0]
    for r in range(1, world):
        best_scores, best_rows = merge_topk(best_scores, best_rows, parts[0][r], parts[1][r], depth)
    return best_scores, best_rows


def block_of(num_shards: int, rank: int, world: int) -> range:
    """The contiguous block of shard indices process `rank` of `world` holds: (10, 1, 4) -> range(3, 6)."""
    start, extra = divmod(num_shards, world)
    first = rank * start + min(rank, extra)
    return range(first, first + start + (rank < extra))
