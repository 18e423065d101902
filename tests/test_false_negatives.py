"""False-negative masking: the mask of a constructed batch, and every loss it enters against float64 numpy.

The batch (G = 3, passage ids are corpus rows): query A has positives {10, 11, 12}, B {12, 20}, C {30}.

    row 0: A  [10, 40, 41]      row 1: A  [11, 43, 44]      two rows of one query (pair mode)
    row 2: B  [12, 45, 10]      passage 12 is a positive of A and of B; 10 (A's) is B's hard negative
    row 3: C  [30, 20, 46]      20, a positive of B, is C's hard negative
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from led_hf.errors import LedError
from led_hf.losses import contrastive_loss, kl_distillation_loss, rank_consistency_loss, ranking_agreement
from led_hf.losses.contrastive import positive_rank_accuracy
from led_hf.losses.masking import false_negative_mask, own_group_mask

G = 3
POSITIVES = {"A": {10, 11, 12}, "B": {12, 20}, "C": {30}}
ROWS = [("A", [10, 40, 41]), ("A", [11, 43, 44]), ("B", [12, 45, 10]), ("C", [30, 20, 46])]


def _ids():
    passage_ids = torch.tensor([pid for _, group in ROWS for pid in group])
    width = max(len(POSITIVES[q]) for q, _ in ROWS)
    positive_ids = torch.full((len(ROWS), width), -1, dtype=torch.long)
    for i, (query, _) in enumerate(ROWS):
        positive_ids[i, : len(POSITIVES[query])] = torch.tensor(sorted(POSITIVES[query]))
    return positive_ids, passage_ids


def _reference_mask(in_batch=True) -> np.ndarray:
    """Read off the qrels by hand: candidate j of row i is masked when it is a positive of i's query."""
    passages = [pid for _, group in ROWS for pid in group]
    mask = np.zeros((len(ROWS), len(passages) if in_batch else G), dtype=bool)
    for i, (query, group) in enumerate(ROWS):
        columns = passages if in_batch else group
        target = i * G if in_batch else 0
        for j, pid in enumerate(columns):
            mask[i, j] = pid in POSITIVES[query] and j != target
    return mask


def test_the_mask_of_the_constructed_batch():
    positive_ids, passage_ids = _ids()
    mask = false_negative_mask(positive_ids, passage_ids, G)
    expected = _reference_mask()
    np.testing.assert_array_equal(mask.numpy(), expected)
    # spelled out: A's rows mask each other's positive, 12 (also B's) and the second copy of 10
    assert np.flatnonzero(expected[0]).tolist() == [3, 6, 8]
    assert np.flatnonzero(expected[1]).tolist() == [0, 6, 8]
    assert np.flatnonzero(expected[2]).tolist() == [10]  # B: 20 in C's group
    assert not expected[3].any()
    own = false_negative_mask(positive_ids, passage_ids, G, in_batch_negatives=False)
    np.testing.assert_array_equal(own.numpy(), _reference_mask(in_batch=False))
    np.testing.assert_array_equal(own_group_mask(mask, G).numpy(), own.numpy())
    with pytest.raises(ValueError, match="group size"):
        false_negative_mask(positive_ids, passage_ids[:-1], G)


def _reference_contrastive(queries, passages, mask, temperature):
    """float64 loss, dL/dQ, dL/dP with the masked candidates removed from each softmax."""
    scores = queries @ passages.T / temperature
    num_queries = len(queries)
    loss, d_scores = 0.0, np.zeros_like(scores)
    for i in range(num_queries):
        kept = [j for j in range(scores.shape[1]) if not mask[i, j]]
        row = scores[i, kept]
        log_norm = row.max() + np.log(np.exp(row - row.max()).sum())
        loss += log_norm - scores[i, i * G]
        d_scores[i, kept] = np.exp(row - log_norm)
        d_scores[i, i * G] -= 1.0
    d_scores /= num_queries * temperature
    return loss / num_queries, d_scores @ passages, d_scores.T @ queries


