"""Re-rank a TREC run with a cross-encoder: score each query's top `depth` passages, sort by the new scores.

    run {qid: {pid: score}} --top depth by trec_eval order--> pairs (query text, title, text)
        --CrossEncoderScorer (led_hf.scoring.scorers)--> [N] logits
        --> {qid: [(pid, logit), ...]}      (passages below `depth` are dropped, as re-rankers usually do)

E.g. a BM25 run with d2 (19.3) above d8 (17.5) for query 200 and logits d2 -1.2, d8 3.4 -> d8 then d2.
Pairs are handled in chunks of `chunk_pairs` (bounding memory on MS MARCO's 7M dev pairs); inside a
chunk the scorer sorts them by token length and batches them (little padding).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from led_hf.data.runs import rank_passages
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_run
from led_hf.scoring.scorers import CrossEncoderScorer


@dataclass
class PairList:
    """The (query, passage) pairs of some candidates, flattened in candidate order, ids resolved to rows."""

    qids: list[str]
    pids: list[str]
    passage_rows: np.ndarray
    query_texts: dict[str, str]

    def __len__(self) -> int:
        return len(self.pids)


def lookup_pairs(
    data: PreparedData, candidates: Mapping[str, Sequence[str]], source: str = "candidates"
) -> PairList:
    """Resolve {qid: [pid, ...]} against `data`; an unknown query or passage id raises `LedError` naming
    `source` and the id (call it before loading a model: bad input fails fast)."""
    qids = list(candidates)
    query_rows = data.qid_index.rows(qids, strict=False)
    if (query_rows < 0).any():
        qid = qids[int(np.flatnonzero(query_rows < 0)[0])]
        raise LedError(f"{source}: query {qid!r} is not in {data.root}/queries")
    query_texts = dict(zip(qids, data.queries.select(query_rows.tolist())["text"])) if qids else {}
    pair_qids = [qid for qid in qids for _ in candidates[qid]]
    pair_pids = [str(pid) for qid in qids for pid in candidates[qid]]
    passage_rows = data.pid_index.rows(pair_pids, strict=False)
    if (passage_rows < 0).any():
        at = int(np.flatnonzero(passage_rows < 0)[0])
        raise LedError(
            f"{source}: passage {pair_pids[at]!r} (query {pair_qids[at]!r}) is not in {data.root}/corpus"
        )
    return PairList(pair_qids, pair_pids, passage_rows, query_texts)


def rerank_pairs(
    scorer: CrossEncoderScorer,
    data: PreparedData,
    pairs: PairList,
    chunk_pairs: int = 16384,
    progress: bool = True,
) -> dict[str, list[tuple[str, float]]]:
    """Score every pair -> {qid: [(pid, logit), ...]} in candidate order (`write_run` sorts)."""
    scores = np.empty(len(pairs), dtype=np.float32)
    with tqdm(total=len(pairs), desc="re-rank", unit="pair", disable=not progress) as bar:
        for start in range(0, len(pairs), chunk_pairs):
            stop = min(start + chunk_pairs, len(pairs))
            passages = data.corpus[pairs.passage_rows[start:stop].tolist()]
            titles = passages.get("title") or [""] * (stop - start)
            features = [
                {
                    "qid": pairs.qids[i],
                    "pid": pairs.pids[i],
                    "query": pairs.query_texts[pairs.qids[i]],
                    "title": titles[i - start] or "",
                    "text": passages["text"][i - start] or "",
                }
                for i in range(start, stop)
            ]
            scores[start:stop] = scorer.score_pairs(features, bar)
    results: dict[str, list[tuple[str, float]]] = {}
    for qid, pid, score in zip(pairs.qids, pairs.pids, scores.tolist()):
        results.setdefault(qid, []).append((pid, score))
    return results


def top_candidates(
    run: Mapping[str, Mapping[str, float]], depth: int, qids: Sequence[str] | None = None
) -> dict[str, list[str]]:
    """Each query's first `depth` pids in trec_eval order (score desc, ties by pid desc); `qids` restricts
    and orders the queries (those absent from the run are skipped).

    >>> top_candidates({"q": {"a": 1.0, "b": 3.0, "c": 2.0}}, depth=2)
    {'q': ['b', 'c']}
    """
    if depth < 1:
        raise LedError(f"depth must be at least 1, got {depth}")
    wanted = list(run) if qids is None else [qid for qid in qids if qid in run]
    return {qid: [pid for pid, _ in rank_passages(run[qid])[:depth]] for qid in wanted}


def evaluation_pairs(data: PreparedData, split: str, run, depth: int = 100, source: str = "run") -> PairList:
    """The pairs `evaluate_reranking` scores: the top `depth` of `run` for each query of qrels `split`
    (resolved now, so that a bad run fails before any training)."""
    qrels = data.qrels_dict(split)
    if not qrels:
        raise LedError(f"qrels split {split!r} of {data.root} is empty")
    return lookup_pairs(data, top_candidates(run, depth, sorted(qrels)), source)


def evaluate_reranking(
    model,
    collator,
    data: PreparedData,
    split: str,
    pairs: PairList,
    depth: int = 100,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    progress: bool = True,
) -> dict[str, float]:
    """Re-rank `pairs` (from `evaluation_pairs`) and score the result against qrels `split` with
    `led_hf.evaluation.metrics.evaluate_run`: mrr@10, ndcg@10, recall@50 and @depth, over all qrels queries.
    `model` is a `CrossEncoder`, `collator` a `CrossEncoderCollator`."""
    scorer = CrossEncoderScorer(model, collator, batch_size, device, precision)
    results = rerank_pairs(scorer, data, pairs, progress=progress)
    recall_depths = tuple(sorted({50, depth}))
    return evaluate_run(
        {qid: dict(items) for qid, items in results.items()},
        data.qrels_dict(split),
        recall_depths=recall_depths,
    )
