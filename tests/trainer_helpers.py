"""What the trainer tests share: the TrainingArguments of a few CPU steps, the fixture's training groups,
a first-step gradient recorder and the environment of one rank of a 2-process gloo group."""

from __future__ import annotations

import os
import socket

import torch
from transformers import TrainerCallback

from led_hf.data.groups import TrainGroups

# a few CPU steps, no checkpoints, no reporting, every step logged
TINY_RUN = dict(
    use_cpu=True,
    per_device_train_batch_size=2,
    max_steps=3,
    learning_rate=1e-3,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    seed=0,
    dataloader_num_workers=0,
)


def run_settings(output_dir, **overrides) -> dict:
    """The keywords of a *TrainingArguments for a tiny run into `output_dir`, `overrides` on top of TINY_RUN."""
    return {"output_dir": str(output_dir), **TINY_RUN, **overrides}


def fixture_groups(data_dir, cls=TrainGroups, negs_sources="bm25", num_negatives=2, **options):
    """The training groups of a prepared fixture folder, seeded and without a progress bar."""
    return cls(
        data_dir,
        negs_sources=negs_sources,
        num_negatives=num_negatives,
        seed=0,
        show_progress=False,
        **options,
    )


def declare_false_negative(batch: dict, query: int = 0, column: int = 1, group_size: int = 3) -> None:
    """Make candidate `column` of `query`'s group a qrels positive of that query in the batch's ids (a
    judged-relevant hard negative), as the collator would have written it."""
    judged = batch["passage_rows"][query * group_size + column].item()
    rows = batch["positive_rows"]
    batch["positive_rows"] = torch.cat([rows, torch.full((rows.shape[0], 1), -1, dtype=rows.dtype)], dim=1)
    batch["positive_rows"][query, -1] = judged


def eval_loss_with_parts(trainer, batch: dict):
    """(loss, model outputs, logged loss parts) of one batch in eval mode (no dropout), without gradients."""
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
        out = trainer.model(query=batch["query"], passage=batch["passage"])
    return loss, out, {name: float(values[-1]) for name, values in trainer._metrics["eval"].items()}


def train_logs(trainer) -> list[dict]:
    """The training-step entries of the log history (not the final summary)."""
    return [entry for entry in trainer.state.log_history if "loss" in entry]


class FirstStepGradients(TrainerCallback):
    """The accumulated (all-reduced, under DDP) gradients just before the first optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {
                n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None
            }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_gloo_ranks(rank: int, port: int, world: int = 2) -> None:
    """The environment torchrun gives rank `rank` of `world` processes on this machine, one thread each."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        HF_HUB_OFFLINE="1",
    )
    torch.set_num_threads(1)
