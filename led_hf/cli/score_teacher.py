"""`led score-teacher`: score every training (query, candidate) pair once with a frozen LED teacher.

    led score-teacher --data DATA --teacher runs/sp-stg2 --negs-sources co-stg1,sp-stg1,sp-stg2 --name sp-stg2
    led score-teacher --data DATA --teacher runs/ce --negs-sources co-stg1,sp-stg1,sp-stg2 --name ce
    led train led configs/msmarco/led.json --teacher_scores precomputed --teacher_scores_name sp-stg2

Prints the written folder's metadata as one JSON object.
"""

from __future__ import annotations

import argparse
import json

from led_hf.arguments import PoolArguments
from led_hf.config import add_dataclass_options
from led_hf.errors import LedError
from led_hf.precision import add_precision_argument

# PoolArguments' field -> this command's flag (the others are --data, --negs-sources, --num-negs-per-system)
POOL_FLAGS = {"train_split": "--split"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led score-teacher",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score each training query's positives and negative pool (the passages LED training can "
        "draw for it) with a frozen SPLADE or cross-encoder teacher, once, into "
        "DATA/teacher_scores/NAME (Arrow rows {qid, pids, scores}; written atomically). "
        "`led train led --teacher_scores precomputed --teacher_scores_name NAME` (or "
        "--cross_encoder_scores_name NAME) then reads the scores instead of running the teacher.",
        epilog=__doc__.split("\n", 2)[2],
    )
    add_dataclass_options(parser, PoolArguments, POOL_FLAGS)
    parser.add_argument(
        "--teacher",
        required=True,
        help="teacher checkpoint: a SPLADE folder (or bundled:splade-tiny) or a trained cross-encoder",
    )
    parser.add_argument("--name", required=True, help="output folder name under DATA/teacher_scores/")
    parser.add_argument(
        "--kind",
        choices=("splade", "cross-encoder"),
        default=None,
        help="teacher kind (default: the checkpoint's led_config.json)",
    )
    parser.add_argument("--query-max-length", type=int, default=32, help="SPLADE teacher: query tokens (32)")
    parser.add_argument(
        "--passage-max-length", type=int, default=128, help="SPLADE teacher: passage tokens (128)"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="cross-encoder: pair tokens (default: its training length, else 256)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="texts or pairs per forward pass (64)")
    parser.add_argument(
        "--queries-per-chunk",
        type=int,
        default=64,
        help="queries scored together; a SPLADE teacher encodes their distinct passages once (64)",
    )
    parser.add_argument(
        "--corpus-vectors",
        metavar="ENC",
        default=None,
        help="SPLADE teacher: its `led encode --corpus` folder (same --passage-max-length); passages "
        "are looked up instead of encoded again (the fast path for small corpora)",
    )
    parser.add_argument(
        "--part-queries",
        type=int,
        default=4096,
        help="queries per resumable part: a rerun after a kill scores only missing parts (4096)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda when available, else cpu)"
    )
    add_precision_argument(parser, "teacher (scores are kept in fp32)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing DATA/teacher_scores/NAME"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pool = PoolArguments(**{name: getattr(args, name) for name in PoolArguments.__dataclass_fields__})
    for name in (
        "query_max_length",
        "passage_max_length",
        "batch_size",
        "queries_per_chunk",
        "part_queries",
    ):
        if getattr(args, name) < 1:
            raise LedError(f"--{name.replace('_', '-')} must be positive")
    from led_hf.scoring.teacher_scores import score_teacher

    metadata = score_teacher(
        pool.data,
        args.teacher,
        args.name,
        split=pool.train_split,
        negs_sources=pool.negs_sources,
        num_negs_per_system=pool.num_negs_per_system,
        kind=args.kind,
        query_max_length=args.query_max_length,
        passage_max_length=args.passage_max_length,
        max_length=args.max_length,
        batch_size=args.batch_size,
        queries_per_chunk=args.queries_per_chunk,
        part_queries=args.part_queries,
        corpus_vectors=args.corpus_vectors,
        device=args.device,
        precision=args.precision,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(json.dumps(metadata))
    return 0
