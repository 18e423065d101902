"""Embedded BM25 over a prepared corpus (bm25s), and BM25 negatives for collections that ship none.

Scoring is Lucene's BM25 (bm25s `method="lucene"`): for query terms t and passage d,

    score(q, d) = sum_t idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))

over the text "title text" of each passage. Tokens: lowercase words of two or more word characters,
English stopwords removed, Snowball English stems when PyStemmer is installed (else unstemmed; see
`make_tokenizer`). Defaults k1 = 0.9, b = 0.4 are Anserini's (SciFact test nDCG@10: Anserini 0.6789,
bm25s 0.6762; with k1 1.5, b 0.75 bm25s gives 0.6863).

Passages that share no term with the query score 0 and are never returned, as in Lucene: a run may
hold fewer than `depth` passages per query.

This builds the whole index in memory (sparse matrix + token ids, about 100 bytes per passage-token
pair while building): fine up to a few million passages; full MS MARCO belongs to the Lucene backend.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

from tqdm.auto import tqdm

from led_hf.atomic import atomic_directory
from led_hf.errors import LedError
from led_hf.work_folder import record_content_hashes

logger = logging.getLogger(__name__)

DEFAULT_K1 = 0.9
DEFAULT_B = 0.4


def make_tokenizer(stem: bool = True):
    """A bm25s `Tokenizer`: lowercase, regex words `\\b\\w\\w+\\b`, English stopwords, Snowball stems.

    Stemming needs PyStemmer (`pip install PyStemmer`, a led-hf dependency); without it tokens stay
    unstemmed and a warning says so (SciFact nDCG@10 then drops by about 0.01).
    """
    from bm25s.tokenization import Tokenizer

    stemmer = None
    if stem:
        try:
            import Stemmer
        except ImportError:
            logger.warning("PyStemmer is not installed: BM25 tokens are not stemmed")
        else:
            stemmer = Stemmer.Stemmer("english")
    return Tokenizer(lower=True, stopwords="en", stemmer=stemmer)


def passage_texts(corpus, batch_size: int = 10_000) -> Iterator[str]:
    """ "title text" of every passage of a prepared corpus table, in row order, read in slices."""
    for start in range(0, len(corpus), batch_size):
        batch = corpus[start : start + batch_size]
        titles = batch.get("title") or [None] * len(batch["text"])
        for title, text in zip(titles, batch["text"]):
            yield f"{title} {text}" if title else (text or "")


class BM25Index:
    """BM25 over a list of passages, searched by text.

    >>> index = BM25Index.build(["Aspirin reduces heart attack risk", "Vitamin D in winter"], ["d0", "d1"])
    >>> index.search(["aspirin and heart attacks"], depth=10)
    [[('d0', 1.23...)]]       # one ranked list per query; d1 shares no term and is not returned
    """

    def __init__(self, retriever, tokenizer, pids: Sequence[str]):
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.pids = list(pids)
        # the token bm25s adds for empty texts: a query made of it alone matches nothing real
        self._empty_token = tokenizer.word_to_id.get("")

    @classmethod
    def build(
        cls,
        texts,
        pids: Sequence[str],
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        stem: bool = True,
        progress: bool = True,
    ) -> BM25Index:
        """Index `texts` (an iterable of strings, aligned with `pids`)."""
        import bm25s

        if k1 < 0 or not 0 <= b <= 1:
            raise LedError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if len(pids) == 0:
            raise LedError("cannot build a BM25 index over an empty corpus")
        tokenizer = make_tokenizer(stem)
        token_ids = tokenizer.tokenize(
            texts, update_vocab=True, return_as="tuple", length=len(pids), show_progress=progress
        )
        if len(token_ids.ids) != len(pids):
            raise LedError(f"{len(token_ids.ids)} texts for {len(pids)} passage ids")
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index(token_ids, show_progress=progress)
        return cls(retriever, tokenizer, pids)

    def search(
        self, queries: Sequence[str], depth: int = 1000, batch_size: int = 1000, progress: bool = True
    ) -> list[list[tuple[str, float]]]:
        """For each query text, up to `depth` (pid, score) pairs with score > 0, best first."""
        if depth < 1:
            raise LedError(f"--depth must be at least 1, got {depth}")
        k = min(depth, len(self.pids))
        results: list[list[tuple[str, float]]] = []
        bar = tqdm(total=len(queries), desc="BM25 search", unit="q", disable=None if progress else True)
        for start in range(0, len(queries), batch_size):
            chunk = list(queries[start : start + batch_size])
            query_ids = self.tokenizer.tokenize(
                chunk, update_vocab=False, return_as="ids", show_progress=False
            )
            query_ids = [[t for t in ids if t != self._empty_token] for ids in query_ids]
            matchable = [i for i, ids in enumerate(query_ids) if ids]
            chunk_results: list[list[tuple[str, float]]] = [[] for _ in chunk]
            if matchable:
                documents, scores = self.retriever.retrieve(
                    [query_ids[i] for i in matchable], k=k, show_progress=False, n_threads=0
                )
                for i, row_docs, row_scores in zip(matchable, documents, scores):
                    keep = row_scores > 0
                    chunk_results[i] = [
                        (self.pids[d], s) for d, s in zip(row_docs[keep].tolist(), row_scores[keep])
                    ]
            results.extend(chunk_results)
            bar.update(len(chunk))
        bar.close()
        return results


def build_corpus_index(
    data, k1: float = DEFAULT_K1, b: float = DEFAULT_B, stem: bool = True, progress: bool = True
) -> BM25Index:
    """`BM25Index` over every passage of a `PreparedData` ("title text")."""
    corpus = data.corpus
    pids = corpus.data.column("pid").to_pylist()
    return BM25Index.build(passage_texts(corpus), pids, k1=k1, b=b, stem=stem, progress=progress)


def query_texts(data, qids: Sequence[str]) -> list[str]:
    """Texts of `qids` from a `PreparedData`'s queries table (unknown qids raise `LedError`)."""
    rows = data.qid_index.rows(list(qids), strict=True)
    return list(data.queries.select(rows.tolist())["text"]) if len(rows) else []


