"""Negative pools in memory-mapped files cached under the data folder (led_hf/data/pool_store.py): the
same pools and draws as the in-RAM reference, whatever the build chunk; reuse by later processes, DataLoader
workers and concurrent builders (threads and two real processes); never a stale pool; a fallback when the data folder cannot be written."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasets import Dataset
from test_groups import NEGATIVES, QRELS, write_prepared

from led_hf.data import pool_store
from led_hf.data.groups import TrainGroups
from led_hf.data.row_reader import take_rows
from led_hf.data.sampling import negative_pool
from led_hf.work_folder import DERIVED_FOLDER, tree_sha256

SOURCES = ["bm25", "mined"]


def make_groups(root: Path, **options) -> TrainGroups:
    defaults = dict(negs_sources=SOURCES, num_negs_per_system=4, num_negatives=3, seed=5, show_progress=False)
    return TrainGroups(root, **{**defaults, **options})


def reference_pools(groups: TrainGroups, prefix: str, negatives=NEGATIVES, depth: int = 4, dedupe=False):
    """`negative_pool` of every training query, on pid strings (what the pools must hold)."""
    pools = []
    for qid in groups._qids.to_pylist():
        positives = {f"{prefix}{p}" for q, p in QRELS if q == qid}
        lists = [[f"{prefix}{p}" for p in negatives[s].get(qid, [])] for s in SOURCES]
        pools.append(negative_pool(lists, depth, positives, dedupe))
    return pools


def pools_as_pids(groups: TrainGroups, prefix: str) -> list[list[str]]:
    return [[f"{prefix}{r}" for r in groups.pool(q).tolist()] for q in range(len(groups._qids))]


def cache_folders(root: Path) -> list[Path]:
    folder = root / DERIVED_FOLDER / "pools"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


@pytest.mark.parametrize("prefix", ["", "d"], ids=["identity-ids", "hashed-ids"])
@pytest.mark.parametrize("dedupe", [False, True])
def test_mapped_pools_equal_the_reference_whatever_the_chunk(tmp_path, monkeypatch, prefix, dedupe):
    draws = {}
    for chunk in (pool_store.CANDIDATES_PER_CHUNK, 1, 9):  # one chunk; one query a chunk; a few
        monkeypatch.setattr(pool_store, "CANDIDATES_PER_CHUNK", chunk)
        root = write_prepared(tmp_path / f"chunk-{chunk}", prefix)
        groups = make_groups(root, dedupe_negatives=dedupe)
        assert pools_as_pids(groups, prefix) == reference_pools(groups, prefix, dedupe=dedupe)
        # the arrays are maps of the cached files, not heap copies
        (folder,) = cache_folders(root)
        assert groups._pools.folder == folder
        assert isinstance(groups._pools.rows.base, np.memmap)
        assert np.load(folder / "rows.npy", allow_pickle=False).dtype == np.int32
        draws[chunk] = [
            groups.candidate_rows(i, epoch=e).tolist() for i in range(len(groups)) for e in (0, 1)
        ]
    assert len({repr(d) for d in draws.values()}) == 1


def test_second_construction_reuses_the_cache(tmp_path, monkeypatch):
    root = write_prepared(tmp_path / "data")
    first = make_groups(root)
    folder = first._pools.folder
    assert folder.parent == root / DERIVED_FOLDER / "pools"

    def no_build(*args, **kwargs):
        raise AssertionError("the pools were rebuilt")

    monkeypatch.setattr(pool_store, "_write_pools", no_build)
    second = make_groups(root, num_negatives=2, seed=9)  # draw options do not change the pools
    assert second._pools.folder == folder
    assert np.array_equal(second._pools.rows, first._pools.rows)
    assert cache_folders(root) == [folder]
    # the data folder's content hash (pipeline cache keys) does not see the pool cache
    monkeypatch.undo()
    with_cache = tree_sha256(root)
    shutil.rmtree(root / DERIVED_FOLDER)
    assert tree_sha256(root) == with_cache


def test_a_changed_source_or_option_is_not_served_from_the_cache(tmp_path):
    root = write_prepared(tmp_path / "data")
    old = make_groups(root)
    changed = {**NEGATIVES, "mined": {**NEGATIVES["mined"], "q1": [19, 18, 17]}}
    shutil.rmtree(root / "negatives" / "mined")
    lists = changed["mined"]
    Dataset.from_dict(
        {
            "qid": list(lists),
            "pids": [[str(p) for p in v] for v in lists.values()],
            "scores": [[0.0] * len(v) for v in lists.values()],
        }
    ).save_to_disk(root / "negatives" / "mined")
    new = make_groups(root)
    assert new._pools.folder != old._pools.folder
    assert pools_as_pids(new, "") == reference_pools(new, "", negatives=changed)
    assert new.pool(0).tolist() != old.pool(0).tolist()  # the old maps still read after their files went
    # the pools of the old content can never be reached again: the build removed them
    assert cache_folders(root) == [new._pools.folder]
    deeper = make_groups(root, num_negs_per_system=2)
    assert deeper._pools.folder not in (old._pools.folder, new._pools.folder)
    assert pools_as_pids(deeper, "") == reference_pools(deeper, "", negatives=changed, depth=2)
    # other options are other pools, not superseded ones
    assert cache_folders(root) == sorted([new._pools.folder, deeper._pools.folder])


def test_a_build_leaves_the_pools_of_other_data_folders_in_a_shared_cache(tmp_path, monkeypatch):
    """The read-only fallback cache is shared by data folders: same split and options, other data, kept."""
    monkeypatch.setattr(pool_store, "_writable_cache", lambda data_root: tmp_path / "shared-cache")
    first = make_groups(write_prepared(tmp_path / "one"))._pools.folder
    second = make_groups(write_prepared(tmp_path / "two", "d"))._pools.folder
    assert first != second and first.is_dir() and second.is_dir()


def test_damaged_cache_is_rebuilt(tmp_path):
    root = write_prepared(tmp_path / "data")
    folder = make_groups(root)._pools.folder
    expected = np.load(folder / "rows.npy").tolist()
    (folder / "pools.json").unlink()  # e.g. a copy interrupted half-way
    (folder / "rows.npy").write_bytes(b"")
    groups = make_groups(root)
    assert groups._pools.folder == folder and groups._pools.rows.tolist() == expected
    assert pools_as_pids(groups, "") == reference_pools(groups, "")


def test_read_only_data_folder_falls_back_to_the_temp_dir(tmp_path, monkeypatch, caplog):
    root = write_prepared(tmp_path / "data")
    (root / DERIVED_FOLDER).write_text("not a folder")  # the cache folder cannot be created
    monkeypatch.setattr(pool_store.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    groups = make_groups(root)
    assert groups._pools.folder.parent.parent == tmp_path / "tmp"
    assert "cannot be written" in caplog.text
    assert pools_as_pids(groups, "") == reference_pools(groups, "")


def test_dataloader_workers_reopen_the_maps(tmp_path):
    root = write_prepared(tmp_path / "data")
    groups = make_groups(root)
    blob = pickle.dumps(groups)
    assert groups._pools.rows.tobytes() not in blob  # the pools travel as their folder
    clone = pickle.loads(blob)
    assert isinstance(clone._pools.rows.base, np.memmap)
    assert [clone[i]["pids"] for i in range(len(clone))] == [groups[i]["pids"] for i in range(len(groups))]
    in_ram = make_groups(root, num_negatives=0)  # no pools to map: plain arrays travel
    assert len(pickle.loads(pickle.dumps(in_ram))) == len(in_ram)


def test_concurrent_builders_build_once(tmp_path, monkeypatch):
    root = write_prepared(tmp_path / "data")
    builds, write_pools = [], pool_store._write_pools

    def slow_write(*args, **kwargs):
        builds.append(threading.get_ident())
        time.sleep(0.3)  # both start before the first one is done
        return write_pools(*args, **kwargs)

    monkeypatch.setattr(pool_store, "_write_pools", slow_write)
    results = [None, None]

    def build(slot):
        results[slot] = make_groups(root)

    threads = [threading.Thread(target=build, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert results[0]._pools.folder == results[1]._pools.folder
    assert np.array_equal(results[0]._pools.rows, results[1]._pools.rows)
    leftovers = [p.name for p in (root / DERIVED_FOLDER / "pools").iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def _build_in_a_process(root: Path, marks: Path, out: Path) -> None:
    """One of two DDP-like ranks: build (or wait for) the pools, record which process wrote them."""
    write_pools = pool_store._write_pools

    def slow_write(*args, **kwargs):
        (marks / str(os.getpid())).touch()
        time.sleep(0.5)  # the other process reaches the lock before this one is done
        return write_pools(*args, **kwargs)

    pool_store._write_pools = slow_write
    groups = make_groups(root)
    np.save(out, np.asarray(groups._pools.rows))
    out.with_suffix(".folder").write_text(str(groups._pools.folder))


def test_two_processes_build_once(tmp_path):
    """The lock is a file lock: two real processes (as two DDP ranks) build the pools once and map the same."""
    root = write_prepared(tmp_path / "data")
    marks = tmp_path / "builds"
    marks.mkdir()
    context = multiprocessing.get_context("fork")
    ranks = [
        context.Process(target=_build_in_a_process, args=(root, marks, tmp_path / f"rank{rank}.npy"))
        for rank in (0, 1)
    ]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(60)
    assert [process.exitcode for process in ranks] == [0, 0]
    assert len(list(marks.iterdir())) == 1
    folders = {(tmp_path / f"rank{rank}.folder").read_text() for rank in (0, 1)}
    assert len(folders) == 1
    assert np.array_equal(np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy"))
    reference = make_groups(root)
    assert np.array_equal(np.load(tmp_path / "rank0.npy"), np.asarray(reference._pools.rows))


def test_take_rows_matches_chunked_take():
    column = pa.chunked_array([["a", "b", "c"], ["d"], [], ["e", "f"]])
    for rows in ([5, 0, 3, 3, 1], [0, 1, 2], [4, 5], []):
        expected = column.take(pa.array(rows, type=pa.int64())).to_pylist()
        assert take_rows(column, np.array(rows, dtype=np.int64)).to_pylist() == expected
    with pytest.raises(IndexError):
        take_rows(column, np.array([6]))


def test_pools_that_are_all_empty_are_cached_too(tmp_path):
    root = write_prepared(tmp_path / "data")
    # q5's only candidate is its own positive: with bm25 alone and depth 0 every pool is empty
    groups = make_groups(root, negs_sources="bm25", num_negs_per_system=0, empty_pool="in_batch")
    assert groups._pools.folder is not None and len(groups._pools.rows) == 0
    assert (
        make_groups(root, negs_sources="bm25", num_negs_per_system=0, empty_pool="in_batch").num_empty_pools
        == 5
    )
