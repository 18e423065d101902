"""configs/demo/pipeline_cranfield.json: it loads, its stage configs parse, and without the shared Cranfield
data it stops at the first stage with one clear line (the run itself is evidence in docs/quality.md)."""

from __future__ import annotations

from pathlib import Path

from led_hf.cli.main import main as led_main
from led_hf.pipeline.runner import Pipeline

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "demo" / "pipeline_cranfield.json"


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
    assert prepare[prepare.index("--input") + 1] == "../shared/data/cranfield"
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


def test_missing_cranfield_stops_with_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # ../shared/data/cranfield does not exist from here
    assert led_main(["pipeline", str(CONFIG), "--output", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    err = captured.out + captured.err  # the stage runs in its own process; its lines are streamed through
    assert "input folder ../shared/data/cranfield not found" in err
    assert "stage prepare" in err and not (tmp_path / "out" / "data").exists()
