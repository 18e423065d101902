"""`led prepare`: convert MS MARCO tsv, BEIR jsonl or a Hugging Face dataset into Arrow tables."""

from __future__ import annotations

import argparse

from led_hf.config import positive_int
from led_hf.errors import LedError

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
  qidpidtriples.<name>.tsv       qid<TAB>positive pid<TAB>negative pid  -> negatives/triples (optional)
  triples.<name>.tsv             query<TAB>positive text<TAB>negative text: texts mapped back to ids
                                 through the queries and the collection -> negatives/triples (optional)
  runs/<source>.trec             TREC run -> negatives/<source>, rank order, with scores (optional)
  top1000.<split>                qid<TAB>pid<TAB>query<TAB>passage -> candidates/<split> (optional)
--format beir reads corpus.jsonl, queries.jsonl, qrels/<split>.tsv (a header line is skipped) and
  runs/<source>.trec.
Any file may be gzipped (NAME.gz). Archives, README/LICENSE/*.md and hidden files are listed as not read;
any other file in INPUT is an error (a misnamed file would otherwise be left out without a word).

--format hf reads a Hugging Face dataset, a Hub name or a local folder, through datasets.load_dataset
(streaming): BEIR-style (configs corpus and queries, as BeIR/scifact; qrels from --qrels, default a
qrels/default config of the dataset or NAME-qrels, as BeIR/scifact-qrels) or Tevatron-style (query_id,
query, positive_passages, negative_passages, as Tevatron/msmarco-passage; the corpus from --corpus, or
the passages met in the rows; negatives -> negatives/<--negatives-name>). A Hub dataset that still needs
a loading script (Tevatron/msmarco-passage) cannot be read by datasets >= 4: download its data files
(`hf download NAME --repo-type dataset --include '*.jsonl.gz' --local-dir DIR`) and pass --input DIR.

--dev-from-train FRACTION moves a seeded share of the train split's queries (all their qrels rows) into
OUTPUT/qrels/dev (see `led split`), before OUTPUT appears. A collection that ships its own dev split
(qrels/dev.tsv, as many BEIR collections do) keeps it: nothing is moved, and the summary says so (with
--dev-fold K > 0 that is an error, as folds are carved from train).

Lines split on tabs (never CSV quoting). Ids may not be empty or hold whitespace. Positive judgments are
removed from negatives. A qrels split without any judgment is an error. A UTF-8 BOM, CRLF line endings and
trailing blank lines are accepted; any other bad line stops the conversion with `FILE:LINE: reason` and
leaves nothing at OUTPUT, unless --skip-bad-lines is given.
"""

EXAMPLES = """\
examples:
  led prepare --format beir --input data/scifact --output runs/scifact
  led prepare --format msmarco --input msmarco/ --output runs/msmarco --skip-bad-lines
  led prepare --format hf --input BeIR/scifact --output runs/scifact-hf
  led prepare --format hf --input tevatron-msmarco/ --corpus Tevatron/msmarco-passage-corpus --output runs/tev
  led prepare --format beir --input cranfield/ --output runs/cranfield --dev-from-train 0.2 --seed 13
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led prepare",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=("msmarco", "beir", "hf"), help="layout of INPUT")
    parser.add_argument(
        "--input",
        required=True,
        metavar="INPUT",
        help="folder holding the source files; with --format hf, a Hub dataset name or a local folder",
    )
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
    hf = parser.add_argument_group("--format hf")
    hf.add_argument("--config", help="dataset configuration to read (Tevatron-style datasets)")
    hf.add_argument("--qrels", metavar="NAME_OR_FOLDER", help="qrels dataset of a BEIR-style dataset")
    hf.add_argument("--corpus", metavar="NAME_OR_FOLDER", help="corpus dataset of a Tevatron-style dataset")
    hf.add_argument(
        "--negatives-name",
        default="hf",
        metavar="NAME",
        help="negatives source of a Tevatron-style dataset's negative_passages (default: %(default)s)",
    )
    hf.add_argument("--revision", help="dataset revision (branch, tag or commit) on the Hub")
    parser.add_argument(
        "--dev-from-train",
        type=float,
        metavar="FRACTION",
        help="hold out this share of the train split's queries as qrels/dev (as `led split`)",
    )
    parser.add_argument(
        "--seed", type=int, default=42, help="draws the --dev-from-train queries (default: %(default)s)"
    )
    parser.add_argument(
        "--dev-fold",
        type=int,
        default=0,
        metavar="K",
        help="which of the floor(1/FRACTION) disjoint dev folds of that draw (default: %(default)s; as `led split --fold`)",
    )
    return parser


_HF_OPTIONS = ("config", "qrels", "corpus", "revision")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    hf_given = [f"--{name}" for name in _HF_OPTIONS if getattr(args, name) is not None]
    if args.negatives_name != "hf":
        hf_given.append("--negatives-name")
    if args.format != "hf" and hf_given:
        raise LedError(f"{', '.join(hf_given)} only apply to --format hf")
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
            hf_options=(
                {name: getattr(args, name) for name in _HF_OPTIONS} | {"negatives_name": args.negatives_name}
                if args.format == "hf"
                else None
            ),
        )

    if args.dev_from_train is None:
        if args.dev_fold:
            raise LedError("--dev-fold needs --dev-from-train")
        summary = run(args.output, args.overwrite)
    else:
        from pathlib import Path

        from led_hf.atomic import atomic_directory
        from led_hf.data.split import carve_dev_split, check_fold
        from led_hf.data.store import PreparedData

        check_fold(args.dev_from_train, args.dev_fold)  # fraction and fold, before the conversion
        # Prepare and carve in a staging folder: OUTPUT appears only with its dev split.
        with atomic_directory(args.output, overwrite=args.overwrite) as staging:
            summary = run(staging, overwrite=True)  # the (empty) staging folder exists
            if (Path(staging) / "qrels" / "dev").is_dir():
                # The collection's own dev split is the better one to choose on (its queries never were
                # training queries); folds, though, are blocks of the train split.
                if args.dev_fold:
                    raise LedError(
                        f"{args.input} ships its own dev split (qrels/dev): --dev-fold {args.dev_fold} "
                        "carves folds of train only from a collection without one"
                    )
                carved = None
                shipped_dev = len(set(PreparedData(staging).qrels("dev")["qid"]))
            else:
                carved = carve_dev_split(staging, args.dev_from_train, args.seed, fold=args.dev_fold)
        summary.output = Path(args.output)
        if carved is None:
            summary.notes.update(
                {"queries in the collection's own qrels/dev, kept (nothing moved)": shipped_dev}
            )
        else:
            for split, rows in carved["rows"].items():  # the table shows the qrels as they are now
                summary.counts[f"qrels/{split}"] = rows
            summary.notes.update({f"queries moved to qrels/dev (seed {args.seed})": carved["queries"]["dev"]})
    if not args.quiet:
        print(summary.render())
    return 0
