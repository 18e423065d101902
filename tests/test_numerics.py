"""Non-finite losses during training (trainers/numerics.py): stop with one line, or skip and count."""

from __future__ import annotations

import math

import pytest
import torch
from trainer_helpers import fixture_groups, run_settings
from transformers import AutoTokenizer

from led_hf.arguments import DenseTrainingArguments
from led_hf.collators.train import TrainCollator
from led_hf.errors import LedError
from led_hf.modeling import DenseEncoder
from led_hf.trainers.dense import DenseTrainer
from led_hf.trainers.numerics import NonFiniteGuard


def _trainer(model_dir, data_dir, output_dir, temperature, **overrides) -> DenseTrainer:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = DenseEncoder.from_pretrained(model_dir, temperature=temperature)
    return DenseTrainer(
        model=model,
        args=DenseTrainingArguments(**run_settings(output_dir, **overrides)),
        train_dataset=fixture_groups(data_dir),
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
    )


def _finite_weights(model) -> bool:
    return all(
        torch.isfinite(value).all() for value in model.state_dict().values() if value.is_floating_point()
    )


def test_nonfinite_loss_stops_before_the_update_naming_step_and_part(
    tiny_bert_dir, prepared_msmarco, tmp_path
):
    # The reported case: temperature 1e-45 makes scores/τ overflow; the loss was logged as 0, the weights
    # became NaN and training exited 0.
    trainer = _trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "run", temperature=1e-45)
    with pytest.raises(LedError, match=r"^step 1: non-finite contrastive_loss=nan") as err:
        trainer.train()
    assert "\n" not in str(err.value)
    assert _finite_weights(trainer.model)
    assert not [entry for entry in trainer.state.log_history if entry.get("loss") == 0.0]


def test_skip_policy_keeps_weights_finite_and_counts_skipped(tiny_bert_dir, prepared_msmarco, tmp_path):
    trainer = _trainer(
        tiny_bert_dir, prepared_msmarco, tmp_path / "run", temperature=1e-45, on_nonfinite="skip"
    )
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["skipped_batches"] for entry in logs] == [1, 2, 3]
    assert all(math.isnan(entry["loss"]) for entry in logs)  # never 0: no step was taken
    for name, value in trainer.model.state_dict().items():  # nothing was updated, nothing is NaN
        torch.testing.assert_close(value, before[name])


def test_finite_training_logs_no_skip_key(tiny_bert_dir, prepared_msmarco, tmp_path):
    trainer = _trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "run", temperature=0.05, max_steps=2)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all("skipped_batches" not in entry and entry["loss"] > 0 for entry in logs)


def test_guard_unit():
    guard = NonFiniteGuard("skip")
    assert guard.observe_loss(torch.tensor(float("inf"))).item() == 0.0
    assert guard.check_step(torch.tensor(1.0), step=1) is True
    assert guard.observe_loss(torch.tensor(2.0)).item() == 2.0
    assert guard.check_step(torch.tensor(1.0), step=2) is False
    # window of 2 steps, one skipped (its loss added as 0): the mean of the taken step is 2 * logged
    assert guard.adjust_logs({"loss": 1.0}) == {"loss": 2.0, "skipped_batches": 1}
    stop = NonFiniteGuard("stop")
    stop.observe_loss(torch.tensor(0.5))
    with pytest.raises(LedError, match="step 4: non-finite gradient norm=inf"):
        stop.check_step(torch.tensor(float("inf")), step=4)
    with pytest.raises(LedError, match="on_nonfinite"):
        NonFiniteGuard("ignore")
