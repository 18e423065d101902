"""Listwise cross-entropy over each query's own candidates (a cross-encoder's training loss).

    loss = -(1/B) sum_i log softmax(S_i)[0]           S [B, G]: scores of query i's group, positive first

A cross-encoder scores every (query, passage) pair on its own, so there are no in-batch negatives:
each query's softmax runs over its G candidates only (its positive and G-1 hard negatives), the
"localized contrastive estimation" of Gao et al. 2021 (Rethink Training of BERT Rerankers, ECIR).
Every query's term depends on its own group alone, so a batch of 2B equals the mean of two batches of B.

Example: S = [[2, 0]] -> loss = -log(e^2 / (e^2 + e^0)) = 0.1269.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from led_hf.errors import LedError


def listwise_cross_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of column 0 (the positive) of `scores` [B, G]; scalar, fp32 (fp64 stays fp64)."""
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise LedError(f"scores must be [queries, group_size], got shape {tuple(scores.shape)}")
    scores = scores if scores.dtype == torch.float64 else scores.float()
    targets = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, targets)


def positive_top_accuracy(scores: torch.Tensor) -> torch.Tensor:
    """Fraction of queries whose positive (column 0 of [B, G]) scores strictly highest in its group."""
    with torch.no_grad():
        others = scores[:, 1:]
        if others.shape[1] == 0:
            return torch.ones((), device=scores.device)
        return (scores[:, 0] > others.max(dim=1).values).float().mean()
