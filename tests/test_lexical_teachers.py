"""BM25 and fused (SPLADE + BM25) lexical teachers of `led score-teacher`."""

import shutil

import numpy as np
import pytest
from datasets import load_from_disk
from transformers import AutoTokenizer

from led_hf.cli.main import main as led_main
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.modeling.splade import SpladeEncoder
from led_hf.retrieval.bm25 import make_tokenizer, passage_texts
from led_hf.scoring import teacher_scores as ts
from led_hf.scoring.scorers import normalise_per_query


@pytest.fixture(scope="module")
def splade_dir(tmp_path_factory, tiny_bert_mlm_dir):
    directory = tmp_path_factory.mktemp("lexical-teacher")
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir).save_pretrained(
        directory, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    )
    return directory


@pytest.fixture()
def data(tmp_path, prepared_msmarco):
    return shutil.copytree(prepared_msmarco, tmp_path / "data")


OPTIONS = dict(
    negs_sources="bm25", query_max_length=16, passage_max_length=32, precision="fp32", progress=False
)


def _table(root, name):
    table = load_from_disk(str(root / "teacher_scores" / name)).to_dict()
    return {
        qid: dict(zip(pids, scores))
        for qid, pids, scores in zip(table["qid"], table["pids"], table["scores"])
    }


def test_bm25_teacher_equals_bm25s_scores(data):
    import bm25s

    metadata = ts.score_teacher(data, "bm25", "bm25", bm25_k1=1.2, bm25_b=0.75, **OPTIONS)
    assert metadata["kind"] == "bm25" and metadata["bm25_k1"] == 1.2
    scored = _table(data, "bm25")
    # an independent bm25s index of the same texts, scored with get_scores (every passage)
    prepared = PreparedData(data)
    tokenizer = make_tokenizer()
    retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    retriever.index(
        tokenizer.tokenize(list(passage_texts(prepared.corpus)), return_as="tuple", show_progress=False)
    )
    pids = prepared.corpus.data.column("pid").to_pylist()
    nonzero = 0
    for qid, scores in scored.items():
        text = prepared.queries[int(prepared.qid_index.rows([qid])[0])]["text"]
        ids = tokenizer.tokenize([text], update_vocab=False, return_as="ids", show_progress=False)[0]
        ids = [t for t in ids if t != tokenizer.word_to_id.get("")]
        expected = retriever.get_scores(ids) if ids else np.zeros(len(pids))
        for pid, score in scores.items():
            assert score == pytest.approx(float(expected[pids.index(pid)]), rel=1e-5, abs=1e-6)
            nonzero += score > 0
    assert nonzero > 0  # the candidates share terms with their queries


def test_fused_teacher_matches_numpy_reference(data, splade_dir):
    ts.score_teacher(data, str(splade_dir), "splade", **OPTIONS)
    ts.score_teacher(data, "bm25", "bm25", **OPTIONS)
    metadata = ts.score_teacher(data, str(splade_dir), "fused", kind="fused", fusion_weight=0.3, **OPTIONS)
    assert metadata["fusion_weight"] == 0.3 and metadata["fusion_normalisation"] == "zscore"
    splade, bm25, fused = (_table(data, name) for name in ("splade", "bm25", "fused"))
    assert fused.keys() == splade.keys()
    for qid, scores in fused.items():
        pids = list(scores)
        s = np.array([splade[qid][p] for p in pids], dtype=np.float64)
        b = np.array([bm25[qid][p] for p in pids], dtype=np.float64)

        def z(x):
            return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)

        expected = 0.3 * z(s) + 0.7 * z(b)
        assert np.array([scores[p] for p in pids]) == pytest.approx(expected, abs=1e-4)


