"""Queries/s of `led mine` (dense and SPLADE) vs sentence-transformers' `mine_hard_negatives` (dense).

    .venv/bin/python benchmarks/bench_mining.py                     # all of SciFact (5,183 passages, 809 queries)
    .venv/bin/python benchmarks/bench_mining.py --limit 300         # a cheap run: 300 passages + the positives

Data: SciFact train (809 claims). `--limit N` keeps the train positives plus the first passages up to
N in all (the queries stay all 809), written as a BEIR folder and prepared with `led prepare`.
Dense: all-MiniLM-L6-v2 (bundled; mean pooling, normalised) on both sides; passages `--max-length`
tokens, queries `--query-max-length`, `--batch-size`, exact search to `--depth`, `--keep` negatives,
fp32 on CPU, one process, one run each. Both sides encode the corpus and the queries inside the timed
region, unless `--reuse-corpus`: then led gets a `led encode --corpus` folder (`--corpus-embeddings`)
and sentence-transformers a warm `cache_folder`, both made before timing. SPLADE: the bundled
SPLADE-tiny with `led mine --kind splade` (embedded inverted index, float weights); sentence-transformers'
miner has no sparse counterpart, so only led's rate is printed for it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"


def limited_scifact(out: Path, limit: int | None) -> Path:
    """A prepared copy of SciFact whose corpus is the train positives + the first passages, `limit` in all."""
    from led_hf.cli.main import main

    source = out / "beir"
    (source / "qrels").mkdir(parents=True)
    shutil.copy(SCIFACT / "queries.jsonl", source / "queries.jsonl")
    shutil.copy(SCIFACT / "qrels" / "train.tsv", source / "qrels" / "train.tsv")
    positives = {
        line.split("\t")[1] for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]
    }
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    if limit is not None:
        chosen = [line for line in lines if json.loads(line)["_id"] in positives]
        rest = [line for line in lines if json.loads(line)["_id"] not in positives]
        lines = chosen + rest[: max(0, limit - len(chosen))]
    (source / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if main(["prepare", "--format", "beir", "--input", str(source), "--output", str(out / "data")]) != 0:
        sys.exit("led prepare failed")
    return out / "data"


def run_led(data: Path, name: str, model: str, args, extra: list[str]) -> float:
    from led_hf.cli.main import main

    started = time.perf_counter()
    code = main(
        [
            "mine",
            "--data",
            str(data),
            "--split",
            "train",
            "--name",
            name,
            "--model",
            model,
            "--depth",
            str(args.depth),
            "--keep",
            str(args.keep),
            "--batch-size",
            str(args.batch_size),
            "--passage-max-length",
            str(args.max_length),
            "--query-max-length",
            str(args.query_max_length),
            "--no-progress",
            *extra,
        ]
    )
    if code != 0:
        sys.exit(f"led mine {name} failed")
    return time.perf_counter() - started


def run_sentence_transformers(data: Path, model_path: str, args, cache: Path | None) -> tuple[float, int]:
    import datasets
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from led_hf.data.store import PreparedData

    prepared = PreparedData(data)
    corpus = prepared.corpus.to_dict()
    texts = [f"{title} {text}" if title else text for title, text in zip(corpus["title"], corpus["text"])]
    by_pid = dict(zip(corpus["pid"], texts))
    query_text = dict(zip(prepared.queries["qid"], prepared.queries["text"]))
    pairs = [
        (query_text[qid], by_pid[pid])
        for qid, judged in prepared.qrels_dict("train").items()
        for pid, grade in judged.items()
        if grade > 0
    ]
    dataset = datasets.Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    model = SentenceTransformer(model_path, device="cpu")
    model.max_seq_length = args.max_length

    def mine():
        return mine_hard_negatives(
            dataset,
            model,
            corpus=texts,
            range_max=args.depth,
            num_negatives=args.keep,
            output_format="n-tuple",
            batch_size=args.batch_size,
            use_faiss=True,
            cache_folder=str(cache) if cache else None,
            verbose=False,
        )

    if cache is not None:
        mine()  # fills the embedding cache outside the timed run
    started = time.perf_counter()
    mine()
    return time.perf_counter() - started, len(set(dataset["query"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--limit", type=int, default=None, help="passages kept (train positives first; default all)"
    )
    parser.add_argument("--depth", type=int, default=100, help="passages searched per query (default 100)")
    parser.add_argument("--keep", type=int, default=20, help="negatives kept per query (default 20)")
    parser.add_argument("--max-length", type=int, default=256, help="passage tokens (default 256)")
    parser.add_argument("--query-max-length", type=int, default=64, help="query tokens (default 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reuse-corpus", action="store_true", help="time search + query encoding only")
    parser.add_argument("--skip-splade", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from led_hf.data.store import PreparedData
    from led_hf.modeling.bundled import resolve_model_path

    minilm, splade = resolve_model_path("bundled:all-minilm-l6-v2"), resolve_model_path("bundled:splade-tiny")
    work = Path(tempfile.mkdtemp(prefix="bench-mining-"))
    try:
        data = limited_scifact(work, args.limit)
        num_passages = len(PreparedData(data).corpus)
        num_queries = len(PreparedData(data).qrels_dict("train"))
        extra, cache = [], None
        if args.reuse_corpus:
            from led_hf.cli.main import main as led

            led(
                [
                    "encode",
                    "--model",
                    minilm,
                    "--data",
                    str(data),
                    "--corpus",
                    "--output",
                    str(work / "enc"),
                    "--max-length",
                    str(args.max_length),
                    "--batch-size",
                    str(args.batch_size),
                    "--no-progress",
                ]
            )
            extra, cache = ["--corpus-embeddings", str(work / "enc")], work / "st-cache"
        led_dense = run_led(data, "minilm", minilm, args, extra)
        st_dense, st_queries = run_sentence_transformers(data, minilm, args, cache)
        led_sparse = (
            None if args.skip_splade else run_led(data, "splade-tiny", splade, args, ["--kind", "splade"])
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "passages": num_passages,
        "queries": num_queries,
        "depth": args.depth,
        "keep": args.keep,
        "threads": args.threads,
        "reuse_corpus": args.reuse_corpus,
        "led_dense_queries_per_s": num_queries / led_dense,
        "led_dense_seconds": led_dense,
        "st_dense_queries_per_s": st_queries / st_dense,
        "st_dense_seconds": st_dense,
        "dense_speedup_led_over_st": (num_queries / led_dense) / (st_queries / st_dense),
        "led_splade_queries_per_s": None if led_sparse is None else num_queries / led_sparse,
        "led_splade_seconds": led_sparse,
    }
    print(
        f"SciFact train: {num_queries} queries, {num_passages} passages, depth {args.depth}, keep {args.keep}, "
        f"{args.threads} threads{' (corpus encoding reused)' if args.reuse_corpus else ''}"
    )
    print(f"  dense  led mine            {result['led_dense_queries_per_s']:8.1f} q/s  ({led_dense:.1f}s)")
    print(f"  dense  ST mine_hard_neg.   {result['st_dense_queries_per_s']:8.1f} q/s  ({st_dense:.1f}s)")
    print(f"  dense  ratio led/ST        {result['dense_speedup_led_over_st']:8.2f}x")
    if led_sparse is not None:
        print(
            f"  splade led mine            {result['led_splade_queries_per_s']:8.1f} q/s  ({led_sparse:.1f}s)"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
