"""Distilling precomputed teacher scores into SPLADE (`led train splade --kl_weight`) and the dense teacher of
`led score-teacher --kind dense`, each against an independent float64 computation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from trainer_helpers import (
    declare_false_negative,
    eval_loss_with_parts,
    fixture_groups,
    run_settings,
    train_logs,
)
from transformers import AutoTokenizer

from led_hf.arguments import SpladeTrainingArguments
from led_hf.cli.main import main as led_main
from led_hf.collators.encode import encode_passages
from led_hf.collators.train import TrainCollator
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.losses.masking import false_negative_mask
from led_hf.modeling import DenseEncoder
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.splade import SpladeTrainer

GROUP = 3  # 1 positive + 2 negatives
FLOPS = dict(query_flops_weight=0.1, passage_flops_weight=0.2)


@pytest.fixture(scope="module")
def dense_teacher_dir(tmp_path_factory, tiny_bert_dir):
    """A led-hf dense checkpoint (mean pooling, normalised, temperature 0.05) of the tiny BERT."""
    directory = tmp_path_factory.mktemp("dense-teacher")
    model = DenseEncoder.from_pretrained(tiny_bert_dir, pooling="mean", normalize=True, temperature=0.05)
    model.save_pretrained(directory, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir))
    return directory


@pytest.fixture()
def scored_data(tmp_path, prepared_msmarco, dense_teacher_dir, capsys):
    """A copy of the prepared fixture with the dense teacher's scores in DATA/teacher_scores/dense."""
    data = shutil.copytree(prepared_msmarco, tmp_path / "data")
    flags = ["--query-max-length", "16", "--passage-max-length", "32", "--batch-size", "3"]
    argv = ["score-teacher", "--data", str(data), "--teacher", str(dense_teacher_dir), "--name", "dense"]
    assert led_main([*argv, *flags, "--queries-per-chunk", "2", "--no-progress"]) == 0
    metadata = json.loads(capsys.readouterr().out)
    assert metadata["kind"] == "dense" and metadata["temperature"] == 0.05  # told from led_config.json
    return data


def _float64_embeddings(model, batch, side: str) -> np.ndarray:
    with torch.no_grad():
        encode = model.encode_query if side == "query" else model.encode_passage
        return encode(batch).double().numpy()


