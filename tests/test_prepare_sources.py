"""`led prepare` inputs beyond the basic layouts: MS MARCO triples, every file accounted for, gzip, and
Hugging Face datasets (BEIR- and Tevatron-style) read offline from local folders."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_from_disk

from led_hf.cli.main import main
from led_hf.data import triples
from led_hf.data.store import PreparedData


def prepare(fmt: str, source, output: Path, *extra: str) -> int:
    return main(
        ["prepare", "--format", fmt, "--input", str(source), "--output", str(output), "--quiet", *extra]
    )


def table(root: Path, name: str) -> dict:
    return load_from_disk(str(root / name)).to_dict()


def rows_by_qid(root: Path, name: str) -> dict[str, list[str]]:
    got = table(root, name)
    return dict(zip(got["qid"], got["pids"]))


def tsv(path: Path, columns: int) -> list[list[str]]:
    return [line.split("\t", columns - 1) for line in path.read_text(encoding="utf-8").splitlines() if line]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def nothing_written(output: Path) -> bool:
    return not output.exists() and not [
        p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")
    ]


@pytest.fixture
def msmarco_copy(tmp_path, msmarco_dir) -> Path:
    return Path(shutil.copytree(msmarco_dir, tmp_path / "msmarco_src"))


@pytest.fixture
def beir_copy(tmp_path, beir_dir) -> Path:
    return Path(shutil.copytree(beir_dir, tmp_path / "beir_src"))


# ---------------------------------------------------------------------------------------------- triples
def expected_triples(source: Path) -> dict[str, list[str]]:
    """Independent reading of the triples files: texts mapped by exact match, ids file first."""
    pid_of = {text: pid for pid, text in tsv(source / "collection.tsv", 2)}
    qid_of = {text: qid for name in ("dev", "train") for qid, text in tsv(source / f"queries.{name}.tsv", 2)}
    positives = {
        (fields[0], fields[2])
        for name in ("dev", "train")
        for fields in (line.split() for line in (source / f"qrels.{name}.tsv").read_text().splitlines())
        if int(fields[3]) > 0
    }
    pairs = [(q, n) for q, _, n in tsv(source / "qidpidtriples.train.full.2.tsv", 3)]
    pairs += [(qid_of[q], pid_of[n]) for q, _, n in tsv(source / "triples.train.small.tsv", 3)]
    out: dict[str, list[str]] = {}
    for qid, pid in pairs:
        if (qid, pid) not in positives and pid not in out.setdefault(qid, []):
            out[qid].append(pid)
    return {qid: pids for qid, pids in out.items() if pids}


def test_triples_files_become_negatives_triples(prepared_msmarco, msmarco_dir):
    expected = expected_triples(msmarco_dir)
    got = table(prepared_msmarco, "negatives/triples")
    assert dict(zip(got["qid"], got["pids"])) == expected
    assert got["qid"] == list(expected)  # one row per query, in order of first appearance
    assert all(scores == [] for scores in got["scores"])
    assert expected["100"] == ["5", "3", "8", "11"]  # ids file (not grouped by query) + one text triple
    assert "8" not in expected["102"]  # 8 is judged relevant for 102: dropped
    manifest = json.loads((prepared_msmarco / "manifest.json").read_text())
    assert manifest["counts"]["negatives/triples"] == 5
    assert manifest["notes"]["negatives/triples: positives removed"] == 1
    assert "triples" in PreparedData(prepared_msmarco).negative_sources()


def test_triples_partitions_give_the_same_groups(msmarco_copy, msmarco_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(triples, "PAIRS_PER_PARTITION", 2)  # several scratch partitions on a tiny input
    assert prepare("msmarco", msmarco_copy, tmp_path / "data") == 0
    assert rows_by_qid(tmp_path / "data", "negatives/triples") == expected_triples(msmarco_dir)


def test_text_triples_with_shared_texts_and_gzip(msmarco_copy, msmarco_dir, tmp_path):
    # passage 12 repeats passage 6's text: the positive of query 103 (judged: 6) and a negative of 100
    with open(msmarco_copy / "collection.tsv", "a", encoding="utf-8") as handle:
        handle.write("12\tSmoking causes lung cancer; quitting reduces the risk over time.\n")
    (msmarco_copy / "titles.tsv").unlink()
    text_file = msmarco_copy / "triples.train.small.tsv"
    lines = text_file.read_text(encoding="utf-8").splitlines()
    lines.append(lines[0].split("\t")[0] + "\t" + lines[0].split("\t")[1] + "\t" + lines[1].split("\t")[1])
    with gzip.open(msmarco_copy / "triples.train.small.tsv.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    text_file.unlink()  # only the .gz is left: read through gzip
    assert (
        main(
            ["prepare", "--format", "msmarco", "--input", str(msmarco_copy), "--output", str(tmp_path / "d")]
        )
        == 0
    )
    got = rows_by_qid(tmp_path / "d", "negatives/triples")
    assert got["103"] == ["9", "2"]  # the positive text matched 6 and 12; 6 is the judged one
    assert got["100"] == ["5", "3", "8", "11", "6"]  # the shared negative text: first pid in corpus order
    notes = json.loads((tmp_path / "d" / "manifest.json").read_text())["notes"]
    assert notes["negatives/triples: negative texts shared by several pids (first pid taken)"] == 1
    assert notes["negatives/triples: query or positive texts shared by several ids"] == 1


TRIPLES_BAD = [
    ("qidpidtriples.train.full.2.tsv", 3, "101\t1\t99", "unknown pid"),
    ("qidpidtriples.train.full.2.tsv", 2, "777\t0\t3", "unknown qid"),
    ("qidpidtriples.train.full.2.tsv", 4, "102\t4", "wrong field count"),
    ("qidpidtriples.train.full.2.tsv", 5, "102\t8 \t9", "bad id"),
    ("triples.train.small.tsv", 2, "no such query\tSalt\tSalt", "unknown query text"),
    (
        "triples.train.small.tsv",
        1,
        "smoking and lung cancer risk\tno such passage\tx",
        "unknown passage text",
    ),
    ("triples.train.small.tsv", 3, "only\ttwo fields", "wrong field count"),
]


@pytest.mark.parametrize(
    "filename, line, text, reason", TRIPLES_BAD, ids=[f"{r[0]}:{r[1]}" for r in TRIPLES_BAD]
)
def test_bad_triples_name_file_and_line(filename, line, text, reason, msmarco_copy, tmp_path, capsys):
    path = msmarco_copy / filename
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert prepare("msmarco", msmarco_copy, tmp_path / "data") == 1
    assert f"{filename}:{line}: {reason}" in error_line(capsys)
    assert nothing_written(tmp_path / "data")


def test_triples_source_name_clash_with_a_run(msmarco_copy, tmp_path, capsys):
    shutil.copy(msmarco_copy / "runs" / "dense.trec", msmarco_copy / "runs" / "triples.trec")
    assert prepare("msmarco", msmarco_copy, tmp_path / "data") == 1
    assert "negatives source 'triples' is already taken" in error_line(capsys)


# ---------------------------------------------------------------------------------------------- every file accounted for
@pytest.mark.parametrize(
    "fmt, unknown",
    [
        ("msmarco", "notes.txt"),
        ("msmarco", "qrels.train.tsv.bak"),
        ("msmarco", "queries.train.tsv.tmp"),
        ("msmarco", "extra/data.tsv"),
        ("msmarco", "runs/dense.txt"),
        ("beir", "corpus.json"),
        ("beir", "qrels/test.txt"),
        ("beir", "qrels/dev/x.tsv"),
    ],
)
def test_an_unknown_input_file_is_an_error(fmt, unknown, request, tmp_path, capsys):
    source = request.getfixturevalue(f"{fmt}_copy")
    (source / unknown).parent.mkdir(parents=True, exist_ok=True)
    (source / unknown).write_text("1\tx\n")
    assert prepare(fmt, source, tmp_path / "data") == 1
    err = error_line(capsys)
    shown = unknown if unknown.count("/") < 2 or unknown.startswith("extra") else "qrels/dev/"
    shown = "extra/" if unknown.startswith("extra") else shown
    assert f"unknown file(s) for --format {fmt}: {shown}" in err and "expected" in err, err
    assert nothing_written(tmp_path / "data")


def test_archives_documentation_and_hidden_files_are_listed_as_not_read(msmarco_copy, tmp_path, capsys):
    for name in ("README.md", "collectionandqueries.tar.gz", "top1000.dev.tar.gz", ".DS_Store", "LICENSE"):
        (msmarco_copy / name).write_bytes(b"x")
    shutil.copy(msmarco_copy / "qrels.dev.tsv", msmarco_copy / "qrels.dev.tsv.gz")  # not even gzip: not read
    assert (
        main(
            ["prepare", "--format", "msmarco", "--input", str(msmarco_copy), "--output", str(tmp_path / "d")]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["not_read"] == [
        ".DS_Store",
        "LICENSE",
        "README.md",
        "collectionandqueries.tar.gz",
        "qrels.dev.tsv.gz",
        "top1000.dev.tar.gz",
    ]
    assert "not read (archives, documentation, hidden files): .DS_Store, LICENSE" in capsys.readouterr().out


def test_gzipped_inputs_read_like_plain_ones(msmarco_copy, prepared_msmarco, tmp_path, capsys):
    for name in ("collection.tsv", "qrels.train.tsv", "qidpidtriples.train.full.2.tsv"):
        path = msmarco_copy / name
        path.with_name(name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert prepare("msmarco", msmarco_copy, tmp_path / "data") == 0
    for name in ("corpus", "qrels/train", "negatives/triples", "negatives/bm25"):
        assert table(tmp_path / "data", name) == table(prepared_msmarco, name)
    damaged = msmarco_copy / "qrels.train.tsv.gz"
    damaged.write_bytes(damaged.read_bytes()[:-12])
    assert prepare("msmarco", msmarco_copy, tmp_path / "again") == 1
    assert "qrels.train.tsv.gz:" in (err := error_line(capsys)) and "unreadable gzip data" in err


# ---------------------------------------------------------------------------------------------- Hugging Face datasets
def _beir_hub_folder(beir_dir: Path, root: Path) -> tuple[Path, Path]:
    """A local copy of BeIR/scifact's Hub layout: README configs corpus and queries (jsonl, the corpus
    gzipped), and a NAME-qrels dataset with test.tsv / train.tsv."""
    data, qrels = root / "tiny", root / "tiny-qrels"
    (data / "corpus").mkdir(parents=True)
    (data / "queries").mkdir()
    (data / "corpus" / "corpus.jsonl.gz").write_bytes(gzip.compress((beir_dir / "corpus.jsonl").read_bytes()))
    shutil.copy(beir_dir / "queries.jsonl", data / "queries" / "queries.jsonl")
    (data / "README.md").write_text(
        "---\nconfigs:\n- config_name: corpus\n  data_files:\n  - split: corpus\n    path: corpus/*.jsonl.gz\n"
        "- config_name: queries\n  data_files:\n  - split: queries\n    path: queries/*.jsonl\n---\n"
    )
    shutil.copytree(beir_dir / "qrels", qrels)
    return data, qrels


def test_hf_beir_style_folder_equals_the_beir_layout(beir_dir, prepared_beir, tmp_path):
    data, _ = _beir_hub_folder(beir_dir, tmp_path)
    assert prepare("hf", data, tmp_path / "out") == 0
    for name in ("corpus", "queries", "qrels/test", "qrels/train"):
        assert table(tmp_path / "out", name) == table(prepared_beir, name), name
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["format"] == "hf" and manifest["input"] == str(data.resolve())


def test_hf_beir_style_qrels_keep_string_ids_and_are_checked(beir_dir, tmp_path, capsys):
    data, qrels = _beir_hub_folder(beir_dir, tmp_path)
    elsewhere = shutil.move(qrels, tmp_path / "judgments")
    with open(Path(elsewhere) / "test.tsv", "a") as handle:
        handle.write("q200\t007\t1\n")  # a csv reader would make this 7; it is an unknown pid either way
    assert prepare("hf", data, tmp_path / "out", "--qrels", str(elsewhere)) == 1
    assert "judgments[default/test]:3: unknown pid: pid '007' is not in the corpus" in error_line(capsys)


def test_hf_beir_style_with_a_qrels_config_and_integer_ids(msmarco_dir, prepared_msmarco, tmp_path):
    """mteb's layout: configs corpus, queries and default (the qrels) in one parquet dataset, ids as int64."""
    texts, titles = dict(tsv(msmarco_dir / "collection.tsv", 2)), dict(tsv(msmarco_dir / "titles.tsv", 2))
    queries = dict(tsv(msmarco_dir / "queries.dev.tsv", 2) + tsv(msmarco_dir / "queries.train.tsv", 2))
    folder = tmp_path / "mteb"
    tables = {
        "corpus/corpus": [{"_id": int(p), "title": titles[p], "text": t} for p, t in texts.items()],
        "queries/queries": [{"_id": int(q), "text": t} for q, t in queries.items()],
    }
    for split in ("train", "dev"):
        rows = [line.split() for line in (msmarco_dir / f"qrels.{split}.tsv").read_text().splitlines()]
        tables[f"qrels/{split}"] = [
            {"query-id": int(q), "corpus-id": int(p), "score": int(r)} for q, _, p, r in rows
        ]
    for name, rows in tables.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), folder / f"{name}.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: corpus\n  data_files:\n  - split: corpus\n    path: corpus/*.parquet\n"
        "- config_name: queries\n  data_files:\n  - split: queries\n    path: queries/*.parquet\n"
        "- config_name: default\n  data_files:\n  - split: train\n    path: qrels/train.parquet\n"
        "  - split: dev\n    path: qrels/dev.parquet\n---\n"
    )
    assert prepare("hf", folder, tmp_path / "out") == 0
    assert table(tmp_path / "out", "corpus") == table(prepared_msmarco, "corpus")
    for split in ("train", "dev"):
        assert table(tmp_path / "out", f"qrels/{split}") == table(prepared_msmarco, f"qrels/{split}")


