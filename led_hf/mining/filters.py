"""Which retrieved passages become hard negatives: pure functions over ranked [Q, D] arrays.

Inputs, one row per query, best first (the output of a top-D search):

    rows    int  [Q, D]   corpus rows of the retrieved passages, -1 where fewer than D were found
    scores  float [Q, D]  their retrieval scores
    positive_scores float [Q]  the model's score of the query's *best* (highest-scoring) positive; NaN when
                               unknown (no positive, or a retriever that cannot score one, e.g. BM25)

Every filter returns a bool mask [Q, D] (True = keep) so that they combine with `&`. Ranks are
*negative ranks*: 1-based positions among the retrieved passages left once the query's qrels positives
(and padding) are removed, e.g. rows [7, 3, 9, -1] with positive 3 -> negative ranks [1, 0, 2, 0]
(0 = not a candidate). Skipping and rank ranges refer to them, as sentence-transformers' `range_min` /
`range_max` do, so they do not shift with the number of positives a query happens to have in its top.

The reference recipe (docs/method.md §5) is `NegativeFilters(keep=200)`: positives removed, the first 200 kept.
Options from the field, all off by default:

- `skip_top=r`: drop negative ranks 1..r (the very top holds most unlabelled positives).
- `absolute_margin=m`: drop candidates with score > s⁺ − m, s⁺ the best positive's score (likely
  false negatives: they score about as high as a true positive). m = 0 keeps only candidates that
  score at most the positive.
- `relative_margin=m`: drop candidates with score > s⁺ − |s⁺|·m (= s⁺·(1 − m) for s⁺ ≥ 0; the |s⁺|
  form keeps the threshold below s⁺ for negative scores too, as sentence-transformers does).
  sentence-transformers compares with the *lowest*-scoring positive; we use the best one (the margin
  then removes only candidates that rival every positive). A query whose s⁺ is NaN is not filtered.
- `sample_ranks=(lo, hi)`: keep `keep` candidates drawn uniformly without replacement from negative
  ranks lo..hi (inclusive), listed in rank order; the draw of a query depends only on (seed, qid), so
  it is the same however queries are sharded across processes.
Finally the first `keep` remaining candidates, in rank order, are the query's negatives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from led_hf.errors import LedError


@dataclass(frozen=True)
class NegativeFilters:
    """The mining options that decide which candidates are kept (see the module docstring)."""

    keep: int = 200
    skip_top: int = 0
    absolute_margin: float | None = None
    relative_margin: float | None = None
    sample_ranks: tuple[int, int] | None = None
    seed: int = 42

    def __post_init__(self):
        if self.keep < 1:
            raise LedError(f"--keep must be at least 1, got {self.keep}")
        if self.skip_top < 0:
            raise LedError(f"--skip-top must be >= 0, got {self.skip_top}")
        for name in ("absolute_margin", "relative_margin"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value):
                raise LedError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if self.sample_ranks is not None:
            lo, hi = self.sample_ranks
            if not 1 <= lo <= hi:
                raise LedError(f"--sample-ranks needs 1 <= LO <= HI, got {lo}:{hi}")

    @property
    def needs_positive_scores(self) -> bool:
        return self.absolute_margin is not None or self.relative_margin is not None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sample_ranks"] = list(self.sample_ranks) if self.sample_ranks else None
        return out


def positive_mask(rows: np.ndarray, positives: Sequence[np.ndarray]) -> np.ndarray:
    """True where rows[i, j] is one of query i's positive rows.

    >>> positive_mask(np.array([[7, 3, 9, -1]]), [np.array([3])])
    array([[False,  True, False, False]])
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(positives) != rows.shape[0]:
        raise ValueError(f"{len(positives)} positive lists for {rows.shape[0]} queries")
    # one int64 key per (query, row): a single vectorised isin instead of Q small ones
    width = int(max(rows.max(initial=-1), max((int(p.max()) for p in positives if len(p)), default=-1))) + 2
    query_of = np.arange(rows.shape[0], dtype=np.int64)[:, None]
    keys = query_of * width + (rows + 1)
    positive_keys = np.concatenate(
        [i * width + (np.asarray(p, np.int64) + 1) for i, p in enumerate(positives)] + [np.zeros(0, np.int64)]
    )
    return np.isin(keys, positive_keys) & (rows >= 0)


