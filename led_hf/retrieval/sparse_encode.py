"""Encode a corpus or a query set with a SPLADE model into sharded sparse (CSR) term weights.

Folder contract (read by the inverted index and the Lucene backend)::

    OUT/manifest.json    {"kind": "sparse", "vocab_size": V, "num_shards": n, "what": "passages"|"queries",
                          "model": ..., "data": ..., "split": null|SPLIT, "num_rows": N, "max_length": L, ...}
    OUT/vocab.txt        the token string of each vocabulary id, one per line (line v+1 = id v)
    OUT/shard-00000-of-00004/indptr.npy   int64 [N_0 + 1]   row r's terms are entries indptr[r]:indptr[r+1]
                            indices.npy  int32 [nnz]      vocabulary ids, increasing within a row
                            values.npy   float32 [nnz]    weights, all > 0
                            ids.txt      one id per line (row r = line r+1)

E.g. two rows with weights {7: 0.5, 9: 1.25} and {} -> indptr [0, 2, 2], indices [7, 9], values [0.5, 1.25].
Rows, shards, batching, resume and the manifest check are those of `led_hf.retrieval.encode` (shard i
holds the contiguous rows [floor(i*N/n), floor((i+1)*N/n)); a shard folder only appears complete).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from led_hf.atomic import atomic_file
from led_hf.errors import LedError
from led_hf.retrieval.encode import (
    IDS,
    MANIFEST,
    Collate,
    EncodeFn,
    TextSource,
    ensure_source_manifest,
    probe_dim,
    read_manifest,
    shard_dirname,
    shard_range,
    write_shard,
)
from led_hf.retrieval.encoding_files import shard_folders

VOCAB = "vocab.txt"
INDPTR, INDICES, VALUES = "indptr.npy", "indices.npy", "values.npy"


def vocabulary_strings(tokenizer, vocab_size: int) -> list[str]:
    """Token string of every id < vocab_size; ids the tokenizer lacks (a padded head) get `[unused-ID]`."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
    tokens += [f"[unused-{v}]" for v in range(len(tokens), vocab_size)]
    out = []
    for v, token in enumerate(tokens):
        if token is None or not token or token.splitlines() != [token] or token != token.strip():
            token = f"[unused-{v}]"  # keeps one token per line; such ids never carry text anyway
        out.append(token)
    return out


class SparseShardWriter:
    """Collects rows arriving in any order and appends them to disk in row order (memory ~ one chunk).

    `write(rows, weights[len(rows), V])` keeps the non-zero entries; `close()` writes the CSR arrays.
    """

    def __init__(self, folder: Path, ids: Sequence[str]):
        for line, id_ in enumerate(ids, start=1):
            if not isinstance(id_, str) or not id_ or id_.splitlines() != [id_]:
                raise LedError(
                    f"id {id_!r} (row {line} of {folder.name}) cannot be written one per line in {IDS}"
                )
        self.folder = folder
        (folder / IDS).write_text("".join(f"{id_}\n" for id_ in ids), encoding="utf-8")
        self.num_rows = len(ids)
        self.counts = np.zeros(self.num_rows, dtype=np.int64)
        self.pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.next_row = 0
        # Raw appends, turned into .npy files at close: the number of non-zeros is unknown until then.
        self.raw_indices = open(folder / "indices.raw", "wb")  # noqa: SIM115 - closed in close()
        self.raw_values = open(folder / "values.raw", "wb")  # noqa: SIM115

    def write(self, rows: np.ndarray, weights: torch.Tensor) -> None:
        weights = weights.float()
        if torch.any(weights < 0) or not torch.isfinite(weights).all():
            raise LedError("the encoder produced negative or non-finite term weights")
        nonzero = weights.nonzero()  # row-major: sorted by row, then by term id
        per_row = torch.bincount(nonzero[:, 0], minlength=len(rows)).tolist()
        terms = nonzero[:, 1].to(torch.int32).numpy()
        values = weights[nonzero[:, 0], nonzero[:, 1]].numpy()
        start = 0
        for row, count in zip(rows.tolist(), per_row):
            self.pending[row] = (terms[start : start + count], values[start : start + count])
            start += count
        while self.next_row in self.pending:
            row_terms, row_values = self.pending.pop(self.next_row)
            self.raw_indices.write(row_terms.tobytes())
            self.raw_values.write(row_values.astype(np.float32).tobytes())
            self.counts[self.next_row] = len(row_terms)
            self.next_row += 1

    def close(self) -> None:
        self.raw_indices.close()
        self.raw_values.close()
        if self.next_row != self.num_rows or self.pending:  # a bug, not bad input: never publish holes
            raise RuntimeError(f"{self.num_rows - self.next_row} rows of the shard were never written")
        indptr = np.zeros(self.num_rows + 1, dtype=np.int64)
        np.cumsum(self.counts, out=indptr[1:])
        np.save(self.folder / INDPTR, indptr, allow_pickle=False)
        for raw, name, dtype in (("indices.raw", INDICES, np.int32), ("values.raw", VALUES, np.float32)):
            _raw_to_npy(self.folder / raw, self.folder / name, dtype, int(indptr[-1]))


