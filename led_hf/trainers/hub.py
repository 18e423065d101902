"""Hub pushes of a `RetrievalTrainer`: every push uploads what a final push uploads, and never a token.

The stock `Trainer._push_from_checkpoint` (hub_strategy every_save / checkpoint / all_checkpoints) copies
only `config.json` and the weights from the checkpoint, then pickles `self.args` into
`training_args.bin` beside them: the arguments hold `hub_token`, so every checkpoint push uploaded the
token; and the pushed repo lacked the card, `led_config.json` and the sentence-transformers files.

Here a checkpoint push copies every file the checkpoint's `_save` wrote (model, tokenizer, card,
`led_config.json`, sentence-transformers files, sub-folders) into `output_dir` (no new weight gathering:
only process 0 pushes) and uploads the folder; no upload ever includes the trainer-state files below.
`hub_strategy` checkpoint / all_checkpoints also upload the checkpoint folder (optimizer and scheduler
included, for resuming from the Hub), still without `training_args.bin`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Trainer files that are not part of the model; `training_args.bin` pickles the arguments (hub_token).
TRAINER_STATE_FILES = (
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "global_step*",  # DeepSpeed's own checkpoint folders
)
NEVER_UPLOADED = ("training_args.bin", "*/training_args.bin")
MODEL_UPLOAD_IGNORE = ["_*", "checkpoint-*", "*.pt", "*.pth", "global_step*", *NEVER_UPLOADED]


def hub_api():
    from huggingface_hub import HfApi

    from led_hf.version import __version__

    return HfApi(library_name="led-hf", library_version=__version__)


def copy_model_files(checkpoint_folder, output_dir) -> None:
    """Everything of `checkpoint_folder` except the trainer state, into `output_dir` (overwriting)."""
    shutil.copytree(
        checkpoint_folder,
        output_dir,
        ignore=shutil.ignore_patterns(*TRAINER_STATE_FILES),
        dirs_exist_ok=True,
    )


def push_checkpoint(trainer, checkpoint_folder: str) -> None:
    """`Trainer._push_from_checkpoint` without the token leak (see the module docstring)."""
    from transformers.trainer_utils import HubStrategy, SaveStrategy

    args = trainer.args
    if not trainer.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
        return
    in_progress = getattr(trainer, "push_in_progress", None)
    if not args.hub_always_push and in_progress is not None and not in_progress.is_done():
        return  # the previous push is still uploading (as the stock Trainer does)
    trainer.callback_handler.on_push_begin(args, trainer.state, trainer.control)
    copy_model_files(checkpoint_folder, args.output_dir)
    if args.save_strategy == SaveStrategy.STEPS:
        message = f"Training in progress, step {trainer.state.global_step}"
    else:
        message = f"Training in progress, epoch {int(trainer.state.epoch or 0)}"
    revision = getattr(args, "hub_revision", None)
    api = hub_api()
    jobs = [
        api.upload_folder(
            repo_id=trainer.hub_model_id,
            folder_path=args.output_dir,
            commit_message=message,
            token=args.hub_token,
            run_as_future=True,
            ignore_patterns=MODEL_UPLOAD_IGNORE,
            revision=revision,
        )
    ]
    if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
        path_in_repo = (
            "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
        )
        jobs.append(
            api.upload_folder(
                repo_id=trainer.hub_model_id,
                folder_path=checkpoint_folder,
                path_in_repo=path_in_repo,
                commit_message=message + ", checkpoint",
                token=args.hub_token,
                run_as_future=True,
                ignore_patterns=list(NEVER_UPLOADED),
                revision=revision,
            )
        )
    _track(trainer, jobs)


def push_final(trainer, commit_message: str, blocking: bool, token, revision, private):
    """`Trainer.push_to_hub` uploading `output_dir` with the trainer-state files left out."""
    token = token if token is not None else trainer.args.hub_token
    trainer.callback_handler.on_push_begin(trainer.args, trainer.state, trainer.control)
    if trainer.hub_model_id is None:
        trainer.init_hf_repo(token=token, private=private)
    trainer.save_model(_internal_call=True)  # every process: ZeRO-3 / FSDP gather the weights together
    if not trainer.is_world_process_zero():
        return None
    trainer.create_model_card()
    trainer._finish_current_push()
    return hub_api().upload_folder(
        repo_id=trainer.hub_model_id,
        folder_path=trainer.args.output_dir,
        commit_message=commit_message,
        token=token,
        run_as_future=not blocking,
        ignore_patterns=MODEL_UPLOAD_IGNORE,
        revision=revision if revision is not None else getattr(trainer.args, "hub_revision", None),
    )


def _track(trainer, jobs) -> None:
    from transformers.utils.hub import PushInProgress

    if getattr(trainer, "push_in_progress", None) is None or trainer.push_in_progress.is_done():
        trainer.push_in_progress = PushInProgress(jobs)
    else:
        trainer.push_in_progress.jobs.extend(jobs)
