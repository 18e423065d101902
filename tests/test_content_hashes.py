"""Start-up checks read recorded content hashes, not the corpus: `tree_sha256` takes each file's sha256 from
the `.content-sha256.json` its writer left, and rehashes only files whose size, mtime or inode changed."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

import led_hf.work_folder as work_folder
from led_hf.work_folder import CONTENT_RECORD, record_content_hashes, tree_sha256


def _plain_sha(path) -> str:
    """The same digest computed from scratch: names and sha256 of every file, records ignored."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != CONTENT_RECORD)
    for file in files:
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).hexdigest().encode() + b"\0")
    return digest.hexdigest()


@pytest.fixture
def hashed_files(monkeypatch):
    """The files `tree_sha256` reads, in order."""
    read = []
    original = work_folder.file_sha256
    monkeypatch.setattr(work_folder, "file_sha256", lambda path: read.append(path.name) or original(path))
    return read


def _encoding(tmp_path):
    folder = tmp_path / "enc"
    for shard in range(2):
        sub = folder / f"shard-{shard:05d}-of-00002"
        sub.mkdir(parents=True)
        np.save(sub / "embeddings.npy", np.arange(12, dtype=np.float32).reshape(3, 4) + shard)
        (sub / "ids.txt").write_text(f"a{shard}\nb{shard}\nc{shard}\n")
        record_content_hashes(sub)
    (folder / "manifest.json").write_text('{"kind": "dense"}')
    return folder


def test_recorded_folders_are_not_read_and_a_changed_shard_is_detected(tmp_path, hashed_files):
    folder = _encoding(tmp_path)
    hashed_files.clear()
    before = tree_sha256(folder)
    assert before == _plain_sha(folder)
    assert hashed_files == ["manifest.json"]  # the small unrecorded file only: no shard bytes read

    time.sleep(0.02)  # a later write: another mtime even on coarse clocks
    shard = folder / "shard-00001-of-00002" / "embeddings.npy"
    data = np.load(shard)
    data[0, 0] = 99.0  # same size, other bytes
    np.save(shard, data)
    hashed_files.clear()
    after = tree_sha256(folder)
    assert after != before and after == _plain_sha(folder)
    assert hashed_files == ["manifest.json", "embeddings.npy"]  # only the changed file is reread

    (folder / "shard-00000-of-00002" / "ids.txt").write_text("a0\nb0\n")  # another size
    assert tree_sha256(folder) != after


def test_prepared_tables_and_encodings_carry_records(prepared_msmarco, tmp_path, tiny_bert_dir, hashed_files):
    from led_hf.cli.main import main as led

    for table in ("corpus", "queries", "qrels/train", "negatives/bm25"):
        assert (prepared_msmarco / table / CONTENT_RECORD).is_file(), table
    hashed_files.clear()
    assert tree_sha256(prepared_msmarco / "corpus") == _plain_sha(prepared_msmarco / "corpus")
    assert hashed_files == []
    out = tmp_path / "enc"
    assert (
        led(
            [
                "encode",
                "--model",
                str(tiny_bert_dir),
                "--data",
                str(prepared_msmarco),
                "--corpus",
                "--max-length",
                "16",
                "--num-shards",
                "2",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    hashed_files.clear()
    tree_sha256(out)
    assert hashed_files == ["manifest.json"]
