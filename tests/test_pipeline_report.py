"""Pipeline report: seed groups (mean ± std), paired comparisons to the stages named in compare_to, report.png."""

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_per_query
from led_hf.evaluation.significance import compare_paired
from led_hf.modeling.bundled import resolve_model_path
from led_hf.pipeline.compare import entries
from led_hf.pipeline.plot import loss_curve
from led_hf.pipeline.report import guard_note, write_report
from led_hf.pipeline.runner import Pipeline

NUM = 16


def _data(root):
    pids = [f"d{i}" for i in range(NUM)]
    qids = [f"q{i}" for i in range(NUM)]
    Dataset.from_dict({"pid": pids, "title": [""] * NUM, "text": pids}).save_to_disk(str(root / "corpus"))
    Dataset.from_dict({"qid": qids, "text": qids}).save_to_disk(str(root / "queries"))
    Dataset.from_dict({"qid": qids, "pid": pids, "score": [1] * NUM}).save_to_disk(
        str(root / "qrels" / "test")
    )
    return root


def _fake_led(argv, launcher=None):
    """Stands in for `led`: `write RUN SEED` writes a run whose positive sits at a seed-dependent rank;
    `train MODEL` leaves a trainer_state.json with a loss curve."""
    if argv[0] == "train":
        state = {
            "log_history": [{"step": s, "loss": 2.0 / s} for s in (1, 2, 3)]
            + [{"step": 3, "train_runtime": 1}]
        }
        Path(argv[1]).mkdir(parents=True, exist_ok=True)
        (Path(argv[1]) / "trainer_state.json").write_text(json.dumps(state))
        return 0
    path, seed = argv[1], int(argv[2])
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(NUM):
        rank = 1 + int(rng.integers(0, 2 if seed else 4))  # seeded "trained" runs rank better than seed 0
        others = [f"d{j}" for j in range(NUM) if j != i]
        order = others[: rank - 1] + [f"d{i}"] + others[rank - 1 : 6]
        lines += [f"q{i} Q0 {pid} {r} {20 - r} t" for r, pid in enumerate(order, 1)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return 0


def _config(tmp_path, **trained_extra):
    config = {
        "output": str(tmp_path / "out"),
        "stages": [
            {
                "name": "bm25",
                "commands": [["write", "{output}/bm25.trec", "0"]],
                "evaluate": {"data": str(tmp_path / "data"), "split": "test", "run": "{output}/bm25.trec"},
            },
            {
                "name": "trained",
                "model": "{output}/model-{seed}",
                "seeds": [1, 2],
                "compare_to": ["bm25"],
                "commands": [
                    ["train", "{output}/model-{seed}"],
                    ["write", "{output}/t{seed}.trec", "{seed}"],
                ],
                "evaluate": {"data": str(tmp_path / "data"), "split": "test", "run": "{output}/t{seed}.trec"},
                **trained_extra,
            },
        ],
    }
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(config))
    return path


