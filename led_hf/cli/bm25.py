"""`led bm25`: BM25 retrieval over a prepared dataset; writes a TREC run and, optionally, BM25 negatives.

    led bm25 --data data/scifact --split test --output runs/bm25.test.trec
    led bm25 --data data/scifact --split train --output runs/bm25.train.trec --negatives bm25 --keep 200

The queries searched are those with qrels in `--split` (or every query with `--all-queries`). With
`--negatives NAME` the ranked lists, minus each query's qrels positives of `--split`, cut to `--keep`, are
saved as DATA/negatives/NAME {qid, pids, scores}: the negatives source for collections that ship none.
"""

from __future__ import annotations

import argparse
import sys
import time

from led_hf.config import non_negative_float, positive_int
from led_hf.data.runs import write_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.retrieval.bm25 import (
    DEFAULT_B,
    DEFAULT_K1,
    build_corpus_index,
    negatives_from_results,
    query_texts,
    write_negatives,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led bm25",
        description="BM25 (Lucene scoring, bm25s) over DATA/corpus ('title text', English stopwords, Snowball "
        "stems). Writes a TREC run for the queries of --split and optionally DATA/negatives/NAME.",
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    parser.add_argument(
        "--split",
        required=True,
        help="qrels split whose queries are searched (and whose positives --negatives removes)",
    )
    parser.add_argument(
        "--all-queries",
        action="store_true",
        help="search every query in DATA/queries, not only those with qrels in --split",
    )
    parser.add_argument("--output", help="TREC run to write (qid Q0 pid rank score tag)")
    parser.add_argument(
        "--depth", type=positive_int, default=1000, help="passages retrieved per query (default 1000)"
    )
    parser.add_argument(
        "--k1",
        type=non_negative_float,
        default=DEFAULT_K1,
        help=f"BM25 k1 (default {DEFAULT_K1}, Anserini's)",
    )
    parser.add_argument(
        "--b", type=non_negative_float, default=DEFAULT_B, help=f"BM25 b (default {DEFAULT_B}, Anserini's)"
    )
    parser.add_argument("--no-stem", action="store_true", help="do not stem tokens")
    parser.add_argument("--tag", default="bm25", help="run tag, the last column of the run (default bm25)")
    parser.add_argument(
        "--negatives",
        metavar="NAME",
        help="also write DATA/negatives/NAME from the ranked lists (qrels positives removed)",
    )
    parser.add_argument(
        "--keep", type=positive_int, default=200, help="negatives kept per query, in rank order (default 200)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing DATA/negatives/NAME")
    parser.add_argument(
        "--batch-size", type=positive_int, default=1000, help="queries per search batch (default 1000)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.output and not args.negatives:
        parser.error("nothing to write: give --output and/or --negatives")
    if args.keep < 1:
        raise LedError(f"--keep must be at least 1, got {args.keep}")
    if args.negatives and ("/" in args.negatives or args.negatives.startswith(".")):
        raise LedError(f"--negatives {args.negatives!r} must be a plain name (it becomes a folder name)")
    data = PreparedData(args.data)
    qrels = data.qrels_dict(args.split)
    if args.negatives and not args.overwrite and (data.root / "negatives" / args.negatives).exists():
        raise LedError(
            f"{data.root / 'negatives' / args.negatives} already exists (pass --overwrite to replace it)"
        )
    if args.all_queries:
        qids = data.queries.data.column("qid").to_pylist()
    else:
        known = set(qrels)
        qids = sorted(known)
        missing = [qid for qid in qids if qid not in data.qid_index]
        if missing:
            raise LedError(
                f"qrels split {args.split!r} names query {missing[0]!r}, which is not in {data.root}/queries"
            )
    if not qids:
        raise LedError(f"no queries to search (split {args.split!r} of {data.root})")

    started = time.perf_counter()
    index = build_corpus_index(data, k1=args.k1, b=args.b, stem=not args.no_stem)
    indexed = time.perf_counter()
    ranked = index.search(query_texts(data, qids), depth=args.depth, batch_size=args.batch_size)
    results = dict(zip(qids, ranked))
    searched = time.perf_counter()

    if args.output:
        lines = write_run(args.output, results, tag=args.tag)
        print(f"wrote {lines} lines for {len(qids)} queries to {args.output}", file=sys.stderr)
    if args.negatives:
        columns = negatives_from_results(results, qrels, keep=args.keep)
        count = write_negatives(data.root / "negatives" / args.negatives, columns, overwrite=args.overwrite)
        print(
            f"wrote negatives for {count} queries to {data.root / 'negatives' / args.negatives}",
            file=sys.stderr,
        )
    print(
        f"indexed {len(index.pids)} passages in {indexed - started:.1f}s, searched {len(qids)} queries in "
        f"{searched - indexed:.1f}s",
        file=sys.stderr,
    )
    return 0
