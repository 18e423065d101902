"""SpladeTrainer: the SPLADE stage loss (docs/method.md §4); the `led train splade` recipe is `led_hf.cli.train_splade`.

    Q = encode_query(queries) [B, V]      P = encode_passage(groups) [B*G, V], positive first per group
    loss = contrastive(Q, P) + λ_q(t) · FLOPS(Q) + λ_d(t) · FLOPS(P)      λ(t) = λ · min(1, t / k)^2

t is `state.global_step` (optimizer steps completed), so the warm-up is a pure function of the step and
continues where it was after `resume_from_checkpoint`. Logged beside `loss`: `contrastive_loss`,
`flops_query_loss`, `flops_passage_loss` (unweighted), `query_flops_weight`, `passage_flops_weight`, and
the mean number of non-zero terms per query / passage (`query_nonzeros`, `passage_nonzeros`).
Everything else (loss-part logging, GA scaling, saving, resuming, epochs) is `RetrievalTrainer`'s.
"""

from __future__ import annotations

import torch

from led_hf.losses.splade import quadratic_warmup, splade_loss
from led_hf.trainers.base import RetrievalTrainer


class SpladeTrainer(RetrievalTrainer):
    """Train a `led_hf.modeling.splade.SpladeEncoder` on `TrainCollator` batches ({"query", "passage"})."""

    loss_description = (
        "contrastive (InfoNCE) over in-batch and hard negatives on SPLADE term-weight dot "
        "products + λ_q·FLOPS(queries) + λ_d·FLOPS(passages)"
    )

    def flops_weights(self, step: int | None = None) -> tuple[float, float]:
        """(λ_q, λ_d) at optimizer step `step` (default: the current global step)."""
        step = self.state.global_step if step is None else step
        warmup = getattr(self.args, "flops_warmup_steps", 0)
        return (
            quadratic_warmup(self.args.query_flops_weight, step, warmup),
            quadratic_warmup(self.args.passage_flops_weight, step, warmup),
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(query=inputs["query"], passage=inputs["passage"])
        queries, passages = outputs.query_embeddings, outputs.passage_embeddings
        group_size = passages.shape[0] // queries.shape[0]
        in_batch = getattr(self.args, "in_batch_negatives", True)
        query_weight, passage_weight = self.flops_weights()
        parts = splade_loss(
            queries,
            passages,
            group_size,
            query_weight,
            passage_weight,
            flops_over_global_batch=getattr(self.args, "flops_over_global_batch", False),
            gather_across_devices=in_batch and getattr(self.args, "gather_across_devices", True),
            in_batch_negatives=in_batch,
        )
        with torch.no_grad():
            self.record_loss_parts(
                contrastive_loss=parts["contrastive"],
                flops_query_loss=parts["flops_query"],
                flops_passage_loss=parts["flops_passage"],
                query_flops_weight=query_weight,
                passage_flops_weight=passage_weight,
                query_nonzeros=(queries > 0).sum(dim=1).float().mean(),
                passage_nonzeros=(passages > 0).sum(dim=1).float().mean(),
            )
        return (parts["loss"], outputs) if return_outputs else parts["loss"]
