"""`led prepare`: convert MS MARCO tsv or BEIR jsonl into Arrow tables that the rest of led-hf reads."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Convert a retrieval collection into prepared Arrow tables (each a datasets.load_from_disk folder, ids as
strings): OUTPUT/corpus {pid,title,text}, OUTPUT/queries {qid,text}, OUTPUT/qrels/<split> {qid,pid,score},
OUTPUT/negatives/<source> {qid,pids,scores}, OUTPUT/candidates/<split> {qid,pids} and OUTPUT/manifest.json.

--format msmarco reads from INPUT:
  collection.tsv                 pid<TAB>text (required)
  titles.tsv or collection.tsv.title.tsv
                                 pid<TAB>title, same pid order as the collection (optional)
  queries.<split>.tsv            qid<TAB>text (all splits merged into one queries table)
  qrels.<split>.tsv              qid 0 pid relevance
  train.negatives.tsv            qid<TAB>pid,pid,...  -> negatives/bm25 (optional)
  runs/<source>.trec             TREC run -> negatives/<source>, rank order, with scores (optional)
  top1000.<split>                qid<TAB>pid<TAB>query<TAB>passage -> candidates/<split> (optional)
--format beir reads corpus.jsonl, queries.jsonl, qrels/<split>.tsv (with a header) and runs/<source>.trec.

--dev-from-train FRACTION moves a seeded share of the train split's queries (all their qrels rows) into
OUTPUT/qrels/dev (see `led split`), before OUTPUT appears.

Lines split on tabs (never CSV quoting). Positive judgments are removed from negatives. A UTF-8 BOM, CRLF
line endings and trailing blank lines are accepted; any other bad line stops the conversion with
`FILE:LINE: reason` and leaves nothing at OUTPUT, unless --skip-bad-lines is given.
"""

EXAMPLES = """\
examples:
  led prepare --format beir --input data/scifact --output runs/scifact
  led prepare --format msmarco --input msmarco/ --output runs/msmarco --skip-bad-lines
  led prepare --format beir --input cranfield/ --output runs/cranfield --dev-from-train 0.2 --seed 13
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led prepare",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=("msmarco", "beir"), help="layout of INPUT")
    parser.add_argument("--input", required=True, metavar="INPUT", help="folder holding the source files")
    parser.add_argument("--output", required=True, metavar="OUTPUT", help="folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip bad lines (counted by reason in the summary and manifest) instead of stopping",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=10_000,
        metavar="N",
        help="rows per Arrow write batch (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    parser.add_argument(
        "--dev-from-train",
        type=float,
        metavar="FRACTION",
        help="hold out this share of the train split's queries as qrels/dev (as `led split`)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="draws the --dev-from-train queries (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from led_hf.data.prepare import prepare  # after parsing: `--help` does not pay for datasets

    def run(output, overwrite: bool):
        return prepare(
            args.format,
            args.input,
            output,
            overwrite=overwrite,
            skip_bad_lines=args.skip_bad_lines,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )

    if args.dev_from_train is None:
        summary = run(args.output, args.overwrite)
    else:
        from pathlib import Path

        from led_hf.atomic import atomic_directory
        from led_hf.data.split import carve_dev_split, check_fraction

        check_fraction(args.dev_from_train)  # before the conversion, not after it
        # Prepare and carve in a staging folder: OUTPUT appears only with its dev split.
        with atomic_directory(args.output, overwrite=args.overwrite) as staging:
            summary = run(staging, overwrite=True)  # the (empty) staging folder exists
            carved = carve_dev_split(staging, args.dev_from_train, args.seed)
        summary.output = Path(args.output)
        summary.notes.update({f"queries moved to qrels/dev (seed {args.seed})": carved["queries"]["dev"]})
    if not args.quiet:
        print(summary.render())
    return 0
