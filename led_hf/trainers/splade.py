"""SpladeTrainer: the SPLADE stage loss (docs/method.md §4); the `led train splade` recipe is `led_hf.cli.train_splade`.

    Q = encode_query(queries) [B, V]      P = encode_passage(groups) [B*G, V], positive first per group
    loss = contrastive(Q, P; M) + λ_q(t) · FLOPS(Q) + λ_d(t) · FLOPS(P)   λ(t) = λ · min(1, t / k)^2
           [+ w_kl · kl_distillation(s, c; T, M_own)]                   with kl_weight > 0

M: the false-negative mask (candidates that are qrels positives of the query), as in `DenseTrainer`;
M_own its columns of each query's own G candidates. s[i, g] = <Q_i, P_{i*G+g}> [B, G], the SPLADE scores
of each query's own candidates; c [B, G] the precomputed teacher scores of the same candidates
(`teacher_scores` in the batch, from `led score-teacher`: a cross-encoder, dense or other teacher).

t is `state.global_step` (optimizer steps completed), so the warm-up is a pure function of the step and
continues where it was after `resume_from_checkpoint`. Logged beside `loss`: `contrastive_loss`,
`flops_query_loss`, `flops_passage_loss` (unweighted), `query_flops_weight`, `passage_flops_weight`,
the mean number of non-zero terms per query / passage (`query_nonzeros`, `passage_nonzeros`) and, with
the KL term, `kl_loss` (unweighted) and `teacher_agreement` (the teacher's ordered candidate pairs the
student orders the same way).
Everything else (loss-part logging, GA scaling, saving, resuming, epochs) is `RetrievalTrainer`'s.
"""

from __future__ import annotations

import torch

from led_hf.errors import LedError
from led_hf.losses import kl_distillation_loss, ranking_agreement
from led_hf.losses.splade import quadratic_warmup, splade_loss
from led_hf.modeling.scores import check_group_scores, group_scores
from led_hf.trainers.base import RetrievalTrainer


class SpladeTrainer(RetrievalTrainer):
    """Train a `led_hf.modeling.splade.SpladeEncoder` on `TrainCollator` batches ({"query", "passage"})."""

    loss_description = (
        "contrastive (InfoNCE) over in-batch and hard negatives on SPLADE term-weight dot "
        "products + λ_q·FLOPS(queries) + λ_d·FLOPS(passages) (+ w_kl · T²·KL(teacher ‖ SPLADE) over each "
        "query's candidates, from precomputed teacher scores, when kl_weight > 0)"
    )
    representation = "sparse"  # the retrieval evaluator searches through the inverted index

    def flops_weights(self, step: int | None = None) -> tuple[float, float]:
        """(λ_q, λ_d) at optimizer step `step` (default: the current global step)."""
        step = self.state.global_step if step is None else step
        warmup = getattr(self.args, "flops_warmup_steps", 0)
        return (
            quadratic_warmup(self.args.query_flops_weight, step, warmup),
            quadratic_warmup(self.args.passage_flops_weight, step, warmup),
        )

    def loss_from_representations(self, model, queries, passages, inputs) -> torch.Tensor:
        group_size = passages.shape[0] // queries.shape[0]
        in_batch = getattr(self.args, "in_batch_negatives", True)
        gathered = in_batch and getattr(self.args, "gather_across_devices", True)
        mask = self.false_negatives(inputs, group_size, in_batch, gathered)
        query_weight, passage_weight = self.flops_weights()
        parts = splade_loss(
            queries,
            passages,
            group_size,
            query_weight,
            passage_weight,
            flops_over_global_batch=getattr(self.args, "flops_over_global_batch", False),
            gather_across_devices=gathered,
            in_batch_negatives=in_batch,
            mask=mask,
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
                **({} if mask is None else {"masked_false_negatives": mask.sum(dim=1).float().mean()}),
            )
        loss = parts["loss"]
        if self.args.kl_weight > 0:
            loss = loss + self.args.kl_weight * self.distillation(queries, passages, group_size, inputs)
        return loss

    def distillation(self, queries, passages, group_size: int, inputs) -> torch.Tensor:
        """KL(teacher ‖ student; T) over each query's own candidates, their false negatives left out."""
        if "teacher_scores" not in inputs:
            raise LedError("kl_weight > 0 needs precomputed teacher_scores in the batch")
        teacher = check_group_scores(inputs["teacher_scores"], queries.shape[0], group_size, "teacher_scores")
        student = group_scores(queries.float(), passages.float())
        own = self.false_negatives(inputs, group_size, in_batch=False, gathered=False)
        kl = kl_distillation_loss(student, teacher, temperature=self.args.kl_temperature, mask=own)
        with torch.no_grad():
            self.record_loss_parts(
                kl_loss=kl,
                kl_weight=self.args.kl_weight,
                teacher_agreement=ranking_agreement(student, teacher, mask=own),
            )
        return kl
