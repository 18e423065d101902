"""Contrastive (InfoNCE) loss over in-batch and hard negatives (docs/method.md §4).

    S = Q P^T / temperature                      Q [B, H], P [B*G, H] -> S [B, B*G]
    loss = -(1/B) sum_i log softmax(S_i)[i*G]    the positive of query i is passage i*G

Passages come in groups of G = group_size, the positive first: `[p_0+, n_0,1 .. n_0,G-1, p_1+, ...]`.
Every query is scored against *all* passages of the batch, so the other queries' positives and
negatives act as extra (in-batch) negatives. Under DDP the caller gathers Q and P of every process
with `led_hf.distributed.gather_with_grad` first; the loss itself is not multiplied by the number of
processes (see led_hf/distributed.py for why the gradients then equal those of one process holding the whole batch).

Example: B=1, G=2, temperature 1, Q=[[1, 0]], P=[[2, 0], [0, 1]] -> S=[[2, 0]],
loss = -log(e^2 / (e^2 + e^0)) = 0.1269.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from led_hf.errors import LedError
from led_hf.modeling.scores import group_scores


def contrastive_loss(
    query_embeddings: torch.Tensor,
    passage_embeddings: torch.Tensor,
    group_size: int,
    temperature: float = 1.0,
    in_batch_negatives: bool = True,
) -> torch.Tensor:
    """Mean cross-entropy of each query's positive among the passages (scalar, fp32).

    With `in_batch_negatives=False` query i is scored against its own group only (S is [B, G],
    target column 0): every query's loss then depends on its own group alone, so a batch of 2B equals
    the mean of two batches of B, which is what gradient accumulation assumes.
    """
    num_queries = query_embeddings.shape[0]
    if passage_embeddings.shape[0] != num_queries * group_size:
        raise LedError(
            f"{passage_embeddings.shape[0]} passages for {num_queries} queries x group size {group_size}"
        )
    queries, passages = query_embeddings.float(), passage_embeddings.float()
    if in_batch_negatives:
        scores = queries @ passages.T
        targets = torch.arange(num_queries, device=scores.device) * group_size
    else:
        scores = group_scores(queries, passages)
        targets = torch.zeros(num_queries, dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, targets)


def positive_rank_accuracy(
    query_embeddings: torch.Tensor,
    passage_embeddings: torch.Tensor,
    group_size: int,
    in_batch_negatives: bool = True,
) -> torch.Tensor:
    """Fraction of queries whose positive scores highest among the passages `contrastive_loss` uses."""
    with torch.no_grad():
        num_queries = query_embeddings.shape[0]
        queries, passages = query_embeddings.float(), passage_embeddings.float()
        if in_batch_negatives:
            predicted = (queries @ passages.T).argmax(dim=1)
            targets = torch.arange(num_queries, device=predicted.device) * group_size
        else:
            predicted = group_scores(queries, passages).argmax(dim=1)
            targets = torch.zeros_like(predicted)
        return (predicted == targets).float().mean()
