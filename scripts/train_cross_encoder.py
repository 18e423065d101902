"""Shim for `accelerate launch scripts/train_cross_encoder.py CONFIG [--flag value ...]` (= `led train cross-encoder ...`)."""

import sys

from led_hf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", "cross-encoder", *sys.argv[1:]]))
