"""Build the embedded inverted index (format: led_hf/retrieval/inverted_index.py) from a sparse vectors folder.

Built one vectors shard at a time into `.IDX.parts/` (resumable: a rerun rebuilds only missing or stale
parts), then the parts are merged into memory-mapped arrays in a staging folder renamed into IDX.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from led_hf.atomic import atomic_directory
from led_hf.errors import InputError, LedError
from led_hf.retrieval.impact import INT32_MAX, SCALE, quantize
from led_hf.retrieval.pairing import check_side
from led_hf.retrieval.sparse_vectors import (
    VOCAB,
    load_sparse_shard,
    read_sparse_manifest,
    read_vocabulary,
    shard_folders,
)

FORMAT_VERSION = 1


def _source_stamp(folder: Path) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir()) if p.is_file()]


def _build_part(shard_folder: Path, part: Path, vocab_size: int, quantized: bool) -> None:
    """Term-major postings of one shard (local rows), written atomically to `part`."""
    shard = load_sparse_shard(shard_folder, vocab_size)
    weights = quantize(shard.values) if quantized else shard.values.astype(np.float32)
    keep = weights > 0  # ×100 rounds weights below 0.005 to zero: they can never add to a score
    rows = np.repeat(np.arange(len(shard), dtype=np.int32), np.diff(shard.indptr))[keep]
    terms, weights = shard.indices[keep], weights[keep]
    order = np.argsort(terms, kind="stable")  # stable: rows stay increasing inside each term
    with atomic_directory(part, overwrite=True, markers=None) as staging:
        np.save(staging / "term_counts.npy", np.bincount(terms, minlength=vocab_size).astype(np.int64))
        np.save(staging / "doc_rows.npy", rows[order])
        np.save(staging / "weights.npy", weights[order])
        (staging / "ids.txt").write_text("".join(f"{i}\n" for i in shard.ids), encoding="utf-8")
        stamp = {
            "source": str(shard_folder.resolve()),
            "stamp": _source_stamp(shard_folder),
            "num_docs": len(shard),
            "quantized": quantized,
        }
        (staging / "part.json").write_text(json.dumps(stamp), encoding="utf-8")


def _part_is_current(shard_folder: Path, part: Path, quantized: bool) -> bool:
    try:
        stamp = json.loads((part / "part.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return (
        stamp.get("source") == str(shard_folder.resolve())
        and stamp.get("quantized") == quantized
        and stamp.get("stamp") == _source_stamp(shard_folder)
    )


def build_inverted_index(
    vectors: str | Path,
    output: str | Path,
    quantized: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Index the sparse vectors folder `vectors` (passages) into `output`; returns build statistics.

    Each vectors shard becomes a part under `.OUTPUT.parts/` (kept across failures: a rerun rebuilds only
    missing or stale parts), then the parts are merged into memory-mapped arrays in a staging folder
    that replaces `output` only when complete. Returns {"num_docs", "num_postings", "built", "reused"}.
    """
    from tqdm.auto import tqdm

    vectors, output = Path(vectors), Path(output)
    if output.exists() and not overwrite:
        raise LedError(f"{output} already exists (pass --overwrite to replace it)")
    manifest = read_sparse_manifest(vectors)
    check_side(manifest, vectors, "passages", "--vectors")
    vocab_size = manifest["vocab_size"]
    vocabulary = read_vocabulary(vectors, vocab_size)
    folders = shard_folders(vectors, manifest)
    work = output.parent / f".{output.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    built, reused = [], []
    for folder in tqdm(folders, desc="index shards", unit="shard", disable=not progress):
        part = work / folder.name
        if _part_is_current(folder, part, quantized):
            reused.append(folder.name)
            continue
        _build_part(folder, part, vocab_size, quantized)
        built.append(folder.name)
    parts = [work / f.name for f in folders]
    with atomic_directory(output, overwrite=overwrite) as staging:
        num_docs, num_postings = _merge_parts(parts, staging, vocab_size, quantized)
        if vocabulary is not None:
            shutil.copyfile(vectors / VOCAB, staging / VOCAB)
        info = {
            "kind": "inverted",
            "format_version": FORMAT_VERSION,
            "num_docs": num_docs,
            "vocab_size": vocab_size,
            "num_postings": num_postings,
            "quantized": quantized,
            "scale": SCALE if quantized else None,
            "weights_dtype": "int32" if quantized else "float32",
            "vectors": str(vectors.resolve()),
            "model": manifest.get("model"),
            "data": manifest.get("data"),
            "what": manifest.get("what"),
        }
        (staging / "manifest.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return {"num_docs": num_docs, "num_postings": num_postings, "built": built, "reused": reused}


def _merge_parts(parts: list[Path], out: Path, vocab_size: int, quantized: bool) -> tuple[int, int]:
    """Concatenate the parts' postings term by term (doc rows offset by the docs before each part)."""
    counts = [np.load(p / "term_counts.npy", allow_pickle=False) for p in parts]
    totals = np.sum(counts, axis=0, dtype=np.int64)
    term_ptr = np.zeros(vocab_size + 1, dtype=np.int64)
    np.cumsum(totals, out=term_ptr[1:])
    num_postings = int(term_ptr[-1])
    if num_postings > INT32_MAX:
        raise LedError(
            f"{num_postings} postings exceed one index's 2^31-1: split the corpus into several indexes"
        )
    np.save(out / "term_ptr.npy", term_ptr)
    doc_rows = np.lib.format.open_memmap(
        out / "doc_rows.npy", mode="w+", dtype=np.int32, shape=(num_postings,)
    )
    weights = np.lib.format.open_memmap(
        out / "weights.npy", mode="w+", shape=(num_postings,), dtype=np.int32 if quantized else np.float32
    )
    next_slot = term_ptr[:-1].copy()  # where each term's next postings go
    offset_chunks, id_hashes, num_docs, num_bytes = [np.zeros(1, np.int64)], [], 0, 0
    with open(out / "doc_ids.bin", "wb") as blob:
        for part, part_counts in zip(parts, counts):
            part_rows = np.load(part / "doc_rows.npy", allow_pickle=False)
            part_ptr = np.concatenate([[0], np.cumsum(part_counts)])
            dest = np.repeat(next_slot - part_ptr[:-1], part_counts) + np.arange(
                len(part_rows), dtype=np.int64
            )
            doc_rows[dest] = part_rows + num_docs
            weights[dest] = np.load(part / "weights.npy", allow_pickle=False)
            next_slot += part_counts
            ids = (part / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
            encoded = [i.encode("utf-8") for i in ids]
            blob.write(b"".join(encoded))
            lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            offset_chunks.append(num_bytes + np.cumsum(lengths))
            num_bytes += int(lengths.sum())
            id_hashes.append(np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids)))
            num_docs += len(ids)
    np.save(out / "doc_id_offsets.npy", np.concatenate(offset_chunks))
    _check_unique_ids(parts, np.concatenate(id_hashes) if id_hashes else np.zeros(0, np.int64))
    weights_view = np.asarray(weights)
    term_max = np.zeros(vocab_size, dtype=weights_view.dtype)
    nonempty = np.flatnonzero(totals)
    if len(nonempty):
        term_max[nonempty] = np.maximum.reduceat(weights_view, term_ptr[nonempty])
    np.save(out / "term_max.npy", term_max)
    doc_rows.flush()
    weights.flush()
    del doc_rows, weights, weights_view
    return num_docs, num_postings


def _check_unique_ids(parts: list[Path], hashes: np.ndarray) -> None:
    values, counts = np.unique(hashes, return_counts=True)
    suspects = set(values[counts > 1].tolist())
    if not suspects:
        return
    seen: dict[str, str] = {}
    for part in parts:
        for line, doc_id in enumerate(
            (part / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1], start=1
        ):
            if hash(doc_id) in suspects:
                if doc_id in seen:
                    raise InputError(
                        Path(part.name) / "ids.txt", line, f"id {doc_id!r} also appears in {seen[doc_id]}"
                    )
                seen[doc_id] = part.name
