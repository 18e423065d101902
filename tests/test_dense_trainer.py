"""DenseTrainer and `led train dense`: training, logged parts, GA scaling, resume, checkpoints, resolved args."""

from __future__ import annotations

import json

import pytest
import torch
from trainer_helpers import FirstStepGradients, fixture_groups, run_settings, train_logs
from transformers import AutoModel, AutoTokenizer

from led_hf.arguments import DenseTrainingArguments
from led_hf.cli.train import main as train_main
from led_hf.collators.train import TrainCollator
from led_hf.losses import contrastive_loss
from led_hf.modeling import DenseEncoder
from led_hf.trainers.dense import DenseTrainer


def _trainer(
    model_dir, data_dir, output_dir, callbacks=(), num_negatives=2, model_settings=None, **overrides
) -> DenseTrainer:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = DenseEncoder.from_pretrained(model_dir, **(model_settings or {}))
    return DenseTrainer(
        model=model,
        args=DenseTrainingArguments(**run_settings(output_dir, **overrides)),
        train_dataset=fixture_groups(data_dir, num_negatives=num_negatives),
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def _fixed_batch_loss(model, trainer) -> float:
    collate = trainer.data_collator
    batch = collate([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    model.eval()
    with torch.no_grad():
        out = model(query=batch["query"], passage=batch["passage"])
        return contrastive_loss(out.query_embeddings, out.passage_embeddings, 3, model.temperature).item()


def test_training_lowers_the_loss_logs_parts_and_saves(tiny_bert_dir, prepared_msmarco, tmp_path):
    # Mean pooling: a randomly initialised tiny BERT gives nearly the same [CLS] state for every text,
    # which takes far more than a few steps to move.
    trainer = _trainer(
        tiny_bert_dir, prepared_msmarco, tmp_path / "out", max_steps=12, model_settings=dict(pooling="mean")
    )
    before = _fixed_batch_loss(DenseEncoder.from_pretrained(tiny_bert_dir, pooling="mean"), trainer)
    trainer.train()
    logs = train_logs(trainer)
    assert len(logs) == 12
    for entry in logs:
        assert torch.isfinite(torch.tensor(entry["loss"]))
        assert entry["contrastive_loss"] == pytest.approx(entry["loss"], rel=1e-3, abs=1e-4)
        assert 0.0 <= entry["accuracy"] <= 1.0
    assert _fixed_batch_loss(trainer.model, trainer) < 0.8 * before  # it learned the training groups

    trainer.save_model(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    backbone = AutoModel.from_pretrained(saved)
    for name, value in trainer.model.encoder.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[name], value)
    assert json.loads((saved / "led_config.json").read_text())["kind"] == "dense"
    card = (saved / "README.md").read_text()
    assert "contrastive" in card and "learning_rate" in card and "token" not in card.lower()
    assert not (saved / "training_args.bin").exists()  # no pickle in checkpoints


def _first_step_grads(model_dir, data_dir, output_dir, batch, accumulation, in_batch):
    recorder = FirstStepGradients()
    trainer = _trainer(
        model_dir,
        data_dir,
        output_dir,
        callbacks=[recorder],
        max_steps=1,
        max_grad_norm=0.0,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        in_batch_negatives=in_batch,
        train_sampling_strategy="sequential",
    )
    trainer.train()
    return recorder.grads, trainer


def _assert_same(grads_a, grads_b):
    assert set(grads_a) == set(grads_b)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-4, msg=name)


def test_gradient_accumulation_equals_the_large_batch(no_dropout_bert_dir, prepared_msmarco, tmp_path):
    # Without in-batch negatives each query's loss depends on its own group only: 1 x 4 == 2 x 2 exactly.
    big, _ = _first_step_grads(no_dropout_bert_dir, prepared_msmarco, tmp_path / "a", 4, 1, in_batch=False)
    accumulated, _ = _first_step_grads(
        no_dropout_bert_dir, prepared_msmarco, tmp_path / "b", 2, 2, in_batch=False
    )
    _assert_same(big, accumulated)
    assert max(g.abs().max().item() for g in big.values()) > 1e-4

    # With in-batch negatives, 2 accumulated micro-batches give the mean of their own gradients
    # (each micro-batch sees only its own in-batch negatives).
    accumulated, trainer = _first_step_grads(
        no_dropout_bert_dir, prepared_msmarco, tmp_path / "c", 2, 2, in_batch=True
    )
    model = DenseEncoder.from_pretrained(no_dropout_bert_dir)
    groups, collate = trainer.train_dataset, trainer.data_collator
    for rows in ([0, 1], [2, 3]):
        batch = collate([groups[i] for i in rows])
        out = model(query=batch["query"], passage=batch["passage"])
        (contrastive_loss(out.query_embeddings, out.passage_embeddings, 3) / 2).backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    _assert_same(accumulated, expected)


def test_resume_from_checkpoint_continues_identically(tiny_bert_dir, prepared_msmarco, tmp_path):
    common = dict(max_steps=4, save_strategy="steps", save_steps=2)
    full = _trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "full", **common)
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-2"
    assert (checkpoint / "README.md").is_file() and (checkpoint / "modules.json").is_file()
    AutoModel.from_pretrained(checkpoint)  # checkpoints are plain HF folders too

    resumed = _trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    tail = [entry for entry in train_logs(resumed) if entry["step"] > 2]
    assert [entry["step"] for entry in tail] == [3, 4]
    assert [e["loss"] for e in tail] == pytest.approx([e["loss"] for e in train_logs(full)[2:]], rel=1e-4)
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, atol=1e-6, rtol=1e-4)


