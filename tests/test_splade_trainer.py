"""SpladeTrainer: a few steps on BERT and DistilBERT MLMs, logged parts, λ warm-up across a resume, recipe."""

from __future__ import annotations

import json

import pytest
import torch
from trainer_helpers import fixture_groups, run_settings, train_logs
from transformers import AutoModelForMaskedLM, AutoTokenizer

from led_hf.arguments import SpladeTrainingArguments
from led_hf.cli.train_splade import main
from led_hf.collators.train import TrainCollator
from led_hf.errors import LedError
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.splade import SpladeTrainer

LOGGED = (
    "loss",
    "contrastive_loss",
    "flops_query_loss",
    "flops_passage_loss",
    "query_flops_weight",
    "passage_flops_weight",
    "query_nonzeros",
    "passage_nonzeros",
)


def _trainer(model_dir, data_dir, output_dir, **overrides) -> SpladeTrainer:
    flops = dict(query_flops_weight=0.1, passage_flops_weight=0.2)
    args = SpladeTrainingArguments(**run_settings(output_dir, **{**flops, **overrides}))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    groups = fixture_groups(data_dir)
    return SpladeTrainer(
        model=SpladeEncoder.from_pretrained(model_dir),
        args=args,
        train_dataset=groups,
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
    )


@pytest.mark.parametrize("fixture", ["tiny_bert_mlm_dir", "tiny_distilbert_mlm_dir"])
def test_few_steps_train_log_and_save(fixture, request, prepared_msmarco, tmp_path):
    model_dir = request.getfixturevalue(fixture)
    trainer = _trainer(model_dir, prepared_msmarco, tmp_path / "out")
    before = {k: v.clone() for k, v in trainer.model.model.state_dict().items()}
    trainer.train()
    logs = train_logs(trainer)
    assert len(logs) == 3
    for entry in logs:
        assert all(name in entry for name in LOGGED), entry
        assert entry["query_flops_weight"] == pytest.approx(0.1) and entry[
            "passage_flops_weight"
        ] == pytest.approx(0.2)
        assert 0 < entry["query_nonzeros"] <= len(trainer.processing_class)
        # the logged total is the sum of its logged parts
        expected = (
            entry["contrastive_loss"] + 0.1 * entry["flops_query_loss"] + 0.2 * entry["flops_passage_loss"]
        )
        assert entry["loss"] == pytest.approx(expected, rel=1e-3, abs=1e-4)
    after = trainer.model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    trainer.save_model(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    assert json.loads((saved / "led_config.json").read_text())["kind"] == "splade"
    assert (saved / "README.md").is_file() and "FLOPS" in (saved / "README.md").read_text()
    plain = AutoModelForMaskedLM.from_pretrained(saved)
    torch.testing.assert_close(plain.state_dict()[next(iter(after))], after[next(iter(after))])
    assert AutoTokenizer.from_pretrained(saved).vocab == trainer.processing_class.vocab


def test_flops_warmup_is_keyed_on_the_global_step_across_resume(
    tiny_bert_mlm_dir, prepared_msmarco, tmp_path
):
    common = dict(flops_warmup_steps=4, max_steps=4, save_strategy="steps", save_steps=2)
    full = _trainer(tiny_bert_mlm_dir, prepared_msmarco, tmp_path / "full", **common)
    full.train()
    # a log line at step s reports the λ used for that step, computed at global step s-1
    expected = [0.1 * min(1.0, s / 4) ** 2 for s in range(4)]
    assert [e["query_flops_weight"] for e in train_logs(full)] == pytest.approx(expected)
    assert [e["passage_flops_weight"] for e in train_logs(full)] == pytest.approx([2 * w for w in expected])

    resumed = _trainer(tiny_bert_mlm_dir, prepared_msmarco, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    tail = [e for e in train_logs(resumed) if e["step"] > 2]
    assert [e["step"] for e in tail] == [3, 4]
    assert [e["query_flops_weight"] for e in tail] == pytest.approx(expected[2:])
    # same weights, data order and λ after the resume: the same losses as the uninterrupted run
    assert [e["loss"] for e in tail] == pytest.approx([e["loss"] for e in train_logs(full)[2:]], rel=1e-4)


def test_recipe_main_trains_distilbert_and_saves_arguments(
    tiny_distilbert_mlm_dir, prepared_msmarco, tmp_path
):
    out = tmp_path / "run"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(tiny_distilbert_mlm_dir),
                "data": str(prepared_msmarco),
                "num_negatives": 2,
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "passage_max_length": 32,
                "query_max_length": 16,
                "use_cpu": True,
                "report_to": "none",
                "save_strategy": "no",
                "output_dir": str(out),
            }
        )
    )
    assert main([str(config), "--query_flops_weight", "0.01", "--mask_special_tokens", "false"]) == 0
    resolved = json.loads((out / "led_args.json").read_text())
    assert resolved["query_flops_weight"] == 0.01 and resolved["passage_flops_weight"] == 8e-4
    assert json.loads((out / "led_config.json").read_text())["mask_special_tokens"] is False
    assert AutoModelForMaskedLM.from_pretrained(out).__class__.__name__ == "DistilBertForMaskedLM"


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(LedError):
        SpladeTrainingArguments(output_dir=str(tmp_path), use_cpu=True, query_flops_weight=-1.0)
    assert resolve_model_path("some/model") == "some/model"
    assert (__import__("pathlib").Path(resolve_model_path("bundled:splade-tiny")) / "config.json").is_file()


def test_cli_help_and_bad_config(tmp_path, capsys):
    from led_hf.cli.main import main as led

    assert led(["train", "splade", "--help"]) == 0
    assert "query_flops_weight" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_name_or_path": "x", "data": "y", "lambda_q": 1}')
    assert led(["train", "splade", str(bad), "--output_dir", str(tmp_path / "o")]) == 1
    assert "lambda_q" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name, learning_rate, negatives",
    [("msmarco/lex_warmup.json", 3e-5, ["bm25"]), ("msmarco/lex_continue.json", 2e-5, ["sp-stg1"])],
)
def test_reference_configs_parse_with_the_recipe_values(name, learning_rate, negatives, tmp_path):
    from pathlib import Path

    from led_hf.arguments import DataArguments, SpladeModelArguments
    from led_hf.config import parse_arguments

    config = Path(__file__).resolve().parents[1] / "configs" / name
    model_args, data_args, args = parse_arguments(
        (SpladeModelArguments, DataArguments, SpladeTrainingArguments),
        [str(config), "--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false"],
    )
    assert (args.learning_rate, data_args.negs_sources) == (learning_rate, negatives)
    assert (args.per_device_train_batch_size, data_args.num_negatives, args.num_train_epochs) == (48, 5, 3)
    assert (args.weight_decay, args.warmup_steps) == (0.01, 0.01)
    assert (args.query_flops_weight, args.passage_flops_weight) == (6e-4, 8e-4)
    assert model_args.model_name_or_path == (
        "distilbert-base-uncased" if "warmup" in name else "runs/msmarco/sp-stg1"
    )


def test_demo_config_parses(tmp_path):
    from pathlib import Path

    from led_hf.arguments import DataArguments, SpladeModelArguments
    from led_hf.config import parse_arguments

    config = Path(__file__).resolve().parents[1] / "configs" / "demo" / "lex_scifact.json"
    model_args, _, _ = parse_arguments(
        (SpladeModelArguments, DataArguments, SpladeTrainingArguments),
        [str(config), "--output_dir", str(tmp_path), "--use_cpu", "true"],
    )
    assert (Path(resolve_model_path(model_args.model_name_or_path)) / "config.json").is_file()
