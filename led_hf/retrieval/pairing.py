"""Refuse to search one encoding against another that does not belong with it.

Every `led encode` folder (and every `led index` built from one) records which model encoded it, from
which prepared dataset, and whether it holds passages or queries. Searching queries of one model against
passages of another, or of another dataset, gives a run of plausible-looking but meaningless scores; a
query folder given as passages gives one of nonsense. These checks make both a one-line error.
"""

from __future__ import annotations

from pathlib import Path

from led_hf.errors import LedError

# Fields that must agree between the two sides; a field absent on either side (an older folder) is not compared.
PAIRED_FIELDS = ("model", "data")


def check_side(manifest: dict, folder: str | Path, expected: str, option: str) -> None:
    """`expected` is "passages" or "queries": what the folder given to `option` must hold."""
    what = manifest.get("what")
    if what is not None and what != expected:
        raise LedError(f"{option} {folder} holds {what} (manifest what={what!r}), expected {expected}")


def check_pair(
    queries: dict, queries_folder: str | Path, passages: dict, passages_folder: str | Path
) -> None:
    """Both manifests describe one retrieval setup: queries on the query side, passages on the passage
    side, the same model and the same prepared dataset."""
    check_side(queries, queries_folder, "queries", "--queries")
    check_side(passages, passages_folder, "passages", "--passages/--index")
    for field in PAIRED_FIELDS:
        left, right = queries.get(field), passages.get(field)
        if left is not None and right is not None and left != right:
            raise LedError(
                f"--queries {queries_folder} and {passages_folder} differ in {field}: "
                f"{left!r} vs {right!r} (encode both with the same model and dataset)"
            )
