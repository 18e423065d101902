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
import shutil
import sys
from pathlib import Path

from transformers import AutoTokenizer, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from led_hf.atomic import remove_stale_staging
from led_hf.collators.train import TrainCollator
from led_hf.config import ARGS_FILE_NAME, parse_arguments, save_resolved_arguments
from led_hf.data.groups import TrainGroups
from led_hf.errors import LedError
from led_hf.evaluation.evaluator import RetrievalEvaluator
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.checkpoint import LED_CONFIG_NAME
from led_hf.modeling.dense import DenseEncoder
from led_hf.trainers.init_fallback import InitFallback

logger = logging.getLogger(__name__)


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
    try:
        train(*parsed)
    finally:
        _leave_process_group()
    return 0


def _leave_process_group() -> None:
    """Destroy the torch.distributed group a launched run joined (DDP ranks), before the interpreter exits:
    left to static destruction, gloo's threads can abort a finished rank ("terminate called without an
    active exception", SIGABRT after the model was written)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def start_run(training_args) -> None:
    """The first step of every recipe: log lines at INFO on the main process (WARNING elsewhere), decide
    what to do with an existing `output_dir` (`check_output_dir`, before any model loads), seed."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    with training_args.main_process_first(local=False, desc="output_dir"):  # the main process may clean up
        check_output_dir(training_args)
    set_seed(training_args.seed)


def check_output_dir(training_args) -> None:
    """What a run does with an existing `output_dir` (docs/training.md, "Output folder and resuming"):

    - absent or empty: a fresh run;
    - not empty but no led-hf run (no `led_args.json`, no `checkpoint-*`): refused, nothing touched;
    - `--overwrite_output_dir`: the run's checkpoints are removed (on the main process), a fresh run;
    - `--resume_from_checkpoint` given: as asked (`resolve_checkpoint`);
    - checkpoints: resumes from the newest complete one (`resume_from_checkpoint` becomes "last"), so that
      rerunning a killed command continues it;
    - a finished run (its `led_config.json`) without checkpoints: refused (it would be overwritten).

    Staging folders of a save killed midway (atomic.staged_contents) are removed.
    """
    out = Path(training_args.output_dir)
    if out.exists() and not out.is_dir():
        raise LedError(f"output_dir {out} is a file, not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    checkpoints = [entry for entry in out.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if entry.is_dir()]
    if not (out / ARGS_FILE_NAME).is_file() and not checkpoints:
        raise LedError(
            f"output_dir {out} is not empty and holds no led-hf training run (no {ARGS_FILE_NAME}); "
            "choose an empty or new folder"
        )
    if training_args.should_save:
        remove_stale_staging(out)
    if training_args.overwrite_output_dir:
        if training_args.should_save:
            for checkpoint in checkpoints:
                shutil.rmtree(checkpoint)
        return
    if training_args.resume_from_checkpoint not in (None, ""):
        return
    if last_complete_checkpoint(out) is not None:
        training_args.resume_from_checkpoint = "last"
        logger.info(
            "%s holds checkpoints: resuming from the last one (--overwrite_output_dir starts over)", out
        )
    elif (out / LED_CONFIG_NAME).is_file():
        raise LedError(
            f"output_dir {out} already holds a trained model; pass --overwrite_output_dir to train it again "
            "or choose another folder"
        )


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` holding `trainer_state.json`, which the Trainer writes last: a checkpoint
    whose save was killed midway is passed over."""
    found = []
    for entry in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = entry.name[len(PREFIX_CHECKPOINT_DIR) + 1 :]
        if step.isdigit() and (entry / TRAINER_STATE_NAME).is_file():
            found.append((int(step), entry))
    return str(max(found)[1]) if found else None


def tensor_core_padding(training_args) -> int | None:
    """`pad_to_multiple_of` for a collator: 8 in half precision (bf16 / fp16) on a GPU, where multiples of 8
    tile tensor cores; None otherwise (on CPU, bf16 included, or in fp32 they would only add padding)."""
    half = training_args.bf16 or training_args.fp16
    return 8 if half and training_args.device.type == "cuda" else None


def train_collator(tokenizer, data_args, training_args, extra_keys: tuple[str, ...] = ()) -> TrainCollator:
    """The dense and SPLADE recipes' collator: query and passage lengths from `DataArguments`;
    `extra_keys`: per-candidate scores the groups carry (precomputed teacher scores)."""
    return TrainCollator(
        tokenizer,
        query_max_length=data_args.query_max_length,
        passage_max_length=data_args.passage_max_length,
        pad_to_multiple_of=tensor_core_padding(training_args),
        extra_keys=extra_keys,
    )


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
        group_by=data_args.group_by,
        positive_min_score=data_args.positive_min_score,
        positive_sampling=data_args.positive_sampling,
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
    re-ranking evaluation), save. Evaluation comes before saving, so that the card shows the metrics.
    With `fallback_to_init` the initial model is evaluated before training and saved instead of the
    trained one unless training beats it (led_hf/trainers/init_fallback.py)."""
    checkpoint = resolve_checkpoint(training_args)  # its checks come before led_args.json marks the folder
    if training_args.fallback_to_init and evaluator is None:
        raise LedError(
            "fallback_to_init compares the initial and the trained model by retrieval on eval_split: give "
            "--eval_split (e.g. dev, from `led prepare --dev-from-train`; dense, SPLADE and LED recipes)"
        )
    # evaluates the init; refuses sharded weights before led_args.json marks the folder
    fallback = InitFallback(trainer) if training_args.fallback_to_init else None
    if trainer.is_world_process_zero():
        save_resolved_arguments(training_args.output_dir, model_args, data_args, training_args)
    trainer.train(resume_from_checkpoint=checkpoint)
    if evaluator is not None:
        metrics = trainer.evaluate()
        trainer.save_metrics("eval", fallback.settle(trainer, metrics) if fallback else metrics)
    if after_training is not None:
        after_training()
    trainer.save_model()
    trainer.save_state()  # trainer_state.json: the loss curve the pipeline report draws
    return trainer


def resolve_checkpoint(training_args) -> str | None:
    """`resume_from_checkpoint`: a checkpoint folder, or "last" (the newest checkpoint-* in output_dir, if any)."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False"):
        return None
    if value in ("last", "true", "True"):
        found = (
            last_complete_checkpoint(training_args.output_dir)
            if os.path.isdir(training_args.output_dir)
            else None
        )
        if found is None and value != "last":
            raise LedError(
                f"resume_from_checkpoint={value}: no checkpoint-* folder in {training_args.output_dir}"
            )
        return found
    if not os.path.isdir(value):
        raise LedError(f"resume_from_checkpoint: {value} is not a folder")
    return value
