"""Dev-split ablations of the DEN warm-up on Cranfield: group_by, false-negative masking, no-duplicate
batches, positive_min_score and grade-weighted positives, at one budget of optimizer steps.

    .venv/bin/python benchmarks/bench_cranfield_dev.py                        # every variant
    .venv/bin/python benchmarks/bench_cranfield_dev.py --only query pair-today --max-steps 20

Data: Cranfield in BEIR layout (`--cranfield PATH`: 1,400 abstracts, graded qrels 1-4), prepared with
`led prepare --dev-from-train 0.2 --seed 13` (120 training queries, 30 dev queries; test untouched) and
BM25 top-200 negatives of the training queries (`led bm25 --negatives bm25`). Each variant trains the
bundled all-MiniLM-L6-v2 with configs/demo/den_cranfield.json plus its flags for `--max-steps` steps of 16
queries (the configs' `fallback_to_init` off: a variant is measured as trained, on the split it would be
judged on), then is scored on dev exactly as the pipeline scores a stage: `led encode` (fp32) of the corpus
and the dev queries, `led search`, `led evaluate`. Results go to WORK/results.json and a markdown table
on stdout; a finished variant is not rerun (delete its folder to redo it). Each trained variant is
compared with `--baseline` (default: pair-today) query by query: mean nDCG@10 difference, paired t-test
and paired randomization test (10,000 sign flips, seeded) p-values.

    .venv/bin/python benchmarks/bench_cranfield_dev.py --pipeline runs/demo-cranfield

instead prints the pipeline's stages against their inits on test and on dev (the same paired tests),
encoding the dev queries of each stage's model when needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the data folder beside the repository, where the project's checkouts keep the collections
DEFAULT_CRANFIELD = ROOT.parent / "shared" / "data" / "cranfield"
CONFIG = ROOT / "configs" / "demo" / "den_cranfield.json"
LEX_CONFIG = ROOT / "configs" / "demo" / "lex_cranfield.json"

LED_CONFIG = ROOT / "configs" / "demo" / "led_cranfield.json"
DENSE_TEACHER = "den-warmup"  # DATA/teacher_scores/<name>: the fold's DEN warm-up as a teacher of SPLADE
DISTIL = ["--kl_weight", "1", "--kl_temperature", "1", "--teacher_scores_name", DENSE_TEACHER]

# LED variants, trained on a finished pipeline's data (`--pipeline-data OUT`: OUT/data with its mined
# negatives and the sp-stg2 teacher scores, student init OUT/co-stg1): name -> (what it is, flags)
LED_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "led": ("led_cranfield.json: rank weight 1.0, lr 1e-5", []),
    "led-rank0.2": ("rank weight 0.2", ["--rank_weight", "0.2"]),
    "led-rank0": ("rank weight 0: the same training without the teacher", ["--rank_weight", "0"]),
    "led-lr5e-6": ("lr 5e-6 (the paper's LED rate)", ["--learning_rate", "5e-6"]),
    # the sources below are mined into the pipeline's data first (`led mine ... --skip-top 10`, `led
    # score-teacher --name sp-stg2-skip10`; the commands are in docs/quality.md)
    "led-skip10": (
        "negatives mined with --skip-top 10 (ranks 1-10 dropped: unjudged positives sit there)",
        [
            "--negs_sources",
            "co-stg1-skip10,sp-stg1-skip10,sp-stg2-skip10",
            "--teacher_scores_name",
            "sp-stg2-skip10",
        ],
    ),
    "led-skip10-rank0": (
        "negatives mined with --skip-top 10, rank weight 0 (no teacher)",
        [
            "--negs_sources",
            "co-stg1-skip10,sp-stg1-skip10,sp-stg2-skip10",
            "--teacher_scores_name",
            "sp-stg2-skip10",
            "--rank_weight",
            "0",
        ],
    ),
    "led-bm25": (
        "BM25 negatives only (those of the DEN warm-up), sp-stg2 teacher",
        ["--negs_sources", "bm25", "--teacher_scores_name", "sp-stg2-bm25"],
    ),
}

# LEX warm-up (SPLADE-tiny) variants: name -> (what it is, flags over lex_cranfield.json; its 4 epochs)
LEX_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "lex-zero-shot": ("SPLADE-tiny, untrained", []),
    "lex": ("lex_cranfield.json: lr 2e-5 (chosen by this study), FLOPS weights 6e-4 / 8e-4", []),
    "lex-lr5e-5": ("lr 5e-5 (the config before this study)", ["--learning_rate", "5e-5"]),
    "lex-flops-low": (
        "FLOPS weights / 10 (6e-5 / 8e-5)",
        ["--query_flops_weight", "6e-5", "--passage_flops_weight", "8e-5"],
    ),
    "lex-lr2e-5": ("lr 2e-5", ["--learning_rate", "2e-5"]),
    "lex-lr1e-5": ("lr 1e-5", ["--learning_rate", "1e-5"]),
    "lex-lr1e-5-flops-low": (
        "lr 1e-5, FLOPS weights / 10",
        ["--learning_rate", "1e-5", "--query_flops_weight", "6e-5", "--passage_flops_weight", "8e-5"],
    ),
    "lex-neg3": ("3 BM25 negatives per query (group of 4)", ["--num_negatives", "3"]),
    "lex-bm25-skip10": (
        "BM25 negatives without their top 10 ranks (`led mine --bm25 --skip-top 10`)",
        ["--negs_sources", "bm25-skip10"],
    ),
    "lex-distil": (
        "+ KL (weight 1, T 1) to the fold's DEN warm-up (variant `query`, seed 42) scores",
        DISTIL,
    ),
    "lex-distil-neg3": ("3 BM25 negatives (group of 4) + that KL", ["--num_negatives", "3", *DISTIL]),
    "lex-distil-neg3-lr1e-4": (
        "group of 4 + that KL, lr 1e-4",
        ["--num_negatives", "3", *DISTIL, "--learning_rate", "1e-4"],
    ),
    "lex-neg3-lr2e-5": (
        "3 BM25 negatives per query (group of 4), the config's lr 2e-5",
        ["--num_negatives", "3"],
    ),
}

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
    "query-bm25-skip10": (
        "the defaults on BM25 negatives without their top 10 ranks (`led mine --bm25 --skip-top 10`)",
        ["--negs_sources", "bm25-skip10"],
    ),
    "st-mnrl": (
        "sentence-transformers' own fine-tune, as its users run it: MultipleNegativesRankingLoss (scale 20), "
        "no-duplicates batches, one (query, positive, BM25 negative) row per qrels pair, fp32",
        [],
    ),
}


def led(*argv: str) -> None:
    from led_hf.cli.main import main

    if main(list(argv)) != 0:
        sys.exit(f"`led {' '.join(argv)}` failed")


def prepare(work: Path, cranfield: Path, fold: int = 0) -> Path:
    data = work / "data"
    if not (data / "negatives" / "bm25").is_dir():
        if not cranfield.is_dir():
            sys.exit(f"Cranfield not found at {cranfield} (pass --cranfield PATH)")
        led("prepare", "--format", "beir", "--input", str(cranfield), "--output", str(data), "--overwrite",
            "--dev-from-train", "0.2", "--seed", "13", "--dev-fold", str(fold), "--quiet")  # fmt: skip
        led("bm25", "--data", str(data), "--split", "train", "--negatives", "bm25", "--keep", "200",
            "--overwrite")  # fmt: skip
    if not (data / "negatives" / "bm25-skip10").is_dir():
        led("mine", "--data", str(data), "--split", "train", "--name", "bm25-skip10", "--bm25", "--keep", "200",
            "--skip-top", "10", "--overwrite")  # fmt: skip
    return data


def test_metrics(data: Path, name: str, folder: Path) -> dict:
    """A finished variant read on test (its corpus encoding reused): `--test`, once a choice is made."""
    from led_hf.pipeline.variables import placeholders

    sparse = name in LEX_VARIANTS
    model = str(folder / "model")
    if name.endswith("zero-shot"):
        model = placeholders()["splade_tiny" if sparse else "minilm"]
    return split_metrics(data, model, folder, sparse, "test")


def variant_folder(work: Path, name: str, seed: int) -> Path:
    return work / f"{name}-seed{seed}"


def encode_flags(data: Path, model: str, sparse: bool) -> list[str]:
    """The `led encode` flags every read of a variant shares (fp32, SPLADE kind when sparse)."""
    return ["--model", model, "--data", str(data), "--precision", "fp32", "--overwrite",
            *(["--kind", "splade"] if sparse else [])]  # fmt: skip


def dev_metrics(data: Path, model: str, folder: Path, sparse: bool = False) -> dict:
    led("encode", *encode_flags(data, model, sparse), "--corpus", "--max-length", "256",
        "--output", str(folder / "corpus"))  # fmt: skip
    if sparse:
        led("index", "--backend", "inverted", "--vectors", str(folder / "corpus"), "--output",
            str(folder / "index"), "--overwrite")  # fmt: skip
    return split_metrics(data, model, folder, sparse, "dev")


def split_metrics(data: Path, model: str, folder: Path, sparse: bool, split: str) -> dict:
    """Encode `split`'s queries, search FOLDER's corpus encoding (or index), evaluate: FOLDER/<split>.trec."""
    from led_hf.data.runs import read_run
    from led_hf.data.store import PreparedData
    from led_hf.evaluation.metrics import evaluate_run

    queries, run = folder / f"{split}-queries", folder / f"{split}.trec"
    led("encode", *encode_flags(data, model, sparse), "--queries", split, "--max-length", "64",
        "--output", str(queries))  # fmt: skip
    target = ["--index", str(folder / "index")] if sparse else ["--passages", str(folder / "corpus")]
    led("search", *target, "--queries", str(queries), "--output", str(run))
    return evaluate_run(read_run(run), PreparedData(data).qrels_dict(split))


def per_query_ndcg(run_path: Path, data: Path, split: str) -> dict[str, float]:
    from led_hf.data.runs import read_run
    from led_hf.data.store import PreparedData
    from led_hf.evaluation.metrics import evaluate_per_query

    found = evaluate_per_query(read_run(run_path), PreparedData(data).qrels_dict(split))
    return {qid: values["ndcg@10"] for qid, values in found.items()}


def paired(values: dict[str, float], baseline: dict[str, float]) -> dict:
    """Mean difference of per-query values, paired t-test and randomization (sign-flip) test p-values
    (led_hf.evaluation.significance, as `led evaluate --baseline` reports them)."""
    from led_hf.evaluation.significance import paired_randomization_test, paired_t_test, t_interval

    qids = sorted(baseline)
    ours, theirs = [values[q] for q in qids], [baseline[q] for q in qids]
    diff = [a - b for a, b in zip(ours, theirs)]
    return {"diff": sum(diff) / len(diff), "p_t": paired_t_test(ours, theirs)[1],
            "p_rand": paired_randomization_test(ours, theirs), "queries": len(qids),
            "interval": list(t_interval(diff))}  # fmt: skip


def run_variant(name: str, data: Path, work: Path, max_steps: int, seed: int) -> dict:
    from led_hf.pipeline.variables import placeholders

    folder = variant_folder(work, name, seed)
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    sparse = name in LEX_VARIANTS
    description, flags = {**VARIANTS, **LEX_VARIANTS, **LED_VARIANTS}[name]
    started = time.perf_counter()
    model, log = placeholders()["splade_tiny" if sparse else "minilm"], {}
    if name in LED_VARIANTS:
        from led_hf.arguments import DataArguments, LEDTrainingArguments, ModelArguments
        from led_hf.cli.train_led import train_led
        from led_hf.config import parse_arguments

        model = str(folder / "model")
        argv = [str(LED_CONFIG), "--data", str(data), "--model_name_or_path", str(data.parent / "co-stg1"),
                "--teacher_scores", "precomputed", "--teacher_scores_name", "sp-stg2", "--output_dir", model,
                "--eval_split", "", "--fallback_to_init", "false", "--seed", str(seed), *flags]  # fmt: skip
        trainer = train_led(*parse_arguments((ModelArguments, DataArguments, LEDTrainingArguments), argv))
        steps = [entry for entry in trainer.state.log_history if "accuracy" in entry]
        log = {
            "accuracy_first": steps[0]["accuracy"],
            "accuracy_last": steps[-1]["accuracy"],
            "epochs": round(trainer.state.epoch, 2),
        }
    elif sparse and name != "lex-zero-shot":
        from led_hf.arguments import DataArguments, SpladeModelArguments, SpladeTrainingArguments
        from led_hf.cli.train_splade import train_splade
        from led_hf.config import parse_arguments

        model = str(folder / "model")
        if DENSE_TEACHER in flags:
            dense_teacher_scores(data, work, max_steps)
        argv = [str(LEX_CONFIG), "--data", str(data), "--output_dir", model, "--eval_split", "",
                "--fallback_to_init", "false", "--seed", str(seed), *flags]  # fmt: skip
        types = (SpladeModelArguments, DataArguments, SpladeTrainingArguments)
        trainer = train_splade(*parse_arguments(types, argv))
        steps = [entry for entry in trainer.state.log_history if "passage_nonzeros" in entry]
        log = {
            "passage_nonzeros_last": steps[-1]["passage_nonzeros"],
            "epochs": round(trainer.state.epoch, 2),
        }
    elif name == "st-mnrl":
        from st_baseline import train_sentence_transformers

        model = str(folder / "model")
        log = train_sentence_transformers(data, model, max_steps, seed)
    elif not sparse and name != "zero-shot":
        from led_hf.arguments import DataArguments, DenseTrainingArguments, ModelArguments
        from led_hf.cli.train_dense import train_dense
        from led_hf.config import parse_arguments

        model = str(folder / "model")
        argv = [str(CONFIG), "--data", str(data), "--output_dir", model, "--eval_split", "", "--fallback_to_init",
                "false", "--max_steps", str(max_steps), "--seed", str(seed), *flags]  # fmt: skip
        trainer = train_dense(*parse_arguments((ModelArguments, DataArguments, DenseTrainingArguments), argv))
        steps = [entry for entry in trainer.state.log_history if "accuracy" in entry]
        log = {
            "accuracy_first": steps[0]["accuracy"],
            "accuracy_last": steps[-1]["accuracy"],
            "epochs": round(trainer.state.epoch, 2),
        }
    train_s = time.perf_counter() - started
    metrics = dev_metrics(data, model, folder, sparse)
    result = {"name": name, "description": description, "flags": flags, "seed": seed,
              "max_steps": max_steps, "train_s": round(train_s, 1), **log, "dev": metrics}  # fmt: skip
    done.write_text(json.dumps(result, indent=2))
    return result


def dense_teacher_scores(data: Path, work: Path, max_steps: int) -> None:
    """DATA/teacher_scores/den-warmup: the fold's DEN warm-up (variant `query`, seed 42, trained if
    missing) scoring the LEX config's pool (BM25 top 200), as `led score-teacher --kind dense`."""
    if (data / "teacher_scores" / DENSE_TEACHER).is_dir():
        return
    run_variant("query", data, work, max_steps, 42)
    led("score-teacher", "--data", str(data), "--teacher", str(work / "query-seed42" / "model"), "--name",
        DENSE_TEACHER, "--negs-sources", "bm25", "--num-negs-per-system", "200", "--query-max-length", "64",
        "--passage-max-length", "256", "--precision", "fp32", "--no-progress")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default=str(ROOT / "runs" / "cranfield-dev"), help="work folder")
    parser.add_argument(
        "--cranfield",
        default=str(DEFAULT_CRANFIELD),
        help="Cranfield in BEIR layout (corpus, queries, qrels)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=[*VARIANTS, *LEX_VARIANTS, *LED_VARIANTS],
        help="variants to run (default: the dense ones)",
    )
    parser.add_argument("--max-steps", type=int, default=30, help="optimizer steps per variant (default 30)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[42], help="training seeds (default 42)")
    parser.add_argument("--baseline", default="pair-today", help="variant the others are compared with")
    parser.add_argument(
        "--test",
        action="store_true",
        help="also read each variant on test (the split the pipeline reports; for final choices only)",
    )
    parser.add_argument("--pipeline", help="report a finished `led pipeline` output folder instead")
    parser.add_argument(
        "--pipeline-data",
        help="a finished Cranfield `led pipeline` output folder: train the LED variants on its data "
        "(mined negatives, sp-stg2 teacher scores) from its co-stg1",
    )
    parser.add_argument(
        "--folds",
        type=int,
        nargs="*",
        default=[0],
        help="dev folds to run on (`led prepare --dev-fold`; 0-4, default 0): each fold trains on the other "
        "120 queries; with several, a pooled table compares the variants over all their dev queries",
    )
    args = parser.parse_args()
    if args.pipeline:
        return report_pipeline(Path(args.pipeline))
    if args.pipeline_data and args.folds != [0]:
        sys.exit("--pipeline-data trains on that pipeline's own carve: fold 0 only")
    pooled: dict[tuple[str, int], dict[str, float]] = {}
    for fold in args.folds:
        work = Path(args.work) if fold == 0 else Path(f"{args.work}-fold{fold}")
        data = prepare(work, Path(args.cranfield), fold)
        if args.pipeline_data:
            data = Path(args.pipeline_data).resolve() / "data"
        if len(args.folds) > 1:
            print(f"\n## fold {fold}: {work}")
        per_query = run_fold(args, work, data)
        for key, values in per_query.items():
            pooled.setdefault(key, {}).update(values)  # the folds' dev queries are disjoint
    if len(args.folds) > 1:
        print_pooled(pooled, args.baseline, args.folds)


def run_fold(args: argparse.Namespace, work: Path, data: Path) -> dict[tuple[str, int], dict[str, float]]:
    """Every variant and seed on one dev fold; prints its table, returns per-query dev nDCG@10."""
    results = []
    for name in args.only or list(VARIANTS):
        for seed in [42] if name.endswith("zero-shot") else args.seeds:
            results.append(run_variant(name, data, work, args.max_steps, seed))
            folder = variant_folder(work, name, seed)
            if args.test and "test" not in results[-1]:
                results[-1]["test"] = test_metrics(data, name, folder)
                (folder / "result.json").write_text(json.dumps(results[-1], indent=2))
            print(json.dumps(results[-1]), flush=True)
    per_query = {
        (r["name"], r["seed"]): per_query_ndcg(
            variant_folder(work, r["name"], r["seed"]) / "dev.trec", data, "dev"
        )
        for r in results
    }
    for r in results:
        key = baseline_key(r["name"], r["seed"], args.baseline)
        base = per_query.get(key)
        if base is not None and r["name"] != key[0]:
            r["vs_baseline"] = paired(per_query[(r["name"], r["seed"])], base)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n| variant | seed | epochs | dev nDCG@10 | dev MRR@10 | in-batch accuracy (first -> last log) "
          f"| vs baseline (lex-*: lex-zero-shot, led-*: led, else {args.baseline}): diff (p t-test / p randomization) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---|")
    for r in results:
        accuracy = f"{r['accuracy_first']:.2f} -> {r['accuracy_last']:.2f}" if "accuracy_last" in r else "-"
        if "passage_nonzeros_last" in r:
            accuracy = f"{r['passage_nonzeros_last']:.0f} terms per passage"
        versus = r.get("vs_baseline")
        versus = f"{versus['diff']:+.4f} ({versus['p_t']:.2f} / {versus['p_rand']:.2f})" if versus else "-"
        print(f"| {r['name']} | {r['seed']} | {r.get('epochs', '-')} | {r['dev']['ndcg@10']:.4f} | "
              f"{r['dev']['mrr@10']:.4f} | {accuracy} | {versus} |")  # fmt: skip
    if any("test" in r for r in results):
        print("\n| variant | seed | test nDCG@10 | test MRR@10 |\n|---|---:|---:|---:|")
        for r in (r for r in results if "test" in r):
            print(f"| {r['name']} | {r['seed']} | {r['test']['ndcg@10']:.4f} | {r['test']['mrr@10']:.4f} |")
    return per_query


