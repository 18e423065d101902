"""`led demo`: the bundled end-to-end recipe on SciFact (bundled MiniLM-L6 and SPLADE-tiny, no network)."""

from __future__ import annotations

import argparse
from pathlib import Path

from led_hf.cli import pipeline
from led_hf.errors import LedError

DEMO_CONFIG = Path("configs/demo/pipeline_scifact.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="led demo",
        description=f"Run {DEMO_CONFIG} from the repository root: prepare the bundled SciFact, BM25, "
        "zero-shot and fine-tuned retrievers, each evaluated on the test split; resumable.",
    )
    parser.add_argument(
        "--output", default="runs/demo-scifact", help="output folder (default runs/demo-scifact)"
    )
    parser.add_argument("--force", action="store_true", help="rerun every stage")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="recompute the zero-shot baselines instead of reusing an earlier run's on this machine",
    )
    args = parser.parse_args(argv)
    if not DEMO_CONFIG.exists():
        raise LedError(
            f"{DEMO_CONFIG} not found: run `led demo` (or `make demo`) from the led-hf repository root"
        )
    forwarded = [str(DEMO_CONFIG), "--output", args.output] + (["--force"] if args.force else [])
    forwarded += ["--no-cache"] if args.no_cache else []
    return pipeline.main(forwarded)
