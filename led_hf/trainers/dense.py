"""DenseTrainer: the contrastive loss of a dense bi-encoder (docs/method.md §4), nothing else.

    Q = encode_query(queries) [B, H]      P = encode_passage(groups) [B*G, H], positive first per group
    Q, P = gather_with_grad(Q), gather_with_grad(P)          under DDP: every process's rows, with gradient
    M = false negatives [B, B*G]                             candidates that are qrels positives of the query
    loss = contrastive_loss(Q, P, G, temperature, mask=M)    mean CE of each query's positive

M comes from the batch's corpus row ids (gathered like the embeddings); `mask_false_negatives=False`
scores every candidate as a negative, as before.

Logged beside `loss`: `contrastive_loss` and `accuracy` (share of queries whose positive scores highest).
Everything else (loss-part logging, GA scaling, saving, resuming, epochs) is `RetrievalTrainer`'s.
"""

from __future__ import annotations

import torch

from led_hf.losses import contrastive_loss, gather_with_grad
from led_hf.losses.contrastive import positive_rank_accuracy
from led_hf.trainers.base import RetrievalTrainer


class DenseTrainer(RetrievalTrainer):
    """Train a `led_hf.modeling.DenseEncoder` on batches of `TrainCollator` ({"query", "passage"})."""

    loss_description = (
        "contrastive (InfoNCE) over in-batch and hard negatives, scores = q.p / temperature, "
        "negatives shared across devices"
    )

    def loss_from_representations(self, model, query_embeddings, passage_embeddings, inputs) -> torch.Tensor:
        group_size = passage_embeddings.shape[0] // query_embeddings.shape[0]
        in_batch = getattr(self.args, "in_batch_negatives", True)
        gathered = in_batch and getattr(self.args, "gather_across_devices", True)
        if gathered:
            query_embeddings = gather_with_grad(query_embeddings)
            passage_embeddings = gather_with_grad(passage_embeddings)
        mask = self.false_negatives(inputs, group_size, in_batch, gathered)
        temperature = self.accelerator.unwrap_model(model).temperature
        loss = contrastive_loss(
            query_embeddings,
            passage_embeddings,
            group_size,
            temperature=temperature,
            in_batch_negatives=in_batch,
            mask=mask,
        )
        parts = {
            "contrastive_loss": loss,
            "accuracy": positive_rank_accuracy(
                query_embeddings, passage_embeddings, group_size, in_batch, mask
            ),
        }
        if mask is not None:
            parts["masked_false_negatives"] = mask.sum(dim=1).float().mean()
        self.record_loss_parts(**parts)
        return loss
