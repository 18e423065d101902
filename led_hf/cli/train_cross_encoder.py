"""`led train cross-encoder CONFIG [--flag value ...]`: the cross-encoder (LED w/ RT's "RT" teacher) recipe.

parse -> seed -> model (fresh 1-logit head on a plain backbone) -> data -> trainer -> train (resume)
-> [re-rank eval_run on eval_split] -> save (+ card)

    led train cross-encoder configs/demo/ce_scifact.json                     # from bundled all-MiniLM-L6-v2
    led train cross-encoder configs/demo/ce_scifact.json --model_name_or_path bundled:splade-tiny
    accelerate launch scripts/train_cross_encoder.py configs/demo/ce_scifact.json   # several GPUs
    led rerank --model runs/demo-scifact/ce --data runs/scifact --split test --run bm25.trec --output ce.trec
"""

from __future__ import annotations

import logging
from functools import partial

from transformers import AutoTokenizer

from led_hf.arguments import (
    CrossEncoderDataArguments,
    CrossEncoderModelArguments,
    CrossEncoderTrainingArguments,
)
from led_hf.cli import recipe
from led_hf.collators.cross_encoder import CrossEncoderCollator
from led_hf.data.runs import read_run
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.cross_encoder import CrossEncoder
from led_hf.scoring.rerank import evaluate_reranking, evaluation_pairs
from led_hf.trainers.cross_encoder import CrossEncoderTrainer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    return recipe.run_recipe(
        argv,
        (CrossEncoderModelArguments, CrossEncoderDataArguments, CrossEncoderTrainingArguments),
        train_cross_encoder,
        prog="led train cross-encoder",
        description="Train a cross-encoder ([CLS] query [SEP] title [SEP] text [SEP] -> one logit) with a "
        "listwise cross-entropy over each query's positive and hard negatives. CONFIG (JSON/YAML) "
        "holds any option below; flags override it. A backbone without a classification head "
        "(e.g. bundled:all-minilm-l6-v2, bundled:splade-tiny) gets a fresh 1-logit head.",
    )


def train_cross_encoder(
    model_args: CrossEncoderModelArguments,
    data_args: CrossEncoderDataArguments,
    training_args: CrossEncoderTrainingArguments,
):
    """Run the recipe; returns the trainer (its model, state and log history)."""
    recipe.start_run(training_args)
    model_path = resolve_model_path(model_args.model_name_or_path)
    model = CrossEncoder.from_pretrained(model_path, trust_remote_code=model_args.trust_remote_code)
    model.max_length = data_args.max_length  # saved: re-ranking and sentence-transformers truncate to it
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=model_args.trust_remote_code)

    train_groups = recipe.train_groups_from_args(data_args, training_args)
    collator = CrossEncoderCollator(
        tokenizer,
        max_length=data_args.max_length,
        pad_to_multiple_of=recipe.tensor_core_padding(training_args),
    )
    logger.info(
        "%d training groups of %d pairs; pair length %d",
        len(train_groups),
        train_groups.group_size,
        data_args.max_length,
    )

    eval_pairs = None
    if data_args.eval_run:  # resolved now: a bad run fails before training
        eval_pairs = evaluation_pairs(
            train_groups.data,
            data_args.eval_split,
            read_run(data_args.eval_run),
            data_args.eval_depth,
            source=data_args.eval_run,
        )

    trainer = CrossEncoderTrainer(
        model=model,
        args=training_args,
        train_dataset=train_groups,
        data_collator=collator,
        processing_class=tokenizer,
        model_args=model_args,
        data_args=data_args,
    )
    after_training = (
        None
        if eval_pairs is None
        else partial(evaluate_after_training, trainer, data_args, train_groups.data, collator, eval_pairs)
    )
    return recipe.fit_and_save(trainer, model_args, data_args, training_args, after_training=after_training)


def evaluate_after_training(
    trainer, data_args: CrossEncoderDataArguments, data, collator, pairs
) -> dict[str, float]:
    """Re-rank `pairs` (eval_run's top eval_depth on eval_split; main process), log and save the metrics as
    eval_*; called before saving the model, so that the card shows them."""
    metrics: dict[str, float] = {}
    if trainer.is_world_process_zero():
        model = trainer.accelerator.unwrap_model(trainer.model)
        args = trainer.args
        precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
        found = evaluate_reranking(
            model,
            collator,
            data,
            data_args.eval_split,
            pairs,
            depth=data_args.eval_depth,
            batch_size=args.per_device_eval_batch_size,
            device=args.device,
            precision=precision,
            progress=args.should_log,
        )
        metrics = {f"eval_{name}": float(value) for name, value in found.items()}
        trainer.log(metrics)
        trainer.save_metrics("eval", metrics)
    trainer.accelerator.wait_for_everyone()
    return metrics
