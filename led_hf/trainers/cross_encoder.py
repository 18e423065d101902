"""CrossEncoderTrainer: listwise cross-entropy over each query's [positive + negatives] pairs, nothing else.

    S = model(pairs [B*G, L]).scores.view(B, G)          positive first in each group (CrossEncoderCollator)
    loss = listwise_cross_entropy(S)                       mean CE of column 0 over each query's own G pairs

Logged beside `loss`: `listwise_loss` and `accuracy` (share of queries whose positive scores highest
in its group). No in-batch negatives and nothing gathered under DDP: a cross-encoder scores each pair
alone. Everything else (loss-part logging, GA scaling, saving, resuming, epochs) is `RetrievalTrainer`'s.
"""

from __future__ import annotations

from led_hf.losses.listwise import listwise_cross_entropy, positive_top_accuracy
from led_hf.trainers.base import RetrievalTrainer


class CrossEncoderTrainer(RetrievalTrainer):
    """Train a `led_hf.modeling.cross_encoder.CrossEncoder` on `CrossEncoderCollator` batches
    ({"pairs": BatchEncoding [B*G, L], "group_size": G})."""

    loss_description = (
        "listwise cross-entropy of the positive among each query's own positive + hard-negative "
        "pairs (localized contrastive estimation), one logit per pair"
    )
    supports_gradient_cache = False  # one logit per pair: no representation shared across the batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        group_size = int(inputs["group_size"])
        outputs = model(pairs=inputs["pairs"], group_size=group_size)
        scores = outputs.scores.view(-1, group_size)
        loss = listwise_cross_entropy(scores)
        self.record_loss_parts(listwise_loss=loss, accuracy=positive_top_accuracy(scores))
        return (loss, outputs) if return_outputs else loss
