"""All-gather with gradient, for negatives shared across devices.

    gathered = cat([x_0, ..., x_{W-1}])                       forward: every rank gets every rank's rows
    d/dx_r   = sum_{r'} (dL_{r'} / d gathered)[rows of r]    backward: the all-gather's adjoint

The backward is the true adjoint of all-gather (a sum over ranks, like
`torch.distributed.nn.functional.all_gather`), written with plain `all_gather` / `all_reduce` so that it
runs on gloo too. Why it needs no multiplication by W: every rank computes the same global loss L from
the same gathered tensors, so the backward gives rank r the gradient W * dL/dx_r; DDP then *averages*
the parameter gradients over the W ranks, which leaves exactly dL/dθ, the gradient of one process
holding the whole batch (tested with two gloo processes in tests/test_ddp_gather.py).
Ranks may hold different numbers of rows (an incomplete last batch): rows are padded for the
transfer and trimmed after.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        world_size, rank = dist.get_world_size(), dist.get_rank()
        sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world_size)]
        dist.all_gather(sizes, torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device))
        sizes = [int(size.item()) for size in sizes]
        padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes, ctx.rank = sizes, rank
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """[n_r, ...] on each rank -> [sum_r n_r, ...] in rank order, differentiable; identity without DDP.

    With two ranks holding rows [a, b] and [c]: both get [a, b, c].
    """
    if _world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)
