"""Models: dense bi-encoder, SPLADE encoder, cross-encoder; save/load as plain HF folders.

The tensor functions (`pooling`, `scores`) and the checkpoint metadata (`checkpoint`) import no more than
torch, so that `led_hf.losses` can use them without loading transformers; the model classes load on
first use of their names here (`from led_hf.modeling import DenseEncoder` works as usual).
"""

from importlib import import_module

from led_hf.modeling.checkpoint import detect_model_kind, read_led_config
from led_hf.modeling.pooling import pool, splade_pool
from led_hf.modeling.scores import dot_scores, group_scores

load_model_kind = detect_model_kind  # its earlier name

# name -> the module that defines it (imported when the name is first asked for)
_MODEL_CLASSES = {
    "BiEncoder": "encoder",
    "EncoderOutput": "encoder",
    "CrossEncoder": "cross_encoder",
    "CrossEncoderOutput": "cross_encoder",
    "DenseEncoder": "dense",
    "DenseOutput": "dense",
    "SpladeEncoder": "splade",
}


def __getattr__(name):
    if name in _MODEL_CLASSES:
        return getattr(import_module(f"led_hf.modeling.{_MODEL_CLASSES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_MODEL_CLASSES,
    "detect_model_kind",
    "dot_scores",
    "group_scores",
    "load_model_kind",
    "pool",
    "read_led_config",
    "splade_pool",
]
