"""Every side-by-side comparison in one run: `python -m benchmarks [--quick] [--json FILE] [--only NAME ...]`.

Prints the machine (CPU model, cores, bf16/AMX flags, library versions, date, load) and one table:
entry, comparison, ours, baseline, unit, ratio (> 1: ours is better, whichever way the unit points),
note. Each entry alternates its sides in the same process, several repetitions, and reports medians
(benchmarks/harness.py); an entry that cannot run (a missing extra, no data) is reported and skipped.
`--quick` shrinks every entry (fewer repetitions, smaller corpora, the auto precision only); timings are
never asserted. Each entry is also a script of its own: `python benchmarks/bench_<name>.py --help`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the led_hf next to this folder, also when not installed

from harness import format_table, machine_description, machine_line, write_json  # noqa: E402

# name -> (module in benchmarks/, what it compares)
ENTRIES: dict[str, tuple[str, str]] = {
    "train-dense": (
        "bench_train_dense",
        "dense step vs sentence-transformers MNRL and a plain loop; % of matmul peak",
    ),
    "train-splade": (
        "bench_train_splade",
        "SPLADE step vs sentence-transformers SparseEncoderTrainer + SpladeLoss",
    ),
    "led-teacher": ("bench_teacher_scores", "LED step: precomputed teacher scores vs online teacher"),
    "encode": ("bench_encode", "led encode vs sentence-transformers encode"),
    "sparse-search": ("bench_sparse_search", "embedded inverted index vs Lucene impact search"),
    "mining": ("bench_mining", "led mine vs sentence-transformers mine_hard_negatives"),
    "groups": ("bench_groups", "peak RSS of one epoch of training groups (synthetic corpus)"),
    "prepare": ("bench_prepare", "led prepare: peak RSS and wall time (synthetic MS MARCO)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        epilog="entries: " + "; ".join(f"{name}: {what}" for name, (_, what) in ENTRIES.items()),
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, few repetitions (~3 min on 2 cores)"
    )
    parser.add_argument("--json", type=Path, help="also write machine, rows and errors as JSON here")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(ENTRIES), help="run these entries only"
    )
    parser.add_argument("--list", action="store_true", help="list the entries and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (module, what) in ENTRIES.items():
            print(f"{name:<14} {what}  (benchmarks/{module}.py)")
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # no progress bars in the log (mine_hard_negatives, for one, forces them on)
    os.environ.setdefault("TQDM_DISABLE", "1")

    machine = machine_description()
    print(machine_line(machine), flush=True)
    rows, errors = [], {}
    started = time.perf_counter()
    for name in args.only or list(ENTRIES):
        module, _ = ENTRIES[name]
        print(f"\n== {name}", flush=True)
        entry_started = time.perf_counter()
        try:
            rows += importlib.import_module(module).run(quick=args.quick)
        except Exception as err:  # one entry's failure (a missing extra, no data) must not lose the others
            traceback.print_exc()
            errors[name] = f"{type(err).__name__}: {err}"
        print(f"   ({time.perf_counter() - entry_started:.0f} s)", flush=True)
    machine["wall_time_s"] = round(time.perf_counter() - started, 1)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]

    print("\n" + machine_line(machine) + f"; {machine['wall_time_s']:.0f} s in all\n")
    print(format_table(rows))
    for name, error in errors.items():
        print(f"{name}: not run ({error})")
    if args.json:
        command = ["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]
        write_json(args.json, machine, rows, command, errors)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