def test_per_query_normalisation():
    x = np.array([2.0, 4.0, 6.0, 10.0])
    assert normalise_per_query(x, "minmax") == pytest.approx([0.0, 0.25, 0.5, 1.0])
    assert normalise_per_query(x, "zscore") == pytest.approx((x - 5.5) / np.sqrt(8.75))
    assert normalise_per_query(np.array([3.0, 3.0]), "zscore").tolist() == [0.0, 0.0]
    with pytest.raises(LedError, match="normalisation"):
        normalise_per_query(x, "rank")


def test_cli_bm25_teacher_and_bad_combinations(data, splade_dir, capsys):
    common = ["score-teacher", "--data", str(data), "--negs-sources", "bm25", "--no-progress"]
    assert led_main([*common, "--teacher", "bm25", "--name", "b"]) == 0
    assert (data / "teacher_scores" / "b").is_dir()
    capsys.readouterr()
    assert led_main([*common, "--teacher", "bm25", "--kind", "splade", "--name", "x"]) == 1
    assert "BM25 teacher" in capsys.readouterr().err
    assert (
        led_main(
            [*common, "--teacher", str(splade_dir), "--kind", "fused", "--fusion-weight", "2", "--name", "x"]
        )
        == 1
    )
    assert "--fusion-weight" in capsys.readouterr().err
    assert not (data / "teacher_scores" / "x").exists()


def test_listwise_rank_term_is_kl_over_the_lexical_teachers_softmax(no_dropout_bert_dir, data, tmp_path):
    """rank_loss listwise: the logged rank term is KL(softmax(t/T) || softmax(s/T)) of the student's own
    [B, G] block against precomputed BM25 scores, checked against float64 numpy."""
    import torch

    from led_hf.arguments import LEDTrainingArguments
    from led_hf.collators.led import LEDCollator
    from led_hf.data.scored_groups import ScoredTrainGroups
    from led_hf.modeling import DenseEncoder
    from led_hf.trainers.led import LEDTrainer

    ts.score_teacher(data, "bm25", "bm25", **OPTIONS)
    group = 4
    tokenizer = AutoTokenizer.from_pretrained(no_dropout_bert_dir)
    groups = ScoredTrainGroups(
        data,
        negs_sources="bm25",
        num_negatives=group - 1,
        seed=0,
        show_progress=False,
        score_tables={"teacher_scores": "bm25"},
    )
    args = LEDTrainingArguments(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        per_device_train_batch_size=2,
        max_steps=1,
        report_to="none",
        teacher_scores="precomputed",
        teacher_scores_name="bm25",
        rank_loss="listwise",
        rank_temperature=2.0,
        rank_include_positive=False,
        rank_weight=0.5,
    )
    trainer = LEDTrainer(
        model=DenseEncoder.from_pretrained(no_dropout_bert_dir, pooling="mean"),
        args=args,
        train_dataset=groups,
        data_collator=LEDCollator(tokenizer, 16, 32, extra_keys=("teacher_scores",)),
        processing_class=tokenizer,
    )
    batch = trainer.data_collator([groups[i] for i in range(3)])
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        out = trainer.model(query=batch["query"], passage=batch["passage"])
    q = out.query_embeddings.double().numpy()
    p = out.passage_embeddings.double().numpy().reshape(3, group, -1)
    s = np.einsum("bh,bgh->bg", q, p)[:, 1:] / trainer.model.temperature / 2.0
    t = batch["teacher_scores"].double().numpy().reshape(3, group)[:, 1:] / 2.0
    assert t.std() > 0  # BM25 scores that differ: the check can fail

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(t), log_softmax(s)
    expected = 4.0 * np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1))
    parts = {name: float(values[-1]) for name, values in trainer._metrics["eval"].items()}
    assert parts["rank_loss"] == pytest.approx(expected, rel=1e-4)
    assert loss.item() == pytest.approx(parts["contrastive_loss"] + 0.5 * expected, rel=1e-4)
    with pytest.raises(LedError, match="rank_loss"):
        LEDTrainingArguments(output_dir=str(tmp_path), rank_loss="hinge", teacher_model_name_or_path="x")
