"""Score every training candidate once with a frozen teacher: `led score-teacher` (LED, precomputed scores).

For each training query (a positive qrels row in `split`) the candidates are its positives and its
negative pool (sources truncated to `num_negs_per_system`, concatenated, positives removed, duplicates
scored once): every passage `TrainGroups` can draw for it. The result is the folder that
`led_hf.data.scored_groups.ScoredTrainGroups` reads (layout there), written atomically:

    DATA/teacher_scores/<name>/   one row per query {qid, pids, scores}, + led_teacher_scores.json

A killed run resumes from its work folder DATA/teacher_scores/.work-<name>/ (parts of `part_queries`).

Teachers (`led_hf.scoring.scorers`, chunks of `queries_per_chunk` queries):
- SPLADE (`led_config.json` kind "splade", or a plain masked-LM folder): score = <w_q, w_p> (fp32);
- cross-encoder (kind "cross-encoder"): score = the logit of `[CLS] q [SEP] title [SEP] text [SEP]` (fp32);
- dense (kind "dense": a `led train dense` folder or a sentence-transformers model): score = <e_q, e_p> /
  temperature, the logits its contrastive loss saw (fp32);
- BM25 (`teacher="bm25"`, kind "bm25"): the candidate's BM25 score from a bm25s index of the corpus
  (`led bm25`'s scoring, k1/b options); no model;
- fused (kind "fused", `teacher` a SPLADE checkpoint): w * z(SPLADE) + (1 - w) * z(BM25), each teacher's
  scores normalised per query over its candidates (z-score or min-max), w = `fusion_weight`.
The model teachers' scores equal what the online teacher computes in training for the same lengths (tested).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from tqdm.auto import tqdm

from led_hf.atomic import atomic_directory
from led_hf.data.arrow_tables import NEGATIVES_FEATURES, TableWriter
from led_hf.data.row_reader import take_rows
from led_hf.data.scored_groups import METADATA_FILE, ScoredTrainGroups, teacher_scores_path
from led_hf.errors import LedError
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.checkpoint import detect_model_kind
from led_hf.modeling.dense import DenseEncoder
from led_hf.precision import resolve_precision
from led_hf.retrieval.bm25 import DEFAULT_B, DEFAULT_K1, build_corpus_index
from led_hf.retrieval.sparse_vectors import MappedSparseRows
from led_hf.scoring.scorers import (
    BM25Scorer,
    CrossEncoderScorer,
    DenseScorer,
    FusedScorer,
    SpladeScorer,
    load_cross_encoder_teacher,
    load_splade_teacher,
    load_tokenizer,
)
from led_hf.work_folder import start_work_folder, tree_sha256

TEACHER_KINDS = ("splade", "cross-encoder", "dense", "bm25", "fused")
SCORE_NAMES = {
    "splade": "SPLADE dot product",
    "cross-encoder": "cross-encoder logit",
    "dense": "bi-encoder dot product / temperature",
    "bm25": "BM25 (bm25s, Lucene formula)",
    "fused": "weighted sum of per-query normalised SPLADE and BM25",
}
BM25_TEACHER = "bm25"  # the `teacher` value of the model-free BM25 teacher


def score_teacher(
    data,
    teacher: str,
    name: str,
    *,
    split: str = "train",
    negs_sources=("bm25",),
    num_negs_per_system: int = 200,
    kind: str | None = None,
    query_max_length: int = 32,
    passage_max_length: int = 128,
    max_length: int | None = None,
    batch_size: int = 64,
    queries_per_chunk: int = 64,
    part_queries: int = 4096,
    device: str | None = None,
    precision: str = "auto",
    corpus_vectors: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    bm25_k1: float = DEFAULT_K1,
    bm25_b: float = DEFAULT_B,
    fusion_weight: float = 0.5,
    fusion_normalisation: str = "zscore",
) -> dict:
    """Write ``DATA/teacher_scores/<name>``; returns its metadata (also saved as led_teacher_scores.json).

    `teacher` is a checkpoint folder (or `bundled:splade-tiny`); `kind` defaults to its led_config.json.
    `query_max_length`/`passage_max_length` are the SPLADE teacher's token limits, `max_length` the
    cross-encoder's pair limit (default: the length it was trained with, else 256). `precision` is the
    teacher's compute precision (led_hf.precision; scores are fp32). `corpus_vectors` (SPLADE teacher) is
    the teacher's own `led encode --corpus` folder: passages are then looked up, not encoded again.

    Resumable: queries are scored in parts of `part_queries` into ``DATA/teacher_scores/.work-<name>/``
    (led_hf.work_folder: plan.json + part-NNNNN.arrow, each renamed when complete); a rerun with the same
    inputs and options scores only the missing parts, then the parts are joined into the final table.

    `teacher="bm25"` (or kind "bm25") scores with BM25 (`bm25_k1`, `bm25_b`); kind "fused" adds BM25 to
    the SPLADE `teacher`: fusion_weight * norm(SPLADE) + (1 - fusion_weight) * norm(BM25), per query.
    """

    if part_queries < 1 or queries_per_chunk < 1:
        raise LedError("part_queries and queries_per_chunk must be positive")
    groups = ScoredTrainGroups(
        data,
        split=split,
        negs_sources=negs_sources,
        num_negs_per_system=num_negs_per_system,
        num_negatives=1,
        show_progress=progress,
    )
    out = teacher_scores_path(groups.data.root, name)
    if out.exists() and not overwrite:  # fail before loading the teacher
        raise LedError(f"{out} already exists (pass --overwrite to replace it)")
    if teacher == BM25_TEACHER or kind == "bm25":
        if teacher != BM25_TEACHER or kind not in (None, "bm25"):
            raise LedError(f"the BM25 teacher is `--teacher {BM25_TEACHER}` (no checkpoint, no other --kind)")
        kind = "bm25"
    if not 0 <= fusion_weight <= 1:
        raise LedError(f"--fusion-weight must be in [0, 1], got {fusion_weight}")
    path = teacher if kind == "bm25" else resolve_model_path(teacher)
    if kind is None:  # a plain masked-LM folder (e.g. bundled:splade-tiny) is a SPLADE teacher
        kind = detect_model_kind(path)
    if kind not in TEACHER_KINDS:
        raise LedError(
            f"{path}: cannot tell the teacher kind ({kind!r}); pass --kind {' or '.join(TEACHER_KINDS)}"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(precision, device)
    if corpus_vectors is not None and kind not in ("splade", "fused"):
        raise LedError(f"--corpus-vectors holds SPLADE term weights; a {kind} teacher does not use them")
    lexical = {}
    if kind in ("bm25", "fused"):
        bm25 = BM25Scorer(build_corpus_index(groups.data, k1=bm25_k1, b=bm25_b, progress=progress))
        lexical = {"bm25_k1": bm25_k1, "bm25_b": bm25_b}
    if kind == "bm25":
        scorer = bm25
        lengths = {}
    elif kind in ("splade", "fused"):
        model, tokenizer = load_splade_teacher(path)
        scorer = SpladeScorer(
            model, tokenizer, query_max_length, passage_max_length, batch_size, device, precision
        )
        if corpus_vectors is not None:
            scorer.passage_matrix = load_corpus_vectors(
                corpus_vectors, groups.data, path, passage_max_length, scorer.model.vocab_size
            )
        lengths = {"query_max_length": query_max_length, "passage_max_length": passage_max_length}
        if kind == "fused":
            scorer = FusedScorer([scorer, bm25], [fusion_weight, 1 - fusion_weight], fusion_normalisation)
            lexical.update(fusion_weight=fusion_weight, fusion_normalisation=fusion_normalisation)
    elif kind == "dense":
        model = DenseEncoder.from_pretrained(path)
        scorer = DenseScorer(
            model, load_tokenizer(path), query_max_length, passage_max_length, batch_size, device, precision
        )
        lengths = {
            "query_max_length": query_max_length,
            "passage_max_length": passage_max_length,
            "temperature": model.temperature,
        }
    else:
        scorer = CrossEncoderScorer(
            *load_cross_encoder_teacher(path, max_length), batch_size, device, precision
        )
        lengths = {"max_length": scorer.collator.max_length}
    metadata = {
        "teacher": teacher,
        "kind": kind,
        "data": str(groups.data.root),
        "split": split,
        "negs_sources": list(groups.negs_sources),
        "num_negs_per_system": num_negs_per_system,
        **lengths,
        **lexical,
        "precision": None if kind == "bm25" else precision,  # BM25 runs no model
        "num_queries": groups.num_queries,
        "corpus_vectors": str(Path(corpus_vectors).resolve()) if corpus_vectors is not None else None,
        "score": SCORE_NAMES[kind],
    }

    work = out.with_name(f".work-{name}")
    root = groups.data.root
    inputs = {what: tree_sha256(root / what) for what in ("corpus", "queries", f"qrels/{split}")}
    inputs.update(
        {f"negatives/{source}": tree_sha256(root / "negatives" / source) for source in groups.negs_sources}
    )
    if corpus_vectors is not None:
        inputs["corpus_vectors"] = tree_sha256(Path(corpus_vectors) / "manifest.json")
    start_work_folder(
        work,
        {
            **metadata,
            "teacher": teacher if kind == "bm25" else str(Path(path).resolve()),
            "inputs": inputs,
            "teacher_sha256": None if kind == "bm25" else tree_sha256(path),
            "part_queries": part_queries,
        },
        overwrite,
        "teacher-score work",
    )
    parts = [
        range(start, min(start + part_queries, groups.num_queries))
        for start in range(0, groups.num_queries, part_queries)
    ]
    done = [i for i in range(len(parts)) if _part_path(work, i).is_file()]
    bar = tqdm(
        total=groups.num_queries,
        initial=sum(len(parts[i]) for i in done),
        unit="query",
        desc=f"scoring with {kind} teacher",
        disable=not progress,
    )
    query_rows, qids = groups.query_table_rows(), groups.query_ids()  # once, not per part
    for index, queries in enumerate(parts):
        if index not in done:
            _score_part(
                groups,
                scorer,
                queries,
                queries_per_chunk,
                work,
                index,
                bar,
                query_rows=query_rows,
                qids=qids,
            )
    bar.close()
    with atomic_directory(out, overwrite=overwrite) as staging:
        writer = TableWriter(staging.parent, staging.name, NEGATIVES_FEATURES, batch_size=1000)
        num_pairs = 0
        for index in range(len(parts)):
            for batch in _read_part(_part_path(work, index)):
                writer.add_batch(batch)
                num_pairs += int(pc.sum(pc.list_value_length(batch.column("pids"))).as_py() or 0)
        writer.close()
        metadata["num_pairs"] = num_pairs
        (Path(staging) / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return metadata


def _part_path(work: Path, index: int) -> Path:
    return work / f"part-{index:05d}.arrow"


def _read_part(path: Path):
    """Record batches of a part (an Arrow IPC stream, memory-mapped)."""
    with pa.memory_map(str(path)) as source:
        yield from pa.ipc.open_stream(source)


def _score_part(
    groups,
    scorer,
    queries: range,
    queries_per_chunk: int,
    work: Path,
    index: int,
    bar,
    *,
    query_rows: np.ndarray,
    qids: list[str],
) -> None:
    """Score `queries` in chunks into WORK/part-<index>.arrow (staged in WORK/.build, renamed when whole)."""
    corpus_pids = groups.data.corpus.data.column("pid")
    writer = TableWriter(
        work, _part_path(work, index).stem, NEGATIVES_FEATURES, batch_size=1000, scratch=True
    )
    for start in range(queries.start, queries.stop, queries_per_chunk):
        chunk = range(start, min(start + queries_per_chunk, queries.stop))
        candidates = [groups.scoring_candidates(q) for q in chunk]
        scores = scorer.score(groups.data, query_rows[list(chunk)], candidates)
        # one chunk-by-chunk take for the whole query chunk: `ChunkedArray.take` would concatenate the
        # corpus pid column at every call (tens of ms a query at MS MARCO size)
        pids = take_rows(corpus_pids, np.concatenate(candidates)).to_pylist()
        bounds = np.cumsum([0] + [len(rows) for rows in candidates]).tolist()
        for query, start_of, end_of, values in zip(chunk, bounds, bounds[1:], scores):
            writer.add(qids[query], pids[start_of:end_of], values.tolist())
        bar.update(len(chunk))
    writer.finish().rename(_part_path(work, index))


def load_corpus_vectors(folder: str | Path, data, teacher: str, passage_max_length: int, vocab_size: int):
    """A SPLADE teacher's `led encode --corpus` folder, memory-mapped (`MappedSparseRows`: rows gathered
    on lookup, never the whole corpus in memory), after checking that it encodes this dataset's corpus, in
    order, with this teacher and passage length (the ids compared shard by shard)."""
    vectors = MappedSparseRows(folder)
    manifest = vectors.manifest
    expected = {
        "what": "passages",
        "split": None,
        "num_rows": len(data.corpus),
        "vocab_size": vocab_size,
        "max_length": passage_max_length,
        "data": str(data.root.resolve()),
        "model": str(Path(teacher).resolve()),
    }
    for field, value in expected.items():
        if manifest.get(field) != value:
            raise LedError(
                f"--corpus-vectors {folder} was encoded with {field}={manifest.get(field)!r}; this run "
                f"needs {value!r} (`led encode --model TEACHER --data DATA --corpus --max-length "
                f"{passage_max_length}`)"
            )
    pids = data.corpus.data.column("pid")
    start = 0
    for ids in vectors.ids_in_order():
        if start + len(ids) > len(pids) or ids != pids.slice(start, len(ids)).to_pylist():
            raise LedError(f"--corpus-vectors {folder}: its ids are not the corpus pids in order")
        start += len(ids)
    if start != len(pids):
        raise LedError(f"--corpus-vectors {folder}: its ids are not the corpus pids in order")
    return vectors