def negative_ranks(candidates: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate among the candidates of its row; 0 where not a candidate.

    >>> negative_ranks(np.array([[True, False, True, False]]))
    array([[1, 0, 2, 0]])
    """
    return np.where(candidates, np.cumsum(candidates, axis=1), 0)


def skip_top(ranks: np.ndarray, count: int) -> np.ndarray:
    """Keep negative ranks above `count` (drops ranks 1..count)."""
    return ranks > count


def margin_mask(
    scores: np.ndarray,
    positive_scores: np.ndarray,
    absolute_margin: float | None = None,
    relative_margin: float | None = None,
) -> np.ndarray:
    """Keep candidates with score <= s⁺ − absolute_margin and score <= s⁺ − |s⁺|·relative_margin.

    Rows whose positive score is NaN are kept whole.

    >>> margin_mask(np.array([[0.9, 0.7, 0.5]]), np.array([0.8]), absolute_margin=0.1)
    array([[False,  True,  True]])
    >>> margin_mask(np.array([[0.9, 0.7, 0.5]]), np.array([0.8]), relative_margin=0.25)   # threshold 0.6
    array([[False, False,  True]])
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive_scores, dtype=np.float64)[:, None]
    keep = np.ones(scores.shape, dtype=bool)
    if absolute_margin is not None:
        keep &= ~(scores > positive - absolute_margin)  # NaN threshold compares False: kept
    if relative_margin is not None:
        keep &= ~(scores > positive - np.abs(positive) * relative_margin)
    return keep


def query_seed(seed: int, qid: str) -> int:
    """A 64-bit seed from (seed, qid), stable across processes and Python runs (no `hash()` salt)."""
    digest = hashlib.blake2b(f"{seed}\0{qid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def sample_in_rank_range(
    mask: np.ndarray, ranks: np.ndarray, lo: int, hi: int, count: int, qids: Sequence[str], seed: int
) -> np.ndarray:
    """Restrict `mask` to negative ranks lo..hi, then keep `count` of its True entries per row, drawn
    uniformly without replacement with `query_seed(seed, qid)` (all of them when fewer are left)."""
    eligible = mask & (ranks >= lo) & (ranks <= hi)
    out = np.zeros_like(eligible)
    for i, qid in enumerate(qids):
        positions = np.flatnonzero(eligible[i])
        if len(positions) > count:
            positions = np.random.default_rng(query_seed(seed, qid)).choice(
                positions, size=count, replace=False
            )
        out[i, positions] = True
    return out


def first_k(mask: np.ndarray, k: int) -> np.ndarray:
    """Keep the first `k` True entries of each row.

    >>> first_k(np.array([[True, False, True, True]]), 2)
    array([[ True, False,  True, False]])
    """
    return mask & (np.cumsum(mask, axis=1) <= k)


def select_negatives(
    rows: np.ndarray,
    scores: np.ndarray,
    positives: Sequence[np.ndarray],
    qids: Sequence[str],
    filters: NegativeFilters,
    positive_scores: np.ndarray | None = None,
) -> np.ndarray:
    """The kept-candidate mask [Q, D] of `filters` (see the module docstring for the order of the rules)."""
    rows = np.asarray(rows)
    candidates = (rows >= 0) & ~positive_mask(rows, positives)
    ranks = negative_ranks(candidates)
    keep = candidates & skip_top(ranks, filters.skip_top)
    if filters.needs_positive_scores:
        if positive_scores is None:
            raise LedError("margin filters need the positives' scores")
        keep &= margin_mask(scores, positive_scores, filters.absolute_margin, filters.relative_margin)
    if filters.sample_ranks is not None:
        keep = sample_in_rank_range(keep, ranks, *filters.sample_ranks, filters.keep, qids, filters.seed)
    return first_k(keep, filters.keep)


def to_csr(
    rows: np.ndarray, scores: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept entries as (offsets int64 [Q+1], rows int64 [nnz], scores float32 [nnz]), rank order within a row."""
    counts = mask.sum(axis=1)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, np.asarray(rows)[mask].astype(np.int64), np.asarray(scores)[mask].astype(np.float32)
