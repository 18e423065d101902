"""Distillation losses of LED: the rank-consistency regulariser and listwise KL (docs/method.md §4).

LED: Zhang et al., "LED: Lexicon-Enlightened Dense Retriever for Large-Scale Retrieval", WWW 2023
(arXiv 2208.13661). KL distillation with a temperature: Hinton et al., "Distilling the Knowledge in a
Neural Network" (arXiv 1503.02531).

Both take the scores of each query's own C in-sample candidates (its positive at column 0, then its
hard negatives; never other queries' passages): student_scores [B, C] (with gradient) and
teacher_scores [B, C] (constants). Everything is computed in fp32, vectorised over queries and pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from led_hf.errors import LedError


def _check(student_scores: torch.Tensor, teacher_scores: torch.Tensor, name: str) -> None:
    if student_scores.dim() != 2 or student_scores.shape != teacher_scores.shape:
        raise LedError(
            f"{name}: student and teacher scores must both be [B, C], got "
            f"{tuple(student_scores.shape)} and {tuple(teacher_scores.shape)}"
        )


def teacher_pair_mask(teacher_scores: torch.Tensor, min_teacher_gap: float | None = None) -> torch.Tensor:
    """[B, C, C] bool: entry (i, a, b) is True when the teacher ranks candidate a strictly above b.

        mask[i, a, b] = t[i, a] > t[i, b]  and  t[i, a] - t[i, b] >= min_teacher_gap (when given)

    Equal teacher scores (e.g. one passage drawn twice from a pool that keeps duplicates) form no pair:
    neither is ranked above the other. A gap of None or 0 keeps every strictly ordered pair.

    Example: t = [[3., 1., 1.]] -> pairs (0, 1) and (0, 2); with min_teacher_gap=3 none.
    """
    teacher = teacher_scores.detach().float()
    gaps = teacher.unsqueeze(2) - teacher.unsqueeze(1)  # gaps[i, a, b] = t_a - t_b
    mask = gaps > 0
    if min_teacher_gap:
        mask &= gaps >= float(min_teacher_gap)
    return mask


def rank_consistency_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    include_positive: bool = True,
    margin: float = 0.0,
    min_teacher_gap: float | None = None,
) -> torch.Tensor:
    """Pairwise hinge loss that asks the student to order each query's candidates like the teacher.

        P = {(i, a, b) : teacher ranks a above b for query i}          (see `teacher_pair_mask`)
        loss = (1 / |P|) * sum_{(i,a,b) in P} max(0, margin - (s[i, a] - s[i, b]))

    student_scores, teacher_scores: [B, C] -> scalar fp32. With `include_positive=False` column 0 (the
    positive) is dropped first, so C - 1 candidates remain. The mean runs over all pairs of all queries
    at once (a query with more strictly ordered pairs weighs more); with no pair at all the loss is 0
    (still connected to the graph). With distinct teacher scores a query contributes C(C-1)/2 pairs:
    528 for C = 33, 496 for the 32 negatives without the positive.

    Example: s = [[1., 2., 0.]], t = [[3., 2., 1.]], margin 0 -> pairs (0,1), (0,2), (1,2) with hinge
    terms max(0, -(1-2)) = 1, max(0, -(1-0)) = 0, max(0, -(2-0)) = 0 -> loss = 1/3.
    """
    _check(student_scores, teacher_scores, "rank_consistency_loss")
    if not include_positive:
        student_scores, teacher_scores = student_scores[:, 1:], teacher_scores[:, 1:]
    mask = teacher_pair_mask(teacher_scores, min_teacher_gap)
    with torch.autocast(device_type=student_scores.device.type, enabled=False):
        student = student_scores.float()
        differences = student.unsqueeze(2) - student.unsqueeze(1)  # differences[i, a, b] = s_a - s_b
        hinge = torch.relu(float(margin) - differences)
        total = torch.where(mask, hinge, torch.zeros_like(hinge)).sum()
        return total / mask.sum().clamp(min=1)


def kl_distillation_loss(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Forward KL (teacher || student) between softmax distributions over each query's candidates.

        p = softmax(t / T),  q = softmax(s / T)                        per row, over the C candidates
        loss = T^2 * (1 / B) * sum_i sum_j p_ij * (log p_ij - log q_ij)

    student_scores, teacher_scores: [B, C] -> scalar fp32. T^2 keeps the gradient's size independent of
    T (Hinton et al.). Identical scores give 0.

    Example: s = [[0., 0.]], t = [[log 3, 0.]], T = 1 -> p = (3/4, 1/4), q = (1/2, 1/2),
    loss = 3/4 log(3/2) + 1/4 log(1/2) = 0.1308.
    """
    _check(student_scores, teacher_scores, "kl_distillation_loss")
    if not temperature > 0:
        raise LedError(f"kl_distillation_loss: temperature must be positive, got {temperature}")
    with torch.autocast(device_type=student_scores.device.type, enabled=False):
        log_q = F.log_softmax(student_scores.float() / temperature, dim=-1)
        log_p = F.log_softmax(teacher_scores.detach().float() / temperature, dim=-1)
        return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2


def ranking_agreement(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    include_positive: bool = True,
    min_teacher_gap: float | None = None,
) -> torch.Tensor:
    """Fraction of the teacher's ordered pairs that the student orders the same way (strictly), for logs.

        agreement = |{(i,a,b) in P : s[i, a] > s[i, b]}| / |P|          (1.0 when P is empty)

    Example: s = [[1., 2., 0.]], t = [[3., 2., 1.]] -> 2 of 3 pairs agree -> 0.6667.
    """
    _check(student_scores, teacher_scores, "ranking_agreement")
    with torch.no_grad():
        if not include_positive:
            student_scores, teacher_scores = student_scores[:, 1:], teacher_scores[:, 1:]
        mask = teacher_pair_mask(teacher_scores, min_teacher_gap)
        student = student_scores.float()
        agree = (student.unsqueeze(2) > student.unsqueeze(1)) & mask
        pairs = mask.sum()
        if pairs == 0:
            return torch.ones((), device=student.device)
        return agree.sum().float() / pairs
