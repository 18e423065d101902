"""MS MARCO training triples -> `negatives/triples` (unscored, positives removed, one row per query).

    qidpidtriples.<name>.tsv   qid<TAB>positive pid<TAB>negative pid             (qidpidtriples.train.full.2.tsv)
    triples.<name>.tsv         query<TAB>positive passage<TAB>negative passage   (triples.train.small.tsv)

Both kinds go to the same source: a query's negatives are the distinct negative pids of all its lines,
in order of first appearance (id files first, then text files). Ids are checked like every other input.

Text triples carry no ids: each text is found again through a 64-bit hash of it (Python's `hash`, taken
while the corpus and queries were read), so no second copy of 8.8M passages is held: 16 bytes per passage
and the query table's qid -> hash map. A text found nowhere is a `FILE:LINE` error. A text shared by
several passages (MS MARCO has duplicate passages) maps to the judged positive among them for the
positive, to the first in corpus order for the negative; such lines are counted in the notes. Two
different texts share a hash with probability about (lines x passages) / 2**64 (2e-6 at MS MARCO scale).

Files need not be grouped by query (triples.train.small.tsv is shuffled): (qid, pid) pairs are
partitioned by crc32(qid) into scratch Arrow files of at most ~4M pairs, then grouped one partition at
a time, so memory stays bounded for the 400M lines of qidpidtriples.train.full.2.tsv.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Features, Value

from led_hf.data.arrow_tables import NEGATIVES_FEATURES, TableWriter
from led_hf.data.readers import is_gzip, read_fields
from led_hf.data.row_reader import take_rows

SOURCE = "triples"
PAIRS_PER_PARTITION = 4_000_000
_TEXT_BATCH = 8192  # text triples resolved per vectorised lookup
_ORDERED_PAIRS = Features({"qid": Value("string"), "pid": Value("string"), "order": Value("int64")})


class HashIndex:
    """Row numbers by 64-bit text hash: the hashes sorted once, looked up by binary search."""

    def __init__(self, hashes):
        hashes = np.asarray(hashes, dtype=np.int64)
        self.order = np.argsort(hashes, kind="stable")  # equal hashes keep row order: first row first
        self.sorted = hashes[self.order]

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first row with each hash or -1, how many rows have it)."""
        left = np.searchsorted(self.sorted, hashes, side="left")
        count = np.searchsorted(self.sorted, hashes, side="right") - left
        rows = np.where(count > 0, self.order[np.minimum(left, max(len(self.order) - 1, 0))], -1)
        return rows, count

    def all_rows(self, value: int) -> list[int]:
        left = int(np.searchsorted(self.sorted, value, side="left"))
        right = int(np.searchsorted(self.sorted, value, side="right"))
        return sorted(self.order[left:right].tolist())


class PairGroups:
    """(qid, pid) pairs in any order -> each qid once with its distinct pids in first-seen order.

    Queries come out partition by partition (crc32 of the qid), in order of first appearance within one.
    """

    def __init__(self, staging: Path, partitions: int, batch_size: int):
        self.writers = [
            TableWriter(staging, f"triples_part{k}", _ORDERED_PAIRS, batch_size, scratch=True)
            for k in range(partitions)
        ]
        self.added = 0

    def add(self, qid: str, pid: str) -> None:
        writers = self.writers
        writers[zlib.crc32(qid.encode()) % len(writers) if len(writers) > 1 else 0].add(qid, pid, self.added)
        self.added += 1

    def groups(self) -> Iterator[tuple[str, list[str]]]:
        for writer in self.writers:
            path = writer.finish()
            with pa.memory_map(str(path)) as source:
                table = pa.ipc.open_stream(source).read_all()
            # one thread: pids in input order within a group; groups sorted by their first pair
            grouped = pa.TableGroupBy(table, "qid", use_threads=False).aggregate(
                [("pid", "list"), ("order", "min")]
            )
            grouped = grouped.sort_by("order_min")
            del table
            for batch in grouped.to_batches(max_chunksize=4096):
                columns = batch.to_pydict()
                for qid, pids in zip(columns["qid"], columns["pid_list"]):
                    yield qid, list(dict.fromkeys(pids))
            del grouped
            path.unlink()


