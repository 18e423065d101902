"""Run families of bad input and kill -9 points through the real `led` CLI and tabulate what each gives.

    python benchmarks/fault_matrix.py [--workspace DIR] [--markdown docs-table.md]

Every case is a fresh `python -m led_hf ...` subprocess over the tiny BEIR fixture (tests/fixtures/beir_tiny)
and the bundled MiniLM. Recorded per case: the exit code, whether stderr is one line, whether it names the
file or option at fault, whether a Python traceback appeared, and whether any output was left at the path
the command was asked to write. A case passes when it exits non-zero with one line naming what is wrong,
no traceback and no output (a kill -9 case: the rerun completes and its output equals a clean run's).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "beir_tiny"
MODEL = "bundled:all-minilm-l6-v2"


def led(*argv, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "led_hf", *map(str, argv)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


class Matrix:
    def __init__(self, work: Path):
        self.work = work
        self.rows: list[dict] = []

    def case(self, family: str, name: str, argv: list, names: str, output: str | None = None) -> dict:
        """Run `led argv`; `names` must appear in the error line; `output` must not exist afterwards.

        In this process (the `led` entry point `led_hf.cli.main.main`, imports paid once): an exception
        escaping it is what `python -m led_hf` would print as a traceback, and is recorded as one."""
        from led_hf.cli.main import main as led_main

        started = time.perf_counter()
        err, out = io.StringIO(), io.StringIO()
        traceback_text = ""
        cwd = os.getcwd()
        os.chdir(self.work)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = led_main([str(arg) for arg in argv])
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        except BaseException:  # noqa: BLE001 - the point is to see any of them
            code, traceback_text = 1, traceback.format_exc()
        finally:
            os.chdir(cwd)
        stderr = err.getvalue() + traceback_text
        lines = [line for line in stderr.splitlines() if line.strip() and not _noise(line)]
        left = bool(output) and (self.work / output).exists()
        row = {
            "family": family,
            "case": name,
            "exit": code,
            "one_line": len(lines) == 1,
            "names_it": bool(lines) and names in lines[-1],
            "traceback": bool(traceback_text) or "Traceback" in stderr,
            "output_left": left,
            "message": lines[-1][:160] if lines else "",
            "seconds": round(time.perf_counter() - started, 1),
        }
        row["ok"] = (
            row["exit"] != 0 and row["one_line"] and row["names_it"] and not row["traceback"] and not left
        )
        self.rows.append(row)
        print(
            f"{'ok ' if row['ok'] else 'BAD'} {family:<18} {name:<44} exit {row['exit']}  {row['message']}",
            flush=True,
        )
        return row

    def kill_case(self, name: str, argv: list, output: str, after_s: float, reference: str) -> dict:
        """Start `led argv`, SIGKILL it after `after_s` seconds, rerun to completion, compare with a clean run."""
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "led_hf", *map(str, argv)], cwd=self.work, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(after_s)
        killed = process.poll() is None
        if killed:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        target = self.work / output
        half = target.exists() and not (target / "manifest.json").exists() and not _is_dataset(target)
        rerun = led(*argv, cwd=self.work)
        same = rerun.returncode == 0 and _content_digest(target) == reference
        leftovers = sorted(
            p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")
        )  # staging, trash or lock beside the output
        row = {
            "family": "kill -9",
            "case": f"{name} (killed at {after_s}s{'' if killed else ', had finished'})",
            "exit": rerun.returncode,
            "one_line": True,
            "names_it": True,
            "traceback": "Traceback" in rerun.stderr,
            "output_left": half,
            "message": "rerun identical to a clean run" if same else f"rerun differs: {rerun.stderr[-160:]}",
            "seconds": 0.0,
        }
        row["ok"] = same and not half and not leftovers and not row["traceback"]
        if leftovers:
            row["message"] += f"; left {', '.join(leftovers)}"
        self.rows.append(row)
        print(
            f"{'ok ' if row['ok'] else 'BAD'} kill -9            {row['case']:<44} {row['message']}",
            flush=True,
        )
        return row


def _noise(line: str) -> bool:
    """Progress bars, library warnings and led's own `note:` lines are not the error line."""
    return line.startswith("note: ") or any(
        marker in line
        for marker in ("it/s]", "Loading weights", "Writing model", "warnings.warn", "Warning:")
    )


