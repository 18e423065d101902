"""Bad options, unwritable paths and leaked tokens through the real `led` entry point (issue 13 items 5, 8):
one line on stderr naming the option or path, a non-zero exit, nothing written, no token printed."""

from __future__ import annotations

import json
import os

import pytest

from led_hf.cli.main import main
from led_hf.errors import LedError
from led_hf.pipeline.runner import Pipeline
from led_hf.secrets import MASK, mask_command

TOKEN = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"


def run_led(capsys, *argv) -> tuple[int, list[str]]:
    code = main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def train_config(tmp_path):
    def write(**values):
        path = tmp_path / "config.json"
        base = {"model_name_or_path": str(tmp_path / "no-model"), "data": str(tmp_path / "no-data")}
        path.write_text(json.dumps({**base, "output_dir": str(tmp_path / "out"), **values}), encoding="utf-8")
        return path

    return write


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--num_negatives", "1.5"], "--num_negatives: expected an integer, got 1.5 (see --help)"),
        (["--learning_rate", "fast"], "--learning_rate: expected a number, got fast (see --help)"),
        (["--bf16", "maybe"], "--bf16: Truthy value expected"),
        (["--no_such_option", "1"], "unknown option(s) --no_such_option 1 (see --help)"),
    ],
)
def test_a_bad_flag_is_one_line_not_the_usage_dump(capsys, train_config, flags, expected):
    code, lines = run_led(capsys, "train", "dense", train_config(), *flags)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("led train dense: error: ") and expected in lines[0]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"num_negatives": 1.5}, "option num_negatives: expected an integer, got 1.5"),
        ({"num_negatives": [3]}, "option num_negatives: expected an integer, got [3]"),
        ({"learning_rate": {"a": 1}}, 'option learning_rate: expected a number, got {"a": 1}'),
        ({"per_device_train_batch_size": True}, "expected an integer, got true"),
        ({"bf16": "maybe"}, 'option bf16: expected a boolean, got "maybe"'),
        ({"negs_sources": [["bm25"]]}, "option negs_sources: expected a single value"),
    ],
)
def test_config_values_have_the_option_type(capsys, train_config, values, expected):
    """1.5 negatives used to be truncated to 1 (and recorded as 1.5), a list taken for its text."""
    code, lines = run_led(capsys, "train", "dense", train_config(**values))
    assert code == 1 and len(lines) == 1 and expected in lines[0] and "config.json" in lines[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--learning_rate", "-0.001"], "--learning_rate: must be >= 0.0, got -0.001"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size: must be >= 1, got 0"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps: must be >= 1, got 0"),
        (["--learning_rate", "nan"], "--learning_rate: must be >= 0.0, got nan"),
    ],
)
def test_training_ranges_are_checked_before_any_model_loads(capsys, train_config, flags, expected):
    """The model and data folders do not exist: the range error must come first."""
    code, lines = run_led(capsys, "train", "dense", train_config(), *flags)
    assert code == 1 and len(lines) == 1 and expected in lines[0]


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "[3]"])
def test_encode_max_length_must_be_a_positive_integer(capsys, tmp_path, value):
    """--max-length 0 silently became 128; -5 crashed in the tokenizer."""
    code, lines = run_led(
        capsys, "encode", "--model", tmp_path, "--data", tmp_path, "--corpus", "--output", tmp_path / "enc",
        "--max-length", value,
    )  # fmt: skip
    assert code == 2 and len(lines) == 1
    assert f"--max-length: expected a positive integer, got {value} (see --help)" in lines[0]
    assert not (tmp_path / "enc").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--passages", "p", "--queries", "q", "--output", "r", "--depth", "0"],
        ["search", "--passages", "p", "--queries", "q", "--output", "r", "--batch-size", "-1"],
        ["bm25", "--data", "d", "--split", "s", "--output", "o", "--k1", "-0.5"],
        ["mine", "--data", "d", "--name", "n", "--bm25", "--skip-top", "-1"],
        ["evaluate", "--data", "d", "--split", "s", "--run", "r", "--recall-depths", "10", "0"],
        ["prepare", "--format", "beir", "--input", "i", "--output", "o", "--batch-size", "0"],
        ["rerank", "--model", "m", "--data", "d", "--run", "r", "--output", "o", "--depth", "1.5"],
    ],
)
def test_command_counts_are_checked_by_the_parser(capsys, argv):
    code, lines = run_led(capsys, *argv)
    assert code == 2 and len(lines) == 1 and "(see --help)" in lines[0] and "expected" in lines[0]


