"""`led prepare`: convert an MS MARCO tsv folder, a BEIR jsonl folder or a Hugging Face dataset into
prepared Arrow tables.

Output (each a `datasets.load_from_disk` folder, ids as strings):

    DATA/corpus                {pid, title, text}
    DATA/queries               {qid, text}            all query files merged
    DATA/qrels/<split>         {qid, pid, score: int32}
    DATA/negatives/<source>    {qid, pids: list[str], scores: list[float32] (empty when unscored)}
    DATA/candidates/<split>    {qid, pids: list[str]}  re-ranking candidates (MS MARCO top1000.<split>)
    DATA/manifest.json         format, input, counts, skipped lines by reason, files not read, version, time

Everything streams: rows go to Arrow in batches of `batch_size`; only id sets are held (integer-like ids
in a bitmap, see `IdSet`), plus one (qid, pid) key per positive judgment to drop positives from negatives.
The whole output is built in a temporary folder beside DATA and renamed when complete. The input layouts
are read by `layouts` (MS MARCO, BEIR folders), `triples` (MS MARCO training triples) and `hf_source`
(`datasets.load_dataset`); this module holds what they share: validation and the table writers.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from datasets import Features

from led_hf.atomic import atomic_directory
from led_hf.data.arrow_tables import (
    CANDIDATES_FEATURES,
    NEGATIVES_FEATURES,
    PAIR_FEATURES,
    QRELS_FEATURES,
    IdSet,
    TableWriter,
)
from led_hf.data.readers import Problems, id_problem, read_fields, read_trec_run
from led_hf.errors import InputError, LedError
from led_hf.version import __version__

FORMATS = ("msmarco", "beir", "hf")


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
    not_read: list[str] = field(default_factory=list)

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
        if self.not_read:
            lines.append(f"  not read (archives, documentation, hidden files): {', '.join(self.not_read)}")
        return "\n".join(lines)


class Converter:
    """State shared by one conversion: id sets, positive judgments, problems, writers.

    `passage_hashes`, when a layout sets it to a list before the corpus is read, collects `hash(text)` of
    every passage written, in row order (text triples are mapped back to pids through it).
    """

    def __init__(self, source, staging: Path, problems: Problems, batch_size: int, progress: bool):
        self.source, self.staging, self.problems = source, staging, problems
        self.batch_size, self.progress = batch_size, progress
        self.pids = IdSet()
        self.query_texts: dict[str, int] = {}  # qid -> hash(text): the same qid in two files must agree
        self.positives: set[str] = set()  # "qid\tpid" for every judgment with score > 0
        self.counts: dict[str, int] = {}
        self.notes: dict[str, int] = {}
        self.not_read: list[str] = []
        self.passage_hashes: list[int] | None = None

    def writer(self, name: str, features: Features) -> TableWriter:
        return TableWriter(self.staging, name, features, self.batch_size)

    def close(self, writer: TableWriter) -> None:
        self.counts[writer.name] = writer.close()

    def note(self, name: str, count: int) -> None:
        if count:
            self.notes[name] = self.notes.get(name, 0) + count

    def check_id(self, path, number: int, what: str, value: str) -> bool:
        """Report an id that is empty or holds whitespace (where the reader could not check it)."""
        why = id_problem(value)
        if why is not None:
            self.problems.report(path, number, "bad id", f"{what} {value!r} {why}")
        return why is None

    # corpus and queries -------------------------------------------------------------------------
    def add_passage(self, writer: TableWriter, path, number: int, pid: str, title: str, text: str) -> bool:
        if not self.pids.add(pid):
            self.problems.report(path, number, "duplicate pid", f"pid {pid!r} appeared earlier in the corpus")
            return False
        writer.add(pid, title, text)
        if self.passage_hashes is not None:
            self.passage_hashes.append(hash(text))
        return True

    def add_query(
        self, writer: TableWriter, path, number: int, qid: str, text: str, seen_in_file: set[str]
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
    def check_ids(self, path, number: int, qid: str, pids) -> bool:
        if qid not in self.query_texts:
            self.problems.report(path, number, "unknown qid", f"qid {qid!r} is not in the queries")
            return False
        for pid in pids:
            if pid not in self.pids:
                self.problems.report(path, number, "unknown pid", f"pid {pid!r} is not in the corpus")
                return False
        return True

    def write_qrels(self, split: str, path, rows) -> None:
        """rows: (line_number, qid, pid, score text or int). A split left without any judgment is an error:
        evaluating on it would report zeros (or nothing) instead of failing."""
        writer = self.writer(f"qrels/{split}", QRELS_FEATURES)
        judged: set[str] = set()
        for number, qid, pid, score in rows:
            try:
                grade = int(score)
            except (TypeError, ValueError):
                grade = None
            if grade is None or isinstance(score, (bool, float)) or not -(2**31) <= grade < 2**31:
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
        if writer.rows == 0:
            writer.finish()
            raise InputError(path, None, f"qrels split {split!r} has no judgment")
        self.close(writer)

    def add_negatives(self, writer: TableWriter, source: str, qid: str, pids: list[str], scores=()) -> None:
        """One query's negatives: repeated pids and the query's positives dropped, order kept."""
        if not scores:
            pids = list(dict.fromkeys(pids))
        keep = [i for i, pid in enumerate(pids) if f"{qid}\t{pid}" not in self.positives]
        self.note(f"negatives/{source}: positives removed", len(pids) - len(keep))
        if keep:
            writer.add(qid, [pids[i] for i in keep], [scores[i] for i in keep] if scores else [])
        else:
            self.note(f"negatives/{source}: queries left without negatives", 1)

    def write_negatives_list(self, path: Path, source: str) -> None:
        """`qid<TAB>pid,pid,...` (Tevatron's train.negatives.tsv); unscored, so `scores` is empty."""
        writer = self.writer(f"negatives/{source}", NEGATIVES_FEATURES)
        seen: set[str] = set()
        for number, (qid, joined) in read_fields(path, self.problems, 2, "qid, pids", progress=self.progress):
            pids = [p.strip() for p in joined.split(",") if p.strip()]
            if not all(self.check_id(path, number, "pid", pid) for pid in pids):
                continue
            if qid in seen:
                self.problems.report(
                    path, number, "duplicate qid", f"qid {qid!r} appeared earlier in this file"
                )
                continue
            if not self.check_ids(path, number, qid, pids):
                continue
            seen.add(qid)
            self.add_negatives(writer, source, qid, pids)
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
            self.add_negatives(writer, source, current, [r[1] for r in rows], [r[2] for r in rows])

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
            path, self.problems, 2, "qid, pid", at_least=True, ids=(0, 1), progress=self.progress
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


def prepare(
    format: str,
    source,
    output,
    *,
    overwrite: bool = False,
    skip_bad_lines: bool = False,
    batch_size: int = 10_000,
    progress: bool = True,
    hf_options: dict | None = None,
) -> PrepareSummary:
    """Convert `source` into prepared tables at `output`; see the module doc.

    `format` "msmarco" or "beir": `source` is a local folder in that layout (`layouts`). "hf": `source` is a
    Hugging Face dataset name or a local folder that `datasets.load_dataset` reads, and `hf_options` holds
    `config`, `qrels`, `corpus`, `negatives_name` (`hf_source.convert_hf`).
    """
    if format not in FORMATS:
        raise LedError(f"unknown format {format!r} (choose from {', '.join(FORMATS)})")
    if batch_size < 1:
        raise LedError("--batch-size must be at least 1")
    output = Path(output)
    if format == "hf":
        from led_hf.data.hf_source import convert_hf, describe_source

        source_text = describe_source(str(source))
        local = Path(source) if Path(source).is_dir() else None
    else:
        from led_hf.data.layouts import convert_folder

        local = Path(source)
        if not local.is_dir():
            raise LedError(f"input folder {local} not found")
        source_text = str(local.resolve())
    if local is not None and (
        output.resolve() == local.resolve() or local.resolve() in output.resolve().parents
    ):
        raise LedError(f"output {output} must not be inside the input folder {local}")
    started = time.perf_counter()
    problems = Problems(skip_bad_lines)
    with atomic_directory(output, overwrite=overwrite) as staging:
        conv = Converter(local if format != "hf" else str(source), staging, problems, batch_size, progress)
        if format == "hf":
            convert_hf(conv, str(source), **(hf_options or {}))
        else:
            convert_folder(conv, format)
        shutil.rmtree(staging / ".build", ignore_errors=True)
        summary = PrepareSummary(
            output,
            format,
            conv.counts,
            dict(problems.counts),
            dict(problems.first),
            conv.notes,
            time.perf_counter() - started,
            conv.not_read,
        )
        manifest = {
            "format": format,
            "input": source_text,
            "counts": summary.counts,
            "skipped_lines": summary.skipped,
            "first_skipped": summary.first_skipped,
            "notes": summary.notes,
            "not_read": summary.not_read,
            "led_hf_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 (3.10)
        }
        if format == "hf":
            manifest["hf_options"] = {k: v for k, v in (hf_options or {}).items() if v is not None}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return summary