def _is_dataset(path: Path) -> bool:
    return (path / "state.json").exists() or (path / "dataset_info.json").exists()


def build_workspace(work: Path) -> None:
    """data (prepared fixture), data2 (a second copy: another dataset), enc/{corpus,queries}, a run."""
    for name in ("data", "data2"):
        done = led("prepare", "--format", "beir", "--input", FIXTURE, "--output", name, "--quiet", cwd=work)
        assert done.returncode == 0, done.stderr
    for what, folder, data in (
        ("--corpus", "enc/corpus", "data"), ("--queries", "enc/queries", "data"),
        ("--queries", "enc/queries-data2", "data2"),
    ):  # fmt: skip
        done = led(
            "encode", "--model", MODEL, "--data", data, what, "--output", folder, "--no-progress", cwd=work
        )
        assert done.returncode == 0, done.stderr
    done = led(
        "search", "--passages", "enc/corpus", "--queries", "enc/queries", "--output", "run.trec", cwd=work
    )
    assert done.returncode == 0, done.stderr
    (work / "plain.txt").write_text("not a folder\n", encoding="utf-8")
    (work / "keepme").mkdir()
    (work / "keepme" / "keep.txt").write_text("user file\n", encoding="utf-8")
    (work / "latin1.trec").write_bytes(b"q200 Q0 d1 1 2.0 t\nq200 Q0 d\xe92 2 1.0 t\n")
    (work / "short.trec").write_text("q200 Q0 d1 1\n", encoding="utf-8")
    (work / "nan.trec").write_text("q200 Q0 d1 1 nan t\n", encoding="utf-8")
    (work / "bad.json").write_text('{"data": "data",\n "model_name_or_path": }\n', encoding="utf-8")
    for name, values in {
        "neg15.json": {"num_negatives": 1.5},
        "neglist.json": {"num_negatives": [4]},
        "lrdict.json": {"learning_rate": {"value": 1}},
        "boolbad.json": {"bf16": "perhaps"},
        "bszero.json": {"per_device_train_batch_size": 0},
    }.items():
        base = {"model_name_or_path": MODEL, "data": "data", "output_dir": f"out-{name[:-5]}"}
        (work / name).write_text(json.dumps({**base, **values}), encoding="utf-8")


