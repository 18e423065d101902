"""splade_pool and flops_regularizer against float64 numpy; max-first pooling equals the textbook form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from led_hf.losses.splade import flops_regularizer, quadratic_warmup, splade_loss, splade_pool
from led_hf.modeling.scores import dot_scores as splade_scores


def _numpy_pool(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Textbook: w[n, v] = max_t log(1 + relu(z[n, t, v])) * m[n, t], in float64."""
    activated = np.log1p(np.maximum(logits.astype(np.float64), 0.0)) * mask[:, :, None].astype(np.float64)
    return activated.max(axis=1)


def _numpy_flops(representations: np.ndarray) -> float:
    representations = representations.astype(np.float64)
    total = 0.0
    for v in range(representations.shape[1]):
        mean = (
            sum(abs(representations[n, v]) for n in range(representations.shape[0]))
            / representations.shape[0]
        )
        total += mean * mean
    return total


def _random_batch(seed: int, n: int = 5, length: int = 7, vocab: int = 11):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, length, vocab, generator=generator, dtype=torch.float64) * 3
    lengths = torch.randint(1, length + 1, (n,), generator=generator)
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    mask[0] = 0  # a row with nothing to pool gives the zero vector
    return logits, mask


def test_literal_examples():
    logits = torch.tensor([[[1.0, -2.0], [3.0, -1.0]]])
    assert torch.allclose(
        splade_pool(logits, torch.tensor([[1, 1]])), torch.tensor([[float(np.log(4.0)), 0.0]])
    )
    assert torch.allclose(
        splade_pool(logits, torch.tensor([[1, 0]])), torch.tensor([[float(np.log(2.0)), 0.0]])
    )
    assert flops_regularizer(torch.tensor([[1.0, 0.0], [3.0, 2.0]])).item() == pytest.approx(5.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splade_pool_matches_numpy(seed):
    logits, mask = _random_batch(seed)
    pooled = splade_pool(logits.float(), mask)
    assert pooled.dtype == torch.float32 and pooled.shape == (5, 11)
    np.testing.assert_allclose(
        pooled.numpy(), _numpy_pool(logits.numpy(), mask.numpy()), rtol=1e-6, atol=1e-6
    )
    assert torch.all(pooled[0] == 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_max_first_equals_textbook_value_and_gradient(seed):
    logits, mask = _random_batch(seed)
    mask[0, :2] = 1
    first = logits.float().clone().requires_grad_(True)
    second = logits.float().clone().requires_grad_(True)
    weights = torch.rand(5, 11, generator=torch.Generator().manual_seed(seed + 10))

    max_first = splade_pool(first, mask)
    textbook = (torch.log1p(torch.relu(second)) * mask[:, :, None]).amax(dim=1)
    torch.testing.assert_close(max_first, textbook)
    (max_first * weights).sum().backward()
    (textbook * weights).sum().backward()
    torch.testing.assert_close(first.grad, second.grad)


def test_gradient_goes_to_one_arg_max_position_on_ties():
    """The pooled max keeps its index: on a tie the whole gradient goes to the first position, as numpy's
    argmax picks it (amax would split it, and save and rescan the whole [N, L, V] logits to do so)."""
    logits = torch.tensor([[[2.0, 1.0], [2.0, 3.0], [0.5, 3.0]]], requires_grad=True)
    splade_pool(logits, torch.tensor([[1, 1, 1]])).sum().backward()
    expected = np.zeros((1, 3, 2))
    for v in range(2):
        column = logits.detach().numpy()[0, :, v].astype(np.float64)
        expected[0, column.argmax(), v] = 1.0 / (1.0 + column.max())  # d log1p(relu(z)) / dz at the max
    np.testing.assert_allclose(logits.grad.numpy(), expected, rtol=1e-6)


def test_masked_positions_get_no_gradient_even_in_an_all_masked_row():
    logits = (torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1)) + 5).requires_grad_(True)
    mask = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0]])
    pooled = splade_pool(logits, mask)
    assert torch.equal(pooled[0], torch.zeros(5))
    (pooled * torch.arange(1.0, 6.0)).sum().backward()
    assert torch.equal(logits.grad[0], torch.zeros(4, 5)) and torch.equal(
        logits.grad[1, 2:], torch.zeros(2, 5)
    )
    assert (logits.grad[1, :2] != 0).sum() == 5  # one kept position per term


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flops_matches_numpy(seed):
    generator = torch.Generator().manual_seed(seed)
    # negative entries too: the regulariser uses |w|
    representations = torch.randn(6, 9, generator=generator, dtype=torch.float64)
    value = flops_regularizer(representations.float())
    assert value.dtype == torch.float32 and value.dim() == 0
    assert value.item() == pytest.approx(_numpy_flops(representations.numpy()), rel=1e-6)


