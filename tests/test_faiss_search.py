"""faiss search against numpy brute force: single and sharded corpora, float16 shards, the CLI, bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from led_hf.cli.main import main
from led_hf.data.runs import read_run
from led_hf.errors import InputError, LedError
from led_hf.retrieval.faiss_search import merge_topk, open_embeddings, search_dense


def _brute_force(queries: np.ndarray, passages: np.ndarray, depth: int):
    scores = queries.astype(np.float64) @ passages.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    return np.take_along_axis(scores, order, axis=1), order


def _write_folder(folder, shards, ids, dtype=np.float32, manifest_extra=None):
    folder.mkdir(parents=True)
    n = len(shards)
    manifest = {"kind": "dense", "dim": shards[0].shape[1], "num_shards": n, **(manifest_extra or {})}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    start = 0
    for i, shard in enumerate(shards):
        shard_dir = folder / f"shard-{i:05d}-of-{n:05d}"
        shard_dir.mkdir()
        np.save(shard_dir / "embeddings.npy", shard.astype(dtype))
        (shard_dir / "ids.txt").write_text(
            "".join(f"{x}\n" for x in ids[start : start + len(shard)]), encoding="utf-8"
        )
        start += len(shard)


@pytest.mark.parametrize("split_points", [[], [7], [1, 30, 31, 50]])
def test_sharded_search_equals_brute_force(split_points):
    rng = np.random.default_rng(len(split_points))
    queries = rng.standard_normal((23, 16)).astype(np.float32)
    passages = rng.standard_normal((64, 16)).astype(np.float32)
    shards = np.split(passages, split_points)  # includes an empty shard when two points coincide
    scores, indices = search_dense(queries, shards, depth=10, batch_size=5, progress=False)
    expected_scores, expected_indices = _brute_force(queries, passages, 10)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)
    assert scores.dtype == np.float32 and indices.dtype == np.int64


def test_depth_beyond_corpus_pads_with_minus_one():
    rng = np.random.default_rng(3)
    passages = rng.standard_normal((5, 4)).astype(np.float32)
    scores, indices = search_dense(
        rng.standard_normal((2, 4)), [passages[:2], passages[2:]], depth=8, progress=False
    )
    assert (indices[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    assert sorted(indices[0, :5].tolist()) == [0, 1, 2, 3, 4]


def test_merge_keeps_first_set_on_ties_and_drops_padding():
    scores, indices = merge_topk(
        np.array([[1.0, 0.5]]), np.array([[0, 1]]), np.array([[1.0, 9.0]]), np.array([[5, -1]]), depth=3
    )
    assert indices.tolist() == [[0, 5, 1]] and scores.tolist() == [[1.0, 1.0, 0.5]]


def test_mismatched_width_is_an_error():
    with pytest.raises(LedError, match="do not match"):
        search_dense(np.zeros((2, 4)), [np.zeros((3, 5))], progress=False)


def test_cli_writes_run_from_float16_shards(tmp_path):
    rng = np.random.default_rng(7)
    passages = rng.standard_normal((40, 8)).astype(np.float16)
    queries = rng.standard_normal((6, 8)).astype(np.float32)
    pids = [f"doc-{i}" for i in range(40)]
    qids = [f"q{i}" for i in range(6)]
    _write_folder(tmp_path / "passages", np.split(passages, [13, 27]), pids, dtype=np.float16)
    _write_folder(tmp_path / "queries", [queries], qids)
    out = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--passages",
                str(tmp_path / "passages"),
                "--queries",
                str(tmp_path / "queries"),
                "--output",
                str(out),
                "--depth",
                "5",
                "--cpu",
            ]
        )
        == 0
    )
    run = read_run(out)
    expected_scores, expected_indices = _brute_force(queries, passages.astype(np.float32), 5)
    assert list(run) == qids
    for row, qid in enumerate(qids):
        assert list(run[qid]) == [pids[i] for i in expected_indices[row]]
        np.testing.assert_allclose(list(run[qid].values()), expected_scores[row], rtol=1e-5, atol=1e-5)
    assert out.read_text().splitlines()[0].split()[-1] == "dense"


def test_bad_folders_are_located(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(LedError, match="no manifest.json"):
        open_embeddings(tmp_path)
    _write_folder(
        tmp_path / "a", [rng.standard_normal((3, 4))], ["x", "y", "z"], manifest_extra={"num_shards": 2}
    )
    with pytest.raises(LedError, match="shard-00000-of-00002.*missing"):
        open_embeddings(tmp_path / "a")
    _write_folder(tmp_path / "b", [rng.standard_normal((3, 4))], ["x", "y"])
    with pytest.raises(InputError, match="3 rows but"):
        open_embeddings(tmp_path / "b")
    _write_folder(tmp_path / "c", [rng.standard_normal((3, 4))], ["x", "y y", "z"])
    with pytest.raises(InputError, match=r"ids.txt:2: id 'y y'"):
        open_embeddings(tmp_path / "c")
    _write_folder(tmp_path / "d", [rng.standard_normal((2, 4))], ["x", "y"])
    np.save(tmp_path / "d" / "shard-00000-of-00001" / "embeddings.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(InputError, match="not a plain .npy array"):
        open_embeddings(tmp_path / "d")
    assert (
        main(
            [
                "search",
                "--passages",
                str(tmp_path / "b"),
                "--queries",
                str(tmp_path / "b"),
                "--output",
                str(tmp_path / "run.trec"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "run.trec").exists()


@pytest.mark.gpu
def test_gpu_search_equals_cpu_search():
    from led_hf.retrieval.faiss_search import gpu_count

    if gpu_count() == 0:
        pytest.skip("faiss sees no GPU")
    rng = np.random.default_rng(11)
    queries = rng.standard_normal((300, 64)).astype(np.float32)
    shards = [rng.standard_normal((5000, 64)).astype(np.float32) for _ in range(3)]
    cpu_scores, cpu_indices = search_dense(queries, shards, depth=100, use_gpu=False, progress=False)
    gpu_scores, gpu_indices = search_dense(
        queries, shards, depth=100, use_gpu=True, batch_size=128, progress=False
    )
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=1e-4, atol=1e-4)
    assert (gpu_indices == cpu_indices).mean() > 0.99  # float rounding may swap near-equal neighbours
