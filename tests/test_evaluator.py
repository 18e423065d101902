"""In-training evaluator: subset choice, full retrieval and re-ranking against numpy, the Trainer hooks,
and the `evaluate` metric module loaded offline by path."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

from led_hf.data.runs import write_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.evaluator import RetrievalEvaluator, RetrievalEvaluatorCallback
from led_hf.evaluation.metrics import evaluate_run

DIM = 12  # small: hash collisions make the stand-in encoder imperfect, so rankings matter


def _bag_of_words(texts):
    """Hashed word counts [n, DIM], L2-normalised: a deterministic stand-in for an encoder."""
    out = np.zeros((len(texts), DIM), dtype=np.float64)
    for row, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[row, zlib.crc32(word.encode()) % DIM] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1)).astype(np.float32)


def encode_queries(texts):
    return _bag_of_words(texts)


def encode_passages(titles, texts):
    return _bag_of_words([f"{title} {text}" for title, text in zip(titles, texts)])


def _expected_full(data: PreparedData, split: str, qids=None):
    corpus = data.corpus[:]
    passages = encode_passages(corpus["title"], corpus["text"]).astype(np.float64)
    qrels = data.qrels_dict(split)
    qids = sorted(qrels) if qids is None else qids
    texts = dict(zip(data.queries["qid"], data.queries["text"]))
    scores = encode_queries([texts[q] for q in qids]).astype(np.float64) @ passages.T
    run = {qid: dict(zip(corpus["pid"], row.tolist())) for qid, row in zip(qids, scores)}
    return evaluate_run(run, {q: qrels[q] for q in qids}, recall_depths=(50, 1000))


def test_full_retrieval_matches_numpy_brute_force(prepared_beir):
    evaluator = RetrievalEvaluator(prepared_beir, "train", mode="full", progress=False)
    got = evaluator(encode_queries, encode_passages)
    expected = _expected_full(PreparedData(prepared_beir), "train")
    for name in ("mrr@10", "ndcg@10", "recall@50", "recall@1000", "num_queries"):
        assert got[f"eval_{name}"] == pytest.approx(expected[name], abs=1e-6), name
    assert got["eval_num_queries"] == 5 and evaluator.primary == "ndcg@10"
    assert 0 < got["eval_ndcg@10"] < 1  # the bag-of-words stand-in finds some but not all positives first


def test_subset_is_deterministic_sorted_and_drawn_from_qrels(prepared_beir):
    first = RetrievalEvaluator(prepared_beir, "train", max_queries=3, seed=1, progress=False)
    again = RetrievalEvaluator(prepared_beir, "train", max_queries=3, seed=1, progress=False)
    assert first.qids == again.qids == sorted(first.qids) and len(first.qids) == 3
    assert set(first.qids) <= set(PreparedData(prepared_beir).qrels_dict("train"))
    got = first(encode_queries, encode_passages, prefix="")
    expected = _expected_full(PreparedData(prepared_beir), "train", first.qids)
    assert got["ndcg@10"] == pytest.approx(expected["ndcg@10"]) and got["num_queries"] == 3


def test_sub_corpus_keeps_judged_passages(prepared_beir):
    evaluator = RetrievalEvaluator(prepared_beir, "train", max_passages=8, progress=False)
    data = PreparedData(prepared_beir)
    judged = {pid for judged in evaluator.qrels.values() for pid in judged}
    assert len(evaluator.passage_rows) == 8
    assert set(data.pid_index.rows(sorted(judged)).tolist()) <= set(evaluator.passage_rows.tolist())
    metrics = evaluator(encode_queries, encode_passages)
    assert metrics["eval_ndcg@10"] >= _expected_full(data, "train")["ndcg@10"] - 1e-9  # fewer distractors


def test_rerank_scores_prepared_candidates(prepared_msmarco):
    data = PreparedData(prepared_msmarco)
    evaluator = RetrievalEvaluator(prepared_msmarco, "dev", mode="rerank", primary="mrr@10", progress=False)
    got = evaluator(encode_queries, encode_passages)
    from datasets import load_from_disk

    candidates = load_from_disk(str(prepared_msmarco / "candidates" / "dev"))
    texts = dict(zip(data.queries["qid"], data.queries["text"]))
    run = {}
    for row in candidates:
        passages = data.corpus.select(data.pid_index.rows(row["pids"]).tolist())
        scores = encode_passages(passages["title"], passages["text"]) @ encode_queries([texts[row["qid"]]])[0]
        run[row["qid"]] = dict(zip(row["pids"], scores.tolist()))
    expected = evaluate_run(run, data.qrels_dict("dev"), recall_depths=(50, 1000))
    assert got["eval_mrr@10"] == pytest.approx(expected["mrr@10"]) and got["eval_num_queries"] == 2


def test_rerank_from_run_file_only_sees_candidates(prepared_msmarco, tmp_path):
    run_path = tmp_path / "cands.trec"
    write_run(run_path, {"200": [("5", 1.0), ("2", 0.5)]})  # q201 has no candidates: counts 0
    evaluator = RetrievalEvaluator(
        prepared_msmarco, "dev", mode="rerank", candidates=run_path, progress=False
    )
    got = evaluator(encode_queries, encode_passages, prefix="dev")
    assert got["dev_recall@50"] == 0.5 and got["dev_num_queries_retrieved"] == 1


def test_bad_configuration(prepared_beir):
    with pytest.raises(LedError, match="mode"):
        RetrievalEvaluator(prepared_beir, "train", mode="sparse")
    with pytest.raises(LedError, match="primary metric"):
        RetrievalEvaluator(prepared_beir, "train", primary="map")
    with pytest.raises(LedError, match="candidates"):
        RetrievalEvaluator(prepared_beir, "train", mode="rerank")
    evaluator = RetrievalEvaluator(prepared_beir, "train", progress=False)
    with pytest.raises(LedError, match="encode_passages returned shape"):
        evaluator(encode_queries, lambda titles, texts: np.zeros((1, DIM)))


def _trainer_setup(tmp_path, prepared_beir, **overrides):
    import torch
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    class Projection(torch.nn.Module):
        """Bag-of-words -> 16 dims; `forward` returns a loss so that the Trainer can train it."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(DIM, 16)

        def forward(self, x=None, **kwargs):
            return {"loss": self.linear(x).pow(2).mean()}

    modes = []

    def make_encoders(model):
        def project(array):
            modes.append(model.training)
            return model.linear(torch.from_numpy(array)).detach().numpy()

        return (
            lambda texts: project(encode_queries(texts)),
            lambda titles, texts: project(encode_passages(titles, texts)),
        )

    rows = Dataset.from_dict(
        {"x": np.random.default_rng(0).standard_normal((8, DIM)).astype(np.float32).tolist()}
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        max_steps=2,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        metric_for_best_model="ndcg@10",
        load_best_model_at_end=True,
        report_to=[],
        use_cpu=True,
        logging_steps=1,
        **overrides,
    )
    evaluator = RetrievalEvaluator(prepared_beir, "train", progress=False)
    trainer = Trainer(
        model=Projection(),
        args=args,
        train_dataset=rows,
        eval_dataset=rows,
        callbacks=[RetrievalEvaluatorCallback(evaluator, make_encoders)],
    )
    return trainer, evaluator, make_encoders, modes


