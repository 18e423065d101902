"""BM25: scores against an independent float64 Lucene-BM25, the CLI's run and negatives, SciFact end to end."""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections import Counter

import numpy as np
import pytest
from datasets import load_from_disk

from led_hf.cli.main import main
from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.retrieval.bm25 import BM25Index, make_tokenizer, negatives_from_results

TEXTS = [
    "Aspirin reduces the risk of heart attack in high-risk patients.",
    "Vitamin D deficiency is common in northern latitudes during winter.",
    "Regular aerobic exercise lowers blood pressure; exercise helps the heart.",
    "High salt intake raises blood pressure in salt-sensitive people.",
    "Smoking is the leading cause of lung cancer.",
    "",
]
PIDS = [f"d{i}" for i in range(len(TEXTS))]
QUERIES = [
    "does exercise lower blood pressure",
    "aspirin heart attack",
    "the of and",
    "quantum chromodynamics",
]


def _lucene_bm25(texts, queries, k1, b):
    """float64 Lucene BM25 over the same token strings: idf = ln(1 + (N - df + .5)/(df + .5))."""
    tokenizer = make_tokenizer()
    # bm25s gives a text with no indexable word one empty token (length 1); mirrored so that avgdl agrees
    docs = [Counter(tokens) for tokens in tokenizer.tokenize(texts, return_as="string", show_progress=False)]
    lengths = np.array([sum(d.values()) for d in docs], dtype=np.float64)
    avgdl = lengths.mean()
    df = Counter(term for d in docs for term in d)
    n = len(docs)
    query_tokens = tokenizer.tokenize(queries, update_vocab=False, return_as="string", show_progress=False)
    out = []
    for tokens in query_tokens:
        scores = np.zeros(n)
        for term in (t for t in tokens if t):
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            tf = np.array([d.get(term, 0) for d in docs], dtype=np.float64)
            scores += idf * tf / (tf + k1 * (1 - b + b * lengths / avgdl))
        out.append(scores)
    return out


@pytest.mark.parametrize(("k1", "b"), [(0.9, 0.4), (1.5, 0.75)])
def test_scores_match_float64_lucene_bm25(k1, b):
    index = BM25Index.build(TEXTS, PIDS, k1=k1, b=b, progress=False)
    results = index.search(QUERIES, depth=4, progress=False)
    expected = _lucene_bm25(TEXTS, QUERIES, k1, b)
    for ranked, scores in zip(results, expected):
        matching = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0][:4]
        assert [pid for pid, _ in ranked] == [PIDS[i] for i in matching]
        np.testing.assert_allclose([s for _, s in ranked], scores[matching], rtol=1e-5)
    # stopwords-only and out-of-vocabulary queries retrieve nothing (no zero-score filler)
    assert results[2] == [] and results[3] == []
    assert len(results[0]) == 2 and results[0][0][0] == "d2"  # "exercise" twice beats d3


def test_stemming_conflates_word_forms():
    index = BM25Index.build(["runners running quickly", "a slow walk"], ["a", "b"], progress=False)
    assert [pid for pid, _ in index.search(["run"], progress=False)[0]] == ["a"]
    unstemmed = BM25Index.build(
        ["runners running quickly", "a slow walk"], ["a", "b"], stem=False, progress=False
    )
    assert unstemmed.search(["run"], progress=False)[0] == []


def test_without_pystemmer_falls_back_to_plain_tokens(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "Stemmer", None)  # makes `import Stemmer` raise ImportError
    tokenizer = make_tokenizer()
    assert tokenizer.stemmer is None
    assert "PyStemmer is not installed" in caplog.text


def test_negatives_drop_positives_keep_rank_order_and_limit():
    results = {"q1": [("a", 3.0), ("p", 2.5), ("b", 2.0), ("n", 1.0), ("c", 0.5)], "q2": [("p2", 1.0)]}
    qrels = {"q1": {"p": 1, "n": 0}, "q2": {"p2": 2}}
    assert negatives_from_results(results, qrels, keep=3) == {
        "qid": ["q1"],
        "pids": [["a", "b", "n"]],
        "scores": [[3.0, 2.0, 1.0]],
    }


