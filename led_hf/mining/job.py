"""Hard-negative mining (docs/method.md §5): retrieve for the training queries, drop their positives, keep the top.

    led mine --data DATA --split train --name sp-stg1 --model runs/sp-stg1 --depth 1000 --keep 200

The stage model (dense or SPLADE, read from the checkpoint) or BM25 searches `depth` passages for every
query with qrels in `split`; `filters.select_negatives` removes the query's qrels positives
(grade > 0), applies the optional filters and keeps the first `keep` in rank order with their scores.
The result is the negatives source `DATA/negatives/NAME` {qid, pids, scores} (queries left with no
negative are omitted), with `manifest.json` *inside* that folder: model, backend, depth, keep, filters,
sha256 of every input, start/end time.

Work folder (default `DATA/.mine-NAME/`; resumable, removed after success unless `keep_work`)::

    plan.json                     what this work is for (inputs' hashes, depth, filters, shard counts):
                                  a rerun resumes only into a folder made for the same run
    corpus/                       passage encoding (`led encode` layout, one folder per corpus shard)
    index/                        SPLADE: the inverted (float weights, exact) or Lucene index
    queries/                      query encoding, `num_shards` contiguous shards of the split's queries
    results/shard-i-of-n/         per query shard: ids.txt (qids), offsets.npy int64 [Q_i+1],
                                  rows.npy int64 (corpus rows), scores.npy float32: the kept negatives

Every shard folder appears complete or not at all (written under a temporary name, then renamed), so a
killed run loses at most the shards in progress; the final table is written only when every result
shard exists, and atomically. Under `accelerate launch` process r takes the corpus and query shards
r, r+W, ...; the main process builds the index and assembles the table. The output does not depend on
the number of processes (each shard's work is the same wherever it runs).

Scores are the model's: dense inner products; SPLADE dot products (a quantised index's integer scores
are divided back by 100², i.e. Σ round(100·q_t)·round(100·d_t) / 10⁴); BM25 scores.
Test-only hook: with LED_TEST_KILL_AFTER_SHARDS=k a process SIGKILLs itself after writing k result shards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from led_hf.atomic import atomic_directory
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.mining.filters import NegativeFilters, select_negatives, to_csr
from led_hf.mining.search import make_searcher
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.checkpoint import MASKED_LM, detect_model_kind
from led_hf.retrieval.bm25 import write_negatives
from led_hf.retrieval.encode import _ids, query_source, shard_dirname, shard_range
from led_hf.version import __version__
from led_hf.work_folder import start_work_folder, tree_sha256

KILL_HOOK = "LED_TEST_KILL_AFTER_SHARDS"
BACKENDS = ("auto", "faiss", "inverted", "lucene")
DEFAULT_QUERY_SHARD_SIZE = 5_000
DEFAULT_CORPUS_SHARD_SIZE = 100_000


def model_kind(path: str, kind: str = "auto") -> str:
    """ "dense" or "splade": `kind` when given, else `detect_model_kind`'s answer; a folder it cannot place
    is dense, a plain masked-LM folder needs --kind."""

    if kind != "auto":
        return kind
    found = detect_model_kind(path)
    if found in ("dense", "splade"):
        return found
    if found == MASKED_LM:
        raise LedError(f"{path} is a plain masked-LM folder: pass --kind splade (or --kind dense)")
    if found is not None:
        raise LedError(f"{path} holds a {found!r} model; mining needs a dense or SPLADE retriever")
    return "dense"


@dataclass
class MiningJob:
    """One mining run; `run(state)` does this process's share (see the module docstring)."""

    data: str | Path
    split: str
    name: str
    model: str | None = None  # a dense/SPLADE checkpoint; None with bm25=True
    bm25: bool = False
    kind: str = "auto"
    backend: str = "auto"
    depth: int = 1000
    filters: NegativeFilters = field(default_factory=NegativeFilters)
    corpus_embeddings: str | Path | None = None
    index: str | Path | None = None
    work_dir: str | Path | None = None
    num_shards: int | None = None
    corpus_shards: int | None = None
    query_max_length: int = 32
    passage_max_length: int = 128
    batch_size: int = 64
    precision: str = "auto"  # encoder compute precision (led_hf.precision)
    k1: float = 0.9
    b: float = 0.4
    overwrite: bool = False
    keep_work: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.depth < 1:
            raise LedError(f"--depth must be at least 1, got {self.depth}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise LedError(f"--name {self.name!r} must be a plain name (it becomes a folder name)")
        self.data = PreparedData(self.data)
        self.output = self.data.root / "negatives" / self.name
        self.work = Path(self.work_dir) if self.work_dir else self.data.root / f".mine-{self.name}"
        if (self.model is None) == (not self.bm25):
            raise LedError("give exactly one of --model PATH and --bm25")
        if self.model is not None:
            self.model = resolve_model_path(str(self.model))
            if not Path(self.model).is_dir():
                raise LedError(f"--model {self.model} is not a folder")
        self.kind = "bm25" if self.bm25 else model_kind(self.model, self.kind)
        self._resolve_backend()
        if self.kind == "bm25" and self.filters.needs_positive_scores:
            raise LedError("margin filters need the positives' scores, which BM25 mining does not compute")

    def _resolve_backend(self) -> None:
        index_kind = None
        if self.index is not None:
            manifest = Path(self.index) / "manifest.json"
            if not manifest.is_file():
                raise LedError(f"--index {self.index} is not an index folder (no manifest.json)")
            index_kind = json.loads(manifest.read_text(encoding="utf-8")).get("kind")
            if self.corpus_embeddings is not None:
                raise LedError("give --index or --corpus-embeddings, not both")
        wanted = {
            "dense": {"auto": "faiss", "faiss": "faiss"},
            "splade": {
                "auto": {"lucene-impact": "lucene"}.get(index_kind, "inverted"),
                "inverted": "inverted",
                "lucene": "lucene",
            },
            "bm25": {"auto": "lucene" if index_kind == "lucene-bm25" else "bm25s", "lucene": "lucene"},
        }[self.kind]
        if self.backend not in wanted:
            raise LedError(
                f"--backend {self.backend} cannot search a {self.kind} model (use "
                f"{' or '.join(sorted(set(wanted.values())))})"
            )
        self.backend = wanted[self.backend]
        if self.kind == "dense" and self.index is not None:
            raise LedError("a dense model searches --corpus-embeddings (faiss), not an --index")
        expected_index = {
            ("splade", "inverted"): "inverted",
            ("splade", "lucene"): "lucene-impact",
            ("bm25", "lucene"): "lucene-bm25",
        }.get((self.kind, self.backend))
        if self.index is not None and index_kind != expected_index:
            raise LedError(
                f"--index {self.index} holds a {index_kind!r} index; {self.kind} mining with backend "
                f"{self.backend} needs {expected_index!r}"
            )

    # ------------------------------------------------------------------ plan
    def plan(self, num_queries: int) -> dict:
        """Everything the work folder's content depends on (a rerun resumes only when it is equal)."""
        root = self.data.root
        inputs = {
            "corpus": tree_sha256(root / "corpus"),
            "queries": tree_sha256(root / "queries"),
            f"qrels/{self.split}": tree_sha256(root / "qrels" / self.split),
        }
        if self.model is not None:
            inputs["model"] = tree_sha256(self.model)
        for what in ("corpus_embeddings", "index"):
            if getattr(self, what) is not None:
                inputs[what] = tree_sha256(Path(getattr(self, what)) / "manifest.json")
        num_shards = self.num_shards or max(1, -(-num_queries // DEFAULT_QUERY_SHARD_SIZE))
        corpus_shards = self.corpus_shards or max(1, -(-len(self.data.corpus) // DEFAULT_CORPUS_SHARD_SIZE))
        return {
            "kind": self.kind,
            "model": str(Path(self.model).resolve()) if self.model else None,
            "backend": self.backend,
            "split": self.split,
            "depth": self.depth,
            "filters": self.filters.to_dict(),
            "num_shards": num_shards,
            "corpus_shards": corpus_shards,
            "num_queries": num_queries,
            "query_max_length": self.query_max_length,
            "passage_max_length": self.passage_max_length,
            "precision": self.precision if self.model else None,
            "bm25": {"k1": self.k1, "b": self.b} if self.kind == "bm25" else None,
            "corpus_embeddings": str(Path(self.corpus_embeddings).resolve())
            if self.corpus_embeddings
            else None,
            "index": str(Path(self.index).resolve()) if self.index else None,
            "inputs": inputs,
        }

    # ------------------------------------------------------------------ run
    def run(self, state=None) -> dict | None:
        """This process's share of the run; returns the manifest on the main process, None elsewhere.

        `state` is an accelerate `PartialState` (None: one process).
        """

        rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
        is_main = rank == 0
        barrier = state.wait_for_everyone if state is not None else (lambda: None)
        started = time.time()
        if self.output.exists() and not self.overwrite:
            raise LedError(f"{self.output} already exists (pass --overwrite to replace it)")
        queries = query_source(self.data, self.split)
        plan = self.plan(len(queries))
        if is_main:
            start_work_folder(self.work, plan, self.overwrite, "mining work")
        barrier()

        searcher = make_searcher(self, plan, state)
        searcher.prepare_corpus(rank, world, barrier)
        num_shards = plan["num_shards"]
        qrels = self.data.qrels_dict(self.split)
        done = reused = 0
        kill_after = int(os.environ.get(KILL_HOOK, "0") or 0)
        for shard_index in range(rank, num_shards, world):
            folder = self.work / "results" / shard_dirname(shard_index, num_shards)
            if folder.is_dir():
                reused += 1
                continue
            for stale in folder.parent.glob(f".{folder.name}.tmp-*"):  # a killed run's leftovers
                shutil.rmtree(stale, ignore_errors=True)
            qids = _ids(queries, shard_range(len(queries), shard_index, num_shards))
            positives = [
                self.data.pid_index.rows([p for p, g in qrels.get(q, {}).items() if g > 0], strict=False)
                for q in qids
            ]
            rows, scores, positive_scores = searcher.search_shard(
                queries, shard_index, num_shards, qids, positives
            )
            mask = select_negatives(rows, scores, positives, qids, self.filters, positive_scores)
            offsets, kept_rows, kept_scores = to_csr(rows, scores, mask)
            with atomic_directory(folder) as staging:
                (staging / "ids.txt").write_text("".join(f"{q}\n" for q in qids), encoding="utf-8")
                for file, array in (("offsets", offsets), ("rows", kept_rows), ("scores", kept_scores)):
                    np.save(staging / f"{file}.npy", array, allow_pickle=False)
            done += 1
            if kill_after and done >= kill_after:  # test-only: die like a preempted job, mid-run
                os.kill(os.getpid(), signal.SIGKILL)
        searcher.close()
        barrier()
        manifest = None
        if is_main:
            manifest = self._assemble(plan, started, world, done, reused)
        barrier()
        return manifest

    # ------------------------------------------------------------------ assemble
    def _assemble(self, plan: dict, started: float, world: int, done: int, reused: int) -> dict:
        import pyarrow as pa

        num_shards = plan["num_shards"]
        qids, counts, rows, scores = [], [], [], []
        for shard_index in range(num_shards):
            folder = self.work / "results" / shard_dirname(shard_index, num_shards)
            if not folder.is_dir():
                raise LedError(f"{folder} is missing: a process did not finish its shards (rerun to resume)")
            qids += (folder / "ids.txt").read_text(encoding="utf-8").splitlines()
            counts.append(np.diff(np.load(folder / "offsets.npy", allow_pickle=False)))
            rows.append(np.load(folder / "rows.npy", allow_pickle=False))
            scores.append(np.load(folder / "scores.npy", allow_pickle=False))
        counts, rows, scores = np.concatenate(counts), np.concatenate(rows), np.concatenate(scores)
        nonempty = counts > 0  # queries left with no negative are omitted, as `negatives_from_results` does
        offsets = np.zeros(int(nonempty.sum()) + 1, dtype=np.int32 if len(rows) < 2**31 else np.int64)
        np.cumsum(counts[nonempty], out=offsets[1:])
        pid_column = self.data.corpus.data.column("pid").combine_chunks()
        list_type = pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray
        table = pa.table(
            {
                "qid": pa.array([q for q, keep in zip(qids, nonempty) if keep], pa.string()),
                "pids": list_type.from_arrays(pa.array(offsets), pid_column.take(pa.array(rows))),
                "scores": list_type.from_arrays(pa.array(offsets), pa.array(scores, pa.float32())),
            }
        )
        manifest = {
            "name": self.name,
            "kind": self.kind,
            "model": plan["model"],
            "backend": self.backend,
            "split": self.split,
            "depth": self.depth,
            "keep": self.filters.keep,
            "filters": self.filters.to_dict(),
            "bm25": plan["bm25"],
            "corpus_embeddings": plan["corpus_embeddings"],
            "index": plan["index"],
            "inputs_sha256": plan["inputs"],
            "num_queries": len(qids),
            "num_queries_written": int(nonempty.sum()),
            "num_negatives": int(len(rows)),
            "num_shards": num_shards,
            "num_processes": world,
            "shards_this_run": done,
            "shards_resumed": reused,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_seconds": round(time.time() - started, 3),
        }

        manifest["led_hf_version"] = __version__
        write_negatives(self.output, table, overwrite=self.overwrite, manifest=manifest)
        if not self.keep_work:
            shutil.rmtree(self.work, ignore_errors=True)
        return manifest
