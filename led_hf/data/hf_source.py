"""`led prepare --format hf`: a Hugging Face dataset (Hub name or local folder) read through
`datasets.load_dataset(..., streaming=True)`: records are read one at a time, never cached whole.

Two layouts, told apart by the dataset's configurations:

BEIR-style (configs `corpus` and `queries`, as BeIR/scifact): corpus rows {_id, title, text}, queries rows
{_id, text}; the qrels {query-id, corpus-id, score} come from `--qrels` (default: a `qrels` or `default`
config of the same dataset if it has one, else the dataset NAME-qrels, as BeIR/scifact-qrels), one
qrels/<split> per split.

Tevatron-style (any other dataset; `--config` picks a configuration): rows {query_id, query,
positive_passages, negative_passages}, each passage {docid, title, text}, as Tevatron/msmarco-passage.
Per split: queries, qrels/<split> (every positive, score 1); the negatives of all splits go to
negatives/<negatives_name>. The corpus is `--corpus` (rows {docid or _id, title, text}, as
Tevatron/msmarco-passage-corpus) or, without it, the distinct passages met in the rows (first text kept;
the same docid with another text is an error).

Bad records are reported as `NAME[config/split]:ROW: reason` (rows numbered from 1) like file:line.
Datasets that still need a loading script (Tevatron/msmarco-passage is one) cannot be read by
`datasets` >= 4: download their data files (`hf download Tevatron/msmarco-passage --repo-type dataset
--include "*.jsonl.gz" --local-dir DIR`) and pass the folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from led_hf.data.arrow_tables import CORPUS_FEATURES, NEGATIVES_FEATURES, QRELS_FEATURES, QUERIES_FEATURES
from led_hf.data.layouts import SOURCE_NAME
from led_hf.data.readers import id_problem
from led_hf.errors import LedError

TEVATRON_COLUMNS = ("query_id", "query", "positive_passages")
_QRELS_COLUMNS = ("query-id", "corpus-id", "score")
_PASSAGE_LISTS = ("positive_passages", "negative_passages")
SCRIPT_HINT = (
    "datasets >= 4 runs no loading script: download the data files, e.g. `hf download {name} "
    "--repo-type dataset --include '*.jsonl.gz' --local-dir DIR`, and pass --input DIR"
)


def describe_source(name: str) -> str:
    """The dataset as recorded in the manifest: a local folder's absolute path, else the Hub name."""
    return str(Path(name).resolve()) if Path(name).is_dir() else name


class _Source:
    """One dataset: its splits streamed, every row located as NAME[config/split]:ROW."""

    def __init__(self, name: str, config: str | None, revision: str | None, cache_dir: Path, features=None):
        import datasets

        self.name, self.config = name, config
        try:
            self.splits = datasets.load_dataset(
                name, config, streaming=True, revision=revision, cache_dir=str(cache_dir), features=features
            )
        except Exception as err:  # datasets raises many kinds (ConnectionError, ValueError, RuntimeError ...)
            hint = (
                f" ({SCRIPT_HINT.format(name=name)})" if "scripts are no longer supported" in str(err) else ""
            )
            raise LedError(
                f"cannot load dataset {name!r}{_config_text(config)}: {_one_line(err)}{hint}"
            ) from None

    def where(self, split: str) -> str:
        return f"{self.name}[{self.config or 'default'}/{split}]"

    def rows(self, split: str, progress: bool):
        """Yield (where, row number, record) for every record of `split`."""
        from tqdm.auto import tqdm

        where = self.where(split)
        number = 0
        iterator = iter(self.splits[split])
        with tqdm(desc=where, unit=" rows", leave=False, disable=None if progress else True) as bar:
            while True:
                try:
                    record = next(iterator)
                except StopIteration:
                    break
                except Exception as err:  # a damaged file deep in a streamed dataset
                    raise LedError(
                        f"{where}:{number + 1}: cannot read the record: {_one_line(err)}"
                    ) from None
                number += 1
                bar.update()
                yield where, number, record
        if number == 0:
            raise LedError(f"{where}: the split is empty")


