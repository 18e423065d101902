"""Run/qrels io, IR metrics with trec_eval semantics, in-training evaluator, `evaluate` metric module."""

from led_hf.data.runs import read_run, results_from_arrays, write_run, write_run_arrays
from led_hf.evaluation.metrics import evaluate_per_query, evaluate_run, metric_names


def __getattr__(name):
    # the evaluator imports transformers: only load it when asked for
    if name in ("RetrievalEvaluator", "RetrievalEvaluatorCallback"):
        from led_hf.evaluation import evaluator

        return getattr(evaluator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "RetrievalEvaluator",
    "RetrievalEvaluatorCallback",
    "evaluate_per_query",
    "evaluate_run",
    "metric_names",
    "read_run",
    "results_from_arrays",
    "write_run",
    "write_run_arrays",
]