@pytest.mark.parametrize("temperature", [1.0, 0.05])
def test_masked_contrastive_loss_matches_numpy(temperature):
    rng = np.random.default_rng(3)
    queries, passages = rng.normal(size=(4, 5)), rng.normal(size=(12, 5))
    mask = _reference_mask()
    q = torch.tensor(queries, dtype=torch.float32, requires_grad=True)
    p = torch.tensor(passages, dtype=torch.float32, requires_grad=True)
    loss = contrastive_loss(q, p, G, temperature=temperature, mask=torch.tensor(mask))
    loss.backward()
    expected, grad_q, grad_p = _reference_contrastive(queries, passages, mask, temperature)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(q.grad.numpy(), grad_q, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(p.grad.numpy(), grad_p, rtol=1e-4, atol=1e-6)
    # masking removes terms from the denominators: the loss drops, and no mask is the plain loss
    plain = contrastive_loss(q.detach(), p.detach(), G, temperature=temperature)
    assert loss.item() < plain.item()
    none = np.zeros_like(mask)
    np.testing.assert_allclose(
        plain.item(), _reference_contrastive(queries, passages, none, temperature)[0], rtol=1e-5
    )


def test_masked_contrastive_loss_own_groups_and_accuracy():
    rng = np.random.default_rng(4)
    queries, passages = rng.normal(size=(4, 5)), rng.normal(size=(12, 5))
    own = np.zeros((4, G), dtype=bool)
    own[2, 2] = True  # a hypothetical positive among B's own candidates
    q, p = torch.tensor(queries), torch.tensor(passages)
    grouped = passages.reshape(4, G, 5)
    scores = np.einsum("bh,bgh->bg", queries, grouped)
    expected = np.mean(
        [
            np.log(np.exp(scores[i][~own[i]]).sum()) - scores[i, 0]  # float64 end to end
            for i in range(4)
        ]
    )
    got = contrastive_loss(q, p, G, in_batch_negatives=False, mask=torch.tensor(own))
    np.testing.assert_allclose(got.item(), expected, rtol=1e-6)
    # accuracy ignores masked candidates: passage 11 (A's other positive, column 3) tops row 0, its own
    # positive comes second
    boosted = passages.copy()
    boosted[0], boosted[3] = queries[0] * 5, queries[0] * 10
    mask = _reference_mask()
    scores = queries @ boosted.T
    expected = np.mean([np.argmax(np.where(mask[i], -np.inf, scores[i])) == i * G for i in range(4)])
    plain = positive_rank_accuracy(q, torch.tensor(boosted), G)
    masked = positive_rank_accuracy(q, torch.tensor(boosted), G, mask=torch.tensor(mask))
    assert masked.item() == pytest.approx(expected) and masked.item() > plain.item()
    with pytest.raises(LedError, match="mask has shape"):
        contrastive_loss(q, p, G, mask=torch.tensor(own))


def _reference_rank(student, teacher, mask, include_positive, margin=0.0):
    terms, agree = [], 0
    start = 0 if include_positive else 1
    for s, t, m in zip(student, teacher, mask):
        for a, b in itertools.permutations(range(start, len(s)), 2):
            if t[a] > t[b] and not m[a] and not m[b]:
                terms.append(max(0.0, margin - (s[a] - s[b])))
                agree += s[a] > s[b]
    return (float(np.mean(terms)) if terms else 0.0), len(terms), (agree / len(terms) if terms else 1.0)


def _reference_kl(student, teacher, mask, temperature):
    total = 0.0
    for s, t, m in zip(student / temperature, teacher / temperature, mask):
        s, t = s[~m], t[~m]
        log_p = t - t.max() - np.log(np.exp(t - t.max()).sum())
        log_q = s - s.max() - np.log(np.exp(s - s.max()).sum())
        total += (np.exp(log_p) * (log_p - log_q)).sum()
    return temperature**2 * total / len(student)


@pytest.mark.parametrize("include_positive", [True, False])
def test_masked_rank_and_kl_losses_match_numpy(include_positive):
    rng = np.random.default_rng(5)
    student, teacher = rng.normal(size=(4, 6)) * 2, rng.normal(size=(4, 6)) * 2
    mask = np.zeros((4, 6), dtype=bool)
    mask[0, 2] = mask[1, 4] = mask[1, 5] = mask[3, 1] = True
    s = torch.tensor(student, dtype=torch.float32, requires_grad=True)
    t, m = torch.tensor(teacher, dtype=torch.float32), torch.tensor(mask)

    expected, pairs, agreement = _reference_rank(student, teacher, mask, include_positive, margin=0.3)
    rank = rank_consistency_loss(s, t, include_positive=include_positive, margin=0.3, mask=m)
    np.testing.assert_allclose(rank.item(), expected, rtol=1e-5)
    unmasked = _reference_rank(student, teacher, np.zeros_like(mask), include_positive, margin=0.3)
    assert pairs < unmasked[1]  # the masked candidates' pairs are gone
    np.testing.assert_allclose(ranking_agreement(s, t, include_positive, mask=m).item(), agreement, rtol=1e-6)
    rank.backward()
    assert s.grad[m].abs().sum() == 0  # a masked candidate gets no gradient from the rank loss

    s.grad = None
    kl = kl_distillation_loss(s, t, temperature=3.0, mask=m)
    np.testing.assert_allclose(kl.item(), _reference_kl(student, teacher, mask, 3.0), rtol=1e-5)
    kl.backward()
    assert torch.isfinite(s.grad).all() and s.grad[m].abs().sum() == 0
    # without a mask (or an all-False one) the KL is the plain one
    np.testing.assert_allclose(
        kl_distillation_loss(s, t, 3.0, mask=torch.zeros_like(m)).item(),
        kl_distillation_loss(s, t, 3.0).item(),
        rtol=1e-6,
    )
    with pytest.raises(LedError, match="mask has shape"):
        rank_consistency_loss(s, t, mask=m[:, :3])


# -- two gloo processes: ids gathered like the embeddings -----------------------------------------------
# Rank 0 holds row 0 (A), rank 1 rows 2 and 3 (B, C): uneven rows (1 vs 2) and positive widths (3 vs 2),
# and A's false negatives (12 and 10 in B's group) sit on the other device.
RANK_ROWS = [[0], [2, 3]]


def _global_tensors():
    rng = np.random.default_rng(7)
    return rng.normal(size=(4, 5)), rng.normal(size=(12, 5))


def _rank_inputs(rows):
    queries, passages = _global_tensors()
    local_passages = np.concatenate([passages[r * G : (r + 1) * G] for r in rows])
    width = max(len(POSITIVES[ROWS[r][0]]) for r in rows)
    positive_rows = torch.full((len(rows), width), -1, dtype=torch.long)
    for i, r in enumerate(rows):
        positive_rows[i, : len(POSITIVES[ROWS[r][0]])] = torch.tensor(sorted(POSITIVES[ROWS[r][0]]))
    inputs = {
        "passage_rows": torch.tensor([pid for r in rows for pid in ROWS[r][1]]),
        "positive_rows": positive_rows,
    }
    return queries[rows], local_passages, inputs


def _masked_worker(rank: int, init_file: str, out_dir: str) -> None:
    import json
    import os

    import torch.distributed as dist

    from led_hf.losses import gather_with_grad
    from led_hf.trainers.false_negatives import batch_false_negative_mask

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        queries, passages, inputs = _rank_inputs(RANK_ROWS[rank])
        q = torch.tensor(queries, requires_grad=True)
        p = torch.tensor(passages, requires_grad=True)
        mask = batch_false_negative_mask(inputs, G, gathered=True)
        loss = contrastive_loss(gather_with_grad(q), gather_with_grad(p), G, temperature=0.5, mask=mask)
        loss.backward()
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as handle:
            json.dump({"mask": mask.tolist(), "loss": loss.item(), "grad_q": q.grad.tolist()}, handle)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_gather_the_mask_with_the_embeddings(tmp_path):
    import json

    torch.multiprocessing.spawn(
        _masked_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True
    )
    # one process holding the global batch in rank order: rows 0, 2, 3
    order = [r for rows in RANK_ROWS for r in rows]
    queries, passages, inputs = _rank_inputs(order)
    passage_ids = [pid for r in order for pid in ROWS[r][1]]
    expected_mask = np.zeros((3, 9), dtype=bool)
    for i, r in enumerate(order):
        for j, pid in enumerate(passage_ids):
            expected_mask[i, j] = pid in POSITIVES[ROWS[r][0]] and j != i * G
    assert expected_mask[0].tolist() == [False] * 3 + [True, False, True] + [False] * 3  # 12, 10 of B
    expected_loss, grad_q, _ = _reference_contrastive(queries, passages, expected_mask, 0.5)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for rank, result in enumerate(results):
        np.testing.assert_array_equal(np.array(result["mask"]), expected_mask)
        assert result["loss"] == pytest.approx(expected_loss, rel=1e-6)  # the loss runs in fp32
        # gather.py: every rank's backward sums the two ranks' (identical) losses -> 2 x dL/dq
        local = [order.index(r) for r in RANK_ROWS[rank]]
        np.testing.assert_allclose(np.array(result["grad_q"]) / 2, grad_q[local], rtol=1e-5, atol=1e-7)
