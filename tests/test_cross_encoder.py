"""Cross-encoder: model save/load (HF + sentence-transformers), listwise loss, trainer, recipe, `led rerank`."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from trainer_helpers import FirstStepGradients, fixture_groups, run_settings
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from led_hf.arguments import CrossEncoderTrainingArguments
from led_hf.cli.main import main as led_main
from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.losses import listwise_cross_entropy
from led_hf.losses.listwise import positive_top_accuracy
from led_hf.modeling.checkpoint import detect_model_kind
from led_hf.modeling.cross_encoder import CrossEncoder
from led_hf.trainers.cross_encoder import CrossEncoderTrainer

PAIRS = [
    {
        "qid": "1",
        "pid": "0",
        "query": "does aspirin prevent heart attack",
        "title": "Aspirin",
        "text": "aspirin lowers the risk of heart attack",
    },
    {
        "qid": "1",
        "pid": "1",
        "query": "does aspirin prevent heart attack",
        "title": "",
        "text": "vitamin d deficiency in winter",
    },
    {
        "qid": "2",
        "pid": "4",
        "query": "salt intake blood pressure",
        "title": "Exercise",
        "text": "exercise lowers blood pressure",
    },
]


def _numpy_listwise(scores: np.ndarray) -> tuple[float, np.ndarray]:
    """float64 reference: mean_i (logsumexp(S_i) - S_i0) and its gradient (softmax(S) - e_0) / B."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1)) + scores.max(axis=1)
    loss = float(np.mean(log_norm - scores[:, 0]))
    probs = np.exp(scores - log_norm[:, None])
    onehot = np.zeros_like(scores)
    onehot[:, 0] = 1.0
    return loss, (probs - onehot) / scores.shape[0]


# ---------------------------------------------------------------------------------------------- loss
@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (5, 8)])
def test_listwise_cross_entropy_matches_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    scores = rng.normal(scale=4.0, size=shape)
    expected_loss, expected_grad = _numpy_listwise(scores)
    tensor = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    loss = listwise_cross_entropy(tensor)
    loss.backward()
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(tensor.grad.numpy(), expected_grad, rtol=1e-10, atol=1e-12)
    # fp32 and bf16 inputs are computed in fp32
    assert listwise_cross_entropy(tensor.detach().to(torch.bfloat16)).dtype == torch.float32


def test_listwise_cross_entropy_literal_example_and_bad_shape():
    assert listwise_cross_entropy(torch.tensor([[2.0, 0.0]])).item() == pytest.approx(0.126928, abs=1e-6)
    with pytest.raises(LedError, match="queries, group_size"):
        listwise_cross_entropy(torch.zeros(4))
    scores = torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, -1.0], [1.0, 1.0, 0.0]])
    assert positive_top_accuracy(scores).item() == pytest.approx(1 / 3)  # a tie is not a win


# ---------------------------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def tiny_ce_dir(tmp_path_factory, tiny_bert_dir):
    """The tiny BERT with a fresh 1-logit head, saved by `CrossEncoder.save_pretrained` (max_length 48)."""
    directory = tmp_path_factory.mktemp("tiny-ce")
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(tiny_bert_dir)
    model.max_length = 48
    model.save_pretrained(directory, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir))
    return directory


def test_fresh_head_warns_once_and_is_refused_where_a_trained_head_is_needed(tiny_bert_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="led_hf.modeling.cross_encoder"):
        CrossEncoder.from_pretrained(tiny_bert_dir)
        CrossEncoder.from_pretrained(tiny_bert_dir)
    warnings = [r for r in caplog.records if r.name == "led_hf.modeling.cross_encoder"]
    assert len(warnings) == 1 and "classifier.weight" in warnings[0].getMessage()
    with pytest.raises(LedError, match="no trained classification head"):
        CrossEncoder.from_pretrained(tiny_bert_dir, allow_new_head=False)
    with pytest.raises(LedError, match="cannot load"):
        CrossEncoder.from_pretrained(tiny_bert_dir / "missing")


