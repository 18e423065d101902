"""Stream training groups as an IterableDataset, sharded per process and per DataLoader worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from led_hf.data.groups import TrainGroups


class TrainGroupsIterable(torch.utils.data.IterableDataset):
    """Stream the items of a `TrainGroups`, sharded per process and per DataLoader worker.

    Each epoch the rows are permuted by ``default_rng([seed, epoch, 1])`` (same order on every process),
    cut to a multiple of the number of processes (so that every DDP rank yields the same number of
    items and none waits forever), and process ``rank`` takes rows ``rank, rank + world, ...``; within
    a process, DataLoader worker ``w`` of ``n`` takes every n-th of those. Negatives are drawn exactly
    as in the map-style dataset (by example row, not by position in the stream).

    Rank and world size come from ``torch.distributed`` (or Accelerate's state) when initialised.
    Note: `transformers.Trainer` (through Accelerate) already splits an IterableDataset across
    processes (rank 0 dispatches batches, or `IterableDatasetShard`): there pass
    ``shard_by_process=False``, or better give the Trainer the map-style `TrainGroups`.
    Set the epoch (``set_epoch``) before creating the iterator; with persistent DataLoader workers
    the workers keep the epoch they started with.
    """

    def __init__(self, groups: TrainGroups, shuffle: bool = True, shard_by_process: bool = True):
        self.groups = groups
        self.shuffle = shuffle
        self.shard_by_process = shard_by_process

    @property
    def epoch(self) -> int:
        return self.groups.epoch

    def set_epoch(self, epoch: int) -> None:
        self.groups.set_epoch(epoch)

    def _world(self) -> tuple[int, int]:
        return process_rank_and_world() if self.shard_by_process else (0, 1)

    def __len__(self) -> int:
        """Items this process yields per epoch (all its DataLoader workers together)."""
        return len(self.groups) // self._world()[1]

    def shard_indices(
        self, rank: int | None = None, world: int | None = None, worker: int = 0, num_workers: int = 1
    ) -> np.ndarray:
        """Dataset indices one (process, worker) yields this epoch, in order."""
        if rank is None or world is None:
            rank, world = self._world()
        order = np.arange(len(self.groups))
        if self.shuffle:
            order = np.random.default_rng([self.groups.seed, self.groups.epoch, 1]).permutation(order)
        order = order[: len(order) // world * world]
        return order[rank::world][worker::num_workers]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index in self.shard_indices(worker=worker, num_workers=num_workers):
            yield self.groups[int(index)]


def process_rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: torch.distributed, else Accelerate's state, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        from accelerate.state import PartialState
    except ImportError:  # pragma: no cover - accelerate is a dependency
        return 0, 1
    if getattr(PartialState, "_shared_state", None):
        state = PartialState()
        return state.process_index, state.num_processes
    return 0, 1
