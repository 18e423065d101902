"""Embedded inverted index: exact top-k against a float64 numpy brute force, sharded builds, resume, mmap reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from led_hf.errors import InputError, LedError
from led_hf.retrieval.impact import quantize
from led_hf.retrieval.inverted_build import build_inverted_index
from led_hf.retrieval.inverted_index import InvertedIndex, search_sparse


def random_sparse(rng, rows: int, vocab_size: int, mean_nnz: int, few_values: bool = False):
    """CSR rows with distinct, increasing term ids; few_values draws weights from a small set (many ties)."""
    indptr, indices, values = [0], [], []
    for _ in range(rows):
        nnz = int(rng.integers(0, 2 * mean_nnz + 1))
        terms = np.sort(rng.choice(vocab_size, size=min(nnz, vocab_size), replace=False))
        weights = (
            rng.choice([0.5, 1.0, 1.5], size=len(terms))
            if few_values
            else rng.gamma(2.0, 0.6, size=len(terms))
        )
        indices.append(terms)
        values.append(np.maximum(weights, 0.001))
        indptr.append(indptr[-1] + len(terms))
    return (
        np.array(indptr, np.int64),
        np.concatenate(indices).astype(np.int32),
        np.concatenate(values).astype(np.float32),
    )


def write_sparse_folder(
    folder: Path,
    indptr,
    indices,
    values,
    ids,
    vocab_size: int,
    num_shards: int = 1,
    what: str = "passages",
    vocab: list[str] | None = None,
) -> Path:
    """The `led encode` sparse layout, rows split into contiguous shards as led encode splits them."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    manifest = {
        "kind": "sparse",
        "vocab_size": vocab_size,
        "num_shards": num_shards,
        "what": what,
        "model": "fixture",
        "num_rows": n,
        "dtype": "float32",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    vocab = vocab or [f"tok{v}" for v in range(vocab_size)]
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab), encoding="utf-8")
    for i in range(num_shards):
        start, stop = i * n // num_shards, (i + 1) * n // num_shards
        shard = folder / f"shard-{i:05d}-of-{num_shards:05d}"
        shard.mkdir()
        lo, hi = indptr[start], indptr[stop]
        np.save(shard / "indptr.npy", (indptr[start : stop + 1] - lo).astype(np.int64))
        np.save(shard / "indices.npy", indices[lo:hi].astype(np.int32))
        np.save(shard / "values.npy", values[lo:hi].astype(np.float32))
        (shard / "ids.txt").write_text("".join(f"{x}\n" for x in ids[start:stop]), encoding="utf-8")
    return folder


def dense(indptr, indices, values, vocab_size, transform=lambda v: v.astype(np.float64)):
    matrix = np.zeros((len(indptr) - 1, vocab_size), dtype=np.float64)
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    matrix[rows, indices] = transform(values)
    return matrix


def brute_force_top_k(query_matrix, doc_matrix, depth):
    """Reference: float64 dense scores, best first, ties by smaller row; only docs with a positive score."""
    scores = query_matrix @ doc_matrix.T
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        order = order[row[order] > 0][:depth]
        out.append((row[order], order))
    return out


def is_memory_mapped(array) -> bool:
    """True when the array (or a base it views) is a memory map: scipy wraps but must not copy it."""
    import mmap

    while array is not None:
        if isinstance(array, (np.memmap, mmap.mmap)):
            return True
        array = getattr(array, "base", None)
    return False


VOCAB_SIZE = 300


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    docs = random_sparse(rng, 400, VOCAB_SIZE, 25)
    queries = random_sparse(rng, 37, VOCAB_SIZE, 6)
    ids = [f"d{i}" for i in range(400)]
    return docs, queries, ids