def _raw_to_npy(raw: Path, target: Path, dtype, length: int, block: int = 1 << 24) -> None:
    out = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=(length,))
    if length:
        source = np.memmap(raw, dtype=dtype, mode="r", shape=(length,))
        for start in range(0, length, block):
            out[start : start + block] = source[start : start + block]
        del source
    out.flush()
    del out
    raw.unlink()


def shard_is_complete(out: str | Path, shard_index: int, num_shards: int, num_rows: int) -> bool:
    """True when the final shard folder exists with consistent CSR arrays for its rows."""
    folder = Path(out) / shard_dirname(shard_index, num_shards)
    if not folder.is_dir():
        return False
    expected_rows = len(shard_range(num_rows, shard_index, num_shards))
    try:
        indptr = np.load(folder / INDPTR, mmap_mode="r", allow_pickle=False)
        nnz = [np.load(folder / name, mmap_mode="r", allow_pickle=False).shape for name in (INDICES, VALUES)]
    except (OSError, ValueError) as err:
        raise LedError(f"{folder} is damaged ({err}); delete it and rerun") from err
    if indptr.shape != (expected_rows + 1,) or nnz != [(int(indptr[-1]),)] * 2:
        raise LedError(f"{folder} does not hold {expected_rows} rows of CSR arrays; delete it and rerun")
    return True


def encode_sparse_shard(
    source: TextSource,
    out: str | Path,
    shard_index: int,
    num_shards: int,
    *,
    encode_fn: EncodeFn,
    collate: Collate,
    batch_size: int = 64,
    chunk_rows: int = 16384,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> bool:
    """Encode shard `shard_index` of `num_shards` into OUT/shard-i-of-n/ unless it is complete already.

    Returns True when encoded now, False when skipped. Leftover temporary folders of the shard are removed.
    """
    if shard_is_complete(out, shard_index, num_shards, len(source)):
        return False
    write_shard(
        source,
        out,
        shard_index,
        num_shards,
        make_writer=SparseShardWriter,
        encode_fn=encode_fn,
        collate=collate,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        device=device,
        progress=progress,
    )
    return True


def encode_sparse_to_folder(
    source: TextSource,
    out: str | Path,
    *,
    encode_fn: EncodeFn,
    collate: Collate,
    vocab: Sequence[str],
    shard_indices: Sequence[int],
    num_shards: int,
    manifest: dict | None = None,
    batch_size: int = 64,
    chunk_rows: int = 16384,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> list[int]:
    """Write (or check) the manifest and vocab.txt, then encode `shard_indices`; returns those encoded now.

    `encode_fn` maps a BatchEncoding to [B, V] non-negative weights (`SpladeEncoder.encode_passage`).
    """
    if num_shards < 1:
        raise LedError(f"--num-shards must be at least 1, got {num_shards}")
    vocab_size = probe_dim(source, collate, encode_fn, device)
    if len(vocab) != vocab_size:
        raise LedError(
            f"the model gives {vocab_size} term weights but its vocabulary has {len(vocab)} entries"
        )
    written = ensure_source_manifest(
        out, source, num_shards, {"kind": "sparse", "vocab_size": vocab_size, "dtype": "float32"}, manifest
    )
    if written.get("vocab_size") != vocab_size:
        raise LedError(
            f"{Path(out) / MANIFEST} was written for vocab_size={written.get('vocab_size')}, "
            f"this model has {vocab_size}; use another --output or --overwrite"
        )
    vocab_file = Path(out) / VOCAB
    text = "".join(f"{token}\n" for token in vocab)
    if not vocab_file.is_file():
        with atomic_file(vocab_file) as handle:
            handle.write(text)
    elif vocab_file.read_text(encoding="utf-8") != text:
        raise LedError(
            f"{vocab_file} differs from this model's vocabulary; use another --output or --overwrite"
        )
    return [
        shard_index
        for shard_index in shard_indices
        if encode_sparse_shard(
            source,
            out,
            shard_index,
            num_shards,
            encode_fn=encode_fn,
            collate=collate,
            batch_size=batch_size,
            chunk_rows=chunk_rows,
            device=device,
            progress=progress,
        )
    ]


def load_sparse(out: str | Path):
    """All shards of a complete folder: (ids, scipy.sparse.csr_matrix [N, V] float32). Small collections."""
    import scipy.sparse

    manifest = read_manifest(out)
    if manifest is None or manifest.get("kind") != "sparse":
        raise LedError(f"{out} is not a sparse encoding folder (no {MANIFEST} with kind 'sparse')")
    ids: list[str] = []
    blocks = []
    for folder in shard_folders(out, manifest):
        ids += (folder / IDS).read_text(encoding="utf-8").splitlines()
        try:
            arrays = [np.load(folder / name, allow_pickle=False) for name in (VALUES, INDICES, INDPTR)]
            blocks.append(
                scipy.sparse.csr_matrix(tuple(arrays), shape=(len(arrays[2]) - 1, manifest["vocab_size"]))
            )
        except (OSError, ValueError) as err:
            raise LedError(f"{folder} is damaged ({err}); delete it and rerun") from err
    matrix = (
        scipy.sparse.vstack(blocks, format="csr")
        if blocks
        else scipy.sparse.csr_matrix((0, manifest["vocab_size"]), dtype=np.float32)
    )
    return ids, matrix.astype(np.float32)
