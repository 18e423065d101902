"""`led prepare`: convert an MS MARCO tsv or BEIR jsonl folder into prepared Arrow tables.

Output (each a `datasets.load_from_disk` folder, ids as strings):

    DATA/corpus                {pid, title, text}
    DATA/queries               {qid, text}            all query files merged
    DATA/qrels/<split>         {qid, pid, score: int32}
    DATA/negatives/<source>    {qid, pids: list[str], scores: list[float32] (empty when unscored)}
    DATA/candidates/<split>    {qid, pids: list[str]}  re-ranking candidates (MS MARCO top1000.<split>)
    DATA/manifest.json         format, input, counts, skipped lines by reason, version, time

Everything streams: rows go to Arrow in batches of `batch_size`; only id sets are held (integer-like ids
in a bitmap, see `IdSet`), plus one (qid, pid) key per positive judgment to drop positives from negatives.
The whole output is built in a temporary folder beside DATA and renamed when complete.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from datasets import Features

from led_hf.atomic import atomic_directory
from led_hf.data.arrow_tables import (
    CANDIDATES_FEATURES,
    CORPUS_FEATURES,
    NEGATIVES_FEATURES,
    PAIR_FEATURES,
    QRELS_FEATURES,
    QUERIES_FEATURES,
    IdSet,
    TableWriter,
)
from led_hf.data.readers import Problems, read_fields, read_jsonl, read_trec_run
from led_hf.errors import LedError
from led_hf.version import __version__

FORMATS = ("msmarco", "beir")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class PrepareSummary:
    """What `prepare` wrote: rows per table, skipped lines per reason, notes (positives removed, ...)."""

    output: Path
    format: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    first_skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def render(self) -> str:
        width = max([len(name) for name in self.counts] + [len(r) for r in self.skipped] + [24])
        lines = [
            f"led prepare: {self.format} -> {self.output} ({self.seconds:.1f} s)",
            "",
            f"  {'table':<{width}}  {'rows':>11}",
        ]
        lines += [f"  {name:<{width}}  {rows:>11,}" for name, rows in self.counts.items()]
        lines += ["", f"  skipped lines: {sum(self.skipped.values()):,}"]
        for reason, count in self.skipped.items():
            lines.append(f"    {reason:<{width - 2}}  {count:>11,}   first: {self.first_skipped[reason]}")
        lines += [f"  {note}: {count:,}" for note, count in self.notes.items()]
        return "\n".join(lines)


class _Converter:
    """State shared by one conversion: id sets, positive judgments, problems, writers."""

    def __init__(self, source: Path, staging: Path, problems: Problems, batch_size: int, progress: bool):
        self.source, self.staging, self.problems = source, staging, problems
        self.batch_size, self.progress = batch_size, progress
        self.pids = IdSet()
        self.query_texts: dict[str, int] = {}  # qid -> hash(text): the same qid in two files must agree
        self.positives: set[str] = set()  # "qid\tpid" for every judgment with score > 0
        self.counts: dict[str, int] = {}
        self.notes: dict[str, int] = {}

    def writer(self, name: str, features: Features) -> TableWriter:
        return TableWriter(self.staging, name, features, self.batch_size)

    def close(self, writer: TableWriter) -> None:
        self.counts[writer.name] = writer.close()

    def note(self, name: str, count: int) -> None:
        if count:
            self.notes[name] = self.notes.get(name, 0) + count

    # corpus and queries -------------------------------------------------------------------------
    def add_passage(
        self, writer: TableWriter, path: Path, number: int, pid: str, title: str, text: str
    ) -> bool:
        if not self.pids.add(pid):
            self.problems.report(path, number, "duplicate pid", f"pid {pid!r} appeared earlier in the corpus")
            return False
        writer.add(pid, title, text)
        return True

    def add_query(
        self, writer: TableWriter, path: Path, number: int, qid: str, text: str, seen_in_file: set[str]
    ) -> None:
        if qid in seen_in_file:
            self.problems.report(path, number, "duplicate qid", f"qid {qid!r} appeared earlier in this file")
            return
        seen_in_file.add(qid)
        known = self.query_texts.get(qid)
        if known is not None:
            if known != hash(text):
                self.problems.report(
                    path, number, "duplicate qid", f"qid {qid!r} has a different text in another queries file"
                )
            return  # same qid, same text in another split's file: written once
        self.query_texts[qid] = hash(text)
        writer.add(qid, text)

    # qrels, negatives, candidates ---------------------------------------------------------------
    def check_ids(self, path: Path, number: int, qid: str, pids) -> bool:
        if qid not in self.query_texts:
            self.problems.report(path, number, "unknown qid", f"qid {qid!r} is not in the queries")
            return False
        for pid in pids:
            if pid not in self.pids:
                self.problems.report(path, number, "unknown pid", f"pid {pid!r} is not in the corpus")
                return False
        return True

    def write_qrels(self, split: str, path: Path, rows) -> None:
        """rows: (line_number, qid, pid, score text)."""
        writer = self.writer(f"qrels/{split}", QRELS_FEATURES)
        judged: set[str] = set()
        for number, qid, pid, score in rows:
            try:
                grade = int(score)
            except ValueError:
                grade = None
            if grade is None or not -(2**31) <= grade < 2**31:
                self.problems.report(path, number, "bad number", f"score {score!r} is not an integer")
                continue
            if not self.check_ids(path, number, qid, (pid,)):
                continue
            key = f"{qid}\t{pid}"
            if key in judged:
                self.problems.report(path, number, "duplicate judgment", f"qid {qid!r} pid {pid!r} again")
                continue
            judged.add(key)
            if grade > 0:
                self.positives.add(key)
            writer.add(qid, pid, grade)
        self.close(writer)

    def _without_positives(
        self, source: str, qid: str, pids: list[str], scores: list[float]
    ) -> tuple[list, list]:
        keep = [i for i, pid in enumerate(pids) if f"{qid}\t{pid}" not in self.positives]
        self.note(f"negatives/{source}: positives removed", len(pids) - len(keep))
        return [pids[i] for i in keep], [scores[i] for i in keep] if scores else []

    def write_negatives_list(self, path: Path, source: str) -> None:
        """`qid<TAB>pid,pid,...` (Tevatron's train.negatives.tsv); unscored, so `scores` is empty."""
        writer = self.writer(f"negatives/{source}", NEGATIVES_FEATURES)
        seen: set[str] = set()
        for number, (qid, joined) in read_fields(path, self.problems, 2, "qid, pids", progress=self.progress):
            pids = list(
                dict.fromkeys(p.strip() for p in joined.split(",") if p.strip())
            )  # dedupe, keep order
            if qid in seen:
                self.problems.report(
                    path, number, "duplicate qid", f"qid {qid!r} appeared earlier in this file"
                )
                continue
            if not self.check_ids(path, number, qid, pids):
                continue
            seen.add(qid)
            pids, _ = self._without_positives(source, qid, pids, [])
            if pids:
                writer.add(qid, pids, [])
            else:
                self.note(f"negatives/{source}: queries left without negatives", 1)
        self.close(writer)

    def write_run(self, path: Path, source: str) -> None:
        """A TREC run, one query's lines together: pids stored in rank order with scores, positives removed."""
        writer = self.writer(f"negatives/{source}", NEGATIVES_FEATURES)
        finished: set[str] = set()
        current, rows, in_group = None, [], set()

        def flush():
            if current is None:
                return
            finished.add(current)
            rows.sort(key=lambda row: row[0])  # by rank; stable for ties
            pids, scores = self._without_positives(
                source, current, [r[1] for r in rows], [r[2] for r in rows]
            )
            if pids:
                writer.add(current, pids, scores)
            else:
                self.note(f"negatives/{source}: queries left without negatives", 1)

        for number, qid, pid, rank, score in read_trec_run(path, self.problems, progress=self.progress):
            if qid != current:
                if qid in finished:
                    self.problems.report(
                        path,
                        number,
                        "run not grouped by query",
                        f"qid {qid!r} appears again after other queries (sort the run by qid)",
                    )
                    continue
                if not self.check_ids(path, number, qid, ()):
                    continue
                flush()
                current, rows, in_group = qid, [], set()
            if not self.check_ids(path, number, qid, (pid,)):
                continue
            if pid in in_group:
                self.problems.report(path, number, "duplicate pid", f"pid {pid!r} twice for qid {qid!r}")
                continue
            in_group.add(pid)
            rows.append((rank, pid, score))
        flush()
        self.close(writer)

    def write_candidates(self, path: Path, split: str) -> None:
        """`qid<TAB>pid<TAB>query<TAB>passage` lines (any order) -> one row per qid with its pids."""
        pairs = TableWriter(
            self.staging, f"candidate_pairs_{split}", PAIR_FEATURES, self.batch_size, scratch=True
        )
        for number, (qid, pid) in read_fields(
            path, self.problems, 2, "qid, pid, query, passage", at_least=True, progress=self.progress
        ):
            if self.check_ids(path, number, qid, (pid,)):
                pairs.add(qid, pid)
        build = pairs.finish()
        # group through Arrow: ~12 bytes per pair in memory, far below Python lists of str
        with pa.memory_map(str(build)) as source:
            table = pa.ipc.open_stream(source).read_all()
        grouped = pa.TableGroupBy(table, "qid", use_threads=False).aggregate([("pid", "list")])
        writer = self.writer(f"candidates/{split}", CANDIDATES_FEATURES)
        for qid, pids in zip(grouped["qid"].to_pylist(), grouped["pid_list"].to_pylist()):
            unique = list(dict.fromkeys(pids))
            self.note(f"candidates/{split}: repeated pids dropped", len(pids) - len(unique))
            writer.add(qid, unique)
        del table, grouped
        build.unlink()
        self.close(writer)


def _required(path: Path) -> Path:
    if not path.is_file():
        raise LedError(f"{path} not found")
    return path


def _split_name(path: Path, prefix: str, suffixes: tuple[str, ...]) -> str:
    name = path.name[len(prefix) :]
    for suffix in suffixes:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not _SOURCE_NAME.match(name):
        raise LedError(f"{path}: cannot use {name!r} as a split/source name")
    return name


class _TitleAligner:
    """Joins titles to passages in lockstep: titles follow the collection's pid order, some may be missing.

    A window of `LOOKAHEAD` titles realigns after collection lines that were skipped: titles before the
    one that matches the current pid are reported as unmatched. No dict of all titles is ever built.
    """

    LOOKAHEAD = 16

    def __init__(self, path: Path, conv: _Converter):
        self.path, self.conv = path, conv
        self.rows = iter(read_fields(path, conv.problems, 2, "pid, title", progress=False))
        self.window: deque = deque()

    def _unmatched(self, number: int, pid: str) -> None:
        self.conv.problems.report(
            self.path,
            number,
            "unmatched title",
            f"no passage {pid!r} at this point of the collection (unknown pid, "
            "duplicate, or titles not in the collection's pid order)",
        )

    def title_for(self, pid: str) -> str:
        while len(self.window) < self.LOOKAHEAD and (row := next(self.rows, None)) is not None:
            self.window.append(row)
        for position, (_, (title_pid, _)) in enumerate(self.window):
            if title_pid == pid:
                for _ in range(position):
                    self._unmatched(*self._pop())
                return self.window.popleft()[1][1]
        return ""

    def _pop(self) -> tuple[int, str]:
        number, (pid, _) = self.window.popleft()
        return number, pid

    def finish(self) -> None:
        for number, (pid, _) in itertools.chain(self.window, self.rows):
            self._unmatched(number, pid)


def _convert_msmarco(conv: _Converter) -> None:
    src = conv.source
    collection = _required(src / "collection.tsv")
    titles = next((p for p in (src / "titles.tsv", src / "collection.tsv.title.tsv") if p.is_file()), None)
    corpus = conv.writer("corpus", CORPUS_FEATURES)
    titles_ahead = _TitleAligner(titles, conv) if titles else None
    for number, (pid, text) in read_fields(collection, conv.problems, 2, "pid, text", progress=conv.progress):
        title = titles_ahead.title_for(pid) if titles_ahead else ""
        conv.add_passage(corpus, collection, number, pid, title, text)
    if titles_ahead:
        titles_ahead.finish()
    conv.close(corpus)

    query_files = sorted(src.glob("queries.*.tsv"))
    qrels_files = sorted(src.glob("qrels.*.tsv"))
    if not query_files or not qrels_files:
        raise LedError(f"{src} needs queries.<split>.tsv and qrels.<split>.tsv files")
    queries = conv.writer("queries", QUERIES_FEATURES)
    for path in query_files:
        seen: set[str] = set()
        for number, (qid, text) in read_fields(path, conv.problems, 2, "qid, text", progress=conv.progress):
            conv.add_query(queries, path, number, qid, text, seen)
    conv.close(queries)

    for path in qrels_files:
        rows = (
            (n, f[0], f[2], f[3])
            for n, f in read_fields(
                path, conv.problems, 4, "qid, 0, pid, relevance", whitespace=True, progress=conv.progress
            )
        )
        conv.write_qrels(_split_name(path, "qrels.", (".tsv",)), path, rows)

    if (src / "train.negatives.tsv").is_file():
        conv.write_negatives_list(src / "train.negatives.tsv", "bm25")
    _convert_runs(conv)
    for path in sorted(src.glob("top1000.*")):
        if path.suffix in (".gz", ".tar", ".tgz", ".zip", ".bz2", ".xz"):  # the download archive beside it
            continue
        conv.write_candidates(path, _split_name(path, "top1000.", (".tsv",)))


def _convert_beir(conv: _Converter) -> None:
    src = conv.source
    corpus_path, queries_path = _required(src / "corpus.jsonl"), _required(src / "queries.jsonl")
    qrels_files = sorted((src / "qrels").glob("*.tsv"))
    if not qrels_files:
        raise LedError(f"{src / 'qrels'} has no <split>.tsv file")
    corpus = conv.writer("corpus", CORPUS_FEATURES)
    for number, record in read_jsonl(corpus_path, conv.problems, ("_id", "text"), ("title",), conv.progress):
        conv.add_passage(corpus, corpus_path, number, record["_id"], record["title"], record["text"])
    conv.close(corpus)
    queries, seen = conv.writer("queries", QUERIES_FEATURES), set()
    for number, record in read_jsonl(queries_path, conv.problems, ("_id", "text"), (), conv.progress):
        conv.add_query(queries, queries_path, number, record["_id"], record["text"], seen)
    conv.close(queries)
    for path in qrels_files:
        conv.write_qrels(_split_name(path, "", (".tsv",)), path, _beir_qrels_rows(path, conv))
    _convert_runs(conv)


def _beir_qrels_rows(path: Path, conv: _Converter):
    """(line, qid, pid, score) from `query-id<TAB>corpus-id<TAB>score`, skipping the header line."""
    first = True
    for number, (qid, pid, score) in read_fields(
        path, conv.problems, 3, "query-id, corpus-id, score", progress=conv.progress
    ):
        if first and not score.lstrip("-").isdigit():  # the header ("query-id corpus-id score")
            first = False
            continue
        first = False
        yield number, qid, pid, score


def _convert_runs(conv: _Converter) -> None:
    for path in sorted((conv.source / "runs").glob("*.trec")):
        source = _split_name(path, "", (".trec",))
        if f"negatives/{source}" in conv.counts:
            raise LedError(f"{path}: negatives source {source!r} is already taken (by train.negatives.tsv)")
        conv.write_run(path, source)


def prepare(
    format: str,
    source,
    output,
    *,
    overwrite: bool = False,
    skip_bad_lines: bool = False,
    batch_size: int = 10_000,
    progress: bool = True,
) -> PrepareSummary:
    """Convert `source` (an MS MARCO or BEIR folder) into prepared tables at `output`; see the module doc."""
    if format not in FORMATS:
        raise LedError(f"unknown format {format!r} (choose from {', '.join(FORMATS)})")
    if batch_size < 1:
        raise LedError("--batch-size must be at least 1")
    source, output = Path(source), Path(output)
    if not source.is_dir():
        raise LedError(f"input folder {source} not found")
    if output.resolve() == source.resolve() or source.resolve() in output.resolve().parents:
        raise LedError(f"output {output} must not be inside the input folder {source}")
    started = time.perf_counter()
    problems = Problems(skip_bad_lines)
    with atomic_directory(output, overwrite=overwrite) as staging:
        conv = _Converter(source, staging, problems, batch_size, progress)
        (_convert_msmarco if format == "msmarco" else _convert_beir)(conv)
        shutil.rmtree(staging / ".build", ignore_errors=True)
        summary = PrepareSummary(
            output,
            format,
            conv.counts,
            dict(problems.counts),
            dict(problems.first),
            conv.notes,
            time.perf_counter() - started,
        )
        manifest = {
            "format": format,
            "input": str(source.resolve()),
            "counts": summary.counts,
            "skipped_lines": summary.skipped,
            "first_skipped": summary.first_skipped,
            "notes": summary.notes,
            "led_hf_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 (3.10)
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary
