"""Metrics against a hand-computed example and an independent numpy implementation (trec_eval order)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_per_query, evaluate_run

# q1 binary; q2 graded with a judged non-relevant d7; q3 judged but absent from the run;
# q4 all scores tied (trec_eval order: d8, d6, d4); q5 is only in the run and must be ignored.
QRELS = {
    "q1": {"d1": 1, "d3": 1},
    "q2": {"d2": 2, "d5": 1, "d7": 0},
    "q3": {"d9": 1},
    "q4": {"d4": 1},
}
RUN = {
    "q1": {"d2": 3.0, "d1": 2.0, "d3": 1.0},
    "q2": {"d7": 5.0, "d5": 4.0, "d2": 3.0},
    "q4": {"d4": 1.0, "d6": 1.0, "d8": 1.0},
    "q5": {"d1": 1.0},
}
L3, L4 = math.log2(3), math.log2(4)


def test_hand_computed_example_level_1():
    got = evaluate_run(RUN, QRELS, recall_depths=(1, 2))
    ndcg = {
        "q1": (1 / L3 + 1 / L4) / (1 + 1 / L3),
        "q2": (1 / L3 + 2 / L4) / (2 + 1 / L3),
        "q3": 0.0,
        "q4": 1 / L4,
    }
    assert got == pytest.approx(
        {
            "mrr@10": (1 / 2 + 1 / 2 + 0 + 1 / 3) / 4,
            "ndcg@10": sum(ndcg.values()) / 4,
            "recall@1": 0.0,
            "recall@2": (1 + 1 + 0 + 0) / 4,
            "trec_recall@1": 0.0,
            "trec_recall@2": (1 / 2 + 1 / 2 + 0 + 0) / 4,
            "num_queries": 4,
            "num_queries_retrieved": 3,
        }
    )


def test_relevance_level_2_changes_binary_metrics_only():
    level1 = evaluate_per_query(RUN, QRELS, recall_depths=(2, 3))
    level2 = evaluate_per_query(RUN, QRELS, relevance_level=2, recall_depths=(2, 3))
    assert level2["q2"] == pytest.approx(
        {
            "mrr@10": 1 / 3,
            "ndcg@10": level1["q2"]["ndcg@10"],
            "recall@2": 0.0,
            "recall@3": 1.0,
            "trec_recall@2": 0.0,
            "trec_recall@3": 1.0,
        }
    )
    # grade-1 passages stop counting as relevant: q1's and q4's only judgments have grade 1
    assert level2["q1"]["mrr@10"] == 0.0 and level2["q4"]["recall@3"] == 0.0
    assert level2["q1"]["ndcg@10"] == level1["q1"]["ndcg@10"] > 0


def test_mrr_depth_cuts_ties_in_trec_eval_order():
    # q4's relevant d4 is third among three tied passages: outside the top 2
    assert evaluate_per_query(RUN, QRELS, mrr_depth=2)["q4"]["mrr@2"] == 0.0
    assert evaluate_per_query(RUN, QRELS, mrr_depth=3)["q4"]["mrr@3"] == pytest.approx(1 / 3)


def test_empty_and_missing_queries_count_zero():
    got = evaluate_run({"q1": {}}, {"q1": {"a": 1}, "q2": {"b": 1}})
    assert got["mrr@10"] == 0.0 and got["num_queries"] == 2 and got["num_queries_retrieved"] == 0


def test_bad_arguments():
    with pytest.raises(LedError, match="no qrels"):
        evaluate_run(RUN, {})
    with pytest.raises(LedError, match="relevance level"):
        evaluate_run(RUN, QRELS, relevance_level=0)


def _numpy_metrics(run, qrels, level, depths):
    """Independent implementation: lexsort by (score desc, pid desc), float64 sums."""
    out = {}
    for qid, judged in qrels.items():
        passages = run.get(qid, {})
        pids = np.array(sorted(passages), dtype=object)
        scores = np.array([passages[p] for p in pids], dtype=np.float64)
        order = np.lexsort((-np.arange(len(pids)), -scores))  # pids are sorted ascending: -index = pid desc
        grades = np.array([judged.get(p, 0) for p in pids[order]], dtype=np.float64)
        relevant = grades >= level
        rr = 0.0
        hits = np.flatnonzero(relevant[:10])
        if hits.size:
            rr = 1.0 / (hits[0] + 1)
        gains = np.maximum(grades[:10], 0)
        dcg = float(np.sum(gains / np.log2(np.arange(2, gains.size + 2))))
        ideal = np.sort(np.array([g for g in judged.values() if g > 0], dtype=np.float64))[::-1][:10]
        idcg = float(np.sum(ideal / np.log2(np.arange(2, ideal.size + 2))))
        num_relevant = sum(g >= level for g in judged.values())
        values = {"mrr@10": rr, "ndcg@10": dcg / idcg if idcg > 0 else 0.0}
        for k in depths:
            values[f"recall@{k}"] = float(relevant[:k].any())
            values[f"trec_recall@{k}"] = relevant[:k].sum() / num_relevant if num_relevant else 0.0
        out[qid] = values
    return out


@pytest.mark.parametrize("level", [1, 2])
def test_matches_numpy_implementation_on_random_graded_runs_with_ties(level):
    rng = np.random.default_rng(level)
    qrels, run = {}, {}
    for q in range(60):
        qid = f"q{q}"
        judged = rng.choice(40, size=rng.integers(1, 6), replace=False)
        qrels[qid] = {f"d{j}": int(rng.integers(0, 4)) for j in judged}
        if q % 7 == 0:
            continue  # absent from the run
        retrieved = rng.choice(40, size=rng.integers(1, 30), replace=False)
        # integer scores in a small range: many ties, broken by pid descending
        run[qid] = {f"d{j}": float(rng.integers(0, 5)) for j in retrieved}
    got = evaluate_per_query(run, qrels, relevance_level=level, recall_depths=(5, 20))
    expected = _numpy_metrics(run, qrels, level, (5, 20))
    assert got.keys() == expected.keys()
    for qid in expected:
        assert got[qid] == pytest.approx(expected[qid], abs=1e-12), qid
    summary = evaluate_run(run, qrels, relevance_level=level, recall_depths=(5, 20))
    assert summary["ndcg@10"] == pytest.approx(np.mean([v["ndcg@10"] for v in expected.values()]))
    assert summary["num_queries"] == 60


def test_hit_rate_agrees_with_ir_measures_success_where_run_is_complete():
    import ir_measures
    from ir_measures import Success

    per_query = evaluate_per_query(RUN, QRELS, recall_depths=(2,))
    for metric in ir_measures.pytrec_eval.iter_calc([Success @ 2], QRELS, RUN):
        assert per_query[metric.query_id]["recall@2"] == metric.value


def _prepared_with_graded_qrels(root):
    from datasets import Dataset

    Dataset.from_dict(
        {"pid": ["d1", "d2", "d3"], "title": ["", "", ""], "text": ["a", "b", "c"]}
    ).save_to_disk(str(root / "corpus"))
    Dataset.from_dict({"qid": ["q1", "q2"], "text": ["x", "y"]}).save_to_disk(str(root / "queries"))
    Dataset.from_dict(
        {"qid": ["q1", "q1", "q2"], "pid": ["d1", "d2", "d3"], "score": [2, 1, 1]}
    ).save_to_disk(str(root / "qrels" / "test"))
    return root


def test_evaluate_cli_prints_one_json_object(tmp_path, capsys):
    import json

    from led_hf.cli.main import main

    data = _prepared_with_graded_qrels(tmp_path / "data")
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d2 1 2.0 t\nq1 Q0 d1 2 1.0 t\nq9 Q0 d1 1 1.0 t\n")
    argv = ["evaluate", "--data", str(data), "--split", "test", "--run", str(run)]
    assert main(argv + ["--output", str(tmp_path / "m.json")]) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)
    assert captured.out.count("\n") == 1 and "1 of 2 run queries have no qrels" in captured.err
    assert metrics == pytest.approx(
        {
            "mrr@10": 0.5,
            "ndcg@10": (1 + 2 / L3) / (2 + 1 / L3) / 2,
            "recall@50": 0.5,
            "recall@1000": 0.5,
            "trec_recall@50": 0.5,
            "trec_recall@1000": 0.5,
            "num_queries": 2,
            "num_queries_retrieved": 1,
        }
    )
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert main(argv + ["--relevance-level", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["mrr@10"] == pytest.approx(1 / 2 / 2)  # d1 (grade 2) at rank 2


def test_evaluate_cli_bad_run_is_one_line_and_no_stdout(tmp_path, capsys):
    from led_hf.cli.main import main

    data = _prepared_with_graded_qrels(tmp_path / "data")
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 d2 1 2.0 t\nq1 Q0 d1 2\n")
    capsys.readouterr()  # the fixture's own progress output
    assert main(["evaluate", "--data", str(data), "--split", "test", "--run", str(run)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert (
        captured.err.strip()
        == f"led evaluate: error: {run}:2: expected 6 fields `qid Q0 pid rank score tag`, found 4"
    )
    assert main(["evaluate", "--data", str(data), "--split", "dev", "--run", str(run)]) == 1
    assert "no qrels split 'dev'" in capsys.readouterr().err
