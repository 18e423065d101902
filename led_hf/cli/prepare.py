"""`led prepare`: convert MS MARCO tsv or BEIR jsonl into Arrow tables that the rest of led-hf reads."""

from __future__ import annotations

import argparse

from led_hf.config import positive_int

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

Lines split on tabs (never CSV quoting). Positive judgments are removed from negatives. A UTF-8 BOM, CRLF
line endings and trailing blank lines are accepted; any other bad line stops the conversion with
`FILE:LINE: reason` and leaves nothing at OUTPUT, unless --skip-bad-lines is given.
"""

EXAMPLES = """\
examples:
  led prepare --format beir --input data/scifact --output runs/scifact
  led prepare --format msmarco --input msmarco/ --output runs/msmarco --skip-bad-lines
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
        type=positive_int,
        default=10_000,
        metavar="N",
        help="rows per Arrow write batch (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from led_hf.data.prepare import prepare  # after parsing: `--help` does not pay for datasets

    summary = prepare(
        args.format,
        args.input,
        args.output,
        overwrite=args.overwrite,
        skip_bad_lines=args.skip_bad_lines,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    if not args.quiet:
        print(summary.render())
    return 0
