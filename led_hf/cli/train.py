"""`led train <method> CONFIG [--flag value ...]`: one recipe module per method.

A recipe module exposes `main(argv) -> int` (most of it from `led_hf.cli.recipe`); adding a method is
one line in `RECIPES`, its summary included. `accelerate launch scripts/train_<method>.py ...` runs the same recipes.
"""

from __future__ import annotations

import sys

from led_hf.cli.main import dispatch, usage_table

# method -> (module, one-line summary)
RECIPES: dict[str, tuple[str, str]] = {
    "dense": ("led_hf.cli.train_dense", "dense bi-encoder, contrastive loss (coCondenser / MiniLM recipes)"),
    "splade": ("led_hf.cli.train_splade", "SPLADE lexical retriever, contrastive + FLOPS regularisation"),
    "led": (
        "led_hf.cli.train_led",
        "LED: dense student + frozen SPLADE teacher (rank loss) [+ cross-encoder KL]",
    ),
    "cross-encoder": (
        "led_hf.cli.train_cross_encoder",
        "cross-encoder re-ranker (the RT teacher), listwise CE",
    ),
}


def _usage() -> str:
    return usage_table(
        "usage: led train <method> [CONFIG.json|yaml] [--option value ...]",
        RECIPES,
        "methods:",
        [
            "Options given as flags override the config file; `led train <method> --help` lists them.",
            "Multi-GPU: accelerate launch scripts/train_<method>.py CONFIG [--option value ...]",
        ],
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return dispatch(argv, RECIPES, _usage(), prog="led train", what="method")