def baseline_key(name: str, seed: int, default: str) -> tuple[str, int]:
    """(variant, seed) a variant is compared with: lex-* with lex-zero-shot, led-* with led, else `default`;
    a zero-shot baseline exists for seed 42 only, a trained one for the variant's own seed."""
    baseline = {"lex": "lex-zero-shot", "led": "led"}.get(name.split("-")[0], default)
    return baseline, 42 if baseline.endswith("zero-shot") else seed


def print_pooled(pooled: dict[tuple[str, int], dict[str, float]], default: str, folds: list[int]) -> None:
    """Cross-validation: each variant over the dev queries of every fold (each trained without them)."""
    print(f"\n## pooled over folds {', '.join(map(str, folds))}\n")
    print(
        "| variant | seed | dev queries | dev nDCG@10 | vs baseline: diff, 95% interval (p t-test / p randomization) |"
    )
    print("|---|---:|---:|---:|---|")
    for (name, seed), values in pooled.items():
        key = baseline_key(name, seed, default)
        base = pooled.get(key)
        versus = "-"
        if base is not None and name != key[0] and set(base) == set(values):
            found = paired(values, base)
            low, high = found["interval"]
            versus = (
                f"{found['diff']:+.4f} [{low:+.4f}, {high:+.4f}] ({found['p_t']:.3f} / {found['p_rand']:.3f})"
            )
        mean = sum(values.values()) / len(values)
        print(f"| {name} | {seed} | {len(values)} | {mean:.4f} | {versus} |")


