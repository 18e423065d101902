"""`evaluate` metric module: the LED paper's retrieval metrics (MRR@10, nDCG@10, hit-rate R@k, trec_eval recall).

Load it offline from this folder (or this file)::

    import evaluate
    metric = evaluate.load("/path/to/led_hf/evaluation/led_metric")
    metric.compute(
        predictions=[{"pids": ["d3", "d1"], "scores": [2.0, 1.5]},    # one ranked list per query
                     {"pids": [], "scores": []}],                      # nothing retrieved: counts 0
        references=[{"pids": ["d1"], "grades": [1]},                    # that query's qrels
                    {"pids": ["d7", "d9"], "grades": [2, 1]}],
    )
    # {'mrr@10': 0.25, 'ndcg@10': 0.3154..., 'recall@50': 0.5, ..., 'num_queries': 2, ...}

One example = one query: `predictions[i]` is its retrieved passages with their scores (any order: they
are ranked by score descending, ties by pid descending, as trec_eval), `references[i]` its judged
passages with integer grades. Every example counts, so pass one per query with qrels. Keyword
arguments: `relevance_level` (minimum grade counted relevant for mrr/recall, default 1), `mrr_depth`,
`ndcg_depth` (default 10), `recall_depths` (default (50, 1000)). Definitions: `led_hf.evaluation.metrics`.
"""

from __future__ import annotations

import datasets
import evaluate

from led_hf.evaluation.metrics import evaluate_run

_DESCRIPTION = __doc__
_CITATION = """\
@inproceedings{zhang2023led,
  title={LED: Lexicon-Enlightened Dense Retriever for Large-Scale Retrieval},
  author={Zhang, Kai and Tao, Chongyang and Shen, Tao and Xu, Can and Geng, Xiubo and Jiao, Binxing and Jiang, Daxin},
  booktitle={Proceedings of the ACM Web Conference 2023},
  year={2023}
}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"pids": list[str], "scores": list[float]}, one per query.
    references: list of {"pids": list[str], "grades": list[int]}, the qrels of the same queries.
    relevance_level: int, minimum grade counted relevant by mrr / recall / trec_recall (default 1).
    mrr_depth, ndcg_depth: int cutoffs (default 10). recall_depths: tuple of ints (default (50, 1000)).
Returns:
    mrr@10, ndcg@10, recall@k (hit rate), trec_recall@k, num_queries, num_queries_retrieved.
"""


class LedMetric(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": {
                        "pids": datasets.Sequence(datasets.Value("string")),
                        "scores": datasets.Sequence(datasets.Value("float64")),
                    },
                    "references": {
                        "pids": datasets.Sequence(datasets.Value("string")),
                        "grades": datasets.Sequence(datasets.Value("int64")),
                    },
                }
            ),
            reference_urls=["https://arxiv.org/abs/2208.13661", "https://github.com/terrierteam/ir_measures"],
        )

    def _compute(
        self,
        predictions,
        references,
        relevance_level: int = 1,
        mrr_depth: int = 10,
        ndcg_depth: int = 10,
        recall_depths=(50, 1000),
    ):
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        run, qrels = {}, {}
        for i, (prediction, reference) in enumerate(zip(predictions, references)):
            if len(prediction["pids"]) != len(prediction["scores"]):
                raise ValueError(
                    f"prediction {i}: {len(prediction['pids'])} pids but {len(prediction['scores'])} scores"
                )
            if len(reference["pids"]) != len(reference["grades"]):
                raise ValueError(
                    f"reference {i}: {len(reference['pids'])} pids but {len(reference['grades'])} grades"
                )
            if len(set(prediction["pids"])) != len(prediction["pids"]):
                raise ValueError(f"prediction {i} lists a passage twice")
            qid = str(i)
            run[qid] = dict(zip(prediction["pids"], map(float, prediction["scores"])))
            qrels[qid] = dict(zip(reference["pids"], map(int, reference["grades"])))
        return evaluate_run(
            run,
            qrels,
            relevance_level=relevance_level,
            mrr_depth=mrr_depth,
            ndcg_depth=ndcg_depth,
            recall_depths=tuple(recall_depths),
        )
