"""Turn token states (dense) or masked-LM logits (SPLADE) into one vector per text.

    cls:    e = h[0]                                  (coCondenser, the reference dense model)
    mean:   e = sum_t m[t] * h[t] / max(sum_t m[t], 1e-9)   (MiniLM / sentence-transformers style)
    splade: w[v] = max_t log(1 + relu(z[t, v])) * m[t]     (SPLADE v2, docs/method.md §3)

`h` is the last hidden state [N, L, H], `z` the MLM logits [N, L, V], `m` the attention mask [N, L].
Reductions run in fp32 and the result is fp32 even under bf16/fp16 weights or autocast, so that scores
and losses never see half precision.

SPLADE: Formal et al., "SPLADE v2" (arXiv 2109.10086).
"""

from __future__ import annotations

import torch

POOLING_MODES = ("cls", "mean")


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, mode: str = "cls") -> torch.Tensor:
    """[N, L, H] token states + [N, L] mask -> [N, H] fp32 embeddings.

    >>> h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]]); m = torch.tensor([[1, 1, 0]])
    >>> pool(h, m, "cls").tolist(), pool(h, m, "mean").tolist()
    ([[1.0, 2.0]], [[2.0, 3.0]])
    """
    if mode == "cls":
        # Tokenizers that pad on the left would put padding at 0; every BERT-family tokenizer pads right.
        return last_hidden_state[:, 0].float()
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = (last_hidden_state.float() * mask).sum(dim=1)
        return summed / mask.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling mode {mode!r} (expected one of {', '.join(POOLING_MODES)})")


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
        if torch.is_grad_enabled() and logits.requires_grad:
            max_logits = _MaskedMaxOverTokens.apply(logits, keep)
        else:  # encoding: no indices to keep, and amax is ~4x faster than max(dim) over a 30k vocabulary
            max_logits = logits.masked_fill(~keep, float("-inf")).amax(dim=1)
        return torch.log1p(torch.relu(max_logits.float()))


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
