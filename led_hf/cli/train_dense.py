"""`led train dense CONFIG [--flag value ...]`: the dense bi-encoder recipe, top to bottom.

parse -> seed -> model -> data -> trainer -> train (resume) -> save (+ card)

    led train dense configs/msmarco/den_warmup.json                       # co-stg1 (docs/method.md §1)
    led train dense configs/demo/den_scifact.json --num_train_epochs 2    # flags override the file
    accelerate launch scripts/train_dense.py configs/msmarco/den_warmup.json   # several GPUs
"""

from __future__ import annotations

import logging

from led_hf.arguments import DataArguments, DenseTrainingArguments, ModelArguments
from led_hf.cli import recipe
from led_hf.trainers.dense import DenseTrainer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    return recipe.run_recipe(
        argv,
        (ModelArguments, DataArguments, DenseTrainingArguments),
        train_dense,
        prog="led train dense",
        description="Train a dense bi-encoder with the contrastive loss. CONFIG (JSON/YAML) holds any "
        "option below; flags override it.",
    )


def train_dense(model_args: ModelArguments, data_args: DataArguments, training_args: DenseTrainingArguments):
    """Run the recipe; returns the trainer (its model, state and log history)."""
    recipe.start_run(training_args)

    model, tokenizer = recipe.dense_model_from_args(model_args, data_args)

    train_groups = recipe.train_groups_from_args(data_args, training_args)
    collator = recipe.train_collator(tokenizer, data_args, training_args)
    logger.info(
        "%d training groups of %d passages; pooling %s, normalize %s, temperature %g",
        len(train_groups),
        train_groups.group_size,
        model.pooling,
        model.normalize,
        model.temperature,
    )

    evaluator = recipe.retrieval_evaluator_from_args(train_groups.data, data_args, training_args)

    trainer = DenseTrainer(
        model=model,
        args=training_args,
        train_dataset=train_groups,
        data_collator=collator,
        processing_class=tokenizer,
        model_args=model_args,
        data_args=data_args,
        retrieval_evaluator=evaluator,
    )
    return recipe.fit_and_save(trainer, model_args, data_args, training_args, evaluator)