def test_dense_teacher_scores_are_its_scaled_dot_products(scored_data, dense_teacher_dir):
    from datasets import load_from_disk

    data = PreparedData(scored_data)
    table = load_from_disk(str(scored_data / "teacher_scores" / "dense"))
    model = DenseEncoder.from_pretrained(dense_teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(dense_teacher_dir)
    queries = dict(zip(data.queries["qid"], data.queries["text"]))
    corpus = {
        pid: (title, text) for pid, title, text in zip(*(data.corpus[c] for c in ("pid", "title", "text")))
    }
    checked = 0
    for qid, pids, scores in zip(table["qid"], table["pids"], table["scores"]):
        query = tokenizer([queries[qid]], max_length=16, truncation=True, return_tensors="pt")
        titles, texts = zip(*(corpus[p] for p in pids))
        passages = encode_passages(tokenizer, list(titles), list(texts), 32)
        expected = (
            _float64_embeddings(model, passages, "passage") @ _float64_embeddings(model, query, "query")[0]
        )
        np.testing.assert_allclose(scores, expected / 0.05, rtol=1e-4, atol=1e-4)
        checked += len(pids)
    assert checked == 23  # every training query's positives and distinct bm25 negatives


def _trainer(model_dir, data, output_dir, **overrides) -> SpladeTrainer:
    args = SpladeTrainingArguments(**run_settings(output_dir, **{**FLOPS, **overrides}))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tables = {"teacher_scores": args.teacher_scores_name} if args.kl_weight > 0 else {}
    groups = fixture_groups(data, ScoredTrainGroups, num_negatives=GROUP - 1, score_tables=tables)
    return SpladeTrainer(
        model=SpladeEncoder.from_pretrained(model_dir),
        args=args,
        train_dataset=groups,
        data_collator=TrainCollator(tokenizer, 16, 32, extra_keys=tuple(tables)),
        processing_class=tokenizer,
    )


def _kl_float64(student: np.ndarray, teacher: np.ndarray, temperature: float, mask: np.ndarray) -> float:
    """T² · mean over queries of sum_j p_j (log p_j - log q_j), masked candidates left out of both softmaxes."""
    total = 0.0
    for s, t, m in zip(student / temperature, teacher / temperature, mask):
        s, t = s[~m], t[~m]
        log_q = s - np.log(np.exp(s - s.max()).sum()) - s.max()
        log_p = t - np.log(np.exp(t - t.max()).sum()) - t.max()
        total += float((np.exp(log_p) * (log_p - log_q)).sum())
    return total / len(student) * temperature**2


def test_kl_term_against_float64_with_a_false_negative(tiny_bert_mlm_dir, scored_data, tmp_path):
    """The trainer's loss = contrastive + FLOPS + w · KL(teacher ‖ SPLADE; T) over each query's own
    candidates; a hard negative the qrels call relevant leaves the KL's softmaxes."""
    trainer = _trainer(
        tiny_bert_mlm_dir, scored_data, tmp_path / "out", kl_weight=0.7, kl_temperature=2.0,
        teacher_scores_name="dense",
    )  # fmt: skip
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 1, 2)])
    declare_false_negative(batch, query=0, column=1, group_size=GROUP)  # query 0's first hard negative
    loss, out, parts = eval_loss_with_parts(trainer, batch)

    queries = out.query_embeddings.double().numpy()
    passages = out.passage_embeddings.double().numpy().reshape(3, GROUP, -1)
    student = np.einsum("bv,bgv->bg", queries, passages)
    own = false_negative_mask(batch["positive_rows"], batch["passage_rows"], GROUP, in_batch_negatives=False)
    own = own.numpy()
    assert own[0, 1] and own.sum() == 1
    teacher = batch["teacher_scores"].double().numpy()
    expected = _kl_float64(student, teacher, 2.0, own)
    assert parts["kl_loss"] == pytest.approx(expected, rel=1e-4)
    assert expected != pytest.approx(_kl_float64(student, teacher, 2.0, np.zeros_like(own)), rel=1e-3)
    flops = 0.1 * parts["flops_query_loss"] + 0.2 * parts["flops_passage_loss"]
    assert loss.item() == pytest.approx(parts["contrastive_loss"] + flops + 0.7 * expected, rel=1e-4)
    assert 0.0 <= parts["teacher_agreement"] <= 1.0 and parts["kl_weight"] == 0.7


def test_distillation_trains_from_the_cli_and_bad_settings_fail(
    tiny_bert_mlm_dir, scored_data, tmp_path, capsys
):
    out = tmp_path / "run"
    argv = ["train", "splade", "--model_name_or_path", str(tiny_bert_mlm_dir), "--data", str(scored_data)]
    settings = ["--num_negatives", "2", "--per_device_train_batch_size", "2", "--max_steps", "2",
                "--query_max_length", "16", "--passage_max_length", "32", "--use_cpu", "true",
                "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no"]  # fmt: skip
    distil = ["--kl_weight", "1", "--teacher_scores_name", "dense"]
    assert led_main([*argv, *settings, *distil, "--output_dir", str(out)]) == 0
    resolved = json.loads((out / "led_args.json").read_text())
    assert resolved["kl_weight"] == 1 and resolved["teacher_scores_name"] == "dense"

    trainer = _trainer(
        tiny_bert_mlm_dir, scored_data, tmp_path / "t", kl_weight=1.0, teacher_scores_name="dense"
    )
    trainer.train()
    assert all("kl_loss" in entry and "teacher_agreement" in entry for entry in train_logs(trainer))

    with pytest.raises(LedError, match="teacher_scores_name is not set"):
        SpladeTrainingArguments(output_dir=str(tmp_path), use_cpu=True, kl_weight=1.0)
    with pytest.raises(LedError, match="kl_temperature"):
        SpladeTrainingArguments(output_dir=str(tmp_path), use_cpu=True, kl_temperature=0.0)
    capsys.readouterr()
    missing = ["--kl_weight", "1", "--teacher_scores_name", "nope", "--output_dir", str(tmp_path / "m")]
    assert led_main([*argv, *settings, *missing]) == 1
    assert "nope" in capsys.readouterr().err and not (tmp_path / "m" / "model.safetensors").exists()
