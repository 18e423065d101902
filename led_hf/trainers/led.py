"""LEDTrainer: a dense student regularised by frozen teachers (docs/method.md §4, "LED loss").

    Q [B, H], P [B*G, H]                      the student's embeddings (positive first in each group)
    s[i, g] = <Q_i, P_{i*G+g}> / τ            [B, G], each query's own candidates only (τ: model temperature,
                                              1 for the reference raw-dot model)
    t = SPLADE teacher scores [B, G]          same candidates; online or precomputed (`led score-teacher`)
    c = cross-encoder scores [B, G]           LED w/ RT only
    M = false negatives [B, G]                each query's own candidates that are its qrels positives
    loss = contrastive(Q, P) + w_rank · rank_consistency(s, t; M) [+ w_kl · kl_distillation(s, c; T, M)]

`rank_loss="listwise"` replaces the pairwise rank term by w_rank · kl_distillation(s, t; rank_temperature)
over the same candidates (the positive left out with `rank_include_positive` off). The lexical teacher
t may be SPLADE, or precomputed BM25 / fused scores from `led score-teacher --teacher bm25` / `--kind fused`.

The teachers are trainer attributes (`self.teacher`, `self.cross_encoder`), not part of `self.model`:
the optimizer, DDP and the checkpoints see the student only. They are put on the training device in
eval mode (no dropout) with `requires_grad_(False)` and run under `torch.no_grad()`; under bf16/fp16 they
run in the same autocast as the student (`accelerator.autocast()`: Accelerate wraps only the student's
forward, the teachers are called beside it), their scores are computed in fp32.

Online, the teachers score with their own `score_candidates` (`teacher_batch_size` texts or pairs per
forward pass). The SPLADE teacher reads the student's token ids (`inputs["query"]`, `inputs["passage"]`) unless
the batch holds its own tokenization (`teacher_query`, `teacher_passage`: `LEDCollator` adds them
when the vocabularies or lengths differ). Precomputed scores arrive as `teacher_scores` /
`cross_encoder_scores` tensors [B, G] and no teacher is run.

Logged beside `loss`: `contrastive_loss`, `accuracy` (DenseTrainer's), `rank_loss`, `kl_loss`,
`rank_weight`, `kl_weight`, `rank_agreement` (fraction of the SPLADE teacher's ordered candidate pairs
the student orders the same way) and, with a cross-encoder, `cross_encoder_agreement`.
"""

from __future__ import annotations

import torch

from led_hf.errors import LedError
from led_hf.losses import kl_distillation_loss, rank_consistency_loss, ranking_agreement
from led_hf.modeling.scores import check_group_scores, group_scores
from led_hf.trainers.dense import DenseTrainer


