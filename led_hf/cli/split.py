"""`led split`: hold out a seeded share of a prepared dataset's training queries as a dev split."""

from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
Move a seeded FRACTION of the queries of DATA/qrels/FROM (with all their qrels rows) into a new split
DATA/qrels/TO, so that choices (weights, learning rate, epochs, teachers) are made on queries no model
trains on and the test split is read once per final configuration. The same data, fraction and seed
always give the same dev queries; DATA/manifest.json records the carve. --fold K takes the K-th of the
floor(1/FRACTION) disjoint folds of the same draw (fold 0 is the plain carve): running a choice on each
fold scores it once on every training query, for collections too small for one dev split. `led prepare --dev-from-train`
does the same while preparing.
"""

EXAMPLES = """\
examples:
  led split --data runs/cranfield --fraction 0.2 --seed 13            # qrels/train -> qrels/train + qrels/dev
  led split --data runs/msmarco --from train --to train-dev --fraction 0.01 --seed 1
  led split --data runs/cranfield-f3 --fraction 0.2 --seed 13 --fold 3  # the 4th of 5 disjoint dev folds
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led split",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="DATA", help="prepared dataset folder")
    parser.add_argument("--from", dest="source", default="train", help="split to carve from (default: train)")
    parser.add_argument("--to", dest="target", default="dev", help="new split (default: dev; must not exist)")
    parser.add_argument(
        "--fraction", type=float, required=True, help="share of the queries to move, between 0 and 1"
    )
    parser.add_argument("--seed", type=int, default=42, help="draws the queries (default: %(default)s)")
    parser.add_argument(
        "--fold",
        type=int,
        default=0,
        metavar="K",
        help="which of the floor(1/FRACTION) disjoint folds of the draw (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from led_hf.data.split import carve_dev_split
    from led_hf.data.store import PreparedData

    PreparedData(args.data)  # a clear error for a folder that is no prepared dataset
    record = carve_dev_split(
        args.data, args.fraction, args.seed, source=args.source, target=args.target, fold=args.fold
    )
    print(json.dumps(record))
    return 0
