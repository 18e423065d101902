"""Retrieval evaluation during training: `eval_strategy` steps/epoch without an eval_dataset, checkpoint
selection on `eval_ndcg@10`, SPLADE through the inverted index, and the passage encoding shared by 2 gloo
processes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from trainer_helpers import fixture_groups, free_port, join_gloo_ranks, run_settings
from transformers import AutoTokenizer

from led_hf.arguments import DenseTrainingArguments, LEDTrainingArguments, SpladeTrainingArguments
from led_hf.collators.encode import encode_passages, encode_texts
from led_hf.collators.led import LEDCollator
from led_hf.collators.train import TrainCollator
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.evaluator import RetrievalEvaluator
from led_hf.evaluation.metrics import evaluate_run
from led_hf.modeling import DenseEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.retrieval.impact import quantize
from led_hf.trainers.dense import DenseTrainer
from led_hf.trainers.led import LEDTrainer
from led_hf.trainers.splade import SpladeTrainer

SELECTION = dict(
    eval_strategy="steps",
    eval_steps=1,
    save_strategy="steps",
    save_steps=1,
    metric_for_best_model="eval_ndcg@10",
    load_best_model_at_end=True,
    save_total_limit=1,
)


def _settings(output_dir, **overrides) -> dict:
    # checkpoints on the Trainer's default schedule: the selection tests keep the best one
    own = dict(learning_rate=5e-3, per_device_eval_batch_size=4, save_strategy="steps")
    return run_settings(output_dir, **{**own, **overrides})


def _evaluator(data, **overrides) -> RetrievalEvaluator:
    return RetrievalEvaluator(data, overrides.pop("split", "train"), progress=False, **overrides)


def _dense_trainer(model_dir, data, output_dir, evaluator=None, **overrides) -> DenseTrainer:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    groups = fixture_groups(data)
    return DenseTrainer(
        model=DenseEncoder.from_pretrained(model_dir),
        args=DenseTrainingArguments(**_settings(output_dir, **overrides)),
        train_dataset=groups,
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        retrieval_evaluator=evaluator,
    )


def _eval_logs(trainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "eval_ndcg@10" in entry]


def test_eval_strategy_without_eval_dataset_selects_the_best_checkpoint(
    tiny_bert_dir, prepared_msmarco, tmp_path
):
    out = tmp_path / "out"
    trainer = _dense_trainer(tiny_bert_dir, prepared_msmarco, out, _evaluator(prepared_msmarco), **SELECTION)
    trainer.train()
    logged = _eval_logs(trainer)
    assert [entry["step"] for entry in logged] == [1, 2, 3]
    assert all("eval_mrr@10" in entry and entry["eval_num_queries"] == 5 for entry in logged)
    scores = [entry["eval_ndcg@10"] for entry in logged]
    best_step = 1 + int(np.argmax(scores))  # the Trainer keeps the first of equal scores
    assert trainer.state.best_metric == max(scores)
    assert trainer.state.best_model_checkpoint == str(out / f"checkpoint-{best_step}")
    # save_total_limit=1 with load_best_model_at_end: the best checkpoint is the one left at the end
    assert [path.name for path in out.glob("checkpoint-*")] == [f"checkpoint-{best_step}"]
    # load_best_model_at_end: the trained model now holds the best checkpoint's weights
    best = DenseEncoder.from_pretrained(out / f"checkpoint-{best_step}")
    for name, value in best.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value)
    # and evaluating it again gives the best score (same weights, same subset)
    assert trainer.evaluate()["eval_ndcg@10"] == pytest.approx(max(scores), abs=1e-6)


def test_eval_strategy_needs_an_evaluator_or_a_dataset(tiny_bert_dir, prepared_msmarco, tmp_path):
    with pytest.raises(LedError, match="eval_split"):
        _dense_trainer(tiny_bert_dir, prepared_msmarco, tmp_path, None, eval_strategy="epoch")


def test_splade_evaluates_through_the_inverted_index(tiny_bert_mlm_dir, prepared_msmarco, tmp_path):
    """The in-training metrics equal those of quantised exact sparse search of the saved checkpoint."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    trainer = SpladeTrainer(
        model=SpladeEncoder.from_pretrained(tiny_bert_mlm_dir),
        args=SpladeTrainingArguments(
            **_settings(tmp_path / "out", eval_strategy="epoch", max_steps=2, save_strategy="no")
        ),
        train_dataset=fixture_groups(prepared_msmarco),
        data_collator=TrainCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        retrieval_evaluator=_evaluator(prepared_msmarco, depth=100),
    )
    trainer.train()
    got = trainer.evaluate()

    model = trainer.model.eval()
    data = PreparedData(prepared_msmarco)
    corpus, qrels = data.corpus[:], data.qrels_dict("train")
    qids = sorted(qrels)
    texts = dict(zip(data.queries["qid"], data.queries["text"]))
    with torch.no_grad():
        passages = model.encode_passage(encode_passages(tokenizer, corpus["title"], corpus["text"], 128))
        queries = model.encode_query(encode_texts(tokenizer, [texts[q] for q in qids], 32))
    scores = quantize(queries.numpy()).astype(np.int64) @ quantize(passages.numpy()).astype(np.int64).T
    run = {  # the index lists only passages sharing a term with the query
        qid: {pid: float(s) for pid, s in zip(corpus["pid"], row) if s > 0} for qid, row in zip(qids, scores)
    }
    expected = evaluate_run(run, {q: qrels[q] for q in qids}, recall_depths=(50, 100))
    for name in ("ndcg@10", "mrr@10", "recall@50"):
        assert got[f"eval_{name}"] == pytest.approx(expected[name], abs=1e-9), name
    assert [entry["epoch"] for entry in _eval_logs(trainer)][:1] == [pytest.approx(2 / 3, abs=0.4)]


