"""Distillation losses of LED: the rank-consistency regulariser and listwise KL (docs/method.md §4).

LED: Zhang et al., "LED: Lexicon-Enlightened Dense Retriever for Large-Scale Retrieval", WWW 2023
(arXiv 2208.13661). KL distillation with a temperature: Hinton et al., "Distilling the Knowledge in a
Neural Network" (arXiv 1503.02531).

Both take the scores of each query's own C in-sample candidates (its positive at column 0, then its
hard negatives; never other queries' passages): student_scores [B, C] (with gradient) and
teacher_scores [B, C] (constants). Everything is computed in fp32, vectorised over queries and pairs.

Each also takes an optional ``mask`` [B, C] (bool): True marks a candidate that is a qrels positive of
the query other than its target (a false negative, `led_hf.losses.masking`). A masked candidate forms
no pair in the rank loss and leaves both distributions of the KL loss: the teacher's opinion of a
judged-relevant passage ranked as a negative is not distilled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from led_hf.errors import LedError


def _check(
    student_scores: torch.Tensor, teacher_scores: torch.Tensor, name: str, mask: torch.Tensor | None = None
) -> None:
    if student_scores.dim() != 2 or student_scores.shape != teacher_scores.shape:
        raise LedError(
            f"{name}: student and teacher scores must both be [B, C], got "
            f"{tuple(student_scores.shape)} and {tuple(teacher_scores.shape)}"
        )
    if mask is not None and mask.shape != student_scores.shape:
        raise LedError(
            f"{name}: mask has shape {tuple(mask.shape)}, the scores {tuple(student_scores.shape)}"
        )


def _pair_mask(
    teacher_scores: torch.Tensor,
    include_positive: bool,
    min_teacher_gap: float | None,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, slice]:
    """[B, C', C'] pairs of the rank loss and the candidate columns they index (C' = C or C - 1)."""
    columns = slice(None) if include_positive else slice(1, None)
    pairs = teacher_pair_mask(teacher_scores[:, columns], min_teacher_gap)
    if mask is not None:
        keep = ~mask[:, columns]
        pairs &= keep.unsqueeze(2) & keep.unsqueeze(1)
    return pairs, columns


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
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise hinge loss that asks the student to order each query's candidates like the teacher.

        P = {(i, a, b) : teacher ranks a above b for query i, neither a nor b masked}  (`teacher_pair_mask`)
        loss = (1 / |P|) * sum_{(i,a,b) in P} max(0, margin - (s[i, a] - s[i, b]))

    student_scores, teacher_scores: [B, C] -> scalar fp32. With `include_positive=False` column 0 (the
    positive) is dropped first, so C - 1 candidates remain. The mean runs over all pairs of all queries
    at once (a query with more strictly ordered pairs weighs more); with no pair at all the loss is 0
    (still connected to the graph). With distinct teacher scores a query contributes C(C-1)/2 pairs:
    528 for C = 33, 496 for the 32 negatives without the positive.

    Example: s = [[1., 2., 0.]], t = [[3., 2., 1.]], margin 0 -> pairs (0,1), (0,2), (1,2) with hinge
    terms max(0, -(1-2)) = 1, max(0, -(1-0)) = 0, max(0, -(2-0)) = 0 -> loss = 1/3.
    """
    _check(student_scores, teacher_scores, "rank_consistency_loss", mask)
    pairs, columns = _pair_mask(teacher_scores, include_positive, min_teacher_gap, mask)
    with torch.autocast(device_type=student_scores.device.type, enabled=False):
        student = student_scores[:, columns].float()
        differences = student.unsqueeze(2) - student.unsqueeze(1)  # differences[i, a, b] = s_a - s_b
        hinge = torch.relu(float(margin) - differences)
        total = torch.where(pairs, hinge, torch.zeros_like(hinge)).sum()
        return total / pairs.sum().clamp(min=1)


def kl_distillation_loss(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forward KL (teacher || student) between softmax distributions over each query's candidates.

        p = softmax(t / T),  q = softmax(s / T)     per row, over the C candidates not masked (U_i)
        loss = T^2 * (1 / B) * sum_i sum_{j in U_i} p_ij * (log p_ij - log q_ij)

    student_scores, teacher_scores: [B, C] -> scalar fp32. T^2 keeps the gradient's size independent of
    T (Hinton et al.). Identical scores give 0.

    Example: s = [[0., 0.]], t = [[log 3, 0.]], T = 1 -> p = (3/4, 1/4), q = (1/2, 1/2),
    loss = 3/4 log(3/2) + 1/4 log(1/2) = 0.1308.
    """
    _check(student_scores, teacher_scores, "kl_distillation_loss", mask)
    if not temperature > 0:
        raise LedError(f"kl_distillation_loss: temperature must be positive, got {temperature}")
    with torch.autocast(device_type=student_scores.device.type, enabled=False):
        student, teacher = student_scores.float() / temperature, teacher_scores.detach().float() / temperature
        if mask is None:
            log_q, log_p = F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1)
            return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
        # Masked candidates get -inf (probability 0 on both sides); their log-probabilities are then set
        # to 0 so that no 0 * (-inf - -inf) = NaN enters the sum or the gradient.
        log_q = F.log_softmax(student.masked_fill(mask, float("-inf")), dim=-1).masked_fill(mask, 0.0)
        log_p = F.log_softmax(teacher.masked_fill(mask, float("-inf")), dim=-1).masked_fill(mask, 0.0)
        terms = log_p.exp().masked_fill(mask, 0.0) * (log_p - log_q)
        return terms.sum() / student.shape[0] * temperature**2


def ranking_agreement(
    student_scores: torch.Tensor,
    teacher_scores: torch.Tensor,
    include_positive: bool = True,
    min_teacher_gap: float | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fraction of the teacher's ordered pairs that the student orders the same way (strictly), for logs.

        agreement = |{(i,a,b) in P : s[i, a] > s[i, b]}| / |P|          (1.0 when P is empty)

    Example: s = [[1., 2., 0.]], t = [[3., 2., 1.]] -> 2 of 3 pairs agree -> 0.6667.
    """
    _check(student_scores, teacher_scores, "ranking_agreement", mask)
    with torch.no_grad():
        pairs, columns = _pair_mask(teacher_scores, include_positive, min_teacher_gap, mask)
        student = student_scores[:, columns].float()
        agree = (student.unsqueeze(2) > student.unsqueeze(1)) & pairs
        count = pairs.sum()
        if count == 0:
            return torch.ones((), device=student.device)
        return agree.sum().float() / count
