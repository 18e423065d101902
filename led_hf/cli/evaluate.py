"""`led evaluate`: score a TREC run against a prepared dataset's qrels; print one JSON object.

    led evaluate --data data/scifact --split test --run runs/bm25.trec
    {"mrr@10": 0.637, "ndcg@10": 0.676, "recall@50": 0.88, "recall@1000": 0.97, ...}

Metrics follow the LED paper (docs/method.md §6, see `led_hf.evaluation.metrics`): averaged over every query with
qrels (missing ones count 0); `recall@k` is the paper's hit rate, `trec_recall@k` trec_eval's recall.
Stdout carries the JSON object only; notes go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from led_hf.atomic import atomic_file
from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led evaluate",
        description="Score a TREC run (`qid Q0 pid rank score tag`) against DATA/qrels/SPLIT and print one JSON "
        "object: mrr@10, ndcg@10, recall@50, recall@1000 (hit rate: any relevant in the top k), "
        "trec_recall@50/@1000 (fraction of relevant retrieved), num_queries, num_queries_retrieved.",
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    parser.add_argument("--split", required=True, help="qrels split to evaluate against, e.g. dev, test")
    parser.add_argument("--run", required=True, help="TREC run file")
    parser.add_argument(
        "--relevance-level",
        type=int,
        default=1,
        help="minimum grade that counts as relevant for mrr/recall (default 1; 2 is usual for TREC DL)",
    )
    parser.add_argument("--mrr-depth", type=int, default=10, help="cutoff of MRR (default 10)")
    parser.add_argument("--ndcg-depth", type=int, default=10, help="cutoff of nDCG (default 10)")
    parser.add_argument(
        "--recall-depths",
        type=int,
        nargs="+",
        default=[50, 1000],
        help="cutoffs of recall / trec_recall (default 50 1000)",
    )
    parser.add_argument("--output", help="also write the JSON object to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    qrels = PreparedData(args.data).qrels_dict(args.split)
    if not qrels:
        raise LedError(f"qrels split {args.split!r} of {args.data} is empty")
    run = read_run(args.run)
    unknown = sum(1 for qid in run if qid not in qrels)
    if unknown:
        print(
            f"note: {unknown} of {len(run)} run queries have no qrels in split {args.split!r}; ignored",
            file=sys.stderr,
        )
    metrics = evaluate_run(
        run,
        qrels,
        relevance_level=args.relevance_level,
        mrr_depth=args.mrr_depth,
        ndcg_depth=args.ndcg_depth,
        recall_depths=args.recall_depths,
    )
    if metrics["num_queries_retrieved"] == 0:
        print(f"warning: the run retrieves nothing for any query of split {args.split!r}", file=sys.stderr)
    text = json.dumps(metrics)
    if args.output:
        with atomic_file(args.output) as handle:
            handle.write(json.dumps(metrics, indent=2) + "\n")
    print(text)
    return 0
