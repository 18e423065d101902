"""Encode a corpus or a query set into sharded embeddings: the folder that `led search` reads.

Folder contract (one encoding run)::

    OUT/manifest.json                      {"kind": "dense", "dim": H, "num_shards": n, "dtype": "float32",
                                            "model": ..., "what": "passages"|"queries", "data": DATA,
                                            "split": null|SPLIT, "max_length": L, "num_rows": N,
                                            "precision": "fp32"|"bf16"|"fp16", ...}
    OUT/shard-00000-of-00004/embeddings.npy  float [N_0, H]   (row r = the passage/query on line r of ids.txt)
    OUT/shard-00000-of-00004/ids.txt         one id per line, UTF-8

Shard i of n holds the contiguous rows [floor(i*N/n), floor((i+1)*N/n)) of the encoded rows (the corpus
table in its stored order, or the queries in table order), so concatenating shards 0..n-1 gives the
table order back; e.g. N=10, n=3 -> rows 0-2, 3-5, 6-9. A shard folder is written under a temporary
name and renamed when complete, so a folder named `shard-*` is always whole: a rerun skips it.

Speed: inside a shard, rows are read in chunks of `chunk_rows`, sorted by token count (longest first,
so that an out-of-memory shows in the first batch), cut into batches of similar length (little padding),
encoded, and put back in their original positions. The encode loop is generic: `encode_fn` maps a
BatchEncoding to a tensor [B, H]; the writer is separate, so a sparse writer can plug in later.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from led_hf.atomic import atomic_directory, atomic_file
from led_hf.data.row_reader import take_rows
from led_hf.errors import LedError
from led_hf.retrieval.encoding_files import (
    EMBEDDINGS,
    IDS,
    MANIFEST,
    read_manifest,
    shard_dirname,
    shard_folders,
)
from led_hf.work_folder import record_content_hashes

# Manifest fields that must agree for a rerun to resume into an existing folder.
IDENTITY_FIELDS = (
    "kind",
    "model",
    "data",
    "what",
    "split",
    "num_shards",
    "num_rows",
    "max_length",
    "dtype",
    "dim",
    "precision",
)

Collate = Callable[[list[dict]], dict]  # features -> {"ids": list[str], "batch": BatchEncoding}
EncodeFn = Callable[[dict], torch.Tensor]  # BatchEncoding (on device) -> [B, H]


# ----------------------------------------------------------------------------- what to encode
@dataclass
class TextSource:
    """The rows of one prepared table to encode, in a fixed order.

    `table` is a `datasets.Dataset` (memory-mapped); `rows` selects positions in it (None = every row in
    stored order). Features handed to the collator are {"id", "text"} plus "title" for passages.
    """

    table: object
    id_column: str
    what: str  # "passages" | "queries"
    rows: np.ndarray | None = None
    split: str | None = None

    def __len__(self) -> int:
        return len(self.table) if self.rows is None else len(self.rows)

    def features(self, start: int, stop: int) -> list[dict]:
        """Features of encoded rows [start, stop)."""
        if self.rows is None:
            columns = self.table[start:stop]
        else:
            columns = self.table[self.rows[start:stop].tolist()]
        ids = columns[self.id_column]
        texts = columns["text"]
        titles = columns.get("title") if self.what == "passages" else None
        out = []
        for i, (id_, text) in enumerate(zip(ids, texts)):
            feature = {"id": id_, "text": text if text is not None else ""}
            if titles is not None:
                feature["title"] = titles[i] or ""
            out.append(feature)
        return out


def corpus_source(data) -> TextSource:
    """Every passage of a `PreparedData`, in corpus order."""
    return TextSource(data.corpus, "pid", "passages")


def query_source(data, split: str | None = None) -> TextSource:
    """The queries of a `PreparedData`: all of them, or (split given) those with qrels in `split`, in table order.

    E.g. queries q1 q2 q3 with test qrels for q3 and q1 -> split "test" encodes q1, q3.
    """
    if split is None:
        return TextSource(data.queries, "qid", "queries")
    qids = sorted(set(data.qrels(split).data.column("qid").to_pylist()))
    rows = np.unique(data.qid_index.rows(qids, strict=True))
    if len(rows) == 0:
        raise LedError(f"{data.root}/qrels/{split} has no queries")
    return TextSource(data.queries, "qid", "queries", rows=rows, split=split)


# ----------------------------------------------------------------------------- shards
def shard_range(num_rows: int, shard_index: int, num_shards: int) -> range:
    """Contiguous rows of shard `shard_index` of `num_shards`: [floor(i*N/n), floor((i+1)*N/n))."""
    if not 0 <= shard_index < num_shards:
        raise LedError(f"shard {shard_index} is out of range for {num_shards} shards")
    return range(shard_index * num_rows // num_shards, (shard_index + 1) * num_rows // num_shards)


def shard_is_complete(out: str | Path, shard_index: int, num_shards: int, num_rows: int, dim: int) -> bool:
    """True when the final shard folder exists (it only appears complete) with the expected shape."""
    folder = Path(out) / shard_dirname(shard_index, num_shards)
    if not folder.is_dir():
        return False
    expected = (len(shard_range(num_rows, shard_index, num_shards)), dim)
    try:
        shape = np.load(folder / EMBEDDINGS, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as err:
        raise LedError(f"{folder} is damaged ({err}); delete it and rerun") from err
    if shape != expected:
        raise LedError(f"{folder / EMBEDDINGS} has shape {shape}, expected {expected}; delete it and rerun")
    return True


# ----------------------------------------------------------------------------- batching
def token_lengths(features: Sequence[dict], collate: Collate, chunk: int = 512) -> np.ndarray:
    """Token count of each feature (special tokens included, after truncation), through the collator itself.

    Tokenising twice costs ~1% of encoding time and keeps the lengths exactly what the model will see.
    """
    lengths = np.empty(len(features), dtype=np.int64)
    for start in range(0, len(features), chunk):
        mask = collate(list(features[start : start + chunk]))["batch"]["attention_mask"]
        lengths[start : start + len(mask)] = np.asarray(mask).sum(axis=1)
    return lengths


def length_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Positions grouped into batches of similar length, longest first (stable for equal lengths).

    E.g. lengths [3, 9, 5, 9], batch_size 2 -> [[1, 3], [2, 0]].
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def encode_batches(
    features: Sequence[dict],
    collate: Collate,
    encode_fn: EncodeFn,
    batch_size: int,
    device: torch.device | str = "cpu",
    lengths: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield (positions in `features`, outputs[len(positions), ...] on the CPU) batch by batch, length-sorted."""
    if lengths is None:
        lengths = token_lengths(features, collate)
    device = torch.device(device)
    with torch.inference_mode():
        for positions in length_batches(lengths, batch_size):
            batch = collate([features[p] for p in positions])["batch"]
            batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
            yield positions, encode_fn(batch).detach().to("cpu")


