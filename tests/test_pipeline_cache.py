"""`led pipeline`: stages marked "cache" are computed once per machine and reused by content hash."""

from __future__ import annotations

import json
import shutil

import pytest

import led_hf.cli.main as cli_main
from led_hf.errors import LedError
from led_hf.pipeline import cache
from led_hf.pipeline.runner import Pipeline


def _config(tmp_path, source, later_reads_cached_output=False) -> dict:
    stages = [
        {
            "name": "prepare",
            "commands": [
                [
                    "prepare",
                    "--format",
                    "beir",
                    "--input",
                    str(source),
                    "--output",
                    "{output}/data",
                    "--overwrite",
                ]
            ],
        },
        {
            "name": "baseline",
            "model": "{output}/bm25",  # the report names this run's folder, also for a cached result
            "cache": {"inputs": [str(source)]},
            "commands": [
                ["bm25", "--data", "{output}/data", "--split", "test", "--output", "{output}/bm25/test.trec"]
            ],
            "evaluate": {"data": "{output}/data", "split": "test", "run": "{output}/bm25/test.trec"},
        },
    ]
    if later_reads_cached_output:
        stages.append(
            {
                "name": "reader",
                "commands": [
                    [
                        "evaluate",
                        "--data",
                        "{output}/data",
                        "--split",
                        "test",
                        "--run",
                        "{output}/bm25/test.trec",
                    ]
                ],
            }
        )
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"stages": stages}), encoding="utf-8")
    return path


@pytest.fixture()
def counted_commands(monkeypatch, tmp_path):
    """(run_command for Pipeline.run, the names of the `led` commands it ran); a fresh cache folder."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    ran = []

    def counting(argv, launcher=None):  # Pipeline.run's run_command(argv, launcher), in this process
        ran.append(argv[0])
        return cli_main.main(argv)

    return counting, ran


def test_cached_stage_runs_once_per_content(tmp_path, beir_dir, counted_commands):
    led, ran = counted_commands
    source = shutil.copytree(beir_dir, tmp_path / "beir")
    config = _config(tmp_path, source)

    first = Pipeline.from_file(config, output=str(tmp_path / "run1")).run(led)
    assert ran == ["prepare", "bm25"]
    assert "cached" not in first[1] and first[1]["metrics"]["num_queries"] > 0

    # another output folder, same inputs and commands: the baseline comes from the cache
    second = Pipeline.from_file(config, output=str(tmp_path / "run2")).run(led)
    assert ran == ["prepare", "bm25", "prepare"]
    assert second[1]["cached"] is True and second[1]["metrics"] == first[1]["metrics"]
    assert second[1]["computed_wall_time_s"] == first[1]["wall_time_s"]
    assert second[1]["model"] == str(tmp_path / "run2" / "bm25")
    assert json.loads((tmp_path / "run2" / "stages" / "baseline.json").read_text())["cached"] is True
    assert not (tmp_path / "run2" / "bm25").exists()  # nothing ran
    from led_hf.pipeline.report import render_markdown

    assert f"cached (computed in {first[1]['wall_time_s']})" in render_markdown(second, "t")

    # opting out recomputes (and refreshes the entry)
    Pipeline.from_file(config, output=str(tmp_path / "run3")).run(led, use_cache=False)
    assert ran[-2:] == ["prepare", "bm25"]

    # a changed input is another key: computed again
    with open(source / "queries.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"_id": "extra", "text": "one more query"}\n')
    Pipeline.from_file(config, output=str(tmp_path / "run4")).run(led)
    assert ran[-2:] == ["prepare", "bm25"]


def test_key_depends_on_commands_not_on_the_output_folder(tmp_path, beir_dir, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    template = {"commands": [["bm25", "--output", "{output}/x"]]}
    key = cache.stage_key(template, [beir_dir])
    assert key == cache.stage_key(json.loads(json.dumps(template)), [beir_dir])
    assert key != cache.stage_key(
        {"commands": [["bm25", "--k1", "1.2", "--output", "{output}/x"]]}, [beir_dir]
    )
    monkeypatch.setenv("LED_HF_CPU_BF16", "1")  # another precision picked here: another result
    assert key != cache.stage_key(template, [beir_dir])
    with pytest.raises(LedError, match="does not exist"):
        cache.stage_key(template, [tmp_path / "missing"])


def test_later_stage_may_not_read_a_cached_stages_files(tmp_path, beir_dir):
    with pytest.raises(LedError, match="reads .*test.trec, an output of cached stage 'baseline'"):
        Pipeline.from_file(
            _config(tmp_path, beir_dir, later_reads_cached_output=True), output=str(tmp_path / "o")
        )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stages": [{"name": "s", "commands": [], "cache": ["x"]}]}), encoding="utf-8")
    with pytest.raises(LedError, match='"cache" must be'):
        Pipeline.from_file(bad, output=str(tmp_path / "o"))


def test_demo_pipeline_encodes_each_models_corpus_once():
    """Evaluation and mining share one corpus encoding per model; the zero-shot baselines are cached."""
    pipeline = Pipeline.from_file("configs/demo/pipeline_scifact.json", output="runs/x")
    commands = [command for stage in pipeline.stages for command in stage.commands]

    def option(command, name):
        return command[command.index(name) + 1] if name in command else None

    encoded = [option(c, "--model") for c in commands if c[0] == "encode" and "--corpus" in c]
    assert len(encoded) == len(set(encoded)), encoded
    for command in commands:
        if command[0] == "mine" and "--bm25" not in command:
            model = option(command, "--model")
            assert model in encoded and (
                option(command, "--corpus-embeddings") or option(command, "--index")
            ), command
        if command[0] == "score-teacher":
            assert option(command, "--corpus-vectors"), command
    cached = {stage.name for stage in pipeline.stages if stage.cache_inputs}
    assert cached == {"minilm-zero-shot", "splade-zero-shot"}
