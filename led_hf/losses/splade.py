"""SPLADE pooling and the FLOPS regulariser (spec/led-method.md §3-§4).

SPLADE: Formal et al., "SPLADE v2" (arXiv 2109.10086); FLOPS: Paria et al., "Minimizing FLOPs to learn
efficient sparse representations" (ICLR 2020).
"""

from __future__ import annotations

import torch


def splade_pool(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Vocabulary-sized term weights from masked-LM logits, in fp32.

        w[n, v] = max_t log(1 + relu(z[n, t, v])) * m[n, t]

    logits `z` [N, L, V] (any float dtype), attention_mask `m` [N, L] (0/1, applied as given) -> [N, V] fp32.
    log(1 + relu(.)) is monotone and >= 0, so the max is taken over the masked logits first: the same
    value and the same gradient (it flows to the arg-max position), without materialising log1p over
    [N, L, V]. The backward writes the gradient into the arg-max positions only (the first one on a tie),
    from their saved indices: autograd's `amax` would keep the [N, L, V] logits alive and compare and
    count over them, its `max(dim)` scatters through two full copies, and the mask's own backward would
    copy once more (docs/performance.md). A row whose mask is all zero gives the zero vector.

    Example: z = [[[1., -2.], [3., -1.]]], m = [[1, 1]] -> [[log 4, 0]] = [[1.3863, 0.]];
    with m = [[1, 0]] -> [[log 2, 0]].
    """
    if logits.dim() != 3 or attention_mask.shape != logits.shape[:2]:
        raise ValueError(
            f"splade_pool: logits [N, L, V] and attention_mask [N, L] expected, "
            f"got {tuple(logits.shape)} and {tuple(attention_mask.shape)}"
        )
    # The max of fp16/bf16 values is one of those values, so it is exact in the input dtype; only the
    # [N, V] result is cast up. Masked positions become -inf, which relu maps to 0 (a zero weight).
    with torch.autocast(device_type=logits.device.type, enabled=False):
        keep = attention_mask.to(torch.bool).unsqueeze(-1)
        max_logits = _MaskedMaxOverTokens.apply(logits, keep).float()
        return torch.log1p(torch.relu(max_logits))


class _MaskedMaxOverTokens(torch.autograd.Function):
    """max_t of logits [N, L, V] over the positions where keep [N, L, 1] is true -> [N, V] (-inf where none).

    Backward: zeros [N, L, V] with each (n, v)'s gradient put at its arg-max position through flat indices
    (index_put_), ~3x cheaper than autograd's scatter for a 30k vocabulary; only the [N, V] indices are
    saved, not the logits.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        values, positions = logits.masked_fill(~keep, float("-inf")).max(dim=1)
        ctx.save_for_backward(positions, torch.isneginf(values))
        ctx.logits_shape, ctx.logits_dtype = logits.shape, logits.dtype
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        positions, nothing_kept = ctx.saved_tensors
        rows, length, vocab = ctx.logits_shape
        device = grad.device
        flat = (
            torch.arange(rows, device=device).unsqueeze(1) * (length * vocab)
            + positions * vocab
            + torch.arange(vocab, device=device)
        )
        # a row with no kept position has no arg-max to credit: the masked logits get no gradient
        grad = grad.masked_fill(nothing_kept, 0).to(ctx.logits_dtype)
        grad_logits = torch.zeros(rows * length * vocab, dtype=ctx.logits_dtype, device=device)
        grad_logits.index_put_((flat.view(-1),), grad.reshape(-1))
        return grad_logits.view(rows, length, vocab), None


def splade_scores(query_representations: torch.Tensor, passage_representations: torch.Tensor) -> torch.Tensor:
    """Dot products of term-weight vectors in fp32 even under autocast: [Nq, V] x [Np, V] -> [Nq, Np].

    Sums over ~30k vocabulary entries overflow fp16 (max 65504) long before the weights themselves do.
    """
    with torch.autocast(device_type=query_representations.device.type, enabled=False):
        return query_representations.float() @ passage_representations.float().T


def flops_regularizer(representations: torch.Tensor) -> torch.Tensor:
    """FLOPS regulariser: the squared mean absolute weight of each vocabulary term, summed.

        FLOPS(W) = sum_v ( (1/N) sum_n |w[n, v]| )^2        representations W [N, V] -> scalar (fp32)

    It approximates the expected number of floating-point operations of a sparse dot product and pushes
    rarely-useful terms to exactly zero. Under DDP, pass the gathered global batch to regularise the
    global mean (spec §4 option) instead of each device's local mean.

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
    """SPLADE stage loss (spec §4), as named parts:

        loss = contrastive(Q, P) + λ_q · FLOPS(Q) + λ_d · FLOPS(P)

    Q [B, V] queries and P [B*G, V] passages of this device (positive first in each group of G). With
    `gather_across_devices` the contrastive part sees every device's rows (gathered with gradient); with
    `flops_over_global_batch` FLOPS averages over the gathered rows too, so W devices give the value and
    (after DDP's gradient averaging) the gradient of one process holding the whole batch; otherwise each
    device regularises its local mean. Returns {"loss", "contrastive", "flops_query", "flops_passage"}
    (the FLOPS parts unweighted).
    """
    from led_hf.losses.contrastive import contrastive_loss
    from led_hf.losses.gather import gather_with_grad

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
