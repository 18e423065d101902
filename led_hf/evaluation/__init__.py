"""Run/qrels io, IR metrics with trec_eval semantics, in-training evaluator, `evaluate` metric module."""
