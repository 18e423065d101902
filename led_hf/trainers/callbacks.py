"""Trainer callbacks shared by the trainers."""

from __future__ import annotations

import math

from transformers import TrainerCallback

from led_hf.errors import LedError


class EpochCallback(TrainerCallback):
    """Tell the training dataset which epoch starts, so that it draws fresh negatives (docs/method.md §2).

    Accelerate re-seeds epochs through its sampler: its ``DataLoaderShard.set_epoch`` forwards the epoch
    to ``dataset.set_epoch`` only when the batch sampler is not sharded, i.e. with one process. Under
    DDP the (seedable) sampler takes the epoch and a map-style dataset would draw epoch 0's negatives
    forever. This callback calls ``set_epoch(int(state.epoch))`` at ``on_epoch_begin``, i.e. before the
    Trainer creates the epoch's DataLoader iterator (and its worker processes).

    >>> trainer = Trainer(model, args, train_dataset=groups, data_collator=collator,
    ...                   callbacks=[EpochCallback()])  # doctest: +SKIP

    Args:
        dataset: the object to call ``set_epoch`` on; by default the train DataLoader's dataset
            (unwrapping Accelerate's ``IterableDatasetShard``-style ``.dataset`` wrappers).
    """

    def __init__(self, dataset=None):
        self.dataset = dataset

    def on_train_begin(self, args, state, control, **kwargs):
        # Persistent workers hold a copy of the dataset made at the first epoch: they would never see
        # a new epoch, and every epoch would silently reuse epoch 0's negatives.
        if getattr(args, "dataloader_persistent_workers", False) and getattr(
            args, "dataloader_num_workers", 0
        ):
            raise LedError(
                "EpochCallback cannot reach persistent DataLoader workers: set "
                "dataloader_persistent_workers=False (negatives are drawn per epoch)"
            )

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = self.dataset if self.dataset is not None else _find_epoch_target(train_dataloader)
        if dataset is None:
            raise LedError("EpochCallback: the training dataset has no set_epoch(epoch) method")
        # state.epoch is a float (e.g. 1.0000000001 after an epoch's last step); the small tolerance keeps
        # a value just under an integer from rounding down.
        dataset.set_epoch(int(math.floor((state.epoch or 0.0) + 1e-6)))


def _find_epoch_target(dataloader):
    dataset = getattr(dataloader, "dataset", None)
    while dataset is not None and not hasattr(dataset, "set_epoch"):
        dataset = getattr(dataset, "dataset", None)
    return dataset
