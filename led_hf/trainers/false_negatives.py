"""The false-negative mask of a training batch, on one device or gathered over all of them.

`TrainCollator` puts the corpus rows of every passage (``passage_rows`` [B*G]) and of every qrels positive
of each query (``positive_rows`` [B, P]) into the batch. When the contrastive loss scores the gathered
global batch, the ids are gathered the same way (rank order, like `gather_with_grad`), so that column j
of the mask is passage j of the gathered passages on every device.
"""

from __future__ import annotations

import torch

from led_hf.distributed import gather_ids
from led_hf.losses.masking import false_negative_mask


def batch_false_negative_mask(
    inputs: dict, group_size: int, in_batch_negatives: bool = True, gathered: bool = False
) -> torch.Tensor | None:
    """[B, B*G] (or [B, G] without in-batch negatives) mask of `inputs`, or None when the batch carries no
    ids; `gathered`: the rows of all devices ([B*W, B*W*G]), to go with gathered embeddings."""
    if "passage_rows" not in inputs or "positive_rows" not in inputs:
        return None
    passage_rows, positive_rows = inputs["passage_rows"], inputs["positive_rows"]
    if gathered:
        passage_rows, positive_rows = gather_ids(passage_rows), gather_ids(positive_rows)
    return false_negative_mask(positive_rows, passage_rows, group_size, in_batch_negatives)