def _estimated_pairs(id_files: list[Path], text_files: list[Path]) -> int:
    """An over-estimate of the pairs, from file sizes (bytes per line: ~22 for ids, ~700 for texts)."""

    def size(path: Path) -> int:
        return os.path.getsize(path) * (5 if is_gzip(path) else 1)

    return sum(size(p) // 16 for p in id_files) + sum(size(p) // 300 for p in text_files)


def write_triples(conv, id_files: list[Path], text_files: list[Path]) -> None:
    """Read the triples files into `negatives/triples` (see the module doc)."""
    if f"negatives/{SOURCE}" in conv.counts:
        raise RuntimeError("negatives/triples written twice")
    partitions = max(1, math.ceil(_estimated_pairs(id_files, text_files) / PAIRS_PER_PARTITION))
    pairs = PairGroups(conv.staging, partitions, conv.batch_size)
    for path in id_files:
        for number, (qid, positive, negative) in read_fields(
            path, conv.problems, 3, "qid, positive pid, negative pid", ids=(0, 1, 2), progress=conv.progress
        ):
            if conv.check_ids(path, number, qid, (positive, negative)):
                _add(conv, pairs, qid, positive, negative)
    if text_files:
        resolver = _TextResolver(conv)
        for path in text_files:
            batch: list[tuple[int, list[str]]] = []
            for line in read_fields(
                path,
                conv.problems,
                3,
                "query, positive passage, negative passage",
                ids=(),
                progress=conv.progress,
            ):
                batch.append(line)
                if len(batch) == _TEXT_BATCH:
                    resolver.resolve(path, batch, pairs)
                    batch = []
            resolver.resolve(path, batch, pairs)
        conv.passage_hashes = None
    writer = conv.writer(f"negatives/{SOURCE}", NEGATIVES_FEATURES)
    for qid, pids in pairs.groups():
        conv.add_negatives(writer, SOURCE, qid, pids)
    conv.close(writer)


def _add(conv, pairs: PairGroups, qid: str, positive: str, negative: str) -> None:
    if f"{qid}\t{positive}" not in conv.positives:
        conv.note(f"negatives/{SOURCE}: lines whose positive is not judged relevant in the qrels", 1)
    pairs.add(qid, negative)


class _TextResolver:
    """Maps batches of text triples to (qid, positive pid, negative pid) through `HashIndex`es."""

    def __init__(self, conv):
        self.conv = conv
        self.passages = HashIndex(conv.passage_hashes)
        self.qids = list(conv.query_texts)  # row order of the queries table
        self.queries = HashIndex(list(conv.query_texts.values()))
        corpus = conv.staging / "corpus" / "data-00000-of-00001.arrow"
        self._corpus_file = pa.memory_map(str(corpus))
        self.corpus_pids = pa.ipc.open_stream(self._corpus_file).read_all().column("pid")

    def resolve(self, path: Path, batch: list[tuple[int, list[str]]], pairs: PairGroups) -> None:
        if not batch:
            return
        conv = self.conv
        hashes = np.array([[hash(text) for text in fields] for _, fields in batch], dtype=np.int64)
        query_rows, query_counts = self.queries.lookup(hashes[:, 0])
        passage_rows, passage_counts = self.passages.lookup(hashes[:, 1:].ravel())
        passage_rows, passage_counts = passage_rows.reshape(-1, 2), passage_counts.reshape(-1, 2)
        found = passage_rows[passage_rows >= 0]
        pid_of = dict(zip(found.tolist(), take_rows(self.corpus_pids, found).to_pylist()))
        for i, (number, fields) in enumerate(batch):
            missing = next(
                (k for k in range(3) if (query_counts[i] if k == 0 else passage_counts[i, k - 1]) == 0), None
            )
            if missing is not None:
                what = ("query", "positive passage", "negative passage")[missing]
                table = "queries files" if missing == 0 else "collection"
                conv.problems.report(
                    path,
                    number,
                    f"unknown {what.split()[-1]} text",
                    f"{what} {_short(fields[missing])} is not in the {table}",
                )
                continue
            qid, positive = self.qids[query_rows[i]], pid_of[int(passage_rows[i, 0])]
            if query_counts[i] > 1 or passage_counts[i, 0] > 1:
                qid, positive = self._judged(hashes[i], qid, positive)
            if passage_counts[i, 1] > 1:
                conv.note(f"negatives/{SOURCE}: negative texts shared by several pids (first pid taken)", 1)
            _add(conv, pairs, qid, positive, pid_of[int(passage_rows[i, 1])])

    def _judged(self, hashes: np.ndarray, qid: str, positive: str) -> tuple[str, str]:
        """For a query or positive text shared by several ids: the (qid, pid) pair judged relevant, if any."""
        self.conv.note(f"negatives/{SOURCE}: query or positive texts shared by several ids", 1)
        qids = [self.qids[row] for row in self.queries.all_rows(int(hashes[0]))]
        rows = self.passages.all_rows(int(hashes[1]))
        pids = take_rows(self.corpus_pids, np.asarray(rows)).to_pylist()
        judged = next(((q, p) for q in qids for p in pids if f"{q}\t{p}" in self.conv.positives), None)
        return judged or (qid, positive)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
