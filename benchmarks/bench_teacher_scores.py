"""Seconds per LED training step with the SPLADE teacher online vs precomputed (`led score-teacher`).

    .venv/bin/python benchmarks/bench_teacher_scores.py                       # small synthetic MS MARCO, CPU
    .venv/bin/python benchmarks/bench_teacher_scores.py --steps 4 --rounds 1 --threads 2

Student: bundled all-MiniLM-L6-v2 (dense); teacher: bundled SPLADE-tiny (same uncased vocabulary, so the
online teacher reuses the student's token ids). Data: a synthetic MS MARCO folder (benchmarks/synthetic.py)
prepared with one negative source. Three sides run back to back, alternating each round (the machine's
speed drifts): `dense` (DenseTrainer, no teacher: the floor), `online` (LEDTrainer, teacher forward each
step) and `precomputed` (LEDTrainer reading scores from the Arrow table). Each side trains `--steps`
steps; the first step (warm-up) is not timed. The one-off `led score-teacher` time is reported too,
with the number of pairs it scored, so the break-even number of epochs can be read off.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._start)


def prepare(folder: Path, queries: int, passages: int) -> Path:
    from synthetic import generate_msmarco

    from led_hf.cli.main import main

    data = folder / "data"
    if not (data / "corpus").is_dir():
        generate_msmarco(
            folder / "raw", num_passages=passages, num_queries=queries, negatives_per_query=30, seed=0
        )
        if (
            main(["prepare", "--format", "msmarco", "--input", str(folder / "raw"), "--output", str(data)])
            != 0
        ):
            sys.exit("led prepare failed")
    return data


def run_side(side: str, data: Path, student: str, teacher: str, args, out: Path) -> list[float]:
    from transformers import AutoTokenizer

    from led_hf.arguments import DenseTrainingArguments, LEDTrainingArguments
    from led_hf.collators.led import LEDCollator
    from led_hf.data.scored_groups import ScoredTrainGroups
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.modeling.splade import SpladeEncoder
    from led_hf.trainers.dense import DenseTrainer
    from led_hf.trainers.led import LEDTrainer

    timer = StepTimer()
    common = dict(
        output_dir=str(out / side),
        use_cpu=True,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=5e-6,
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    tables = {"teacher_scores": "bench"} if side == "precomputed" else {}
    groups = ScoredTrainGroups(
        data,
        negs_sources="bm25",
        num_negatives=args.num_negatives,
        seed=0,
        show_progress=False,
        score_tables=tables,
    )
    tokenizer = AutoTokenizer.from_pretrained(student)
    collator = LEDCollator(
        tokenizer, args.query_max_length, args.passage_max_length, extra_keys=tuple(tables)
    )
    model = DenseEncoder.from_pretrained(student)
    if side == "dense":
        trainer = DenseTrainer(
            model=model,
            args=DenseTrainingArguments(**common),
            train_dataset=groups,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=[timer],
        )
    else:
        led_args = LEDTrainingArguments(
            **common,
            teacher_scores="online" if side == "online" else "precomputed",
            teacher_model_name_or_path=teacher,
            teacher_scores_name="bench",
        )
        trainer = LEDTrainer(
            model=model,
            args=led_args,
            train_dataset=groups,
            data_collator=collator,
            processing_class=tokenizer,
            teacher=SpladeEncoder.from_pretrained(teacher) if side == "online" else None,
            callbacks=[timer],
        )
    trainer.train()
    return timer.times[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=64, help="synthetic training queries (default 64)")
    parser.add_argument("--passages", type=int, default=2000, help="synthetic passages (default 2000)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-negatives", type=int, default=7)
    parser.add_argument("--query-max-length", type=int, default=32)
    parser.add_argument("--passage-max-length", type=int, default=128)
    parser.add_argument(
        "--steps", type=int, default=6, help="steps per side and round; the first is not timed"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from led_hf.modeling.bundled import resolve_model_path
    from led_hf.scoring.teacher_scores import score_teacher

    student = resolve_model_path("bundled:all-minilm-l6-v2")
    teacher = resolve_model_path("bundled:splade-tiny")
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        data = prepare(work, args.queries, args.passages)
        start = time.perf_counter()
        metadata = score_teacher(
            data,
            teacher,
            "bench",
            negs_sources=["bm25"],
            device="cpu",
            overwrite=True,
            query_max_length=args.query_max_length,
            passage_max_length=args.passage_max_length,
            progress=False,
        )
        scoring_seconds = time.perf_counter() - start
        times: dict[str, list[float]] = {"dense": [], "online": [], "precomputed": []}
        for round_number in range(args.rounds):
            sides = list(times) if round_number % 2 == 0 else list(reversed(times))
            for side in sides:
                times[side] += run_side(side, data, student, teacher, args, work / "runs")
    result = {
        "threads": args.threads,
        "batch_size": args.batch_size,
        "group_size": 1 + args.num_negatives,
        "lengths": [args.query_max_length, args.passage_max_length],
        "seconds_per_step": {side: round(sum(t) / len(t), 3) for side, t in times.items()},
        "timed_steps": {side: len(t) for side, t in times.items()},
        "score_teacher_seconds": round(scoring_seconds, 2),
        "score_teacher_pairs": metadata["num_pairs"],
        "score_teacher_pairs_per_second": round(metadata["num_pairs"] / scoring_seconds, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