def _tevatron_folder(msmarco_dir: Path, root: Path) -> Path:
    """Tevatron/msmarco-passage's layout built from the tiny MS MARCO fixture: one row per query."""
    texts = dict(tsv(msmarco_dir / "collection.tsv", 2))
    titles = dict(tsv(msmarco_dir / "titles.tsv", 2))
    negatives = {qid: pids.split(",") for qid, pids in tsv(msmarco_dir / "train.negatives.tsv", 2)}
    folder = root / "tevatron"
    (folder / "data").mkdir(parents=True)
    for split in ("train", "dev"):
        positives: dict[str, list[str]] = {}
        for line in (msmarco_dir / f"qrels.{split}.tsv").read_text().splitlines():
            qid, _, pid, _ = line.split()
            positives.setdefault(qid, []).append(pid)
        rows = [
            {
                "query_id": qid,
                "query": text,
                "positive_passages": [
                    {"docid": p, "title": titles[p], "text": texts[p]} for p in positives[qid]
                ],
                "negative_passages": [
                    {"docid": p, "title": titles[p], "text": texts[p]} for p in negatives.get(qid, [])
                ],
            }
            for qid, text in tsv(msmarco_dir / f"queries.{split}.tsv", 2)
        ]
        pq.write_table(pa.Table.from_pylist(rows), folder / "data" / f"{split}-00000-of-00001.parquet")
    corpus = root / "tevatron-corpus"
    corpus.mkdir()
    with open(corpus / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for pid, text in texts.items():
            handle.write(json.dumps({"docid": pid, "title": titles[pid], "text": text}) + "\n")
    return folder


def test_hf_tevatron_style_folder(msmarco_dir, prepared_msmarco, tmp_path):
    folder = _tevatron_folder(msmarco_dir, tmp_path)
    assert prepare("hf", folder, tmp_path / "out") == 0
    out, reference = tmp_path / "out", prepared_msmarco
    assert sorted(zip(*table(out, "queries").values())) == sorted(zip(*table(reference, "queries").values()))
    for split in ("train", "dev"):
        expected = table(reference, f"qrels/{split}")
        assert table(out, f"qrels/{split}") == {**expected, "score": [1] * len(expected["qid"])}
    assert rows_by_qid(out, "negatives/hf") == rows_by_qid(
        reference, "negatives/bm25"
    )  # positives dropped too
    corpus, full = table(out, "corpus"), table(reference, "corpus")
    met = {
        pid
        for row in pq.read_table(folder / "data" / "train-00000-of-00001.parquet").to_pylist()
        for key in ("positive_passages", "negative_passages")
        for pid in (p["docid"] for p in row[key])
    }
    assert set(corpus["pid"]) == met | {"2", "8"}  # train rows' passages + the dev positives
    by_pid = {pid: (title, text) for pid, title, text in zip(*full.values())}
    assert all(by_pid[pid] == (title, text) for pid, title, text in zip(*corpus.values()))

    # with --corpus: the whole collection, in its order
    assert (
        prepare(
            "hf",
            folder,
            tmp_path / "full",
            "--corpus",
            str(tmp_path / "tevatron-corpus"),
            "--negatives-name",
            "bm25",
        )
        == 0
    )
    assert table(tmp_path / "full", "corpus") == full
    assert rows_by_qid(tmp_path / "full", "negatives/bm25") == rows_by_qid(reference, "negatives/bm25")


def _rewrite_train(folder: Path, change) -> None:
    path = folder / "data" / "train-00000-of-00001.parquet"
    rows = pq.read_table(path).to_pylist()
    change(rows)
    pq.write_table(pa.Table.from_pylist(rows), path)


HF_BAD = [
    (lambda rows: rows[1].update(query_id="1 01"), ":2: bad id: query_id '1 01' contains whitespace"),
    (lambda rows: rows[2].update(query_id=rows[0]["query_id"]), ":3: duplicate qid"),
    (lambda rows: rows[3].update(positive_passages=[]), ":4: bad record: positive_passages is empty"),
    (
        lambda rows: rows[4]["negative_passages"][0].update(text="another text"),
        ":5: conflicting passage: docid '9' has another title or text",
    ),
]


@pytest.mark.parametrize("change, message", HF_BAD, ids=[m.split(": ")[1] for _, m in HF_BAD])
def test_hf_tevatron_bad_rows_name_the_row(change, message, msmarco_dir, tmp_path, capsys):
    folder = _tevatron_folder(msmarco_dir, tmp_path)
    _rewrite_train(folder, change)
    assert prepare("hf", folder, tmp_path / "out") == 1
    err = error_line(capsys)
    assert f"{folder}[default/train]{message}" in err, err
    assert nothing_written(tmp_path / "out")


def test_hf_errors_are_one_line(tmp_path, capsys, beir_dir):
    assert prepare("hf", "no-such-user/no-such-dataset", tmp_path / "a") == 1
    assert "cannot load dataset 'no-such-user/no-such-dataset'" in error_line(capsys)
    other = tmp_path / "other"
    other.mkdir()
    (other / "train.jsonl").write_text('{"a": 1, "b": "x"}\n')
    assert prepare("hf", other, tmp_path / "b") == 1
    assert "neither BEIR-style (configs corpus and queries) nor Tevatron-style" in error_line(capsys)
    scripted = tmp_path / "scripted"
    scripted.mkdir()
    (scripted / "scripted.py").write_text("import datasets\n")
    assert prepare("hf", scripted, tmp_path / "s") == 1
    assert "no loading script: download the data files" in error_line(capsys)
    data, _ = _beir_hub_folder(beir_dir, tmp_path)
    assert prepare("hf", data, tmp_path / "c", "--corpus", "x") == 1
    assert "--corpus is for Tevatron-style data" in error_line(capsys)
    assert prepare("beir", data, tmp_path / "d", "--config", "x") == 1
    assert "--config only apply to --format hf" in error_line(capsys)
