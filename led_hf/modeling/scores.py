"""Similarity scores of bi-encoder vectors (dense embeddings or SPLADE term weights), written once.

    dot_scores(Q [Nq, D], P [Np, D])       = Q P^T                     [Nq, Np]  every query x every passage
    group_scores(Q [B, D], P [B*G, D])[i, g] = <Q_i, P_{i*G+g}>          [B, G]    each query's own candidates

Passages come in groups of G, one group per query (positive first in training batches), as everywhere in
led-hf. `dot_scores` runs in fp32 with autocast off: sums over ~30k SPLADE terms overflow fp16 (max
65504) long before the weights themselves do. `group_scores` leaves dtype and autocast to the caller.
"""

from __future__ import annotations

import torch

from led_hf.errors import LedError


def dot_scores(queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
    """[Nq, D] x [Np, D] -> [Nq, Np] dot products in fp32, even under autocast."""
    with torch.autocast(device_type=queries.device.type, enabled=False):
        return queries.float() @ passages.float().T


def group_scores(queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
    """[B, D] x [B*G, D] -> [B, G]: query i against passages i*G .. i*G+G-1 only.

    Example: Q = [[1, 0], [0, 1]], P = [[2, 0], [0, 3], [4, 0], [0, 5]] (G = 2) -> [[2, 0], [0, 5]].
    """
    num_queries = queries.shape[0]
    if num_queries == 0 or passages.shape[0] % num_queries:
        raise LedError(f"{passages.shape[0]} passages do not split into groups for {num_queries} queries")
    grouped = passages.view(num_queries, passages.shape[0] // num_queries, -1)
    return torch.einsum("bh,bgh->bg", queries, grouped)


def check_group_scores(scores: torch.Tensor, num_queries: int, group_size: int, name: str) -> torch.Tensor:
    """Per-candidate scores that arrived with a batch (e.g. precomputed teacher scores), as fp32 [B, G];
    any other shape is an error naming `name`."""
    if tuple(scores.shape) != (num_queries, group_size):
        raise LedError(f"{name} has shape {tuple(scores.shape)}, expected [{num_queries}, {group_size}]")
    return scores.float()
