"""group_by query | pair, positive_min_score and grade-weighted positives on a graded, multi-positive collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from led_hf.data.groups import TrainGroups
from led_hf.errors import LedError

# (qid, pid, grade): q1 has four positives of grades 4/1/2/1 and a grade-0 judgment; passage 2 is a
# positive of q1 and q2; q3 has a grade-1 positive only.
GRADED_QRELS = [
    ("q1", 0, 4),
    ("q1", 1, 1),
    ("q1", 2, 2),
    ("q1", 3, 1),
    ("q1", 7, 0),
    ("q2", 2, 3),
    ("q2", 4, 1),
    ("q3", 5, 1),
    ("q4", 6, 2),
]
# BM25-like lists that hold the query's own positives (removed from its pool, any grade) and other
# queries' positives (kept: they are negatives for this query).
GRADED_NEGATIVES = {
    "q1": [1, 8, 3, 9, 10, 2, 11, 4, 12],
    "q2": [0, 13, 14, 4, 15, 16, 1],
    "q3": [17, 18, 19, 0, 20],
    "q4": [21, 2, 22, 23, 24, 5],
}


def write_graded(root: Path) -> Path:
    from datasets import Dataset

    Dataset.from_dict(
        {"pid": [str(i) for i in range(30)], "title": [""] * 30, "text": [f"passage {i}" for i in range(30)]}
    ).save_to_disk(root / "corpus")
    Dataset.from_dict(
        {"qid": ["q1", "q2", "q3", "q4"], "text": [f"query {i}" for i in range(1, 5)]}
    ).save_to_disk(root / "queries")
    Dataset.from_dict(
        {
            "qid": [q for q, _, _ in GRADED_QRELS],
            "pid": [str(p) for _, p, _ in GRADED_QRELS],
            "score": [g for _, _, g in GRADED_QRELS],
        }
    ).save_to_disk(root / "qrels" / "train")
    Dataset.from_dict(
        {
            "qid": list(GRADED_NEGATIVES),
            "pids": [[str(p) for p in v] for v in GRADED_NEGATIVES.values()],
            "scores": [[float(-k) for k in range(len(v))] for v in GRADED_NEGATIVES.values()],
        }
    ).save_to_disk(root / "negatives" / "bm25")
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    return write_graded(tmp_path_factory.mktemp("graded"))


def _positives(qid: str, min_grade: int = 1) -> dict[int, int]:
    return {p: g for q, p, g in GRADED_QRELS if q == qid and g >= min_grade}


def _groups(root, **kwargs) -> TrainGroups:
    return TrainGroups(root, negs_sources="bm25", num_negatives=3, seed=5, show_progress=False, **kwargs)


def test_one_row_per_query_cycling_through_its_positives(graded):
    groups = _groups(graded)
    assert groups.group_by == "query" and len(groups) == 4
    seen = {qid: [] for qid in ("q1", "q2", "q3", "q4")}
    for epoch in range(8):
        groups.set_epoch(epoch)
        for index in range(len(groups)):
            item = groups[index]
            qid, rows = item["qid"], item["candidate_rows"]
            assert [str(r) for r in rows] == item["pids"] and len(rows) == 4
            # the positive is a training positive, the negatives are never a positive of any grade
            assert rows[0] in _positives(qid) and not set(rows[1:]) & set(_positives(qid))
            assert item["positive_rows"] == sorted(_positives(qid))  # grade 0 (passage 7) is not relevant
            seen[qid].append(rows[0])
    # uniform: every positive once in each run of len(positives) epochs
    for qid, drawn in seen.items():
        n = len(_positives(qid))
        for start in range(0, 8 - n + 1, n):
            assert sorted(drawn[start : start + n]) == sorted(_positives(qid))
    # deterministic in the seed, and a fresh draw per epoch
    again = _groups(graded)
    again.set_epoch(3)
    groups.set_epoch(3)
    assert [again[i] for i in range(4)] == [groups[i] for i in range(4)]
    assert any(
        groups.candidate_rows(0, epoch=e).tolist() != groups.candidate_rows(0, epoch=0).tolist()
        for e in (1, 2)
    )


def test_pair_mode_is_one_row_per_qrels_positive(graded):
    groups = _groups(graded, group_by="pair")
    assert len(groups) == 8  # the 8 rows of grade >= 1
    groups.set_epoch(2)
    items = [groups[i] for i in range(len(groups))]
    assert [(it["qid"], it["candidate_rows"][0]) for it in items] == [
        (q, p) for q, p, g in GRADED_QRELS if g > 0
    ]
    # the query's other positives still know their query: same positive_rows on every row of q1
    assert all(it["positive_rows"] == [0, 1, 2, 3] for it in items if it["qid"] == "q1")


def test_positive_min_score(graded):
    groups = _groups(graded, positive_min_score=2)
    assert len(groups) == 3 and groups.num_below_min_score == 1  # q3 has grade 1 only
    assert sorted(groups[i]["qid"] for i in range(3)) == ["q1", "q2", "q4"]
    for epoch in range(6):
        groups.set_epoch(epoch)
        for index in range(len(groups)):
            item = groups[index]
            rows = item["candidate_rows"]
            assert rows[0] in _positives(item["qid"], 2)
            # grade-1 positives are never drawn, but stay out of the pool and in positive_rows
            assert not set(rows[1:]) & set(_positives(item["qid"]))
            assert item["positive_rows"] == sorted(_positives(item["qid"]))
    assert len(_groups(graded, positive_min_score=2, group_by="pair")) == 4  # q1:0, q1:2, q2:2, q4:6
    with pytest.raises(LedError, match="positive_min_score"):
        _groups(graded, positive_min_score=0)
    with pytest.raises(LedError, match="no training rows left"):
        _groups(graded, positive_min_score=5)


def test_grade_weighted_positives(graded):
    groups = _groups(graded, positive_sampling="grade")
    q1 = [i for i in range(len(groups)) if groups.query_number(i) == 0][0]
    epochs = 4000
    counts = Counter(int(groups.candidate_rows(q1, epoch=e)[0]) for e in range(epochs))
    grades = _positives("q1")  # {0: 4, 1: 1, 2: 2, 3: 1}
    for pid, grade in grades.items():
        assert counts[pid] / epochs == pytest.approx(grade / sum(grades.values()), abs=0.03)
    with pytest.raises(LedError, match="positive_sampling"):
        _groups(graded, positive_sampling="best")
    with pytest.raises(LedError, match="group_by"):
        _groups(graded, group_by="passage")


def test_the_epoch_length_follows_group_by(graded, tiny_bert_dir, tmp_path):
    """A real DenseTrainer epoch: 4 queries -> 2 steps of 2; 8 qrels pairs -> 4 steps."""
    from transformers import AutoTokenizer

    from led_hf.arguments import DenseTrainingArguments
    from led_hf.collators.train import TrainCollator
    from led_hf.modeling import DenseEncoder
    from led_hf.trainers.dense import DenseTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for group_by, steps in (("query", 2), ("pair", 4)):
        trainer = DenseTrainer(
            model=DenseEncoder.from_pretrained(tiny_bert_dir),
            args=DenseTrainingArguments(
                output_dir=str(tmp_path / group_by),
                use_cpu=True,
                per_device_train_batch_size=2,
                num_train_epochs=1,
                save_strategy="no",
                report_to="none",
                logging_steps=1,
            ),
            train_dataset=TrainGroups(
                graded, negs_sources="bm25", num_negatives=1, show_progress=False, group_by=group_by
            ),
            data_collator=TrainCollator(tokenizer, 8, 8),
            processing_class=tokenizer,
        )
        trainer.train()
        assert trainer.state.global_step == steps
        logged = [entry for entry in trainer.state.log_history if "masked_false_negatives" in entry]
        assert logged  # the batches carried ids and the mask was applied
    assert np.isfinite(logged[-1]["loss"])
