"""What both sparse backends (the embedded inverted index and Lucene) share: integer impact weights and the
CPU threads they search with.

    impact(w) = round(SCALE · w)        SCALE = 100, as Lucene's impact indexes store term weights
    score_quantised(q, d) = Σ_t impact(q_t) · impact(d_t)       ≈ SCALE² · <q, d>
"""

from __future__ import annotations

import os

import numpy as np

SCALE = 100
INT32_MAX = int(np.iinfo(np.int32).max)  # the largest posting count and quantised score sum int32 holds


def quantize(values: np.ndarray) -> np.ndarray:
    """Impact weights as Lucene stores them: round(100·w) as int32 (0.004 -> 0, 0.005 -> 0 or 1, 1.237 -> 124)."""
    return np.rint(np.asarray(values, dtype=np.float64) * SCALE).astype(np.int32)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
