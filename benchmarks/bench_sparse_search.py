"""Batch sparse search, embedded inverted index vs Lucene impact (Anserini via pyjnius), on the same vectors.

    .venv/bin/python benchmarks/bench_sparse_search.py                       # SciFact + 100k generated, 2 cores
    .venv/bin/python benchmarks/bench_sparse_search.py --skip-generated      # SciFact only
    .venv/bin/python benchmarks/bench_sparse_search.py --docs 1000000        # a larger generated corpus

1. SciFact (5,183 abstracts, 300 test claims) encoded by `led encode --kind splade` with the bundled
   SPLADE-tiny (256 / 32 tokens; cached in WORK). Both engines index the same x100 integer weights; the
   row notes top-10 agreement (ties aside) and nDCG@10 of both runs.
2. A generated SPLADE-like corpus: term ranks drawn from Zipf(s=1) over a 30,522 vocabulary
   (~120 distinct terms per passage, ~20 per query), weights log-normal (median ~0.75).

Timing: search only (the index open, the JVM started, worker processes spawned, one warm-up search),
`--cores` processes / Lucene threads, the two engines alternated (benchmarks/harness.py). Lucene is
timed end to end (Java query maps built + hits read back through JNI); its Java batch_search alone is
in the note. `--quick` (the harness) searches a 5,000-passage generated corpus only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, alternate, median  # noqa: E402
from scifact import prepared_scifact  # noqa: E402

from led_hf.retrieval.inverted_build import build_inverted_index  # noqa: E402
from led_hf.retrieval.inverted_index import InvertedIndex  # noqa: E402
from led_hf.retrieval.sparse_vectors import load_sparse_vectors  # noqa: E402

WORK = Path.home() / ".cache" / "led-hf" / "bench_sparse"


# ----------------------------------------------------------------------------- vectors
def write_vectors(
    folder: Path, indptr, indices, values, ids, vocab, what: str, num_shards: int = 1, model=""
):
    """The `led encode` sparse layout (contiguous row shards)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(ids)
    (tmp / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "sparse",
                "vocab_size": len(vocab),
                "what": what,
                "num_shards": num_shards,
                "num_rows": n,
                "model": model,
            }
        )
    )
    (tmp / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab), encoding="utf-8")
    for i in range(num_shards):
        start, stop = i * n // num_shards, (i + 1) * n // num_shards
        shard = tmp / f"shard-{i:05d}-of-{num_shards:05d}"
        shard.mkdir()
        lo, hi = indptr[start], indptr[stop]
        np.save(shard / "indptr.npy", np.asarray(indptr[start : stop + 1] - lo, dtype=np.int64))
        np.save(shard / "indices.npy", np.asarray(indices[lo:hi], dtype=np.int32))
        np.save(shard / "values.npy", np.asarray(values[lo:hi], dtype=np.float32))
        (shard / "ids.txt").write_text("".join(f"{x}\n" for x in ids[start:stop]), encoding="utf-8")
    tmp.rename(folder)
    return folder


def scifact_vectors(work: Path) -> tuple[Path, Path, dict]:
    """SPLADE-tiny vectors of the bundled SciFact corpus and test claims, written by `led encode`."""
    from led_hf.cli.main import main as led
    from led_hf.data.store import PreparedData

    data = prepared_scifact(work / "scifact")
    folders = {}
    for what, selection in (
        ("corpus", ["--corpus", "--max-length", "256"]),
        ("test-queries", ["--queries", "test", "--max-length", "32"]),
    ):
        folders[what] = work / f"scifact-{what}"
        if not folders[what].exists():
            command = ["encode", "--model", "bundled:splade-tiny", "--kind", "splade", "--data", str(data)]
            if led([*command, *selection, "--output", str(folders[what]), "--no-progress"]) != 0:
                raise RuntimeError("led encode failed")
    return folders["corpus"], folders["test-queries"], PreparedData(data).qrels_dict("test")


