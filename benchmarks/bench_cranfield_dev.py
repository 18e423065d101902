"""Dev-split ablations of the DEN warm-up on Cranfield: group_by, false-negative masking, no-duplicate
batches, positive_min_score and grade-weighted positives, at one budget of optimizer steps.

    .venv/bin/python benchmarks/bench_cranfield_dev.py                        # every variant
    .venv/bin/python benchmarks/bench_cranfield_dev.py --only query pair-today --max-steps 20

Data: Cranfield (../shared/data/cranfield: 1,400 abstracts, graded qrels 1-4), prepared with
`led prepare --dev-from-train 0.2 --seed 13` (120 training queries, 30 dev queries; test untouched) and
BM25 top-200 negatives of the training queries (`led bm25 --negatives bm25`). Each variant trains the
bundled all-MiniLM-L6-v2 with configs/demo/den_cranfield.json plus its flags for `--max-steps` steps of 16
queries, then is scored on dev exactly as the pipeline scores a stage: `led encode` (fp32) of the corpus
and the dev queries, `led search`, `led evaluate`. Results go to WORK/results.json and a markdown table
on stdout; a finished variant is not rerun (delete its folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CRANFIELD = ROOT.parent / "shared" / "data" / "cranfield"
CONFIG = ROOT / "configs" / "demo" / "den_cranfield.json"

# name -> (what it is, flags over den_cranfield.json)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "zero-shot": ("all-MiniLM-L6-v2, untrained", []),
    "pair-today": (
        "group_by pair, no masking, random batches (the behaviour before group_by)",
        ["--group_by", "pair", "--mask_false_negatives", "false", "--no_duplicates_in_batch", "false"],
    ),
    "pair": ("group_by pair, masking, no-duplicate batches", ["--group_by", "pair"]),
    "query": ("group_by query, masking, no-duplicate batches (the defaults)", []),
    "query-nomask": (
        "group_by query, no masking, random batches",
        ["--mask_false_negatives", "false", "--no_duplicates_in_batch", "false"],
    ),
    "query-min2": ("group_by query, positive_min_score 2", ["--positive_min_score", "2"]),
    "query-min3": ("group_by query, positive_min_score 3", ["--positive_min_score", "3"]),
    "query-grade": ("group_by query, grade-weighted positives", ["--positive_sampling", "grade"]),
}


def led(*argv: str) -> None:
    from led_hf.cli.main import main

    if main(list(argv)) != 0:
        sys.exit(f"`led {' '.join(argv)}` failed")


def prepare(work: Path) -> Path:
    data = work / "data"
    if not (data / "negatives" / "bm25").is_dir():
        if not CRANFIELD.is_dir():
            sys.exit(f"Cranfield not found at {CRANFIELD}")
        led("prepare", "--format", "beir", "--input", str(CRANFIELD), "--output", str(data), "--overwrite",
            "--dev-from-train", "0.2", "--seed", "13", "--quiet")  # fmt: skip
        led("bm25", "--data", str(data), "--split", "train", "--negatives", "bm25", "--keep", "200",
            "--overwrite")  # fmt: skip
    return data


def dev_metrics(data: Path, model: str, folder: Path) -> dict:
    from led_hf.data.store import PreparedData
    from led_hf.evaluation.metrics import evaluate_run
    from led_hf.evaluation.runs import read_run

    common = ["--model", model, "--data", str(data), "--precision", "fp32", "--overwrite"]
    led("encode", *common, "--corpus", "--max-length", "256", "--output", str(folder / "corpus"))
    led("encode", *common, "--queries", "dev", "--max-length", "64", "--output", str(folder / "dev-queries"))
    led("search", "--passages", str(folder / "corpus"), "--queries", str(folder / "dev-queries"),
        "--output", str(folder / "dev.trec"))  # fmt: skip
    return evaluate_run(read_run(folder / "dev.trec"), PreparedData(data).qrels_dict("dev"))


def run_variant(name: str, data: Path, work: Path, max_steps: int, seed: int) -> dict:
    from led_hf.pipeline.runner import placeholders

    folder = work / f"{name}-seed{seed}"
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    description, flags = VARIANTS[name]
    started = time.perf_counter()
    model, log = placeholders()["minilm"], {}
    if name != "zero-shot":
        from led_hf.arguments import DataArguments, DenseTrainingArguments, ModelArguments
        from led_hf.cli.train_dense import train_dense
        from led_hf.config import parse_arguments

        model = str(folder / "model")
        argv = [str(CONFIG), "--data", str(data), "--output_dir", model, "--eval_split", "",
                "--max_steps", str(max_steps), "--seed", str(seed), *flags]  # fmt: skip
        trainer = train_dense(*parse_arguments((ModelArguments, DataArguments, DenseTrainingArguments), argv))
        steps = [entry for entry in trainer.state.log_history if "accuracy" in entry]
        log = {
            "accuracy_first": steps[0]["accuracy"],
            "accuracy_last": steps[-1]["accuracy"],
            "epochs": round(trainer.state.epoch, 2),
        }
    train_s = time.perf_counter() - started
    metrics = dev_metrics(data, model, folder)
    result = {"name": name, "description": description, "flags": flags, "seed": seed,
              "max_steps": max_steps, "train_s": round(train_s, 1), **log, "dev": metrics}  # fmt: skip
    done.write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default=str(ROOT / "runs" / "cranfield-dev"), help="work folder")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="variants to run (default: all)")
    parser.add_argument("--max-steps", type=int, default=30, help="optimizer steps per variant (default 30)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[42], help="training seeds (default 42)")
    args = parser.parse_args()
    work = Path(args.work)
    data = prepare(work)
    results = []
    for name in args.only or list(VARIANTS):
        for seed in [42] if name == "zero-shot" else args.seeds:
            results.append(run_variant(name, data, work, args.max_steps, seed))
            print(json.dumps(results[-1]), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print("\n| variant | seed | epochs | dev nDCG@10 | dev MRR@10 | in-batch accuracy (first -> last log) |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        accuracy = f"{r['accuracy_first']:.2f} -> {r['accuracy_last']:.2f}" if "accuracy_last" in r else "-"
        print(f"| {r['name']} | {r['seed']} | {r.get('epochs', '-')} | {r['dev']['ndcg@10']:.4f} | "
              f"{r['dev']['mrr@10']:.4f} | {accuracy} |")  # fmt: skip


if __name__ == "__main__":
    main()
