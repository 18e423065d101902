"""`led pipeline`: stages run as child processes (resume, failure, streamed output), `--dry-run` plans and
checks, the MS MARCO recipe config plans, and a tiny MS MARCO recipe runs end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from led_hf.cli.main import main as led
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.pipeline.runner import Pipeline

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path, stages, name="pipeline.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"output": str(tmp_path / "out"), "stages": stages}))
    return path


def _prepare_stage(msmarco_dir) -> dict:
    return {
        "name": "prepare",
        "description": "tiny MS MARCO -> Arrow",
        "commands": [
            ["prepare", "--format", "msmarco", "--input", str(msmarco_dir), "--output", "{output}/data"]
        ],
    }


def _bm25_stage() -> dict:
    return {
        "name": "bm25",
        "commands": [["bm25", "--data", "{output}/data", "--split", "dev", "--output", "{output}/bm25.trec"]],
        "evaluate": {"data": "{output}/data", "split": "dev", "run": "{output}/bm25.trec"},
    }


def test_stages_run_in_child_processes_resume_and_stop_on_failure(msmarco_dir, tmp_path, capfd):
    config = _config(tmp_path, [_prepare_stage(msmarco_dir), _bm25_stage()])
    assert led(["pipeline", str(config)]) == 0
    out = capfd.readouterr().out
    assert "$ led prepare --format msmarco" in out and "| bm25 | 1.0000" in out
    assert "searched 2 queries" in out  # the child process's own output, streamed
    record = json.loads((tmp_path / "out" / "stages" / "bm25.json").read_text())
    assert 0 <= record["metrics"]["ndcg@10"] <= 1
    assert len(PreparedData(tmp_path / "out" / "data").corpus) > 0

    # a rerun skips both complete stages: nothing is run
    calls = []
    Pipeline.from_file(config).run(run_command=lambda argv, launcher: calls.append(argv) or 0)
    assert calls == []

    # a failing child process stops the pipeline naming the stage and the command; no record is left
    bad = _config(
        tmp_path,
        [{"name": "broken", "commands": [["bm25", "--data", str(tmp_path / "nowhere")]]}],
        "bad.json",
    )
    with pytest.raises(LedError, match=r"stage broken: `led bm25 --data .*nowhere` failed \(exit [12]\)"):
        Pipeline.from_file(bad).run()
    assert not (tmp_path / "out" / "stages" / "broken.json").exists()


def test_a_launcher_prefixes_every_command(tmp_path):
    stage = {
        "name": "s",
        "launcher": ["accelerate", "launch", "-m", "led_hf"],
        "commands": [["train", "dense", "x.json"]],
    }
    calls = []
    Pipeline.from_file(_config(tmp_path, [stage])).run(
        run_command=lambda argv, launcher: calls.append((argv, launcher)) or 0
    )
    assert calls == [(["train", "dense", "x.json"], ["accelerate", "launch", "-m", "led_hf"])]
    with pytest.raises(LedError, match="'launcher' must be a non-empty list"):
        Pipeline.from_file(_config(tmp_path, [{**stage, "launcher": "accelerate launch"}]))


def test_config_variables_take_their_default_or_the_set_value(tmp_path):
    stage = {
        "name": "tagged",
        "commands": [["bm25", "--output", "{output}/{tag}.trec", "--data", "{source}"]],
    }
    config = tmp_path / "pipeline.json"
    variables = {"tag": "v1", "source": {"default": "data/x", "folder": True, "help": "a BEIR folder"}}
    config.write_text(json.dumps({"output": "out", "variables": variables, "stages": [stage]}))
    assert Pipeline.from_file(config).stages[0].commands[0][2:5] == ["out/v1.trec", "--data", "data/x"]
    pipeline = Pipeline.from_file(config, settings={"tag": "v2", "source": str(tmp_path)})
    assert pipeline.stages[0].commands[0][2:5] == ["out/v2.trec", "--data", str(tmp_path)]
    assert pipeline.stages[0].variables == ["tag", "source"]
    pipeline.check_inputs(pipeline.stages[0])  # an existing folder passes
    with pytest.raises(
        LedError, match=r"stage tagged reads \{source\} = data/x, .* --set source=PATH .*BEIR"
    ):
        Pipeline.from_file(config).check_inputs(pipeline.stages[0])
    with pytest.raises(LedError, match="declares no such variable"):
        Pipeline.from_file(config, settings={"tga": "v3"})
    for bad in ({"output": "x"}, {"tag": 3}, {"tag": {"default": "x", "folders": True}}, []):
        config.write_text(json.dumps({"output": "out", "variables": bad, "stages": [stage]}))
        with pytest.raises(LedError, match="variable"):
            Pipeline.from_file(config)
    assert led(["pipeline", str(config), "--set", "tag"]) == 1  # not NAME=VALUE


def test_dry_run_lists_the_config_variables_as_set(tmp_path, capsys):
    stage = {"name": "tagged", "commands": [["bm25", "--output", "{output}/{tag}.trec"]]}
    variables = {"tag": {"default": "v1", "help": "the run's tag"}}
    config = tmp_path / "pipeline.json"
    config.write_text(
        json.dumps({"output": str(tmp_path / "out"), "variables": variables, "stages": [stage]})
    )
    assert led(["pipeline", str(config), "--set", "tag=v2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "variable tag = v2 (the run's tag)" in out and f"out {tmp_path}/out/v2.trec" in out


def test_dry_run_lists_and_checks_inputs(msmarco_dir, tmp_path, capsys):
    config = _config(tmp_path, [_prepare_stage(msmarco_dir), _bm25_stage()])
    assert led(["pipeline", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"in  {msmarco_dir} (file)" in out and f"in  {tmp_path}/out/data (produced)" in out
    assert f"out {tmp_path}/out/bm25.trec" in out
    assert not (tmp_path / "out").exists()  # nothing ran

    # an input that an earlier stage does not produce (here: the stages in the wrong order)
    config = _config(tmp_path, [_bm25_stage(), _prepare_stage(msmarco_dir)], "reversed.json")
    assert led(["pipeline", str(config), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"led pipeline: error: stage bm25: input {tmp_path}/out/data does not exist and no earlier stage produces it"
    )


def _recipe_workspace(tmp_path) -> Path:
    """A folder holding what configs/msmarco/pipeline.json reads: the configs, an accelerate config, raw data."""
    root = tmp_path / "ws"
    shutil.copytree(REPO / "configs" / "msmarco", root / "configs" / "msmarco")
    (root / "configs" / "accelerate").mkdir(parents=True)
    (root / "configs" / "accelerate" / "multi_gpu_bf16.yaml").write_text("distributed_type: MULTI_GPU\n")
    return root


def test_msmarco_recipe_config_plans(tmp_path, monkeypatch, capsys):
    root = _recipe_workspace(tmp_path)
    monkeypatch.chdir(root)
    assert led(["pipeline", "configs/msmarco/pipeline.json", "--dry-run"]) == 1
    assert (
        "stage prepare reads {msmarco} = data/msmarco-passage, which is not a folder"
        in capsys.readouterr().err
    )
    (root / "elsewhere").mkdir()
    assert led(["pipeline", "configs/msmarco/pipeline.json", "--set", "msmarco=elsewhere", "--dry-run"]) == 0
    assert "led prepare --format msmarco --input elsewhere " in capsys.readouterr().out
    (root / "data" / "msmarco-passage").mkdir(parents=True)
    assert led(["pipeline", "configs/msmarco/pipeline.json", "--dry-run"]) == 0
    out = capsys.readouterr().out
    stages = [s["name"] for s in json.loads((root / "configs/msmarco/pipeline.json").read_text())["stages"]]
    assert {"den-warmup", "lex-warmup", "lex-continue", "den-continue", "led", "led-rt"} <= set(stages)
    for name in stages:
        assert f"] {name}" in out
    assert (
        "$ accelerate launch --config_file configs/accelerate/multi_gpu_bf16.yaml -m led_hf train dense"
        in out
    )
    assert (
        "in  Luyu/co-condenser-marco (hub)" in out and "in  cross-encoder/ms-marco-MiniLM-L-6-v2 (hub)" in out
    )
    assert "out runs/msmarco-recipe/data/negatives/sp-stg2" in out and "resources: 8 GPUs" in out


def _train_config(path: Path, model: Path, **extra) -> str:
    settings = {
        "model_name_or_path": str(model),
        "negs_sources": ["bm25"],
        "num_negatives": 2,
        "query_max_length": 16,
        "passage_max_length": 32,
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "use_cpu": True,
        "report_to": "none",
        "output_dir": str(path.parent / "unused"),
        **extra,
    }
    path.write_text(json.dumps(settings))
    return str(path)


@pytest.mark.slow
def test_tiny_msmarco_recipe_runs_end_to_end(msmarco_dir, tiny_bert_dir, tiny_bert_mlm_dir, tmp_path, capfd):
    """docs/method.md §1 on the tiny MS MARCO fixture: co-stg1, its negatives, sp-stg1, its negatives, LED."""
    den = _train_config(tmp_path / "den.json", tiny_bert_dir, pooling="cls")
    lex = _train_config(tmp_path / "lex.json", tiny_bert_mlm_dir)
    led_config = _train_config(
        tmp_path / "led.json", tiny_bert_dir, pooling="cls", negs_sources=["co-stg1", "sp-stg1"]
    )
    mine = [
        "--split",
        "train",
        "--depth",
        "8",
        "--keep",
        "4",
        "--query-max-length",
        "16",
        "--passage-max-length",
        "32",
        "--no-progress",
    ]
    stages = [
        _prepare_stage(msmarco_dir),
        {
            "name": "den-warmup",
            "model": "{output}/co-stg1",
            "commands": [
                ["train", "dense", den, "--data", "{output}/data", "--output_dir", "{output}/co-stg1"],
                [
                    "mine",
                    "--data",
                    "{output}/data",
                    "--name",
                    "co-stg1",
                    "--model",
                    "{output}/co-stg1",
                    *mine,
                ],
            ],
        },
        {
            "name": "lex-warmup",
            "model": "{output}/sp-stg1",
            "commands": [
                ["train", "splade", lex, "--data", "{output}/data", "--output_dir", "{output}/sp-stg1"],
                [
                    "mine",
                    "--data",
                    "{output}/data",
                    "--name",
                    "sp-stg1",
                    "--model",
                    "{output}/sp-stg1",
                    *mine,
                ],
            ],
        },
        {
            "name": "led",
            "model": "{output}/led",
            "commands": [
                [
                    "score-teacher",
                    "--data",
                    "{output}/data",
                    "--teacher",
                    "{output}/sp-stg1",
                    "--name",
                    "sp-stg1",
                    "--negs-sources",
                    "co-stg1,sp-stg1",
                    "--query-max-length",
                    "16",
                    "--passage-max-length",
                    "32",
                    "--no-progress",
                ],
                [
                    "train",
                    "led",
                    led_config,
                    "--data",
                    "{output}/data",
                    "--teacher_model_name_or_path",
                    "{output}/sp-stg1",
                    "--teacher_scores",
                    "precomputed",
                    "--teacher_scores_name",
                    "sp-stg1",
                    "--output_dir",
                    "{output}/led",
                ],
                [
                    "encode",
                    "--model",
                    "{output}/led",
                    "--data",
                    "{output}/data",
                    "--corpus",
                    "--max-length",
                    "32",
                    "--output",
                    "{output}/led-enc/corpus",
                ],
                [
                    "encode",
                    "--model",
                    "{output}/led",
                    "--data",
                    "{output}/data",
                    "--queries",
                    "dev",
                    "--max-length",
                    "16",
                    "--output",
                    "{output}/led-enc/dev",
                ],
                [
                    "search",
                    "--passages",
                    "{output}/led-enc/corpus",
                    "--queries",
                    "{output}/led-enc/dev",
                    "--output",
                    "{output}/led-enc/dev.trec",
                ],
            ],
            "evaluate": {"data": "{output}/data", "split": "dev", "run": "{output}/led-enc/dev.trec"},
        },
    ]
    config = _config(tmp_path, stages)
    assert led(["pipeline", str(config), "--dry-run"]) == 0
    assert led(["pipeline", str(config)]) == 0
    out = tmp_path / "out"
    data = PreparedData(out / "data")
    assert len(data.negatives("co-stg1")) > 0 and len(data.negatives("sp-stg1")) > 0
    assert (out / "led" / "config.json").is_file()
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["stages"]] == ["prepare", "den-warmup", "lex-warmup", "led"] or report
    led_record = json.loads((out / "stages" / "led.json").read_text())
    assert 0 <= led_record["metrics"]["ndcg@10"] <= 1
