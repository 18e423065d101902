"""configs/demo/pipeline_cranfield.json: it loads, its stage configs parse, it reads Cranfield from the
folder `--set cranfield=PATH` names (default data/cranfield, inside the repo), and without that folder it
stops before the first stage with one line naming the option (the run itself is evidence in
docs/quality.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from led_hf.cli.main import main as led_main
from led_hf.pipeline.runner import Pipeline

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo" / "pipeline_cranfield.json"
SHARED_CRANFIELD = ROOT.parent / "shared" / "data" / "cranfield"


def test_the_pipeline_and_its_stage_configs_load():
    from led_hf.arguments import (
        DataArguments,
        DenseTrainingArguments,
        LEDTrainingArguments,
        ModelArguments,
        SpladeModelArguments,
        SpladeTrainingArguments,
    )
    from led_hf.config import parse_arguments

    pipeline = Pipeline.from_file(CONFIG, output="unused")
    names = [stage.name for stage in pipeline.stages]
    assert names[0] == "prepare" and {"den-warmup", "lex-warmup", "lex-continue", "led"} <= set(names)
    prepare = pipeline.stages[0].commands[0]
    assert prepare[prepare.index("--input") + 1] == "data/cranfield"
    mine = Pipeline.from_file(CONFIG, output="unused", settings={"cranfield": "/somewhere/cranfield"})
    assert mine.stages[0].commands[0][prepare.index("--input") + 1] == "/somewhere/cranfield"
    assert prepare[prepare.index("--dev-from-train") + 1] == "0.2"
    flags = ["--output_dir", "unused", "--use_cpu", "true"]
    for name, types, extra in (
        ("den", (ModelArguments, DataArguments, DenseTrainingArguments), []),
        ("lex", (SpladeModelArguments, DataArguments, SpladeTrainingArguments), []),
        ("led", (ModelArguments, DataArguments, LEDTrainingArguments), ["--model_name_or_path", "x"]),
    ):
        path = ROOT / "configs" / "demo" / f"{name}_cranfield.json"
        extra += ["--teacher_model_name_or_path", "y"] if name == "led" else []
        _, data, training = parse_arguments(types, [str(path), *flags, *extra])
        assert data.group_by == "query" and data.positive_min_score == 1
        assert training.mask_false_negatives and training.no_duplicates_in_batch


def test_missing_cranfield_stops_with_one_line_naming_the_option(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # data/cranfield does not exist from here
    for extra in ([], ["--set", f"cranfield={tmp_path / 'nowhere'}"], ["--dry-run"]):
        assert led_main(["pipeline", str(CONFIG), "--output", str(tmp_path / "out"), *extra]) == 1
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        assert len(lines) == 1 and "stage prepare" in lines[0], captured.err
        assert "--set cranfield=PATH" in lines[0] and "BEIR layout" in lines[0]
        assert not captured.out and not (tmp_path / "out" / "data").exists()  # no stage started


@pytest.mark.skipif(not SHARED_CRANFIELD.is_dir(), reason=f"no Cranfield copy at {SHARED_CRANFIELD}")
def test_set_points_the_pipeline_at_a_cranfield_copy(tmp_path, capsys):
    settings = ["--set", f"cranfield={SHARED_CRANFIELD}", "--output", str(tmp_path / "out")]
    assert led_main(["pipeline", str(CONFIG), *settings, "--dry-run"]) == 0
    assert f"in  {SHARED_CRANFIELD} (file)" in capsys.readouterr().out
    assert led_main(["pipeline", str(CONFIG), "--set", "cranfeld=x"]) == 1
    assert (
        "--set cranfeld: the config declares no such variable (it has: cranfield)" in capsys.readouterr().err
    )