def test_flops_gradient_matches_numpy():
    representations = torch.rand(4, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    leaf = representations.float().requires_grad_(True)
    flops_regularizer(leaf).backward()
    # d/dw[n,v] sum_v (mean_n w)^2 = 2 * mean_v / N   (w >= 0)
    numpy_w = representations.numpy()
    expected = np.broadcast_to(2 * numpy_w.mean(axis=0) / numpy_w.shape[0], numpy_w.shape)
    np.testing.assert_allclose(leaf.grad.numpy(), expected, rtol=1e-5)


def test_fp16_autocast_on_large_logits_gives_finite_scores():
    """30k-wide sums of ~10^2 products overflow fp16 (max 65504); pooling and scores must stay fp32."""
    vocab = 30522
    logits = torch.full((2, 3, vocab), 6.0e4)  # large but finite in fp16
    logits[:, 1] = -5.0
    mask = torch.ones(2, 3, dtype=torch.long)
    with torch.autocast(device_type="cpu", dtype=torch.float16):
        naive = torch.log1p(torch.relu(logits.amax(dim=1))) @ torch.log1p(torch.relu(logits.amax(dim=1))).T
        pooled = splade_pool(logits.half(), mask)
        scores = splade_scores(pooled, pooled)
    assert naive.dtype == torch.float16 and not torch.isfinite(naive).all()  # the failure being guarded
    assert pooled.dtype == torch.float32 and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    expected = vocab * np.log1p(np.float64(np.float16(6.0e4))) ** 2
    assert scores[0, 1].item() == pytest.approx(expected, rel=1e-4)  # fp32 accumulation of 30k terms


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        splade_pool(torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError):
        flops_regularizer(torch.zeros(0, 4))


def _numpy_splade_loss(
    queries: np.ndarray, passages: np.ndarray, group_size: int, weight_q: float, weight_d: float
) -> float:
    queries, passages = queries.astype(np.float64), passages.astype(np.float64)
    scores = queries @ passages.T
    total = 0.0
    for i in range(len(queries)):
        row = scores[i] - scores[i].max()
        total -= row[i * group_size] - np.log(np.exp(row).sum())
    return total / len(queries) + weight_q * _numpy_flops(queries) + weight_d * _numpy_flops(passages)


def test_splade_loss_parts_match_numpy():
    generator = torch.Generator().manual_seed(5)
    queries = torch.rand(3, 8, generator=generator) * 2
    passages = torch.rand(6, 8, generator=generator) * 2
    parts = splade_loss(queries, passages, group_size=2, query_flops_weight=0.3, passage_flops_weight=0.7)
    assert set(parts) == {"loss", "contrastive", "flops_query", "flops_passage"}
    expected = _numpy_splade_loss(queries.numpy(), passages.numpy(), 2, 0.3, 0.7)
    assert parts["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert parts["flops_query"].item() == pytest.approx(_numpy_flops(queries.numpy()), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(
        (parts["contrastive"] + 0.3 * parts["flops_query"] + 0.7 * parts["flops_passage"]).item(), rel=1e-6
    )


def test_quadratic_warmup():
    assert [quadratic_warmup(8e-4, s, 4) for s in (0, 1, 2, 4, 9)] == pytest.approx(
        [0, 5e-5, 2e-4, 8e-4, 8e-4]
    )
    assert quadratic_warmup(6e-4, 0, 0) == 6e-4


def test_encoding_without_grad_gives_the_training_values():
    logits, mask = _random_batch(4)
    with torch.no_grad():
        encoded = splade_pool(logits.float(), mask)
    trained = splade_pool(logits.float().requires_grad_(True), mask)
    torch.testing.assert_close(encoded, trained.detach())