@pytest.mark.parametrize("quantized", [True, False])
def test_exact_top_k_matches_brute_force(tmp_path, corpus, quantized):
    (indptr, indices, values), queries, ids = corpus
    vectors = write_sparse_folder(tmp_path / "enc", indptr, indices, values, ids, VOCAB_SIZE, num_shards=3)
    stats = build_inverted_index(vectors, tmp_path / "idx", quantized=quantized, progress=False)
    assert stats["num_docs"] == 400 and stats["built"] == [f"shard-{i:05d}-of-00003" for i in range(3)]
    transform = (lambda v: quantize(v).astype(np.float64)) if quantized else (lambda v: v.astype(np.float64))
    doc_matrix = dense(indptr, indices, values, VOCAB_SIZE, transform)
    query_matrix = dense(*queries, VOCAB_SIZE, transform)
    with InvertedIndex.load(tmp_path / "idx") as index:
        assert index.doc_ids() == ids and index.doc_id(123) == "d123"
        tiny = [array.copy() for array in queries]
        tiny[2][::5] = (
            0.001  # rounds to 0 when quantised: dropped from the query, never from the caller's arrays
        )
        before = [array.copy() for array in tiny]
        assert index.queries(*tiny).nnz == len(tiny[1]) - (len(tiny[1]) + 4) // 5 * quantized
        assert all(np.array_equal(a, b) for a, b in zip(tiny, before))
        query_csr = index.queries(*queries)
        for workers in (1, 2):
            scores, rows = index.search(query_csr, depth=10, workers=workers, block_size=8)
            for q, (want_scores, want_rows) in enumerate(brute_force_top_k(query_matrix, doc_matrix, 10)):
                k = len(want_rows)
                assert np.all(rows[q, k:] == -1)
                if quantized:  # integer-exact, so rows must match exactly, ties included
                    assert scores.dtype == np.int64
                    np.testing.assert_array_equal(scores[q, :k], want_scores.astype(np.int64))
                    np.testing.assert_array_equal(rows[q, :k], want_rows)
                else:  # float32 sums: same scores to rounding; rows equal wherever scores are well apart
                    np.testing.assert_allclose(scores[q, :k], want_scores, rtol=1e-5)
                    assert set(rows[q, :k]) == set(want_rows) or np.isclose(want_scores[-1], scores[q, k - 1])


@pytest.mark.parametrize("quantized", [True, False])
def test_memory_budget_changes_blocks_not_results(tmp_path, corpus, quantized):
    (indptr, indices, values), queries, ids = corpus
    vectors = write_sparse_folder(tmp_path / "enc", indptr, indices, values, ids, VOCAB_SIZE)
    build_inverted_index(vectors, tmp_path / "idx", quantized=quantized, progress=False)
    with InvertedIndex(tmp_path / "idx") as index:
        query_csr = index.queries(*queries)
        want_scores, want_rows = index.search(query_csr, depth=25)  # one block of 37 queries
        for budget, workers in ((1, 1), (1, 2), (30_000, 1), (30_000, 2), (10**12, 2)):
            scores, rows = index.search(query_csr, depth=25, workers=workers, memory_budget=budget)
            assert scores.dtype == want_scores.dtype
            np.testing.assert_array_equal(scores, want_scores)  # bit-identical, floats included
            np.testing.assert_array_equal(rows, want_rows)


def test_query_blocks_follow_the_budget(tmp_path, corpus, monkeypatch):
    (indptr, indices, values), queries, ids = corpus
    vectors = write_sparse_folder(tmp_path / "enc", indptr, indices, values, ids, VOCAB_SIZE)
    build_inverted_index(vectors, tmp_path / "idx", progress=False)
    with InvertedIndex(tmp_path / "idx") as index:
        query_csr = index.queries(*queries)
        num_queries = query_csr.shape[0]
        # a query's share: min(N, postings of its terms) entries of 12 bytes
        df = np.diff(index.postings.indptr)
        cost = [
            min(index.num_docs, int(df[query_csr.indices[a:b]].sum())) * 12
            for a, b in zip(query_csr.indptr[:-1], query_csr.indptr[1:])
        ]
        assert index.query_blocks(query_csr, memory_budget=1) == [(q, q + 1) for q in range(num_queries)]
        assert len(index.query_blocks(query_csr, block_size=8, memory_budget=10**12)) == 5  # 37 by 8
        budget = 3 * max(cost)
        blocks = index.query_blocks(query_csr, memory_budget=budget)
        assert blocks[0][0] == 0 and blocks[-1][1] == num_queries
        assert all(a[1] == b[0] for a, b in zip(blocks[:-1], blocks[1:]))
        for (start, stop), following in zip(blocks, blocks[1:] + [None]):
            assert sum(cost[start:stop]) <= budget
            if following is not None:  # greedy: the next query would not have fitted
                assert sum(cost[start : stop + 1]) > budget
            # the bound holds: the block's score matrix has at most that many entries
            assert (query_csr[start:stop] @ index.postings).nnz * 12 <= sum(cost[start:stop])
        assert 2 < len(blocks) < num_queries
        seen = []
        search_block = InvertedIndex._search_block
        monkeypatch.setattr(
            InvertedIndex,
            "_search_block",
            lambda self, block, depth: seen.append(block.shape[0]) or search_block(self, block, depth),
        )
        index.search(query_csr, depth=5, memory_budget=budget)
        assert seen == [stop - start for start, stop in blocks]


