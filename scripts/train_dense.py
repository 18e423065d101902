"""Shim for `accelerate launch scripts/train_dense.py CONFIG [--flag value ...]` (= `led train dense ...`)."""

import sys

from led_hf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", "dense", *sys.argv[1:]]))
