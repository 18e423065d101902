"""`led score-teacher`: score every training (query, candidate) pair once with a frozen LED teacher.

    led score-teacher --data DATA --teacher runs/sp-stg2 --negs-sources co-stg1,sp-stg1,sp-stg2 --name sp-stg2
    led score-teacher --data DATA --teacher runs/ce --negs-sources co-stg1,sp-stg1,sp-stg2 --name ce
    led score-teacher --data DATA --teacher bm25 --negs-sources co-stg1,sp-stg1,sp-stg2 --name bm25
    led score-teacher --data DATA --teacher runs/sp-stg2 --kind fused --fusion-weight 0.5 --name fused
    led score-teacher --data DATA --teacher runs/co-stg1 --negs-sources bm25 --name co-stg1   # dense teacher
    led train led configs/msmarco/led.json --teacher_scores precomputed --teacher_scores_name sp-stg2
    led train splade configs/demo/lex_cranfield.json --kl_weight 1 --teacher_scores_name co-stg1

Prints the written folder's metadata as one JSON object.
"""

from __future__ import annotations

import argparse
import json

from led_hf.arguments import PoolArguments
from led_hf.config import add_dataclass_options, positive_int
from led_hf.errors import LedError
from led_hf.precision import add_precision_argument

# PoolArguments' field -> this command's flag (the others are --data, --negs-sources, --num-negs-per-system)
POOL_FLAGS = {"train_split": "--split"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led score-teacher",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score each training query's positives and negative pool (the passages LED training can "
        "draw for it) with a frozen SPLADE, cross-encoder, dense, BM25 or fused (SPLADE + BM25) teacher, once, into "
        "DATA/teacher_scores/NAME (Arrow rows {qid, pids, scores}; written atomically). "
        "`led train led --teacher_scores precomputed --teacher_scores_name NAME` (or "
        "--cross_encoder_scores_name NAME), or `led train splade --kl_weight W --teacher_scores_name NAME`, "
        "then reads the scores instead of running the teacher.",
        epilog=__doc__.split("\n", 2)[2],
    )
    add_dataclass_options(parser, PoolArguments, POOL_FLAGS)
    parser.add_argument(
        "--teacher",
        required=True,
        help="teacher checkpoint: a SPLADE folder (or bundled:splade-tiny), a trained cross-encoder or a "
        "dense bi-encoder (a `led train dense` folder or a sentence-transformers model); "
        "`bm25` for the BM25 teacher (no model: BM25 scores from a bm25s index of the corpus)",
    )
    parser.add_argument("--name", required=True, help="output folder name under DATA/teacher_scores/")
    parser.add_argument(
        "--kind",
        choices=("splade", "cross-encoder", "dense", "bm25", "fused"),
        default=None,
        help="teacher kind (default: the checkpoint's led_config.json; bm25 for --teacher bm25); fused: "
        "the SPLADE --teacher plus BM25, each normalised per query, weighted by --fusion-weight; dense: "
        "<e_q, e_p> / temperature, the logits the bi-encoder's training saw",
    )
    parser.add_argument("--bm25-k1", type=float, default=0.9, help="BM25 / fused teacher: k1 (0.9)")
    parser.add_argument("--bm25-b", type=float, default=0.4, help="BM25 / fused teacher: b (0.4)")
    parser.add_argument(
        "--fusion-weight",
        type=float,
        default=0.5,
        help="fused teacher: weight w of SPLADE; BM25 gets 1 - w (0.5)",
    )
    parser.add_argument(
        "--fusion-normalisation",
        choices=("zscore", "minmax"),
        default="zscore",
        help="fused teacher: per-query normalisation of each teacher's candidate scores (zscore)",
    )
    parser.add_argument(
        "--query-max-length", type=positive_int, default=32, help="SPLADE or dense teacher: query tokens (32)"
    )
    parser.add_argument(
        "--passage-max-length",
        type=positive_int,
        default=128,
        help="SPLADE or dense teacher: passage tokens (128)",
    )
    parser.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="cross-encoder: pair tokens (default: its training length, else 256)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="texts or pairs per forward pass (64)"
    )
    parser.add_argument(
        "--queries-per-chunk",
        type=positive_int,
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
        type=positive_int,
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
        bm25_k1=args.bm25_k1,
        bm25_b=args.bm25_b,
        fusion_weight=args.fusion_weight,
        fusion_normalisation=args.fusion_normalisation,
    )
    print(json.dumps(metadata))
    return 0
