"""Seconds per LED training step with the SPLADE teacher online vs precomputed (`led score-teacher`).

    .venv/bin/python benchmarks/bench_teacher_scores.py                       # small synthetic MS MARCO, CPU
    .venv/bin/python benchmarks/bench_teacher_scores.py --repetitions 3 --precision fp32

Student: bundled all-MiniLM-L6-v2 (dense); teacher: bundled SPLADE-tiny (same uncased vocabulary, so the
online teacher reuses the student's token ids). Data: a synthetic MS MARCO folder (benchmarks/synthetic.py)
prepared with one negative source, 4 queries x (1 + 7) passages, 32 / 128 tokens. Three sides, each one
optimizer step of the real trainer (benchmarks/training.py) on the same groups, alternated:

    dense          DenseTrainer, no teacher: the floor
    online         LEDTrainer, a teacher forward of every query and passage each step
    precomputed    LEDTrainer reading scores that `led score-teacher` stored in the Arrow table

The one-off `led score-teacher` time is reported too, with the number of pairs it scored, so that the
break-even number of epochs can be read off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, alternate, median  # noqa: E402
from training import TrainerStep, batches, training_arguments  # noqa: E402

QUERY_LENGTH, PASSAGE_LENGTH, BATCH, NEGATIVES = 32, 128, 4, 7
POOL = 30  # negatives per query in the synthetic data: the pool groups draw from and score-teacher scores


def prepare(folder: Path, queries: int, passages: int) -> Path:
    from synthetic import generate_msmarco

    from led_hf.cli.main import main

    data = folder / "data"
    if not (data / "corpus").is_dir():
        generate_msmarco(
            folder / "raw", num_passages=passages, num_queries=queries, negatives_per_query=30, seed=0
        )
        command = ["prepare", "--format", "msmarco", "--input", str(folder / "raw"), "--output", str(data)]
        if main([*command, "--quiet"]) != 0:
            raise RuntimeError("led prepare failed")
    return data


def led_step(side: str, data: Path, student: str, teacher: str, precision: str, num_batches: int):
    from transformers import AutoTokenizer

    from led_hf.arguments import LEDTrainingArguments
    from led_hf.collators.led import LEDCollator
    from led_hf.data.scored_groups import ScoredTrainGroups
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.modeling.splade import SpladeEncoder
    from led_hf.trainers.dense import DenseTrainer
    from led_hf.trainers.led import LEDTrainer

    tables = {"teacher_scores": "bench"} if side == "precomputed" else {}
    groups = ScoredTrainGroups(
        data,
        negs_sources="bm25",
        num_negs_per_system=POOL,
        num_negatives=NEGATIVES,
        seed=0,
        show_progress=False,
        score_tables=tables,
    )
    tokenizer = AutoTokenizer.from_pretrained(student)
    collator = LEDCollator(tokenizer, QUERY_LENGTH, PASSAGE_LENGTH, extra_keys=tuple(tables))
    model = DenseEncoder.from_pretrained(student)
    common = dict(model=model, data_collator=collator, processing_class=tokenizer)
    if side == "dense":
        trainer = DenseTrainer(args=training_arguments(precision), **common)
    else:
        args = training_arguments(
            precision,
            cls=LEDTrainingArguments,
            teacher_scores=side,
            teacher_model_name_or_path=teacher,
            teacher_scores_name="bench",
        )
        splade = SpladeEncoder.from_pretrained(teacher) if side == "online" else None
        trainer = LEDTrainer(args=args, teacher=splade, **common)
    items = [groups[i] for i in range(BATCH * num_batches)]
    return TrainerStep(trainer, batches(items, BATCH))


def run(
    quick: bool = False,
    precisions: list[str] | None = None,
    repetitions: int | None = None,
    work: Path | None = None,
) -> list[Row]:
    from led_hf.modeling.bundled import resolve_model_path
    from led_hf.precision import resolve_precision
    from led_hf.scoring.teacher_scores import score_teacher

    precisions = precisions or [resolve_precision("auto", "cpu")]
    repetitions = repetitions or (2 if quick else 5)
    student = resolve_model_path("bundled:all-minilm-l6-v2")
    teacher = resolve_model_path("bundled:splade-tiny")
    rows = []
    with tempfile.TemporaryDirectory(prefix="led-bench-teacher-") as temporary:
        num_queries = BATCH * (repetitions + 1)
        data = prepare(Path(work or temporary), num_queries, 2000)
        start = time.perf_counter()
        metadata = score_teacher(
            data,
            teacher,
            "bench",
            negs_sources=["bm25"],
            num_negs_per_system=POOL,
            device="cpu",
            overwrite=True,
            query_max_length=QUERY_LENGTH,
            passage_max_length=PASSAGE_LENGTH,
            progress=False,
            precision=precisions[0],
        )
        scoring = time.perf_counter() - start
        for precision in precisions:
            print(f"  LED step, {precision}", flush=True)
            sides = {
                side: led_step(side, data, student, teacher, precision, repetitions + 1)
                for side in ("dense", "online", "precomputed")
            }
            seconds = alternate(sides, repetitions)
            rows.append(
                Row(
                    entry="led-teacher",
                    name=f"LED step, precomputed teacher scores vs online teacher ({precision})",
                    ours=median(seconds["precomputed"]),
                    baseline=median(seconds["online"]),
                    unit="s/step",
                    note=f"MiniLM-L6 student, SPLADE-tiny teacher, {BATCH}x(1+{NEGATIVES}), "
                    f"{QUERY_LENGTH}/{PASSAGE_LENGTH} tokens; no teacher at all: "
                    f"{median(seconds['dense']):.3g} s/step",
                    samples=seconds,
                )
            )
        rows.append(
            Row(
                entry="led-teacher",
                name=f"led score-teacher, one-off ({precisions[0]})",
                ours=metadata["num_pairs"] / scoring,
                baseline=None,
                unit="pairs/s",
                higher_is_better=True,
                note=f"{metadata['num_pairs']:,} (query, candidate) pairs in {scoring:.1f} s, "
                "teacher encodes every query and candidate",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    from harness import format_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--precision", action="append", choices=["fp32", "bf16"], help="repeatable; default auto"
    )
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the data here (default: a temp dir)")
    args = parser.parse_args(argv)
    rows = run(precisions=args.precision, repetitions=args.repetitions, work=args.work)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
