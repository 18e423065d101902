"""Shim for `accelerate launch scripts/train_splade.py CONFIG [--flag value ...]` (= `led train splade ...`)."""

import sys

from led_hf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", "splade", *sys.argv[1:]]))
