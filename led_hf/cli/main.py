"""Dispatch `led <command> ...` to `led_hf.cli.<module>.main(argv)`.

Commands are imported lazily so that `led --help` and light commands do not pay for torch.
"""

from __future__ import annotations

import importlib
import sys

from led_hf.errors import LedError
from led_hf.version import __version__

# command -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "convert MS MARCO tsv or BEIR jsonl into Arrow datasets"),
    "train": ("train", "train a model: dense | splade | led | cross-encoder"),
    "encode": ("encode", "encode a corpus or queries into sharded embeddings"),
    "bm25": ("bm25", "BM25 retrieval over a prepared dataset (TREC run, negatives)"),
    "search": ("search", "retrieve with an encoded index and write a TREC run"),
    "index": ("index", "build a sparse index: embedded inverted (default) or Lucene impact / BM25"),
    "rerank": ("rerank", "re-rank a TREC run's top passages with a cross-encoder"),
    "score-teacher": (
        "score_teacher",
        "score training candidates once with a frozen teacher (LED, precomputed)",
    ),
    "mine": ("mine", "mine hard negatives for the next stage: DATA/negatives/NAME (dense, SPLADE, BM25)"),
    "evaluate": ("evaluate", "score a TREC run against qrels (one JSON object)"),
    "pipeline": ("pipeline", "run a multi-stage recipe and write a report"),
    "demo": ("demo", "run the bundled end-to-end demo on SciFact"),
}


def usage_table(header: str, registry: dict[str, tuple[str, str]], heading: str, footer: list[str]) -> str:
    """`header`, then one aligned line per registry entry (name, summary), then `footer` lines."""
    width = max(map(len, registry))
    lines = [header, "", heading]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in registry.items()]
    return "\n".join(lines + [""] + footer)


def dispatch(
    argv: list[str], registry: dict[str, tuple[str, str]], usage: str, prog: str, what: str, package: str = ""
) -> int:
    """Run `registry[argv[0]]`'s module `main(argv[1:])`, importing it only now; usage on -h/--help or nothing."""
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in registry:
        print(f"{prog}: error: unknown {what} {name!r}\n\n{usage}", file=sys.stderr)
        return 2
    return int(importlib.import_module(package + registry[name][0]).main(rest) or 0)


def _usage() -> str:
    return usage_table(
        f"usage: led <command> [options]   (led-hf {__version__})",
        COMMANDS,
        "commands:",
        ["`led <command> --help` describes each command."],
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        print(__version__)
        return 0
    try:
        return dispatch(argv, COMMANDS, _usage(), prog="led", what="command", package="led_hf.cli.")
    except LedError as err:
        print(f"led {argv[0]}: error: {err}", file=sys.stderr)
        return 1


def run() -> None:
    sys.exit(main())
