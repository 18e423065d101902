"""IR metrics as the LED paper reports them (docs/method.md §6), with trec_eval semantics.

Every query with qrels counts: a query missing from the run (or with nothing retrieved) scores 0 on
every metric. trec_eval / pytrec_eval / ir_measures average only over queries present in the run, so
their per-query values are taken and averaged here over *all* qrels queries instead.

Metrics (ranking = score descending, ties by passage id descending, as trec_eval):
- `mrr@10`: reciprocal rank of the first relevant passage within the top 10 (0 if none); trec_eval's
  `recip_rank` over the run cut to its top 10.
- `ndcg@10`: trec_eval `ndcg_cut_10`: gain = grade (linear), discount log2(rank + 1), normalised by the
  ideal ordering of all judged grades, e.g. grades [0, 1, 2] in ranks 1..3 against ideal [2, 1]:
  (1/log2(3) + 2/log2(4)) / (2 + 1/log2(3)) = 0.6199.
- `recall@k`: the paper's hit rate, 1 if any relevant passage is in the top k, else 0 (k = 50, 1000).
- `trec_recall@k`: trec_eval `recall_k`, the fraction of relevant passages in the top k.

"Relevant" for the binary metrics (mrr, recall, trec_recall) means grade >= `relevance_level`
(trec_eval's `-l`; 1 by default, 2 for TREC DL's usual reading). nDCG always uses the raw grades.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ir_measures
from ir_measures import RR, R, nDCG

from led_hf.data.runs import rank_passages
from led_hf.errors import LedError

Qrels = Mapping[str, Mapping[str, int]]
RunLike = Mapping[str, Mapping[str, float]]


def metric_names(
    mrr_depth: int = 10, ndcg_depth: int = 10, recall_depths: Sequence[int] = (50, 1000)
) -> list[str]:
    """The per-query metric names `evaluate_run` reports, e.g. ['mrr@10', 'ndcg@10', 'recall@50', ...]."""
    names = [f"mrr@{mrr_depth}", f"ndcg@{ndcg_depth}"]
    names += [f"recall@{k}" for k in recall_depths]
    names += [f"trec_recall@{k}" for k in recall_depths]
    return names


def evaluate_per_query(
    run: RunLike,
    qrels: Qrels,
    relevance_level: int = 1,
    mrr_depth: int = 10,
    ndcg_depth: int = 10,
    recall_depths: Sequence[int] = (50, 1000),
) -> dict[str, dict[str, float]]:
    """{qid: {metric: value}} for every query in `qrels` (queries only in the run are ignored).

    A qrels query absent from the run, or present with no passages, gets 0 for every metric.
    """
    if relevance_level < 1:
        raise LedError(f"relevance level must be >= 1, got {relevance_level}")
    for depth in (mrr_depth, ndcg_depth, *recall_depths):
        if depth < 1:
            raise LedError(f"metric depths must be >= 1, got {depth}")
    names = metric_names(mrr_depth, ndcg_depth, recall_depths)
    qrels = {str(q): {str(p): int(g) for p, g in judged.items()} for q, judged in qrels.items()}
    results = {qid: dict.fromkeys(names, 0.0) for qid in qrels}
    ranked = {qid: rank_passages(run[qid]) for qid in qrels if run.get(qid)}
    if not ranked:
        return results
    full_run = {qid: {pid: float(score) for pid, score in items} for qid, items in ranked.items()}
    # trec_eval has no cutoff on recip_rank: cutting the run to its top mrr_depth first gives RR@depth.
    top_run = {qid: {pid: float(score) for pid, score in items[:mrr_depth]} for qid, items in ranked.items()}

    rr = RR(rel=relevance_level)
    ndcg = nDCG @ ndcg_depth
    trec_recalls = {R(rel=relevance_level) @ k: f"trec_recall@{k}" for k in recall_depths}
    measure_names = {ndcg: f"ndcg@{ndcg_depth}", **trec_recalls}
    for metric in ir_measures.pytrec_eval.iter_calc(list(measure_names), qrels, full_run):
        results[metric.query_id][measure_names[metric.measure]] = float(metric.value)
    for metric in ir_measures.pytrec_eval.iter_calc([rr], qrels, top_run):
        results[metric.query_id][f"mrr@{mrr_depth}"] = float(metric.value)

    for qid, items in ranked.items():
        judged = qrels[qid]
        first_hit = next(
            (rank for rank, (pid, _) in enumerate(items, start=1) if judged.get(pid, 0) >= relevance_level),
            None,
        )
        for k in recall_depths:
            results[qid][f"recall@{k}"] = float(first_hit is not None and first_hit <= k)
    return results


def evaluate_run(
    run: RunLike,
    qrels: Qrels,
    relevance_level: int = 1,
    mrr_depth: int = 10,
    ndcg_depth: int = 10,
    recall_depths: Sequence[int] = (50, 1000),
) -> dict[str, float | int]:
    """Mean of `evaluate_per_query` over all qrels queries, plus `num_queries` (queries with qrels)
    and `num_queries_retrieved` (of those, how many have at least one passage in the run).

    >>> evaluate_run({"q1": {"d1": 2.0, "d2": 1.0}}, {"q1": {"d2": 1}, "q2": {"d5": 1}})["mrr@10"]
    0.25
    """
    if not qrels:
        raise LedError("no qrels to evaluate against")
    per_query = evaluate_per_query(run, qrels, relevance_level, mrr_depth, ndcg_depth, recall_depths)
    return summarize(per_query, run)


def summarize(per_query: dict[str, dict[str, float]], run: RunLike) -> dict[str, float | int]:
    """`evaluate_run`'s summary of `evaluate_per_query` values: each metric's mean over the queries, plus
    `num_queries` and `num_queries_retrieved`."""
    count = len(per_query)
    names = next(iter(per_query.values())).keys() if per_query else ()
    summary: dict[str, float | int] = {
        name: sum(values[name] for values in per_query.values()) / count for name in names
    }
    summary["num_queries"] = count
    summary["num_queries_retrieved"] = sum(1 for qid in per_query if run.get(qid))
    return summary
