"""Models: dense bi-encoder, SPLADE encoder, cross-encoder; save/load as plain HF folders."""

from led_hf.modeling.checkpoint import detect_model_kind, read_led_config
from led_hf.modeling.cross_encoder import CrossEncoder, CrossEncoderOutput
from led_hf.modeling.dense import DenseEncoder, DenseOutput
from led_hf.modeling.encoder import BiEncoder, EncoderOutput
from led_hf.modeling.pooling import pool, splade_pool
from led_hf.modeling.splade import SpladeEncoder

load_model_kind = detect_model_kind  # its earlier name

__all__ = [
    "BiEncoder",
    "CrossEncoder",
    "CrossEncoderOutput",
    "DenseEncoder",
    "DenseOutput",
    "EncoderOutput",
    "SpladeEncoder",
    "detect_model_kind",
    "load_model_kind",
    "pool",
    "read_led_config",
    "splade_pool",
]
