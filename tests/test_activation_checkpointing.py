"""`--gradient_checkpointing true` through `Trainer.train` for the dense, SPLADE and LED students: the
Trainer's call reaches every backbone, and the first step's gradients equal those of the run without it."""

from __future__ import annotations

import pytest
import torch
from trainer_helpers import FirstStepGradients, fixture_groups, run_settings
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

from led_hf.arguments import DenseTrainingArguments, LEDTrainingArguments, SpladeTrainingArguments
from led_hf.collators.led import LEDCollator
from led_hf.collators.train import TrainCollator
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.modeling import DenseEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.dense import DenseTrainer
from led_hf.trainers.led import LEDTrainer
from led_hf.trainers.splade import SpladeTrainer


def _settings(output_dir, **overrides) -> dict:
    one_step = dict(max_steps=1, max_grad_norm=0.0, train_sampling_strategy="sequential")
    return run_settings(output_dir, **{**one_step, **overrides})


@pytest.fixture(scope="module")
def splade_dir(tmp_path_factory, tiny_bert_mlm_dir):
    """The tiny MLM with its default dropout: checkpointing must replay the same dropout masks."""
    directory = tmp_path_factory.mktemp("ckpt-splade")
    BertForMaskedLM.from_pretrained(
        tiny_bert_mlm_dir, config=BertConfig.from_pretrained(tiny_bert_mlm_dir)
    ).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_bert_mlm_dir).save_pretrained(directory)
    return directory


def _dense(model_dir, data, output_dir, callback, **overrides):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return DenseTrainer(
        model=DenseEncoder.from_pretrained(model_dir, separate_encoders=True),
        args=DenseTrainingArguments(**_settings(output_dir, **overrides)),
        train_dataset=fixture_groups(data),
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        callbacks=[callback],
    )


def _splade(model_dir, data, output_dir, callback, **overrides):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return SpladeTrainer(
        model=SpladeEncoder.from_pretrained(model_dir),
        args=SpladeTrainingArguments(**_settings(output_dir, **overrides)),
        train_dataset=fixture_groups(data),
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        callbacks=[callback],
    )


def _led(model_dir, data, output_dir, callback, teacher_dir=None, **overrides):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    groups = fixture_groups(data, ScoredTrainGroups)
    return LEDTrainer(
        model=DenseEncoder.from_pretrained(model_dir),
        args=LEDTrainingArguments(
            **_settings(output_dir, teacher_model_name_or_path="given-to-the-trainer", **overrides)
        ),
        train_dataset=groups,
        data_collator=LEDCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        teacher=SpladeEncoder.from_pretrained(teacher_dir),
        callbacks=[callback],
    )


@pytest.mark.parametrize("kind", ["dense", "splade", "led"])
def test_trainer_checkpointing_gives_the_gradients_of_the_plain_run(
    kind, request, tiny_bert_dir, splade_dir, prepared_msmarco, tmp_path
):
    build = {"dense": _dense, "splade": _splade, "led": _led}[kind]
    model_dir = splade_dir if kind == "splade" else tiny_bert_dir
    extra = {"teacher_dir": splade_dir} if kind == "led" else {}
    grads = []
    for checkpointing in (False, True):
        recorder = FirstStepGradients()
        trainer = build(
            model_dir,
            prepared_msmarco,
            tmp_path / str(checkpointing),
            recorder,
            gradient_checkpointing=checkpointing,
            **extra,
        )
        trainer.train()  # transformers 5.24 enables checkpointing when training starts
        assert trainer.model.is_gradient_checkpointing == checkpointing
        if kind == "led":  # the frozen teacher is no part of the trained model: left alone
            assert not trainer.teacher.is_gradient_checkpointing
        grads.append(recorder.grads)
    plain, checkpointed = grads
    assert set(plain) == set(checkpointed) and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)
    assert max(grad.abs().max().item() for grad in plain.values()) > 1e-4


def test_every_n_layers_and_disable(tiny_bert_dir):
    model = DenseEncoder.from_pretrained(tiny_bert_dir)
    model.gradient_checkpointing_enable(
        gradient_checkpointing_kwargs={"use_reentrant": False}, every_n_layers=2
    )
    layers = [layer.gradient_checkpointing for layer in model.encoder.encoder.layer]
    assert layers == [True, False] and model.is_gradient_checkpointing
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
