"""Losses: pure functions of tensors (never hold a model), one file per family."""

from led_hf.losses.contrastive import contrastive_loss
from led_hf.losses.gather import gather_with_grad
from led_hf.losses.splade import flops_regularizer, splade_pool

__all__ = ["contrastive_loss", "flops_regularizer", "gather_with_grad", "splade_pool"]