def test_an_unknown_command_is_one_line(capsys):
    code, lines = run_led(capsys, "frobnicate")
    assert code == 2 and len(lines) == 1 and "unknown command 'frobnicate'" in lines[0]
    code, lines = run_led(capsys, "train", "densee")
    assert code == 2 and len(lines) == 1 and "unknown method 'densee'" in lines[0]


def test_an_os_error_is_one_line_naming_the_path(capsys, tmp_path, beir_dir):
    """An output under a regular file raised NotADirectoryError with a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    code, lines = run_led(
        capsys, "prepare", "--format", "beir", "--input", beir_dir, "--output", blocker / "out"
    )
    assert code == 1 and len(lines) == 1 and str(blocker) in lines[0] and "Traceback" not in lines[0]


def test_a_run_that_is_not_utf8_names_file_and_line(capsys, tmp_path, prepared_beir):
    run = tmp_path / "run.trec"
    run.write_bytes(b"q1 Q0 d1 1 2.0 t\nq1 Q0 d\xff2 2 1.0 t\n")
    code, lines = run_led(capsys, "evaluate", "--data", prepared_beir, "--split", "test", "--run", run)
    assert code == 1 and len(lines) == 1 and f"{run}:2: not UTF-8" in lines[0]


def test_evaluate_warns_about_foreign_pids_and_matches_bom_qids(capsys, tmp_path, prepared_beir):
    from led_hf.data.store import PreparedData

    data = PreparedData(prepared_beir)
    qrels = data.qrels_dict("test")
    qid, judged = next(iter(qrels.items()))
    pid = next(iter(judged))
    run = tmp_path / "run.trec"
    run.write_text(f"\ufeff{qid} Q0 {pid} 1 2.0 t\n{qid} Q0 not-a-pid 2 1.0 t\n", encoding="utf-8")
    code = main(["evaluate", "--data", str(prepared_beir), "--split", "test", "--run", str(run)])
    captured = capsys.readouterr()
    assert code == 0
    assert "byte-order mark" in captured.err and "1 of 2 passage ids are not in the corpus" in captured.err
    metrics = json.loads(captured.out)
    assert metrics["num_queries_retrieved"] == 1 and metrics["mrr@10"] == pytest.approx(1 / len(qrels))


def test_mask_command_hides_token_values_and_token_shapes():
    argv = [
        "train",
        "dense",
        "--hub_token",
        TOKEN,
        "--token=abc",
        "--hub-token",
        "x",
        "--note",
        f"use {TOKEN}",
    ]
    masked = mask_command(argv)
    assert masked == ["train", "dense", "--hub_token", MASK, f"--token={MASK}", "--hub-token", MASK,
                      "--note", f"use {MASK}"]  # fmt: skip
    assert mask_command(["--max_tokens", "5"]) == ["--max_tokens", "5"]
    assert mask_command(["--output", "hf_short"]) == ["--output", "hf_short"]


def test_pipeline_prints_and_raises_without_the_token(capsys, tmp_path):
    """`--hub_token hf_...` was printed before each stage command and again in its error message."""
    config = tmp_path / "pipeline.json"
    stage = {"name": "s", "commands": [["train", "dense", "--hub_token", TOKEN, "--push_to_hub", "true"]]}
    config.write_text(json.dumps({"output": str(tmp_path / "out"), "stages": [stage]}), encoding="utf-8")
    pipeline = Pipeline.from_file(config)
    with pytest.raises(LedError) as failure:
        pipeline.run(lambda argv, launcher=None: 3)
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err and TOKEN not in str(failure.value)
    assert f"--hub_token {MASK}" in printed.out and "exit 3" in str(failure.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_is_one_line(capsys, tmp_path, beir_dir):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    code, lines = run_led(
        capsys, "prepare", "--format", "beir", "--input", beir_dir, "--output", locked / "o"
    )
    assert code == 1 and len(lines) == 1 and str(locked) in lines[0]


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe{}"])
def test_a_pipeline_config_that_is_no_json_object_is_one_line(capsys, tmp_path, content):
    config = tmp_path / "pipeline.json"
    config.write_bytes(content)
    code, lines = run_led(capsys, "pipeline", config)
    assert code == 1 and len(lines) == 1 and str(config) in lines[0]


def test_an_encoding_manifest_that_is_not_utf8_is_one_line(capsys, tmp_path):
    for side in ("p", "q"):
        (tmp_path / side).mkdir()
        (tmp_path / side / "manifest.json").write_bytes(b'{"kind": "d\xe9nse"}')
    code, lines = run_led(
        capsys,
        "search",
        "--passages",
        tmp_path / "p",
        "--queries",
        tmp_path / "q",
        "--output",
        tmp_path / "r",
    )
    assert code == 1 and len(lines) == 1 and "manifest.json: not UTF-8" in lines[0]
