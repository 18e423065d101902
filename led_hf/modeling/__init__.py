"""Models: dense bi-encoder, SPLADE encoder, cross-encoder; save/load as plain HF folders."""

from led_hf.modeling.checkpoint import load_model_kind, read_led_config
from led_hf.modeling.cross_encoder import CrossEncoder, CrossEncoderOutput
from led_hf.modeling.dense import DenseEncoder, DenseOutput
from led_hf.modeling.pooling import pool

__all__ = [
    "CrossEncoder",
    "CrossEncoderOutput",
    "DenseEncoder",
    "DenseOutput",
    "load_model_kind",
    "pool",
    "read_led_config",
]
