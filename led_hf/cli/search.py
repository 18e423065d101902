"""`led search`: exact dense retrieval (faiss inner product) from two embeddings folders to a TREC run.

    led encode ... --output enc/corpus          (passages)
    led encode ... --split test --output enc/test-queries
    led search --passages enc/corpus --queries enc/test-queries --output runs/dense.test.trec --depth 1000

One `IndexFlatIP` per passage shard (all GPUs when faiss has any), queries searched in batches, the
per-shard top-k merged; see `led_hf.retrieval.faiss_search`.
"""

from __future__ import annotations

import argparse
import sys
import time

from led_hf.data.runs import write_run_arrays
from led_hf.errors import LedError
from led_hf.retrieval.faiss_search import gpu_count, search_folders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led search",
        description="Exact inner-product search of encoded queries against an encoded corpus (faiss IndexFlatIP, "
        "GPU when available); writes a TREC run `qid Q0 pid rank score tag`.",
    )
    parser.add_argument(
        "--passages",
        required=True,
        help="passage embeddings folder (from `led encode`); "
        "sparse search instead: `led search --index IDX --queries ENC --output RUN` (see led index)",
    )
    parser.add_argument("--queries", required=True, help="query embeddings folder (from `led encode`)")
    parser.add_argument("--output", required=True, help="TREC run to write")
    parser.add_argument("--depth", type=int, default=1000, help="passages retrieved per query (default 1000)")
    parser.add_argument(
        "--batch-size", type=int, default=4096, help="queries per faiss search call (default 4096)"
    )
    parser.add_argument("--tag", default="dense", help="run tag, the last column of the run (default dense)")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--cpu", action="store_true", help="search on the CPU even when faiss sees GPUs")
    device.add_argument("--gpu", action="store_true", help="require the GPU (fails when faiss has none)")
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None and "--index" in argv:  # sparse search over `led index` output (led_hf.cli.index)
        from led_hf.cli.index import search_main

        return search_main(argv)
    args = build_parser().parse_args(argv)
    use_gpu = False if args.cpu else (True if args.gpu else None)
    if args.gpu and gpu_count() == 0:
        raise LedError("--gpu given but faiss sees no GPU (install faiss-gpu: pip install 'led-hf[gpu]')")
    started = time.perf_counter()
    qids, scores, indices, pids = search_folders(
        args.queries, args.passages, depth=args.depth, batch_size=args.batch_size, use_gpu=use_gpu
    )
    searched = time.perf_counter()
    lines = write_run_arrays(args.output, qids, scores, indices, pids, tag=args.tag)
    print(
        f"searched {len(qids)} queries against {len(pids)} passages in {searched - started:.1f}s; "
        f"wrote {lines} lines to {args.output}",
        file=sys.stderr,
    )
    return 0