def _config_text(config: str | None) -> str:
    return f" (config {config!r})" if config else ""


def _one_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _config_names(name: str, revision: str | None) -> list[str]:
    import datasets

    try:
        return list(datasets.get_dataset_config_names(name, revision=revision))
    except Exception as err:
        raise _load_error(name, None, err) from None


def _load_error(name: str, config: str | None, err: Exception) -> LedError:
    hint = f" ({SCRIPT_HINT.format(name=name)})" if "scripts are no longer supported" in str(err) else ""
    return LedError(f"cannot load dataset {name!r}{_config_text(config)}: {_one_line(err)}{hint}")


def _string(conv, where: str, number: int, record: dict, key: str, *, is_id=False, optional=False):
    """record[key] as str (an integer id as its decimal string), or None after reporting the problem."""
    value = record.get(key)
    if value is None and optional:
        return ""
    if is_id and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        what = "is missing" if value is None else f"is {type(value).__name__}, not a string"
        conv.problems.report(where, number, "bad record", f"field {key!r} {what}")
        return None
    if is_id and (why := id_problem(value)) is not None:
        conv.problems.report(where, number, "bad id", f"{key} {value!r} {why}")
        return None
    return value


def convert_hf(
    conv,
    name: str,
    *,
    config: str | None = None,
    qrels: str | None = None,
    corpus: str | None = None,
    negatives_name: str = "hf",
    revision: str | None = None,
) -> None:
    """Read dataset `name` into `conv`'s tables (see the module doc)."""
    cache = (
        conv.staging / ".build" / "hf-cache"
    )  # streaming writes only lock files: keep them out of ~/.cache
    configs = _config_names(name, revision)
    if "corpus" in configs and "queries" in configs and config is None:
        if corpus is not None:
            raise LedError(
                f"{name} is BEIR-style (configs corpus, queries): --corpus is for Tevatron-style data"
            )
        _convert_beir(conv, name, configs, qrels, revision, cache)
    else:
        if qrels is not None:
            raise LedError(f"{name} is Tevatron-style: its qrels are the positive_passages (no --qrels)")
        _convert_tevatron(conv, name, config, corpus, negatives_name, revision, cache)


def _convert_beir(conv, name, configs, qrels, revision, cache) -> None:
    corpus_rows, queries_rows = (
        _Source(name, "corpus", revision, cache),
        _Source(name, "queries", revision, cache),
    )
    writer = conv.writer("corpus", CORPUS_FEATURES)
    for split in corpus_rows.splits:
        for where, number, record in corpus_rows.rows(split, conv.progress):
            pid = _string(conv, where, number, record, "_id", is_id=True)
            title = _string(conv, where, number, record, "title", optional=True)
            text = _string(conv, where, number, record, "text")
            if None not in (pid, title, text):
                conv.add_passage(writer, where, number, pid, title, text)
    conv.close(writer)
    writer = conv.writer("queries", QUERIES_FEATURES)
    for split in queries_rows.splits:
        seen: set[str] = set()
        for where, number, record in queries_rows.rows(split, conv.progress):
            qid = _string(conv, where, number, record, "_id", is_id=True)
            text = _string(conv, where, number, record, "text")
            if qid is not None and text is not None:
                conv.add_query(writer, where, number, qid, text, seen)
    conv.close(writer)

    qrels_config = next((c for c in ("qrels", "default") if c in configs), None)
    qrels_name, qrels_config = (
        (qrels, None) if qrels else (name, qrels_config) if qrels_config else (f"{name}-qrels", None)
    )
    judgments = _Source(qrels_name, qrels_config, revision, cache)
    if any(split.features is None for split in judgments.splits.values()):
        # csv/tsv files: read the columns as text, else pandas turns the id "007" into the number 7
        import datasets

        as_text = datasets.Features({column: datasets.Value("string") for column in _QRELS_COLUMNS})
        judgments = _Source(qrels_name, qrels_config, revision, cache, features=as_text)
    for split in judgments.splits:
        where = judgments.where(split)

        def rows(split=split):
            for place, number, record in judgments.rows(split, conv.progress):
                values = [_string(conv, place, number, record, c, is_id=True) for c in _QRELS_COLUMNS[:2]]
                if None not in values:
                    yield number, values[0], values[1], record.get("score")

        conv.write_qrels(_checked_split(split, where), where, rows())


