"""Property-based tests of the input readers (hypothesis): what is written comes back, whatever the ids and
texts hold; whatever bytes a line holds, a reader yields records or raises `InputError` naming `FILE:LINE`,
never any other exception."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from led_hf.cli.main import main
from led_hf.data.readers import Problems, read_fields, read_jsonl, read_trec_run
from led_hf.errors import InputError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# any character that UTF-8 can encode (no lone surrogates)
_characters = st.characters(blacklist_categories=("Cs",))
# ids: no whitespace of any kind (an id may not hold any); not starting with a BOM (stripped on line 1)
ids = st.text(_characters, min_size=1, max_size=12).filter(
    lambda s: not any(c.isspace() for c in s) and not s.startswith("\ufeff")
)
# tsv texts: tabs, quotes, non-ASCII, anything but a line break; not ending in CR (taken for CRLF)
tsv_texts = st.text(_characters, max_size=40).filter(lambda s: "\n" not in s and not s.endswith("\r"))


def _write(folder: Path, name: str, lines: list[str], crlf: bool, bom: bool, trailing_blank: bool) -> Path:
    end = "\r\n" if crlf else "\n"
    data = "".join(line + end for line in lines) + (end if trailing_blank else "")
    path = folder / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


@SETTINGS
@given(
    rows=st.lists(st.tuples(ids, tsv_texts), min_size=1, max_size=8),
    crlf=st.booleans(),
    bom=st.booleans(),
    trailing_blank=st.booleans(),
)
def test_tsv_round_trip(rows, crlf, bom, trailing_blank):
    with tempfile.TemporaryDirectory() as folder:
        lines = [f"{pid}\t{text}" for pid, text in rows]
        path = _write(Path(folder), "c.tsv", lines, crlf, bom, trailing_blank)
        got = list(read_fields(path, Problems(), 2, "pid, text", progress=False))
    assert got == [(number, [pid, text]) for number, (pid, text) in enumerate(rows, start=1)]


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(ids, st.integers(min_value=0, max_value=2**62)),
            st.text(_characters, max_size=40),
            st.one_of(st.none(), st.text(_characters, max_size=10)),
        ),
        min_size=1,
        max_size=8,
    ),
    crlf=st.booleans(),
    ascii_only=st.booleans(),
)
def test_jsonl_round_trip(rows, crlf, ascii_only):
    with tempfile.TemporaryDirectory() as folder:
        lines = [json.dumps({"_id": i, "text": t, "title": h}, ensure_ascii=ascii_only) for i, t, h in rows]
        path = _write(Path(folder), "c.jsonl", lines, crlf, False, False)
        got = list(read_jsonl(path, Problems(), ("_id", "text"), ("title",), progress=False))
    expected = [{"_id": str(i), "text": t, "title": h or ""} for i, t, h in rows]
    assert [record for _, record in got] == expected


# arbitrary line content: random bytes (invalid UTF-8 included) or random text with tabs and spaces
_line_bytes = st.one_of(
    st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
    st.text(st.sampled_from(list('ab1 \t"{}:,.-\u00e9\u00a0')), max_size=30).map(str.encode),
    st.text(_characters, max_size=20).map(lambda s: s.replace("\n", "").encode("utf-8")),
)
_READERS = {
    "tsv": lambda path, problems: read_fields(path, problems, 2, "pid, text", progress=False),
    "tsv3-ids": lambda path, problems: read_fields(
        path, problems, 3, "a, b, c", ids=(0, 1, 2), progress=False
    ),
    "qrels": lambda path, problems: read_fields(
        path, problems, 4, "q, 0, p, r", whitespace=True, progress=False
    ),
    "jsonl": lambda path, problems: read_jsonl(path, problems, ("_id", "text"), ("title",), progress=False),
    "trec": lambda path, problems: read_trec_run(path, problems, progress=False),
}


@SETTINGS
@given(reader=st.sampled_from(sorted(_READERS)), lines=st.lists(_line_bytes, min_size=0, max_size=6))
def test_malformed_lines_raise_input_error_naming_the_line(reader, lines):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "in.txt"
        path.write_bytes(b"\n".join(lines) + (b"\n" if lines else b""))
        try:
            for number, *_ in _READERS[reader](path, Problems()):
                assert 1 <= number <= len(lines)
        except InputError as err:
            match = re.match(rf"{re.escape(str(path))}:(\d+): ", str(err))
            assert match, str(err)
            assert 1 <= int(match.group(1)) <= max(len(lines), 1)
        # skipping bad lines: only "file is empty" may still stop the reader
        problems = Problems(skip_bad_lines=True)
        try:
            list(_READERS[reader](path, problems))
        except InputError as err:
            assert str(err) == f"{path}:1: file is empty"


@pytest.fixture(scope="module")
def _scratch():
    folder = Path(tempfile.mkdtemp(prefix="led-prop-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


_TARGETS = [
    ("msmarco", "collection.tsv"),
    ("msmarco", "qrels.train.tsv"),
    ("msmarco", "train.negatives.tsv"),
    ("msmarco", "qidpidtriples.train.full.2.tsv"),
    ("msmarco", "triples.train.small.tsv"),
    ("beir", "corpus.jsonl"),
    ("beir", "qrels/test.tsv"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(_TARGETS), line=st.integers(1, 3), content=_line_bytes)
def test_prepare_with_one_arbitrary_line_never_tracebacks(
    target, line, content, msmarco_dir, beir_dir, _scratch, capsys
):
    fmt, name = target
    work = Path(tempfile.mkdtemp(dir=_scratch))
    source = Path(shutil.copytree(msmarco_dir if fmt == "msmarco" else beir_dir, work / "src"))
    lines = (source / name).read_bytes().split(b"\n")
    lines[line - 1] = content
    (source / name).write_bytes(b"\n".join(lines))
    code = main(
        ["prepare", "--format", fmt, "--input", str(source), "--output", str(work / "out"), "--quiet"]
    )
    err = capsys.readouterr().err.strip()
    assert code in (0, 1)
    if code == 1:
        assert "\n" not in err and err.startswith("led prepare: error: "), err
        assert not (work / "out").exists()
    shutil.rmtree(work)