def test_seeded_stage_and_paired_comparison_in_the_report(tmp_path):
    _data(tmp_path / "data")
    pipeline = Pipeline.from_file(_config(tmp_path))
    assert [s.name for s in pipeline.stages] == ["bm25", "trained-seed1", "trained-seed2"]
    records = pipeline.run(_fake_led)
    paths = write_report(records, pipeline.output, title="test")
    report = json.loads(paths["json"].read_text())

    qrels = PreparedData(tmp_path / "data").qrels_dict("test")
    per_run = {
        name: evaluate_per_query(read_run(tmp_path / "out" / f"{name}.trec"), qrels)
        for name in ("bm25", "t1", "t2")
    }
    ndcg = {name: np.array([v[f"q{i}"]["ndcg@10"] for i in range(NUM)]) for name, v in per_run.items()}
    means = [ndcg["t1"].mean(), ndcg["t2"].mean()]
    summary = {entry["name"]: entry for entry in report["summary"]}
    assert summary["trained"]["seeds"] == [1, 2]
    assert summary["trained"]["metrics"]["ndcg@10"] == pytest.approx(np.mean(means))
    assert summary["trained"]["metrics_std"]["ndcg@10"] == pytest.approx(np.std(means, ddof=1))
    low, high = summary["trained"]["ndcg@10_interval"]
    assert low < np.mean(means) < high

    # the comparison tests the per-query means over seeds against BM25, as compare_paired does
    row = next(r for r in report["comparisons"] if r["stage"] == "trained" and r["metric"] == "ndcg@10")
    averaged = (ndcg["t1"] + ndcg["t2"]) / 2
    expected = compare_paired(
        {f"q{i}": {"m": averaged[i]} for i in range(NUM)},
        {f"q{i}": {"m": ndcg["bm25"][i]} for i in range(NUM)},
        ["m"],
    )["m"]
    assert row["reference"] == "bm25"
    for key in ("difference", "ci_low", "ci_high", "p_t", "p_randomization", "detectable"):
        assert row[key] == pytest.approx(expected[key]), key
    assert row["difference"] > 0 and row["p_randomization"] < 0.05  # seeds 1/2 rank the positive higher

    markdown = paths["md"].read_text()
    assert "| trained (seeds 1, 2) |" in markdown and " ± " in markdown
    assert "## Paired comparisons" in markdown and "| trained | bm25 | ndcg@10 |" in markdown
    assert f"| {row['detectable']:.4f} |" in markdown
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = loss_curve(next(r for r in records if r["name"] == "trained-seed1"))
    assert curve == ([1, 2, 3], [2.0, 1.0, pytest.approx(2 / 3)])


def test_entries_without_per_query_values_are_reported_not_tested(tmp_path):
    records = [
        {"name": "bm25", "metrics": {"ndcg@10": 0.6}},
        {"name": "x", "metrics": {"ndcg@10": 0.7}, "compare_to": ["bm25"]},
    ]
    folded = entries(records)
    assert folded[1]["metrics"]["ndcg@10"] == 0.7 and "per_query" not in folded[1]
    paths = write_report(records, tmp_path / "r")
    assert "no per-query values" in paths["md"].read_text()


def test_bad_seed_and_compare_to_configs(tmp_path):
    path = _config(tmp_path, commands=[["write", "{output}/t.trec", "1"]])
    with pytest.raises(LedError, match="never use"):
        Pipeline.from_file(path)
    with pytest.raises(LedError, match="not an earlier stage"):
        Pipeline.from_file(_config(tmp_path, compare_to=["led"]))
    with pytest.raises(LedError, match="non-empty list of integers"):
        Pipeline.from_file(_config(tmp_path, seeds=[]))


def test_demo_config_names_each_trained_stages_references():
    pipeline = Pipeline.from_file("configs/demo/pipeline_scifact.json", output="unused")
    references = {stage.name: stage.compare_to for stage in pipeline.stages}
    assert references["led"] == ["den-warmup", "bm25"]
    assert references["bm25"] == []


def test_a_rerun_reports_the_comparisons_the_config_names_now(tmp_path):
    """compare_to added to the config after the stages ran: the rerun runs nothing and tests them."""
    _data(tmp_path / "data")
    config = _config(tmp_path, compare_to=[])
    assert not Pipeline.from_file(config).run(_fake_led)[1]["compare_to"]
    ran = []
    records = Pipeline.from_file(_config(tmp_path)).run(lambda argv, launcher=None: ran.append(argv) or 1)
    assert not ran and records[1]["compare_to"] == ["bm25"]
    report = json.loads(write_report(records, tmp_path / "out")["json"].read_text())
    assert any(row["stage"] == "trained" and row["reference"] == "bm25" for row in report["comparisons"])


