"""`led encode` and led_hf.retrieval.encode: order, sharding, resume, manifest checks, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from trainer_helpers import free_port, join_gloo_ranks

from led_hf.errors import LedError
from led_hf.retrieval import encode as enc

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(prepared_msmarco):
    from led_hf.data.store import PreparedData

    return PreparedData(prepared_msmarco)


@pytest.fixture(scope="module")
def model_parts(tiny_bert_dir):
    """(collate, encode_fn) for passages, from the project's collator and dense encoder."""
    from transformers import AutoTokenizer

    from led_hf.collators.encode import EncodeCollator
    from led_hf.modeling.dense import DenseEncoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = DenseEncoder.from_pretrained(str(tiny_bert_dir)).eval()
    collate = EncodeCollator(tokenizer, max_length=24, kind="passage")
    return collate, (lambda batch: model.encode_passage(**batch))


class Counting:
    """Wraps an encode function and counts the rows it encoded."""

    def __init__(self, fn):
        self.fn, self.rows = fn, 0

    def __call__(self, batch):
        self.rows += len(batch["input_ids"])
        return self.fn(batch)


def run(data, out, model_parts, num_shards=1, shards=None, **kwargs):
    collate, encode_fn = model_parts
    kwargs.setdefault("manifest", {"model": "tiny", "data": str(data.root), "max_length": 24})
    return enc.encode_to_folder(
        enc.corpus_source(data),
        out,
        encode_fn=encode_fn,
        collate=collate,
        shard_indices=range(num_shards) if shards is None else shards,
        num_shards=num_shards,
        batch_size=kwargs.pop("batch_size", 4),
        chunk_rows=kwargs.pop("chunk_rows", 5),
        progress=False,
        **kwargs,
    )


# ----------------------------------------------------------------------------- pure helpers
def test_shard_range_is_contiguous_and_covers_all_rows():
    assert [list(enc.shard_range(10, i, 3)) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert [len(enc.shard_range(2, i, 4)) for i in range(4)] == [0, 1, 0, 1]
    assert enc.shard_dirname(3, 12) == "shard-00003-of-00012"
    with pytest.raises(LedError):
        enc.shard_range(10, 3, 3)


def test_length_batches_longest_first_stable():
    batches = enc.length_batches(np.array([3, 9, 5, 9]), 2)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0]]


def test_token_lengths_count_real_tokens(model_parts):
    collate, _ = model_parts
    features = [
        {"id": "a", "text": "aspirin", "title": ""},
        {"id": "b", "text": "vitamin d deficiency", "title": ""},
    ]
    lengths = enc.token_lengths(features, collate, chunk=1)
    one_by_one = [int(collate([f])["batch"]["attention_mask"].sum()) for f in features]
    assert lengths.tolist() == one_by_one and lengths[1] > lengths[0]


def test_query_split_selects_queries_with_qrels(data):
    source = enc.query_source(data, "dev")
    qids = sorted(set(data.qrels("dev")["qid"]))
    assert sorted(f["id"] for f in source.features(0, len(source))) == qids
    assert all("title" not in f for f in source.features(0, len(source)))
    with pytest.raises(LedError, match="no qrels split"):
        enc.query_source(data, "nope")


# ----------------------------------------------------------------------------- encoding
def test_embeddings_equal_one_by_one_unpadded(data, model_parts, tmp_path):
    collate, encode_fn = model_parts
    assert run(data, tmp_path / "emb", model_parts) == [0]
    ids, embeddings = enc.load_embeddings(tmp_path / "emb")
    assert ids == data.corpus["pid"]
    features = enc.corpus_source(data).features(0, len(ids))
    # The length sort must really reorder rows here, or the test could not catch a lost permutation.
    lengths = enc.token_lengths(features, collate)
    assert len(set(lengths.tolist())) > 2 and not np.array_equal(
        np.argsort(-lengths, kind="stable"), np.arange(len(ids))
    )
    with torch.inference_mode():
        expected = np.stack([encode_fn(collate([f])["batch"])[0].numpy() for f in features])
    assert embeddings.dtype == np.float32 and embeddings.shape == expected.shape
    np.testing.assert_allclose(embeddings, expected, atol=1e-5, rtol=0)
    manifest = json.loads((tmp_path / "emb" / "manifest.json").read_text())
    assert manifest | {"data": None} == {
        "kind": "dense",
        "dim": 32,
        "num_shards": 1,
        "dtype": "float32",
        "model": "tiny",
        "what": "passages",
        "split": None,
        "data": None,
        "max_length": 24,
        "num_rows": len(ids),
    }