# stage -> (its init, the folder of its encodings: corpus + test.trec)
PIPELINE_STAGES = {
    "bm25": (None, None),
    "minilm-zero-shot": (None, "minilm"),
    "den-warmup": ("minilm-zero-shot", "co-stg1-enc"),
    "splade-zero-shot": (None, "splade-tiny-enc"),
    "lex-warmup": ("splade-zero-shot", "sp-stg1-enc"),
    "lex-continue": ("lex-warmup", "sp-stg2-enc"),
    "led": ("den-warmup", "led-enc"),
}


def report_pipeline(out: Path) -> None:
    """Each stage of a finished Cranfield pipeline against its init (and BM25), on test and on dev."""
    import json as _json

    data = out / "data"
    stages = {s["name"]: s for s in (_json.loads(p.read_text()) for p in (out / "stages").glob("*.json"))}
    runs = {}
    for name, (_, folder) in PIPELINE_STAGES.items():
        if name not in stages:
            continue
        if name == "bm25":
            led("bm25", "--data", str(data), "--split", "dev", "--output", str(out / "bm25" / "dev.trec"))
            runs[name] = {"test": out / "bm25" / "test.trec", "dev": out / "bm25" / "dev.trec"}
            continue
        enc = out / folder
        model = stages[name]["model"]
        dev_run = enc / "dev.trec"
        if not dev_run.is_file():
            sparse = (enc / "index").is_dir()
            kind = ["--kind", "splade"] if sparse else []
            led("encode", "--model", model, *kind, "--data", str(data), "--queries", "dev", "--max-length", "64",
                "--output", str(enc / "dev-queries"), "--overwrite")  # fmt: skip
            target = ["--index", str(enc / "index")] if sparse else ["--passages", str(enc / "corpus")]
            led("search", *target, "--queries", str(enc / "dev-queries"), "--output", str(dev_run))
        runs[name] = {"test": enc / "test.trec", "dev": dev_run}
    print("| stage | init | test nDCG@10 | vs init (p t / p rand) | vs BM25 | dev nDCG@10 | dev vs init |")
    print("|---|---|---:|---|---|---:|---|")
    for name, (init, _) in PIPELINE_STAGES.items():
        if name not in runs:
            continue
        cells = {}
        for split in ("test", "dev"):
            values = per_query_ndcg(runs[name][split], data, split)
            cells[split] = sum(values.values()) / len(values)
            for other, key in ((init, f"{split}_init"), ("bm25", f"{split}_bm25")):
                if other in runs and other != name:
                    found = paired(values, per_query_ndcg(runs[other][split], data, split))
                    cells[key] = f"{found['diff']:+.4f} ({found['p_t']:.2f} / {found['p_rand']:.2f})"
        print(f"| {name} | {init or '-'} | {cells['test']:.4f} | {cells.get('test_init', '-')} | "
              f"{cells.get('test_bm25', '-')} | {cells['dev']:.4f} | {cells.get('dev_init', '-')} |")  # fmt: skip


if __name__ == "__main__":
    main()
