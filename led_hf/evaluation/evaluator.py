"""Retrieval evaluation during training: a fixed dev subset, full retrieval or re-ranking, IR metrics.

The evaluator knows data and metrics, not models: it takes two encode callables

    encode_queries(texts: list[str]) -> [n, H] embeddings (dense) or [n, V] term weights (sparse)
    encode_passages(titles: list[str], texts: list[str]) -> the same for passages

(numpy arrays or torch tensors) and scores a (query, passage) pair by the inner product of their
vectors: dense ones by exact faiss search, SPLADE term weights through the embedded inverted index
(led_hf.evaluation.search). Modes:

- `"full"`: encode the corpus (or a sub-corpus, `max_passages`: the subset's judged passages, its
  candidates, then seeded distractors) and the subset queries, exact search to `depth`, metrics over
  the subset (docs/method.md §6).
- `"rerank"`: score each query's given candidates (`DATA/candidates/<split>` from `led prepare`, or a
  TREC run file) and rank them; metrics over the subset. Positives missing from the candidates stay
  missing, as in the usual MS MARCO re-ranking setting.

The subset is deterministic: the split's qrels queries in sorted order, and when there are more than
`max_queries`, a `seed`-fixed sample of them (kept in sorted order).

During training `RetrievalTrainer.evaluate()` (led_hf/trainers/base.py) calls `evaluate_model` on every
process: the ranks share the passage encoding, rank 0 searches, and all ranks return the metrics, so
that `eval_strategy` steps/epoch, `metric_for_best_model="eval_ndcg@10"`, `load_best_model_at_end` and
`save_total_limit` work without an `eval_dataset`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from led_hf.data.row_reader import take_rows
from led_hf.data.runs import rank_passages, read_run, results_from_arrays
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_per_query, summarize
from led_hf.evaluation.search import as_csr, search_dense_matrix, search_sparse_matrix

logger = logging.getLogger(__name__)

EncodeQueries = Callable[[list[str]], np.ndarray]
EncodePassages = Callable[[list[str], list[str]], np.ndarray]
MODES = ("full", "rerank")
REPRESENTATIONS = ("dense", "sparse")


class RetrievalEvaluator:
    """Metrics of an encoder on a fixed dev subset of `data` (a `PreparedData` or its folder).

    Args:
        split: qrels split to evaluate on (e.g. "dev").
        mode: "full" (search the corpus) or "rerank" (score given candidates).
        max_queries: subset size (default 1000; None = every query of the split).
        candidates: rerank only: a TREC run path; default `DATA/candidates/<split>`.
        max_passages: full only: search a sub-corpus of this many passages: the subset's judged passages
            first, then (if present) its candidates, then a seed-fixed sample of the rest. None = whole
            corpus. A sub-corpus gives higher numbers than the full one; fine for picking checkpoints.
        depth: passages retrieved per query (full) / candidates kept per query (rerank).
        primary: the metric that selects checkpoints ("ndcg@10", "mrr@10", "recall@1000", ...).
        encode_batch_size: texts handed to one encode call (the callable may batch further).
    """

    def __init__(
        self,
        data: PreparedData | str | Path,
        split: str,
        mode: str = "full",
        max_queries: int | None = 1000,
        candidates: str | Path | None = None,
        max_passages: int | None = None,
        depth: int = 1000,
        relevance_level: int = 1,
        primary: str = "ndcg@10",
        seed: int = 0,
        encode_batch_size: int = 1024,
        use_gpu: bool = False,
        progress: bool = True,
    ):
        if mode not in MODES:
            raise LedError(f"evaluation mode must be one of {MODES}, got {mode!r}")
        if max_queries is not None and max_queries < 1:
            raise LedError(f"max_queries must be at least 1, got {max_queries}")
        self.data = data if isinstance(data, PreparedData) else PreparedData(data)
        self.split = split
        self.mode = mode
        self.depth = depth
        self.relevance_level = relevance_level
        self.seed = seed
        self.encode_batch_size = encode_batch_size
        self.use_gpu = use_gpu
        self.progress = progress
        recall_depths = tuple(sorted({50, depth} if depth > 50 else {depth}))
        self.recall_depths = recall_depths
        names = ["mrr@10", "ndcg@10", *(f"recall@{k}" for k in recall_depths)]
        if primary not in names:
            raise LedError(f"primary metric {primary!r} is not one of {names}")
        self.primary = primary

        all_qrels = self.data.qrels_dict(split)
        qids = sorted(all_qrels)
        if not qids:
            raise LedError(f"qrels split {split!r} of {self.data.root} is empty")
        if max_queries is not None and len(qids) > max_queries:
            chosen = np.random.default_rng(seed).choice(len(qids), size=max_queries, replace=False)
            qids = [qids[i] for i in sorted(chosen)]
        self.qids = qids
        self.qrels = {qid: all_qrels[qid] for qid in qids}
        rows = self.data.qid_index.rows(qids, strict=True)
        self.query_texts = list(self.data.queries.select(rows.tolist())["text"])
        self.candidates = self._load_candidates(candidates) if mode == "rerank" else None
        self.passage_rows = self._passage_rows(max_passages) if mode == "full" else None
        self.per_query: dict[str, dict[str, float]] | None = None  # the last evaluation's, on rank 0

    # ------------------------------------------------------------------ setup
    def _load_candidates(self, source) -> dict[str, list[str]]:
        """{qid: candidate pids in the source's rank order, at most `depth`} for the subset queries."""
        wanted = set(self.qids)
        if source is not None:
            run = read_run(source)
            lists = {qid: [pid for pid, _ in rank_passages(run[qid])] for qid in wanted if qid in run}
        else:
            path = self.data.root / "candidates" / self.split
            if not path.is_dir():
                raise LedError(
                    f"rerank evaluation needs {path} (from `led prepare` with top1000.{self.split}) "
                    f"or a candidates run file"
                )
            from datasets import load_from_disk

            table = load_from_disk(str(path)).data
            lists = {
                qid: pids
                for qid, pids in zip(table.column("qid").to_pylist(), table.column("pids").to_pylist())
                if qid in wanted
            }
        missing = len(wanted) - len(lists)
        if missing:
            logger.warning(
                "%d of %d evaluation queries have no candidates; they count 0", missing, len(wanted)
            )
        candidates = {}
        for qid, pids in lists.items():
            rows = self.data.pid_index.rows(pids, strict=False)
            known = [pid for pid, row in zip(pids, rows) if row >= 0]
            if len(known) < len(pids):
                logger.warning(
                    "query %s: %d candidates are not in the corpus; dropped", qid, len(pids) - len(known)
                )
            candidates[qid] = known[: self.depth]
        return candidates

    def _passage_rows(self, max_passages: int | None) -> np.ndarray | None:
        """Corpus rows searched in full mode (None = every row)."""
        num_rows = len(self.data.pid_index)
        if max_passages is None or max_passages >= num_rows:
            return None
        index = self.data.pid_index
        judged = [pid for qid in self.qids for pid in self.qrels[qid]]
        rows = [r for r in index.rows(judged, strict=False).tolist() if r >= 0]
        if (self.data.root / "candidates" / self.split).is_dir():
            candidate_lists = self._load_candidates(None)
            rows += index.rows(
                [pid for pids in candidate_lists.values() for pid in pids], strict=False
            ).tolist()
        rows = list(dict.fromkeys(rows))[:max_passages]  # unique, first-seen order
        if len(rows) < max_passages:
            taken = np.zeros(num_rows, dtype=bool)
            taken[rows] = True
            rest = np.flatnonzero(~taken)
            fill = np.random.default_rng(self.seed).choice(rest, size=max_passages - len(rows), replace=False)
            rows += fill.tolist()
        return np.sort(np.asarray(rows, dtype=np.int64))

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        encode_queries: EncodeQueries,
        encode_passages: EncodePassages,
        prefix: str = "eval",
        representation: str = "dense",
        rank: int = 0,
        world_size: int = 1,
    ) -> dict[str, float] | None:
        """Encode, retrieve or re-rank, score. Keys are `f"{prefix}_{name}"` (no prefix if `prefix` is empty);
        rank 0 also keeps the per-query values in `self.per_query` ({qid: {metric: value}}), for paired tests.

        `representation`: "dense" (embeddings, faiss search) or "sparse" (SPLADE term weights, searched
        through the inverted index). Under DDP every rank calls this with its `rank` of `world_size`: each
        encodes a contiguous slice of the passages, rank 0 gathers them, searches and returns the metrics;
        the other ranks return None.
        """
        if representation not in REPRESENTATIONS:
            raise LedError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        started = time.perf_counter()
        sparse = representation == "sparse"
        if self.mode == "full":
            rows = self.passage_rows
        else:
            unique_pids = list(dict.fromkeys(pid for pids in self.candidates.values() for pid in pids))
            rows = self.data.pid_index.rows(unique_pids, strict=True)
        passages = self._encode_rows(encode_passages, rows, sparse, rank, world_size)
        if rank != 0:
            return None
        query_embeddings = self._encode_queries(encode_queries, sparse)
        if self.mode == "full":
            results = self._full(query_embeddings, passages, sparse)
        else:
            results = self._rerank(query_embeddings, passages, unique_pids)
        run = {qid: dict(ranked) for qid, ranked in results.items()}
        self.per_query = evaluate_per_query(
            run, self.qrels, relevance_level=self.relevance_level, recall_depths=self.recall_depths
        )
        metrics = summarize(self.per_query, run)
        # not "runtime": the Trainer's own eval_runtime would be overwritten
        metrics["retrieval_runtime"] = time.perf_counter() - started
        key = (lambda name: f"{prefix}_{name}") if prefix else (lambda name: name)
        return {key(name): float(value) for name, value in metrics.items()}

    __call__ = evaluate

    def _encode_queries(self, encode_queries: EncodeQueries, sparse: bool):
        chunks = [
            _as_output(
                encode_queries(list(self.query_texts[start : start + self.encode_batch_size])),
                "queries",
                sparse,
            )
            for start in range(0, len(self.query_texts), self.encode_batch_size)
        ]
        return sp.vstack(chunks, format="csr") if sparse else np.concatenate(chunks)

    def _encode_rows(self, encode_passages: EncodePassages, rows, sparse: bool, rank: int, world_size: int):
        """Encode corpus `rows` (None = all); rank r of `world_size` encodes the r-th contiguous slice and
        rank 0 returns all of them in row order (other ranks return None)."""
        corpus = self.data.corpus
        total = len(corpus) if rows is None else len(rows)
        first, last = total * rank // world_size, total * (rank + 1) // world_size
        chunks = []
        bar = tqdm(
            total=last - first,
            desc="eval: encode passages",
            unit="p",
            disable=True if not self.progress or rank != 0 else None,
        )
        for start in range(first, last, self.encode_batch_size):
            stop = min(start + self.encode_batch_size, last)
            batch = corpus[start:stop] if rows is None else corpus[rows[start:stop].tolist()]
            titles = [title or "" for title in batch.get("title") or [""] * (stop - start)]
            texts = [text or "" for text in batch["text"]]
            chunks.append(_as_output(encode_passages(titles, texts), "passages", sparse, stop - start))
            bar.update(stop - start)
        bar.close()
        if world_size > 1:
            import torch.distributed as dist

            # pickled between our own processes (trusted): arrays of any width, dense or CSR
            gathered = [None] * world_size if rank == 0 else None
            dist.gather_object(chunks, gathered, dst=0)
            if rank != 0:
                return None
            chunks = [chunk for part in gathered for chunk in part]
        if not chunks:
            raise LedError("the evaluation has no passages to encode")
        return sp.vstack(chunks, format="csr") if sparse else np.concatenate(chunks)

    def _full(self, query_embeddings, passages, sparse: bool) -> dict[str, list]:
        if sparse:
            scores, indices = search_sparse_matrix(query_embeddings, passages, self.depth)
        else:
            scores, indices = search_dense_matrix(
                query_embeddings, passages, depth=self.depth, use_gpu=self.use_gpu
            )
        pid_column = self.data.corpus.data.column("pid")
        rows = np.arange(passages.shape[0]) if self.passage_rows is None else self.passage_rows
        hit_rows = np.unique(indices[indices >= 0])
        pid_of = dict(zip(hit_rows.tolist(), take_rows(pid_column, rows[hit_rows]).to_pylist()))
        return results_from_arrays(self.qids, scores, indices, pid_of)

    def _rerank(self, query_embeddings, passages, unique_pids: list[str]) -> dict[str, list]:
        if not unique_pids:
            return {}
        position = {pid: i for i, pid in enumerate(unique_pids)}
        results = {}
        for query_row, qid in enumerate(self.qids):
            pids = self.candidates.get(qid, [])
            if pids:
                scores = passages[[position[pid] for pid in pids]] @ query_embeddings[query_row].T
                scores = scores.toarray().ravel() if sp.issparse(scores) else np.asarray(scores).ravel()
                results[qid] = list(zip(pids, scores.tolist()))
        return results

    # ------------------------------------------------------------------ trainer hook
    def evaluate_model(
        self,
        model,
        make_encoders: Callable,
        prefix: str = "eval",
        representation: str = "dense",
        accelerator=None,
    ) -> dict[str, float]:
        """`evaluate` of a (unwrapped) model, in eval mode under `torch.no_grad()`, its mode restored after.

        `make_encoders(model) -> (encode_queries, encode_passages)`. With an `accelerator` of several
        processes, every process must call this: they share the passage encoding, rank 0 searches and
        scores, and the metrics are broadcast so that every rank returns the same dict (the Trainer's
        best-checkpoint logic runs on all ranks).
        """
        import torch

        rank = accelerator.process_index if accelerator is not None else 0
        world_size = accelerator.num_processes if accelerator is not None else 1
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                metrics = [self.evaluate(*make_encoders(model), prefix, representation, rank, world_size)]
        finally:
            model.train(was_training)
        if world_size > 1:
            import torch.distributed as dist

            dist.broadcast_object_list(metrics, src=0)
        return metrics[0]


def _as_output(array, what: str, sparse: bool, rows: int | None = None):
    return as_csr(array, what, rows) if sparse else _as_matrix(array, what, rows)


def _as_matrix(array, what: str, rows: int | None = None) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor: the encoders may return one
        array = array.detach().float().cpu().numpy()
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 2 or (rows is not None and array.shape[0] != rows):
        raise LedError(f"encode_{what} returned shape {list(array.shape)}, expected [{rows or 'n'}, H]")
    if not np.isfinite(array).all():
        raise LedError(f"encode_{what} returned non-finite values")
    return array


def subset_size_note(evaluator: RetrievalEvaluator) -> str:
    """One line describing the evaluation set, for logs: 'dev: 1000 queries, full over 8841823 passages'."""
    passages = (
        len(evaluator.data.pid_index) if evaluator.passage_rows is None else len(evaluator.passage_rows)
    )
    where = f"full over {passages} passages" if evaluator.mode == "full" else "re-ranking candidates"
    return f"{evaluator.split}: {len(evaluator.qids)} queries, {where}"
