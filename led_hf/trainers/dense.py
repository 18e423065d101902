"""DenseTrainer: the contrastive loss of a dense bi-encoder (spec §4), nothing else.

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

import numpy as np
import torch

from led_hf.collators.encode import encode_passages, encode_texts
from led_hf.losses import contrastive_loss, gather_with_grad
from led_hf.losses.contrastive import positive_rank_accuracy
from led_hf.trainers.base import RetrievalTrainer
from led_hf.trainers.false_negatives import batch_false_negative_mask


class DenseTrainer(RetrievalTrainer):
    """Train a `led_hf.modeling.DenseEncoder` on batches of `TrainCollator` ({"query", "passage"})."""

    loss_description = (
        "contrastive (InfoNCE) over in-batch and hard negatives, scores = q.p / temperature, "
        "negatives shared across devices"
    )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(query=inputs["query"], passage=inputs["passage"])
        query_embeddings, passage_embeddings = outputs.query_embeddings, outputs.passage_embeddings
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
        return (loss, outputs) if return_outputs else loss

    def false_negatives(self, inputs, group_size: int, in_batch: bool, gathered: bool):
        """The batch's false-negative mask (None when masking is off or the batch has no ids)."""
        if not getattr(self.args, "mask_false_negatives", True):
            return None
        return batch_false_negative_mask(inputs, group_size, in_batch, gathered)

    def make_encoders(self, model):
        """Length-sorted batches of `per_device_eval_batch_size`, the training max lengths (for the evaluator)."""
        query_length = getattr(self.data_args, "query_max_length", 32)
        passage_length = getattr(self.data_args, "passage_max_length", 128)
        tokenizer, device, batch_size = (
            self.processing_class,
            self.args.device,
            self.args.per_device_eval_batch_size,
        )

        def run(encode, lengths, make_batch) -> np.ndarray:
            order = np.argsort(
                -np.asarray(lengths), kind="stable"
            )  # similar lengths together: little padding
            out = np.zeros((len(order), 0), dtype=np.float32)
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                with torch.no_grad():
                    embeddings = encode(**make_batch(rows).to(device)).float().cpu().numpy()
                if out.shape[1] == 0:
                    out = np.zeros((len(order), embeddings.shape[1]), dtype=np.float32)
                out[rows] = embeddings
            return out

        def encode_queries(texts):
            return run(
                model.encode_query,
                [len(t) for t in texts],
                lambda rows: encode_texts(tokenizer, [texts[i] for i in rows], query_length),
            )

        def encode_passages_(titles, texts):
            return run(
                model.encode_passage,
                [len(a or "") + len(b) for a, b in zip(titles, texts)],
                lambda rows: encode_passages(
                    tokenizer, [titles[i] for i in rows], [texts[i] for i in rows], passage_length
                ),
            )

        return encode_queries, encode_passages_