class LEDTrainer(DenseTrainer):
    """`DenseTrainer` + LED's distillation terms; `args` is an `LEDTrainingArguments`.

    Extra keyword arguments: `teacher` (a `led_hf.modeling.splade.SpladeEncoder`, or None with precomputed
    scores or rank_weight 0) and `cross_encoder` (a `led_hf.modeling.cross_encoder.CrossEncoder`, or None).
    """

    loss_description = (
        "contrastive (InfoNCE) over in-batch and hard negatives + w_rank · pairwise rank "
        "consistency with a frozen SPLADE teacher over each query's candidates "
        "(+ w_kl · T²·KL(cross-encoder ‖ student) for LED w/ RT)"
    )

    def __init__(
        self,
        *args,
        teacher: torch.nn.Module | None = None,
        cross_encoder: torch.nn.Module | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.teacher = self._frozen(teacher)
        self.cross_encoder = self._frozen(cross_encoder)

    def _frozen(self, module: torch.nn.Module | None) -> torch.nn.Module | None:
        if module is None:
            return None
        return module.requires_grad_(False).eval().to(self.args.device)

    # -- loss ----------------------------------------------------------------------------------------
    def loss_from_representations(self, model, query_embeddings, passage_embeddings, inputs) -> torch.Tensor:
        loss = super().loss_from_representations(model, query_embeddings, passage_embeddings, inputs)
        queries, passages = query_embeddings.float(), passage_embeddings.float()
        num_queries = queries.shape[0]
        group_size = passages.shape[0] // num_queries
        temperature = self.accelerator.unwrap_model(model).temperature
        student = group_scores(queries, passages) / temperature

        args = self.args
        mask = self.false_negatives(inputs, group_size, in_batch=False, gathered=False)
        parts: dict[str, torch.Tensor | float] = {
            "rank_weight": args.rank_weight,
            "kl_weight": args.kl_weight,
        }
        if args.rank_weight > 0:
            with self.accelerator.autocast():  # the student's forward precision (bf16 under --bf16)
                teacher = self.teacher_scores(inputs, num_queries, group_size)
            if args.rank_loss == "listwise":  # KL over the lexical teacher's softmax, same candidates
                first = 0 if args.rank_include_positive else 1
                rank = kl_distillation_loss(
                    student[:, first:],
                    teacher[:, first:],
                    temperature=args.rank_temperature,
                    mask=None if mask is None else mask[:, first:],
                )
            else:
                rank = rank_consistency_loss(
                    student,
                    teacher,
                    include_positive=args.rank_include_positive,
                    margin=args.rank_margin,
                    min_teacher_gap=args.min_teacher_gap,
                    mask=mask,
                )
            loss = loss + args.rank_weight * rank
            parts["rank_loss"] = rank
            parts["rank_agreement"] = ranking_agreement(
                student, teacher, args.rank_include_positive, args.min_teacher_gap, mask
            )
        if args.kl_weight > 0:
            with self.accelerator.autocast():
                cross_encoder = self.cross_encoder_scores(inputs, num_queries, group_size)
            kl = kl_distillation_loss(student, cross_encoder, temperature=args.kl_temperature, mask=mask)
            loss = loss + args.kl_weight * kl
            parts["kl_loss"] = kl
            parts["cross_encoder_agreement"] = ranking_agreement(student, cross_encoder, mask=mask)
        self.record_loss_parts(**parts)
        return loss

    # -- teachers ------------------------------------------------------------------------------------
    def teacher_scores(self, inputs: dict, num_queries: int, group_size: int) -> torch.Tensor:
        """SPLADE teacher scores [B, G] (fp32) of each query's own candidates."""
        if "teacher_scores" in inputs:
            return check_group_scores(inputs["teacher_scores"], num_queries, group_size, "teacher_scores")
        if self.teacher is None:
            raise LedError(
                "rank_weight > 0 needs a SPLADE teacher (teacher_model_name_or_path) or precomputed "
                "teacher_scores in the batch"
            )
        query = inputs.get("teacher_query", inputs["query"])
        passage = inputs.get("teacher_passage", inputs["passage"])
        with torch.no_grad(), self.accelerator.autocast():
            return self.teacher.score_candidates(
                query, passage, group_size=group_size, chunk_size=self.args.teacher_batch_size
            )

    def cross_encoder_scores(self, inputs: dict, num_queries: int, group_size: int) -> torch.Tensor:
        """Cross-encoder logits [B, G] (fp32) of each query's own candidates."""
        if "cross_encoder_scores" in inputs:
            return check_group_scores(
                inputs["cross_encoder_scores"], num_queries, group_size, "cross_encoder_scores"
            )
        if self.cross_encoder is None or "cross_encoder_pairs" not in inputs:
            raise LedError(
                "kl_weight > 0 needs a cross-encoder teacher (cross_encoder_name_or_path, with "
                "LEDCollator's cross_encoder_pairs) or precomputed cross_encoder_scores"
            )
        with torch.no_grad(), self.accelerator.autocast():
            return self.cross_encoder.score_candidates(
                inputs["cross_encoder_pairs"], group_size=group_size, chunk_size=self.args.teacher_batch_size
            )
