"""Score every training candidate once with a frozen teacher: `led score-teacher` (LED, precomputed scores).

For each training query (a positive qrels row in `split`) the candidates are its positives and its
negative pool (sources truncated to `num_negs_per_system`, concatenated, positives removed, duplicates
scored once): every passage `TrainGroups` can draw for it. The result is the folder that
`led_hf.data.scored_groups.ScoredTrainGroups` reads (layout there), written atomically:

    DATA/teacher_scores/<name>/   one row per query {qid, pids, scores}, + led_teacher_scores.json

A killed run resumes from its work folder DATA/teacher_scores/.work-<name>/ (parts of `part_queries`).

Teachers (`led_hf.scoring.scorers`, chunks of `queries_per_chunk` queries):
- SPLADE (`led_config.json` kind "splade", or a plain masked-LM folder): score = <w_q, w_p> (fp32);
- cross-encoder (kind "cross-encoder"): score = the logit of `[CLS] q [SEP] title [SEP] text [SEP]` (fp32).
The scores equal what the online teacher computes in training for the same lengths (tested).
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
from led_hf.data.scored_groups import METADATA_FILE, ScoredTrainGroups, teacher_scores_path
from led_hf.errors import LedError
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.checkpoint import MASKED_LM, detect_model_kind
from led_hf.precision import resolve_precision
from led_hf.retrieval.sparse_vectors import load_sparse_vectors
from led_hf.scoring.scorers import (
    CrossEncoderScorer,
    SpladeScorer,
    load_cross_encoder_teacher,
    load_splade_teacher,
)
from led_hf.work_folder import start_work_folder, tree_sha256

TEACHER_KINDS = ("splade", "cross-encoder")


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
    path = resolve_model_path(teacher)
    if kind is None:  # a plain masked-LM folder (e.g. bundled:splade-tiny) is a SPLADE teacher
        kind = {MASKED_LM: "splade"}.get(detect_model_kind(path), detect_model_kind(path))
    if kind not in TEACHER_KINDS:
        raise LedError(
            f"{path}: cannot tell the teacher kind ({kind!r}); pass --kind {' or '.join(TEACHER_KINDS)}"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(precision, device)
    if corpus_vectors is not None and kind != "splade":
        raise LedError("--corpus-vectors holds SPLADE term weights; a cross-encoder teacher scores pairs")
    if kind == "splade":
        model, tokenizer = load_splade_teacher(path)
        scorer = SpladeScorer(
            model, tokenizer, query_max_length, passage_max_length, batch_size, device, precision
        )
        if corpus_vectors is not None:
            scorer.passage_matrix = load_corpus_vectors(
                corpus_vectors, groups.data, path, passage_max_length, scorer.model.vocab_size
            )
        lengths = {"query_max_length": query_max_length, "passage_max_length": passage_max_length}
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
        "precision": precision,
        "num_queries": groups.num_queries,
        "corpus_vectors": str(Path(corpus_vectors).resolve()) if corpus_vectors is not None else None,
        "score": "SPLADE dot product" if kind == "splade" else "cross-encoder logit",
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
            "teacher": str(Path(path).resolve()),
            "inputs": inputs,
            "teacher_sha256": tree_sha256(path),
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
        for query, rows, values in zip(chunk, candidates, scores):
            writer.add(qids[query], corpus_pids.take(rows).to_pylist(), values.tolist())
        bar.update(len(chunk))
    writer.finish().rename(_part_path(work, index))


def load_corpus_vectors(folder: str | Path, data, teacher: str, passage_max_length: int, vocab_size: int):
    """A SPLADE teacher's `led encode --corpus` folder as one scipy CSR [corpus rows, V] (in memory), after
    checking that it encodes this dataset's corpus, in order, with this teacher and passage length."""
    import scipy.sparse

    manifest, vectors = load_sparse_vectors(folder)
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
    if vectors.ids != data.corpus.data.column("pid").to_pylist():
        raise LedError(f"--corpus-vectors {folder}: its ids are not the corpus pids in order")
    return scipy.sparse.csr_matrix(
        (vectors.values, vectors.indices, vectors.indptr), shape=(len(vectors.ids), vocab_size)
    )