def test_a_forced_rerun_lets_training_replace_its_model(tmp_path):
    """`--force` on a completed stage: its `led train` commands get --overwrite_output_dir (train refuses
    to overwrite a trained model otherwise); a first run or an interrupted stage resumes as before."""
    _data(tmp_path / "data")
    first = []
    pipeline = Pipeline.from_file(_config(tmp_path))
    pipeline.run(lambda argv, launcher=None: first.append(argv) or _fake_led(argv))
    forced = []
    pipeline.run(
        lambda argv, launcher=None: forced.append(argv) or _fake_led(argv), only=["trained-seed1"], force=True
    )
    assert all("--overwrite_output_dir" not in argv for argv in first)
    assert forced[0] == ["train", str(tmp_path / "out" / "model-1"), "--overwrite_output_dir", "true"]
    assert forced[1][0] == "write" and "--overwrite_output_dir" not in forced[1]


def test_the_model_column_shows_bundled_names_and_the_output_as_given(tmp_path, monkeypatch):
    """`{minilm}` gives commands the folder its package installed, but the report (md, json, and each
    stage's record) names the model as the user did: bundled:all-minilm-l6-v2, and `{output}/model` under
    the output folder as given, not a site-packages path. Records an older run wrote are shown the same way."""
    try:
        folder = resolve_model_path("bundled:all-minilm-l6-v2")
    except LedError:
        pytest.skip("the demo extra (bundled all-MiniLM-L6-v2) is not installed")
    monkeypatch.chdir(tmp_path)
    _data(tmp_path / "data")
    evaluate = {"data": str(tmp_path / "data"), "split": "test"}
    config = {
        "output": "out",
        "stages": [
            {
                "name": "zero-shot",
                "model": "{minilm}",
                "commands": [["write", "{output}/z.trec", "0", "{minilm}"]],
                "evaluate": {**evaluate, "run": "{output}/z.trec"},
            },
            {
                "name": "trained",
                "model": "{output}/model",
                "commands": [["train", "{output}/model"], ["write", "{output}/t.trec", "1"]],
                "evaluate": {**evaluate, "run": "{output}/t.trec"},
            },
        ],
    }
    Path("pipeline.json").write_text(json.dumps(config))
    ran = []
    records = Pipeline.from_file("pipeline.json").run(
        lambda argv, launcher=None: ran.append(argv) or _fake_led(argv)
    )
    assert ran[0][-1] == folder  # the command still gets the folder
    paths = write_report(records, Path("out"))
    markdown = paths["md"].read_text()
    assert "| bundled:all-minilm-l6-v2 |" in markdown and "| out/model |" in markdown
    assert folder not in markdown and "site-packages" not in markdown
    shown = [stage["model"] for stage in json.loads(paths["json"].read_text())["stages"]]
    assert shown == ["bundled:all-minilm-l6-v2", "out/model"]
    assert json.loads(Path("out/stages/zero-shot.json").read_text())["model"] == "bundled:all-minilm-l6-v2"

    # a stage record written before (holding the installed folder): the rerun reports the config's name
    done = Path("out/stages/zero-shot.json")
    done.write_text(json.dumps({**json.loads(done.read_text()), "model": folder}))
    records = Pipeline.from_file("pipeline.json").run(lambda argv, launcher=None: 1)
    assert records[0]["model"] == "bundled:all-minilm-l6-v2"


