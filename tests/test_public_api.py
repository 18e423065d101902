"""The `led_hf` namespace: explicit, complete re-exports that cost nothing until used."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import led_hf

REPO = Path(__file__).resolve().parents[1]
HEAVY_MODULES = ("torch", "transformers", "datasets", "faiss")


def test_all_lists_every_lazy_export_once():
    assert len(led_hf.__all__) == len(set(led_hf.__all__))
    assert set(led_hf.__all__) == {"InputError", "LedError", "__version__", *led_hf._LAZY_EXPORTS}


@pytest.mark.parametrize("name", sorted(led_hf._LAZY_EXPORTS))
def test_each_name_is_the_object_its_module_defines(name):
    module = importlib.import_module(led_hf._LAZY_EXPORTS[name])
    assert getattr(led_hf, name) is getattr(module, name)
    assert name in dir(led_hf)


def test_the_method_losses_and_trainers_are_exported():
    from led_hf import (  # noqa: F401  (the import is the test)
        CrossEncoderTrainer,
        DataArguments,
        DenseEncoder,
        DenseTrainer,
        LEDTrainer,
        ModelArguments,
        SpladeEncoder,
        SpladeTrainer,
        contrastive_loss,
        flops_regularizer,
        kl_distillation_loss,
        rank_consistency_loss,
        splade_pool,
    )
    from led_hf.losses import contrastive_loss as defined

    assert contrastive_loss is defined
    assert issubclass(LEDTrainer, DenseTrainer)


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchTrainer'"):
        led_hf.NoSuchTrainer  # noqa: B018


@pytest.mark.parametrize(
    "code",
    [
        "import led_hf",
        "from led_hf.cli.main import main; main(['--help'])",
        "from led_hf.cli.main import main; main(['train', '--help'])",
    ],
    ids=["import", "led-help", "led-train-help"],
)
def test_import_and_help_stay_light(code):
    check = f"import sys; {code}; print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