def test_union_of_shards_equals_one_shard(data, model_parts, tmp_path):
    run(data, tmp_path / "one", model_parts)
    assert run(data, tmp_path / "five", model_parts, num_shards=5, shards=[4, 0, 2]) == [4, 0, 2]
    assert run(data, tmp_path / "five", model_parts, num_shards=5) == [1, 3]
    one_ids, one = enc.load_embeddings(tmp_path / "one")
    five_ids, five = enc.load_embeddings(tmp_path / "five")
    assert five_ids == one_ids
    np.testing.assert_allclose(five, one, atol=1e-5, rtol=0)
    shard = tmp_path / "five" / "shard-00002-of-00005"
    rows = enc.shard_range(len(one_ids), 2, 5)
    assert (shard / "ids.txt").read_text(encoding="utf-8").splitlines() == one_ids[rows.start : rows.stop]
    assert sorted(p.name for p in (tmp_path / "five").iterdir()) == ["manifest.json"] + [
        f"shard-{i:05d}-of-00005" for i in range(5)
    ]


def test_resume_recomputes_only_the_missing_shard(data, model_parts, tmp_path):
    out = tmp_path / "emb"
    run(data, out, model_parts, num_shards=3)
    before = enc.load_embeddings(out)
    stamps = {p.name: (p / "embeddings.npy").stat().st_mtime_ns for p in out.glob("shard-*")}
    import shutil

    shutil.rmtree(out / "shard-00001-of-00003")
    counting = Counting(model_parts[1])
    assert run(data, out, (model_parts[0], counting), num_shards=3) == [1]
    # one probe row for the width + the 4 rows of shard 1 (12 passages / 3)
    assert counting.rows == 1 + len(enc.shard_range(len(before[0]), 1, 3))
    for name in ("shard-00000-of-00003", "shard-00002-of-00003"):
        assert (out / name / "embeddings.npy").stat().st_mtime_ns == stamps[name]
    after = enc.load_embeddings(out)
    assert after[0] == before[0]
    np.testing.assert_array_equal(after[1], before[1])
    counting.rows = 0
    assert run(data, out, (model_parts[0], counting), num_shards=3) == []
    assert counting.rows == 1


def test_half_written_shard_is_not_taken_as_complete(data, model_parts, tmp_path):
    out = tmp_path / "emb"
    run(data, out, model_parts, num_shards=2, shards=[0])
    # What a killed run leaves behind: a temporary folder holding a partial shard.
    stale = out / ".shard-00001-of-00002.tmp-killed"
    stale.mkdir()
    np.save(stale / "embeddings.npy", np.zeros((2, 32), dtype=np.float32))
    (stale / "ids.txt").write_text("0\n1\n", encoding="utf-8")
    with pytest.raises(LedError, match="missing"):
        enc.load_embeddings(out)
    assert run(data, out, model_parts, num_shards=2) == [1]
    assert not stale.exists()
    ids, embeddings = enc.load_embeddings(out)
    assert len(ids) == len(embeddings) == len(data.corpus) and np.abs(embeddings[-1]).sum() > 0


def test_failure_mid_shard_leaves_no_shard_folder(data, model_parts, tmp_path):
    collate, encode_fn = model_parts
    calls = {"n": 0}

    def failing(batch):
        calls["n"] += 1
        if calls["n"] == 3:  # after the probe and one batch
            raise RuntimeError("boom")
        return encode_fn(batch)

    with pytest.raises(RuntimeError, match="boom"):
        run(data, tmp_path / "emb", (collate, failing))
    assert [p.name for p in (tmp_path / "emb").iterdir()] == ["manifest.json"]


def test_manifest_mismatch_and_damaged_shard_error(data, model_parts, tmp_path):
    out = tmp_path / "emb"
    run(data, out, model_parts, num_shards=2)
    with pytest.raises(LedError, match="num_shards=2"):
        run(data, out, model_parts, num_shards=3)
    with pytest.raises(LedError, match="model='tiny'"):
        run(
            data,
            out,
            model_parts,
            num_shards=2,
            manifest={"model": "other", "data": str(data.root), "max_length": 24},
        )
    with pytest.raises(LedError, match="max_length"):
        run(
            data,
            out,
            model_parts,
            num_shards=2,
            manifest={"model": "tiny", "data": str(data.root), "max_length": 32},
        )
    np.save(out / "shard-00001-of-00002" / "embeddings.npy", np.zeros((1, 32), dtype=np.float32))
    with pytest.raises(LedError, match="shape"):
        run(data, out, model_parts, num_shards=2)


def test_bad_ids_are_refused(tmp_path):
    with pytest.raises(LedError, match="one per line"):
        enc.DenseShardWriter(tmp_path, ["ok", "bad\u2028id"], dim=4)


