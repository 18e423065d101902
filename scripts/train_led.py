"""Shim for `accelerate launch scripts/train_led.py CONFIG [--flag value ...]` (= `led train led ...`)."""

import sys

from led_hf.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", "led", *sys.argv[1:]]))