def test_bad_parameters():
    with pytest.raises(LedError, match="k1"):
        BM25Index.build(TEXTS, PIDS, k1=-1, progress=False)
    with pytest.raises(LedError, match="empty corpus"):
        BM25Index.build([], [], progress=False)


def test_cli_writes_run_and_negatives(prepared_beir, tmp_path, capsys):
    data = tmp_path / "beir"
    shutil.copytree(prepared_beir, data)
    run_path = tmp_path / "bm25.train.trec"
    argv = [
        "bm25",
        "--data",
        str(data),
        "--split",
        "train",
        "--output",
        str(run_path),
        "--depth",
        "5",
        "--negatives",
        "bm25",
        "--keep",
        "3",
    ]
    assert main(argv) == 0
    prepared = PreparedData(data)
    qrels = prepared.qrels_dict("train")
    run = read_run(run_path)
    assert set(run) == set(qrels) and all(0 < len(passages) <= 5 for passages in run.values())
    # the run is what BM25Index gives for the same texts
    corpus = prepared.corpus[:]
    texts = [f"{t} {x}" if t else x for t, x in zip(corpus["title"], corpus["text"])]
    index = BM25Index.build(texts, corpus["pid"], progress=False)
    queries = dict(zip(prepared.queries["qid"], prepared.queries["text"]))
    for qid in qrels:
        expected = index.search([queries[qid]], depth=5, progress=False)[0]
        assert list(run[qid]) == [pid for pid, _ in expected]
    negatives = load_from_disk(str(data / "negatives" / "bm25"))
    assert negatives.column_names == ["qid", "pids", "scores"]
    for row in negatives:
        ranked = [pid for pid in run[row["qid"]] if qrels[row["qid"]].get(pid, 0) <= 0]
        assert row["pids"] == ranked[:3] and len(row["scores"]) == len(row["pids"])
    # an existing negatives source is not replaced without --overwrite
    assert main(argv) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--keep", "1"]) == 0
    assert all(len(row["pids"]) == 1 for row in load_from_disk(str(data / "negatives" / "bm25")))


def test_cli_then_evaluate_prints_one_json_object(prepared_msmarco, tmp_path, capsys):
    run_path = tmp_path / "bm25.dev.trec"
    assert main(["bm25", "--data", str(prepared_msmarco), "--split", "dev", "--output", str(run_path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(prepared_msmarco), "--split", "dev", "--run", str(run_path)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads(out)
    assert out.count("\n") == 1
    assert {
        "mrr@10",
        "ndcg@10",
        "recall@50",
        "recall@1000",
        "trec_recall@1000",
        "num_queries",
    } <= metrics.keys()
    assert metrics["num_queries"] == 2 and metrics["recall@1000"] == 1.0  # both positives share query terms


def test_cli_refuses_unknown_split(prepared_msmarco, tmp_path):
    assert (
        main(["bm25", "--data", str(prepared_msmarco), "--split", "nope", "--output", str(tmp_path / "r")])
        == 1
    )
    assert not (tmp_path / "r").exists()


def test_scifact_bm25_end_to_end(scifact_dir, tmp_path, capsys):
    """Real SciFact test (~5 s): nDCG@10 equals bm25s' reference (0.6762; Anserini 0.6789 with the same k1, b)."""
    data = tmp_path / "scifact"
    assert main(["prepare", "--format", "beir", "--input", str(scifact_dir), "--output", str(data)]) == 0
    run_path = tmp_path / "bm25.trec"
    assert main(["bm25", "--data", str(data), "--split", "test", "--output", str(run_path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(data), "--split", "test", "--run", str(run_path)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_queries"] == 300
    assert metrics["ndcg@10"] == pytest.approx(0.6762, abs=5e-4)
    assert metrics["ndcg@10"] == pytest.approx(0.6789, abs=5e-3)
