"""Time and peak memory of every CPU-side stage on synthetic MS MARCO-shaped data of a given size.

    nice .venv/bin/python benchmarks/bench_scale.py --passages 1000000 --workdir /tmp/led-scale
    nice .venv/bin/python benchmarks/bench_scale.py --passages 8841823 --stages prepare,groups,teacher

Data (benchmarks/synthetic.py `generate_msmarco_scale`, written chunk by chunk to WORKDIR; reused when
present): N passages of MS MARCO's length distribution (mean 56 words), 502,939 x N / 8.8M training
queries with qrels, `negatives/bm25` from train.negatives.tsv and three mined sources (co-stg1, sp-stg1,
sp-stg2, as `led mine` writes them), all `--negatives` (200) deep; a precomputed teacher-score table over
every candidate of every training query (what `led score-teacher` writes); SPLADE-like sparse vectors
(Zipf terms, ~120 per passage, ~20 per query); dense vectors `--dense-passages` (1M) x 768 in float16.

Stages (each in its own process, measured from outside: wall time, the process's peak RSS from wait4's
ru_maxrss, and the peak of RssAnon / RssFile summed over its process tree, sampled every 0.2 s, so that
memory-mapped file pages (RssFile) are told apart from the heap (RssAnon)):

    prepare        `led prepare --format msmarco` of the generated folder
    groups         TrainGroups as configs/msmarco/led.json (3 sources x 200, 32 negatives): build the
                   pools (their cache, DATA/.led-cache, cleared first), open them again as the next
                   process would, then one epoch's draws (`candidate_rows`) and items (`__getitem__`)
    teacher        ScoredTrainGroups: the same items plus a teacher-score look-up per candidate (pools
                   opened from the cache the groups stage or the teacher-table setup built)
    sparse-index   `build_inverted_index` of the passages' sparse vectors
    sparse-search  exact top-1000 for `--search-queries` queries (all cores)
    dense-search   faiss flat inner product, top-1000 for `--search-queries` queries over 1M x 768 fp16
    prepare-triples  (only when named) `led prepare` of the same folder plus a qidpidtriples file of
                   `--triples-lines` lines (10M: 1/40 of qidpidtriples.train.full.2.tsv)
The setup steps (generate, mined, teacher-table, sparse-vectors, dense-vectors) are measured the same way
and reported apart. `--epoch-items` caps the items iterated (rates are then extrapolated to one epoch).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SOURCES = ("co-stg1", "sp-stg1", "sp-stg2")  # configs/msmarco/led.json negs_sources
SETUP = ("generate", "mined", "teacher-table", "sparse-vectors", "dense-vectors", "triples-file")
MEASURED = (
    "prepare",
    "groups",
    "teacher",
    "sparse-index",
    "sparse-search",
    "dense-search",
    "prepare-triples",
)
NEEDS = {  # stage -> setup steps it needs first
    "prepare": ("generate",),
    "prepare-triples": ("generate", "triples-file"),
    "groups": ("generate", "prepare", "mined"),
    "teacher": ("generate", "prepare", "mined", "teacher-table"),
    "sparse-index": ("sparse-vectors",),
    "sparse-search": ("sparse-vectors", "sparse-index"),
    "dense-search": ("dense-vectors",),
}
SHARD_DOCS = 250_000


def _paths(args) -> dict[str, Path]:
    root = Path(args.workdir) / f"p{args.passages}-n{args.negatives}"
    return {
        "root": root,
        "tsv": root / "tsv",
        "data": root / "prepared",
        "tsv_triples": root / f"tsv-triples-{args.triples_lines}",
        "data_triples": root / "prepared-triples",
        "sparse": root / "sparse-passages",
        "sparse_queries": root / f"sparse-queries-{args.search_queries}",
        "index": root / "sparse-index",
        "dense": Path(args.workdir) / f"dense-{args.dense_passages}x{args.dense_dim}",
        "dense_queries": Path(args.workdir) / f"dense-queries-{args.search_queries}x{args.dense_dim}",
    }


# ----------------------------------------------------------------------------- stages (run in a child)
def stage_generate(args, paths) -> dict:
    from synthetic import generate_msmarco_scale

    counts = generate_msmarco_scale(paths["tsv"], args.passages, args.negatives, seed=args.seed)
    size = sum(p.stat().st_size for p in paths["tsv"].iterdir())
    return {**counts, "tsv_mib": size / 2**20}


def stage_prepare(args, paths) -> dict:
    from led_hf.cli.main import main

    argv = ["prepare", "--format", "msmarco", "--input", str(paths["tsv"]), "--output", str(paths["data"])]
    if main([*argv, "--overwrite", "--quiet"]) != 0:
        raise SystemExit("led prepare failed")
    manifest = json.loads((paths["data"] / "manifest.json").read_text())
    return {"counts": manifest["counts"], "output_mib": _size(paths["data"]) / 2**20}


def stage_triples_file(args, paths) -> dict:
    """The generated folder (linked) plus a qidpidtriples file of `--triples-lines` lines, not grouped by
    query (as triples.train.small.tsv): qid, one of its positives, a random negative."""
    from led_hf.atomic import atomic_directory

    rng = np.random.default_rng(args.seed + 3)
    positives = [line.split("\t") for line in (paths["tsv"] / "qrels.train.tsv").read_text().splitlines()]
    qids = np.array([int(row[0]) for row in positives])
    pids = np.array([int(row[2]) for row in positives])
    with atomic_directory(paths["tsv_triples"], overwrite=True) as staging:
        for source in paths["tsv"].iterdir():
            (staging / source.name).symlink_to(source.resolve())
        with open(staging / "qidpidtriples.train.full.2.tsv", "w") as out:
            for start in range(0, args.triples_lines, 100_000):
                count = min(100_000, args.triples_lines - start)
                rows = rng.integers(0, len(qids), count)
                negatives = rng.integers(0, args.passages, count)
                out.write("".join(f"{q}\t{p}\t{n}\n" for q, p, n in zip(qids[rows], pids[rows], negatives)))
    return {
        "lines": args.triples_lines,
        "mib": (paths["tsv_triples"] / "qidpidtriples.train.full.2.tsv").stat().st_size / 2**20,
    }


def stage_prepare_triples(args, paths) -> dict:
    from led_hf.cli.main import main

    argv = [
        "prepare",
        "--format",
        "msmarco",
        "--input",
        str(paths["tsv_triples"]),
        "--output",
        str(paths["data_triples"]),
    ]
    if main([*argv, "--overwrite", "--quiet"]) != 0:
        raise SystemExit("led prepare failed")
    manifest = json.loads((paths["data_triples"] / "manifest.json").read_text())
    return {"counts": manifest["counts"], "output_mib": _size(paths["data_triples"]) / 2**20}


def _training_qids(data: Path):
    import pyarrow.compute as pc
    from datasets import load_from_disk

    qrels = load_from_disk(str(data / "qrels" / "train")).data.table
    return pc.unique(qrels.column("qid").combine_chunks())


def _list_array(values: np.ndarray, width: int, as_string: bool):
    import pyarrow as pa

    flat = pa.array(values.ravel())
    offsets = pa.array(np.arange(0, values.size + 1, width, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat.cast(pa.string()) if as_string else flat)


def stage_mined(args, paths) -> dict:
    """Three mined sources as `led mine` writes them: {qid, pids (rank order), scores (descending)}."""
    import pyarrow as pa

    from led_hf.data.arrow_tables import NEGATIVES_FEATURES, TableWriter

    qids = _training_qids(paths["data"])
    rng = np.random.default_rng(args.seed + 1)
    schema = NEGATIVES_FEATURES.arrow_schema
    for source in SOURCES:
        writer = TableWriter(paths["data"], f"negatives/{source}", NEGATIVES_FEATURES, 10_000)
        for start in range(0, len(qids), 10_000):
            chunk = qids.slice(start, 10_000)
            pids = rng.integers(0, args.passages, size=(len(chunk), args.negatives))
            scores = -np.sort(-rng.normal(10, 2, size=pids.shape).astype(np.float32), axis=1)
            arrays = [
                chunk,
                _list_array(pids, args.negatives, True),
                _list_array(scores, args.negatives, False),
            ]
            writer.add_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
        writer.close()
    return {"sources": list(SOURCES), "queries": len(qids)}


def _groups(args, paths, score_tables=None):
    from led_hf.data.scored_groups import ScoredTrainGroups

    return ScoredTrainGroups(
        paths["data"],
        negs_sources=list(SOURCES),
        num_negs_per_system=args.negatives,
        num_negatives=32,
        seed=0,
        show_progress=False,
        score_tables=score_tables,
    )


def stage_teacher_table(args, paths) -> dict:
    """Scores for every (training query, candidate) pair, as `led score-teacher` stores them."""
    import pyarrow as pa

    from led_hf.data.arrow_tables import NEGATIVES_FEATURES, TableWriter
    from led_hf.data.scored_groups import METADATA_FILE, teacher_scores_path

    groups = _groups(args, paths)
    folder = teacher_scores_path(paths["data"], "synthetic")
    writer = TableWriter(folder.parent, folder.name, NEGATIVES_FEATURES, 2_000)
    corpus_pids = groups.data.corpus.data.column("pid")
    num_corpus, keys = groups._num_corpus, groups._positive_keys
    rng = np.random.default_rng(args.seed + 2)
    pairs = 0
    # `scoring_candidates` of every query (its positives and pool, sorted, unique), 20k queries at a time
    pool_offsets, pool_rows = groups._pools.offsets, groups._pools.rows
    for start in range(0, groups.num_queries, 20_000):
        stop = min(start + 20_000, groups.num_queries)
        lo, hi = pool_offsets[start], pool_offsets[stop]
        pool_queries = np.repeat(np.arange(start, stop), np.diff(pool_offsets[start : stop + 1]))
        own = keys[(keys >= start * num_corpus) & (keys < stop * num_corpus)]
        merged = np.unique(np.concatenate([pool_queries * num_corpus + pool_rows[lo:hi], own]))
        queries, rows = merged // num_corpus, merged % num_corpus
        offsets = np.concatenate([[0], np.cumsum(np.bincount(queries - start, minlength=stop - start))])
        pids = pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), corpus_pids.take(pa.array(rows)).combine_chunks()
        )
        scores = pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), pa.array(rng.normal(10, 3, len(rows)).astype(np.float32))
        )
        qids = groups._qids.slice(start, stop - start)
        writer.add_batch(
            pa.RecordBatch.from_arrays([qids, pids, scores], schema=NEGATIVES_FEATURES.arrow_schema)
        )
        pairs += len(rows)
    writer.close()
    metadata = {"teacher": "synthetic", "kind": "splade", "split": "train", "negs_sources": list(SOURCES)}
    metadata["num_negs_per_system"] = args.negatives
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    return {"pairs": pairs, "table_mib": _size(folder) / 2**20}


def _iterate(groups, args) -> dict:
    count = len(groups) if not args.epoch_items else min(args.epoch_items, len(groups))
    order = np.random.default_rng(0).permutation(len(groups))[:count].tolist()
    started = time.perf_counter()
    for index in order:
        groups.candidate_rows(index)
    draws = time.perf_counter() - started
    started = time.perf_counter()
    for index in order:
        groups[index]
    items = time.perf_counter() - started
    return {
        "epoch_rows": len(groups),
        "iterated": count,
        "draws_per_s": count / draws,
        "items_per_s": count / items,
        "epoch_items_s": len(groups) * items / count,
    }


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_groups(args, paths) -> dict:
    import shutil

    from led_hf.work_folder import DERIVED_FOLDER

    shutil.rmtree(paths["data"] / DERIVED_FOLDER, ignore_errors=True)  # measure a build, not a reuse
    started = time.perf_counter()
    groups = _groups(args, paths)
    build = time.perf_counter() - started
    maxrss_after_build = _maxrss_mib()
    started = time.perf_counter()
    groups = _groups(args, paths)  # a second process (or DDP rank) opens the cached pools
    reuse = time.perf_counter() - started
    return {
        "build_s": build,
        "reuse_s": reuse,
        "maxrss_after_build_mib": maxrss_after_build,
        "pool_mib": groups._pools.nbytes / 2**20,
        **_iterate(groups, args),
    }


def stage_teacher(args, paths) -> dict:
    started = time.perf_counter()
    groups = _groups(args, paths, score_tables={"teacher_scores": "synthetic"})
    build = time.perf_counter() - started
    return {"build_s": build, "maxrss_after_build_mib": _maxrss_mib(), **_iterate(groups, args)}


def _write_sparse(folder: Path, count: int, draws: int, seed: int, what: str, prefix: str = "") -> None:
    """A `led encode` sparse folder of `count` Zipf rows, one shard of SHARD_DOCS rows at a time."""
    from led_hf.atomic import atomic_directory

    vocab_size = 30522
    rng = np.random.default_rng(seed)
    rank_to_term = np.random.default_rng(7).permutation(vocab_size).astype(np.int32)  # same for every shard
    cdf = np.cumsum(1.0 / np.arange(1, vocab_size + 1))
    cdf /= cdf[-1]
    num_shards = max(1, -(-count // SHARD_DOCS))
    with atomic_directory(folder, overwrite=True) as staging:
        manifest = {"kind": "sparse", "vocab_size": vocab_size, "what": what, "num_shards": num_shards}
        (staging / "manifest.json").write_text(
            json.dumps({**manifest, "num_rows": count, "model": "synthetic"})
        )
        (staging / "vocab.txt").write_text("".join(f"t{v}\n" for v in range(vocab_size)))
        for shard in range(num_shards):
            start, stop = shard * count // num_shards, (shard + 1) * count // num_shards
            terms = rank_to_term[np.searchsorted(cdf, rng.random((stop - start, draws)))]
            terms.sort(axis=1)
            keep = np.ones_like(terms, dtype=bool)
            keep[:, 1:] = terms[:, 1:] != terms[:, :-1]
            out = staging / f"shard-{shard:05d}-of-{num_shards:05d}"
            out.mkdir()
            np.save(out / "indptr.npy", np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int64))
            np.save(out / "indices.npy", terms[keep].astype(np.int32))
            weights = np.exp(rng.normal(-0.3, 0.6, int(keep.sum()))).clip(0.01, 4.0).astype(np.float32)
            np.save(out / "values.npy", weights)
            (out / "ids.txt").write_text("".join(f"{prefix}{i}\n" for i in range(start, stop)))


def stage_sparse_vectors(args, paths) -> dict:
    _write_sparse(paths["sparse"], args.passages, 150, args.seed, "passages")
    _write_sparse(paths["sparse_queries"], args.search_queries, 22, args.seed + 1, "queries", prefix="q")
    return {"vectors_mib": _size(paths["sparse"]) / 2**20}


def stage_sparse_index(args, paths) -> dict:
    from led_hf.retrieval.inverted_build import build_inverted_index

    stats = build_inverted_index(paths["sparse"], paths["index"], overwrite=True, progress=False)
    return {"postings": stats["num_postings"], "index_mib": _size(paths["index"]) / 2**20}


def stage_sparse_search(args, paths) -> dict:
    from led_hf.retrieval.inverted_index import InvertedIndex, available_cores
    from led_hf.retrieval.sparse_vectors import load_sparse_vectors

    _, queries = load_sparse_vectors(paths["sparse_queries"])
    with InvertedIndex(paths["index"]) as index:
        matrix = index.queries(queries.indptr, queries.indices, queries.values)
        started = time.perf_counter()
        _, rows = index.search(matrix, depth=1000, workers=available_cores())
        seconds = time.perf_counter() - started
    return {"queries": len(queries), "workers": available_cores(), "queries_per_s": len(queries) / seconds}


def _write_dense(folder: Path, count: int, dim: int, seed: int, prefix: str) -> None:
    from led_hf.atomic import atomic_directory

    rng = np.random.default_rng(seed)
    num_shards = max(1, -(-count // SHARD_DOCS))
    with atomic_directory(folder, overwrite=True) as staging:
        manifest = {
            "kind": "dense",
            "dim": dim,
            "num_shards": num_shards,
            "dtype": "float16",
            "model": "synthetic",
        }
        (staging / "manifest.json").write_text(json.dumps(manifest))
        for shard in range(num_shards):
            start, stop = shard * count // num_shards, (shard + 1) * count // num_shards
            out = staging / f"shard-{shard:05d}-of-{num_shards:05d}"
            out.mkdir()
            array = np.lib.format.open_memmap(out / "embeddings.npy", "w+", np.float16, (stop - start, dim))
            for lo in range(0, stop - start, 50_000):
                block = rng.standard_normal((min(50_000, stop - start - lo), dim), dtype=np.float32)
                array[lo : lo + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
            array.flush()
            del array
            (out / "ids.txt").write_text("".join(f"{prefix}{i}\n" for i in range(start, stop)))


def stage_dense_vectors(args, paths) -> dict:
    _write_dense(paths["dense"], args.dense_passages, args.dense_dim, args.seed, "")
    _write_dense(paths["dense_queries"], args.search_queries, args.dense_dim, args.seed + 1, "q")
    return {"vectors_mib": _size(paths["dense"]) / 2**20}


def stage_dense_search(args, paths) -> dict:
    import faiss

    from led_hf.retrieval.faiss_search import search_folders

    started = time.perf_counter()
    qids, _, indices, _ = search_folders(
        paths["dense_queries"], paths["dense"], depth=1000, use_gpu=False, progress=False
    )
    seconds = time.perf_counter() - started
    return {
        "queries": len(qids),
        "threads": faiss.omp_get_max_threads(),
        "queries_per_s": len(qids) / seconds,
    }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


STAGES = {name: globals()[f"stage_{name.replace('-', '_')}"] for name in SETUP + MEASURED}


# ----------------------------------------------------------------------------- measuring from outside
def _tree_memory(pid: int) -> tuple[int, int]:
    """(RssAnon, RssFile) in KiB summed over `pid` and its descendants."""
    import psutil

    try:
        processes = [psutil.Process(pid)] + psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0, 0
    anon = file = 0
    for process in processes:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        anon += int(fields.get("RssAnon", "0 kB").split()[0])
        file += int(fields.get("RssFile", "0 kB").split()[0]) + int(fields.get("RssShmem", "0 kB").split()[0])
    return anon, file


def measure(stage: str, argv: list[str], log: Path) -> dict:
    """Run this script's `--child stage` and return its result with wall time and memory peaks."""
    with tempfile.NamedTemporaryFile("r+", suffix=".json") as out, open(log, "a") as err:
        load = os.getloadavg()[0]
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, __file__, *argv, "--child", stage], stdout=out, stderr=err
        )
        peak_anon = peak_file = peak_total = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            anon, file = _tree_memory(process.pid)
            peak_anon, peak_file, peak_total = (
                max(peak_anon, anon),
                max(peak_file, file),
                max(peak_total, anon + file),
            )
            time.sleep(0.2)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"stage {stage} failed (exit {process.returncode}); see {log}")
        out.seek(0)
        result = json.loads(out.read().strip().splitlines()[-1])
    return {
        "stage": stage,
        "wall_s": wall,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "peak_anon_mib": peak_anon / 1024,
        "peak_file_mib": peak_file / 1024,
        "peak_tree_rss_mib": peak_total / 1024,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        **result,
    }


