"""Seconds per SPLADE training step: led's SpladeTrainer vs sentence-transformers' SparseEncoderTrainer with
SpladeLoss(SparseMultipleNegativesRankingLoss).

    .venv/bin/python benchmarks/bench_train_splade.py                  # auto precision, 5 steps per side
    .venv/bin/python benchmarks/bench_train_splade.py --precision fp32

Same on both sides: SPLADE-tiny (bundled BertForMaskedLM, 30,522-term head), 8 SciFact claims x (1 + 7)
abstracts, 32 / 128 tokens, term weights max_t log(1 + relu(logits)) over every attended token (led's
`mask_special_tokens` off, as sentence-transformers pools), contrastive loss on raw dot products (scale 1)
over in-batch and hard negatives, FLOPS regularisers λ_q 6e-4 on the queries and λ_d 8e-4 on all
passages, lr 2e-5, clipping 1.0, fused AdamW, `--precision`. Each side is one optimizer step
(benchmarks/training.py), collation included.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, alternate, median  # noqa: E402
from training import (  # noqa: E402
    TrainerStep,
    as_columns,
    bf16_against_fp32,
    step_benchmark_main,
    step_inputs,
    training_arguments,
)

MODEL = "bundled:splade-tiny"
QUERY_LENGTH, PASSAGE_LENGTH, BATCH, GROUP = 32, 128, 8, 8
QUERY_FLOPS, PASSAGE_FLOPS = 6e-4, 8e-4


def led_side(model_path: str, item_batches, precision: str) -> TrainerStep:
    from transformers import AutoTokenizer

    from led_hf.arguments import SpladeTrainingArguments
    from led_hf.collators.train import TrainCollator
    from led_hf.modeling.splade import SpladeEncoder
    from led_hf.trainers.splade import SpladeTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = SpladeEncoder.from_pretrained(model_path, mask_special_tokens=False)
    args = training_arguments(
        precision,
        cls=SpladeTrainingArguments,
        query_flops_weight=QUERY_FLOPS,
        passage_flops_weight=PASSAGE_FLOPS,
    )
    trainer = SpladeTrainer(
        model=model,
        args=args,
        data_collator=TrainCollator(tokenizer, QUERY_LENGTH, PASSAGE_LENGTH),
        processing_class=tokenizer,
    )
    return TrainerStep(trainer, item_batches)


def sentence_transformers_side(model_path: str, item_batches, precision: str) -> TrainerStep:
    from sentence_transformers import SparseEncoder, SparseEncoderTrainer, SparseEncoderTrainingArguments
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss

    # a masked-LM folder loads as Transformer(fill-mask) + SpladePooling("max"), as users get it
    model = SparseEncoder(model_path, device="cpu" if not torch.cuda.is_available() else "cuda")
    model.max_seq_length = PASSAGE_LENGTH
    loss = SpladeLoss(
        model,
        SparseMultipleNegativesRankingLoss(model, scale=1.0),
        document_regularizer_weight=PASSAGE_FLOPS,
        query_regularizer_weight=QUERY_FLOPS,
    )
    trainer = SparseEncoderTrainer(
        model=model, args=training_arguments(precision, cls=SparseEncoderTrainingArguments), loss=loss
    )
    return TrainerStep(trainer, [[as_columns(item) for item in batch] for batch in item_batches])


def run(
    quick: bool = False, precisions: list[str] | None = None, repetitions: int | None = None
) -> list[Row]:
    model_path, precisions, repetitions, tokenizer, item_batches = step_inputs(
        MODEL, quick, precisions, repetitions, BATCH, GROUP, QUERY_LENGTH
    )
    sides, checks = {}, {}
    for precision in precisions:
        torch.manual_seed(0)
        group = {
            "led": led_side(model_path, item_batches, precision),
            "sentence-transformers": sentence_transformers_side(model_path, item_batches, precision),
        }
        # same weights, same batch, no dropout: the sides compute the same loss before any step
        checks[precision] = {name: side.loss_without_dropout() for name, side in group.items()}
        sides.update({f"{name} {precision}": side for name, side in group.items()})
    print(f"  SPLADE step, {' and '.join(precisions)}", flush=True)
    seconds = alternate(sides, repetitions)
    rows = [
        Row(
            entry="train-splade",
            name=f"SPLADE step vs sentence-transformers SpladeLoss ({precision})",
            ours=median(seconds[f"led {precision}"]),
            baseline=median(seconds[f"sentence-transformers {precision}"]),
            unit="s/step",
            note=f"{precision}, SPLADE-tiny, 8x(1+7), 32/128 tokens; initial no-dropout loss of batch 1: "
            + ", ".join(f"{name} {value:.4f}" for name, value in checks[precision].items()),
            samples={name: times for name, times in seconds.items() if name.endswith(precision)},
        )
        for precision in precisions
    ]
    if {"fp32", "bf16"} <= set(precisions):
        rows.append(bf16_against_fp32("train-splade", "SPLADE step", seconds))
    return rows


def main(argv: list[str] | None = None) -> int:
    return step_benchmark_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
