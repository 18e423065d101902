"""False-negative masks: which scored candidates are qrels positives of the query.

A batch scores every query against candidates that are not its target: the other queries' passages
(in-batch), the other devices' passages (cross-device) and its own hard negatives. Any of them that the
qrels judge relevant to the query, of any grade, is a *false negative*: pushing it down teaches the
model the opposite of the judgments. On collections with many positives per query (graded TREC/BEIR
qrels) this happens in most batches: a query's other positives, or a passage relevant to two queries.

    mask[i, j] = passage_ids[j] ∈ positives(i)  and  j ≠ target(i)

``positive_ids`` [B, P] holds the ids of each query's positives (any grade; -1 pads), ``passage_ids``
[N] the id of every scored candidate (ids are integers the caller keeps consistent across devices, e.g.
corpus row numbers). The target column stays unmasked: it is the positive the loss is about.

Example: two rows of one query (positives {7, 9}), groups of G = 2, passages [7, 3, 9, 4]:
row 0 (target 7) masks column 2 (passage 9), row 1 (target 9) masks column 0 (passage 7).
"""

from __future__ import annotations

import torch


def false_negative_mask(
    positive_ids: torch.Tensor, passage_ids: torch.Tensor, group_size: int, in_batch_negatives: bool = True
) -> torch.Tensor:
    """Boolean mask of the candidates to leave out of each query's contrastive denominator.

    positive_ids [B, P] (int, -1 = padding), passage_ids [B*G] (int) ->
    [B, B*G] with in-batch negatives (column j is passage j), else [B, G] (column g is query i's own
    candidate g). True = a positive of query i other than its target (column i*G, resp. 0).
    """
    num_queries = positive_ids.shape[0]
    if passage_ids.dim() != 1 or passage_ids.shape[0] != num_queries * group_size:
        raise ValueError(
            f"false_negative_mask: {tuple(passage_ids.shape)} passage ids for {num_queries} queries x "
            f"group size {group_size}"
        )
    positive_ids, passage_ids = positive_ids.long(), passage_ids.long()
    # One int64 key per (query, passage id): membership of all pairs in one sorted search, O(B*N + B*P)
    # memory instead of a [B, N, P] comparison.
    span = int(max(int(passage_ids.max()), int(positive_ids.max()), 0)) + 1
    rows = torch.arange(num_queries, device=passage_ids.device).unsqueeze(1)
    valid = positive_ids >= 0
    positive_keys = (rows * span + positive_ids)[valid]
    if in_batch_negatives:
        candidate_keys = rows * span + passage_ids.unsqueeze(0)  # [B, B*G]
        targets = rows.squeeze(1) * group_size
    else:
        candidate_keys = rows * span + passage_ids.view(num_queries, group_size)  # [B, G]
        targets = torch.zeros(num_queries, dtype=torch.long, device=passage_ids.device)
    mask = torch.isin(candidate_keys, positive_keys)
    mask[torch.arange(num_queries, device=mask.device), targets] = False
    return mask


def own_group_mask(mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """The [B, G] block of a [B, B*G] mask that covers each query's own candidates (for the LED terms)."""
    num_queries = mask.shape[0]
    if mask.shape[1] == group_size:  # already [B, G] (no in-batch negatives)
        return mask
    blocks = mask.view(num_queries, num_queries, group_size)
    return blocks[torch.arange(num_queries), torch.arange(num_queries)]