def run_cases(m: Matrix) -> None:
    train = ["train", "dense", "--model_name_or_path", MODEL, "--data", "data", "--output_dir", "out-train"]
    search = ["search", "--passages", "enc/corpus", "--output", "out.trec"]
    evaluate = ["evaluate", "--data", "data", "--split", "test"]
    # bad numbers
    m.case(
        "bad numbers",
        "train --num_negatives 1.5",
        [*train, "--num_negatives", "1.5"],
        "--num_negatives",
        "out-train",
    )
    m.case(
        "bad numbers",
        "train --learning_rate -0.1",
        [*train, "--learning_rate", "-0.1"],
        "--learning_rate",
        "out-train",
    )
    m.case(
        "bad numbers",
        "train --per_device_train_batch_size 0",
        [*train, "--per_device_train_batch_size", "0"],
        "--per_device_train_batch_size",
        "out-train",
    )
    m.case(
        "bad numbers",
        "train --num_train_epochs nan",
        [*train, "--num_train_epochs", "nan"],
        "--num_train_epochs",
        "out-train",
    )
    m.case(
        "bad numbers",
        "config num_negatives: 1.5",
        ["train", "dense", "neg15.json"],
        "num_negatives",
        "out-neg15",
    )
    m.case(
        "bad numbers",
        "config num_negatives: [4]",
        ["train", "dense", "neglist.json"],
        "num_negatives",
        "out-neglist",
    )
    m.case(
        "bad numbers",
        "config learning_rate: {...}",
        ["train", "dense", "lrdict.json"],
        "learning_rate",
        "out-lrdict",
    )
    m.case(
        "bad numbers",
        "config per_device_train_batch_size: 0",
        ["train", "dense", "bszero.json"],
        "per_device_train_batch_size",
        "out-bszero",
    )
    m.case(
        "bad numbers",
        "encode --max-length 0",
        ["encode", "--model", MODEL, "--data", "data", "--corpus", "--output", "e0", "--max-length", "0"],
        "--max-length",
        "e0",
    )
    m.case(
        "bad numbers",
        "encode --max-length -5",
        ["encode", "--model", MODEL, "--data", "data", "--corpus", "--output", "e5", "--max-length", "-5"],
        "--max-length",
        "e5",
    )
    m.case(
        "bad numbers",
        "encode --batch-size 0",
        ["encode", "--model", MODEL, "--data", "data", "--corpus", "--output", "eb", "--batch-size", "0"],
        "--batch-size",
        "eb",
    )
    m.case(
        "bad numbers",
        "search --depth 1.5",
        [*search, "--queries", "enc/queries", "--depth", "1.5"],
        "--depth",
        "out.trec",
    )
    m.case(
        "bad numbers",
        "bm25 --k1 -1",
        ["bm25", "--data", "data", "--split", "test", "--output", "b.trec", "--k1", "-1"],
        "--k1",
        "b.trec",
    )
    m.case(
        "bad numbers",
        "mine --keep 0",
        ["mine", "--data", "data", "--name", "k0", "--bm25", "--keep", "0"],
        "--keep",
        "data/negatives/k0",
    )
    m.case(
        "bad numbers",
        "evaluate --mrr-depth x",
        [*evaluate, "--run", "run.trec", "--mrr-depth", "x"],
        "--mrr-depth",
    )
    m.case(
        "bad numbers",
        "prepare --batch-size 0",
        ["prepare", "--format", "beir", "--input", FIXTURE, "--output", "p0", "--batch-size", "0"],
        "--batch-size",
        "p0",
    )
    # bad booleans and unknown options
    m.case("bad booleans", "train --bf16 perhaps", [*train, "--bf16", "perhaps"], "--bf16", "out-train")
    m.case("bad booleans", "config bf16: perhaps", ["train", "dense", "boolbad.json"], "bf16", "out-boolbad")
    m.case(
        "bad options",
        "train --no_such_flag 1",
        [*train, "--no_such_flag", "1"],
        "--no_such_flag",
        "out-train",
    )
    m.case("bad options", "led frobnicate", ["frobnicate"], "frobnicate")
    m.case("bad options", "config file not JSON", ["train", "dense", "bad.json"], "bad.json:2")
    # bad ids and bad files
    m.case("bad files", "evaluate a latin-1 run", [*evaluate, "--run", "latin1.trec"], "latin1.trec:2")
    m.case("bad files", "evaluate a run with 4 fields", [*evaluate, "--run", "short.trec"], "short.trec:1")
    m.case("bad files", "evaluate a run with a nan score", [*evaluate, "--run", "nan.trec"], "nan.trec:1")
    m.case(
        "bad ids",
        "evaluate --split nosuch",
        ["evaluate", "--data", "data", "--split", "nosuch", "--run", "run.trec"],
        "nosuch",
    )
    # wrong paths and unwritable outputs
    m.case(
        "wrong paths", "search --queries missing/", [*search, "--queries", "missing"], "missing", "out.trec"
    )
    m.case(
        "wrong paths",
        "prepare --output under a file",
        ["prepare", "--format", "beir", "--input", FIXTURE, "--output", "plain.txt/out"],
        "plain.txt",
        "plain.txt/out",
    )
    m.case(
        "wrong paths",
        "search --output /proc/run.trec",
        [*search, "--queries", "enc/queries", "--output", "/proc/run.trec"],
        "/proc",
    )
    m.case(
        "wrong paths",
        "evaluate --output under a file",
        [*evaluate, "--run", "run.trec", "--output", "plain.txt/m.json"],
        "plain.txt",
    )
    m.case(
        "wrong paths",
        "encode --model missing",
        ["encode", "--model", "nomodel", "--data", "data", "--corpus", "--output", "em"],
        "nomodel",
        "em",
    )
    m.case(
        "overwrite",
        "prepare --overwrite a user folder",
        ["prepare", "--format", "beir", "--input", FIXTURE, "--output", "keepme", "--overwrite"],
        "keepme",
    )
    m.case(
        "overwrite",
        "prepare --overwrite a file",
        ["prepare", "--format", "beir", "--input", FIXTURE, "--output", "plain.txt", "--overwrite"],
        "plain.txt",
    )
    # mismatched folders
    m.case(
        "mismatched folders",
        "search: queries of another dataset",
        [*search, "--queries", "enc/queries-data2"],
        "data",
        "out.trec",
    )
    m.case(
        "mismatched folders",
        "search: queries folder as passages",
        ["search", "--passages", "enc/queries", "--queries", "enc/queries", "--output", "out.trec"],
        "--passages",
        "out.trec",
    )
    m.case(
        "mismatched folders",
        "search: passages folder as queries",
        ["search", "--passages", "enc/corpus", "--queries", "enc/corpus", "--output", "out.trec"],
        "--queries",
        "out.trec",
    )
    m.case(
        "mismatched folders",
        "search --index with a dense folder",
        ["search", "--index", "enc/corpus", "--queries", "enc/queries", "--output", "out.trec"],
        "enc/corpus",
        "out.trec",
    )
    m.case(
        "mismatched folders",
        "index --vectors of a dense encoding",
        ["index", "--vectors", "enc/corpus", "--output", "idx"],
        "enc/corpus",
        "idx",
    )


