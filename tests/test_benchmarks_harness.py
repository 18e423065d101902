"""`python -m benchmarks`: the harness logic (alternation, ratios, table, JSON, failing entries), not speed."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from benchmarks import __main__ as bench_main  # also puts benchmarks/ on sys.path
from benchmarks.harness import Row, alternate, format_table


def test_alternate_rotates_the_order_and_skips_warm_up():
    calls = []
    sides = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    seconds = alternate(sides, repetitions=3, warmup=1, log=False)
    assert calls == list("abc" + "bca" + "cab" + "abc")
    assert {name: len(times) for name, times in seconds.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratio_is_above_one_when_ours_is_better_either_way():
    assert Row("e", "time", ours=2.0, baseline=3.0, unit="s").ratio == pytest.approx(1.5)
    assert Row("e", "rate", ours=30.0, baseline=20.0, unit="q/s", higher_is_better=True).ratio == 1.5
    assert Row("e", "no baseline", ours=5.0, baseline=None, unit="MiB").ratio is None
    table = format_table([Row("e", "time", ours=2.0, baseline=3.0, unit="s", note="n")])
    assert "| e | time | 2 | 3 | s | 1.50x | n |" in table


def test_main_runs_entries_writes_json_and_reports_a_failing_one(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny_entry.py").write_text(
        textwrap.dedent(
            """
            from harness import Row, alternate, median

            def run(quick=False):
                seconds = alternate({"ours": lambda: sum(range(100)), "theirs": lambda: sum(range(1000))}, 2)
                return [Row("tiny", "sum", median(seconds["ours"]), median(seconds["theirs"]), "s", note=str(quick))]
            """
        )
    )
    (tmp_path / "broken_entry.py").write_text("def run(quick=False):\n    raise RuntimeError('no data')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        bench_main, "ENTRIES", {"tiny": ("tiny_entry", "a tiny entry"), "broken": ("broken_entry", "fails")}
    )
    out = tmp_path / "out.json"
    assert bench_main.main(["--quick", "--json", str(out)]) == 1  # one entry failed
    result = json.loads(out.read_text())
    assert [row["name"] for row in result["rows"]] == ["sum"]
    row = result["rows"][0]
    assert row["note"] == "True" and row["ratio"] == pytest.approx(row["baseline"] / row["ours"])
    assert result["errors"] == {"broken": "RuntimeError: no data"}
    machine = result["machine"]
    assert machine["cpu"]["cores"] >= 1 and machine["versions"]["torch"] and machine["date"]
    assert machine["auto_precision_cpu"] == "fp32"  # conftest pins LED_HF_CPU_BF16=0
    assert result["command"][:3] == ["python", "-m", "benchmarks"]
    printed = capsys.readouterr().out
    assert "| tiny | sum |" in printed and "broken: not run (RuntimeError: no data)" in printed
    assert bench_main.main(["--only", "tiny"]) == 0


def test_every_entry_module_has_a_run_function():
    import importlib

    for name, (module, _) in bench_main.ENTRIES.items():
        assert callable(importlib.import_module(module).run), name
    assert "benchmarks" in sys.modules
