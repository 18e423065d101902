"""Dispatch `led <command> ...` to `led_hf.cli.<module>.main(argv)`.

Commands are imported lazily so that `led --help` and light commands do not pay for torch.
"""

from __future__ import annotations

import importlib
import sys

from led_hf import __version__
from led_hf.errors import LedError

# command -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "convert MS MARCO tsv or BEIR jsonl into Arrow datasets"),
    "train": ("train", "train a model: dense | splade | led | cross-encoder"),
    "encode": ("encode", "encode a corpus or queries into sharded embeddings"),
    "bm25": ("bm25", "BM25 retrieval over a prepared dataset (TREC run, negatives)"),
    "search": ("search", "retrieve with an encoded index and write a TREC run"),
    "index": ("index", "build a sparse index: embedded inverted (default) or Lucene impact / BM25"),
    "rerank": ("rerank", "re-rank a TREC run's top passages with a cross-encoder"),
    "score-teacher": ("score_teacher", "score training candidates once with a frozen teacher (LED, precomputed)"),
    "mine": ("mine", "mine hard negatives for the next stage: DATA/negatives/NAME (dense, SPLADE, BM25)"),
    "evaluate": ("evaluate", "score a TREC run against qrels (one JSON object)"),
    "pipeline": ("pipeline", "run a multi-stage recipe and write a report"),
    "demo": ("demo", "run the bundled end-to-end demo on SciFact"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: led <command> [options]   (led-hf {__version__})", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`led <command> --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"led: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"led_hf.cli.{COMMANDS[name][0]}")
    try:
        return int(module.main(rest) or 0)
    except LedError as err:
        print(f"led {name}: error: {err}", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())
