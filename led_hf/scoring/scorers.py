"""One chunked scorer per teacher kind, over the models' own `score_candidates`; `led score-teacher` and
`led rerank` use them (the LED trainer calls `score_candidates` on its training batches directly).

- `SpladeScorer`: a chunk of queries and their candidate lists -> each query's candidate scores
  <w_q, w_p> (fp32). Every distinct passage of the chunk is encoded once (length-sorted batches) and
  scored against the chunk's queries on the device, so only a [queries, passages] score block leaves it;
  with precomputed corpus vectors (`passage_matrix`) the passages are looked up instead.
- `DenseScorer`: a bi-encoder teacher, <e_q, e_p> / temperature (the logits of its own training loss;
  cosine / 0.05 for a normalised MiniLM), each distinct passage of a chunk encoded once.
- `CrossEncoderScorer`: (query, passage) pairs `[CLS] q [SEP] title [SEP] text [SEP]` in length-sorted
  batches -> their logits (fp32); `score` gives the same per candidate list.

- `BM25Scorer`: the lexical teacher without a model: each candidate's BM25 score (bm25s, Lucene
  formula of `led_hf.retrieval.bm25`) against the corpus index, i.e. the score `led bm25` ranks by.
- `FusedScorer`: several scorers' scores, each normalised per query over the query's candidates
  (`normalise_per_query`), summed with weights: e.g. w SPLADE + (1 - w) BM25.

The model scorers run in eval mode, without gradients, under `led_hf.precision.autocast(device, precision)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.collators.encode import EncodeCollator
from led_hf.errors import LedError
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.cross_encoder import CrossEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.precision import autocast
from led_hf.retrieval.encode import TextSource, encode_batches

NORMALISATIONS = ("zscore", "minmax")


def load_tokenizer(path: str, trust_remote_code: bool = False, what: str = "tokenizer"):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise LedError(f"{path}: cannot load the {what} ({err})") from err


def load_splade_teacher(path: str, trust_remote_code: bool = False):
    """(SpladeEncoder, tokenizer) of a SPLADE checkpoint folder, hub id or `bundled:splade-tiny`."""

    path = resolve_model_path(path)
    teacher = SpladeEncoder.from_pretrained(path, trust_remote_code=trust_remote_code)
    return teacher, load_tokenizer(path, trust_remote_code, "teacher's tokenizer")


def load_cross_encoder_teacher(
    path: str,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    trust_remote_code: bool = False,
):
    """(CrossEncoder, CrossEncoderCollator) of a trained cross-encoder; an untrained head is an error.
    The pair length is `max_length`, else the one the model was trained with, else 256."""

    path = resolve_model_path(path)
    model = CrossEncoder.from_pretrained(path, trust_remote_code=trust_remote_code, allow_new_head=False)
    tokenizer = load_tokenizer(path, trust_remote_code)
    length = max_length or model.max_length or 256
    return model, CrossEncoderCollator(tokenizer, max_length=length, pad_to_multiple_of=pad_to_multiple_of)


class _BiEncoderScorer:
    """A frozen bi-encoder (SPLADE or dense) with its query and passage collators."""

    def __init__(
        self,
        model,
        tokenizer,
        query_max_length: int,
        passage_max_length: int,
        batch_size: int,
        device: torch.device,
        precision: str = "fp32",
    ):
        self.model = model.requires_grad_(False).eval().to(device)
        self.queries = EncodeCollator(tokenizer, query_max_length, kind="query")
        self.passages = EncodeCollator(tokenizer, passage_max_length, kind="passage")
        self.batch_size, self.device, self.precision = batch_size, device, precision

    def _embeddings(self, features: list[dict], collate, encode) -> torch.Tensor:
        """encode(features) [len(features), D] (fp32, CPU), in the order of `features`."""
        embeddings = None
        for positions, outputs in encode_batches(features, collate, encode, self.batch_size, self.device):
            if embeddings is None:
                embeddings = torch.zeros((len(features), outputs.shape[1]), dtype=torch.float32)
            embeddings[torch.as_tensor(positions)] = outputs.float()
        return embeddings


def _per_query(block: np.ndarray, inverse: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
    """Each query's candidate scores from a [queries, distinct passages] block: query i's candidates are
    `inverse[offsets[i]:offsets[i+1]]` of `np.unique(np.concatenate(candidates), return_inverse=True)`."""
    offsets = np.cumsum([0] + [len(c) for c in candidates])
    return [block[i, inverse[offsets[i] : offsets[i + 1]]] for i in range(len(candidates))]


class SpladeScorer(_BiEncoderScorer):
    """A frozen SPLADE teacher scoring each query's candidate passages (see the module docstring)."""

    passage_matrix = None  # precomputed passage weights: matrix[rows] -> scipy CSR [rows, V]

    def score(self, data, query_rows: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
        """Scores (fp32) of each query's candidates (corpus rows); each distinct passage encoded once."""
        with autocast(self.device, self.precision):
            return self._score(data, query_rows, candidates)

    def _score(self, data, query_rows: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
        query_features = TextSource(data.queries, "qid", "queries", rows=query_rows).features(
            0, len(query_rows)
        )
        query_weights = self._embeddings(query_features, self.queries, self.model.encode).to(self.device)
        unique, inverse = np.unique(np.concatenate(candidates), return_inverse=True)
        if self.passage_matrix is not None:  # looked up: [u, V] sparse x [V, n] dense
            block = np.asarray(
                self.passage_matrix[unique] @ query_weights.cpu().numpy().T, dtype=np.float32
            ).T
        else:
            passage_features = TextSource(data.corpus, "pid", "passages", rows=unique).features(
                0, len(unique)
            )
            block = np.zeros((len(query_rows), len(unique)), dtype=np.float32)  # every chunk pair
            for positions, scores in encode_batches(
                passage_features,
                self.passages,
                lambda batch: self.model.score_candidates(query_weights, batch),  # [queries, b]
                self.batch_size,
                self.device,
            ):
                block[:, positions] = scores.numpy()
        return _per_query(block, inverse, candidates)


class DenseScorer(_BiEncoderScorer):
    """A frozen `DenseEncoder` scoring each query's candidate passages (see the module docstring)."""

    def score(self, data, query_rows: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
        """<e_q, e_p> / temperature (fp32) of each query's candidates (corpus rows)."""
        unique, inverse = np.unique(np.concatenate(candidates), return_inverse=True)
        queries = TextSource(data.queries, "qid", "queries", rows=query_rows).features(0, len(query_rows))
        passages = TextSource(data.corpus, "pid", "passages", rows=unique).features(0, len(unique))
        with autocast(self.device, self.precision):
            query_embeddings = self._embeddings(queries, self.queries, self.model.encode_query)
            passage_embeddings = self._embeddings(passages, self.passages, self.model.encode_passage)
        block = (query_embeddings @ passage_embeddings.T / self.model.temperature).numpy()  # [n, u]
        return _per_query(block, inverse, candidates)


class CrossEncoderScorer:
    """A frozen cross-encoder scoring (query, passage) pairs (see the module docstring)."""

    def __init__(self, model, collator, batch_size: int, device: torch.device, precision: str = "fp32"):
        if batch_size < 1:
            raise LedError(f"batch size must be at least 1, got {batch_size}")
        self.model = model.eval().to(device)  # may be a model just trained: its requires_grad stays
        self.collator = collator
        self.batch_size, self.device, self.precision = batch_size, torch.device(device), precision

    def _collate(self, features: list[dict]) -> dict:
        return {
            "batch": self.collator.encode(
                [f["query"] for f in features],
                [f.get("title") or "" for f in features],
                [f["text"] for f in features],
            )
        }

    def score_pairs(self, features: Sequence[dict], progress_bar=None) -> np.ndarray:
        """Logits [N] (fp32) of `features` ({"query", "title"?, "text"}), in their order."""
        scores = np.zeros(len(features), dtype=np.float32)
        with autocast(self.device, self.precision):
            for positions, logits in encode_batches(
                features, self._collate, self.model.score_candidates, self.batch_size, self.device
            ):
                scores[positions] = logits.float().numpy()
                if progress_bar is not None:
                    progress_bar.update(len(positions))
        return scores

    def score(self, data, query_rows: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
        """Logits (fp32) of each query's candidates (corpus rows)."""
        queries = TextSource(data.queries, "qid", "queries", rows=query_rows).features(0, len(query_rows))
        all_rows = np.concatenate(candidates)
        passages = TextSource(data.corpus, "pid", "passages", rows=all_rows).features(0, len(all_rows))
        owners = np.repeat(np.arange(len(candidates)), [len(c) for c in candidates])
        pairs = [
            {"query": queries[q]["text"], "title": p.get("title") or "", "text": p["text"]}
            for q, p in zip(owners, passages)
        ]
        flat = self.score_pairs(pairs)
        offsets = np.cumsum([0] + [len(c) for c in candidates])
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(candidates))]


class BM25Scorer:
    """BM25 scores of each query's candidates from a `led_hf.retrieval.bm25.BM25Index` of the corpus.

    The index's per-(term, passage) BM25 weights form a [corpus, vocab] matrix W; a query is the count
    vector c of its token ids (a repeated term counts twice, as in bm25s), so score(q, d) = W[d] . c,
    exactly `bm25s.BM25.get_scores(ids)[d]`. A candidate sharing no term with the query scores 0.
    """

    def __init__(self, index, queries_column: str = "text"):
        import scipy.sparse

        scores = index.retriever.scores
        vocab = len(scores["indptr"]) - 1
        # bm25s keeps one column of passage ids per term (CSC of [corpus, vocab]); rows are looked up
        self.matrix = scipy.sparse.csc_matrix(
            (scores["data"], scores["indices"], scores["indptr"]), shape=(scores["num_docs"], vocab)
        ).tocsr()
        self.index = index
        self.queries_column = queries_column

    def query_vectors(self, texts: list[str]):
        """scipy CSR [len(texts), vocab] of term counts (terms unknown to the corpus dropped)."""
        import scipy.sparse

        token_ids = self.index.tokenizer.tokenize(
            list(texts), update_vocab=False, return_as="ids", show_progress=False
        )
        vocab = self.matrix.shape[1]
        rows, cols = [], []
        for row, ids in enumerate(token_ids):
            kept = [t for t in ids if t != self.index._empty_token and 0 <= t < vocab]
            rows += [row] * len(kept)
            cols += kept
        return scipy.sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(texts), vocab)
        )

    def score(self, data, query_rows: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
        """BM25 scores (fp32) of each query's candidates (corpus rows)."""
        texts = list(data.queries.select(np.asarray(query_rows).tolist())[self.queries_column])
        queries = self.query_vectors(texts)
        unique, inverse = np.unique(np.concatenate(candidates), return_inverse=True)
        block = np.asarray((queries @ self.matrix[unique].T).todense(), dtype=np.float32)  # [n, u]
        return _per_query(block, inverse, candidates)


def normalise_per_query(scores: np.ndarray, method: str = "zscore") -> np.ndarray:
    """One query's candidate scores on a common scale (float32).

        zscore: (s - mean(s)) / std(s)            minmax: (s - min(s)) / (max(s) - min(s))

    A query whose candidates all score alike maps to zeros (no preference to pass on).
    """
    if method not in NORMALISATIONS:
        raise LedError(f"normalisation must be one of {NORMALISATIONS}, got {method!r}")
    values = np.asarray(scores, dtype=np.float64)
    if method == "zscore":
        centred, spread = values - values.mean(), values.std()
    else:
        centred, spread = values - values.min(), values.max() - values.min()
    if len(values) == 0 or spread == 0:
        return np.zeros(len(values), dtype=np.float32)
    return (centred / spread).astype(np.float32)


class FusedScorer:
    """sum_k weight_k * normalise_per_query(scores_k) over scorers with the same `score` interface."""

    def __init__(self, scorers: Sequence, weights: Sequence[float], normalisation: str = "zscore"):
        if len(scorers) != len(weights) or not scorers:
            raise LedError("a fused teacher needs one weight per scorer")
        if any(w < 0 for w in weights):
            raise LedError(f"fusion weights must be >= 0, got {list(weights)}")
        normalise_per_query(np.zeros(1), normalisation)  # checks the name before any scoring
        self.scorers, self.weights, self.normalisation = list(scorers), list(weights), normalisation

    def score(self, data, query_rows: np.ndarray, candidates: list[np.ndarray]) -> list[np.ndarray]:
        per_scorer = [scorer.score(data, query_rows, candidates) for scorer in self.scorers]
        return [
            sum(
                weight * normalise_per_query(lists[i], self.normalisation)
                for weight, lists in zip(self.weights, per_scorer)
            ).astype(np.float32)
            for i in range(len(candidates))
        ]
