"""The retrievers behind `led_hf.mining.job`: one per model kind, all with the same three steps.

    searcher = make_searcher(job, plan, state)
    searcher.prepare_corpus(rank, world, barrier)     # encode this process's corpus shards, build the index
    rows, scores, positive_scores = searcher.search_shard(source, shard_index, num_shards, qids, positives)

`rows`/`scores` are [Q_i, depth] corpus rows (-1 pads short lists) and model scores, best first;
`positive_scores` [Q_i] is the model's score of each query's best positive (NaN: none found), computed
only when a margin filter needs it. Dense: faiss inner product over the passage embeddings folder; the
positive's score is <q, p> from the same embeddings. SPLADE: the embedded inverted index (float
weights, exact) or Lucene; the positive's score is Σ_t q_t·d_t from the passage vectors folder, quantised
as the index is. BM25: bm25s in memory, or a Lucene BM25 index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from led_hf.collators.encode import EncodeCollator
from led_hf.errors import LedError
from led_hf.mining.dense_index import CorpusIndex, block_of, gather_topk
from led_hf.modeling.dense import DenseEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.precision import resolve_precision, with_precision
from led_hf.retrieval.bm25 import build_corpus_index, query_texts
from led_hf.retrieval.encode import corpus_source, encode_to_folder, query_source, shard_dirname
from led_hf.retrieval.encoding_files import read_ids, shard_folders
from led_hf.retrieval.faiss_search import GPU_MAX_K, EmbeddingShard, gpu_count, open_embeddings
from led_hf.retrieval.impact import SCALE, quantize
from led_hf.retrieval.inverted_build import build_inverted_index
from led_hf.retrieval.inverted_index import InvertedIndex
from led_hf.retrieval.lucene import LuceneImpactIndex, build_bm25_index, build_impact_index, search_bm25
from led_hf.retrieval.sparse_encode import encode_sparse_to_folder, vocabulary_strings
from led_hf.retrieval.sparse_vectors import load_sparse_shard, read_sparse_manifest


class RowLocator:
    """Maps between positions in a sharded folder (shard after shard) and rows of DATA/corpus.

    >>> locator = RowLocator([["d2", "d0"], ["d1"]], pid_index)   # doctest: +SKIP
    >>> locator.position_rows                                        # position -> corpus row: [2, 0, 1]
    """

    def __init__(self, shard_ids: list[list[str]], pid_index, source: str):
        ids = [value for ids in shard_ids for value in ids]
        self.position_rows = pid_index.rows(ids, strict=False)
        if (self.position_rows < 0).any():
            missing = ids[int(np.flatnonzero(self.position_rows < 0)[0])]
            raise LedError(
                f"passage {missing!r} of {source} is not in the prepared corpus: encoded from another "
                "collection?"
            )
        self.shard_of = np.repeat(np.arange(len(shard_ids)), [len(ids) for ids in shard_ids])
        starts = np.concatenate([[0], np.cumsum([len(ids) for ids in shard_ids])])
        self.local_of = np.arange(len(ids)) - starts[self.shard_of]
        self.row_to_position = np.full(len(pid_index), -1, dtype=np.int64)
        self.row_to_position[self.position_rows] = np.arange(len(ids))

    def corpus_rows(self, positions: np.ndarray) -> np.ndarray:
        """Search output positions ([Q, D], -1 = none) -> corpus rows (-1 kept)."""
        return np.where(positions >= 0, self.position_rows[np.maximum(positions, 0)], -1)

    def locate(self, corpus_row: int) -> tuple[int, int] | None:
        """(shard, row inside the shard) of a corpus row, or None when the folder lacks it."""
        position = self.row_to_position[corpus_row] if corpus_row >= 0 else -1
        return None if position < 0 else (int(self.shard_of[position]), int(self.local_of[position]))


def lists_to_arrays(
    results: list[list[tuple[str, float]]], depth: int, pid_index
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked (pid, score) lists -> (rows int64 [Q, depth] with -1 padding, scores float32 [Q, depth])."""
    rows = np.full((len(results), depth), -1, dtype=np.int64)
    scores = np.full((len(results), depth), -np.inf, dtype=np.float32)
    for i, ranked in enumerate(results):
        ranked = ranked[:depth]
        if ranked:
            rows[i, : len(ranked)] = pid_index.rows([pid for pid, _ in ranked], strict=True)
            scores[i, : len(ranked)] = [score for _, score in ranked]
    return rows, scores


