"""Batch sparse search, embedded inverted index vs Lucene impact (Anserini via pyjnius), on the same vectors.

    .venv/bin/python benchmarks/bench_sparse_search.py                       # SciFact + 1M generated, 2 cores
    .venv/bin/python benchmarks/bench_sparse_search.py --skip-generated      # SciFact only
    .venv/bin/python benchmarks/bench_sparse_search.py --docs 200000         # smaller generated corpus

1. SciFact (5,183 abstracts, 300 test claims) encoded with the bundled SPLADE-tiny (`--scifact-vectors`,
   else encoded here once into WORK: max over unmasked tokens of log1p(relu(MLM logits)), [CLS]/last
   [SEP] masked, 256 / 32 tokens). Both engines index the same ×100 integer weights; the script prints
   queries/s, top-10 agreement (ties aside) and nDCG@10 / R@100 of both runs.
2. A generated SPLADE-like corpus: term ranks drawn from Zipf(s=1) over a 30,522 vocabulary
   (~120 distinct terms per passage, ~20 per query), weights log-normal (median ~0.75).

Timing: one run over all queries after a warm-up, search only (the index is open, the JVM started,
worker processes spawned), `--cores` processes / Lucene threads. Lucene is timed twice: its Java
batch_search alone, and end to end (Java query maps built + hits read back through JNI).
Target: embedded >= 3x Lucene (Java-only time) on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from led_hf.retrieval.inverted_index import InvertedIndex, build_inverted_index
from led_hf.retrieval.sparse_vectors import load_sparse_vectors

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"


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


def encode_splade_tiny(texts: list[str], ids: list[str], folder: Path, what: str, max_length: int) -> Path:
    """SPLADE-tiny term weights w_v = log1p(relu(max_t logit[t, v])) over unmasked tokens ([CLS], last [SEP] out)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model_dir = Path(importlib.util.find_spec("cognition").submodule_search_locations[0]) / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    lengths = [len(t) for t in texts]
    order = np.argsort(lengths)[::-1]
    rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with torch.inference_mode():
        for start in tqdm(range(0, len(order), 8), desc=f"SPLADE-tiny {what}"):
            batch = order[start : start + 8]  # small batches: [B, L, 30522] logits stay cache-sized
            enc = tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            mask = enc["attention_mask"].clone()
            mask[:, 0] = 0  # [CLS]
            mask[torch.arange(len(batch)), enc["attention_mask"].sum(1) - 1] = 0  # last [SEP]
            logits = model(**enc).logits.masked_fill_(~mask.bool()[..., None], float("-inf"))
            weights = torch.log1p(torch.relu(logits.max(dim=1).values))  # max first: log1p∘relu is monotone
            for i, row in zip(batch, weights):
                nz = torch.nonzero(row).flatten()
                rows[int(i)] = (nz.numpy().astype(np.int32), row[nz].numpy().astype(np.float32))
    indptr = np.concatenate([[0], np.cumsum([len(rows[i][0]) for i in range(len(texts))])])
    vocab = [tokenizer.convert_ids_to_tokens(v) for v in range(model.config.vocab_size)]
    return write_vectors(
        folder,
        indptr,
        np.concatenate([rows[i][0] for i in range(len(texts))]),
        np.concatenate([rows[i][1] for i in range(len(texts))]),
        ids,
        vocab,
        what,
        model=str(model_dir),
    )


def scifact_qrels() -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, pid, score = line.split("\t")
        qrels.setdefault(qid, {})[pid] = int(score)
    return qrels


def scifact_vectors(work: Path) -> tuple[Path, Path, dict]:
    def jsonl(name):
        return [
            json.loads(line) for line in (SCIFACT / name).read_text(encoding="utf-8").splitlines() if line
        ]

    qrels = scifact_qrels()
    passages, queries = work / "scifact-corpus", work / "scifact-test-queries"
    if not passages.exists():
        corpus = jsonl("corpus.jsonl")
        encode_splade_tiny(
            [f"{d['title']} {d['text']}".strip() for d in corpus],
            [d["_id"] for d in corpus],
            passages,
            "passages",
            256,
        )
    if not queries.exists():
        test = [q for q in jsonl("queries.jsonl") if q["_id"] in qrels]
        encode_splade_tiny([q["text"] for q in test], [q["_id"] for q in test], queries, "queries", 32)
    return passages, queries, qrels


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
def timed(label: str, fn):
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f}s")
    return out, seconds


