"""Negative pools in memory-mapped .npy files, built in bounded chunks, once per content (docs/method.md §2).

The pools of a training split are one CSR pair: query q's pool is ``rows[offsets[q]:offsets[q + 1]]``,
offsets int64 [Q + 1], rows int32 corpus rows (int64 past 2^31 rows). At MS MARCO (502,939 queries,
3 sources × 200) that is ~300M rows, 1.15 GiB. They live in

    DATA/.led-cache/pools/<key>/offsets.npy, rows.npy, pools.json

opened with ``np.load(mmap_mode="r")`` by every process that trains on them (DDP ranks, DataLoader
workers, later runs): the pages are the OS's page cache, shared and reclaimable, not each process's heap.
``key`` is a sha256 of what determines the pools: the content hashes of ``corpus``, ``qrels/<split>`` and
each ``negatives/<source>`` (`tree_sha256`, read from the records that `led prepare` and `led mine`
write, so the corpus is not reread), the sources in order, ``num_negs_per_system``, ``dedupe`` and the
format version. A changed input gives another key: a stale pool is never reused.

The build resolves ``CANDIDATES_PER_CHUNK`` candidates at a time (their temporaries stay ~100 MB at any
corpus size), appends each chunk's rows to ``rows.npy`` (whose header, holding the length, is written
last) in a staging folder that is renamed into place when complete. Processes that start together wait
on a lock file and the first one builds; a read-only DATA falls back to ``$TMPDIR/led-hf-pools-<uid>``.
A build removes the pools it supersedes: those of the same data folder, split, sources and options built
from older content (a re-mined source, say), which no key can reach again (1.15 GiB each at MS MARCO). A run
still training on them keeps its maps (unlinked files live until unmapped), though DataLoader workers it
starts later would not find the folder: re-mining a source under a running training is unsafe anyway.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from led_hf.atomic import atomic_directory, output_lock
from led_hf.data.row_reader import take_rows
from led_hf.data.sampling import negative_pools_csr
from led_hf.data.store import PreparedData, resolve_ids
from led_hf.errors import LedError
from led_hf.work_folder import DERIVED_FOLDER, tree_sha256

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
POOLS_FOLDER = Path(DERIVED_FOLDER) / "pools"
INFO = "pools.json"
CANDIDATES_PER_CHUNK = 1_000_000  # resolved at once while building: bounds the build's temporaries
_HEADER_BYTES = 128  # numpy writes the header of any 1-D array in 128 bytes (padded to 64-byte blocks)


class NegativePools:
    """Query q's pool is ``rows[offsets[q]:offsets[q + 1]]``; ``folder`` holds the memory-mapped files.

    Pickles as its folder: DataLoader workers re-open the maps instead of receiving copies.
    """

    def __init__(self, offsets: np.ndarray, rows: np.ndarray, folder: Path | None = None):
        self.offsets, self.rows, self.folder = offsets, rows, folder

    @classmethod
    def empty(cls, num_queries: int, row_dtype) -> NegativePools:
        return cls(np.zeros(num_queries + 1, dtype=np.int64), np.zeros(0, dtype=row_dtype))

    @classmethod
    def open(cls, folder: Path) -> NegativePools:
        # np.asarray: plain ndarray views of the maps (np.memmap slices are slower to index)
        load = lambda name: np.asarray(np.load(folder / name, mmap_mode="r", allow_pickle=False))  # noqa: E731
        return cls(load("offsets.npy"), load("rows.npy"), folder)

    def pool(self, query: int) -> np.ndarray:
        return self.rows[self.offsets[query] : self.offsets[query + 1]]

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.rows.nbytes

    def __getstate__(self):
        if self.folder is None:
            return {"offsets": self.offsets, "rows": self.rows, "folder": None}
        return {"folder": str(self.folder)}

    def __setstate__(self, state):
        if state["folder"] is None:
            self.__init__(state["offsets"], state["rows"])
        else:
            self.__dict__.update(NegativePools.open(Path(state["folder"])).__dict__)


@dataclass(frozen=True)
class PoolSpec:
    """What the pools of a split are made of (their cache key)."""

    data: PreparedData
    split: str
    sources: tuple[str, ...]
    num_negs_per_system: int
    dedupe: bool

    def key(self) -> str:
        for source in self.sources:
            self.data.negatives(source)  # a missing source fails here, with the sources there are
        tables = ["corpus", f"qrels/{self.split}", *(f"negatives/{source}" for source in self.sources)]
        identity = {
            "format": FORMAT_VERSION,
            "split": self.split,
            "sources": list(self.sources),
            "num_negs_per_system": self.num_negs_per_system,
            "dedupe": self.dedupe,
            "content": {table: tree_sha256(self.data.root / table) for table in tables},
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def load_pools(
    spec: PoolSpec,
    qids: pa.Array,
    positive_keys: np.ndarray,
    num_corpus: int,
    row_dtype,
    progress: bool = True,
) -> NegativePools:
    """The pools of the training queries `qids` (qrels order), from the cache or built into it.

    ``positive_keys`` holds ``query * num_corpus + row`` of every qrels positive, sorted (they are removed
    from the pools).
    """
    if not spec.sources:
        return NegativePools.empty(len(qids), row_dtype)
    key = spec.key()
    expect = (len(qids), np.dtype(row_dtype))
    pools = _open_complete(spec.data.root / POOLS_FOLDER / key, *expect)  # also on a read-only DATA
    if pools is not None:
        return pools
    folder = _writable_cache(spec.data.root) / key
    with output_lock(folder.with_name(f"{key}.build"), wait=True):  # DDP ranks: the first one builds
        pools = _open_complete(folder, *expect)
        if pools is not None:
            return pools
        started = time.perf_counter()
        with atomic_directory(folder, overwrite=True, markers=None) as staging:
            info = _write_pools(staging, spec, qids, positive_keys, num_corpus, np.dtype(row_dtype), progress)
            (staging / INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        _remove_superseded(folder, info)
    logger.info(
        "negative pools of %d queries (%d rows) built in %.1f s: %s",
        len(qids),
        info["num_rows"],
        time.perf_counter() - started,
        folder,
    )
    pools = _open_complete(folder, *expect)
    if pools is None:
        raise LedError(f"{folder}: the negative pools just written do not read back")
    return pools


def _remove_superseded(folder: Path, info: dict) -> None:
    """Delete the sibling pool folders that `folder` (just built) supersedes: same data folder, split, sources
    and options, another key (older content). Processes that map them keep their pages until they exit."""
    same = ("data", "split", "sources", "num_negs_per_system", "dedupe")
    for other in folder.parent.iterdir():
        if other == folder or not other.is_dir() or other.name.startswith("."):
            continue
        try:
            old = json.loads((other / INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not a complete pool folder (or another process's staging): left alone
        if all(old.get(field) == info[field] for field in same):
            shutil.rmtree(other, ignore_errors=True)
            logger.info("removed superseded negative pools %s", other)


def _open_complete(folder: Path, num_queries: int, row_dtype: np.dtype) -> NegativePools | None:
    """The pools in `folder` if they are complete and of this shape; None otherwise (then rebuilt)."""
    try:
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        pools = NegativePools.open(folder)
    except (OSError, ValueError):
        return None
    complete = (
        info.get("format") == FORMAT_VERSION
        and pools.offsets.shape == (num_queries + 1,)
        and pools.rows.dtype == row_dtype
        and len(pools.rows) == int(pools.offsets[-1])
    )
    return pools if complete else None


def _writable_cache(data_root: Path) -> Path:
    """DATA/.led-cache/pools, or a folder of the temp dir when DATA cannot be written."""
    folder = data_root / POOLS_FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(handle)
        os.unlink(probe)
        return folder
    except OSError as err:
        fallback = Path(tempfile.gettempdir()) / f"led-hf-pools-{os.getuid()}"
        logger.warning(
            "%s cannot be written (%s): negative pools are cached in %s",
            folder,
            err.strerror or err,
            fallback,
        )
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _write_pools(
    out: Path,
    spec: PoolSpec,
    qids: pa.Array,
    positive_keys: np.ndarray,
    num_corpus: int,
    row_dtype: np.dtype,
    progress: bool,
) -> dict:
    data = spec.data
    corpus_ids = data.corpus.data.column("pid")
    identity = data.pid_index.is_identity
    corpus_lookup = corpus_ids if identity else corpus_ids.combine_chunks()
    sources = []
    for source in spec.sources:
        table = data.negatives(source).data.table
        # Row of each training query in this source (-1 when the source does not list it).
        where = pc.index_in(qids, value_set=table.column("qid").combine_chunks())
        sources.append((source, table.column("pids"), where.fill_null(-1).to_numpy(zero_copy_only=False)))
    num_queries = len(qids)
    per_chunk = max(1, CANDIDATES_PER_CHUNK // max(1, len(sources) * spec.num_negs_per_system))
    offsets = np.lib.format.open_memmap(
        out / "offsets.npy", mode="w+", dtype=np.int64, shape=(num_queries + 1,)
    )
    offsets[0] = 0
    starts = range(0, num_queries, per_chunk)
    with _AppendedArray(out / "rows.npy", row_dtype) as rows_file:
        for start in tqdm(
            starts, desc="negative pools", unit="chunk", disable=not progress or len(starts) < 2
        ):
            stop = min(start + per_chunk, num_queries)
            lo, hi = np.searchsorted(positive_keys, [start * num_corpus, stop * num_corpus])
            chunk_offsets, chunk_rows = negative_pools_csr(
                *_candidates(spec, sources, qids, start, stop, corpus_lookup, identity),
                stop - start,
                positive_keys[lo:hi] - start * num_corpus,
                num_corpus,
                dedupe=spec.dedupe,
            )
            offsets[start + 1 : stop + 1] = chunk_offsets[1:] + rows_file.length
            rows_file.append(chunk_rows)
    num_rows = int(offsets[-1])
    offsets.flush()
    del offsets
    return {
        "format": FORMAT_VERSION,
        "data": str(data.root.resolve()),
        "num_queries": num_queries,
        "num_rows": num_rows,
        "split": spec.split,
        "sources": list(spec.sources),
        "num_negs_per_system": spec.num_negs_per_system,
        "dedupe": spec.dedupe,
    }


def _candidates(spec, sources, qids, start: int, stop: int, corpus_lookup, identity: bool):
    """(query index within the chunk, corpus row) of every truncated candidate of queries start:stop."""
    query_parts, row_parts = [], []
    for source, pid_lists, where in sources:
        local = np.flatnonzero(where[start:stop] >= 0)
        if len(local) == 0:
            continue
        lists = pc.list_slice(take_rows(pid_lists, where[start:stop][local]), 0, spec.num_negs_per_system)
        flat = pc.list_flatten(lists)
        parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        rows = resolve_ids(flat, corpus_lookup, identity)
        bad = np.flatnonzero(rows < 0)
        if len(bad):
            qid = qids[start + int(local[parents[bad[0]]])].as_py()
            raise LedError(
                f"{spec.data.root}/negatives/{source}: qid {qid!r} lists pid "
                f"{flat[int(bad[0])].as_py()!r}, which is not in the corpus"
            )
        query_parts.append(local[parents])
        row_parts.append(rows)
    if not query_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(query_parts), np.concatenate(row_parts)


class _AppendedArray:
    """A 1-D .npy file written chunk by chunk; its header, which holds the length, is written at the end."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.dtype, self.length = np.dtype(dtype), 0
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in __exit__
        self._handle.write(b"\0" * _HEADER_BYTES)

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self._handle.write(values.data)
        self.length += len(values)

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        try:
            if kind is None:
                header = io.BytesIO()
                descr = np.lib.format.dtype_to_descr(self.dtype)
                np.lib.format.write_array_header_1_0(
                    header, {"descr": descr, "fortran_order": False, "shape": (self.length,)}
                )
                if len(header.getvalue()) != _HEADER_BYTES:
                    raise LedError(
                        f"unexpected .npy header size {len(header.getvalue())} for {self._handle.name}"
                    )
                self._handle.seek(0)
                self._handle.write(header.getvalue())
        finally:
            self._handle.close()
