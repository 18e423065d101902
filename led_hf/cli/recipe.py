"""What the `led train <method>` recipes share, in the order a recipe uses it.

    main(argv) -> run_recipe(argv, dataclasses, train)     parse `[CONFIG] [--flag value ...]`, then train
    train(...): start_run -> model (dense_model_from_args) -> train_groups_from_args -> collator
                (pad_to_multiple_of = tensor_core_padding) -> trainer -> fit_and_save

Each recipe module (`train_dense`, `train_splade`, `train_led`, `train_cross_encoder`) stays readable top
to bottom and imports only from here, never from a sibling recipe.
"""

from __future__ import annotations

import logging
import os
import sys

from transformers import AutoTokenizer, set_seed
from transformers.trainer_utils import get_last_checkpoint

from led_hf.config import parse_arguments, save_resolved_arguments
from led_hf.data.groups import TrainGroups
from led_hf.errors import LedError
from led_hf.evaluation.evaluator import RetrievalEvaluator
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.dense import DenseEncoder


def run_recipe(argv: list[str] | None, dataclass_types: tuple, train, prog: str, description: str) -> int:
    """The `main` of every `led train <method>` recipe: parse `[CONFIG] [--flag value ...]` (argv, default
    sys.argv[1:]) into `dataclass_types` (model, data, training arguments), then `train(*parsed)`.

    Returns 0 after training, or argparse's exit status for `--help` (0) and its own usage errors (2,
    message already printed); LedError from a bad config or from training propagates to `led`'s dispatcher.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parsed = parse_arguments(dataclass_types, argv, prog=prog, description=description)
    except SystemExit as done:  # --help, or argparse's own usage error (already printed)
        return int(done.code or 0)
    train(*parsed)
    return 0


def start_run(training_args) -> None:
    """The first step of every recipe: log lines at INFO on the main process (WARNING elsewhere), seed."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    set_seed(training_args.seed)


def tensor_core_padding(training_args) -> int | None:
    """`pad_to_multiple_of` for a collator: 8 in half precision (bf16 / fp16) on a GPU, where multiples of 8
    tile tensor cores; None otherwise (on CPU, bf16 included, or in fp32 they would only add padding)."""
    half = training_args.bf16 or training_args.fp16
    return 8 if half and training_args.device.type == "cuda" else None


def train_groups_from_args(data_args, training_args, groups_class=None, **extra):
    """`TrainGroups` (or `groups_class`, a subclass taking `extra` keywords) from `DataArguments` fields,
    seeded by `data_seed`, else `seed`."""
    return (groups_class or TrainGroups)(
        data_args.data,
        split=data_args.train_split,
        negs_sources=data_args.negs_sources,
        num_negs_per_system=data_args.num_negs_per_system,
        num_negatives=data_args.num_negatives,
        dedupe_negatives=data_args.dedupe_negatives,
        empty_pool=data_args.empty_pool,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        show_progress=training_args.should_log,
        **extra,
    )


def dense_model_from_args(model_args, data_args):
    """(DenseEncoder, tokenizer) from `ModelArguments` (`bundled:<name>` resolved); the model records the
    passage length as the `max_seq_length` sentence-transformers truncates to."""
    model_path = resolve_model_path(model_args.model_name_or_path)  # e.g. bundled:all-minilm-l6-v2
    model = DenseEncoder.from_pretrained(
        model_path,
        pooling=model_args.pooling,
        normalize=model_args.normalize,
        temperature=model_args.temperature,
        separate_encoders=model_args.separate_encoders,
        trust_remote_code=model_args.trust_remote_code,
    )
    model.max_seq_length = data_args.passage_max_length
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=model_args.trust_remote_code)
    return model, tokenizer


def retrieval_evaluator_from_args(data, data_args, training_args):
    """A `RetrievalEvaluator` of `data_args.eval_split` (None without one) for a dense trainer's `evaluate()`."""
    if not data_args.eval_split:
        return None
    return RetrievalEvaluator(
        data,
        data_args.eval_split,
        mode=data_args.eval_mode,
        max_queries=data_args.eval_max_queries,
        max_passages=data_args.eval_max_passages,
        seed=training_args.seed,
        use_gpu=training_args.device.type == "cuda",
        progress=training_args.should_log,
    )


def fit_and_save(trainer, model_args, data_args, training_args, evaluator=None, after_training=None):
    """The end of every recipe: save the resolved arguments, train (resuming as asked), evaluate by
    retrieval when there is an evaluator, run `after_training()` when given (e.g. the cross-encoder's
    re-ranking evaluation), save. Evaluation comes before saving, so that the card shows the metrics."""
    if trainer.is_world_process_zero():
        save_resolved_arguments(training_args.output_dir, model_args, data_args, training_args)
    trainer.train(resume_from_checkpoint=resolve_checkpoint(training_args))
    if evaluator is not None:
        trainer.save_metrics("eval", trainer.evaluate())
    if after_training is not None:
        after_training()
    trainer.save_model()
    return trainer


def resolve_checkpoint(training_args) -> str | None:
    """`resume_from_checkpoint`: a checkpoint folder, or "last" (the newest checkpoint-* in output_dir, if any)."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False"):
        return None
    if value in ("last", "true", "True"):
        found = (
            get_last_checkpoint(training_args.output_dir) if os.path.isdir(training_args.output_dir) else None
        )
        if found is None and value != "last":
            raise LedError(
                f"resume_from_checkpoint={value}: no checkpoint-* folder in {training_args.output_dir}"
            )
        return found
    if not os.path.isdir(value):
        raise LedError(f"resume_from_checkpoint: {value} is not a folder")
    return value