def test_a_stage_that_kept_its_init_says_so(tmp_path):
    """`fallback_to_init`: a seed whose training wrote kept_init 1 to its eval_results.json is marked in the
    stage record, the model column and a note under the table; the other seed is not."""
    _data(tmp_path / "data")

    def led(argv, launcher=None):
        status = _fake_led(argv)
        if argv[0] == "train":
            kept = argv[1].endswith("model-2")
            results = {  # seed 2's gain (+0.002) is within fallback_min_gain
                "init_ndcg@10": 0.41,
                "trained_ndcg@10": 0.412 if kept else 0.43,
                "kept_init": float(kept),
                "fallback_min_gain": 0.005,
            }
            (Path(argv[1]) / "eval_results.json").write_text(json.dumps(results))
        return status

    records = Pipeline.from_file(_config(tmp_path)).run(led)
    by_name = {record["name"]: record for record in records}
    assert by_name["trained-seed1"]["guard"]["kept_init"] == 0.0
    assert by_name["trained-seed2"]["guard"] == {
        "init_ndcg@10": 0.41,
        "trained_ndcg@10": 0.412,
        "kept_init": 1.0,
        "fallback_min_gain": 0.005,
    }
    markdown = write_report(records, tmp_path / "out")["md"].read_text()
    assert (
        f"{tmp_path / 'out' / 'model-1'} (init kept in 1 of 2 seeds) |" in markdown
    )  # the seed group's model column
    assert (
        "trained-seed2: training did not beat the init by more than 0.005 on the evaluation split (nDCG@10 "
        "init 0.4100, trained 0.4120); the init was kept" in markdown
    )
    assert (
        "trained-seed1: training beat the init on the evaluation split (nDCG@10 init 0.4100, trained 0.4300); "
        "the trained model was saved." in markdown
    )


@pytest.mark.parametrize(
    ("trained", "margin", "verdict"),
    [
        (0.4195, 0, "training lowered nDCG@10 on the evaluation split"),
        (0.4195, 0.005, "training lowered nDCG@10 on the evaluation split"),
        (0.4257, 0, "training did not beat the init on the evaluation split"),
        (0.4290, 0.005, "training did not beat the init by more than 0.005 on the evaluation split"),
    ],
)
def test_the_kept_init_note_says_whether_training_fell_or_gained_too_little(trained, margin, verdict):
    kept = {"init_ndcg@10": 0.4257, "trained_ndcg@10": trained, "kept_init": 1.0, "fallback_min_gain": margin}
    assert guard_note("led", kept) == (
        f"led: {verdict} (nDCG@10 init 0.4257, trained {trained:.4f}); the init was kept (`fallback_to_init`), "
        "so the stage scores as its init does."
    )


@pytest.mark.parametrize("kept", [0.0, 1.0])
def test_the_guard_note_says_how_many_queries_decided_and_how_surely(kept):
    """The trainer's paired test of the decision (fallback_queries, fallback_p_randomization) joins the
    scores, for a saved trained model as for a kept init."""
    decided = {
        "init_ndcg@10": 0.4257,
        "trained_ndcg@10": 0.4242 if kept else 0.4307,
        "kept_init": kept,
        "fallback_min_gain": 0,
        "fallback_queries": 30.0,
        "fallback_p_randomization": 0.8512,
        "fallback_p_t": 0.85,
        "fallback_detectable": 0.0437,
    }
    if kept:
        expected = (
            "den-warmup: training lowered nDCG@10 on the evaluation split (nDCG@10 init 0.4257, trained 0.4242: "
            "-0.0015 over 30 queries, paired randomization p 0.85, detectable with 80% power: 0.0437); the init "
            "was kept"
        )
    else:
        expected = (
            "den-warmup: training beat the init on the evaluation split (nDCG@10 init 0.4257, trained 0.4307: "
            "+0.0050 over 30 queries, paired randomization p 0.85, detectable with 80% power: 0.0437); the "
            "trained model was saved."
        )
    assert guard_note("den-warmup", decided).startswith(expected)
    # a record written before the detectable difference was: the sentence without it
    older = {k: v for k, v in decided.items() if k != "fallback_detectable"}
    assert "paired randomization p 0.85);" in guard_note("den-warmup", older)


