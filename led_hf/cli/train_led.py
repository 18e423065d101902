"""`led train led CONFIG [--flag value ...]`: the LED recipe (docs/method.md §1, §4), top to bottom.

parse -> seed -> student -> data (+ precomputed teacher scores) -> frozen teachers -> collator -> trainer
-> train (resume) -> [retrieval eval] -> save student (+ card)

    led train led configs/msmarco/led.json                                    # LED
    led train led configs/msmarco/led_rt.json                                 # LED w/ RT (+ cross-encoder KL)
    led train led configs/demo/led_scifact.json --model_name_or_path runs/den --teacher_model_name_or_path runs/lex
    accelerate launch scripts/train_led.py configs/msmarco/led.json --bf16 true   # several GPUs

Teacher scores (`teacher_scores`): "online" runs the frozen teachers on every batch (G candidates per
query per step); "precomputed" reads what `led score-teacher` stored once per (query, pool candidate).
Precomputing costs |positives + pool| teacher passes per query once (~600 for three 200-deep sources,
against G · epochs = 99 online for the reference recipe), so it pays off when a scored pool is reused
by several runs or when the teacher's forward dominates the step (a cross-encoder, a large SPLADE).
"""

from __future__ import annotations

import logging

from led_hf.arguments import DataArguments, LEDTrainingArguments, ModelArguments
from led_hf.cli import recipe
from led_hf.collators.led import LEDCollator, same_tokenization
from led_hf.data.scored_groups import ScoredTrainGroups
from led_hf.scoring.scorers import load_cross_encoder_teacher, load_splade_teacher
from led_hf.trainers.led import LEDTrainer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    return recipe.run_recipe(
        argv,
        (ModelArguments, DataArguments, LEDTrainingArguments),
        train_led,
        prog="led train led",
        description="Train a lexicon-enlightened dense retriever: contrastive loss + rank consistency with a "
        "frozen SPLADE teacher (+ KL to a frozen cross-encoder for LED w/ RT). CONFIG (JSON/YAML) "
        "holds any option below; flags override it.",
    )


def train_led(model_args: ModelArguments, data_args: DataArguments, training_args: LEDTrainingArguments):
    """Run the recipe; returns the trainer (its student, state and log history)."""
    recipe.start_run(training_args)
    model, tokenizer = recipe.dense_model_from_args(model_args, data_args)
    score_tables = precomputed_score_tables(training_args)
    train_groups = recipe.train_groups_from_args(
        data_args, training_args, ScoredTrainGroups, score_tables=score_tables
    )

    teacher = cross_encoder = teacher_tokenizer = cross_encoder_collator = None
    pad_to_multiple_of = recipe.tensor_core_padding(training_args)
    if training_args.teacher_scores == "online":
        if training_args.rank_weight > 0:
            teacher, teacher_tokenizer = load_splade_teacher(
                training_args.teacher_model_name_or_path, model_args.trust_remote_code
            )
            if teacher_reuses_student_tokens(tokenizer, teacher_tokenizer, data_args, training_args):
                teacher_tokenizer = None  # LEDCollator adds no second tokenization
        if training_args.kl_weight > 0:
            cross_encoder, cross_encoder_collator = load_cross_encoder_teacher(
                training_args.cross_encoder_name_or_path,
                training_args.cross_encoder_max_length,
                pad_to_multiple_of,
                model_args.trust_remote_code,
            )
    collator = LEDCollator(
        tokenizer,
        query_max_length=data_args.query_max_length,
        passage_max_length=data_args.passage_max_length,
        pad_to_multiple_of=pad_to_multiple_of,
        extra_keys=tuple(score_tables),
        teacher_tokenizer=teacher_tokenizer,
        teacher_query_max_length=training_args.teacher_query_max_length,
        teacher_passage_max_length=training_args.teacher_passage_max_length,
        cross_encoder_collator=cross_encoder_collator,
    )
    logger.info(
        "%d training groups of %d passages; teacher scores %s (%s); rank weight %g (positive %s), "
        "KL weight %g (T %g)",
        len(train_groups),
        train_groups.group_size,
        training_args.teacher_scores,
        "SPLADE teacher tokenizes itself" if teacher_tokenizer is not None else "shared token ids",
        training_args.rank_weight,
        "in" if training_args.rank_include_positive else "out",
        training_args.kl_weight,
        training_args.kl_temperature,
    )

    evaluator = recipe.retrieval_evaluator_from_args(train_groups.data, data_args, training_args)
    trainer = LEDTrainer(
        model=model,
        args=training_args,
        train_dataset=train_groups,
        data_collator=collator,
        processing_class=tokenizer,
        model_args=model_args,
        data_args=data_args,
        retrieval_evaluator=evaluator,
        teacher=teacher,
        cross_encoder=cross_encoder,
    )
    return recipe.fit_and_save(trainer, model_args, data_args, training_args, evaluator)


def precomputed_score_tables(training_args: LEDTrainingArguments) -> dict[str, str]:
    """Batch key -> DATA/teacher_scores/<name> for `teacher_scores=precomputed` (empty when online)."""
    if training_args.teacher_scores != "precomputed":
        return {}
    tables = {}
    if training_args.rank_weight > 0:
        tables["teacher_scores"] = training_args.teacher_scores_name
    if training_args.kl_weight > 0:
        tables["cross_encoder_scores"] = training_args.cross_encoder_scores_name
    return tables


def teacher_reuses_student_tokens(student_tokenizer, teacher_tokenizer, data_args, training_args) -> bool:
    """The SPLADE teacher can score the student's token ids: same tokenization and the same lengths."""
    same_lengths = training_args.teacher_query_max_length in (
        None,
        data_args.query_max_length,
    ) and training_args.teacher_passage_max_length in (None, data_args.passage_max_length)
    return same_lengths and same_tokenization(student_tokenizer, teacher_tokenizer)
