"""`led evaluate`: score a TREC run against a prepared dataset's qrels; print one JSON object.

    led evaluate --data data/scifact --split test --run runs/bm25.trec
    {"mrr@10": 0.637, "ndcg@10": 0.676, "recall@50": 0.88, "recall@1000": 0.97, ...}

Metrics follow the LED paper (docs/method.md §6, see `led_hf.evaluation.metrics`): averaged over every query with
qrels (missing ones count 0); `recall@k` is the paper's hit rate, `trec_recall@k` trec_eval's recall.
Stdout carries the JSON object only; notes go to stderr.

With `--baseline RUN_B` the object gains `"baseline"` (B's metrics) and `"comparison"`: per metric the
mean difference A - B with its 95% t interval and bootstrap interval, the p-values of a paired t-test
and a paired randomization (sign-flip) test over the per-query values, and "detectable", the difference a
paired t-test over these queries finds at p < 0.05 with 80% power (docs/method.md §6):

    led evaluate --data data/scifact --split dev --run runs/led.trec --baseline runs/den.trec

Several runs of one system (seeds) are read as one: `--run led-42.trec led-1.trec led-2.trec` gives each
metric's mean over the runs, `"runs"` (their count), `"std"` (the sample std over runs) and `"per_run"`
(each run's metrics), and the paired tests compare per-query means over the runs of each side
(led_hf/evaluation/seeds.py):

    led evaluate --data data/scifact --split dev --run led-{42,1,2}.trec --baseline control-{42,1,2}.trec
"""

from __future__ import annotations

import argparse
import json
import sys