def _done(stage: str, paths) -> bool:
    marker = {"generate": paths["tsv"] / "collection.tsv", "prepare": paths["data"] / "manifest.json"}
    marker |= {"mined": paths["data"] / "negatives" / SOURCES[-1] / "state.json"}
    marker |= {"teacher-table": paths["data"] / "teacher_scores" / "synthetic" / "led_teacher_scores.json"}
    marker |= {
        "sparse-vectors": paths["sparse_queries"] / "manifest.json",
        "sparse-index": paths["index"] / "manifest.json",
    }
    marker |= {"dense-vectors": paths["dense_queries"] / "manifest.json"}
    marker |= {"triples-file": paths["tsv_triples"] / "qidpidtriples.train.full.2.tsv"}
    return stage in marker and marker[stage].exists()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--negatives", type=int, default=200, help="negatives per query per source")
    parser.add_argument("--search-queries", type=int, default=2_000)
    parser.add_argument("--dense-passages", type=int, default=1_000_000)
    parser.add_argument("--dense-dim", type=int, default=768)
    parser.add_argument("--epoch-items", type=int, default=0, help="cap on items iterated (0: one epoch)")
    parser.add_argument(
        "--triples-lines", type=int, default=10_000_000, help="qidpidtriples lines for prepare-triples"
    )
    parser.add_argument(
        "--stages",
        default=",".join(MEASURED[:-1]),
        help=f"comma list of {', '.join(MEASURED)} (all but the last)",
    )
    parser.add_argument("--workdir", default="/tmp/led-bench-scale", help="generated data, kept for reruns")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    paths = _paths(args)
    if args.child:
        print(json.dumps(STAGES[args.child](args, paths)), flush=True)
        return 0
    argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in MEASURED]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}")
    paths["root"].mkdir(parents=True, exist_ok=True)
    log = paths["root"] / "bench_scale.log"
    results = []
    for stage in stages:
        for step in (*NEEDS[stage], stage):
            if step in {r["stage"] for r in results} or (
                step in SETUP + ("prepare", "sparse-index") and step != stage and _done(step, paths)
            ):
                continue
            result = measure(step, argv, log)
            results.append(result)
            print(json.dumps(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"passages": args.passages, "results": results}, indent=2) + "\n")
    print(f"\n{'stage':<15} {'wall s':>9} {'maxrss MiB':>11} {'anon MiB':>9} {'file MiB':>9} {'load':>5}")
    for r in results:
        print(
            f"{r['stage']:<15} {r['wall_s']:>9.1f} {r['maxrss_mib']:>11,.0f} {r['peak_anon_mib']:>9,.0f} "
            f"{r['peak_file_mib']:>9,.0f} {r['load_before']:>5.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
