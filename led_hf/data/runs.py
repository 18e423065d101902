"""Read and write TREC run files: one line per retrieved passage, `qid Q0 pid rank score tag`.

    200 Q0 d2 1 19.25 bm25
    200 Q0 d8 2 17.5 bm25

Ranking order everywhere in led-hf is trec_eval's: score descending, then passage id descending
(trec_eval ignores the rank column and breaks ties by `strcmp(docno)` in reverse). `write_run` writes
ranks in exactly that order, so the rank column always agrees with what trec_eval evaluates.
Scores are written with the shortest text that reads back to the same float, so re-reading a run
never creates ties that were not there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from led_hf.atomic import atomic_file
from led_hf.errors import InputError, LedError

Run = dict[str, dict[str, float]]
"""{qid: {pid: score}}: the form ir_measures / pytrec_eval take."""


def read_run(path: str | os.PathLike) -> Run:
    """Read a TREC run into {qid: {pid: score}}.

    Lines are `qid Q0 pid rank score tag` split on whitespace (tabs or spaces); blank lines are
    skipped. A malformed line, a non-numeric or non-finite score, or a passage listed twice for the
    same query raises `InputError` naming `path:line`. The rank column is checked to be an integer
    but otherwise ignored, as trec_eval does: the order comes from the scores.
    """
    run: Run = {}
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise LedError(f"cannot read run {path}: {err.strerror}") from err
    with handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise InputError(
                    path, line_number, f"expected 6 fields `qid Q0 pid rank score tag`, found {len(fields)}"
                )
            qid, _, pid, rank, score_text, _ = fields
            try:
                int(rank)
            except ValueError:
                raise InputError(path, line_number, f"rank {rank!r} is not an integer") from None
            try:
                score = float(score_text)
            except ValueError:
                raise InputError(path, line_number, f"score {score_text!r} is not a number") from None
            if not math.isfinite(score):
                raise InputError(path, line_number, f"score {score_text!r} is not finite")
            passages = run.setdefault(qid, {})
            if pid in passages:
                raise InputError(path, line_number, f"passage {pid!r} appears twice for query {qid!r}")
            passages[pid] = score
    return run


def rank_passages(passages: Mapping[str, float] | Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """(pid, score) pairs in trec_eval order: score descending, ties by pid descending.

    >>> rank_passages({"a": 1.0, "b": 1.0, "c": 2.0})
    [('c', 2.0), ('b', 1.0), ('a', 1.0)]
    """
    items = passages.items() if isinstance(passages, Mapping) else passages
    # Two stable sorts: pid descending first, then score descending keeps that order inside ties.
    by_pid = sorted(items, key=lambda item: item[0], reverse=True)
    return sorted(by_pid, key=lambda item: item[1], reverse=True)


def _format_score(score) -> str:
    # str() of a numpy float and repr() of a Python float are both the shortest round-trip text.
    text = str(score) if isinstance(score, np.floating) else repr(float(score))
    return text


def write_run(
    path: str | os.PathLike,
    results: Mapping[str, Mapping[str, float] | Sequence[tuple[str, float]]],
    tag: str = "led",
    depth: int | None = None,
) -> int:
    """Write {qid: [(pid, score), ...]} (or {qid: {pid: score}}) as a TREC run, atomically.

    Each query's passages are ranked by `rank_passages` (ranks 1..k), cut to `depth` if given; queries
    are written in the order of `results`. Returns the number of lines written. A non-finite score, a
    duplicate pid within a query or whitespace inside an id raises `LedError` and leaves no file.

    >>> write_run("run.trec", {"q1": [("d1", 0.5), ("d2", 0.9)]}, tag="bm25")   # doctest: +SKIP
    2      # q1 Q0 d2 1 0.9 bm25 / q1 Q0 d1 2 0.5 bm25
    """
    if not tag or any(c.isspace() for c in tag):
        raise LedError(f"run tag {tag!r} must be a non-empty word without spaces")
    lines = 0
    with atomic_file(path) as handle:
        for qid, passages in results.items():
            _check_id(qid, "query id")
            items = list(passages.items()) if isinstance(passages, Mapping) else list(passages)
            if len({pid for pid, _ in items}) != len(items):
                raise LedError(f"query {qid!r} lists the same passage twice")
            ranked = rank_passages(items)
            if depth is not None:
                ranked = ranked[:depth]
            for rank, (pid, score) in enumerate(ranked, start=1):
                _check_id(pid, "passage id")
                if not math.isfinite(float(score)):
                    raise LedError(f"score of passage {pid!r} for query {qid!r} is {score}")
                handle.write(f"{qid} Q0 {pid} {rank} {_format_score(score)} {tag}\n")
                lines += 1
    return lines


def results_from_arrays(
    qids: Sequence[str], scores: np.ndarray, indices: np.ndarray, pids: Sequence[str]
) -> dict[str, list[tuple[str, float]]]:
    """Turn search output arrays into {qid: [(pid, score), ...]}.

    `scores` and `indices` are [Q, k] (faiss / bm25s output); `indices` index into `pids` (a list, or
    any mapping from row to id); entries with index -1 (faiss pads with -1 when fewer than k passages exist) are dropped.
    """
    scores = np.asarray(scores)
    indices = np.asarray(indices)
    if scores.shape != indices.shape or scores.ndim != 2 or scores.shape[0] != len(qids):
        raise LedError(f"scores {scores.shape} and indices {indices.shape} must both be [{len(qids)}, k]")
    results: dict[str, list[tuple[str, float]]] = {}
    for qid, row_scores, row_indices in zip(qids, scores, indices):
        keep = row_indices >= 0
        results[qid] = [(pids[i], s) for i, s in zip(row_indices[keep].tolist(), row_scores[keep])]
    return results


def write_run_arrays(
    path: str | os.PathLike,
    qids: Sequence[str],
    scores: np.ndarray,
    indices: np.ndarray,
    pids: Sequence[str],
    tag: str = "led",
    depth: int | None = None,
) -> int:
    """`write_run` for [Q, k] score / index arrays (see `results_from_arrays`)."""
    return write_run(path, results_from_arrays(qids, scores, indices, pids), tag=tag, depth=depth)


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise LedError(f"{what} {value!r} cannot be written to a TREC run (empty or contains whitespace)")
