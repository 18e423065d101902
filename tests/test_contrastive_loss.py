"""contrastive_loss against an independent float64 numpy computation (value and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from led_hf.errors import LedError
from led_hf.losses import contrastive_loss
from led_hf.losses.contrastive import positive_rank_accuracy


def _numpy_loss_and_grads(queries, passages, group_size, temperature, in_batch=True):
    """Loss, dL/dQ, dL/dP in float64 (softmax cross-entropy written out)."""
    num_queries = len(queries)
    if in_batch:
        scores = queries @ passages.T / temperature
        targets = np.arange(num_queries) * group_size
    else:
        grouped = passages.reshape(num_queries, group_size, -1)
        scores = np.einsum("bh,bgh->bg", queries, grouped) / temperature
        targets = np.zeros(num_queries, dtype=int)
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(num_queries), targets].mean()
    d_scores = np.exp(log_probs)
    d_scores[np.arange(num_queries), targets] -= 1.0
    d_scores /= num_queries * temperature
    if in_batch:
        return loss, d_scores @ passages, d_scores.T @ queries
    grad_q = np.einsum("bg,bgh->bh", d_scores, grouped)
    grad_p = np.einsum("bg,bh->bgh", d_scores, queries).reshape(passages.shape)
    return loss, grad_q, grad_p


@pytest.mark.parametrize(
    "num_queries,group_size,temperature", [(4, 3, 1.0), (3, 8, 0.05), (5, 1, 0.2), (1, 2, 1.0)]
)
@pytest.mark.parametrize("in_batch", [True, False])
def test_matches_numpy(num_queries, group_size, temperature, in_batch):
    rng = np.random.default_rng(num_queries * 100 + group_size)
    queries = rng.normal(size=(num_queries, 6))
    passages = rng.normal(size=(num_queries * group_size, 6))
    q = torch.tensor(queries, dtype=torch.float32, requires_grad=True)
    p = torch.tensor(passages, dtype=torch.float32, requires_grad=True)
    loss = contrastive_loss(q, p, group_size, temperature=temperature, in_batch_negatives=in_batch)
    loss.backward()
    expected, grad_q, grad_p = _numpy_loss_and_grads(queries, passages, group_size, temperature, in_batch)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(q.grad.numpy(), grad_q, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(p.grad.numpy(), grad_p, rtol=1e-4, atol=1e-6)


def test_docstring_example_and_temperature():
    q, p = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert contrastive_loss(q, p, 2).item() == pytest.approx(-math.log(math.e**2 / (math.e**2 + 1)), rel=1e-6)
    # A lower temperature sharpens the softmax: the (correct) positive becomes more certain.
    assert contrastive_loss(q, p, 2, temperature=0.5).item() < contrastive_loss(q, p, 2).item()


def test_in_batch_negatives_are_other_groups():
    # Query 0's own group ranks its positive first, but query 1's positive (column 2) beats it.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 1.0], [0.0, 0.0]])
    assert positive_rank_accuracy(q, p, 2).item() == 0.5
    assert positive_rank_accuracy(q, p, 2, in_batch_negatives=False).item() == 1.0
    assert contrastive_loss(q, p, 2).item() > contrastive_loss(q, p, 2, in_batch_negatives=False).item()


def test_half_precision_inputs_give_fp32_loss():
    q = torch.randn(2, 4).bfloat16()
    p = torch.randn(6, 4).bfloat16()
    assert contrastive_loss(q, p, 3).dtype == torch.float32


def test_bad_group_size():
    with pytest.raises(LedError, match="group size"):
        contrastive_loss(torch.zeros(2, 4), torch.zeros(5, 4), group_size=3)
