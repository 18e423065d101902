"""GradCache (`gradient_cache: true`): the parameter gradients of a Trainer step equal the uncached step's
for the dense, SPLADE and LED trainers (contrastive + FLOPS + rank consistency + KL), with gradient
accumulation and under 2 gloo processes; activation memory falls with the chunk size."""

from __future__ import annotations

import os

import pytest
import torch
from trainer_helpers import FirstStepGradients, fixture_groups, free_port, join_gloo_ranks, run_settings
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
)

from benchmarks.activation_memory import SavedActivations
from led_hf.arguments import DenseTrainingArguments, LEDTrainingArguments, SpladeTrainingArguments
from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.collators.led import LEDCollator
from led_hf.collators.train import TrainCollator
from led_hf.data.groups import TrainGroups
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.errors import LedError
from led_hf.modeling import DenseEncoder
from led_hf.modeling.cross_encoder import CrossEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.dense import DenseTrainer
from led_hf.trainers.grad_cache import RandomState, chunk_bounds, grad_cache_training_step
from led_hf.trainers.led import LEDTrainer
from led_hf.trainers.splade import SpladeTrainer

WORLD = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory, no_dropout_bert_dir, tiny_bert_mlm_dir, cross_encoder_dir):
    """No-dropout student and SPLADE (chunked forwards draw other dropout masks than one whole-batch
    forward), a SPLADE teacher and a cross-encoder teacher."""
    splade = tmp_path_factory.mktemp("gc-splade")
    config = BertConfig.from_pretrained(
        tiny_bert_mlm_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    BertForMaskedLM.from_pretrained(tiny_bert_mlm_dir, config=config).save_pretrained(splade)
    AutoTokenizer.from_pretrained(tiny_bert_mlm_dir).save_pretrained(splade)
    return {"student": no_dropout_bert_dir, "splade": splade, "cross_encoder": cross_encoder_dir}


def _settings(output_dir, **overrides) -> dict:
    one_step = dict(
        per_device_train_batch_size=4, max_steps=1, max_grad_norm=0.0, train_sampling_strategy="sequential"
    )
    return run_settings(output_dir, **{**one_step, **overrides})


def _groups(data, cls=TrainGroups):
    return fixture_groups(data, cls, negs_sources="bm25,dense")


def make_trainer(kind, models, data, output_dir, callbacks=(), **overrides):
    if kind == "splade":
        tokenizer = AutoTokenizer.from_pretrained(models["splade"])
        return SpladeTrainer(
            model=SpladeEncoder.from_pretrained(models["splade"]),
            args=SpladeTrainingArguments(
                **_settings(output_dir, query_flops_weight=0.3, passage_flops_weight=0.2, **overrides)
            ),
            train_dataset=_groups(data),
            data_collator=TrainCollator(tokenizer, 16, 32),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    tokenizer = AutoTokenizer.from_pretrained(models["student"])
    if kind == "dense":
        return DenseTrainer(
            model=DenseEncoder.from_pretrained(models["student"]),
            args=DenseTrainingArguments(**_settings(output_dir, **overrides)),
            train_dataset=_groups(data),
            data_collator=TrainCollator(tokenizer, 16, 32),
            processing_class=tokenizer,
            callbacks=list(callbacks),
        )
    collator = LEDCollator(
        tokenizer,
        16,
        32,
        cross_encoder_collator=CrossEncoderCollator(
            AutoTokenizer.from_pretrained(models["cross_encoder"]), 64
        ),
    )
    return LEDTrainer(
        model=DenseEncoder.from_pretrained(models["student"], pooling="mean"),
        args=LEDTrainingArguments(
            **_settings(
                output_dir,
                teacher_model_name_or_path="given-to-the-trainer",
                cross_encoder_name_or_path="given-to-the-trainer",
                rank_weight=1.2,
                kl_weight=1.5,
                **overrides,
            )
        ),
        train_dataset=_groups(data, ScoredTrainGroups),
        data_collator=collator,
        processing_class=tokenizer,
        teacher=SpladeEncoder.from_pretrained(models["splade"]),
        cross_encoder=CrossEncoder.from_pretrained(models["cross_encoder"], allow_new_head=False),
        callbacks=list(callbacks),
    )


def first_step_grads(kind, models, data, output_dir, **overrides):
    """The first step's gradients, in float64: there the cached and plain steps agree to ~1e-14 of the
    largest gradient. In float32 they differ by summation-order noise, which the random tiny model
    amplifies to ~1e-3 of the largest gradient at the [CLS] embedding on some batches."""
    recorder = FirstStepGradients()
    trainer = make_trainer(kind, models, data, output_dir, [recorder], **overrides)
    for module in (trainer.model, getattr(trainer, "teacher", None), getattr(trainer, "cross_encoder", None)):
        if module is not None:
            module.double()
    trainer.train()
    return recorder.grads, trainer


def assert_same_grads(got, expected):
    assert set(got) == set(expected) and len(expected) > 10
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, atol=1e-12, rtol=1e-7, msg=name)
    assert max(grad.abs().max().item() for grad in expected.values()) > 1e-4


@pytest.mark.parametrize("kind", ["dense", "splade", "led"])
def test_cached_gradients_equal_the_uncached_step(kind, models, prepared_msmarco, tmp_path):
    plain, trainer = first_step_grads(kind, models, prepared_msmarco, tmp_path / "plain")
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    for chunk in (3,):  # uneven chunks (3 + 1 queries); chunk 1: the accumulation test
        cached, cached_trainer = first_step_grads(
            kind, models, prepared_msmarco, tmp_path / f"gc{chunk}", gradient_cache=True, gc_chunk_size=chunk
        )
        assert_same_grads(cached, plain)
        cached_logged = [entry for entry in cached_trainer.state.log_history if "loss" in entry]
        for name, value in logged[0].items():  # the same loss and loss parts are logged
            if name not in ("grad_norm", "learning_rate") and isinstance(value, float):
                assert cached_logged[0][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_cached_gradients_with_gradient_accumulation(models, prepared_msmarco, tmp_path):
    common = dict(per_device_train_batch_size=2, gradient_accumulation_steps=2)
    plain, _ = first_step_grads("dense", models, prepared_msmarco, tmp_path / "plain", **common)
    cached, _ = first_step_grads(
        "dense", models, prepared_msmarco, tmp_path / "gc", gradient_cache=True, gc_chunk_size=1, **common
    )
    assert_same_grads(cached, plain)


def test_random_state_replays_dropout():
    dropout = torch.nn.Dropout(0.5)
    state = RandomState(torch.device("cpu"))
    first = dropout(torch.ones(64))
    after_first = torch.get_rng_state()
    with state:
        again = dropout(torch.ones(64))
    assert torch.equal(first, again)
    assert torch.equal(torch.get_rng_state(), after_first)  # the global stream continues as without replay


def test_bad_settings(models, prepared_msmarco, tmp_path):
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    with pytest.raises(LedError, match="gc_chunk_size"):
        DenseTrainingArguments(output_dir=str(tmp_path), gradient_cache=True, gc_chunk_size=0)


def test_activation_memory_falls_with_the_chunk_size(models, prepared_msmarco, tmp_path):
    trainer = make_trainer("dense", models, prepared_msmarco, tmp_path, per_device_train_batch_size=4)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(4)]))
    peaks = {}
    for chunk in (4, 2, 1):
        counter = SavedActivations()
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
            grad_cache_training_step(trainer, trainer.model, batch, chunk)
        trainer.model.zero_grad()
        peaks[chunk] = counter.peak
    assert peaks[1] < peaks[2] < peaks[4]
    assert peaks[1] < 0.4 * peaks[4]  # one query's group instead of four


