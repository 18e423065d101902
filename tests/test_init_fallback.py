"""`fallback_to_init` (led_hf/trainers/init_fallback.py): the initial model is evaluated before training and
saved instead of the trained one unless training beats it on the evaluation split; the metrics written
afterwards are those of the saved model."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats
from test_training_eval import _dense_trainer, _evaluator
from trainer_helpers import free_port, join_gloo_ranks

from led_hf.arguments import DataArguments, DenseTrainingArguments, ModelArguments
from led_hf.cli import recipe
from led_hf.errors import LedError
from led_hf.evaluation.significance import beats, detectable_difference
from led_hf.modeling import DenseEncoder
from led_hf.trainers.init_fallback import InitFallback, metric_name, refuse_sharded_weights


def _weights(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.parametrize("trained_beats_init", [False, True])
def test_settle_saves_the_initial_weights_unless_training_beats_them(
    tiny_bert_dir, prepared_msmarco, tmp_path, trained_beats_init
):
    trainer = _dense_trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "out", _evaluator(prepared_msmarco))
    initial = _weights(trainer.model)
    fallback = InitFallback(trainer)
    assert fallback.init == pytest.approx(fallback.init_metrics["init_ndcg@10"])
    assert fallback.init_metrics["init_num_queries"] == 5
    trainer.train()  # lr 1e-3, 3 steps: the weights move
    trained = _weights(trainer.model)
    assert not _same(trained, initial)
    metrics = trainer.evaluate()
    init_values = [fallback.init_per_query[q] for q in sorted(fallback.init_per_query)]
    assert np.mean(init_values) == pytest.approx(fallback.init)
    measured_init = fallback.init
    # the outcome under test, whatever the tiny model reaches: the init's score just below or above the
    # trained model's (the trained score stays the evaluation's own, which the paired test reads)
    fallback.init = metrics["eval_ndcg@10"] + (-0.01 if trained_beats_init else 0.01)
    fallback.init_metrics["init_ndcg@10"] = fallback.init

    result = fallback.settle(trainer, metrics)

    assert result["kept_init"] == float(not trained_beats_init)
    assert result["init_ndcg@10"] == fallback.init and result["trained_ndcg@10"] == metrics["eval_ndcg@10"]
    assert result["fallback_metric"] == "ndcg@10" and result["fallback_greater_is_better"] == 1.0
    # beside the decision, its paired test over the evaluator's queries (trained minus init, per query)
    trained_values = [
        trainer.retrieval_evaluator.per_query[q]["ndcg@10"] for q in sorted(fallback.init_per_query)
    ]
    assert result["fallback_queries"] == 5.0
    if init_values != trained_values:
        expected_p = stats.ttest_rel(trained_values, init_values).pvalue
        assert result["fallback_p_t"] == pytest.approx(expected_p)
    else:
        assert result["fallback_p_t"] == 1.0
    assert 0.0 < result["fallback_p_randomization"] <= 1.0
    now = _weights(trainer.accelerator.unwrap_model(trainer.model))
    if trained_beats_init:
        assert _same(now, trained) and result["eval_ndcg@10"] == metrics["eval_ndcg@10"]
    else:
        assert _same(now, initial)
        assert result["eval_ndcg@10"] == fallback.init
        # the model card reads the latest logged evaluation: it must be the saved (initial) model's
        latest = [entry for entry in trainer.state.log_history if "eval_ndcg@10" in entry][-1]
        assert latest["eval_ndcg@10"] == fallback.init and latest["kept_init"] == 1.0
        # evaluating the model as it now is gives the initial score back (same weights, same queries)
        assert trainer.evaluate()["eval_ndcg@10"] == pytest.approx(measured_init, abs=1e-6)


def test_per_query_values_of_another_evaluation_give_no_paired_test(
    tiny_bert_dir, prepared_msmarco, tmp_path, caplog
):
    """settle's paired test reads the evaluator's latest per-query values; when their mean is not the score
    being decided on (metrics from an earlier evaluation, say), the decision is written without a test."""
    trainer = _dense_trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "out", _evaluator(prepared_msmarco))
    fallback = InitFallback(trainer)
    metrics = trainer.evaluate()
    stale = {**metrics, "eval_ndcg@10": metrics["eval_ndcg@10"] + 0.1}
    with caplog.at_level("WARNING", logger="led_hf.trainers.init_fallback"):
        result = fallback.settle(trainer, stale)
    assert "fallback_queries" not in result and "fallback_p_t" not in result
    assert "not those of the score decided on" in caplog.text
    assert result["trained_ndcg@10"] == stale["eval_ndcg@10"] and result["kept_init"] == 0.0


def test_the_paired_test_needs_per_query_values_of_both_models():
    """Without a retrieval evaluator's per-query values (another rank under DDP, a loss as the metric) the
    decision stands alone; with identical values the difference is no evidence at all (p 1)."""
    fallback = InitFallback.__new__(InitFallback)
    fallback.metric, fallback.init_per_query = "ndcg@10", None
    assert fallback.paired_test({"q1": 0.5, "q2": 0.4}) == {}
    fallback.init_per_query = {"q1": 0.5, "q2": 0.4, "q3": 0.1}
    assert fallback.paired_test({"q1": 0.5, "q2": 0.4}) == {}  # not the same queries
    same = fallback.paired_test(dict(fallback.init_per_query))
    assert same == {
        "fallback_queries": 3.0,
        "fallback_p_randomization": 1.0,
        "fallback_p_t": 1.0,
        "fallback_detectable": 0.0,
    }
    apart = fallback.paired_test({"q1": 0.6, "q2": 0.3, "q3": 0.3})
    assert apart["fallback_detectable"] == pytest.approx(detectable_difference([0.1, -0.1, 0.2]))


def test_a_tie_keeps_the_initial_model(tiny_bert_dir, prepared_msmarco, tmp_path):
    trainer = _dense_trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "out", _evaluator(prepared_msmarco))
    fallback = InitFallback(trainer)
    metrics = trainer.evaluate()
    assert fallback.settle(trainer, {**metrics, "eval_ndcg@10": fallback.init})["kept_init"] == 1.0
    assert fallback.settle(trainer, {**metrics, "eval_ndcg@10": fallback.init + 1e-9})["kept_init"] == 0.0


@pytest.mark.parametrize(("gain", "kept"), [(0.004, True), (0.005, True), (0.006, False)])
def test_a_gain_within_fallback_min_gain_keeps_the_initial_model(
    tiny_bert_dir, prepared_msmarco, tmp_path, gain, kept
):
    """fallback_min_gain 0.005: the trained model must beat the init by more than the margin."""
    trainer = _dense_trainer(
        tiny_bert_dir,
        prepared_msmarco,
        tmp_path / "out",
        _evaluator(prepared_msmarco),
        fallback_min_gain=0.005,
    )
    fallback = InitFallback(trainer)
    initial = _weights(trainer.model)
    trainer.train()
    trained = fallback.init + gain  # the decision under test, whatever the tiny model reaches
    result = fallback.settle(trainer, {**trainer.evaluate(), "eval_ndcg@10": trained})
    assert result["kept_init"] == float(kept) and result["fallback_min_gain"] == 0.005
    assert _same(_weights(trainer.accelerator.unwrap_model(trainer.model)), initial) == kept
    # a loss is better lower: the margin applies downwards
    assert beats(fallback.init - gain, fallback.init, greater_is_better=False, margin=0.005) is not kept
    assert not beats(fallback.init + gain, fallback.init, greater_is_better=False, margin=0.005)


def test_a_negative_fallback_min_gain_is_refused(tmp_path):
    with pytest.raises(LedError, match="fallback_min_gain must be 0 or more, got -0.01"):
        DenseTrainingArguments(output_dir=str(tmp_path), use_cpu=True, fallback_min_gain=-0.01)


def test_fit_and_save_writes_the_saved_models_metrics(tiny_bert_dir, prepared_msmarco, tmp_path):
    """End to end through the recipes' `fit_and_save`: eval_results.json, the saved folder and the card's
    latest evaluation agree on which model was kept, whichever it is."""
    out = tmp_path / "out"
    trainer = _dense_trainer(
        tiny_bert_dir,
        prepared_msmarco,
        out,
        _evaluator(prepared_msmarco),
        fallback_to_init=True,
        learning_rate=5e-2,
    )
    initial = _weights(trainer.model)
    model_args = ModelArguments(model_name_or_path=str(tiny_bert_dir))
    data_args = DataArguments(data=str(prepared_msmarco), eval_split="train")
    recipe.fit_and_save(trainer, model_args, data_args, trainer.args, evaluator=trainer.retrieval_evaluator)
    results = json.loads((out / "eval_results.json").read_text())
    kept = results["kept_init"] == 1.0
    assert results["eval_ndcg@10"] == results["init_ndcg@10" if kept else "trained_ndcg@10"]
    assert kept == (not results["trained_ndcg@10"] > results["init_ndcg@10"])
    saved = _weights(DenseEncoder.from_pretrained(out))
    assert _same(saved, initial) == kept
    latest = [entry for entry in trainer.state.log_history if "eval_ndcg@10" in entry][-1]
    assert latest["eval_ndcg@10"] == results["eval_ndcg@10"]


def test_fallback_needs_an_evaluation_split(tiny_bert_dir, prepared_msmarco, tmp_path):
    trainer = _dense_trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "out", None, fallback_to_init=True)
    with pytest.raises(LedError, match="eval_split"):
        recipe.fit_and_save(trainer, None, None, trainer.args, evaluator=None)
    # refused before anything was written (the Trainer may have created the empty folder)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_refused_guard_leaves_no_run_behind(tiny_bert_dir, prepared_msmarco, tmp_path):
    out = tmp_path / "out"
    trainer = _dense_trainer(
        tiny_bert_dir, prepared_msmarco, out, _evaluator(prepared_msmarco), fallback_to_init=True
    )
    trainer.is_fsdp_enabled = True  # as the Trainer sets it under FSDP
    data_args = DataArguments(data=str(prepared_msmarco), eval_split="train")
    with pytest.raises(LedError, match="FSDP"):
        recipe.fit_and_save(
            trainer,
            ModelArguments(model_name_or_path=str(tiny_bert_dir)),
            data_args,
            trainer.args,
            evaluator=trainer.retrieval_evaluator,
        )
    assert not (out / "led_args.json").exists()


def test_the_metric_follows_metric_for_best_model(tiny_bert_dir, prepared_msmarco, tmp_path):
    args = DenseTrainingArguments(output_dir=str(tmp_path), use_cpu=True, metric_for_best_model="eval_mrr@10")
    assert metric_name(args) == ("mrr@10", True)
    args = DenseTrainingArguments(output_dir=str(tmp_path), use_cpu=True, metric_for_best_model="loss")
    assert metric_name(args) == ("loss", False)
    trainer = _dense_trainer(
        tiny_bert_dir,
        prepared_msmarco,
        tmp_path / "out",
        _evaluator(prepared_msmarco),
        metric_for_best_model="eval_recall@7",
    )
    with pytest.raises(LedError, match="recall@7"):
        InitFallback(trainer)


# -- two gloo processes: only rank 0 keeps W_0, the others receive it ---------------------------------------
def _ddp_fallback_worker(rank: int, port: int, model_dir: str, data: str, out_dir: str) -> None:
    join_gloo_ranks(rank, port, 2)
    trainer = _dense_trainer(model_dir, data, os.path.join(out_dir, "out"), _evaluator(data))
    initial = _weights(trainer.accelerator.unwrap_model(trainer.model))
    fallback = InitFallback(trainer)
    trainer.train()
    moved = not _same(_weights(trainer.accelerator.unwrap_model(trainer.model)), initial)
    metrics = trainer.evaluate()
    fallback.init = metrics["eval_ndcg@10"] + 0.01  # the outcome under test: the init wins, on every rank
    result = fallback.settle(trainer, metrics)
    restored = _same(_weights(trainer.accelerator.unwrap_model(trainer.model)), initial)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(
            {"has_copy": fallback.weights is not None, "moved": moved, "restored": restored, **result}, handle
        )


def test_under_ddp_rank_0_alone_keeps_the_initial_weights_and_every_rank_gets_them_back(
    tiny_bert_dir, prepared_msmarco, tmp_path
):
    torch.multiprocessing.spawn(
        _ddp_fallback_worker,
        args=(free_port(), str(tiny_bert_dir), str(prepared_msmarco), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [rank["has_copy"] for rank in ranks] == [True, False]
    assert all(rank["moved"] and rank["restored"] and rank["kept_init"] == 1.0 for rank in ranks)


@pytest.mark.parametrize(
    ("stage", "fsdp", "refused"),
    [(3, False, "ZeRO-3"), (None, True, "FSDP"), (2, False, None), (None, False, None)],
)
def test_sharded_weights_are_refused_before_anything_is_copied(stage, fsdp, refused):
    plugin = SimpleNamespace(zero_stage=stage) if stage is not None else None  # None: no DeepSpeed
    trainer = SimpleNamespace(
        is_fsdp_enabled=fsdp,
        accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)),
    )
    if refused:
        with pytest.raises(LedError, match=refused):
            refuse_sharded_weights(trainer)
    else:
        refuse_sharded_weights(trainer)  # ZeRO-2 and DDP keep whole weights on every process
