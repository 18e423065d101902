"""rank_consistency_loss, kl_distillation_loss and ranking_agreement against float64 numpy (docs/method.md §4)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from led_hf.errors import LedError
from led_hf.losses import kl_distillation_loss, rank_consistency_loss, ranking_agreement
from led_hf.losses.distillation import teacher_pair_mask


def _reference_rank(student, teacher, include_positive=True, margin=0.0, min_gap=None):
    """Spec §4 read literally: sort by teacher (descending), every pair (a above b), hinge, mean over pairs."""
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    if not include_positive:
        student, teacher = student[:, 1:], teacher[:, 1:]
    terms, agree = [], 0
    for s, t in zip(student, teacher):
        order = np.argsort(-t, kind="stable")
        for x, y in itertools.combinations(range(len(order)), 2):
            a, b = order[x], order[y]
            gap = t[a] - t[b]
            if gap <= 0 or (min_gap and gap < min_gap):  # ties are not "ranked above"
                continue
            terms.append(max(0.0, margin - (s[a] - s[b])))
            agree += s[a] > s[b]
    loss = float(np.mean(terms)) if terms else 0.0
    return loss, len(terms), (agree / len(terms) if terms else 1.0)


def _reference_kl(student, teacher, temperature):
    student, teacher = (
        np.asarray(student, np.float64) / temperature,
        np.asarray(teacher, np.float64) / temperature,
    )

    def log_softmax(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(teacher), log_softmax(student)
    return float(temperature**2 * (np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())


def _scores(batch, candidates, seed):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, candidates, generator=generator, dtype=torch.float64) * 3).float()


@pytest.mark.parametrize("include_positive", [True, False])
@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_rank_loss_matches_numpy_for_33_candidates(include_positive, margin):
    student, teacher = _scores(4, 33, 0), _scores(4, 33, 1)
    expected, pairs, agreement = _reference_rank(student.numpy(), teacher.numpy(), include_positive, margin)
    assert pairs == 4 * (528 if include_positive else 496)  # C(33,2) and C(32,2) per query
    assert int(teacher_pair_mask(teacher if include_positive else teacher[:, 1:]).sum()) == pairs
    loss = rank_consistency_loss(student, teacher, include_positive=include_positive, margin=margin)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert ranking_agreement(student, teacher, include_positive).item() == pytest.approx(agreement, rel=1e-6)
    assert 0.3 < agreement < 0.7  # random scores: the comparison is not trivially 0 or 1


def test_rank_loss_ties_and_min_teacher_gap():
    student = torch.tensor([[0.2, 1.5, -0.3, 0.9, 0.9], [2.0, -1.0, 0.5, 0.1, 3.0]])
    teacher = torch.tensor([[4.0, 2.0, 2.0, 1.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])  # ties; row 2 all tied
    for gap in (None, 0.0, 1.0, 1.5, 10.0):
        for include_positive in (True, False):
            expected, pairs, agreement = _reference_rank(
                student.numpy(), teacher.numpy(), include_positive, 0.3, gap
            )
            got = rank_consistency_loss(student, teacher, include_positive, margin=0.3, min_teacher_gap=gap)
            assert got.item() == pytest.approx(expected, rel=1e-6, abs=1e-7), (gap, include_positive)
            assert int(teacher_pair_mask(teacher[:, 0 if include_positive else 1 :], gap).sum()) == pairs
            assert ranking_agreement(student, teacher, include_positive, gap).item() == pytest.approx(
                agreement
            )
    # Row 0: 9 of its 10 pairs are strict (the tie at 2.0 is not a pair); row 1 has none.
    assert int(teacher_pair_mask(teacher).sum()) == 9
    # gap 10 leaves no pair: the loss is 0 but still a graph node (backward works, zero gradient).
    leaf = student.clone().requires_grad_(True)
    loss = rank_consistency_loss(leaf, teacher, min_teacher_gap=10.0)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(leaf.grad) == 0


def test_rank_loss_gradient_matches_the_hinge_terms():
    student = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[3.0, 2.0, 1.0]])
    loss = rank_consistency_loss(student, teacher)
    assert loss.item() == pytest.approx(1 / 3)  # the docstring example
    loss.backward()
    # only pair (0, 1) is violated: d/ds0 = -1/3, d/ds1 = +1/3
    torch.testing.assert_close(student.grad, torch.tensor([[-1 / 3, 1 / 3, 0.0]]))
    assert ranking_agreement(student, teacher).item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("temperature", [1.0, 3.0, 0.5])
def test_kl_matches_numpy(temperature):
    student, teacher = _scores(5, 33, 2), _scores(5, 33, 3)
    expected = _reference_kl(student.numpy(), teacher.numpy(), temperature)
    got = kl_distillation_loss(student, teacher, temperature=temperature)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert kl_distillation_loss(teacher, teacher, temperature).item() == pytest.approx(0.0, abs=1e-6)
    # the docstring example
    example = kl_distillation_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[np.log(3.0), 0.0]]), 1.0)
    assert example.item() == pytest.approx(0.75 * np.log(1.5) + 0.25 * np.log(0.5), rel=1e-6)


def test_kl_gradient_flows_to_the_student_only():
    student = _scores(3, 6, 4).requires_grad_(True)
    teacher = _scores(3, 6, 5).requires_grad_(True)
    temperature = 3.0
    kl_distillation_loss(student, teacher, temperature).backward()
    assert teacher.grad is None
    # d/ds of T^2/B * KL(p || softmax(s/T)) = T/B * (q - p)
    p = torch.softmax(teacher.detach() / temperature, dim=1)
    q = torch.softmax(student.detach() / temperature, dim=1)
    torch.testing.assert_close(student.grad, temperature / 3 * (q - p), rtol=1e-5, atol=1e-6)


def test_losses_stay_fp32_under_bf16_inputs_and_reject_bad_shapes():
    student, teacher = _scores(2, 8, 6), _scores(2, 8, 7)
    rank = rank_consistency_loss(student.bfloat16(), teacher)
    assert rank.dtype == torch.float32
    assert rank.item() == pytest.approx(
        rank_consistency_loss(student.bfloat16().float(), teacher).item(), rel=1e-6
    )
    assert kl_distillation_loss(student.bfloat16(), teacher, 3.0).dtype == torch.float32
    with pytest.raises(LedError, match=r"\[B, C\]"):
        rank_consistency_loss(student, teacher[:, :4])
    with pytest.raises(LedError, match="temperature"):
        kl_distillation_loss(student, teacher, 0.0)