def test_ties_keep_smaller_rows_and_depth_larger_than_matches(tmp_path):
    rng = np.random.default_rng(3)
    docs = random_sparse(rng, 200, 40, 4, few_values=True)
    queries = random_sparse(rng, 9, 40, 2, few_values=True)
    ids = [f"p{i}" for i in range(200)]
    build_inverted_index(
        write_sparse_folder(tmp_path / "enc", *docs, ids, 40), tmp_path / "idx", progress=False
    )
    transform = lambda v: quantize(v).astype(np.float64)  # noqa: E731
    reference = brute_force_top_k(dense(*queries, 40, transform), dense(*docs, 40, transform), 500)
    with InvertedIndex(tmp_path / "idx") as index:
        for depth in (5, 500):
            scores, rows = index.search(index.queries(*queries), depth=depth)
            for q, (want_scores, want_rows) in enumerate(reference):
                k = min(depth, len(want_rows))
                np.testing.assert_array_equal(rows[q, :k], want_rows[:k])
                np.testing.assert_array_equal(scores[q, :k], want_scores[:k].astype(np.int64))
                assert np.all(rows[q, k:] == -1)


def test_sharded_build_equals_single_build_and_files_are_memory_mapped(tmp_path, corpus):
    (indptr, indices, values), _, ids = corpus
    one = build_inverted_index(
        write_sparse_folder(tmp_path / "enc1", indptr, indices, values, ids, VOCAB_SIZE),
        tmp_path / "idx1",
        progress=False,
    )
    many = build_inverted_index(
        write_sparse_folder(tmp_path / "enc5", indptr, indices, values, ids, VOCAB_SIZE, 5),
        tmp_path / "idx5",
        progress=False,
    )
    assert one["num_postings"] == many["num_postings"] > 0
    for name in (
        "term_ptr.npy",
        "doc_rows.npy",
        "weights.npy",
        "term_max.npy",
        "doc_ids.bin",
        "doc_id_offsets.npy",
        "vocab.txt",
    ):
        assert (tmp_path / "idx1" / name).read_bytes() == (tmp_path / "idx5" / name).read_bytes(), name
    index = InvertedIndex(tmp_path / "idx5")
    assert is_memory_mapped(index.postings.indices) and is_memory_mapped(index.postings.data)
    # postings are doc-sorted per term and hold exactly the non-zero ×100 weights
    csc = index.postings.tocsr()
    rebuilt = dense(indptr, indices, values, VOCAB_SIZE, lambda v: quantize(v).astype(np.float64))
    np.testing.assert_array_equal(csc.toarray().T, rebuilt)
    assert not list(tmp_path.glob(".idx*"))  # parts and staging folders are gone after success


