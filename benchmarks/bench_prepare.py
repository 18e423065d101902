"""Benchmark `led prepare --format msmarco` on a generated folder: wall time and the child's peak RSS.

    .venv/bin/python benchmarks/bench_prepare.py                      # 1M passages, 100k queries, 30 negatives
    .venv/bin/python benchmarks/bench_prepare.py --passages 200000 --compare-writers

`prepare` runs in a subprocess so that `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss` is its real peak
(the generator's memory in this process does not count). Target: peak RSS < 1 GB at 1M passages, flat
in the number of passages. `--compare-writers` also converts collection.tsv alone with the two ways of
writing Arrow that were considered: datasets' ArrowWriter + Dataset.from_file + save_to_disk (used) and
Dataset.from_generator(cache_dir=...) + save_to_disk.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import add_size_options, generate_from_options, generate_msmarco  # noqa: E402


def _child(args: list[str]) -> tuple[float, float]:
    """Run `python args...` alone in a fresh process; return (wall seconds, peak RSS in MiB)."""
    # a fresh runner process per measurement: RUSAGE_CHILDREN keeps the maximum over all children so far
    runner = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True); w = time.perf_counter() - t; "
        "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", runner, sys.executable, *args], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[-2]), float(out[-1])


_WRITER_VARIANT = """
import sys, shutil
from pathlib import Path
from datasets import Dataset
from led_hf.data.arrow_tables import CORPUS_FEATURES, TableWriter
from led_hf.data.readers import Problems, read_fields
kind, collection, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
def rows():
    for _, (pid, text) in read_fields(collection, Problems(), 2, "pid, text", progress=False):
        yield {"pid": pid, "title": "", "text": text}
if kind == "arrowwriter":
    writer = TableWriter(out, "corpus", CORPUS_FEATURES, 10_000)
    for row in rows():
        writer.add(row["pid"], row["title"], row["text"])
    writer.close()
else:
    ds = Dataset.from_generator(rows, features=CORPUS_FEATURES, cache_dir=str(out / ".cache"))
    ds.save_to_disk(str(out / "corpus"))
    del ds
    shutil.rmtree(out / ".cache")
"""


def prepare_child(source: Path, output: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of `led prepare --format msmarco` in a fresh process."""
    command = ["-m", "led_hf", "prepare", "--format", "msmarco", "--input", str(source)]
    return _child([*command, "--output", str(output), "--overwrite", "--quiet"])


def writer_child(kind: str, collection: Path, target: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of converting collection.tsv alone with one of the two writers."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    return _child(["-c", _WRITER_VARIANT, kind, str(collection), str(target)])


def run(quick: bool = False, passages: int | None = None, compare_writers: bool | None = None) -> list:
    from harness import Row

    passages = passages or (20_000 if quick else 1_000_000)
    compare_writers = not quick if compare_writers is None else compare_writers
    workdir = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    rows = []
    try:
        source = workdir / "msmarco"
        print(f"  led prepare, {passages:,} passages", flush=True)
        generate_msmarco(source, passages, passages // 10, 30, 0)
        wall, peak = prepare_child(source, workdir / "prepared")
        rows.append(
            Row(
                entry="prepare",
                name=f"led prepare --format msmarco, {passages:,} passages: peak RSS",
                ours=peak,
                baseline=None,
                unit="MiB",
                note=f"synthetic MS MARCO (benchmarks/synthetic.py), {passages // 10:,} train queries x 30 "
                f"negatives; wall {wall:.1f} s ({passages / wall:,.0f} passages/s), in a fresh process",
            )
        )
        if compare_writers:
            results = {
                kind: writer_child(kind, source / "collection.tsv", workdir / f"writer-{kind}")
                for kind in ("arrowwriter", "from_generator")
            }
            rows.append(
                Row(
                    entry="prepare",
                    name="corpus conversion, led's ArrowWriter vs datasets' Dataset.from_generator: wall",
                    ours=results["arrowwriter"][0],
                    baseline=results["from_generator"][0],
                    unit="s",
                    note=f"collection.tsv only, {passages:,} passages; peak RSS "
                    f"{results['arrowwriter'][1]:,.0f} vs {results['from_generator'][1]:,.0f} MiB; one run each",
                )
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_size_options(parser)
    parser.add_argument(
        "--workdir", help="keep the generated folder and output here (default: a temp folder)"
    )
    parser.add_argument("--compare-writers", action="store_true")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-prepare-"))
    source, output = workdir / "msmarco", workdir / "prepared"
    try:
        started = time.perf_counter()
        if not (source / "collection.tsv").exists():
            generate_from_options(source, args)
        size = sum(p.stat().st_size for p in source.iterdir())
        print(
            f"generated {args.passages:,} passages, {args.queries:,} train queries, {args.negatives} "
            f"negatives/query: {size / 2**20:,.0f} MiB of tsv in {time.perf_counter() - started:.1f} s"
        )
        wall, peak = prepare_child(source, output)
        manifest = json.loads((output / "manifest.json").read_text())
        arrow = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
        print(
            f"led prepare: wall {wall:.1f} s, peak RSS {peak:,.0f} MiB, output {arrow / 2**20:,.0f} MiB, "
            f"{args.passages / wall:,.0f} passages/s"
        )
        print(f"  counts: {manifest['counts']}")
        print(f"  notes: {manifest['notes']}")
        if args.compare_writers:
            for kind in ("arrowwriter", "from_generator"):
                wall, peak = writer_child(kind, source / "collection.tsv", workdir / f"writer-{kind}")
                print(f"corpus only via {kind:<15}: wall {wall:.1f} s, peak RSS {peak:,.0f} MiB")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
