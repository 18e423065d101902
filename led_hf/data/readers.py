"""Streaming readers for MS MARCO tsv, BEIR jsonl and TREC run files.

Every record comes with its line number so that a bad one is reported as `path:line: reason`.
Files are read line by line in binary and decoded one line at a time: memory stays flat whatever the
file size; a name ending in `.gz` (not `.tar.gz`) is read through gzip. Accepted quirks: a UTF-8 byte-order
mark, CRLF line endings and blank lines at the end of the file. A blank line in the middle of a file,
non-UTF-8 bytes and an empty file are errors. Ids (`id_problem`) are non-empty and hold no whitespace:
qrels and TREC runs split on whitespace, so an id with a space could never be matched again downstream.

Bad lines go through `Problems`: by default the first one raises `InputError`; with
`skip_bad_lines=True` they are counted by reason and skipped.

    >>> problems = Problems()
    >>> for line_number, (pid, text) in read_fields(path, problems, 2, "pid, text"): ...
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from led_hf.errors import InputError

BOM = b"\xef\xbb\xbf"
# update the progress bar every this many bytes: a tqdm update per line would cost more than the parsing
_PROGRESS_STEP = 1 << 20


class Problems:
    """Where bad lines go: raise `InputError` at the first one, or count them by reason and go on.

    `counts` maps a short reason ("wrong field count", "unknown pid", ...) to the number of lines skipped;
    `first` maps it to the first place it happened (`path:line`), for the summary.
    """

    def __init__(self, skip_bad_lines: bool = False):
        self.skip_bad_lines = skip_bad_lines
        self.counts: Counter[str] = Counter()
        self.first: dict[str, str] = {}

    def report(self, path, line: int | None, reason: str, detail: str = "") -> None:
        error = InputError(path, line, f"{reason}: {detail}" if detail else reason)
        if not self.skip_bad_lines:
            raise error
        self.counts[reason] += 1
        self.first.setdefault(reason, str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def id_problem(value: str) -> str | None:
    """Why `value` cannot be an id (empty, or holds whitespace of any kind), or None when it can."""
    if not value:
        return "is empty"
    if any(char.isspace() for char in value):
        return "contains whitespace"
    return None


def is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz") and not path.name.endswith(".tar.gz")


def _progress(path: Path, enabled: bool):
    from tqdm.auto import tqdm

    # disable=None hides the bar when stderr is not a terminal (logs, pytest): error output stays one line
    return tqdm(
        total=os.path.getsize(path),
        unit="B",
        unit_scale=True,
        desc=path.name,
        leave=False,
        disable=None if enabled else True,
    )


def read_lines(
    path: str | os.PathLike, problems: Problems, progress: bool = True
) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, text)` for every non-blank line (numbers start at 1, line ending removed).

    >>> # b"\\xef\\xbb\\xbf0\\ta\\r\\n1\\tb\\r\\n\\r\\n" yields (1, "0\\ta"), (2, "1\\tb")
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "file not found")
    yielded = False
    skipped_before = problems.total
    pending_blank: int | None = None  # first blank line not yet known to be trailing
    with open(path, "rb") as on_disk, _progress(path, progress) as bar:
        gzipped = is_gzip(path)
        handle = _gzip_lines(gzip.GzipFile(fileobj=on_disk, mode="rb"), path) if gzipped else on_disk
        # the bar counts bytes of the file on disk: read position for gzip, line lengths otherwise
        reported = unreported = 0
        for number, raw in enumerate(handle, start=1):
            unreported += len(raw)
            if unreported >= _PROGRESS_STEP:
                position = on_disk.tell() if gzipped else reported + unreported
                bar.update(position - reported)
                reported, unreported = position, 0
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            if not raw.strip():
                if pending_blank is None:
                    pending_blank = number
                continue
            if pending_blank is not None:
                problems.report(path, pending_blank, "blank line", "only trailing blank lines are allowed")
                pending_blank = None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problems.report(
                    path, number, "non-UTF-8 bytes", f"byte {raw[err.start]:#04x} at column {err.start + 1}"
                )
                continue
            yielded = True
            yield number, text
        bar.update(os.path.getsize(path) - reported)
    if not yielded and problems.total == skipped_before:
        raise InputError(path, 1, "file is empty")


def _gzip_lines(handle: gzip.GzipFile, path: Path) -> Iterator[bytes]:
    """The lines of a gzip stream; a damaged stream is an error naming the line where it broke."""
    number = 0
    try:
        for raw in handle:
            number += 1
            yield raw
    except (OSError, EOFError) as err:  # BadGzipFile is an OSError; EOFError: truncated file
        raise InputError(path, number + 1, f"unreadable gzip data ({err})") from None


def read_fields(
    path,
    problems: Problems,
    count: int,
    names: str,
    *,
    whitespace: bool = False,
    at_least: bool = False,
    ids: tuple[int, ...] = (0,),
    progress: bool = True,
) -> Iterator[tuple[int, list[str]]]:
    """Yield `(line_number, fields)` for a tab-separated file with `count` fields named `names`.

    Splits on the first `count - 1` tabs only, so the last field (a passage) may itself hold tabs;
    quotes are text, never CSV quoting. `whitespace=True` splits on any run of spaces/tabs (qrels, TREC
    runs); `at_least=True` accepts more fields and returns only the first `count`. The fields at positions
    `ids` must be valid ids (`id_problem`).

    >>> # "7\\tsay \\"hi\\"\\tthere" with count=2 -> ["7", 'say "hi"\\tthere']
    """
    for number, text in read_lines(path, problems, progress):
        if whitespace:
            fields = text.split()
        else:
            fields = text.split("\t", count - 1 if not at_least else count)
        if len(fields) < count or (len(fields) > count and not at_least):
            sep = "whitespace" if whitespace else "tab"
            problems.report(
                path,
                number,
                "wrong field count",
                f"expected {count} {sep}-separated fields ({names}), got {len(fields)}",
            )
            continue
        fields = fields[:count]
        bad = next(((i, why) for i in ids if (why := id_problem(fields[i])) is not None), None)
        if bad is not None:
            name = names.split(", ")[bad[0]] if len(names.split(", ")) == count else "id"
            problems.report(path, number, "bad id", f"{name} {fields[bad[0]]!r} {bad[1]}")
            continue
        yield number, fields


def read_jsonl(
    path, problems: Problems, required: tuple[str, ...], optional: tuple[str, ...] = (), progress: bool = True
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield `(line_number, record)` for a JSON-lines file; `record` holds `required` + `optional` keys as str.

    `_id` may be a JSON string or integer (stored as its decimal string); other fields must be strings
    (or null / absent for `optional` ones, read as ""). Extra keys such as BEIR's `metadata` are ignored.

    >>> # '{"_id": 4983, "title": null, "text": "T"}' -> {"_id": "4983", "title": "", "text": "T"}
    """
    for number, text in read_lines(path, problems, progress):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            problems.report(path, number, "malformed JSON", f"{err.msg} at column {err.colno}")
            continue
        if not isinstance(obj, dict):
            problems.report(path, number, "malformed JSON", f"expected an object, got {type(obj).__name__}")
            continue
        record: dict[str, str] = {}
        bad = None
        for key in required + optional:
            value = obj.get(key)
            if value is None and key in optional:
                value = ""
            if key == "_id" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                bad = f"field {key!r} is missing" if value is None else f"field {key!r} is not a string"
                break
            record[key] = value
        if bad is not None:
            problems.report(path, number, "bad record", bad)
            continue
        if "_id" in record and (why := id_problem(record["_id"])) is not None:
            problems.report(path, number, "bad id", f"_id {record['_id']!r} {why}")
            continue
        yield number, record


def read_trec_run(
    path, problems: Problems, progress: bool = True
) -> Iterator[tuple[int, str, str, int, float]]:
    """Yield `(line_number, qid, pid, rank, score)` from a TREC run (`qid Q0 pid rank score tag`).

    >>> # "100 Q0 7 1 19.5 dense" -> (1, "100", "7", 1, 19.5)
    """
    for number, (qid, _, pid, rank, score, _) in read_fields(
        path, problems, 6, "qid, Q0, pid, rank, score, tag", whitespace=True, progress=progress
    ):
        try:
            parsed = int(rank), float(score)
        except ValueError:
            parsed = None
        if parsed is None or not math.isfinite(parsed[1]):
            problems.report(
                path, number, "bad number", f"rank {rank!r} must be an integer, score {score!r} a number"
            )
            continue
        yield number, qid, pid, parsed[0], parsed[1]
