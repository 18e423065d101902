"""Losses: pure functions of tensors (never hold a model), one file per family."""

from led_hf.distributed import gather_with_grad
from led_hf.losses.contrastive import contrastive_loss
from led_hf.losses.distillation import kl_distillation_loss, rank_consistency_loss, ranking_agreement
from led_hf.losses.listwise import listwise_cross_entropy
from led_hf.losses.splade import flops_regularizer, splade_pool

__all__ = [
    "contrastive_loss",
    "flops_regularizer",
    "gather_with_grad",
    "kl_distillation_loss",
    "listwise_cross_entropy",
    "rank_consistency_loss",
    "ranking_agreement",
    "splade_pool",
]
