"""`led rerank`: re-rank a TREC run's top passages with a cross-encoder; write the re-ranked TREC run.

    led bm25 --data DATA --split test --output runs/bm25.test.trec
    led rerank --model runs/ce --data DATA --split test --run runs/bm25.test.trec --depth 100 --output runs/ce.test.trec
    led evaluate --data DATA --split test --run runs/ce.test.trec

--model is a cross-encoder trained by `led train cross-encoder`, or any sequence-classification checkpoint
with a trained 1-logit head (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2). The scores written are its logits.
"""

from __future__ import annotations

import argparse
import sys
import time

from led_hf.errors import LedError
from led_hf.precision import add_precision_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led rerank",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score each query's top --depth passages of a TREC run with a cross-encoder "
        "(`[CLS] query [SEP] title [SEP] text [SEP]`, one logit per pair) and write them ranked by "
        "that score. Passages below --depth are dropped.",
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument(
        "--model", required=True, help="cross-encoder folder or hub id (a trained 1-logit head)"
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    parser.add_argument("--run", required=True, help="TREC run to re-rank (qid Q0 pid rank score tag)")
    parser.add_argument("--output", required=True, help="re-ranked TREC run to write")
    parser.add_argument(
        "--split", help="re-rank only the run's queries with qrels in this split (default: all)"
    )
    parser.add_argument("--depth", type=int, default=100, help="passages re-ranked per query (default 100)")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass (default 32)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="pair tokens, special tokens included (default: the model's training length, else 256)",
    )
    parser.add_argument(
        "--tag", default="rerank", help="run tag, the last column of the run (default rerank)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    add_precision_argument(parser, "cross-encoder (scores stay fp32)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.depth < 1 or args.batch_size < 1 or (args.max_length is not None and args.max_length < 2):
        raise LedError("--depth and --batch-size must be at least 1, --max-length at least 2")

    import torch

    from led_hf.data.runs import read_run, write_run
    from led_hf.data.store import PreparedData
    from led_hf.precision import resolve_precision
    from led_hf.scoring.rerank import lookup_pairs, rerank_pairs, top_candidates
    from led_hf.scoring.scorers import CrossEncoderScorer, load_cross_encoder_teacher

    data = PreparedData(args.data)
    run = read_run(args.run)
    qids = None
    if args.split:
        qrels = data.qrels_dict(args.split)
        qids = [qid for qid in run if qid in qrels]
        if len(qids) < len(run):
            print(
                f"note: {len(run) - len(qids)} of {len(run)} run queries have no qrels in split "
                f"{args.split!r}; not re-ranked",
                file=sys.stderr,
            )
    candidates = top_candidates(run, args.depth, qids)
    if not candidates:
        raise LedError(f"{args.run}: no queries to re-rank")
    pairs = lookup_pairs(data, candidates, source=args.run)

    model, collator = load_cross_encoder_teacher(args.model, args.max_length)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(args.precision, device)
    scorer = CrossEncoderScorer(model, collator, args.batch_size, device, precision)

    started = time.perf_counter()
    results = rerank_pairs(scorer, data, pairs, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    lines = write_run(args.output, results, tag=args.tag)
    print(
        f"re-ranked {lines} pairs of {len(results)} queries in {seconds:.1f}s ({lines / max(seconds, 1e-9):.1f} "
        f"pairs/s, max length {collator.max_length}, {precision}); wrote {args.output}",
        file=sys.stderr,
    )
    return 0
