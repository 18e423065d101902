"""The two folder layouts `led prepare` reads: MS MARCO (tsv) and BEIR (jsonl + qrels tsv).

Every file of the input folder is accounted for (`InputFolder`): a data file of the layout is read, an
archive, a documentation file (README*, LICENSE*, *.md) or a hidden file is listed as not read (summary
and manifest), and anything else stops the conversion with the list of unknown files: a misnamed qrels
or negatives file would otherwise be skipped without a word and the output silently incomplete.
A data file may be gzipped (`name.gz`); when both `name` and `name.gz` are there, `name` is read.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from array import array
from collections import deque
from pathlib import Path

from led_hf.data.arrow_tables import CORPUS_FEATURES, QUERIES_FEATURES
from led_hf.data.readers import is_gzip, read_fields, read_jsonl
from led_hf.errors import LedError

SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ARCHIVES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".bz2", ".xz", ".7z", ".zst")
_DOCUMENTATION = re.compile(r"(?i)^(readme|license|licence|notice|citation|changelog)(\.[a-z0-9]+)?$|\.md$")

# layout -> (top-level file patterns, {subfolder: file patterns}, how to describe the expected files)
LAYOUTS = {
    "msmarco": (
        (
            "collection.tsv",
            "titles.tsv",
            "collection.tsv.title.tsv",
            "queries.*.tsv",
            "qrels.*.tsv",
            "train.negatives.tsv",
            "triples.*.tsv",
            "qidpidtriples.*.tsv",
            "top1000.*",
        ),
        {"runs": ("*.trec",)},
        "collection.tsv, titles.tsv, queries.<split>.tsv, qrels.<split>.tsv, train.negatives.tsv, "
        "triples.<name>.tsv, qidpidtriples.<name>.tsv, top1000.<split>, runs/<source>.trec",
    ),
    "beir": (
        ("corpus.jsonl", "queries.jsonl"),
        {"qrels": ("*.tsv",), "runs": ("*.trec",)},
        "corpus.jsonl, queries.jsonl, qrels/<split>.tsv, runs/<source>.trec",
    ),
}


class InputFolder:
    """The data files of `root` for `layout`, by their name without `.gz`; see the module doc."""

    def __init__(self, root: Path, layout: str):
        self.root = root
        top, subfolders, self.expected = LAYOUTS[layout]
        self.files: dict[str, Path] = {}  # "qrels/train.tsv" -> its path (maybe .gz)
        self.not_read: list[str] = []
        unknown: list[str] = []
        entries = [(entry, top, "") for entry in sorted(root.iterdir())]
        for entry, patterns, prefix in entries:
            name = prefix + entry.name
            if entry.name.startswith("."):
                self.not_read.append(name)
            elif entry.is_dir():
                if prefix or entry.name not in subfolders:
                    unknown.append(name + "/")
                else:
                    entries += [
                        (child, subfolders[entry.name], name + "/") for child in sorted(entry.iterdir())
                    ]
            elif _DOCUMENTATION.search(entry.name) or (
                entry.name.lower().endswith(_ARCHIVES) and not is_gzip(entry)
            ):
                self.not_read.append(name)
            else:
                logical = entry.name[:-3] if is_gzip(entry) else entry.name
                if not any(fnmatch.fnmatchcase(logical, pattern) for pattern in patterns):
                    unknown.append(name)
                elif prefix + logical in self.files:  # `name` and `name.gz`: the plain file wins
                    gz, plain = sorted((self.files[prefix + logical], entry), key=lambda p: not is_gzip(p))
                    self.files[prefix + logical] = plain
                    self.not_read.append(prefix + gz.name)
                else:
                    self.files[prefix + logical] = entry
        if unknown:
            shown = ", ".join(unknown[:8]) + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
            raise LedError(
                f"{root}: unknown file(s) for --format {layout}: {shown} (expected {self.expected}, each "
                "may be .gz; archives and README/LICENSE/*.md are listed as not read); rename or move them"
            )

    def get(self, name: str) -> Path | None:
        return self.files.get(name)

    def required(self, name: str) -> Path:
        if name not in self.files:
            raise LedError(f"{self.root / name} not found")
        return self.files[name]

    def glob(self, pattern: str) -> list[tuple[str, Path]]:
        """(logical name, path) of the data files matching `pattern`, sorted by name."""
        return [
            (name, path) for name, path in sorted(self.files.items()) if fnmatch.fnmatchcase(name, pattern)
        ]


def _split_name(logical: str, prefix: str, suffixes: tuple[str, ...], path: Path) -> str:
    name = logical.rsplit("/", 1)[-1][len(prefix) :]
    for suffix in suffixes:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not SOURCE_NAME.match(name):
        raise LedError(f"{path}: cannot use {name!r} as a split/source name")
    return name


class _TitleAligner:
    """Joins titles to passages in lockstep: titles follow the collection's pid order, some may be missing.

    A window of `LOOKAHEAD` titles realigns after collection lines that were skipped: titles before the
    one that matches the current pid are reported as unmatched. No dict of all titles is ever built.
    """

    LOOKAHEAD = 16

    def __init__(self, path: Path, conv):
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


def convert_folder(conv, layout: str) -> None:
    """Read `conv.source` in `layout` ("msmarco" or "beir") into `conv`'s tables."""
    folder = InputFolder(conv.source, layout)
    conv.not_read.extend(folder.not_read)
    (_convert_msmarco if layout == "msmarco" else _convert_beir)(conv, folder)