# ----------------------------------------------------------------------------- writing
class DenseShardWriter:
    """Writes one shard folder's `embeddings.npy` [N, H] (memory-mapped, filled in any row order) and `ids.txt`."""

    def __init__(self, folder: Path, ids: Sequence[str], dim: int, dtype: str = "float32"):
        for line, id_ in enumerate(ids, start=1):
            # str.splitlines also splits on \v, \f, \x1c-\x1e, \x85, \u2028, \u2029: refuse all of them.
            if not isinstance(id_, str) or not id_ or id_.splitlines() != [id_]:
                raise LedError(
                    f"id {id_!r} (row {line} of {folder.name}) cannot be written one per line in {IDS}"
                )
        (folder / IDS).write_text("".join(f"{id_}\n" for id_ in ids), encoding="utf-8")
        self.ids = ids
        self.embeddings = np.lib.format.open_memmap(
            folder / EMBEDDINGS, mode="w+", dtype=np.dtype(dtype), shape=(len(ids), dim)
        )
        self.filled = np.zeros(len(ids), dtype=bool)

    def write(self, rows: np.ndarray, outputs: torch.Tensor) -> None:
        self.embeddings[rows] = outputs.float().numpy()
        # Checked as stored: a NaN model, or a value beyond float16's range with --store-fp16.
        finite = np.isfinite(self.embeddings[rows]).all(axis=1)
        if not finite.all():
            row = int(np.asarray(rows)[~finite][0])
            raise LedError(
                f"the encoder produced a non-finite embedding (id {self.ids[row]!r}, {int((~finite).sum())} "
                f"of {len(finite)} rows of the batch): are the model's weights NaN? (see its training log)"
            )
        self.filled[rows] = True

    def close(self) -> None:
        if not self.filled.all():  # a bug, not bad input: never publish a shard with holes
            raise RuntimeError(f"{int((~self.filled).sum())} rows of the shard were never written")
        self.embeddings.flush()
        del self.embeddings