def run_kills(m: Matrix) -> None:
    prepare = ["prepare", "--format", "beir", "--input", FIXTURE, "--quiet", "--overwrite", "--output"]
    done = led(*prepare, "clean-prep", cwd=m.work)
    assert done.returncode == 0, done.stderr
    reference = _content_digest(m.work / "clean-prep")
    for after in (1.0, 3.0, 6.0):
        shutil.rmtree(m.work / "killed-prep", ignore_errors=True)
        m.kill_case("prepare", [*prepare, "killed-prep"], "killed-prep", after, reference)
    encode = [
        "encode",
        "--model",
        MODEL,
        "--data",
        "data",
        "--corpus",
        "--num-shards",
        "3",
        "--no-progress",
        "--output",
    ]
    done = led(*encode, "clean-enc", cwd=m.work)
    assert done.returncode == 0, done.stderr
    reference = _content_digest(m.work / "clean-enc")
    for after in (25.0,):  # a CPU process under load needs ~20 s to import torch and load the model
        shutil.rmtree(m.work / "killed-enc", ignore_errors=True)
        row = m.kill_case("encode", [*encode, "killed-enc"], "killed-enc", after, "")
        same = _content_digest(m.work / "killed-enc") == reference
        row["ok"] = same and not row["traceback"] and "left" not in row["message"]
        row["message"] = (
            ("rerun identical to a clean run" if same else "rerun differs")
            + row["message"].partition(";")[1]
            + row["message"].partition(";")[2]
        )


def _content_digest(folder: Path) -> str:
    """Every file but manifest.json (it records absolute paths and timings, which differ between two runs)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    return hashlib.sha256(
        b"".join(str(p.relative_to(folder)).encode() + p.read_bytes() for p in files)
    ).hexdigest()


def markdown(rows: list[dict]) -> str:
    head = "| family | case | exit | one line | names it | traceback | output left | result | message |\n"
    head += "|---|---|---|---|---|---|---|---|---|\n"
    yes = {True: "yes", False: "no"}
    body = "".join(
        f"| {r['family']} | {r['case']} | {r['exit']} | {yes[r['one_line']]} | {yes[r['names_it']]} | "
        f"{yes[r['traceback']]} | {yes[r['output_left']]} | {'ok' if r['ok'] else '**BAD**'} | "
        f"{r['message'].replace('|', '/').replace('`', '')} |\n"
        for r in rows
    )
    return head + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", help="folder to work in (default: a temporary one, removed after)")
    parser.add_argument("--markdown", help="also write the table as markdown to this file")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill -9 cases")
    args = parser.parse_args()
    work = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="led-fault-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        build_workspace(work)
        matrix = Matrix(work)
        run_cases(matrix)
        if not args.no_kill:
            run_kills(matrix)
    finally:
        if not args.workspace:
            shutil.rmtree(work, ignore_errors=True)
    bad = [r for r in matrix.rows if not r["ok"]]
    print(f"\n{len(matrix.rows)} cases, {len(matrix.rows) - len(bad)} ok, {len(bad)} bad")
    if args.markdown:
        Path(args.markdown).write_text(markdown(matrix.rows), encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(matrix.rows, indent=2) + "\n", encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