def test_led_trainer_evaluates_each_epoch(student_teacher, prepared_msmarco, tmp_path):
    student, teacher = student_teacher
    tokenizer = AutoTokenizer.from_pretrained(student)
    groups = fixture_groups(prepared_msmarco, ScoredTrainGroups)
    trainer = LEDTrainer(
        model=DenseEncoder.from_pretrained(student),
        args=LEDTrainingArguments(
            **_settings(
                tmp_path / "out",
                num_train_epochs=2,
                max_steps=-1,
                per_device_train_batch_size=4,  # one step per epoch
                eval_strategy="epoch",
                save_strategy="epoch",
                metric_for_best_model="eval_mrr@10",
                load_best_model_at_end=True,
                teacher_model_name_or_path="given-to-the-trainer",
            )
        ),
        train_dataset=groups,
        data_collator=LEDCollator(tokenizer, 16, 32),
        processing_class=tokenizer,
        teacher=SpladeEncoder.from_pretrained(teacher),
        retrieval_evaluator=_evaluator(prepared_msmarco, mode="rerank", split="dev"),
    )
    trainer.train()
    logged = _eval_logs(trainer)
    assert [entry["epoch"] for entry in logged] == [1.0, 2.0]
    assert trainer.state.best_metric == max(entry["eval_mrr@10"] for entry in logged)


@pytest.fixture(scope="module")
def student_teacher(tmp_path_factory, tiny_bert_dir, tiny_bert_mlm_dir):
    teacher = tmp_path_factory.mktemp("eval-teacher")
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).save_pretrained(
        teacher, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    )
    return tiny_bert_dir, teacher


# -- two gloo processes share the passage encoding ------------------------------------------------------
WORLD = 2


class _Ranks:
    """The two attributes `evaluate_model` reads from an accelerator."""

    def __init__(self, rank: int, world: int):
        self.process_index, self.num_processes = rank, world


def _make_encoders(model, tokenizer):
    def encoders(model):
        return (
            lambda texts: model.encode_query(**encode_texts(tokenizer, texts, 32)),
            lambda titles, texts: model.encode_passage(**encode_passages(tokenizer, titles, texts, 128)),
        )

    return encoders


def _evaluate_both(model_dirs, data, rank=0, world=1) -> dict:
    results = {}
    for representation, model_dir in model_dirs.items():
        load = DenseEncoder if representation == "dense" else SpladeEncoder
        model, tokenizer = load.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
        evaluator = RetrievalEvaluator(data, "train", progress=False, encode_batch_size=5)
        results[representation] = evaluator.evaluate_model(
            model, _make_encoders(model, tokenizer), "eval", representation, _Ranks(rank, world)
        )
    return results


def _evaluation_worker(rank: int, port: int, model_dirs: dict, data: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = _evaluate_both(model_dirs, data, rank, WORLD)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump(results, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_give_the_one_process_metrics(
    tiny_bert_dir, tiny_bert_mlm_dir, prepared_msmarco, tmp_path
):
    model_dirs = {"dense": str(tiny_bert_dir), "sparse": str(tiny_bert_mlm_dir)}
    torch.multiprocessing.spawn(
        _evaluation_worker,
        args=(free_port(), model_dirs, str(prepared_msmarco), str(tmp_path)),
        nprocs=WORLD,
        join=True,
    )
    single = _evaluate_both(model_dirs, prepared_msmarco)
    for rank in range(WORLD):  # every rank returns rank 0's metrics
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for representation in model_dirs:
            for name in ("eval_ndcg@10", "eval_mrr@10", "eval_recall@50", "eval_num_queries"):
                assert got[representation][name] == pytest.approx(single[representation][name], abs=1e-6)


def _ddp_trainer_worker(rank: int, port: int, model_dir: str, data: str, out_dir: str) -> None:
    join_gloo_ranks(rank, port, WORLD)
    trainer = _dense_trainer(model_dir, data, os.path.join(out_dir, "out"), _evaluator(data), **SELECTION)
    assert trainer.accelerator.num_processes == WORLD
    trainer.train()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
        json.dump(
            {"logged": _eval_logs(trainer), "best": trainer.state.best_model_checkpoint}, handle, default=str
        )


@pytest.mark.slow
def test_ddp_training_evaluates_and_selects_on_every_rank(tiny_bert_dir, prepared_msmarco, tmp_path):
    torch.multiprocessing.spawn(
        _ddp_trainer_worker,
        args=(free_port(), str(tiny_bert_dir), str(prepared_msmarco), str(tmp_path)),
        nprocs=WORLD,
        join=True,
    )
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    assert ranks[0] == ranks[1]  # same metrics and the same best checkpoint everywhere
    assert [entry["step"] for entry in ranks[0]["logged"]] == [1, 2, 3]
    assert ranks[0]["best"].startswith(str(tmp_path / "out" / "checkpoint-"))
