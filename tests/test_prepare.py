"""`led prepare`: tables and their contents, bad input (file:line, exit code, nothing written), tolerated quirks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datasets import load_from_disk

from led_hf.cli.main import main
from led_hf.data.arrow_tables import IdSet
from led_hf.data.readers import Problems, read_fields, read_lines
from led_hf.data.store import PreparedData
from led_hf.errors import InputError, LedError
from led_hf.work_folder import CONTENT_RECORD, DERIVED_FOLDER

MSMARCO_TABLES = [
    "corpus",
    "queries",
    "qrels/dev",
    "qrels/train",
    "negatives/bm25",
    "negatives/dense",
    "negatives/triples",
    "candidates/dev",
]
BEIR_TABLES = ["corpus", "queries", "qrels/test", "qrels/train"]


def prepare(fmt: str, source: Path, output: Path, *extra: str) -> int:
    return main(["prepare", "--format", fmt, "--input", str(source), "--output", str(output), *extra])


def tables(root: Path, names) -> dict[str, dict]:
    return {name: load_from_disk(str(root / name)).to_dict() for name in names}


def tsv(path: Path) -> list[list[str]]:
    """Independent reading of a clean fixture file: first-tab split for 2 columns, else all tabs."""
    rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    return [
        line.split("\t", 1)
        if path.name in ("collection.tsv", "titles.tsv") or path.name.startswith("queries")
        else line.split("\t")
        for line in rows
    ]


def nothing_written(output: Path) -> bool:
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]
    return not output.exists() and not leftovers


@pytest.fixture
def msmarco_copy(tmp_path, msmarco_dir) -> Path:
    return Path(shutil.copytree(msmarco_dir, tmp_path / "msmarco_src"))


@pytest.fixture
def beir_copy(tmp_path, beir_dir) -> Path:
    return Path(shutil.copytree(beir_dir, tmp_path / "beir_src"))


# ---------------------------------------------------------------------------------------------- contents
def test_msmarco_tables_match_the_source_files(prepared_msmarco, msmarco_dir):
    got = tables(prepared_msmarco, MSMARCO_TABLES)
    collection, titles = tsv(msmarco_dir / "collection.tsv"), dict(tsv(msmarco_dir / "titles.tsv"))
    assert got["corpus"] == {
        "pid": [p for p, _ in collection],
        "title": [titles[p] for p, _ in collection],
        "text": [t for _, t in collection],
    }
    assert '"high-risk"' in got["corpus"]["text"][0] and "naïve" in got["corpus"]["text"][7]

    queries = dict(tsv(msmarco_dir / "queries.dev.tsv") + tsv(msmarco_dir / "queries.train.tsv"))
    assert dict(zip(got["queries"]["qid"], got["queries"]["text"])) == queries
    assert len(got["queries"]["qid"]) == len(queries)

    positives = set()
    for split in ("dev", "train"):
        rows = tsv(msmarco_dir / f"qrels.{split}.tsv")
        assert got[f"qrels/{split}"] == {
            "qid": [r[0] for r in rows],
            "pid": [r[2] for r in rows],
            "score": [int(r[3]) for r in rows],
        }
        positives |= {(r[0], r[2]) for r in rows if int(r[3]) > 0}

    expected_bm25 = {}
    for qid, joined in tsv(msmarco_dir / "train.negatives.tsv"):
        pids = [p for p in joined.split(",") if (qid, p) not in positives]
        if pids:
            expected_bm25[qid] = pids
    bm25 = got["negatives/bm25"]
    assert dict(zip(bm25["qid"], bm25["pids"])) == expected_bm25
    assert all(scores == [] for scores in bm25["scores"])
    assert ["5", "3", "8", "2"] == expected_bm25["100"]  # pid 0 is 100's positive: dropped

    run: dict[str, list] = {}
    for line in (msmarco_dir / "runs" / "dense.trec").read_text().splitlines():
        qid, _, pid, rank, score, _ = line.split()
        run.setdefault(qid, []).append((int(rank), pid, float(score)))
    dense = got["negatives/dense"]
    for qid, pids, scores in zip(dense["qid"], dense["pids"], dense["scores"]):
        kept = [(pid, score) for _, pid, score in sorted(run[qid]) if (qid, pid) not in positives]
        assert pids == [pid for pid, _ in kept] and scores == pytest.approx([score for _, score in kept])
    assert sorted(dense["qid"]) == sorted(run)

    candidates: dict[str, list] = {}
    for fields in tsv(msmarco_dir / "top1000.dev"):
        candidates.setdefault(fields[0], []).append(fields[1])
    assert dict(zip(got["candidates/dev"]["qid"], got["candidates/dev"]["pids"])) == candidates
    assert PreparedData(prepared_msmarco).candidates("dev")["pids"] == list(candidates.values())


def test_features_and_manifest(prepared_msmarco, msmarco_dir, tmp_path):
    features = {
        name: {k: repr(v) for k, v in load_from_disk(str(prepared_msmarco / name)).features.items()}
        for name in ("corpus", "qrels/train", "negatives/dense", "candidates/dev")
    }
    assert features["corpus"] == {k: "Value('string')" for k in ("pid", "title", "text")}
    assert features["qrels/train"]["score"] == "Value('int32')"
    assert features["negatives/dense"] == {
        "qid": "Value('string')",
        "pids": "List(Value('string'))",
        "scores": "List(Value('float32'))",
    }
    assert features["candidates/dev"]["pids"] == "List(Value('string'))"
    manifest = json.loads((prepared_msmarco / "manifest.json").read_text())
    assert manifest["format"] == "msmarco" and manifest["input"] == str(msmarco_dir.resolve())
    assert manifest["counts"]["corpus"] == 12 and manifest["counts"]["qrels/train"] == 6
    assert manifest["skipped_lines"] == {}
    # only what load_from_disk needs (and the content hashes of led_hf.work_folder): no build or cache files
    for name in MSMARCO_TABLES:
        files = sorted(p.name for p in (prepared_msmarco / name).iterdir())
        assert files == [CONTENT_RECORD, "data-00000-of-00001.arrow", "dataset_info.json", "state.json"], name
    # (other tests of the session may have cached negative pools in DATA/.led-cache: derived, not prepared)
    assert sorted(p.name for p in prepared_msmarco.iterdir() if p.name != DERIVED_FOLDER) == [
        "candidates",
        "corpus",
        "manifest.json",
        "negatives",
        "qrels",
        "queries",
    ]
    # the metadata files are those save_to_disk writes (tables are written directly, not via save_to_disk)
    for name in ("corpus", "negatives/dense"):
        load_from_disk(str(prepared_msmarco / name)).save_to_disk(str(tmp_path / name))
        ours, theirs = (
            json.loads((root / name / "state.json").read_text()) for root in (prepared_msmarco, tmp_path)
        )
        assert {**ours, "_fingerprint": None} == {**theirs, "_fingerprint": None}
        assert (prepared_msmarco / name / "dataset_info.json").read_text() == (
            tmp_path / name / "dataset_info.json"
        ).read_text()


def test_beir_tables_match_the_source_files(prepared_beir, beir_dir):
    got = tables(prepared_beir, BEIR_TABLES)
    corpus = [json.loads(line) for line in (beir_dir / "corpus.jsonl").read_text().splitlines()]
    assert got["corpus"] == {
        "pid": [d["_id"] for d in corpus],
        "title": [d["title"] for d in corpus],
        "text": [d["text"] for d in corpus],
    }
    assert "\t" in got["corpus"]["text"][0] and "Café culture" in got["corpus"]["title"]
    queries = [json.loads(line) for line in (beir_dir / "queries.jsonl").read_text().splitlines()]
    assert got["queries"] == {"qid": [q["_id"] for q in queries], "text": [q["text"] for q in queries]}
    for split in ("test", "train"):
        rows = tsv(beir_dir / "qrels" / f"{split}.tsv")[1:]
        assert got[f"qrels/{split}"] == {
            "qid": [r[0] for r in rows],
            "pid": [r[1] for r in rows],
            "score": [int(r[2]) for r in rows],
        }
    assert PreparedData(prepared_beir).negative_sources() == []
    with pytest.raises(LedError, match="no candidates"):
        PreparedData(prepared_beir).candidates("test")


def test_scifact_counts(scifact_dir, tmp_path, capsys):
    assert prepare("beir", scifact_dir, tmp_path / "scifact") == 0
    data = PreparedData(tmp_path / "scifact")
    assert (len(data.corpus), len(data.queries)) == (5183, 1109)
    assert (len(data.qrels("train")), len(data.qrels("test"))) == (919, 339)
    out = capsys.readouterr().out
    assert "corpus" in out and "5,183" in out and "skipped lines: 0" in out


# ---------------------------------------------------------------------------------------------- bad input
def _replace_line(path: Path, number: int, text: str | bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = text.encode() if isinstance(text, str) else text
    path.write_bytes(b"\n".join(lines))


def _append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


BAD_INPUTS = [
    # (fixture, mutation, file named in the message, line, reason)
    (
        "msmarco",
        lambda d: _replace_line(d / "collection.tsv", 3, "2 no tab"),
        "collection.tsv",
        3,
        "wrong field count",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "qrels.train.tsv", 2, "101\t0\t1"),
        "qrels.train.tsv",
        2,
        "wrong field count",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "train.negatives.tsv", 4, "103"),
        "train.negatives.tsv",
        4,
        "wrong field count",
    ),
    (
        "beir",
        lambda d: _replace_line(d / "corpus.jsonl", 2, '{"_id": "d1", "text": "x"'),
        "corpus.jsonl",
        2,
        "malformed JSON",
    ),
    (
        "beir",
        lambda d: _replace_line(d / "queries.jsonl", 3, '{"_id": "q102"}'),
        "queries.jsonl",
        3,
        "bad record",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "collection.tsv", 5, b"4\tbad \xff byte"),
        "collection.tsv",
        5,
        "non-UTF-8 bytes",
    ),
    (
        "beir",
        lambda d: _replace_line(
            d / "queries.jsonl", 4, '{"_id": "q103", "text": "caf\xe9"}'.encode("latin-1")
        ),
        "queries.jsonl",
        4,
        "non-UTF-8 bytes",
    ),
    (
        "msmarco",
        lambda d: _append(d / "collection.tsv", "4\tanother text\n"),
        "collection.tsv",
        13,
        "duplicate pid",
    ),
    (
        "beir",
        lambda d: _append(d / "corpus.jsonl", '{"_id": "d3", "text": "again"}\n'),
        "corpus.jsonl",
        13,
        "duplicate pid",
    ),
    (
        "msmarco",
        lambda d: _append(d / "queries.train.tsv", "100\tagain\n"),
        "queries.train.tsv",
        6,
        "duplicate qid",
    ),
    # the dev file is read first, so the train file's line 1 is where the texts disagree
    (
        "msmarco",
        lambda d: _append(d / "queries.dev.tsv", "100\tanother text\n"),
        "queries.train.tsv",
        1,
        "duplicate qid",
    ),
    (
        "beir",
        lambda d: _append(d / "queries.jsonl", '{"_id": "q100", "text": "x"}\n'),
        "queries.jsonl",
        8,
        "duplicate qid",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "qrels.train.tsv", 3, "102\t0\t99\t1"),
        "qrels.train.tsv",
        3,
        "unknown pid",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "qrels.dev.tsv", 1, "999\t0\t2\t1"),
        "qrels.dev.tsv",
        1,
        "unknown qid",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "qrels.dev.tsv", 2, "201\t0\t8\tyes"),
        "qrels.dev.tsv",
        2,
        "bad number",
    ),
    (
        "beir",
        lambda d: _replace_line(d / "qrels" / "test.tsv", 3, "q201\td99\t1"),
        "test.tsv",
        3,
        "unknown pid",
    ),
    (
        "beir",
        lambda d: _append(d / "qrels" / "train.tsv", "q100\td0\t1\n"),
        "train.tsv",
        8,
        "duplicate judgment",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "train.negatives.tsv", 2, "101\t7,99,1"),
        "train.negatives.tsv",
        2,
        "unknown pid",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "train.negatives.tsv", 5, "777\t9,11"),
        "train.negatives.tsv",
        5,
        "unknown qid",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "runs" / "dense.trec", 10, "101 Q0 77 3 17.00 dense"),
        "dense.trec",
        10,
        "unknown pid",
    ),
    (
        "msmarco",
        lambda d: _append(d / "runs" / "dense.trec", "100 Q0 3 8 12.00 dense\n"),
        "dense.trec",
        36,
        "run not grouped by query",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "top1000.dev", 4, "201\t55\tq\tp"),
        "top1000.dev",
        4,
        "unknown pid",
    ),
    (
        "msmarco",
        lambda d: _append(d / "titles.tsv", "99\tNo such passage\n"),
        "titles.tsv",
        13,
        "unmatched title",
    ),
    ("msmarco", lambda d: (d / "collection.tsv").write_text(""), "collection.tsv", 1, "file is empty"),
    ("msmarco", lambda d: (d / "qrels.dev.tsv").write_text("\n\n"), "qrels.dev.tsv", 1, "file is empty"),
    (
        "beir",
        lambda d: (d / "queries.jsonl").write_bytes(b"\xef\xbb\xbf"),
        "queries.jsonl",
        1,
        "file is empty",
    ),
    ("msmarco", lambda d: _replace_line(d / "collection.tsv", 4, ""), "collection.tsv", 4, "blank line"),
    # ids with whitespace: qrels and runs split on whitespace, so such an id could never be found again
    ("msmarco", lambda d: _replace_line(d / "collection.tsv", 2, "1 b\ttext"), "collection.tsv", 2, "bad id"),
    (
        "msmarco",
        lambda d: _replace_line(d / "queries.dev.tsv", 2, "20\u00a01\tq"),
        "queries.dev.tsv",
        2,
        "bad id",
    ),
    (
        "msmarco",
        lambda d: _replace_line(d / "train.negatives.tsv", 3, "102\t3,5 9"),
        "train.negatives.tsv",
        3,
        "bad id",
    ),
    ("msmarco", lambda d: _replace_line(d / "top1000.dev", 2, "200\t8 \tq\tp"), "top1000.dev", 2, "bad id"),
    ("msmarco", lambda d: _replace_line(d / "titles.tsv", 1, " 0\tAspirin"), "titles.tsv", 1, "bad id"),
    (
        "beir",
        lambda d: _replace_line(d / "corpus.jsonl", 3, '{"_id": "d 2", "text": "x"}'),
        "corpus.jsonl",
        3,
        "bad id",
    ),
    (
        "beir",
        lambda d: _replace_line(d / "queries.jsonl", 1, '{"_id": "q100\\t", "text": "x"}'),
        "queries.jsonl",
        1,
        "bad id",
    ),
    ("beir", lambda d: _replace_line(d / "qrels" / "test.tsv", 2, "q 200\td2\t1"), "test.tsv", 2, "bad id"),
    # line 1 of a BEIR qrels file is a header only if it is one: a real row with a bad score is an error
    (
        "beir",
        lambda d: _replace_line(d / "qrels" / "test.tsv", 1, "q200\td2\tyes"),
        "test.tsv",
        1,
        "bad number",
    ),
    (
        "beir",
        lambda d: _replace_line(d / "qrels" / "train.tsv", 1, "q100\td0\t0.5"),
        "train.tsv",
        1,
        "bad number",
    ),
    (
        "beir",
        lambda d: _replace_line(d / "qrels" / "train.tsv", 1, "nope\td0\t1.5"),
        "train.tsv",
        1,
        "bad number",
    ),
]


@pytest.mark.parametrize(
    "fixture, mutate, filename, line, reason",
    BAD_INPUTS,
    ids=[f"{f}-{name}:{line}-{reason}" for f, _, name, line, reason in BAD_INPUTS],
)
def test_bad_input_names_file_and_line_and_writes_nothing(
    fixture, mutate, filename, line, reason, request, tmp_path, capsys
):
    source = request.getfixturevalue(f"{fixture}_copy")
    mutate(source)
    output = tmp_path / "out" / "data"
    assert prepare(fixture, source, output) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("led prepare: error: ") and f"{filename}:{line}: {reason}" in err, err
    assert nothing_written(output)


@pytest.mark.parametrize("skip", [False, True])
def test_an_empty_qrels_split_is_an_error(beir_copy, tmp_path, capsys, skip):
    if skip:  # every row skipped as bad: the split is just as empty
        (beir_copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq200\td99\t1\n")
    else:
        (beir_copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    output = tmp_path / "data"
    assert prepare("beir", beir_copy, output, *(["--skip-bad-lines"] if skip else [])) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("test.tsv: qrels split 'test' has no judgment") and "\n" not in err, err
    assert nothing_written(output)


def test_a_header_line_is_still_skipped(beir_copy, tmp_path):
    (beir_copy / "qrels" / "test.tsv").write_text("qid\tdocid\trelevance\nq200\td2\t1\n")
    assert prepare("beir", beir_copy, tmp_path / "data") == 0
    assert load_from_disk(str(tmp_path / "data" / "qrels" / "test")).to_dict() == {
        "qid": ["q200"],
        "pid": ["d2"],
        "score": [1],
    }


def test_missing_required_file_and_existing_output(msmarco_copy, tmp_path, capsys):
    (msmarco_copy / "collection.tsv").unlink()
    assert prepare("msmarco", msmarco_copy, tmp_path / "a") == 1
    assert "collection.tsv not found" in capsys.readouterr().err
    assert nothing_written(tmp_path / "a")


def test_overwrite(msmarco_copy, tmp_path, capsys):
    output = tmp_path / "data"
    assert prepare("msmarco", msmarco_copy, output) == 0
    first = json.loads((output / "manifest.json").read_text())
    _append(msmarco_copy / "collection.tsv", "12\tA new passage.\n")
    assert prepare("msmarco", msmarco_copy, output) == 1
    assert "already exists" in capsys.readouterr().err
    assert json.loads((output / "manifest.json").read_text()) == first  # untouched
    assert prepare("msmarco", msmarco_copy, output, "--overwrite") == 0
    assert len(load_from_disk(str(output / "corpus"))) == 13
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "msmarco_src"]  # no temp or old folder left
    # a failed --overwrite keeps the previous output whole
    _replace_line(msmarco_copy / "qrels.dev.tsv", 1, "200\t0\t2")
    assert prepare("msmarco", msmarco_copy, output, "--overwrite") == 1
    assert len(load_from_disk(str(output / "corpus"))) == 13
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "msmarco_src"]


# ---------------------------------------------------------------------------------------------- tolerated quirks
def _crlf_bom_trailing_blank(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8").replace("\n", "\r\n")
            path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8") + b"\r\n\r\n")


@pytest.mark.parametrize("fmt", ["msmarco", "beir"])
def test_crlf_bom_and_trailing_blank_lines_are_accepted(fmt, request, tmp_path):
    source = request.getfixturevalue(f"{fmt}_copy")
    clean = tmp_path / "clean"
    assert prepare(fmt, source, clean) == 0
    _crlf_bom_trailing_blank(source)
    assert (
        (source / ("collection.tsv" if fmt == "msmarco" else "corpus.jsonl"))
        .read_bytes()
        .startswith(b"\xef\xbb\xbf")
    )
    quirky = tmp_path / "quirky"
    assert prepare(fmt, source, quirky) == 0
    names = MSMARCO_TABLES if fmt == "msmarco" else BEIR_TABLES
    assert tables(quirky, names) == tables(clean, names)


def test_skip_bad_lines_counts_and_continues(msmarco_copy, msmarco_dir, tmp_path, capsys):
    _replace_line(msmarco_copy / "collection.tsv", 3, "2 no tab")  # passage 2 is lost ...
    _replace_line(msmarco_copy / "collection.tsv", 5, b"4\t\xff")  # ... and passage 4
    _append(msmarco_copy / "queries.train.tsv", "100\tagain\n")
    _replace_line(msmarco_copy / "qrels.train.tsv", 3, "102\t0\t99\t1")
    output = tmp_path / "data"
    assert prepare("msmarco", msmarco_copy, output, "--skip-bad-lines") == 0

    # every qrels / negatives / run / top1000 line that names passage 2 or 4 is skipped too
    def names_lost_pid(path: Path, pid_fields) -> int:
        return sum(bool({"2", "4"} & set(pid_fields(line))) for line in path.read_text().splitlines())

    lost = (
        names_lost_pid(msmarco_dir / "qrels.dev.tsv", lambda line: [line.split()[2]])
        + names_lost_pid(msmarco_dir / "train.negatives.tsv", lambda line: line.split("\t")[1].split(","))
        + names_lost_pid(msmarco_dir / "runs" / "dense.trec", lambda line: [line.split()[2]])
        + names_lost_pid(msmarco_dir / "top1000.dev", lambda line: [line.split("\t")[1]])
        + names_lost_pid(msmarco_dir / "qidpidtriples.train.full.2.tsv", lambda line: line.split("\t")[1:])
    )
    # text triples naming a lost passage by its text: that text is no longer in the collection
    lost_texts = {text for pid, text in tsv(msmarco_dir / "collection.tsv") if pid in ("2", "4")}
    lost_by_text = names_lost_pid(
        msmarco_dir / "triples.train.small.tsv",
        lambda line: ["2" for text in line.split("\t")[1:] if text in lost_texts],
    )
    assert lost > 10  # the run alone names them 10 times
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["skipped_lines"] == {
        "wrong field count": 1,
        "non-UTF-8 bytes": 1,
        "unmatched title": 2,
        "duplicate qid": 1,
        "unknown pid": 1 + lost,
        "unknown passage text": lost_by_text,
    }
    assert manifest["first_skipped"]["wrong field count"].endswith(
        "collection.tsv:3: wrong field count: expected 2 tab-separated fields (pid, text), got 1"
    )
    assert manifest["first_skipped"]["unmatched title"].split(": ")[0].endswith("titles.tsv:3")
    corpus = load_from_disk(str(output / "corpus")).to_dict()
    assert len(corpus["pid"]) == 10 and "2" not in corpus["pid"] and "4" not in corpus["pid"]
    titles = dict(tsv(msmarco_dir / "titles.tsv"))
    assert corpus["title"] == [titles[pid] for pid in corpus["pid"]]  # realigned after the lost lines
    assert len(load_from_disk(str(output / "qrels/train"))) == 5
    out = capsys.readouterr().out
    assert lost_by_text == 1
    assert (
        f"skipped lines: {6 + lost + lost_by_text}" in out
        and "unknown pid" in out
        and "collection.tsv:3" in out
    )


def test_run_lines_are_stored_in_rank_order(msmarco_copy, tmp_path):
    run = msmarco_copy / "runs" / "dense.trec"
    lines = run.read_text().splitlines()
    run.write_text("\n".join(lines[:7][::-1] + lines[7:]) + "\n")  # query 100's lines in reverse
    (msmarco_copy / "runs" / "second.trec").write_text(
        "101 Q0 5 2 1.5 x\n101 Q0 9 1 2.5 x\n101 Q0 1 3 0.5 x\n"
    )
    assert prepare("msmarco", msmarco_copy, tmp_path / "data") == 0
    dense = load_from_disk(str(tmp_path / "data" / "negatives" / "dense"))
    assert dense[0]["pids"] == ["2", "4", "6", "8", "10", "1"]
    second = load_from_disk(str(tmp_path / "data" / "negatives" / "second")).to_dict()
    assert second == {"qid": ["101"], "pids": [["9", "5"]], "scores": [[2.5, 1.5]]}  # pid 1: 101's positive
    assert PreparedData(tmp_path / "data").negative_sources() == ["bm25", "dense", "second", "triples"]


def test_prepare_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--help"])
    assert exit_info.value.code == 0
    assert "--skip-bad-lines" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- building blocks
def test_id_set_bitmap_and_strings():
    ids = IdSet()
    assert ids.add("7") and ids.add("007") and ids.add("d7") and ids.add(str(2**40)) and ids.add("٣")
    assert not ids.add("7") and not ids.add("007") and not ids.add(str(2**40))
    assert "7" in ids and "007" in ids and "8" not in ids and "0" not in ids and "3" not in ids and "٣" in ids
    assert ids.add("0") and ids.add("100000") and "100000" in ids and "99999" not in ids
    assert len(ids) == 7


def test_readers_keep_tabs_and_quotes_in_the_last_field(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b'\xef\xbb\xbf1\tsay "hi"\tthere\r\n2\t"quoted, text"\r\n\r\n')
    assert list(read_fields(path, Problems(), 2, "pid, text", progress=False)) == [
        (1, ["1", 'say "hi"\tthere']),
        (2, ["2", '"quoted, text"']),
    ]
    path.write_bytes(b"a\n\nb\n")
    with pytest.raises(InputError, match=r"x.tsv:2: blank line"):
        list(read_lines(path, Problems(), progress=False))
    problems = Problems(skip_bad_lines=True)
    assert list(read_lines(path, problems, progress=False)) == [(1, "a"), (3, "b")]
    assert problems.counts == {"blank line": 1}
