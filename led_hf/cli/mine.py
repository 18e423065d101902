"""`led mine`: hard negatives for the next training stage (see led_hf.mining.job).

    led mine --data DATA --split train --name sp-stg1 --model runs/sp-stg1            # SPLADE (inverted index)
    led mine --data DATA --split train --name co-stg1 --model runs/co-stg1            # dense (faiss)
    led mine --data DATA --split train --name bm25 --bm25 --keep 200                   # BM25 (bm25s)
    led mine ... --corpus-embeddings enc/corpus     # reuse a `led encode --corpus` folder of the same model
    led mine ... --index idx/splade                 # reuse a `led index` folder (SPLADE or Lucene BM25)
    led mine ... --skip-top 3 --relative-margin 0.05 --sample-ranks 10:100 --seed 7
    accelerate launch -m led_hf mine ...            # each process encodes and searches its shards

Writes DATA/negatives/NAME {qid, pids, scores} with DATA/negatives/NAME/manifest.json, atomically, once
every shard is done; work in progress lives in DATA/.mine-NAME/ and a rerun of the same command resumes it.
Train on it with `negs_sources: ["NAME"]` (or "bm25,NAME", ...).
"""

from __future__ import annotations

import argparse
import os
import sys

from led_hf.errors import LedError
from led_hf.precision import add_precision_argument


def parse_rank_range(text: str) -> tuple[int, int]:
    """ "10:100" -> (10, 100)."""
    try:
        lo, hi = (int(part) for part in text.split(":"))
    except ValueError:
        raise LedError(f"--sample-ranks expects LO:HI such as 10:100, got {text!r}") from None
    return lo, hi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led mine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Retrieve --depth passages for every query with qrels in --split, remove the query's qrels "
        "positives, keep the first --keep in rank order with their scores, and write DATA/negatives/NAME "
        "(+ manifest.json). Resumable (per-shard work in DATA/.mine-NAME) and atomic.",
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    parser.add_argument(
        "--split", default="train", help="qrels split whose queries are mined (default train)"
    )
    parser.add_argument("--name", required=True, help="negatives source to write: DATA/negatives/NAME")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model", help="dense or SPLADE checkpoint (kind read from led_config.json), or bundled:NAME"
    )
    source.add_argument("--bm25", action="store_true", help="BM25 candidates instead of a model")
    parser.add_argument(
        "--kind",
        choices=("auto", "dense", "splade"),
        default="auto",
        help="model kind; auto reads the checkpoint (a plain masked-LM folder needs --kind splade)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "faiss", "inverted", "lucene"),
        default="auto",
        help="auto: faiss for dense, the embedded inverted index (float weights) for SPLADE, bm25s "
        "for --bm25; lucene: Anserini impact / BM25 index (pip install 'led-hf[sparse]')",
    )
    parser.add_argument("--depth", type=int, default=1000, help="passages retrieved per query (default 1000)")
    parser.add_argument(
        "--keep", type=int, default=200, help="negatives kept per query, in rank order (default 200)"
    )
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument(
        "--corpus-embeddings",
        metavar="ENC",
        help="passage encoding of this model from `led encode --corpus` (skip encoding the corpus)",
    )
    reuse.add_argument(
        "--index",
        metavar="IDX",
        help="`led index` folder: SPLADE inverted / Lucene impact, or Lucene BM25 with --bm25",
    )
    filters = parser.add_argument_group(
        "filters (negative ranks count retrieved passages once positives are removed)"
    )
    filters.add_argument("--skip-top", type=int, default=0, help="drop negative ranks 1..R (default 0)")
    filters.add_argument(
        "--absolute-margin",
        type=float,
        default=None,
        help="drop candidates scoring above s+ - M, s+ = the model's score of the best positive",
    )
    filters.add_argument(
        "--relative-margin",
        type=float,
        default=None,
        help="drop candidates scoring above s+ - |s+| * M (e.g. 0.05)",
    )
    filters.add_argument(
        "--sample-ranks",
        metavar="LO:HI",
        default=None,
        help="keep --keep candidates drawn at random from negative ranks LO..HI (in rank order)",
    )
    filters.add_argument(
        "--seed", type=int, default=42, help="seed of --sample-ranks (per query: seed and qid)"
    )
    parser.add_argument("--work-dir", help="resumable work folder (default DATA/.mine-NAME)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    parser.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help="query shards, the unit of resume and of work per process (default: 5000 queries each)",
    )
    parser.add_argument(
        "--corpus-shards",
        type=int,
        default=None,
        help="passage encoding shards (default: 100000 passages each)",
    )
    parser.add_argument("--query-max-length", type=int, default=32, help="query tokens (default 32)")
    parser.add_argument("--passage-max-length", type=int, default=128, help="passage tokens (default 128)")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per forward pass (default 64)")
    add_precision_argument(parser, "query and passage encoders")
    parser.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (default 0.9)")
    parser.add_argument("--b", type=float, default=0.4, help="BM25 b (default 0.4)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DATA/negatives/NAME, and discard a work folder made for another run",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("num_shards", "corpus_shards", "batch_size", "query_max_length", "passage_max_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LedError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    from led_hf.mining.filters import NegativeFilters
    from led_hf.mining.job import MiningJob

    filters = NegativeFilters(
        keep=args.keep,
        skip_top=args.skip_top,
        absolute_margin=args.absolute_margin,
        relative_margin=args.relative_margin,
        seed=args.seed,
        sample_ranks=parse_rank_range(args.sample_ranks) if args.sample_ranks else None,
    )
    job = MiningJob(
        args.data,
        args.split,
        args.name,
        model=args.model,
        bm25=args.bm25,
        kind=args.kind,
        backend=args.backend,
        depth=args.depth,
        filters=filters,
        corpus_embeddings=args.corpus_embeddings,
        index=args.index,
        work_dir=args.work_dir,
        num_shards=args.num_shards,
        corpus_shards=args.corpus_shards,
        query_max_length=args.query_max_length,
        passage_max_length=args.passage_max_length,
        batch_size=args.batch_size,
        precision=args.precision,
        k1=args.k1,
        b=args.b,
        overwrite=args.overwrite,
        keep_work=args.keep_work,
        progress=not args.no_progress,
    )

    import torch
    from accelerate import PartialState

    launched_world = int(os.environ.get("WORLD_SIZE", "1"))
    # Without cpu=True accelerate makes every launched CPU process a lone rank 0 (see `led encode`).
    state = PartialState(cpu=launched_world > 1 and not torch.cuda.is_available())
    if state.num_processes != launched_world:
        raise LedError(f"launched as {launched_world} processes but accelerate sees {state.num_processes}")
    manifest = job.run(state)
    if manifest is not None:
        print(
            f"wrote {manifest['num_negatives']} negatives for {manifest['num_queries_written']} of "
            f"{manifest['num_queries']} queries to {job.output} ({manifest['kind']}, {manifest['backend']}, "
            f"depth {manifest['depth']}, keep {manifest['keep']}) in {manifest['wall_seconds']:.1f}s",
            file=sys.stderr,
        )
    return 0