def test_resume_rebuilds_only_missing_or_stale_parts(tmp_path, corpus):
    (indptr, indices, values), _, ids = corpus
    vectors = write_sparse_folder(tmp_path / "enc", indptr, indices, values, ids, VOCAB_SIZE, num_shards=4)
    good_values = np.load(vectors / "shard-00002-of-00004" / "values.npy")
    bad = good_values.copy()
    bad[3] = -1.0
    np.save(vectors / "shard-00002-of-00004" / "values.npy", bad)
    with pytest.raises(InputError, match=r"shard-00002-of-00004/values.npy: row of id 'd2\d\d'"):
        build_inverted_index(vectors, tmp_path / "idx", progress=False)
    assert not (tmp_path / "idx").exists()
    assert sorted(p.name for p in (tmp_path / ".idx.parts").iterdir()) == [
        "shard-00000-of-00004",
        "shard-00001-of-00004",
    ]
    np.save(vectors / "shard-00002-of-00004" / "values.npy", good_values)  # fixed: parts 0, 1 are reused
    shutil.rmtree(tmp_path / ".idx.parts" / "shard-00001-of-00004")  # a removed part is rebuilt
    stats = build_inverted_index(vectors, tmp_path / "idx", progress=False)
    assert stats["reused"] == ["shard-00000-of-00004"]
    assert stats["built"] == ["shard-00001-of-00004", "shard-00002-of-00004", "shard-00003-of-00004"]
    reference = build_inverted_index(
        write_sparse_folder(tmp_path / "enc1", indptr, indices, values, ids, VOCAB_SIZE),
        tmp_path / "ref",
        progress=False,
    )
    assert reference["num_postings"] == stats["num_postings"]
    for name in ("doc_rows.npy", "weights.npy", "term_ptr.npy", "doc_ids.bin"):
        assert (tmp_path / "idx" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    with pytest.raises(LedError, match="already exists"):
        build_inverted_index(vectors, tmp_path / "idx", progress=False)


def test_bad_inputs_name_the_file(tmp_path, corpus):
    (indptr, indices, values), _, ids = corpus
    dup_ids = ids[:-1] + ["d5"]
    vectors = write_sparse_folder(
        tmp_path / "dup", indptr, indices, values, dup_ids, VOCAB_SIZE, num_shards=2
    )
    with pytest.raises(InputError, match=r"shard-00001-of-00002/ids.txt:\d+: id 'd5' also appears"):
        build_inverted_index(vectors, tmp_path / "idx", progress=False)
    bad_terms = indices.copy()
    bad_terms[0] = VOCAB_SIZE
    vectors = write_sparse_folder(tmp_path / "oob", indptr, bad_terms, values, ids, VOCAB_SIZE)
    with pytest.raises(InputError, match="indices.npy: row of id 'd0' has a term id outside"):
        build_inverted_index(vectors, tmp_path / "idx2", progress=False)
    vectors = write_sparse_folder(
        tmp_path / "partial", indptr, indices, values, ids, VOCAB_SIZE, num_shards=2
    )
    shutil.rmtree(vectors / "shard-00001-of-00002")
    with pytest.raises(LedError, match="incomplete: 1 of 2 shards missing"):
        build_inverted_index(vectors, tmp_path / "idx3", progress=False)


def test_search_sparse_results_and_cli(tmp_path, corpus):
    from led_hf.cli.main import main
    from led_hf.data.runs import read_run

    (indptr, indices, values), queries, ids = corpus
    vectors = write_sparse_folder(tmp_path / "enc", indptr, indices, values, ids, VOCAB_SIZE, num_shards=2)
    qids = [f"q{i}" for i in range(len(queries[0]) - 1)]
    query_folder = write_sparse_folder(tmp_path / "q", *queries, qids, VOCAB_SIZE, what="queries")
    assert (
        main(["index", "--backend", "inverted", "--vectors", str(vectors), "--output", str(tmp_path / "idx")])
        == 0
    )
    results = search_sparse(tmp_path / "idx", query_folder, depth=7, workers=1)
    assert list(results) == qids and all(len(hits) <= 7 for hits in results.values())
    transform = lambda v: quantize(v).astype(np.float64)  # noqa: E731
    reference = brute_force_top_k(
        dense(*queries, VOCAB_SIZE, transform), dense(indptr, indices, values, VOCAB_SIZE, transform), 7
    )
    for qid, (want_scores, want_rows) in zip(qids, reference):
        assert results[qid] == [(ids[r], float(s)) for s, r in zip(want_scores, want_rows)]
    assert (
        main(["index", "--backend", "inverted", "--vectors", str(vectors), "--output", str(tmp_path / "idx")])
        == 1
    )
    other_vocab = write_sparse_folder(
        tmp_path / "q2",
        *queries,
        qids,
        VOCAB_SIZE,
        what="queries",
        vocab=[f"x{v}" for v in range(VOCAB_SIZE)],
    )
    with pytest.raises(LedError, match="different vocabularies"):
        search_sparse(tmp_path / "idx", other_vocab)
    run = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--index",
                str(tmp_path / "idx"),
                "--queries",
                str(query_folder),
                "--output",
                str(run),
                "--depth",
                "7",
            ]
        )
        == 0
    )
    assert {q: sorted(h.items()) for q, h in read_run(run).items()} == {
        q: sorted(hits) for q, hits in results.items() if hits
    }
