"""The SPLADE stage loss and the FLOPS regulariser (docs/method.md §3-§4).

SPLADE: Formal et al., "SPLADE v2" (arXiv 2109.10086); FLOPS: Paria et al., "Minimizing FLOPs to learn
efficient sparse representations" (ICLR 2020). SPLADE pooling is model code
(`led_hf.modeling.pooling.splade_pool`); it stays importable from here, its name in the losses' contract.
"""

from __future__ import annotations

import torch

from led_hf.distributed import gather_with_grad
from led_hf.losses.contrastive import contrastive_loss
from led_hf.modeling.pooling import splade_pool

__all__ = ["flops_regularizer", "quadratic_warmup", "splade_loss", "splade_pool"]


def flops_regularizer(representations: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser: the squared mean absolute weight of each vocabulary term, summed.

        FLOPS(W) = sum_v ( (1/N) sum_n |w[n, v]| )^2        representations W [N, V] -> scalar (fp32)

    It approximates the expected number of floating-point operations of a sparse dot product and pushes
    rarely-useful terms to exactly zero. Under DDP, pass the gathered global batch to regularise the
    global mean (docs/method.md §4 option) instead of each device's local mean.

    Example: W = [[1., 0.], [3., 2.]] -> ((1+3)/2)^2 + ((0+2)/2)^2 = 4 + 1 = 5.
    """
    if representations.dim() != 2 or representations.shape[0] == 0:
        raise ValueError(f"flops_regularizer: non-empty [N, V] expected, got {tuple(representations.shape)}")
    with torch.autocast(device_type=representations.device.type, enabled=False):
        mean_weights = representations.float().abs().mean(dim=0)
        return (mean_weights * mean_weights).sum()


def splade_loss(
    query_representations: torch.Tensor,
    passage_representations: torch.Tensor,
    group_size: int,
    query_flops_weight: float,
    passage_flops_weight: float,
    flops_over_global_batch: bool = False,
    gather_across_devices: bool = True,
    in_batch_negatives: bool = True,
) -> dict[str, torch.Tensor]:
    """SPLADE stage loss (docs/method.md §4), as named parts:

        loss = contrastive(Q, P) + λ_q · FLOPS(Q) + λ_d · FLOPS(P)

    Q [B, V] queries and P [B*G, V] passages of this device (positive first in each group of G). With
    `gather_across_devices` the contrastive part sees every device's rows (gathered with gradient); with
    `flops_over_global_batch` FLOPS averages over the gathered rows too, so W devices give the value and
    (after DDP's gradient averaging) the gradient of one process holding the whole batch; otherwise each
    device regularises its local mean. Returns {"loss", "contrastive", "flops_query", "flops_passage"}
    (the FLOPS parts unweighted).
    """
    if gather_across_devices or flops_over_global_batch:
        all_queries, all_passages = (
            gather_with_grad(query_representations),
            gather_with_grad(passage_representations),
        )
    contrastive_queries, contrastive_passages = (
        (all_queries, all_passages)
        if gather_across_devices
        else (query_representations, passage_representations)
    )
    contrastive = contrastive_loss(
        contrastive_queries, contrastive_passages, group_size, in_batch_negatives=in_batch_negatives
    )
    flops_queries, flops_passages = (
        (all_queries, all_passages)
        if flops_over_global_batch
        else (query_representations, passage_representations)
    )
    flops_query, flops_passage = flops_regularizer(flops_queries), flops_regularizer(flops_passages)
    loss = contrastive + query_flops_weight * flops_query + passage_flops_weight * flops_passage
    return {
        "loss": loss,
        "contrastive": contrastive,
        "flops_query": flops_query,
        "flops_passage": flops_passage,
    }


def quadratic_warmup(weight: float, step: int, warmup_steps: int) -> float:
    """λ at optimizer step `step` (0-based: steps completed so far) of a quadratic warm-up over `warmup_steps`:

        λ(s) = λ · min(1, s / k)^2          (k = 0: constant λ)

    Example: λ = 8e-4, k = 4 -> steps 0, 1, 2, 4, 9 give 0, 5e-5, 2e-4, 8e-4, 8e-4.
    """
    if warmup_steps <= 0 or step >= warmup_steps:
        return float(weight)
    return float(weight) * (max(step, 0) / warmup_steps) ** 2
