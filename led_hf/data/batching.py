"""Batches without the same query twice and without the same passage twice, across all devices.

Contrastive training scores every query against every passage of the global batch. Two rows of one
query put each other's positive among its negatives; one passage in two groups (a positive of one
query, a hard negative of another, or a hard negative of both) is scored twice as a negative, or as a
negative copy of a target. `NoDuplicatesSampler` orders an epoch's items so that each global batch is
free of both, as sentence-transformers' ``NoDuplicatesBatchSampler`` does for its datasets:

- the items are shuffled by ``(seed, epoch)``, with the rows of one query (``group_by="pair"``) spread
  evenly over the epoch: row j of a query with k rows lands at a random place in the j-th k-quantile,
  so that the last batches are not left with the many rows of a few queries;
- a batch takes, in that order, each remaining item whose query and candidate passages (this epoch's
  draw, `TrainGroups.candidate_rows`) are not in the batch yet; an item that collides waits for a later
  batch;
- when no remaining item fits, the batch is completed with the first remaining ones regardless (counted
  in ``relaxed_items``): the epoch keeps every item exactly once, so its length never changes.

It yields single indices, so the Trainer's own batching and Accelerate's sharding apply unchanged:
with W processes of B items, batch k of the DataLoader is items ``k*B .. k*B + B-1``, and Accelerate
gives process r the batches ``r, r + W, ...`` -- so every window of ``W*B`` consecutive items, one
global batch, is what the sampler keeps free of duplicates (`global_batch_size` = B * W).
Within one item, a passage may still repeat (a pool smaller than its draw, or a pool that keeps the
duplicates of several sources: spec §2).

>>> sampler = NoDuplicatesSampler(groups, global_batch_size=32)       # doctest: +SKIP
>>> groups.set_epoch(1); batches = sampler.batches()                  # doctest: +SKIP
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)


class NoDuplicatesSampler(torch.utils.data.Sampler):
    """Index order of one epoch of a `TrainGroups` whose global batches hold no duplicate query or passage.

    Args:
        groups: a `TrainGroups` (anything with ``__len__``, ``epoch``, ``query_number(i)``,
            ``query_numbers()`` and ``candidate_rows(i, epoch)``).
        global_batch_size: items per optimizer micro-step over all processes (per-device batch x processes).
        seed: shuffles each epoch with ``default_rng([seed, epoch, 3])``; default: the groups' seed.
    """

    def __init__(self, groups, global_batch_size: int, seed: int | None = None):
        if global_batch_size < 1:
            raise ValueError(f"global_batch_size must be >= 1, got {global_batch_size}")
        self.groups = groups
        self.global_batch_size = int(global_batch_size)
        self.seed = int(groups.seed if seed is None else seed)
        self.relaxed_items = 0
        self.relaxed_batches: list[int] = []
        self._epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Accelerate may call this; the groups' own epoch (set by `EpochCallback`) is what counts."""
        self._epoch = int(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.groups, "epoch", self._epoch or 0))

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        for batch in self._batches(self.epoch):
            yield from batch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The global batches of ``epoch`` (default: the groups' current epoch), as lists of indices."""
        return list(self._batches(self.epoch if epoch is None else int(epoch)))

    def _values(self, index: int, epoch: int) -> set[int]:
        # Queries as negative keys (-1 - query number), passages as their corpus rows (>= 0).
        rows = self.groups.candidate_rows(index, epoch)
        return {-1 - int(self.groups.query_number(index)), *map(int, rows)}

    def epoch_order(self, epoch: int) -> list[int]:
        """The shuffled order of ``epoch`` that batches are filled from, rows of one query spread out."""
        rng = np.random.default_rng([self.seed, epoch, 3])
        queries = np.asarray(self.groups.query_numbers(), dtype=np.int64)
        shuffled = rng.permutation(len(queries))
        by_query = shuffled[np.argsort(queries[shuffled], kind="stable")]  # random order within each query
        counts = np.bincount(queries)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty(len(queries), dtype=np.int64)
        rank[by_query] = np.arange(len(queries)) - starts[queries[by_query]]
        keys = (rank + rng.random(len(queries))) / counts[queries]
        return np.argsort(keys, kind="stable").tolist()

    def _batches(self, epoch: int):
        order = self.epoch_order(epoch)
        # A singly linked list over `order` (len(order) ends it): taking an item from the middle is O(1).
        following = list(range(1, len(order) + 1))
        head = 0
        pending: dict[int, set[int]] = {}  # values of deferred items (each item is drawn once per epoch)
        relaxed_items, relaxed_batches, number = 0, [], 0
        while head < len(order):
            batch, used = [], set()
            position, previous = head, -1
            while position < len(order) and len(batch) < self.global_batch_size:
                index = order[position]
                values = pending.pop(index, None)
                if values is None:
                    values = self._values(index, epoch)
                if values.isdisjoint(used):
                    batch.append(index)
                    used |= values
                    position = following[position]
                    if previous == -1:
                        head = position
                    else:
                        following[previous] = position
                    continue
                pending[index] = values
                previous, position = position, following[position]
            if len(batch) < self.global_batch_size and head < len(order):
                # Nothing left fits: complete the batch with the first remaining items, duplicates or not.
                relaxed_batches.append(number)
            while len(batch) < self.global_batch_size and head < len(order):
                batch.append(order[head])
                pending.pop(order[head], None)
                relaxed_items += 1
                head = following[head]
            number += 1
            yield batch
        self.relaxed_items, self.relaxed_batches = relaxed_items, relaxed_batches
        if relaxed_items:
            logger.info(
                "epoch %d: %d of %d items share a query or passage with their batch (no duplicate-free "
                "batch was left for them)",
                epoch,
                relaxed_items,
                len(order),
            )
