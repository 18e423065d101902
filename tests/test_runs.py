"""TREC run io: round trip, trec_eval ordering, precise scores, located errors, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from led_hf.data.runs import rank_passages, read_run, results_from_arrays, write_run, write_run_arrays
from led_hf.errors import InputError, LedError


def test_write_ranks_by_score_then_pid_descending_and_reads_back(tmp_path):
    path = tmp_path / "run.trec"
    lines = write_run(path, {"q1": [("d1", 0.5), ("d2", 0.9), ("d3", 0.5)], "q2": {"x": 1.0}}, tag="bm25")
    assert lines == 4
    assert path.read_text().splitlines() == [
        "q1 Q0 d2 1 0.9 bm25",
        "q1 Q0 d3 2 0.5 bm25",  # tie with d1: trec_eval puts the larger docno first
        "q1 Q0 d1 3 0.5 bm25",
        "q2 Q0 x 1 1.0 bm25",
    ]
    assert read_run(path) == {"q1": {"d2": 0.9, "d3": 0.5, "d1": 0.5}, "q2": {"x": 1.0}}


def test_depth_cuts_after_ranking(tmp_path):
    path = tmp_path / "run.trec"
    write_run(path, {"q": {"a": 1.0, "b": 3.0, "c": 2.0}}, depth=2)
    assert read_run(path) == {"q": {"b": 3.0, "c": 2.0}}


def test_float32_scores_round_trip_exactly_so_no_ties_appear(tmp_path):
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((3, 50)) * 1e-3 + 10).astype(np.float32)
    indices = np.stack([rng.permutation(60)[:50] for _ in range(3)])
    pids = [f"p{i}" for i in range(60)]
    path = tmp_path / "run.trec"
    write_run_arrays(path, ["a", "b", "c"], scores, indices, pids, tag="dense")
    run = read_run(path)
    for row, qid in enumerate("abc"):
        expected = {pids[i]: float(s) for i, s in zip(indices[row], scores[row])}
        assert {pid: np.float32(v) for pid, v in run[qid].items()} == pytest.approx(expected, rel=0, abs=0)
        # the written rank order equals the order of the float32 scores
        ranks = [line.split()[2] for line in path.read_text().splitlines() if line.startswith(qid + " ")]
        # (float32 ties do occur here: they go to the larger pid, as trec_eval orders them)
        row_pids = np.array([pids[i] for i in indices[row]])
        order = np.lexsort((-np.argsort(np.argsort(row_pids)), -scores[row].astype(np.float64)))
        assert ranks == row_pids[order].tolist()


def test_results_from_arrays_drops_faiss_padding():
    results = results_from_arrays(["q"], np.array([[2.0, 1.0, -np.inf]]), np.array([[1, 0, -1]]), ["a", "b"])
    assert results == {"q": [("b", 2.0), ("a", 1.0)]}


def test_rank_passages_accepts_pairs():
    assert rank_passages([("a", 1), ("c", 1), ("b", 2)]) == [("b", 2), ("c", 1), ("a", 1)]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("q1 Q0 d1 1 0.5", "expected 6 fields"),
        ("q1 Q0 d1 one 0.5 t", "rank 'one' is not an integer"),
        ("q1 Q0 d1 1 high t", "score 'high' is not a number"),
        ("q1 Q0 d1 1 nan t", "not finite"),
        ("q1 Q0 d0 2 0.4 t", "appears twice"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.trec"
    path.write_text("q1 Q0 d0 1 0.9 t\n\n" + line + "\n")
    with pytest.raises(InputError, match=message) as info:
        read_run(path)
    assert str(info.value).startswith(f"{path}:3:")


def test_missing_file_is_a_led_error(tmp_path):
    with pytest.raises(LedError, match="cannot read run"):
        read_run(tmp_path / "absent.trec")


@pytest.mark.parametrize(
    "results",
    [
        {"q": [("d 1", 1.0)]},
        {"q": [("d1", float("nan"))]},
        {"q": [("d1", 1.0), ("d1", 2.0)]},
        {"": [("d1", 1.0)]},
    ],
)
def test_bad_results_leave_no_file(tmp_path, results):
    path = tmp_path / "run.trec"
    with pytest.raises(LedError):
        write_run(path, {"ok": [("a", 1.0)], **results})
    assert list(tmp_path.iterdir()) == []


def test_existing_run_is_kept_when_rewrite_fails(tmp_path):
    path = tmp_path / "run.trec"
    write_run(path, {"q": [("a", 1.0)]})
    with pytest.raises(LedError):
        write_run(path, {"q": [("b", float("inf"))]})
    assert read_run(path) == {"q": {"a": 1.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["run.trec"]
