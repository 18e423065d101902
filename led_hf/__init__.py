"""led-hf: train lexicon-enlightened dense retrievers (LED) with the HuggingFace Trainer.

The Python API, in one namespace (docs/training.md, "Use it from Python")::

    from led_hf import DenseEncoder, DenseTrainer, DenseTrainingArguments, TrainCollator, TrainGroups

Names are resolved on first use: `import led_hf` (and so `led --help`) does not import torch or
transformers; `led_hf.DenseTrainer` imports them then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from led_hf.errors import InputError, LedError
from led_hf.version import __version__

# public name -> the module that defines it (a subpackage where it re-exports the name); `__all__`
# below lists the same names (tests/test_public_api.py checks that they agree)
_LAZY_EXPORTS: dict[str, str] = {
    # trainers (docs/training.md)
    "DenseTrainer": "led_hf.trainers.dense",
    "SpladeTrainer": "led_hf.trainers.splade",
    "LEDTrainer": "led_hf.trainers.led",
    "CrossEncoderTrainer": "led_hf.trainers.cross_encoder",
    # argument dataclasses: what a config file or a flag sets
    "ModelArguments": "led_hf.arguments",
    "DataArguments": "led_hf.arguments",
    "DenseTrainingArguments": "led_hf.arguments",
    "SpladeModelArguments": "led_hf.arguments",
    "SpladeTrainingArguments": "led_hf.arguments",
    "LEDTrainingArguments": "led_hf.arguments",
    "CrossEncoderModelArguments": "led_hf.arguments",
    "CrossEncoderDataArguments": "led_hf.arguments",
    "CrossEncoderTrainingArguments": "led_hf.arguments",
    # models
    "DenseEncoder": "led_hf.modeling",
    "SpladeEncoder": "led_hf.modeling.splade",
    "CrossEncoder": "led_hf.modeling",
    # losses (docs/method.md §4)
    "contrastive_loss": "led_hf.losses",
    "flops_regularizer": "led_hf.losses",
    "splade_pool": "led_hf.losses",
    "rank_consistency_loss": "led_hf.losses",
    "kl_distillation_loss": "led_hf.losses",
    "listwise_cross_entropy": "led_hf.losses",
    # data and batches
    "PreparedData": "led_hf.data.store",
    "TrainGroups": "led_hf.data.groups",
    "TrainCollator": "led_hf.collators",
    "CrossEncoderCollator": "led_hf.collators",
    # evaluation (docs/method.md §6)
    "evaluate_run": "led_hf.evaluation",
    "read_run": "led_hf.evaluation",
    "write_run": "led_hf.evaluation",
    "RetrievalEvaluator": "led_hf.evaluation",
}

__all__ = [
    "InputError",
    "LedError",
    "__version__",
    "DenseTrainer",
    "SpladeTrainer",
    "LEDTrainer",
    "CrossEncoderTrainer",
    "ModelArguments",
    "DataArguments",
    "DenseTrainingArguments",
    "SpladeModelArguments",
    "SpladeTrainingArguments",
    "LEDTrainingArguments",
    "CrossEncoderModelArguments",
    "CrossEncoderDataArguments",
    "CrossEncoderTrainingArguments",
    "DenseEncoder",
    "SpladeEncoder",
    "CrossEncoder",
    "contrastive_loss",
    "flops_regularizer",
    "splade_pool",
    "rank_consistency_loss",
    "kl_distillation_loss",
    "listwise_cross_entropy",
    "PreparedData",
    "TrainGroups",
    "TrainCollator",
    "CrossEncoderCollator",
    "evaluate_run",
    "read_run",
    "write_run",
    "RetrievalEvaluator",
]


def __getattr__(name: str):
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; the same names as _LAZY_EXPORTS
    from led_hf.arguments import (
        CrossEncoderDataArguments,
        CrossEncoderModelArguments,
        CrossEncoderTrainingArguments,
        DataArguments,
        DenseTrainingArguments,
        LEDTrainingArguments,
        ModelArguments,
        SpladeModelArguments,
        SpladeTrainingArguments,
    )
    from led_hf.collators import CrossEncoderCollator, TrainCollator
    from led_hf.data.groups import TrainGroups
    from led_hf.data.store import PreparedData
    from led_hf.evaluation import RetrievalEvaluator, evaluate_run, read_run, write_run
    from led_hf.losses import (
        contrastive_loss,
        flops_regularizer,
        kl_distillation_loss,
        listwise_cross_entropy,
        rank_consistency_loss,
        splade_pool,
    )
    from led_hf.modeling import CrossEncoder, DenseEncoder
    from led_hf.modeling.splade import SpladeEncoder
    from led_hf.trainers.cross_encoder import CrossEncoderTrainer
    from led_hf.trainers.dense import DenseTrainer
    from led_hf.trainers.led import LEDTrainer
    from led_hf.trainers.splade import SpladeTrainer
