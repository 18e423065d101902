"""Several runs of one system (seeds, say) read as one: their mean, their spread, and the per-query means
that paired tests compare (docs/method.md §6).

With S runs scored on the same queries, m_s a run's metric and v_{s,q} its value on query q:

    mean  = (1/S) Σ_s m_s
    std   = sqrt( Σ_s (m_s - mean)^2 / (S - 1) )      the sample std over runs (0 for S = 1)
    v_q   = (1/S) Σ_s v_{s,q}                          the per-query mean the paired tests use

Used by `led evaluate --run A1 A2 A3 --baseline B1 B2 B3` and by the pipeline report's seeded stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from led_hf.errors import LedError


def mean_and_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std) of one metric over runs; the std of a single run is 0."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise LedError(f"mean_and_std needs a non-empty 1-d sequence, got shape {array.shape}")
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def per_query_means(runs: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """The mean over runs of each value of a two-level table: {qid: {metric: value}} per run (as
    `evaluate_per_query` gives) or {metric: {qid: value}} (as the pipeline's stage records hold). The runs
    must cover the same queries and metrics."""
    if not runs:
        raise LedError("per_query_means needs at least one run")
    first = runs[0]
    for number, run in enumerate(runs[1:], 2):
        if run.keys() != first.keys() or any(run[key].keys() != first[key].keys() for key in first):
            raise LedError(
                f"run {number} is scored on other queries or metrics than run 1: per-query means need the same"
            )
    return {
        key: {inner: float(np.mean([run[key][inner] for run in runs])) for inner in first[key]}
        for key in first
    }
