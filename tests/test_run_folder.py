"""A training run's output folder: atomic final save, auto-resume after a kill, refusals (docs/training.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from led_hf.atomic import staged_contents
from led_hf.cli.main import main
from led_hf.cli.train import main as train_main
from led_hf.errors import LedError
from led_hf.modeling.checkpoint import detect_model_kind, read_led_config

ROOT = Path(__file__).resolve().parents[1]


def _argv(model, data, out, *extra) -> list[str]:
    return [
        "dense",
        "--model_name_or_path", str(model),
        "--data", str(data),
        "--negs_sources", "bm25",
        "--num_negatives", "2",
        "--query_max_length", "16",
        "--passage_max_length", "32",
        "--per_device_train_batch_size", "2",
        "--learning_rate", "1e-3",
        "--use_cpu", "true",
        "--dataloader_num_workers", "0",
        "--report_to", "none",
        "--output_dir", str(out),
        *map(str, extra),
    ]  # fmt: skip


def test_non_empty_folder_that_is_no_run_is_refused(tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    assert main(["train", *_argv(tiny_bert_dir, prepared_msmarco, out, "--max_steps", 1)]) == 1
    assert "holds no led-hf training run" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["keep.txt"]
    # --overwrite_output_dir never deletes what led-hf did not write either
    assert (
        main(
            [
                "train",
                *_argv(
                    tiny_bert_dir, prepared_msmarco, out, "--max_steps", 1, "--overwrite_output_dir", "true"
                ),
            ]
        )
        == 1
    )
    assert sorted(os.listdir(out)) == ["keep.txt"]


def test_led_args_written_only_after_the_checks(tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["train", *_argv(tiny_bert_dir, prepared_msmarco, out, "--max_steps", 1,
                                 "--resume_from_checkpoint", tmp_path / "missing")])  # fmt: skip
    assert code == 1 and "is not a folder" in capsys.readouterr().err
    assert not (out / "led_args.json").exists()


def test_finished_run_is_refused_unless_overwritten(tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _argv(tiny_bert_dir, prepared_msmarco, out, "--max_steps", 1, "--save_strategy", "no")
    assert train_main(argv) == 0 and detect_model_kind(out) == "dense"
    capsys.readouterr()
    assert main(["train", *argv]) == 1
    assert "already holds a trained model" in capsys.readouterr().err
    assert train_main([*argv, "--overwrite_output_dir", "true"]) == 0


def test_staged_save_never_leaves_a_loadable_half_model(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "led_args.json").write_text("{}\n")
    (run / "led_config.json").write_text(json.dumps({"kind": "dense", "pooling": "cls"}))
    (run / "model.safetensors").write_text("old")
    with pytest.raises(RuntimeError), staged_contents(run, "led_config.json") as staging:
        (staging / "model.safetensors").write_text("new, half")
        raise RuntimeError("killed")
    assert (run / "model.safetensors").read_text() == "old" and read_led_config(run)["pooling"] == "cls"
    assert sorted(p.name for p in run.iterdir()) == ["led_args.json", "led_config.json", "model.safetensors"]
    # A save killed while moving files in: led_config.json is gone until everything else is in place.
    (run / "led_config.json").unlink()
    with pytest.raises(LedError, match="training run without a saved model"):
        detect_model_kind(run)
    with staged_contents(run, "led_config.json") as staging:
        (staging / "model.safetensors").write_text("new")
        (staging / "led_config.json").write_text(json.dumps({"kind": "dense", "pooling": "mean"}))
    assert (run / "model.safetensors").read_text() == "new" and read_led_config(run)["pooling"] == "mean"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


_KILL_AFTER_FIRST_CHECKPOINT = """
import os, signal, sys
from led_hf.trainers.base import RetrievalTrainer
save = RetrievalTrainer._save_checkpoint
def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
RetrievalTrainer._save_checkpoint = save_then_die
from led_hf.cli.main import main
sys.exit(main(["train", *sys.argv[1:]]))
"""


@pytest.mark.slow
def test_rerun_after_sigkill_resumes_from_the_last_checkpoint(tiny_bert_dir, prepared_msmarco, tmp_path):
    out = tmp_path / "out"
    argv = _argv(
        tiny_bert_dir, prepared_msmarco, out, "--max_steps", 4, "--save_steps", 2, "--logging_steps", 1
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_AFTER_FIRST_CHECKPOINT, *argv], env=env, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "checkpoint-2" / "trainer_state.json").is_file() and not (out / "led_config.json").exists()
    capture = subprocess.run(  # led encode refuses the unfinished run instead of loading it as a plain folder
        [sys.executable, "-m", "led_hf", "encode", "--model", str(out), "--data", str(prepared_msmarco),
         "--corpus", "--output", str(tmp_path / "enc"), "--no-progress"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert capture.returncode == 1 and "training run without a saved model" in capture.stderr

    first = out / "checkpoint-2" / "trainer_state.json"
    written = first.stat().st_mtime_ns
    rerun = subprocess.run(
        [sys.executable, "-m", "led_hf", "train", *argv], env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "holds checkpoints: resuming from the last one" in rerun.stderr
    assert first.stat().st_mtime_ns == written  # steps 1-2 were not trained (and saved) again
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert detect_model_kind(out) == "dense"