from led_hf.atomic import atomic_file
from led_hf.config import positive_int
from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_per_query, metric_names, summarize
from led_hf.evaluation.seeds import mean_and_std, per_query_means
from led_hf.evaluation.significance import compare_paired


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led evaluate",
        description="Score a TREC run (`qid Q0 pid rank score tag`) against DATA/qrels/SPLIT and print one JSON "
        "object: mrr@10, ndcg@10, recall@50, recall@1000 (hit rate: any relevant in the top k), "
        "trec_recall@50/@1000 (fraction of relevant retrieved), num_queries, num_queries_retrieved.",
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    parser.add_argument("--split", required=True, help="qrels split to evaluate against, e.g. dev, test")
    parser.add_argument(
        "--run",
        required=True,
        nargs="+",
        help="TREC run file; several (one system's seeds, say) give the mean and sample std over them",
    )
    parser.add_argument(
        "--relevance-level",
        type=positive_int,
        default=1,
        help="minimum grade that counts as relevant for mrr/recall (default 1; 2 is usual for TREC DL)",
    )
    parser.add_argument("--mrr-depth", type=positive_int, default=10, help="cutoff of MRR (default 10)")
    parser.add_argument("--ndcg-depth", type=positive_int, default=10, help="cutoff of nDCG (default 10)")
    parser.add_argument(
        "--recall-depths",
        type=positive_int,
        nargs="+",
        default=[50, 1000],
        help="cutoffs of recall / trec_recall (default 50 1000)",
    )
    parser.add_argument(
        "--baseline",
        nargs="+",
        help="a second system's TREC run (or runs, over seeds) on the same queries: adds paired tests of "
        "RUN - BASELINE per metric (paired t-test, paired randomization test, 95%% intervals of the mean "
        "difference, the difference these queries detect with 80%% power), over per-query means when either "
        "side has several runs",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=10000,
        help="sign patterns / bootstrap samples of the paired tests (default 10000; exact below 2^n)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the paired tests' sampling (default 0)")
    parser.add_argument("--output", help="also write the JSON object to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.baseline and args.resamples < 1:
        raise LedError(f"--resamples must be at least 1, got {args.resamples}")
    data = PreparedData(args.data)
    qrels = data.qrels_dict(args.split)
    if not qrels:
        raise LedError(f"qrels split {args.split!r} of {args.data} is empty")
    options = dict(
        relevance_level=args.relevance_level,
        mrr_depth=args.mrr_depth,
        ndcg_depth=args.ndcg_depth,
        recall_depths=args.recall_depths,
    )
    metrics, per_query = _score(args.run, data, qrels, args.split, options)
    if args.baseline:
        metrics["baseline"], baseline_per_query = _score(args.baseline, data, qrels, args.split, options)
        metrics["comparison"] = compare_paired(
            per_query,
            baseline_per_query,
            metric_names(args.mrr_depth, args.ndcg_depth, args.recall_depths),
            n_resamples=args.resamples,
            seed=args.seed,
        )
    text = json.dumps(metrics)
    if args.output:
        with atomic_file(args.output) as handle:
            handle.write(json.dumps(metrics, indent=2) + "\n")
    print(text)
    return 0


def _score(paths: list[str], data, qrels: dict, split: str, options: dict) -> tuple[dict, dict]:
    """(metrics, {qid: {metric: value}}) of one run; of several, the means over them with "runs", "std"
    (sample std over runs) and "per_run", and the per-query means over them."""
    scored, per_query = [], []
    for path in paths:
        run = _read(path, data, qrels, split)
        per_query.append(evaluate_per_query(run, qrels, **options))
        scored.append(summarize(per_query[-1], run))  # evaluate_run's summary, without scoring twice
        if scored[-1]["num_queries_retrieved"] == 0:
            print(
                f"warning: {path}: the run retrieves nothing for any query of split {split!r}",
                file=sys.stderr,
            )
    if len(paths) == 1:
        return scored[0], per_query[0]
    names = [name for name, value in scored[0].items() if isinstance(value, float)]
    spread = {name: mean_and_std([entry[name] for entry in scored]) for name in names}
    metrics = {name: spread[name][0] for name in names}
    metrics["num_queries"] = scored[0]["num_queries"]
    metrics["num_queries_retrieved"] = min(entry["num_queries_retrieved"] for entry in scored)
    metrics.update(runs=len(paths), std={name: spread[name][1] for name in names}, per_run=scored)
    return metrics, per_query_means(per_query)


def _read(path: str, data, qrels: dict, split: str) -> dict:
    """A TREC run, checked against the dataset: BOM-prefixed ids matched, unknown passages and queries noted
    (a run that retrieves nothing is warned about once scored, from its `num_queries_retrieved`)."""
    run = _strip_bom_ids(read_run(path), qrels, path)
    _warn_unknown_passages(run, data, path)
    unknown = sum(1 for qid in run if qid not in qrels)
    if unknown:
        print(
            f"note: {path}: {unknown} of {len(run)} run queries have no qrels in split {split!r}; ignored",
            file=sys.stderr,
        )
    return run


BOM = "\ufeff"


def _strip_bom_ids(run: dict, qrels: dict, path: str) -> dict:
    """A run written by a tool that starts its file with a UTF-8 BOM has "\\ufeffQID" as its first query id:
    it would silently count as a query without judgments. Match it without the BOM, and say so."""
    fixed = [qid for qid in run if qid.startswith(BOM) and qid not in qrels and qid.lstrip(BOM) in qrels]
    if not fixed:
        return run
    print(
        f"warning: {path}: query id {fixed[0].lstrip(BOM)!r} starts with a UTF-8 byte-order mark; "
        f"matched without it ({len(fixed)} id(s))",
        file=sys.stderr,
    )
    merged: dict = {}
    for qid, passages in run.items():  # the BOM is on the file's first line only: merge with its other lines
        merged.setdefault(qid.lstrip(BOM) if qid in fixed else qid, {}).update(passages)
    return merged


def _warn_unknown_passages(run: dict, data, path: str) -> None:
    """Passage ids that are not in the corpus mean the run belongs to another dataset (or its ids were
    mangled): its metrics would be silently low."""
    pids = sorted({pid for passages in run.values() for pid in passages})
    if not pids:
        return
    missing = [pid for pid, row in zip(pids, data.pid_index.rows(pids, strict=False)) if row < 0]
    if missing:
        print(
            f"warning: {path}: {len(missing)} of {len(pids)} passage ids are not in the corpus of "
            f"{data.root} (e.g. {missing[0]!r}); is the run from another dataset?",
            file=sys.stderr,
        )