class _ModelSearcher:
    """Shared part of the dense and SPLADE searchers: the model, its collators, the encode folders."""

    sparse = False
    every_process_searches = False  # True: every process searches every query shard (sharded corpus)

    def __init__(self, job, plan: dict, state):
        import torch
        from transformers import AutoTokenizer

        self.job, self.plan = job, plan
        self.device = state.device if state is not None else torch.device("cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(job.model)
        self.collate = {
            kind: EncodeCollator(self.tokenizer, max_length=length, kind=kind)
            for kind, length in (("query", job.query_max_length), ("passage", job.passage_max_length))
        }
        self.model = self._load_model().to(self.device).eval()
        self.precision = resolve_precision(job.precision, self.device)
        self.manifest = {
            "model": str(Path(job.model).resolve()),
            "data": str(job.data.root.resolve()),
            "precision": self.precision,
        }

    def _encode(self, source, out: Path, kind: str, shard_indices, num_shards: int) -> None:

        encode = with_precision(
            self.model.encode_query if kind == "query" else self.model.encode_passage,
            self.device,
            self.precision,
        )
        common = dict(
            collate=self.collate[kind],
            shard_indices=list(shard_indices),
            num_shards=num_shards,
            manifest={**self.manifest, "max_length": self.collate[kind].max_length},
            batch_size=self.job.batch_size,
            device=self.device,
            progress=self.job.progress,
        )
        if self.sparse:
            encode_sparse_to_folder(
                source,
                out,
                encode_fn=encode,
                vocab=vocabulary_strings(self.tokenizer, self.model.vocab_size),
                **common,
            )
        else:
            encode_to_folder(source, out, encode_fn=lambda batch: encode(**batch), **common)

    def _prepare_encodings(self, rank: int, world: int, barrier, corpus: bool = True) -> Path | None:
        """Create the query encoding folder and return the passage one: --corpus-embeddings, else
        work/corpus encoded shard by shard (processes take shards r, r+W, ...). corpus=False: queries only."""

        job = self.job
        given = job.corpus_embeddings is not None
        if given and corpus:
            self._check_corpus_embeddings(Path(job.corpus_embeddings))
        encode_corpus = corpus and not given
        out, shards = job.work / "corpus", self.plan["corpus_shards"]
        if rank == 0:  # manifests first, so that the other processes only ever check them
            self._encode(_queries(job), job.work / "queries", "query", [], self.plan["num_shards"])
            if encode_corpus:
                self._encode(corpus_source(job.data), out, "passage", [], shards)
        barrier()
        if encode_corpus:
            self._encode(corpus_source(job.data), out, "passage", range(rank, shards, world), shards)
            barrier()
        return (Path(job.corpus_embeddings) if given else out) if corpus else None

    def _check_corpus_embeddings(self, path: Path) -> None:
        manifest = (
            json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            if (path / "manifest.json").is_file()
            else {}
        )
        expected = "sparse" if self.sparse else "dense"
        if manifest.get("kind") != expected:
            raise LedError(
                f"--corpus-embeddings {path} holds {manifest.get('kind')!r} vectors; this model "
                f"needs {expected!r} ones (`led encode --corpus` with it)"
            )
        if manifest.get("model") not in (None, self.manifest["model"]):
            raise LedError(
                f"--corpus-embeddings {path} was encoded with {manifest['model']}, not {self.job.model}"
            )

    def _encode_queries(self, source, shard_index: int, num_shards: int, qids: list[str]) -> Path:
        out = self.job.work / "queries"
        self._encode(source, out, "query", [shard_index], num_shards)
        folder = out / shard_dirname(shard_index, num_shards)
        if (folder / "ids.txt").read_text(encoding="utf-8").splitlines() != list(qids):
            raise LedError(
                f"{folder} holds other queries than this run's shard; delete {self.job.work} and rerun"
            )
        return folder

    def close(self) -> None:
        pass


class DenseSearcher(_ModelSearcher):
    def _load_model(self):

        return DenseEncoder.from_pretrained(self.job.model)

    def prepare_corpus(self, rank: int, world: int, barrier) -> None:
        """Open the passage embeddings and build the corpus index once (led_hf.mining.dense_index): exact
        search over the mapped shards on the CPU; on GPUs, process r's own block of shards on its GPU,
        every process then searching every query shard (`every_process_searches`)."""
        job = self.job
        self.passages = self._prepare_encodings(rank, world, barrier)
        _, self.shards = open_embeddings(self.passages)
        self.locator = RowLocator(
            [shard.ids for shard in self.shards], job.data.pid_index, str(self.passages)
        )
        self.rank, self.world, self.barrier = rank, world, barrier
        use_gpu = not job.index_factory and gpu_count() > 0 and job.depth <= GPU_MAX_K
        # test-only: LED_TEST_SHARDED_SEARCH=1 shards the exact CPU search too (gloo tests of the merge)
        forced = os.environ.get("LED_TEST_SHARDED_SEARCH") == "1" and not job.index_factory
        self.every_process_searches = (use_gpu or forced) and world > 1
        device = (self.device.index or 0) if self.device.type == "cuda" else 0
        if self.every_process_searches:
            block = block_of(len(self.shards), rank, world)
            first_row = sum(len(s) for s in self.shards[: block.start])
            self.index = CorpusIndex(
                self.shards[block.start : block.stop], first_row, gpu_device=device if use_gpu else None
            )
        else:
            self.index = CorpusIndex(
                self.shards,
                factory=job.index_factory,
                nprobe=job.nprobe,
                ef_search=job.ef_search,
                gpu_device=device if use_gpu else None,
            )

    def search_shard(self, source, shard_index, num_shards, qids, positives):

        if self.every_process_searches:  # the shard's owner encodes it, then every process searches it
            if shard_index % self.world == self.rank:
                self._encode_queries(source, shard_index, num_shards, qids)
            self.barrier()
            folder = self.job.work / "queries" / shard_dirname(shard_index, num_shards)
        else:
            folder = self._encode_queries(source, shard_index, num_shards, qids)
        query_embeddings = EmbeddingShard(folder).embeddings()
        scores, positions = self.index.search(query_embeddings, self.job.depth)
        if self.every_process_searches:
            scores, positions = gather_topk(scores, positions, self.job.depth)
        positive_scores = None
        if self.job.filters.needs_positive_scores:
            positive_scores = np.full(len(qids), np.nan)
            for i, rows in enumerate(positives):
                found = [where for where in map(self.locator.locate, rows.tolist()) if where is not None]
                if found:
                    vectors = np.stack([self.shards[s]._embeddings[local] for s, local in found]).astype(
                        np.float32
                    )
                    positive_scores[i] = float((vectors @ query_embeddings[i]).max())
        return self.locator.corpus_rows(positions), scores, positive_scores


class SpladeSearcher(_ModelSearcher):
    sparse = True

    def _load_model(self):

        return SpladeEncoder.from_pretrained(self.job.model)

    def prepare_corpus(self, rank: int, world: int, barrier) -> None:
        job = self.job
        if job.index is not None:
            self.index_path = Path(job.index)
            vectors = json.loads((self.index_path / "manifest.json").read_text(encoding="utf-8")).get(
                "vectors"
            )
            self.vectors = Path(vectors) if vectors else None
            self._prepare_encodings(rank, world, barrier, corpus=False)
        else:
            self.vectors = self._prepare_encodings(rank, world, barrier)
            self.index_path = job.work / "index"
            if rank == 0 and not self.index_path.is_dir():
                if job.backend == "lucene":
                    build_impact_index(self.vectors, self.index_path, progress=job.progress)
                else:
                    # float weights: the exact scores of docs/method.md §5 (`led index` quantises by default, as Lucene)
                    build_inverted_index(
                        self.vectors, self.index_path, quantized=False, progress=job.progress
                    )
            barrier()
        if job.backend == "lucene":
            self.index, self.quantized = LuceneImpactIndex(self.index_path), True
            self.index_rows = None
        else:
            self.index = InvertedIndex(self.index_path)
            self.quantized = self.index.quantized
            self.index_rows = RowLocator([self.index.doc_ids()], job.data.pid_index, str(self.index_path))
        self.world = world
        self.passage_vectors = None

    def search_shard(self, source, shard_index, num_shards, qids, positives):

        folder = self._encode_queries(source, shard_index, num_shards, qids)
        queries = load_sparse_shard(folder, self.model.vocab_size)
        depth = self.job.depth
        if self.index_rows is None:  # Lucene: (pid, integer score) lists
            results = self.index.search_vectors(queries, depth=depth)
            rows, scores = lists_to_arrays([results[q] for q in qids], depth, self.job.data.pid_index)
        else:
            raw_scores, positions = self.index.search(
                self.index.queries(queries.indptr, queries.indices, queries.values),
                depth,
                workers=None if self.world == 1 else 1,
            )
            rows, scores = self.index_rows.corpus_rows(positions), raw_scores.astype(np.float64)
            scores = np.where(positions >= 0, scores, -np.inf)
        if self.quantized:
            scores = scores / SCALE**2
        positive_scores = (
            self._positive_scores(queries, positives) if self.job.filters.needs_positive_scores else None
        )
        return rows, scores.astype(np.float32), positive_scores

    def _positive_scores(self, queries, positives) -> np.ndarray:
        """Σ_t q_t·d_t of each query's best positive, read from the passage vectors (quantised as the index)."""

        if self.passage_vectors is None:
            self.passage_vectors = _SparseRows(self.vectors, self.job.data.pid_index)
        out = np.full(len(positives), np.nan)
        for i, rows in enumerate(positives):
            span = slice(queries.indptr[i], queries.indptr[i + 1])
            q_terms, q_values = queries.indices[span], queries.values[span]
            for row in rows.tolist():
                vector = self.passage_vectors.vector(row)
                if vector is None:
                    continue
                _, a, b = np.intersect1d(q_terms, vector[0], assume_unique=True, return_indices=True)
                if self.quantized:
                    score = (
                        float(
                            np.dot(
                                quantize(q_values[a]).astype(np.int64),
                                quantize(vector[1][b]).astype(np.int64),
                            )
                        )
                        / SCALE**2
                    )
                else:
                    score = float(np.dot(q_values[a].astype(np.float64), vector[1][b].astype(np.float64)))
                out[i] = score if np.isnan(out[i]) else max(out[i], score)
        return out

    def close(self) -> None:
        self.index.close()


class _SparseRows:
    """Random access to the passage rows of a sparse vectors folder (memory-mapped, nothing loaded whole)."""

    def __init__(self, folder: Path | None, pid_index):

        if folder is None or not Path(folder).is_dir():
            raise LedError(
                f"margin filters need the passage vectors the index was built from ({folder} is missing)"
            )
        folders = shard_folders(folder, read_sparse_manifest(folder))
        load = lambda f, name: np.load(f / name, mmap_mode="r", allow_pickle=False)  # noqa: E731
        self.shards = [
            (load(f, "indptr.npy"), load(f, "indices.npy"), load(f, "values.npy")) for f in folders
        ]
        self.locator = RowLocator([read_ids(f / "ids.txt") for f in folders], pid_index, str(folder))

    def vector(self, corpus_row: int) -> tuple[np.ndarray, np.ndarray] | None:
        where = self.locator.locate(corpus_row)
        if where is None:
            return None
        indptr, indices, values = self.shards[where[0]]
        span = slice(int(indptr[where[1]]), int(indptr[where[1] + 1]))
        return np.asarray(indices[span]), np.asarray(values[span])


class BM25Searcher:
    every_process_searches = False
    """BM25 candidates: bm25s over DATA/corpus built in memory by each process, or a Lucene BM25 index."""

    def __init__(self, job, plan: dict, state):
        self.job, self.plan, self.index = job, plan, None

    def prepare_corpus(self, rank: int, world: int, barrier) -> None:
        job = self.job
        self.index_path = Path(job.index) if job.index is not None else job.work / "index"
        if job.backend == "lucene" and job.index is None and rank == 0 and not self.index_path.is_dir():
            build_bm25_index(job.data.root, self.index_path, progress=job.progress)
        barrier()

    def search_shard(self, source, shard_index, num_shards, qids, positives):

        job = self.job
        texts = query_texts(job.data, qids)
        if job.backend == "lucene":
            results = search_bm25(
                self.index_path, dict(zip(qids, texts)), depth=job.depth, k1=job.k1, b=job.b
            )
            ranked = [results[q] for q in qids]
        else:
            if self.index is None:  # built once per process, only by processes that have shards to search
                self.index = build_corpus_index(job.data, k1=job.k1, b=job.b, progress=job.progress)
            ranked = self.index.search(texts, depth=job.depth, progress=job.progress)
        rows, scores = lists_to_arrays(ranked, job.depth, job.data.pid_index)
        return rows, scores, None

    def close(self) -> None:
        pass


def _queries(job):

    return query_source(job.data, job.split)


def make_searcher(job, plan: dict, state=None):
    """The searcher for `job.kind` ("dense", "splade", "bm25")."""
    return {"dense": DenseSearcher, "splade": SpladeSearcher, "bm25": BM25Searcher}[job.kind](
        job, plan, state
    )