def _checked_split(split: str, where: str) -> str:
    if not SOURCE_NAME.match(split):
        raise LedError(f"{where}: cannot use {split!r} as a split name")
    return split


def _convert_tevatron(conv, name, config, corpus, negatives_name, revision, cache) -> None:
    if not SOURCE_NAME.match(negatives_name):
        raise LedError(f"--negatives-name {negatives_name!r} is not a usable source name")
    data = _Source(name, config, revision, cache)
    first = next(iter(data.splits.values()), None)
    columns = list(first.column_names or []) if first is not None else []
    if columns and not all(column in columns for column in TEVATRON_COLUMNS):
        raise LedError(
            f"{name}{_config_text(config)}: neither BEIR-style (configs corpus and queries) nor Tevatron-style "
            f"(columns {', '.join(TEVATRON_COLUMNS)}, negative_passages); columns are {', '.join(columns)}"
        )
    corpus_writer = conv.writer("corpus", CORPUS_FEATURES)
    if corpus is not None:
        _read_corpus(conv, _Source(corpus, None, revision, cache), corpus_writer)
        conv.close(corpus_writer)
    state = _TevatronState(conv, corpus_writer if corpus is None else None, negatives_name)
    for split in data.splits:
        qrels = conv.writer(f"qrels/{_checked_split(split, data.where(split))}", QRELS_FEATURES)
        seen: set[str] = set()
        for where, number, record in data.rows(split, conv.progress):
            state.add_row(where, number, record, seen, qrels)
        if qrels.rows == 0:
            raise LedError(f"{data.where(split)}: qrels split {split!r} has no judgment")
        state.qrels.append(qrels)
    if corpus is None:
        conv.note("corpus: passages taken from the rows (no --corpus)", corpus_writer.rows)
        conv.close(corpus_writer)
    state.close()


def _read_corpus(conv, passages: _Source, writer) -> None:
    """A corpus dataset: rows {docid or _id, title, text}."""
    for split in passages.splits:
        for where, number, record in passages.rows(split, conv.progress):
            key = "docid" if "docid" in record else "_id"
            pid = _string(conv, where, number, record, key, is_id=True)
            title = _string(conv, where, number, record, "title", optional=True)
            text = _string(conv, where, number, record, "text")
            if None not in (pid, title, text):
                conv.add_passage(writer, where, number, pid, title, text)