def compare(
    passages: Path,
    queries_folder: Path,
    work: Path,
    name: str,
    depth: int,
    cores: int,
    qrels: dict | None,
    lucene_ok: bool,
) -> None:
    print(f"== {name}: depth {depth}, {cores} cores")
    inverted = work / f"{name}.inverted"
    if not inverted.exists():
        timed("build inverted index", lambda: build_inverted_index(passages, inverted, progress=False))
    _, queries = load_sparse_vectors(queries_folder)
    n = len(queries.ids)
    with InvertedIndex(inverted) as index:
        query_csr = index.queries(queries.indptr, queries.indices, queries.values)
        index.search(query_csr[: 4 * 64], depth, workers=cores)  # spawn the workers, warm the page cache
        started = time.perf_counter()
        scores, rows = index.search(query_csr, depth, workers=cores)
        embedded_s = time.perf_counter() - started
        blob, offsets = bytes(index._id_blob), index._id_offsets
        embedded = {
            qid: [
                (blob[offsets[r] : offsets[r + 1]].decode(), float(s)) for s, r in zip(srow, rrow) if r >= 0
            ]
            for qid, srow, rrow in zip(queries.ids, scores.tolist(), rows.tolist())
        }
    print(f"  embedded inverted index: {n / embedded_s:,.0f} queries/s ({embedded_s:.2f}s for {n})")
    if not lucene_ok:
        print("  Lucene: skipped (sparse extra missing, or --lucene-max-docs)")
        return
    from led_hf.retrieval.lucene import LuceneImpactIndex, build_impact_index, top_k_agreement

    lucene_dir = work / f"{name}.lucene"
    if not lucene_dir.exists():
        timed(
            "build Lucene impact index (export + IndexCollection)",
            lambda: build_impact_index(passages, lucene_dir, threads=cores, progress=False),
        )
    with LuceneImpactIndex(lucene_dir) as lucene:
        warm_q, warm_ids = lucene.java_queries(_head(queries, min(n, 200)))
        lucene.batch_search(warm_q, warm_ids, depth, cores)
        started = time.perf_counter()
        java_queries, java_qids = lucene.java_queries(queries)
        java_started = time.perf_counter()
        results = lucene.batch_search(java_queries, java_qids, depth, cores)
        java_s = time.perf_counter() - java_started
        from led_hf.retrieval.lucene import _hits

        lucene_results = _hits(results, queries.ids)
        end_to_end_s = time.perf_counter() - started
    print(
        f"  Lucene impact: {n / java_s:,.0f} queries/s Java batch_search only ({java_s:.2f}s), "
        f"{n / end_to_end_s:,.0f} queries/s end to end ({end_to_end_s:.2f}s)"
    )
    print(
        f"  ratio embedded / Lucene: {java_s / embedded_s:.1f}x (Java-only), {end_to_end_s / embedded_s:.1f}x "
        "(end to end)"
    )
    agree = top_k_agreement(embedded, lucene_results, k=10)
    print(
        f"  top-10 agreement (ties aside): {agree['agree']}/{agree['queries']} queries "
        f"({100 * agree['agree'] / max(agree['queries'], 1):.2f}%); identical integer scores: "
        f"{agree['same_scores']}/{agree['queries']}"
    )
    if qrels:
        from led_hf.evaluation.metrics import evaluate_run

        for label, run in (("embedded", embedded), ("Lucene", lucene_results)):
            metrics = evaluate_run({q: dict(h) for q, h in run.items()}, qrels, recall_depths=(100,))
            print(
                f"  {label}: nDCG@10 {metrics['ndcg@10']:.4f}  R@100 {metrics['recall@100']:.4f}  "
                f"MRR@10 {metrics['mrr@10']:.4f}"
            )


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work",
        default=str(Path.home() / ".cache" / "led-hf" / "bench_sparse"),
        help="vectors and indexes are kept here between runs",
    )
    parser.add_argument(
        "--scifact-vectors",
        nargs=2,
        metavar=("PASSAGES", "QUERIES"),
        help="SciFact sparse vectors from `led encode` (default: encode with SPLADE-tiny here)",
    )
    parser.add_argument(
        "--docs", type=int, default=1_000_000, help="generated corpus size (default 1,000,000)"
    )
    parser.add_argument("--queries", type=int, default=1000, help="generated queries (default 1000)")
    parser.add_argument("--depth", type=int, default=1000, help="hits per query (default 1000)")
    parser.add_argument("--cores", type=int, default=2, help="worker processes / Lucene threads (default 2)")
    parser.add_argument(
        "--lucene-max-docs",
        type=int,
        default=None,
        help="skip Lucene on a generated corpus larger than this (its impact indexing expands each "
        "term weight times: ~200-800 docs/s on 2 cores)",
    )
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--skip-generated", action="store_true")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from led_hf.retrieval.lucene import missing_extra

    reason = missing_extra()
    if reason:
        print(f"Lucene side skipped: {reason}")
    if not args.skip_scifact:
        if args.scifact_vectors:
            passages, queries = map(Path, args.scifact_vectors)
            qrels = scifact_qrels()
        else:
            passages, queries, qrels = scifact_vectors(work)
        compare(passages, queries, work, "scifact", args.depth, args.cores, qrels, reason is None)
    if not args.skip_generated:
        passages, queries = generated_vectors(work, args.docs, args.queries)
        lucene_ok = reason is None and (args.lucene_max_docs is None or args.docs <= args.lucene_max_docs)
        compare(passages, queries, work, f"generated-{args.docs}", args.depth, args.cores, None, lucene_ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
