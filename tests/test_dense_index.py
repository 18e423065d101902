"""The dense mining index: built once, exact search equal to `search_dense`, the per-process top-k merge of
a corpus sharded over 2 real gloo processes equal to one process's exact search, and an approximate
`--index-factory` whose recall against the exact search is measured."""

from __future__ import annotations

import os

import numpy as np
import pytest

from led_hf.mining.dense_index import CorpusIndex, block_of, gather_topk
from led_hf.mining.progress import ShardProgress
from led_hf.retrieval.faiss_search import EmbeddingShard, search_dense

DIM = 16


def _shards(tmp_path, sizes, dtype=np.float32, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(DIM).astype(dtype) * 3  # ties=True: every 3rd row, in every shard
    shards = []
    for i, size in enumerate(sizes):
        folder = tmp_path / f"shard-{i}"
        folder.mkdir()
        vectors = rng.standard_normal((size, DIM)).astype(dtype)
        if ties:
            vectors[::3] = common
        np.save(folder / "embeddings.npy", vectors)
        (folder / "ids.txt").write_text("".join(f"s{i}r{r}\n" for r in range(size)))
        shards.append(EmbeddingShard(folder))
    return shards


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_exact_index_equals_search_dense(tmp_path, dtype):
    shards = _shards(tmp_path, [40, 0, 25, 35], dtype)
    queries = np.random.default_rng(1).standard_normal((9, DIM)).astype(np.float32)
    expected = search_dense(queries, shards, depth=30, use_gpu=False, progress=False)
    index = CorpusIndex(shards)
    for _ in range(2):  # built once, searched for every query shard
        scores, rows = index.search(queries, 30)
        np.testing.assert_array_equal(rows, expected[1])
        np.testing.assert_allclose(scores, expected[0], rtol=1e-5)
    scores, rows = index.search(queries, 150)  # deeper than the corpus: padded as faiss pads
    assert (rows[:, 100:] == -1).all() and np.isneginf(scores[:, 100:]).all()


def test_block_of_splits_shards_contiguously():
    assert [list(block_of(10, r, 4)) for r in range(4)] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert [list(block_of(1, r, 2)) for r in range(2)] == [[0], []]


def _rank(rank, world, init_file, folder, depth, out):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shards = [EmbeddingShard(folder / f"shard-{i}") for i in range(4)]
        block = block_of(len(shards), rank, world)
        first_row = sum(len(s) for s in shards[: block.start])
        queries = np.load(folder / "queries.npy")
        index = CorpusIndex(shards[block.start : block.stop], first_row)
        scores, rows = gather_topk(*index.search(queries, depth), depth)
        np.savez(out / f"rank{rank}.npz", scores=scores, rows=rows)
    finally:
        dist.destroy_process_group()


def test_per_process_topk_merge_equals_single_process_search(tmp_path):
    import torch.multiprocessing as mp

    shards = _shards(tmp_path, [30, 20, 0, 45], ties=True)  # equal scores on both processes' blocks
    queries = np.random.default_rng(2).standard_normal((7, DIM)).astype(np.float32)
    np.save(tmp_path / "queries.npy", queries)
    depth = 60  # more than either half holds
    expected_scores, expected_rows = CorpusIndex(shards).search(queries, depth)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), tmp_path, depth, tmp_path), nprocs=2, join=True)
    for rank in range(2):
        got = np.load(tmp_path / f"rank{rank}.npz")
        np.testing.assert_array_equal(got["rows"], expected_rows)
        np.testing.assert_allclose(got["scores"], expected_scores, rtol=1e-6)


def _clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    return centres[rng.integers(0, 64, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "factory,options,floor",
    [("HNSW32", {"ef_search": 1024}, 0.92), ("IVF256,Flat", {"nprobe": 32}, 0.95)],
)
def test_index_factory_recall_against_exact(tmp_path, factory, options, floor):
    """docs/mining.md records these numbers: 40,000 clustered vectors of width 64, 200 queries, recall@100."""
    folder = tmp_path / "shard-0"
    folder.mkdir()
    np.save(folder / "embeddings.npy", _clustered(40_000, 64, 0))
    (folder / "ids.txt").write_text("".join(f"p{r}\n" for r in range(40_000)))
    shards = [EmbeddingShard(folder)]
    queries = _clustered(200, 64, 1)
    _, exact = CorpusIndex(shards).search(queries, 100)
    _, approx = CorpusIndex(shards, factory=factory, **options).search(queries, 100)
    recall = np.mean([len(set(a) & set(e)) / 100 for a, e in zip(approx, exact)])
    print(f"{factory} {options}: recall@100 vs exact = {recall:.3f}")
    assert recall >= floor


def test_shard_progress_reports_rate_and_eta(capsys):
    progress = ShardProgress(4)
    line = progress.step(7, 5000)
    assert line.startswith("mine: shard 7 (5000 queries) in ") and "1/4 done" in line and "ETA " in line
    assert line in capsys.readouterr().err