# -- 2 gloo processes: the cached step equals the uncached step under DDP ------------------------------
def _ddp_worker(rank: int, port: int, models: dict, data: str, out_dir: str) -> None:
    from safetensors.torch import save_file

    join_gloo_ranks(rank, port, WORLD)
    for kind in ("dense", "splade", "led"):
        for cached in (False, True):
            grads, trainer = first_step_grads(
                kind,
                models,
                data,
                os.path.join(out_dir, f"{kind}-{cached}-{rank}"),
                per_device_train_batch_size=2,
                gradient_cache=cached,
                gc_chunk_size=1,
            )
            assert trainer.accelerator.num_processes == WORLD
            save_file(
                {n: g.contiguous() for n, g in grads.items()},
                os.path.join(out_dir, f"{kind}-{'cached' if cached else 'plain'}-rank{rank}.safetensors"),
            )


@pytest.mark.slow
def test_two_gloo_processes_with_cache_equal_them_without(models, prepared_msmarco, tmp_path):
    """Cross-device negatives, the FLOPS of each device's rows, the teachers' losses: the all-reduced
    gradients of the cached step equal the uncached DDP step's, on both ranks."""
    from safetensors.torch import load_file

    port = free_port()
    models = {name: str(path) for name, path in models.items()}
    torch.multiprocessing.spawn(
        _ddp_worker, args=(port, models, str(prepared_msmarco), str(tmp_path)), nprocs=WORLD, join=True
    )
    for kind in ("dense", "splade", "led"):
        plain = load_file(tmp_path / f"{kind}-plain-rank0.safetensors")
        for rank in range(WORLD):
            assert_same_grads(load_file(tmp_path / f"{kind}-cached-rank{rank}.safetensors"), plain)