def test_callback_feeds_metric_for_best_model(tmp_path, prepared_beir):
    trainer, evaluator, make_encoders, modes = _trainer_setup(tmp_path, prepared_beir)
    trainer.train()  # raises KeyError if eval_ndcg@10 never reaches the best-model logic
    assert trainer.state.best_metric is not None
    logged = [entry for entry in trainer.state.log_history if "eval_ndcg@10" in entry]
    assert len(logged) == 2 and modes and not any(modes)  # encoded in eval mode only
    assert trainer.state.best_metric == max(entry["eval_ndcg@10"] for entry in logged)
    # the direct hook (for trainers overriding evaluate()) gives the same numbers for the same weights
    trainer.model.train()
    direct = evaluator.evaluate_trainer(trainer, make_encoders)
    assert trainer.model.training and not any(modes)  # eval mode while encoding, train mode restored
    assert direct["eval_ndcg@10"] == pytest.approx(evaluator(*make_encoders(trainer.model))["eval_ndcg@10"])


def test_led_metric_loads_offline_by_path(monkeypatch):
    import evaluate

    from led_hf.evaluation.led_metric import METRIC_PATH

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    for path in (METRIC_PATH, f"{METRIC_PATH}/led_metric.py"):
        metric = evaluate.load(path)
        got = metric.compute(
            predictions=[
                {"pids": ["d3", "d1"], "scores": [2.0, 1.5]},
                {"pids": [], "scores": []},
                {"pids": ["a", "b", "c"], "scores": [1.0, 1.0, 1.0]},
            ],
            references=[
                {"pids": ["d1"], "grades": [1]},
                {"pids": ["d7"], "grades": [2]},
                {"pids": ["a", "c"], "grades": [2, 1]},
            ],
            relevance_level=2,
        )
        # query 1: d1 (grade 1) is not relevant at level 2; query 3: tie order c, b, a puts grade-2 "a" third
        run = {"0": {"d3": 2.0, "d1": 1.5}, "1": {}, "2": {"a": 1.0, "b": 1.0, "c": 1.0}}
        qrels = {"0": {"d1": 1}, "1": {"d7": 2}, "2": {"a": 2, "c": 1}}
        assert got == pytest.approx(evaluate_run(run, qrels, relevance_level=2))
        assert got["mrr@10"] == pytest.approx(1 / 3 / 3) and got["num_queries"] == 3
