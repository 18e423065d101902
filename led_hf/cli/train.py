"""`led train <method> CONFIG [--flag value ...]`: one recipe module per method.

A recipe module exposes `main(argv) -> int` and `SUMMARY` (one line); adding a method is one line
in `RECIPES`. `accelerate launch scripts/train_<method>.py ...` runs the same recipes.
"""

from __future__ import annotations

import importlib
import sys

# method -> (module, one-line summary)
RECIPES: dict[str, tuple[str, str]] = {
    "dense": ("led_hf.cli.train_dense", "dense bi-encoder, contrastive loss (coCondenser / MiniLM recipes)"),
    "splade": ("led_hf.cli.train_splade", "SPLADE lexical retriever, contrastive + FLOPS regularisation"),
    "led": ("led_hf.cli.train_led", "LED: dense student + frozen SPLADE teacher (rank loss) [+ cross-encoder KL]"),
    "cross-encoder": ("led_hf.cli.train_cross_encoder", "cross-encoder re-ranker (the RT teacher), listwise CE"),
}


def _usage() -> str:
    width = max(map(len, RECIPES))
    lines = ["usage: led train <method> [CONFIG.json|yaml] [--option value ...]", "", "methods:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in RECIPES.items()]
    lines += ["", "Options given as flags override the config file; `led train <method> --help` lists them.",
              "Multi-GPU: accelerate launch scripts/train_<method>.py CONFIG [--option value ...]"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in RECIPES:
        print(f"led train: error: unknown method {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    return int(importlib.import_module(RECIPES[name][0]).main(rest) or 0)
