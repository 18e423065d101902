"""`led pipeline CONFIG`: run a multi-stage recipe and write OUT/report.{json,md,png}."""

from __future__ import annotations

import argparse

from led_hf.pipeline.report import write_report
from led_hf.pipeline.runner import Pipeline
from led_hf.pipeline.variables import parse_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led pipeline",
        description="Run the stages of a pipeline config (JSON) in order. A completed stage leaves "
        "OUT/stages/<name>.json and is skipped on rerun, so an interrupted run resumes. "
        "Writes OUT/report.json, report.md and report.png (test metrics per stage).",
    )
    parser.add_argument("config", help="pipeline config (JSON), e.g. configs/demo/pipeline_scifact.json")
    parser.add_argument("--output", help="output folder (overrides the config's 'output')")
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help='set a variable the config declares under "variables" (repeatable), e.g. '
        "--set cranfield=/data/cranfield for configs/demo/pipeline_cranfield.json",
    )
    parser.add_argument(
        "--stages", help="comma-separated stage names to (re)run; others must be complete or are skipped"
    )
    parser.add_argument("--force", action="store_true", help="rerun the selected stages even if complete")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print every stage's commands, inputs, outputs and resources and check that each input exists "
        "or is produced by an earlier stage; run nothing",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help='recompute stages marked "cache" (zero-shot baselines) instead of reusing their result from an '
        "earlier run on this machine, and refresh the cache ($LED_HF_CACHE, else ~/.cache/led-hf)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pipeline = Pipeline.from_file(args.config, output=args.output, settings=parse_settings(args.set))
    only = [name.strip() for name in args.stages.split(",")] if args.stages else None
    if args.dry_run:
        from led_hf.pipeline.plan import dry_run

        print(dry_run(pipeline))
        return 0
    records = pipeline.run(only=only, force=args.force, use_cache=not args.no_cache)
    paths = write_report(records, pipeline.output, title=f"led-hf pipeline: {args.config}")
    print("\n" + paths["md"].read_text(encoding="utf-8"))
    print(f"report: {paths['json']}  {paths['md']}  {paths['png']}")
    return 0