def zipf_rows(rng, n: int, draws: int, vocab_size: int, chunk: int = 50_000):
    """CSR rows of distinct term ids: `draws` Zipf(s=1) rank draws per row, duplicates merged."""
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1))
    cdf /= cdf[-1]
    rank_to_term = rng.permutation(vocab_size).astype(np.int32)
    indptr, indices = [np.zeros(1, np.int64)], []
    total = 0
    for start in range(0, n, chunk):
        ranks = np.searchsorted(cdf, rng.random((min(chunk, n - start), draws))).astype(np.int32)
        ranks.sort(axis=1)
        first = np.ones_like(ranks, dtype=bool)
        first[:, 1:] = ranks[:, 1:] != ranks[:, :-1]
        counts = first.sum(axis=1)
        terms = rank_to_term[ranks]
        terms[~first] = vocab_size  # sort duplicates to the end of the row, then drop them
        terms.sort(axis=1)
        indices.append(terms[terms < vocab_size])
        indptr.append(total + np.cumsum(counts))
        total += int(counts.sum())
    indices = np.concatenate(indices)
    values = np.exp(rng.normal(-0.3, 0.6, len(indices))).clip(0.01, 4.0).astype(np.float32)
    return np.concatenate(indptr), indices, values


def generated_vectors(work: Path, docs: int, queries: int, seed: int = 0) -> tuple[Path, Path]:
    passages, query_folder = work / f"generated-{docs}", work / f"generated-{docs}-queries"
    vocab = [f"t{v}" for v in range(30522)]
    rng = np.random.default_rng(seed)
    if not passages.exists():
        started = time.perf_counter()
        write_vectors(
            passages,
            *zipf_rows(rng, docs, 150, 30522),
            [str(i) for i in range(docs)],
            vocab,
            "passages",
            num_shards=max(1, docs // 100_000),
        )
        print(f"generated {docs} passages in {time.perf_counter() - started:.0f}s")
    if not query_folder.exists():
        write_vectors(
            query_folder,
            *zipf_rows(np.random.default_rng(seed + 1), queries, 22, 30522),
            [f"q{i}" for i in range(queries)],
            vocab,
            "queries",
        )
    return passages, query_folder


# ----------------------------------------------------------------------------- measurements
def compare(
    passages: Path,
    queries_folder: Path,
    work: Path,
    name: str,
    depth: int,
    cores: int,
    qrels: dict | None,
    lucene_missing: str | None,
    repetitions: int,
) -> Row:
    """Queries/s of both engines over the same vectors (one row; baseline empty when Lucene is missing)."""
    print(f"  sparse search, {name}: depth {depth}, {cores} cores", flush=True)
    inverted = work / f"{name}.inverted"
    if not inverted.exists():
        build_inverted_index(passages, inverted, progress=False)
    _, queries = load_sparse_vectors(queries_folder)
    n = len(queries.ids)
    runs: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        index = stack.enter_context(InvertedIndex(inverted))
        query_csr = index.queries(queries.indptr, queries.indices, queries.values)
        index.search(query_csr[: 4 * 64], depth, workers=cores)  # spawn the workers, warm the page cache

        def embedded() -> None:
            scores, rows = index.search(query_csr, depth, workers=cores)
            blob, offsets = bytes(index._id_blob), index._id_offsets
            runs["embedded"] = {
                qid: [
                    (blob[offsets[r] : offsets[r + 1]].decode(), float(s))
                    for s, r in zip(srow, rrow)
                    if r >= 0
                ]
                for qid, srow, rrow in zip(queries.ids, scores.tolist(), rows.tolist())
            }

        sides = {"embedded": embedded}
        java_seconds: list[float] = []
        if lucene_missing is None:
            from led_hf.retrieval.lucene import LuceneImpactIndex, _hits, build_impact_index

            lucene_dir = work / f"{name}.lucene"
            if not lucene_dir.exists():
                build_impact_index(passages, lucene_dir, threads=cores, progress=False)
            lucene = stack.enter_context(LuceneImpactIndex(lucene_dir))
            warm_q, warm_ids = lucene.java_queries(_head(queries, min(n, 200)))
            lucene.batch_search(warm_q, warm_ids, depth, cores)

            def lucene_side() -> None:
                java_queries, java_qids = lucene.java_queries(queries)
                started = time.perf_counter()
                results = lucene.batch_search(java_queries, java_qids, depth, cores)
                java_seconds.append(time.perf_counter() - started)
                runs["Lucene"] = _hits(results, queries.ids)

            sides["Lucene"] = lucene_side
        seconds = alternate(sides, repetitions, warmup=0)
    note = f"{n:,} queries, depth {depth}, {cores} cores, x100 integer weights"
    if lucene_missing is not None:
        note += f"; Lucene skipped: {lucene_missing}"
    else:
        from led_hf.retrieval.lucene import top_k_agreement

        agree = top_k_agreement(runs["embedded"], runs["Lucene"], k=10)
        note += (
            f"; Lucene Java batch_search alone {n / median(java_seconds):,.0f} q/s; top-10 agreement "
            f"(ties aside) {agree['agree']}/{agree['queries']}"
        )
    if qrels:
        from led_hf.evaluation.metrics import evaluate_run

        for label, run in runs.items():
            metrics = evaluate_run({q: dict(h) for q, h in run.items()}, qrels)
            note += f"; {label} nDCG@10 {metrics['ndcg@10']:.4f}"
    return Row(
        entry="sparse-search",
        name=f"sparse search vs Lucene impact, {name}",
        ours=n / median(seconds["embedded"]),
        baseline=n / median(seconds["Lucene"]) if "Lucene" in seconds else None,
        unit="queries/s",
        higher_is_better=True,
        note=note,
        samples=seconds,
    )


def run(
    quick: bool = False,
    work: Path | None = None,
    docs: int | None = None,
    queries: int | None = None,
    depth: int = 1000,
    cores: int = 2,
    scifact: bool | None = None,
    generated: bool = True,
    repetitions: int | None = None,
) -> list[Row]:
    from led_hf.retrieval.lucene import missing_extra

    work = Path(work or WORK)
    work.mkdir(parents=True, exist_ok=True)
    reason = missing_extra()
    repetitions = repetitions or (2 if quick else 3)
    rows = []
    if scifact if scifact is not None else not quick:
        passages, query_folder, qrels = scifact_vectors(work)
        rows.append(
            compare(passages, query_folder, work, "SciFact", depth, cores, qrels, reason, repetitions)
        )
    if generated:
        docs = docs or (5_000 if quick else 100_000)
        passages, query_folder = generated_vectors(work, docs, queries or (300 if quick else 1000))
        name = f"generated-{docs}"
        rows.append(compare(passages, query_folder, work, name, depth, cores, None, reason, repetitions))
    return rows


def _head(queries, count: int):
    from led_hf.retrieval.sparse_vectors import SparseShard

    end = queries.indptr[count]
    return SparseShard(
        queries.folder,
        queries.indptr[: count + 1],
        queries.indices[:end],
        queries.values[:end],
        queries.ids[:count],
    )


def main(argv: list[str] | None = None) -> int:
    from harness import format_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, default=WORK, help="vectors and indexes are kept here between runs"
    )
    parser.add_argument("--docs", type=int, default=100_000, help="generated corpus size (default 100,000)")
    parser.add_argument("--queries", type=int, default=1000, help="generated queries (default 1000)")
    parser.add_argument("--depth", type=int, default=1000, help="hits per query (default 1000)")
    parser.add_argument("--cores", type=int, default=2, help="worker processes / Lucene threads (default 2)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--skip-generated", action="store_true")
    args = parser.parse_args(argv)
    rows = run(
        work=args.work,
        docs=args.docs,
        queries=args.queries,
        depth=args.depth,
        cores=args.cores,
        scifact=not args.skip_scifact,
        generated=not args.skip_generated,
        repetitions=args.repetitions,
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