def test_save_loads_with_transformers_and_sentence_transformers_with_the_same_scores(tiny_ce_dir):
    from sentence_transformers import CrossEncoder as STCrossEncoder

    model = CrossEncoder.from_pretrained(tiny_ce_dir, allow_new_head=False).eval()
    assert model.max_length == 48
    assert json.loads((tiny_ce_dir / "led_config.json").read_text())["kind"] == "cross-encoder"
    assert detect_model_kind(tiny_ce_dir) == "cross-encoder"
    tokenizer = AutoTokenizer.from_pretrained(tiny_ce_dir)
    assert tokenizer.model_max_length == 48  # the training length, for sentence-transformers' truncation
    collate = CrossEncoderCollator(tokenizer, max_length=48)
    pairs = collate(PAIRS)["pairs"]
    with torch.no_grad():
        ours = model.score(**pairs)
        plain = (
            AutoModelForSequenceClassification.from_pretrained(tiny_ce_dir).eval()(**pairs).logits.view(-1)
        )
    assert ours.shape == (3,) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, plain)
    assert ours.std() > 0  # the pairs are told apart

    st_model = STCrossEncoder(str(tiny_ce_dir), device="cpu")
    texts = [(p["query"], collate.second_segment(p["title"], p["text"])) for p in PAIRS]
    st_logits = st_model.predict(texts, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    torch.testing.assert_close(st_logits.float(), ours, atol=1e-5, rtol=1e-4)
    st_default = st_model.predict(texts, convert_to_tensor=True)  # sigmoid: the same ranking
    torch.testing.assert_close(st_default.float(), torch.sigmoid(ours), atol=1e-5, rtol=1e-4)


def test_forward_groups_autocast_and_state_dict_save(tiny_ce_dir, tmp_path):
    model = CrossEncoder.from_pretrained(tiny_ce_dir).eval()
    pairs = CrossEncoderCollator(AutoTokenizer.from_pretrained(tiny_ce_dir), 48)(PAIRS[:2])["pairs"]
    out = model(pairs=pairs, group_size=2)
    assert out.scores.shape == (2,) and out["scores"] is out.scores
    with pytest.raises(LedError, match="groups of 3"):
        model(pairs=pairs, group_size=3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.score(**pairs).dtype == torch.float32

    # A gathered state dict (keys of the wrapper) replaces the live weights when saving.
    state = {
        name: torch.zeros_like(value) if name.endswith("classifier.bias") else value
        for name, value in model.state_dict().items()
    }
    state["model.classifier.bias"] = torch.tensor([5.0])
    model.save_pretrained(tmp_path / "saved", state_dict=state)
    reloaded = CrossEncoder.from_pretrained(tmp_path / "saved", allow_new_head=False)
    assert reloaded.model.classifier.bias.item() == 5.0
    model.load_weights(tmp_path / "saved")
    assert model.model.classifier.bias.item() == 5.0


# ---------------------------------------------------------------------------------------------- trainer
def _trainer(model_dir, data_dir, output_dir, callbacks=(), **overrides) -> CrossEncoderTrainer:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    groups = fixture_groups(data_dir)
    torch.manual_seed(0)  # the fresh head
    return CrossEncoderTrainer(
        model=CrossEncoder.from_pretrained(model_dir),
        args=CrossEncoderTrainingArguments(**run_settings(output_dir, **overrides)),
        train_dataset=groups,
        data_collator=CrossEncoderCollator(tokenizer, 48),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def _fixed_batch_loss(model, trainer) -> float:
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    model.eval()
    with torch.no_grad():
        return listwise_cross_entropy(model(**batch).scores.view(-1, batch["group_size"])).item()


def test_trainer_steps_log_parts_lower_the_loss_and_save(tiny_bert_dir, prepared_msmarco, tmp_path):
    # A random tiny BERT gives nearly the same [CLS] state for every pair: it takes a large step size
    # to leave the uniform plateau (loss log 3) within a few steps.
    trainer = _trainer(tiny_bert_dir, prepared_msmarco, tmp_path / "out", max_steps=20, learning_rate=1e-2)
    before = _fixed_batch_loss(trainer.model, trainer)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 20
    for entry in logs:
        assert np.isfinite(entry["loss"]) and 0.0 <= entry["accuracy"] <= 1.0
        assert entry["listwise_loss"] == pytest.approx(entry["loss"], rel=1e-3, abs=1e-4)
    assert _fixed_batch_loss(trainer.model, trainer) < 0.8 * before  # it learned the training groups

    trainer.save_model(str(tmp_path / "saved"))
    saved = tmp_path / "saved"
    plain = AutoModelForSequenceClassification.from_pretrained(saved)
    for name, value in trainer.model.model.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[name], value)
    assert detect_model_kind(saved) == "cross-encoder"
    card = (saved / "README.md").read_text()
    assert "listwise" in card and "token" not in card.lower()
    assert not (saved / "training_args.bin").exists()


def test_gradient_accumulation_equals_the_large_batch(no_dropout_bert_dir, prepared_msmarco, tmp_path):
    grads = []
    for name, batch, accumulation in (("a", 4, 1), ("b", 2, 2)):
        recorder = FirstStepGradients()
        _trainer(
            no_dropout_bert_dir,
            prepared_msmarco,
            tmp_path / name,
            callbacks=[recorder],
            max_steps=1,
            max_grad_norm=0.0,
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            train_sampling_strategy="sequential",
        ).train()
        grads.append(recorder.grads)
    assert set(grads[0]) == set(grads[1]) and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-4, msg=name)
    assert max(g.abs().max().item() for g in grads[0].values()) > 1e-4


# ---------------------------------------------------------------------------------------------- CLI
def test_train_recipe_then_bm25_rerank_evaluate(tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    bm25_run = tmp_path / "bm25.dev.trec"
    assert (
        led_main(["bm25", "--data", str(prepared_msmarco), "--split", "dev", "--output", str(bm25_run)]) == 0
    )
    config = tmp_path / "ce.json"
    config.write_text(
        json.dumps(
            {
                "model_name_or_path": str(tiny_bert_dir),
                "data": str(prepared_msmarco),
                "negs_sources": ["bm25"],
                "num_negatives": 2,
                "max_length": 48,
                "per_device_train_batch_size": 2,
                "max_steps": 2,
                "learning_rate": 1e-3,
                "save_strategy": "no",
                "use_cpu": True,
                "report_to": "none",
                "output_dir": str(tmp_path / "ignored"),
                "eval_split": "dev",
                "eval_run": str(bm25_run),
                "eval_depth": 5,
            }
        )
    )
    out = tmp_path / "ce"
    assert (
        led_main(
            ["train", "cross-encoder", str(config), "--output_dir", str(out), "--hub_token", "hf_secret"]
        )
        == 0
    )
    resolved = json.loads((out / "led_args.json").read_text())
    assert resolved["max_length"] == 48 and resolved["output_dir"] == str(out) and "hub_token" not in resolved
    assert json.loads((out / "led_config.json").read_text())["max_length"] == 48
    metrics = json.loads((out / "eval_results.json").read_text())
    assert 0.0 <= metrics["eval_ndcg@10"] <= 1.0 and "eval_recall@5" in metrics
    assert "eval_ndcg@10" in (out / "README.md").read_text()

    reranked = tmp_path / "ce.dev.trec"
    capsys.readouterr()
    assert (
        led_main(
            [
                "rerank",
                "--model",
                str(out),
                "--data",
                str(prepared_msmarco),
                "--split",
                "dev",
                "--run",
                str(bm25_run),
                "--depth",
                "3",
                "--batch-size",
                "2",
                "--output",
                str(reranked),
                "--no-progress",
            ]
        )
        == 0
    )
    original, result = read_run(bm25_run), read_run(reranked)
    assert set(result) == set(original) == {"200", "201"}
    lines = [line.split() for line in reranked.read_text().splitlines()]
    assert all(fields[1] == "Q0" and fields[5] == "rerank" for fields in lines)

    # Independent check: the order follows this model's score of each pair, one pair at a time.
    data = PreparedData(prepared_msmarco)
    model = CrossEncoder.from_pretrained(out).eval()
    collate = CrossEncoderCollator(AutoTokenizer.from_pretrained(out), max_length=48)
    for qid, passages in original.items():
        top = sorted(passages, key=lambda pid: (passages[pid], pid), reverse=True)[:3]
        assert set(result[qid]) == set(top)
        query = data.queries[int(data.qid_index.get(qid))]["text"]
        expected = {}
        for pid in top:
            row = data.corpus[int(data.pid_index.get(pid))]
            with torch.no_grad():
                batch = collate(
                    [{"qid": qid, "pid": pid, "query": query, "title": row["title"], "text": row["text"]}]
                )
                expected[pid] = model.score(**batch["pairs"]).item()
        for pid in top:
            assert result[qid][pid] == pytest.approx(expected[pid], abs=1e-5)
        ranks = [fields[2] for fields in lines if fields[0] == qid]
        assert ranks == sorted(expected, key=lambda pid: (expected[pid], pid), reverse=True)

    assert (
        led_main(["evaluate", "--data", str(prepared_msmarco), "--split", "dev", "--run", str(reranked)]) == 0
    )
    assert "ndcg@10" in json.loads(capsys.readouterr().out)


def test_rerank_errors_leave_no_output(tiny_ce_dir, tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    run = tmp_path / "bad.trec"
    run.write_text("200 Q0 2 1 3.0 x\n200 Q0 nope 2 2.0 x\n")
    out = tmp_path / "out.trec"
    common = ["--data", str(prepared_msmarco), "--run", str(run), "--output", str(out), "--no-progress"]
    assert led_main(["rerank", "--model", str(tiny_ce_dir), *common]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"led rerank: error: {run}: passage 'nope' (query '200') is not in {prepared_msmarco}/corpus"
    ]  # before loading the model
    assert not out.exists()
    run.write_text("200 Q0 2 1 3.0 x\n")
    assert led_main(["rerank", "--model", str(tiny_bert_dir), *common]) == 1  # no trained head
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"led rerank: error: {tiny_bert_dir} has no trained classification head")
    assert not out.exists()
    run.write_text("999 Q0 2 1 3.0 x\n")
    assert led_main(["rerank", "--model", str(tiny_ce_dir), *common]) == 1
    assert "query '999'" in capsys.readouterr().err


def test_recipe_rejects_a_bad_eval_run_before_training(tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    run = tmp_path / "bad.trec"
    run.write_text("200 Q0 missing 1 3.0 x\n")
    out = tmp_path / "ce"
    assert (
        led_main(
            [
                "train",
                "cross-encoder",
                "--model_name_or_path",
                str(tiny_bert_dir),
                "--data",
                str(prepared_msmarco),
                "--output_dir",
                str(out),
                "--use_cpu",
                "true",
                "--max_steps",
                "1",
                "--eval_split",
                "dev",
                "--eval_run",
                str(run),
            ]
        )
        == 1
    )
    assert f"{run}: passage 'missing' (query '200')" in capsys.readouterr().err
    assert not (out / "config.json").exists()
    assert (
        led_main(
            ["train", "cross-encoder", "--model_name_or_path", "x", "--data", "y", "--eval_run", str(run)]
        )
        == 1
    )
    assert "eval_run needs eval_split" in capsys.readouterr().err


def test_help(capsys):
    assert led_main(["train", "cross-encoder", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--max_length" in text and "--eval_run" in text and "--negs_sources" in text
    with pytest.raises(SystemExit) as done:  # argparse's own --help exits
        led_main(["rerank", "--help"])
    assert done.value.code == 0
    assert "--depth" in capsys.readouterr().out
