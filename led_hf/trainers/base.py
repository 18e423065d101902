"""What every led-hf trainer shares; the subclasses only compute their loss.

- loss parts: `record_loss_parts(contrastive_loss=..., ...)` in `compute_loss`; they are averaged over
  the logging window (and over processes) and merged into the Trainer's own log lines (TRL style).
- gradient accumulation: `compute_loss` returns the mean loss of its micro-batch, and
  `loss_is_scaled_for_ga = False` tells `Trainer.training_step` to divide it by the number of
  accumulation steps, so that k accumulated micro-batches give the mean of their gradients.
- saving: `_save` writes the model's own `save_pretrained(path, tokenizer=...)` (a plain HF backbone
  folder + metadata), then a model card (`README.md`). No pickled `training_args.bin`.
- resuming: checkpoints hold plain backbones, so `_load_from_checkpoint` / `_load_best_model` call the
  model's `load_weights(folder)` instead of loading a state dict of the wrapper.
- epochs: an `EpochCallback` tells the training groups which epoch starts (fresh negatives each epoch).
- retrieval metrics: with a `retrieval_evaluator` (led_hf.evaluation.evaluator.RetrievalEvaluator),
  `evaluate()` adds its metrics (e.g. `eval_ndcg@10`) using the subclass's `make_encoders(model)`.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch
from transformers import Trainer

from led_hf.errors import LedError
from led_hf.trainers.callbacks import EpochCallback
from led_hf.trainers.card import write_model_card

logger = logging.getLogger(__name__)


class RetrievalTrainer(Trainer):
    """A `Trainer` for bi-encoders fed by `TrainGroups` + `TrainCollator`.

    Extra keyword arguments: `model_args` and `data_args` (the recipe's dataclasses, for the model card),
    `retrieval_evaluator` (metrics by retrieval in `evaluate()`).
    """

    loss_is_scaled_for_ga = False
    # Item keys of `led_hf.data.groups.TrainGroups`: none is a model input, the collator needs them all.
    signature_columns = ("qid", "query", "pids", "titles", "texts", "candidate_rows", "positive_rows")
    # One line for the model card; subclasses describe their loss.
    loss_description = ""

    def __init__(self, *args, model_args=None, data_args=None, retrieval_evaluator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_args = model_args
        self.data_args = data_args
        self.retrieval_evaluator = retrieval_evaluator
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        dataset = self.train_dataset
        has_epoch_callback = any(isinstance(cb, EpochCallback) for cb in self.callback_handler.callbacks)
        if dataset is not None and hasattr(dataset, "set_epoch") and not has_epoch_callback:
            self.add_callback(EpochCallback(dataset))

    # -- data ----------------------------------------------------------------------------------------
    def _set_signature_columns_if_needed(self) -> None:
        if self._signature_columns is None:
            self._signature_columns = list(self.signature_columns)

    def _get_train_sampler(self, train_dataset=None):
        """`NoDuplicatesSampler` over training groups (`no_duplicates_in_batch`, random order), else the
        Trainer's own sampler."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        global_batch = self._train_batch_size * max(1, self.args.world_size)
        if self.args.dataloader_drop_last and hasattr(dataset, "__len__") and len(dataset) < global_batch:
            # The Trainer would only warn and train 0 steps; with group_by query small sets get here easily.
            raise LedError(
                f"{len(dataset)} training rows make no full batch of {global_batch} (per-device batch x "
                "processes) and the last incomplete batch is dropped: lower per_device_train_batch_size, or "
                "set dataloader_drop_last false (group_by query gives one row per training query)"
            )
        if (
            getattr(self.args, "no_duplicates_in_batch", False)
            and self.args.train_sampling_strategy == "random"
            and hasattr(dataset, "candidate_rows")
        ):
            from led_hf.data.batching import NoDuplicatesSampler

            return NoDuplicatesSampler(dataset, self._train_batch_size * max(1, self.args.world_size))
        return super()._get_train_sampler(train_dataset)

    # -- logging of loss parts -----------------------------------------------------------------------
    def record_loss_parts(self, **parts: torch.Tensor | float) -> None:
        """Remember named loss parts of this micro-batch (detached) for the next log line."""
        mode = "train" if self.model.training else "eval"
        for name, value in parts.items():
            self._metrics[mode][name].append(
                float(value.detach().float().item() if torch.is_tensor(value) else value)
            )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train" if "loss" in logs else None
        if mode is not None and self._metrics[mode]:
            names = sorted(self._metrics[mode])
            means = torch.tensor(
                [sum(self._metrics[mode][n]) / len(self._metrics[mode][n]) for n in names],
                device=self.args.device,
            )
            if self.accelerator.num_processes > 1:  # every rank logs at the same steps
                means = self.accelerator.reduce(means, reduction="mean")
            prefix = "eval_" if mode == "eval" else ""
            logs = {**logs, **{prefix + name: round(value, 6) for name, value in zip(names, means.tolist())}}
            self._metrics[mode].clear()
        super().log(logs, start_time)

    # -- evaluation ----------------------------------------------------------------------------------
    def evaluate(
        self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        """The loss on an eval dataset (when there is one) plus the retrieval evaluator's metrics."""
        metrics: dict[str, float] = {}
        if eval_dataset is not None or self.eval_dataset is not None:
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.retrieval_evaluator is not None:
            metrics.update(
                self.retrieval_evaluator.evaluate_trainer(self, self.make_encoders, metric_key_prefix)
            )
        return metrics

    def make_encoders(self, model):
        """(encode_queries(texts) -> [n, H], encode_passages(titles, texts) -> [n, H]) for the evaluator."""
        raise NotImplementedError(f"{type(self).__name__} does not define make_encoders")

    # -- saving and loading --------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        model.save_pretrained(output_dir, tokenizer=self.processing_class, state_dict=state_dict)
        write_model_card(
            output_dir,
            model=model,
            args=self.args,
            state=self.state,
            model_args=self.model_args,
            data_args=self.data_args,
            loss_description=self.loss_description,
        )

    def create_model_card(self, *args, **kwargs) -> None:
        """`push_to_hub` calls this: keep our card (the stock one assumes a PreTrainedModel)."""
        if self.is_world_process_zero():
            write_model_card(
                self.args.output_dir,
                model=self.accelerator.unwrap_model(self.model),
                args=self.args,
                state=self.state,
                model_args=self.model_args,
                data_args=self.data_args,
                loss_description=self.loss_description,
            )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if not hasattr(target, "load_weights"):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        logger.info("Loading model weights from %s", resume_from_checkpoint)
        target.load_weights(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        target = self.accelerator.unwrap_model(self.model)
        if not hasattr(target, "load_weights"):
            return super()._load_best_model()
        logger.info(
            "Loading best model from %s (score: %s)", self.state.best_model_checkpoint, self.state.best_metric
        )
        target.load_weights(self.state.best_model_checkpoint)