# ----------------------------------------------------------------------------- CLI
def cli(*args):
    from led_hf.cli.main import main

    return main(["encode", *map(str, args)])


def test_cli_corpus_and_queries(data, tiny_bert_dir, model_parts, tmp_path, capsys):
    out = tmp_path / "corpus"
    base = [
        "--model",
        tiny_bert_dir,
        "--data",
        data.root,
        "--batch-size",
        3,
        "--max-length",
        24,
        "--no-progress",
    ]
    assert cli(*base, "--corpus", "--output", out, "--num-shards", 2) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == str(Path(tiny_bert_dir).resolve()) and manifest["num_shards"] == 2
    ids, embeddings = enc.load_embeddings(out)
    features = enc.corpus_source(data).features(0, len(ids))
    collate, encode_fn = model_parts
    with torch.inference_mode():
        np.testing.assert_allclose(
            embeddings, encode_fn(collate(features)["batch"]).numpy(), atol=1e-5, rtol=0
        )
    assert cli(*base, "--corpus", "--output", out, "--num-shards", 2) == 0
    assert "0 shard(s) of 2" in capsys.readouterr().out

    assert cli(*base, "--queries", "dev", "--output", tmp_path / "q", "--shard", "0/1") == 0
    q_ids, q_embeddings = enc.load_embeddings(tmp_path / "q")
    assert sorted(q_ids) == sorted(set(data.qrels("dev")["qid"])) and q_embeddings.shape == (len(q_ids), 32)
    assert json.loads((tmp_path / "q" / "manifest.json").read_text())["split"] == "dev"
    assert cli(*base[:-3], "--queries", "--output", tmp_path / "allq") == 0
    assert enc.load_embeddings(tmp_path / "allq")[0] == data.queries["qid"]
    assert json.loads((tmp_path / "allq" / "manifest.json").read_text())["max_length"] == 32


def test_cli_errors(data, tiny_bert_dir, tmp_path, capsys):
    base = ["--model", tiny_bert_dir, "--data", data.root, "--no-progress"]
    assert cli(*base, "--corpus", "--output", tmp_path / "a", "--kind", "splade", "--store-fp16") == 1
    assert "--store-fp16 is for dense embeddings" in capsys.readouterr().err
    assert cli(*base, "--corpus", "--output", tmp_path / "a", "--shard", "3/2") == 1
    assert cli(*base, "--queries", "nope", "--output", tmp_path / "a") == 1
    assert "no qrels split 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert cli(*base, "--corpus", "--output", tmp_path / "b", "--num-shards", 2) == 0
    assert cli(*base, "--corpus", "--output", tmp_path / "b", "--num-shards", 3) == 1
    assert "use another --output or --overwrite" in capsys.readouterr().err
    assert cli(*base, "--corpus", "--output", tmp_path / "b", "--num-shards", 3, "--overwrite") == 0
    assert len(list((tmp_path / "b").glob("shard-*"))) == 3
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "keep.txt").write_text("mine")
    assert cli(*base, "--corpus", "--output", tmp_path / "c", "--overwrite") == 1
    assert (tmp_path / "c" / "keep.txt").exists()
    with pytest.raises(SystemExit) as exit_info:
        cli("--help")
    assert exit_info.value.code == 0 and "--queries" in capsys.readouterr().out


def _encode_rank(rank, port, model, data_root, out):
    # a fresh (spawned) process per rank, as `accelerate launch` / torchrun would start them; spawning (not
    # accelerate's notebook_launcher) keeps this independent of Accelerator state left by earlier tests
    from led_hf.cli.encode import main

    join_gloo_ranks(rank, port)
    code = main(
        [
            "--model",
            model,
            "--data",
            data_root,
            "--corpus",
            "--output",
            out,
            "--num-shards",
            "3",
            "--max-length",
            "24",
            "--no-progress",
        ]
    )
    if code != 0:
        raise RuntimeError(f"rank {rank} exited with {code}")


@pytest.mark.slow
def test_two_processes_split_shards(data, tiny_bert_dir, tmp_path):
    import torch

    port = free_port()
    torch.multiprocessing.spawn(
        _encode_rank,
        args=(port, str(tiny_bert_dir), str(data.root), str(tmp_path / "ddp")),
        nprocs=2,
        join=True,
    )
    assert (
        cli(
            "--model",
            tiny_bert_dir,
            "--data",
            data.root,
            "--corpus",
            "--output",
            tmp_path / "one",
            "--max-length",
            24,
            "--no-progress",
        )
        == 0
    )
    ids, two = enc.load_embeddings(tmp_path / "ddp")
    one_ids, one = enc.load_embeddings(tmp_path / "one")
    assert ids == one_ids
    np.testing.assert_allclose(two, one, atol=1e-5, rtol=0)
