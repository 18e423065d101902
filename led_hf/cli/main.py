"""Dispatch `led <command> ...` to `led_hf.cli.<module>.main(argv)`.

Commands are imported lazily so that `led --help` and light commands do not pay for torch.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys

from led_hf.errors import LedError, UsageError
from led_hf.version import __version__

# command -> (module, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("prepare", "convert MS MARCO tsv, BEIR jsonl or a Hugging Face dataset into Arrow datasets"),
    "split": ("split", "hold out a seeded share of the training queries as a dev split"),
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
        print(
            f"{prog}: error: unknown {what} {name!r}; one of {', '.join(registry)} (see --help)",
            file=sys.stderr,
        )
        return 2
    with short_usage_errors():
        return int(importlib.import_module(package + registry[name][0]).main(rest) or 0)


_BAD_NUMBER = re.compile(r"argument (\S+?)(?:/\S+)?: invalid (int|float) value: '(.*)'$", re.S)
_NUMBER_NAMES = {"int": "an integer", "float": "a number"}


def _short_error(parser: argparse.ArgumentParser, message: str):
    """argparse prints the whole usage (120 lines for a training recipe) before one error line; raise a
    UsageError instead, which `led` prints as one line ending in the `--help` hint."""
    bad = _BAD_NUMBER.match(message)
    if bad:
        option, kind, value = bad.groups()
        message = f"{option}: expected {_NUMBER_NAMES[kind]}, got {value}"
    elif message.startswith("argument "):
        message = message[len("argument ") :]
    raise UsageError(f"{message} (see --help)", prog=parser.prog)


@contextlib.contextmanager
def short_usage_errors():
    """While a command runs under `led`, every argparse parser (the commands' own, HfArgumentParser of the
    training recipes) reports a bad option as one line instead of the usage dump."""
    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _short_error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


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
    except UsageError as err:
        print(f"{err.prog or _command(argv)}: error: {err}", file=sys.stderr)
        return 2
    except LedError as err:
        print(f"{_command(argv)}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # read-only output, a path under a file, a full disk: the path, not a traceback
        print(f"{_command(argv)}: error: {describe_os_error(err)}", file=sys.stderr)
        return 1


def _command(argv: list[str]) -> str:
    """ "led mine", or "led train dense" for the commands with methods."""
    words = argv[:2] if argv[:1] == ["train"] and len(argv) > 1 and not argv[1].startswith("-") else argv[:1]
    return " ".join(["led", *words])


def describe_os_error(err: OSError) -> str:
    """`PATH: reason` (both paths for a rename), e.g. "out/run.trec: Permission denied"."""
    reason = err.strerror or str(err) or type(err).__name__
    if (
        isinstance(err, FileExistsError | NotADirectoryError)
        and err.filename
        and os.path.isfile(err.filename)
    ):
        reason = "is a file, where a folder is needed"  # mkdir of OUT/sub when OUT is a file
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def run() -> None:
    sys.exit(main())