class _TevatronState:
    """Tables written while Tevatron rows stream by: queries, negatives, the corpus when built from rows."""

    def __init__(self, conv, corpus_writer, negatives_name: str):
        self.conv, self.corpus_writer, self.negatives_name = conv, corpus_writer, negatives_name
        self.texts = _PassageTexts() if corpus_writer is not None else None
        self.queries = conv.writer("queries", QUERIES_FEATURES)
        self.negatives = conv.writer(f"negatives/{negatives_name}", NEGATIVES_FEATURES)
        self.with_negatives: set[str] = set()
        self.qrels: list = []

    def add_row(self, where: str, number: int, record: dict, seen: set[str], qrels) -> None:
        conv = self.conv
        qid = _string(conv, where, number, record, "query_id", is_id=True)
        text = _string(conv, where, number, record, "query")
        positives, negatives = (_passages(conv, where, number, record, key) for key in _PASSAGE_LISTS)
        if qid is None or text is None or positives is None or negatives is None:
            return
        if qid in seen or (negatives and qid in self.with_negatives):
            conv.problems.report(where, number, "duplicate qid", f"qid {qid!r} appeared in an earlier row")
            return
        if not positives:
            conv.problems.report(where, number, "bad record", "positive_passages is empty")
            return
        if self.texts is not None:
            known = all(
                self.texts.add(conv, self.corpus_writer, where, number, p) for p in positives + negatives
            )
        else:
            known = all(
                p[0] in conv.pids or _unknown(conv, where, number, p[0]) for p in positives + negatives
            )
        if not known:
            return
        conv.add_query(self.queries, where, number, qid, text, seen)
        if conv.query_texts.get(qid) != hash(
            text
        ):  # refused: another text in another split (bad lines skipped)
            return
        for pid in dict.fromkeys(p[0] for p in positives):
            conv.positives.add(f"{qid}\t{pid}")
            qrels.add(qid, pid, 1)
        if negatives:
            self.with_negatives.add(qid)
            conv.add_negatives(self.negatives, self.negatives_name, qid, [p[0] for p in negatives])

    def close(self) -> None:
        self.conv.close(self.queries)
        for writer in self.qrels:
            self.conv.close(writer)
        if self.negatives.rows:
            self.conv.close(self.negatives)
        else:  # no row had negatives: no empty source
            self.negatives.finish()
            shutil.rmtree(self.negatives.folder)


def _unknown(conv, where, number, pid) -> bool:
    conv.problems.report(where, number, "unknown pid", f"pid {pid!r} is not in the corpus")
    return False


def _passages(conv, where, number, record, key) -> list[tuple[str, str, str]] | None:
    """[(docid, title, text)] of one passage list, or None after reporting a malformed one."""
    value = record.get(key)
    if value is None and key == "negative_passages":
        return []
    if not isinstance(value, list):
        conv.problems.report(where, number, "bad record", f"{key} is not a list of passages")
        return None
    out = []
    for position, passage in enumerate(value):
        if not isinstance(passage, dict):
            conv.problems.report(where, number, "bad record", f"{key}[{position}] is not a passage")
            return None
        fields = (
            _string(conv, where, number, passage, "docid", is_id=True),
            _string(conv, where, number, passage, "title", optional=True),
            _string(conv, where, number, passage, "text", optional=True),
        )
        if None in fields:
            return None
        out.append(fields)
    return out


class _PassageTexts:
    """Passages met in Tevatron rows: the first text of each docid goes to the corpus, later ones must agree.

    Keeps hash(title, text) per docid: in a numpy array indexed by the docid for integer ids (8 bytes a
    passage at MS MARCO scale), in a dict for others.
    """

    def __init__(self):
        self._by_number = np.zeros(0, dtype=np.int64)
        self._other: dict[str, int] = {}

    def add(self, conv, writer, where, number, passage) -> bool:
        pid, title, text = passage
        digest = hash((title, text)) or 1  # 0 marks "no passage" in the array
        as_int = (
            int(pid)
            if pid.isascii() and pid.isdigit() and (pid == "0" or pid[0] != "0") and len(pid) < 10
            else None
        )
        if as_int is not None:
            if as_int >= len(self._by_number):
                grown = np.zeros(max(as_int + 1, 2 * len(self._by_number)), dtype=np.int64)
                grown[: len(self._by_number)] = self._by_number
                self._by_number = grown
            known = int(self._by_number[as_int])
        else:
            known = self._other.get(pid, 0)
        if known == 0:
            if as_int is not None:
                self._by_number[as_int] = digest
            else:
                self._other[pid] = digest
            return conv.add_passage(writer, where, number, pid, title, text)
        if known != digest:
            conv.problems.report(
                where,
                number,
                "conflicting passage",
                f"docid {pid!r} has another title or text in an earlier row",
            )
            return False
        return True
