"""`led index`: build a sparse index from SPLADE vectors (embedded inverted index or Lucene), or a Lucene BM25 index.

    led encode --model SPLADE_CKPT --data DATA --corpus --output enc/corpus     (sparse vectors)
    led index --backend inverted --vectors enc/corpus --output idx/splade        (default: no JVM)
    led index --backend lucene --vectors enc/corpus --output idx/splade-lucene   (needs led-hf[sparse])
    led index --backend lucene --data DATA --output idx/bm25                     (BM25 over DATA/corpus)
    led search --index idx/splade --queries enc/test-queries --output run.trec   (sparse search)

Weights are quantised to round(100·w) integers by default, which is what Lucene's impact index stores,
so both backends give the same integer scores; `--float` keeps float32 weights (inverted backend only).
"""

from __future__ import annotations

import argparse
import sys
import time

from led_hf.config import positive_int
from led_hf.errors import LedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led index",
        description="Index SPLADE term weights (from `led encode`) for exact impact search, or a prepared "
        "corpus for Lucene BM25. The output folder appears only when complete.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1],
    )
    parser.add_argument(
        "--backend",
        choices=("inverted", "lucene"),
        default="inverted",
        help="inverted: embedded memory-mapped index, no JVM (default); lucene: Anserini through "
        "pyserini (pip install 'led-hf[sparse]')",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vectors", help="sparse vectors folder of the passages (from `led encode`)")
    source.add_argument(
        "--data", help="prepared dataset (from `led prepare`): BM25 index of DATA/corpus (lucene)"
    )
    parser.add_argument("--output", required=True, help="index folder to write")
    parser.add_argument(
        "--float",
        dest="quantized",
        action="store_false",
        help="keep float32 weights instead of round(100·w) integers (inverted backend)",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="Lucene indexing threads (default: all cores)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    if args.backend == "inverted":
        if args.data:
            raise LedError("--data (BM25) needs --backend lucene; the inverted backend indexes --vectors")
        from led_hf.retrieval.inverted_build import build_inverted_index

        stats = build_inverted_index(
            args.vectors,
            args.output,
            quantized=args.quantized,
            overwrite=args.overwrite,
            progress=not args.quiet,
        )
        print(
            f"indexed {stats['num_docs']} passages ({stats['num_postings']} postings; {len(stats['built'])} shards "
            f"built, {len(stats['reused'])} reused) in {time.perf_counter() - started:.1f}s -> {args.output}",
            file=sys.stderr,
        )
        return 0
    from led_hf.retrieval import lucene

    if not args.quantized:
        raise LedError("--float is for the inverted backend: Lucene impact indexes hold integer weights")
    if args.vectors:
        stats = lucene.build_impact_index(
            args.vectors, args.output, threads=args.threads, overwrite=args.overwrite, progress=not args.quiet
        )
    else:
        stats = lucene.build_bm25_index(
            args.data, args.output, threads=args.threads, overwrite=args.overwrite, progress=not args.quiet
        )
    print(
        f"indexed {stats['num_docs']} documents with Lucene in {time.perf_counter() - started:.1f}s -> {args.output}",
        file=sys.stderr,
    )
    return 0


def build_search_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led search --index",
        description="Exact sparse search of encoded queries against an index from `led index` (inverted or Lucene "
        "impact); writes a TREC run `qid Q0 pid rank score tag`.",
    )
    parser.add_argument("--index", required=True, help="index folder (from `led index --vectors`)")
    parser.add_argument("--queries", required=True, help="sparse query vectors folder (from `led encode`)")
    parser.add_argument("--output", required=True, help="TREC run to write")
    parser.add_argument(
        "--depth", type=positive_int, default=1000, help="passages retrieved per query (default 1000)"
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="processes / Lucene threads (default: all cores)"
    )
    parser.add_argument(
        "--tag", default="sparse", help="run tag, the last column of the run (default sparse)"
    )
    return parser


def search_main(argv: list[str] | None = None) -> int:
    """`led search --index IDX --queries ENC_Q --output RUN`: the sparse branch of `led search`."""
    from led_hf.data.runs import require_some_results, write_run
    from led_hf.retrieval.inverted_index import search_sparse

    args = build_search_parser().parse_args(argv)
    started = time.perf_counter()
    results = search_sparse(args.index, args.queries, depth=args.depth, workers=args.workers)
    searched = time.perf_counter()
    require_some_results(results, f"led search --index {args.index} --queries {args.queries}")
    lines = write_run(args.output, results, tag=args.tag, depth=args.depth)
    print(
        f"searched {len(results)} queries in {searched - started:.1f}s; wrote {lines} lines to {args.output}",
        file=sys.stderr,
    )
    return 0