def test_cli_recipe_config_flags_and_resolved_args(tiny_bert_dir, prepared_msmarco, tmp_path):
    config = tmp_path / "dense.yaml"
    # YAML reads 1e-3 as a string: the parser must still give a float.
    config.write_text(
        f"model_name_or_path: {tiny_bert_dir}\ndata: {prepared_msmarco}\nnegs_sources: bm25\n"
        f"num_negatives: 2\nquery_max_length: 16\npassage_max_length: 32\nlearning_rate: 1e-3\n"
        f"per_device_train_batch_size: 2\nmax_steps: 2\nsave_strategy: 'no'\nuse_cpu: true\n"
        f"output_dir: {tmp_path / 'ignored'}\n"
    )
    out = tmp_path / "run"
    assert (
        train_main(
            [
                "dense",
                str(config),
                "--output_dir",
                str(out),
                "--learning_rate",
                "2e-3",
                "--pooling",
                "mean",
                "--hub_token",
                "hf_secret_value",
                "--temperature",
                "0.5",
                "--eval_split",
                "dev",
            ]
        )
        == 0
    )
    resolved = json.loads((out / "led_args.json").read_text())
    assert resolved["learning_rate"] == 2e-3 and resolved["output_dir"] == str(out)
    assert resolved["num_negatives"] == 2 and resolved["negs_sources"] == ["bm25"]
    assert "hub_token" not in resolved and "hf_secret_value" not in (out / "led_args.json").read_text()
    assert "hf_secret_value" not in (out / "README.md").read_text()
    saved = json.loads((out / "led_config.json").read_text())
    assert (saved["pooling"], saved["temperature"]) == ("mean", 0.5)
    AutoModel.from_pretrained(out)
    metrics = json.loads((out / "eval_results.json").read_text())  # retrieval metrics after training
    assert 0.0 <= metrics["eval_ndcg@10"] <= 1.0 and "eval_mrr@10" in metrics
    assert "eval_ndcg@10" in (out / "README.md").read_text()

    # The resolved file runs again as a config.
    assert (
        train_main(
            ["dense", str(out / "led_args.json"), "--output_dir", str(tmp_path / "again"), "--max_steps", "1"]
        )
        == 0
    )


def test_cli_errors_and_help(tmp_path, capsys):
    from led_hf.cli.main import main

    assert train_main(["dense", "--help"]) == 0
    assert "--negs_sources" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_name_or_path": "x", "data": "y", "no_such_option": 1}')
    assert main(["train", "dense", str(bad)]) == 1
    assert "no_such_option" in capsys.readouterr().err
    bad.write_text('{"model_name_or_path": "x",\n "data": }')
    assert main(["train", "dense", str(bad)]) == 1
    assert f"{bad}:2" in capsys.readouterr().err
    assert train_main(["nonsense"]) == 2