def negatives_from_results(
    results: Mapping[str, Sequence[tuple[str, float]]],
    qrels: Mapping[str, Mapping[str, int]],
    keep: int = 200,
) -> dict[str, list]:
    """Columns {qid, pids, scores} of a negatives table: each query's ranked passages with its qrels
    passages removed (any judged grade > 0), the first `keep` kept in rank order.

    Judged-non-relevant passages (grade 0) stay: they are true negatives. Queries left with no negative
    are dropped.
    """
    columns: dict[str, list] = {"qid": [], "pids": [], "scores": []}
    for qid, ranked in results.items():
        positives = {pid for pid, grade in qrels.get(qid, {}).items() if grade > 0}
        kept = [(pid, float(score)) for pid, score in ranked if pid not in positives][:keep]
        if not kept:
            continue
        columns["qid"].append(qid)
        columns["pids"].append([pid for pid, _ in kept])
        columns["scores"].append([score for _, score in kept])
    return columns


NEGATIVES_MANIFEST = "manifest.json"


def negatives_features():
    """`datasets.Features` of a negatives table: {qid: string, pids: [string], scores: [float32]}."""
    import datasets

    return datasets.Features(
        {
            "qid": datasets.Value("string"),
            "pids": datasets.List(datasets.Value("string")),
            "scores": datasets.List(datasets.Value("float32")),
        }
    )


def write_negatives(folder, columns, overwrite: bool = False, manifest: dict | None = None) -> int:
    """Save {qid, pids, scores} as a `datasets` folder (the `negatives/<source>` contract), atomically.

    `columns` is a dict of Python lists or a `pyarrow.Table` with those columns (large mined sets: no
    Python list of every pid). `manifest`, when given, is written as `folder/manifest.json` inside the
    same atomic rename (how the list was made: model, depth, keep, input hashes, ...); `load_from_disk`
    ignores it. Returns the number of queries written.
    """
    import json

    import datasets
    import pyarrow as pa

    features = negatives_features()
    if isinstance(columns, pa.Table):
        table = datasets.Dataset(
            columns.select(list(features)).cast(features.arrow_schema),
            info=datasets.DatasetInfo(features=features),
        )
    else:
        table = datasets.Dataset.from_dict(columns, features=features)
    with atomic_directory(folder, overwrite=overwrite) as staging:
        table.save_to_disk(str(staging))
        if manifest is not None:
            (staging / NEGATIVES_MANIFEST).write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
        record_content_hashes(staging)
    return len(table)
