"""DenseTrainer: the contrastive loss of a dense bi-encoder (docs/method.md §4), nothing else.

    Q = encode_query(queries) [B, H]      P = encode_passage(groups) [B*G, H], positive first per group
    Q, P = gather_with_grad(Q), gather_with_grad(P)          under DDP: every process's rows, with gradient
    loss = contrastive_loss(Q, P, G, temperature)            mean CE of each query's positive

Logged beside `loss`: `contrastive_loss` and `accuracy` (share of queries whose positive scores highest).
Everything else (loss-part logging, GA scaling, saving, resuming, epochs) is `RetrievalTrainer`'s.
"""

from __future__ import annotations

import numpy as np

from led_hf.collators.encode import EncodeCollator
from led_hf.losses import contrastive_loss, gather_with_grad
from led_hf.losses.contrastive import positive_rank_accuracy
from led_hf.retrieval.encode import encode_batches
from led_hf.trainers.base import RetrievalTrainer


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
        if in_batch and getattr(self.args, "gather_across_devices", True):
            query_embeddings = gather_with_grad(query_embeddings)
            passage_embeddings = gather_with_grad(passage_embeddings)
        temperature = self.accelerator.unwrap_model(model).temperature
        loss = contrastive_loss(
            query_embeddings,
            passage_embeddings,
            group_size,
            temperature=temperature,
            in_batch_negatives=in_batch,
        )
        self.record_loss_parts(
            contrastive_loss=loss,
            accuracy=positive_rank_accuracy(query_embeddings, passage_embeddings, group_size, in_batch),
        )
        return (loss, outputs) if return_outputs else loss

    def make_encoders(self, model):
        """(encode_queries(texts), encode_passages(titles, texts)) -> [n, H] float32 arrays for the evaluator:
        `led encode`'s loop (`encode_batches`: batches of `per_device_eval_batch_size`, sorted by text
        length) at the training max lengths."""
        tokenizer = self.processing_class
        queries = EncodeCollator(tokenizer, getattr(self.data_args, "query_max_length", 32), kind="query")
        passages = EncodeCollator(
            tokenizer, getattr(self.data_args, "passage_max_length", 128), kind="passage"
        )

        def run(features: list[dict], collate, encode) -> np.ndarray:
            lengths = np.asarray([len(f.get("title") or "") + len(f["text"]) for f in features])
            out = np.zeros((len(features), 0), dtype=np.float32)
            for rows, embeddings in encode_batches(
                features, collate, encode, self.args.per_device_eval_batch_size, self.args.device, lengths
            ):
                if out.shape[1] == 0:
                    out = np.zeros((len(features), embeddings.shape[1]), dtype=np.float32)
                out[rows] = embeddings.float().numpy()
            return out

        def encode_queries(texts):
            return run([{"id": "", "text": text} for text in texts], queries, model.encode_query)

        def encode_passages(titles, texts):
            features = [{"id": "", "title": title, "text": text} for title, text in zip(titles, texts)]
            return run(features, passages, model.encode_passage)

        return encode_queries, encode_passages
