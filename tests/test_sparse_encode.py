"""Sparse (SPLADE) encoding: CSR shard format, row order, resume, manifest and vocab checks, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from led_hf.collators.encode import EncodeCollator
from led_hf.errors import LedError
from led_hf.modeling.splade import SpladeEncoder
from led_hf.retrieval.encode import TextSource
from led_hf.retrieval.sparse_encode import (
    encode_sparse_to_folder,
    load_sparse,
    vocabulary_strings,
)

TEXTS = [
    "aspirin reduces the risk of heart attack",
    "salt",
    "short sleep raises blood pressure in adults",
    "statins lower cholesterol",
    "what is the query",
    "passage text here and more passage text",
    "x",
]


@pytest.fixture(scope="module")
def setup(tiny_bert_mlm_dir):
    import datasets

    table = datasets.Dataset.from_dict(
        {"pid": [f"p{i}" for i in range(len(TEXTS))], "title": [""] * len(TEXTS), "text": TEXTS}
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    encoder = SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).eval()
    collate = EncodeCollator(tokenizer, max_length=16, kind="passage")
    with torch.no_grad():
        expected = encoder.encode_passage(
            collate([{"id": f"p{i}", "text": t} for i, t in enumerate(TEXTS)])["batch"]
        )
    return TextSource(table, "pid", "passages"), tokenizer, encoder, collate, expected.numpy()


def _encode(setup, out, shard_indices=(0, 1, 2), num_shards=3, **kwargs):
    source, tokenizer, encoder, collate, _ = setup
    kwargs = {"batch_size": 2, "chunk_rows": 3, "progress": False, **kwargs}
    return encode_sparse_to_folder(
        source,
        out,
        encode_fn=encoder.encode_passage,
        collate=collate,
        vocab=vocabulary_strings(tokenizer, encoder.vocab_size),
        shard_indices=list(shard_indices),
        num_shards=num_shards,
        manifest={"model": "tiny", "max_length": 16},
        **kwargs,
    )


def test_csr_shards_hold_the_weights_in_row_order(setup, tmp_path):
    _, tokenizer, encoder, _, expected = setup
    assert _encode(setup, tmp_path / "out") == [0, 1, 2]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["kind"] == "sparse" and manifest["vocab_size"] == len(tokenizer) == expected.shape[1]
    assert manifest["num_shards"] == 3 and manifest["what"] == "passages" and manifest["num_rows"] == 7
    vocab = (tmp_path / "out" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab == tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    # 7 rows in 3 shards: rows 0-1, 2-3, 4-6
    shard = tmp_path / "out" / "shard-00002-of-00003"
    assert (shard / "ids.txt").read_text().splitlines() == ["p4", "p5", "p6"]
    indptr, indices, values = (
        np.load(shard / n, allow_pickle=False) for n in ("indptr.npy", "indices.npy", "values.npy")
    )
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and values.dtype == np.float32
    assert indptr.shape == (4,) and indptr[-1] == len(indices) == len(values) and np.all(values > 0)
    for row in range(3):
        terms = indices[indptr[row] : indptr[row + 1]]
        assert np.all(np.diff(terms) > 0)
        np.testing.assert_array_equal(terms, np.flatnonzero(expected[4 + row]))
    ids, matrix = load_sparse(tmp_path / "out")
    assert ids == [f"p{i}" for i in range(7)]
    np.testing.assert_allclose(matrix.toarray(), expected, rtol=1e-5, atol=1e-6)


def test_resume_encodes_only_missing_shards(setup, tmp_path):
    import shutil

    out = tmp_path / "out"
    assert _encode(setup, out, shard_indices=[1]) == [1]
    kept = (out / "shard-00001-of-00003" / "values.npy").stat().st_mtime_ns
    (out / ".shard-00000-of-00003.tmp-dead").mkdir()  # a killed run's leftover
    assert _encode(setup, out) == [0, 2]
    assert (out / "shard-00001-of-00003" / "values.npy").stat().st_mtime_ns == kept
    assert not list(out.glob(".shard-*"))
    shutil.rmtree(out / "shard-00000-of-00003")
    assert _encode(setup, out) == [0]
    np.testing.assert_allclose(load_sparse(out)[1].toarray(), setup[4], rtol=1e-5, atol=1e-6)


def test_mismatched_rerun_and_damage_are_refused(setup, tmp_path):
    out = tmp_path / "out"
    _encode(setup, out, shard_indices=[0])
    with pytest.raises(LedError, match="num_shards"):
        _encode(setup, out, num_shards=2, shard_indices=[0])
    with pytest.raises(LedError, match="incomplete"):
        load_sparse(out)
    (out / "shard-00000-of-00003" / "indptr.npy").write_bytes(b"junk")
    with pytest.raises(LedError, match="damaged"):
        _encode(setup, out)


def test_writer_refuses_negative_weights(setup, tmp_path):
    source, tokenizer, encoder, collate, _ = setup
    with pytest.raises(LedError, match="negative"):
        encode_sparse_to_folder(
            source,
            tmp_path / "out",
            encode_fn=lambda batch: -encoder.encode_passage(batch),
            collate=collate,
            vocab=vocabulary_strings(tokenizer, encoder.vocab_size),
            shard_indices=[0],
            num_shards=1,
            progress=False,
        )
    assert not (tmp_path / "out" / "shard-00000-of-00001").exists()


def test_vocabulary_strings_pads_missing_ids(setup):
    tokenizer = setup[1]
    vocab = vocabulary_strings(tokenizer, len(tokenizer) + 2)
    assert vocab[:3] == ["[PAD]", "[UNK]", "[CLS]"] and vocab[-2:] == [
        f"[unused-{len(tokenizer)}]",
        f"[unused-{len(tokenizer) + 1}]",
    ]


def test_led_encode_dispatches_splade_checkpoints(tiny_bert_mlm_dir, prepared_beir, tmp_path):
    from led_hf.cli.main import main
    from led_hf.data.store import PreparedData

    checkpoint = tmp_path / "splade"
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).save_pretrained(
        checkpoint, AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    )
    common = ["--model", str(checkpoint), "--data", str(prepared_beir), "--no-progress", "--max-length", "24"]
    assert (
        main(["encode", *common, "--corpus", "--output", str(tmp_path / "corpus"), "--num-shards", "2"]) == 0
    )
    ids, matrix = load_sparse(tmp_path / "corpus")
    corpus = PreparedData(prepared_beir).corpus
    assert ids == corpus["pid"] and matrix.shape == (
        len(corpus),
        len(AutoTokenizer.from_pretrained(checkpoint)),
    )
    assert matrix.nnz > 0 and (matrix.data > 0).all()
    # a plain MLM folder (no led_config.json) is encoded sparsely when asked for
    assert (
        main(
            [
                "encode",
                *common,
                "--kind",
                "splade",
                "--model",
                str(tiny_bert_mlm_dir),
                "--queries",
                "--output",
                str(tmp_path / "queries"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "queries" / "manifest.json").read_text())["what"] == "queries"
    # rerun: every shard complete, nothing encoded again
    assert (
        main(["encode", *common, "--corpus", "--output", str(tmp_path / "corpus"), "--num-shards", "2"]) == 0
    )
    # the shard format is what the inverted index reads; its float scores equal exact dot products
    assert (
        main(
            [
                "index",
                "--vectors",
                str(tmp_path / "corpus"),
                "--output",
                str(tmp_path / "index"),
                "--float",
                "--quiet",
            ]
        )
        == 0
    )
    run = tmp_path / "run.trec"
    search = ["search", "--index", str(tmp_path / "index"), "--output", str(run), "--depth", "3", "--queries"]
    # the queries above come from the plain MLM, the index from the checkpoint: refused, nothing written
    assert main([*search, str(tmp_path / "queries")]) == 1 and not run.exists()
    assert main(["encode", *common, "--queries", "--output", str(tmp_path / "queries-ckpt")]) == 0
    assert main([*search, str(tmp_path / "queries-ckpt")]) == 0
    query_ids, queries = load_sparse(tmp_path / "queries-ckpt")
    scores = (queries @ matrix.T).toarray()
    first = run.read_text().splitlines()[0].split()
    row = query_ids.index(first[0])
    assert scores[row].max() > 0
    assert scores[row][ids.index(first[2])] == pytest.approx(scores[row].max(), rel=1e-5)  # ties may swap ids
    assert float(first[4]) == pytest.approx(scores[row].max(), rel=1e-4)
