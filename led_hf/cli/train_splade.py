"""`led train splade CONFIG [--flag value ...]`: the SPLADE (lexicon-aware) retriever recipe, top to bottom.

parse -> seed -> model -> data (+ precomputed teacher scores) -> trainer -> train (resume) -> [retrieval eval] -> save (+ card)

    led train splade configs/demo/lex_scifact.json --max_steps 20              # bundled SPLADE-tiny
    led train splade configs/demo/lex_scifact.json --kl_weight 1 --teacher_scores_name ce   # + distillation
    accelerate launch scripts/train_splade.py configs/msmarco/lex_warmup.json --learning_rate 3e-5
"""

from __future__ import annotations

import logging

from transformers import AutoTokenizer

from led_hf.arguments import DataArguments, SpladeModelArguments, SpladeTrainingArguments
from led_hf.cli import recipe
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.splade import SpladeEncoder
from led_hf.trainers.splade import SpladeTrainer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """`led train splade [CONFIG] [--flag value ...]`; returns the exit status."""
    return recipe.run_recipe(
        argv,
        (SpladeModelArguments, DataArguments, SpladeTrainingArguments),
        train_splade,
        prog="led train splade",
        description="Train a SPLADE (lexicon-aware) retriever: contrastive + FLOPS (+ KL to a teacher's precomputed scores). CONFIG (JSON/YAML) holds any "
        "option below; flags override it. model_name_or_path may be bundled:splade-tiny (the "
        "SPLADE-tiny of led-hf[demo]).",
    )


def train_splade(
    model_args: SpladeModelArguments, data_args: DataArguments, training_args: SpladeTrainingArguments
):
    """Run the recipe; returns the trainer (its model, state and log history)."""
    recipe.start_run(training_args)
    model_path = resolve_model_path(model_args.model_name_or_path)  # e.g. bundled:splade-tiny
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=model_args.trust_remote_code)
    model = SpladeEncoder.from_pretrained(
        model_path,
        mask_special_tokens=model_args.mask_special_tokens,
        trust_remote_code=model_args.trust_remote_code,
    )
    model.max_seq_length = data_args.passage_max_length  # what sentence-transformers truncates to

    if training_args.kl_weight > 0:  # each group carries its teacher's scores ([G] per row)
        tables = {"teacher_scores": training_args.teacher_scores_name}
        train_groups = recipe.train_groups_from_args(
            data_args, training_args, ScoredTrainGroups, score_tables=tables
        )
    else:
        tables = {}
        train_groups = recipe.train_groups_from_args(data_args, training_args)
    collator = recipe.train_collator(tokenizer, data_args, training_args, extra_keys=tuple(tables))
    logger.info(
        "%d training groups of %d passages; vocabulary %d; λ_q %g, λ_d %g (warm-up %d steps); KL weight %g "
        "(T %g, teacher scores %s)",
        len(train_groups),
        train_groups.group_size,
        model.vocab_size,
        training_args.query_flops_weight,
        training_args.passage_flops_weight,
        training_args.flops_warmup_steps,
        training_args.kl_weight,
        training_args.kl_temperature,
        training_args.teacher_scores_name,
    )

    evaluator = recipe.retrieval_evaluator_from_args(train_groups.data, data_args, training_args)
    trainer = SpladeTrainer(
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