def test_the_guard_note_names_the_metric_the_guard_compared():
    """A guard on `metric_for_best_model` eval_mrr@10 (or a loss, better lower) is noted in that metric."""
    decided = {
        "init_mrr@10": 0.60,
        "trained_mrr@10": 0.58,
        "init_ndcg@10": 0.41,
        "trained_ndcg@10": 0.43,
        "kept_init": 1.0,
        "fallback_metric": "mrr@10",
        "fallback_greater_is_better": 1.0,
    }
    assert guard_note("den", decided).startswith(
        "den: training lowered MRR@10 on the evaluation split (MRR@10 init 0.6000, trained 0.5800)"
    )
    loss = {"init_loss": 0.50, "trained_loss": 0.55, "kept_init": 1.0, "fallback_metric": "loss"}
    loss["fallback_greater_is_better"] = 0.0
    assert guard_note("den", loss).startswith(
        "den: training raised loss on the evaluation split (loss init 0.5000, trained 0.5500)"
    )


def test_the_scifact_lex_warmup_differs_from_lex_continue_only_in_how_it_draws_rows():
    """The demo's LEX warm-up (lex_warmup_scifact.json, chosen on dev) is lex_scifact.json, which LEX continue
    trains with, with the graded options on: one row per query, qrels positives masked, no duplicates."""
    warmup = json.loads(Path("configs/demo/lex_warmup_scifact.json").read_text())
    shared = json.loads(Path("configs/demo/lex_scifact.json").read_text())
    differs = {key for key in warmup.keys() | shared.keys() if warmup.get(key) != shared.get(key)}
    assert differs == {"group_by", "mask_false_negatives", "no_duplicates_in_batch", "output_dir"}
    assert (warmup["group_by"], warmup["mask_false_negatives"], warmup["no_duplicates_in_batch"]) == (
        "query",
        True,
        True,
    )


def test_the_dev_study_config_is_the_demo_on_dev_and_never_reads_test():
    """configs/demo/pipeline_scifact_dev.json: the demo's stages (zero-shots aside) with the split carved
    and scored on dev, then the LED stage over three seeds with each teacher, without one and with seven
    negatives."""
    demo = {s.name: s for s in Pipeline.from_file("configs/demo/pipeline_scifact.json", output="o").stages}
    dev = Pipeline.from_file("configs/demo/pipeline_scifact_dev.json", output="o")
    text = json.dumps([stage.commands for stage in dev.stages])
    assert '"test"' not in text and "test.trec" not in text and "test-queries" not in text
    assert all(stage.evaluate is None or stage.evaluate["split"] == "dev" for stage in dev.stages)
    assert "--dev-from-train" in dev.stages[0].commands[0]
    for stage in dev.stages:
        if stage.name in demo and stage.name not in ("prepare", "led"):
            shown = json.dumps(demo[stage.name].commands).replace('"test"', '"dev"')
            assert json.dumps(stage.commands) == shown.replace("/test.trec", "/dev.trec").replace(
                "/test-queries", "/dev-queries"
            )
    seeded = {stage.group for stage in dev.stages if stage.seed is not None}
    assert seeded == {"led", "led-no-teacher", "led-bm25", "led-fused", "led-neg7", "led-no-teacher-neg7"}
    assert sorted(stage.seed for stage in dev.stages if stage.group == "led") == [1, 2, 42]
    # every LED stage trains on one budget: the study's (1 epoch at 256 tokens) unless --set changes it
    led_commands = [stage.commands[0] for stage in dev.stages if stage.seed is not None]
    budgets = {
        (c[c.index("--num_train_epochs") + 1], c[c.index("--passage_max_length") + 1]) for c in led_commands
    }
    assert budgets == {("1", "256")}
    demo_budget = Pipeline.from_file(
        "configs/demo/pipeline_scifact_dev.json",
        output="o",
        settings={"led_epochs": "2", "led_train_tokens": "128"},
    )
    assert {
        (c[c.index("--num_train_epochs") + 1], c[c.index("--passage_max_length") + 1])
        for c in (stage.commands[0] for stage in demo_budget.stages if stage.seed is not None)
    } == {("2", "128")}