class ShardWriter(Protocol):
    """Receives a shard's outputs batch by batch (rows in any order); `close` completes the staging folder."""

    def write(self, rows: np.ndarray, outputs: torch.Tensor) -> None: ...

    def close(self) -> None: ...


def write_shard(
    source: TextSource,
    out: str | Path,
    shard_index: int,
    num_shards: int,
    *,
    make_writer: Callable[[Path, list[str]], ShardWriter],
    encode_fn: EncodeFn,
    collate: Collate,
    batch_size: int = 64,
    chunk_rows: int = 16384,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> None:
    """Encode the rows of shard `shard_index` of `num_shards` into OUT/shard-i-of-n/ through a writer.

    The shard appears only when complete (staged, then renamed). A leftover temporary folder of this shard
    (a killed run) is removed first: one process owns a shard. Callers check completeness before.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    name = shard_dirname(shard_index, num_shards)
    for stale in out.glob(f".{name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    rows = shard_range(len(source), shard_index, num_shards)
    with atomic_directory(out / name) as staging:
        writer = make_writer(staging, _ids(source, rows))
        unit = "query" if source.what == "queries" else "passage"
        bar = tqdm(total=len(rows), desc=f"{source.what} {name}", unit=unit, disable=not progress)
        try:
            for chunk_start in range(rows.start, rows.stop, chunk_rows):
                features = source.features(chunk_start, min(chunk_start + chunk_rows, rows.stop))
                for positions, outputs in encode_batches(features, collate, encode_fn, batch_size, device):
                    writer.write(positions + (chunk_start - rows.start), outputs)
                    bar.update(len(positions))
        finally:
            bar.close()
        writer.close()
        record_content_hashes(staging)


def encode_shard(
    source: TextSource,
    out: str | Path,
    shard_index: int,
    num_shards: int,
    *,
    encode_fn: EncodeFn,
    collate: Collate,
    dim: int,
    dtype: str = "float32",
    batch_size: int = 64,
    chunk_rows: int = 16384,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> bool:
    """Encode dense shard `shard_index` of `num_shards` into OUT/shard-i-of-n/ unless it is complete already.

    Returns True when the shard was encoded now, False when it was skipped (complete from an earlier run).
    """
    if shard_is_complete(out, shard_index, num_shards, len(source), dim):
        return False
    write_shard(
        source,
        out,
        shard_index,
        num_shards,
        make_writer=lambda folder, ids: DenseShardWriter(folder, ids, dim, dtype),
        encode_fn=encode_fn,
        collate=collate,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        device=device,
        progress=progress,
    )
    return True


def _ids(source: TextSource, rows: range) -> list[str]:
    if source.rows is None:
        return source.table.data.column(source.id_column).slice(rows.start, len(rows)).to_pylist()
    # chunk by chunk: `ChunkedArray.take` would concatenate the whole id column for every encoded chunk
    return take_rows(
        source.table.data.column(source.id_column), source.rows[rows.start : rows.stop]
    ).to_pylist()


# ----------------------------------------------------------------------------- manifest
def probe_dim(
    source: TextSource, collate: Collate, encode_fn: EncodeFn, device: torch.device | str = "cpu"
) -> int:
    """Output width H, from encoding the first row (one short forward pass)."""
    if len(source) == 0:
        raise LedError(f"nothing to encode: no {source.what}")
    ((_, outputs),) = encode_batches(source.features(0, 1), collate, encode_fn, 1, device, lengths=np.ones(1))
    if outputs.dim() != 2:
        raise LedError(f"the encoder returned shape {tuple(outputs.shape)}, expected [batch, dim]")
    return int(outputs.shape[1])


def ensure_manifest(out: str | Path, manifest: dict) -> dict:
    """Write OUT/manifest.json, or check that the one there describes the same encoding (resume)."""
    out = Path(out)
    existing = read_manifest(out)
    if existing is None:
        if out.exists() and any(p.name.startswith("shard-") for p in out.iterdir()):
            raise LedError(f"{out} holds shards but no {MANIFEST}; use another --output or --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        with atomic_file(out / MANIFEST) as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
        return manifest
    for field in IDENTITY_FIELDS:
        if existing.get(field) != manifest.get(field):
            raise LedError(
                f"{out / MANIFEST} was written for {field}={existing.get(field)!r}, this run has "
                f"{field}={manifest.get(field)!r}; use another --output or --overwrite"
            )
    return existing


def ensure_source_manifest(
    out: str | Path, source: TextSource, num_shards: int, fields: dict, manifest: dict | None = None
) -> dict:
    """`ensure_manifest` for `num_shards` shards of `source`: {what, split, num_shards, num_rows} + the
    encoding's `fields` (kind, dim / vocab_size, dtype) + the caller's identity `manifest` (model, data, ...).
    Returns the manifest on disk."""
    return ensure_manifest(
        out,
        {
            "what": source.what,
            "split": source.split,
            **fields,
            "num_shards": num_shards,
            "num_rows": len(source),
            **(manifest or {}),
        },
    )


def remove_output(out: str | Path) -> None:
    """Delete an earlier encoding folder (--overwrite); refuse folders that are not one."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file()):
        raise LedError(f"{out} exists and is not an embeddings folder (no {MANIFEST}); refusing to delete it")
    shutil.rmtree(out)


def encode_to_folder(
    source: TextSource,
    out: str | Path,
    *,
    encode_fn: EncodeFn,
    collate: Collate,
    shard_indices: Sequence[int],
    num_shards: int,
    manifest: dict | None = None,
    dtype: str = "float32",
    batch_size: int = 64,
    chunk_rows: int = 16384,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[int]:
    """Encode `shard_indices` of `num_shards` into `out`; returns the shards encoded now (others were complete).

    `manifest` carries the caller's identity fields (model, data, max_length, ...); kind, what, split, dim,
    dtype, num_shards and num_rows are filled in here. Single process; the CLI splits shards across ranks.
    """
    if num_shards < 1:
        raise LedError(f"--num-shards must be at least 1, got {num_shards}")
    dim = probe_dim(source, collate, encode_fn, device)
    ensure_source_manifest(out, source, num_shards, {"kind": "dense", "dim": dim, "dtype": dtype}, manifest)
    return [
        shard_index
        for shard_index in shard_indices
        if encode_shard(
            source,
            out,
            shard_index,
            num_shards,
            encode_fn=encode_fn,
            collate=collate,
            dim=dim,
            dtype=dtype,
            batch_size=batch_size,
            chunk_rows=chunk_rows,
            device=device,
            progress=progress,
        )
    ]


def load_embeddings(out: str | Path) -> tuple[list[str], np.ndarray]:
    """All shards of a complete folder concatenated: (ids, embeddings[N, H]). Small collections / tests."""
    manifest = read_manifest(out)
    if manifest is None:
        raise LedError(f"{out} has no {MANIFEST}")
    ids: list[str] = []
    parts = []
    for folder in shard_folders(out, manifest):
        ids += (folder / IDS).read_text(encoding="utf-8").splitlines()
        parts.append(np.load(folder / EMBEDDINGS, allow_pickle=False))
    return ids, np.concatenate(parts) if parts else np.zeros((0, manifest["dim"]), dtype=manifest["dtype"])
