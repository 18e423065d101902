"""Negative pools and the per-epoch negative draw (docs/method.md §2). Pure functions, no I/O.

A query's pool is built once from its ranked negative lists (one per source, e.g. ``bm25`` or
``co-stg1, sp-stg1, sp-stg2``); every epoch draws ``num_negatives`` (NN) candidates from it:

- pool size == NN: the whole pool, in pool order;
- pool size <  NN: the pool repeated cyclically, ``pool[k % size]`` for k = 0 .. NN-1;
- pool size >  NN: NN positions drawn uniformly without replacement.

The draw is a function of ``(seed, epoch, row)`` only (``numpy.random.default_rng([seed, epoch, row])``),
so it is identical across processes, DataLoader workers, restarts and iteration orders, and fresh
every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def negative_pool(
    source_lists: list[list[str]], num_negs_per_system: int, positives: set[str], dedupe: bool = False
) -> list[str]:
    """The negative pool of one query (docs/method.md §2).

    Each source list is truncated to its first ``num_negs_per_system`` entries, the truncated lists are
    concatenated in source order, the query's qrels positives are removed, and with ``dedupe`` only the
    first occurrence of a passage is kept (the reference keeps duplicates: a passage found by three
    systems is three times as likely to be drawn).

    >>> negative_pool([["p1", "p2", "p3"], ["p2", "p9"]], num_negs_per_system=2, positives={"p1"})
    ['p2', 'p2', 'p9']
    >>> negative_pool([["p1", "p2", "p3"], ["p2", "p9"]], 2, {"p1"}, dedupe=True)
    ['p2', 'p9']
    """
    if num_negs_per_system < 0:
        raise ValueError(f"num_negs_per_system must be >= 0, got {num_negs_per_system}")
    pool: list[str] = []
    for ranked in source_lists:
        pool.extend(pid for pid in ranked[:num_negs_per_system] if pid not in positives)
    if dedupe:
        pool = list(dict.fromkeys(pool))
    return pool


def draw_positions(pool_size: int, num_negatives: int, seed: int, epoch: int, row: int) -> np.ndarray:
    """Positions (int64 array of length NN) into a pool of ``pool_size``, as described in the module doc.

    >>> draw_positions(3, 7, seed=42, epoch=0, row=5).tolist()
    [0, 1, 2, 0, 1, 2, 0]
    >>> draw_positions(3, 3, seed=42, epoch=0, row=5).tolist()
    [0, 1, 2]
    """
    if num_negatives < 0:
        raise ValueError(f"num_negatives must be >= 0, got {num_negatives}")
    if num_negatives == 0:
        return np.zeros(0, dtype=np.int64)
    if pool_size <= 0:
        raise ValueError("cannot draw negatives from an empty pool")
    if pool_size <= num_negatives:
        return np.arange(num_negatives, dtype=np.int64) % pool_size
    rng = np.random.default_rng([int(seed), int(epoch), int(row)])
    return rng.choice(pool_size, size=num_negatives, replace=False).astype(np.int64)


def draw_negatives(
    pool: Sequence[T] | np.ndarray, num_negatives: int, seed: int, epoch: int, row: int
) -> list[T]:
    """Draw NN negatives of one training row for one epoch; deterministic in ``(seed, epoch, row)``.

    Works on any sequence: pid strings, or corpus row numbers (a numpy array) as the training groups use.

    >>> draw_negatives(["a", "b"], 5, seed=1, epoch=0, row=0)
    ['a', 'b', 'a', 'b', 'a']
    >>> draws = [draw_negatives(list("abcdefgh"), 3, seed=1, epoch=e, row=0) for e in (0, 0, 1)]
    >>> draws[0] == draws[1], len(set(draws[0])) == 3
    (True, True)
    """
    positions = draw_positions(len(pool), num_negatives, seed, epoch, row)
    if isinstance(pool, np.ndarray):
        return pool[positions].tolist()
    return [pool[int(p)] for p in positions]


def negative_pools_csr(
    query_index: np.ndarray,
    candidate_rows: np.ndarray,
    num_queries: int,
    positive_keys: np.ndarray,
    num_items: int,
    dedupe: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """`negative_pool` for many queries at once, on integer ids, as a CSR pair ``(offsets, rows)``.

    ``query_index[k]``/``candidate_rows[k]`` list every (already truncated) candidate of every source,
    in source order then rank order within each query (the queries may be interleaved: a stable sort
    keeps that order). ``positive_keys`` holds ``query * num_items + positive_row`` for every qrels
    positive. Query q's pool is ``rows[offsets[q]:offsets[q + 1]]``.

    >>> offsets, rows = negative_pools_csr(np.array([0, 0, 1, 0, 1]), np.array([5, 6, 7, 5, 9]),
    ...     num_queries=3, positive_keys=np.array([0 * 10 + 6]), num_items=10)
    >>> offsets.tolist(), rows.tolist()
    ([0, 2, 4, 4], [5, 5, 7, 9])
    """
    query_index = np.asarray(query_index, dtype=np.int64)
    candidate_rows = np.asarray(candidate_rows, dtype=np.int64)
    order = np.argsort(query_index, kind="stable")
    query_index, candidate_rows = query_index[order], candidate_rows[order]
    keys = query_index * np.int64(num_items) + candidate_rows
    keep = ~np.isin(keys, positive_keys)
    query_index, candidate_rows, keys = query_index[keep], candidate_rows[keep], keys[keep]
    if dedupe and len(keys):
        _, first = np.unique(keys, return_index=True)
        first.sort()
        query_index, candidate_rows = query_index[first], candidate_rows[first]
    offsets = np.zeros(num_queries + 1, dtype=np.int64)
    np.cumsum(np.bincount(query_index, minlength=num_queries), out=offsets[1:])
    return offsets, candidate_rows