def _convert_msmarco(conv, folder: InputFolder) -> None:
    from led_hf.data.triples import write_triples

    collection = folder.required("collection.tsv")
    titles = [path for name in ("titles.tsv", "collection.tsv.title.tsv") if (path := folder.get(name))]
    if len(titles) > 1:
        raise LedError(f"{conv.source}: both titles.tsv and collection.tsv.title.tsv; keep one")
    id_triples = [path for _, path in folder.glob("qidpidtriples.*.tsv")]
    text_triples = [path for _, path in folder.glob("triples.*.tsv")]
    if text_triples:
        conv.passage_hashes = array("q")  # 8 bytes per passage, to map triples' texts back to pids

    corpus = conv.writer("corpus", CORPUS_FEATURES)
    titles_ahead = _TitleAligner(titles[0], conv) if titles else None
    for number, (pid, text) in read_fields(collection, conv.problems, 2, "pid, text", progress=conv.progress):
        title = titles_ahead.title_for(pid) if titles_ahead else ""
        conv.add_passage(corpus, collection, number, pid, title, text)
    if titles_ahead:
        titles_ahead.finish()
    conv.close(corpus)

    query_files, qrels_files = folder.glob("queries.*.tsv"), folder.glob("qrels.*.tsv")
    if not query_files or not qrels_files:
        raise LedError(f"{conv.source} needs queries.<split>.tsv and qrels.<split>.tsv files")
    queries = conv.writer("queries", QUERIES_FEATURES)
    for _, path in query_files:
        seen: set[str] = set()
        for number, (qid, text) in read_fields(path, conv.problems, 2, "qid, text", progress=conv.progress):
            conv.add_query(queries, path, number, qid, text, seen)
    conv.close(queries)

    for name, path in qrels_files:
        rows = (
            (n, f[0], f[2], f[3])
            for n, f in read_fields(
                path, conv.problems, 4, "qid, 0, pid, relevance", whitespace=True, progress=conv.progress
            )
        )
        conv.write_qrels(_split_name(name, "qrels.", (".tsv",), path), path, rows)

    if negatives := folder.get("train.negatives.tsv"):
        conv.write_negatives_list(negatives, "bm25")
    if id_triples or text_triples:
        write_triples(conv, id_triples, text_triples)
    _convert_runs(conv, folder)
    for name, path in folder.glob("top1000.*"):
        conv.write_candidates(path, _split_name(name, "top1000.", (".tsv",), path))


def _convert_beir(conv, folder: InputFolder) -> None:
    corpus_path, queries_path = folder.required("corpus.jsonl"), folder.required("queries.jsonl")
    qrels_files = folder.glob("qrels/*.tsv")
    if not qrels_files:
        raise LedError(f"{conv.source / 'qrels'} has no <split>.tsv file")
    corpus = conv.writer("corpus", CORPUS_FEATURES)
    for number, record in read_jsonl(corpus_path, conv.problems, ("_id", "text"), ("title",), conv.progress):
        conv.add_passage(corpus, corpus_path, number, record["_id"], record["title"], record["text"])
    conv.close(corpus)
    queries, seen = conv.writer("queries", QUERIES_FEATURES), set()
    for number, record in read_jsonl(queries_path, conv.problems, ("_id", "text"), (), conv.progress):
        conv.add_query(queries, queries_path, number, record["_id"], record["text"], seen)
    conv.close(queries)
    for name, path in qrels_files:
        conv.write_qrels(_split_name(name, "", (".tsv",), path), path, _beir_qrels_rows(path, conv))
    _convert_runs(conv, folder)


def _beir_qrels_rows(path: Path, conv):
    """(line, qid, pid, score) from `query-id<TAB>corpus-id<TAB>score`, skipping a header line.

    Line 1 is a header only if it looks like one: its score is not a number and its ids are not a known
    query and passage. A first row with a bad score is reported like any other row, never dropped.
    """
    for number, (qid, pid, score) in read_fields(
        path, conv.problems, 3, "query-id, corpus-id, score", ids=(0, 1), progress=conv.progress
    ):
        if number == 1 and _is_header(qid, pid, score, conv):
            continue
        yield number, qid, pid, score


def _is_header(qid: str, pid: str, score: str, conv) -> bool:
    try:
        float(score)
        return False
    except ValueError:
        return qid not in conv.query_texts and pid not in conv.pids


def _convert_runs(conv, folder: InputFolder) -> None:
    for name, path in folder.glob("runs/*.trec"):
        source = _split_name(name, "", (".trec",), path)
        if f"negatives/{source}" in conv.counts:
            raise LedError(f"{path}: negatives source {source!r} is already taken (by another input file)")
        conv.write_run(path, source)
