"""What every led-hf trainer shares; the subclasses only compute their loss.

- loss parts: `record_loss_parts(contrastive_loss=..., ...)` in `compute_loss`; they are averaged over
  the logging window (and over processes) and merged into the Trainer's own log lines (TRL style).
- GradCache: with `gradient_cache=True`, `training_step` caches the representations' gradients and
  back-propagates chunk by chunk (led_hf/trainers/grad_cache.py): the batch is no longer bounded by memory.
- gradient accumulation: `compute_loss` returns the mean loss of its micro-batch, and
  `loss_is_scaled_for_ga = False` tells `Trainer.training_step` to divide it by the number of
  accumulation steps, so that k accumulated micro-batches give the mean of their gradients.
- saving: `_save` writes the model's own `save_pretrained(path, tokenizer=...)` (a plain HF backbone
  folder + metadata), then a model card (`README.md`), staged and moved in with `led_config.json` last
  (atomic.staged_contents). No pickled `training_args.bin`.
- Hub: checkpoint and final pushes upload the same model files, never a trainer-state file or a token
  (led_hf/trainers/hub.py).
- resuming: checkpoints hold plain backbones, so `_load_from_checkpoint` / `_load_best_model` call the
  model's `load_weights(folder)` instead of loading a state dict of the wrapper.
- non-finite losses / gradient norms: a `NonFiniteGuard` (trainers/numerics.py) stops training with one
  line naming the step and the loss part, or skips the update (`on_nonfinite`), checked once per step.
- epochs: an `EpochCallback` tells the training groups which epoch starts (fresh negatives each epoch).
- retrieval metrics: with a `retrieval_evaluator` (led_hf.evaluation.evaluator.RetrievalEvaluator),
  `evaluate()` adds its metrics (e.g. `eval_ndcg@10`), encoding with `make_encoders(model)` as the
  subclass's `representation` ("dense" embeddings or "sparse" SPLADE weights). No `eval_dataset` is
  needed: `eval_strategy` steps/epoch then runs the retrieval evaluation alone, and its metrics drive
  `metric_for_best_model`, `load_best_model_at_end` and `save_total_limit`.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_utils import IntervalStrategy

from led_hf.atomic import staged_contents
from led_hf.collators.encode import EncodeCollator
from led_hf.errors import LedError
from led_hf.modeling.checkpoint import LED_CONFIG_NAME
from led_hf.retrieval.encode import encode_batches
from led_hf.trainers.callbacks import EpochCallback
from led_hf.trainers.card import write_model_card
from led_hf.trainers.false_negatives import batch_false_negative_mask
from led_hf.trainers.grad_cache import grad_cache_training_step
from led_hf.trainers.hub import push_checkpoint, push_final
from led_hf.trainers.numerics import NonFiniteGuard

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
    # What `make_encoders` returns, for the retrieval evaluator: "dense" embeddings or "sparse" term weights.
    representation = "dense"

    def __init__(
        self,
        model=None,
        args=None,
        *rest,
        model_args=None,
        data_args=None,
        retrieval_evaluator=None,
        **kwargs,
    ):
        evaluates_by_retrieval = (
            retrieval_evaluator is not None
            and args is not None
            and args.eval_strategy != IntervalStrategy.NO
            and kwargs.get("eval_dataset") is None
        )
        if args is not None and args.eval_strategy != IntervalStrategy.NO and retrieval_evaluator is None:
            if kwargs.get("eval_dataset") is None:
                raise LedError(
                    f"eval_strategy={args.eval_strategy.value} needs something to evaluate: set eval_split "
                    "(retrieval metrics on that qrels split), or eval_strategy=no"
                )
        saved_strategy = args.eval_strategy if args is not None else None
        if evaluates_by_retrieval:
            # Trainer.__init__ refuses an eval_strategy without an eval_dataset; the retrieval evaluator
            # is what evaluates here, so the check is passed with the strategy off and it is put back.
            args.eval_strategy = IntervalStrategy.NO
        try:
            super().__init__(model, args, *rest, **kwargs)
        finally:
            if evaluates_by_retrieval:
                args.eval_strategy = saved_strategy
        self.model_args = model_args
        self.data_args = data_args
        self.retrieval_evaluator = retrieval_evaluator
        self.numerics = NonFiniteGuard(getattr(self.args, "on_nonfinite", "stop"))
        self._pending_eval_metrics: dict[str, float] = {}
        if getattr(self.args, "gradient_cache", False) and not self.supports_gradient_cache:
            raise LedError(f"gradient_cache: {type(self).__name__} has no representations to cache")
        self._metrics: dict[str, dict[str, list[float]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }
        dataset = self.train_dataset
        has_epoch_callback = any(isinstance(cb, EpochCallback) for cb in self.callback_handler.callbacks)
        if dataset is not None and hasattr(dataset, "set_epoch") and not has_epoch_callback:
            self.add_callback(EpochCallback(dataset))

    # -- loss ----------------------------------------------------------------------------------------
    # Bi-encoder trainers define `loss_from_representations(model, queries, passages, inputs) -> loss`;
    # the forward pass is here, so that GradCache (led_hf/trainers/grad_cache.py) can run the same loss
    # on cached representations.
    supports_gradient_cache = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(query=inputs["query"], passage=inputs["passage"])
        loss = self.loss_from_representations(model, *self.representations(outputs), inputs)
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def representations(outputs) -> tuple[torch.Tensor, torch.Tensor]:
        """(queries [B, D], passages [B*G, D]) of a bi-encoder's `EncoderOutput`."""
        return outputs.query_embeddings, outputs.passage_embeddings

    def loss_from_representations(self, model, queries, passages, inputs) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not define loss_from_representations")

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """The stock step, or GradCache's three passes with `gradient_cache=True`; its loss is checked for NaN/inf."""
        if not getattr(self.args, "gradient_cache", False):
            loss = super().training_step(model, inputs, num_items_in_batch)
        else:
            model.train()
            if hasattr(self.optimizer, "train") and callable(self.optimizer.train):
                self.optimizer.train()
            loss = grad_cache_training_step(
                self, model, self._prepare_inputs(inputs), self.args.gc_chunk_size
            )
        # non-finite losses are remembered without a sync and judged once per step (trainers/numerics.py)
        return self.numerics.observe_loss(loss)

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

    def false_negatives(self, inputs, group_size: int, in_batch: bool, gathered: bool):
        """The batch's false-negative mask (None when masking is off or the batch has no ids)."""
        if not getattr(self.args, "mask_false_negatives", True):
            return None
        return batch_false_negative_mask(inputs, group_size, in_batch, gathered)

    # -- logging of loss parts -----------------------------------------------------------------------
    def record_loss_parts(self, **parts: torch.Tensor | float) -> None:
        """Remember named loss parts of this micro-batch (detached) for the next log line.

        Tensors stay on their device until the log line: a `.item()` per part and step would make the
        host wait for the GPU several times a step."""
        mode = "train" if self.model.training else "eval"
        for name, value in parts.items():
            value = value.detach().float().reshape(()) if torch.is_tensor(value) else float(value)
            self._metrics[mode][name].append(value)
            if mode == "train":
                self.numerics.observe_part(name, value)

    # -- non-finite losses and gradient norms (trainers/numerics.py) --------------------------------
    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        # Under fp16 the GradScaler skips inf gradients itself (and lowers its scale): only losses count.
        skip = self.numerics.check_step(
            grad_norm,
            step=self.state.global_step + 1,
            accelerator=self.accelerator,
            check_grad_norm=self.accelerator.scaler is None,
        )
        if skip:  # no gradient: the optimizer leaves the weights and its moments untouched
            for parameter in model.parameters():
                parameter.grad = None
        return grad_norm

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._pending_eval_metrics and any(key.startswith("eval_") for key in logs):
            # in place: the stock evaluate() hands this same dict to on_evaluate and returns it
            logs.update(self._pending_eval_metrics)
            self._pending_eval_metrics = {}
        mode = "eval" if any(key.startswith("eval_") for key in logs) else "train" if "loss" in logs else None
        if mode == "train":
            logs = self.numerics.adjust_logs(logs)
        if mode is not None and self._metrics[mode]:
            names = sorted(self._metrics[mode])
            device = self.args.device
            means = torch.stack(
                [
                    torch.stack(
                        [torch.as_tensor(v).to(device, torch.float32) for v in self._metrics[mode][n]]
                    ).mean()
                    for n in names
                ]
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
        """The retrieval evaluator's metrics, plus the loss on an eval dataset when there is one.

        Every process must call it (the Trainer does): they share the passage encoding. One log line
        and one `on_evaluate` callback carry all the metrics.
        """
        if self.retrieval_evaluator is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics = self.retrieval_evaluator.evaluate_model(
            self.accelerator.unwrap_model(self.model),
            self.make_encoders,
            metric_key_prefix,
            representation=self.representation,
            accelerator=self.accelerator,
        )
        if eval_dataset is not None or self.eval_dataset is not None:
            self._pending_eval_metrics = dict(metrics)  # merged by log() into the stock evaluate()'s metrics
            try:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            finally:
                self._pending_eval_metrics = {}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def make_encoders(self, model):
        """(encode_queries(texts), encode_passages(titles, texts)) for the retrieval evaluator: `led encode`'s
        loop (`encode_batches`: batches of `per_device_eval_batch_size`, sorted by text length) at the
        training max lengths, in the training precision (`accelerator.autocast()`: bf16/fp16 when
        training in it). Dense outputs come back as float32 arrays [n, H], sparse ones as CSR [n, V]."""
        import scipy.sparse as sp

        from led_hf.evaluation.search import as_csr

        tokenizer = self.processing_class
        queries = EncodeCollator(tokenizer, getattr(self.data_args, "query_max_length", 32), kind="query")
        passages = EncodeCollator(
            tokenizer, getattr(self.data_args, "passage_max_length", 128), kind="passage"
        )
        sparse = self.representation == "sparse"

        def run(features: list[dict], collate, encode):
            def encode_fn(batch):
                with self.accelerator.autocast():
                    return encode(batch)

            lengths = np.asarray([len(f.get("title") or "") + len(f["text"]) for f in features])
            positions, parts = [], []
            for rows, outputs in encode_batches(
                features, collate, encode_fn, self.args.per_device_eval_batch_size, self.args.device, lengths
            ):
                positions.append(rows)
                parts.append(as_csr(outputs, "batch") if sparse else outputs.float().numpy())
            order = np.concatenate(positions)
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            return (sp.vstack(parts, format="csr") if sparse else np.concatenate(parts))[inverse]

        def encode_queries(texts):
            return run([{"id": "", "text": text} for text in texts], queries, model.encode_query)

        def encode_passages(titles, texts):
            features = [{"id": "", "title": title, "text": text} for title, text in zip(titles, texts)]
            return run(features, passages, model.encode_passage)

        return encode_queries, encode_passages

    # -- saving and loading --------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        # Staged, `led_config.json` moved last: a kill mid-save never leaves a folder that loads as a model.
        with staged_contents(output_dir, LED_CONFIG_NAME) as staging:
            model.save_pretrained(staging, tokenizer=self.processing_class, state_dict=state_dict)
            write_model_card(
                staging,
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

    # -- Hub -----------------------------------------------------------------------------------------
    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoint pushes carry the card, led_config.json and sentence-transformers files, and never
        `training_args.bin` (it pickles hub_token): led_hf/trainers/hub.py."""
        push_checkpoint(self, checkpoint_folder)

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs,
    ):
        """Upload `output_dir` (model, tokenizer, card, metadata; no trainer-state file) to `hub_model_id`."""
        return push_final(self, commit_message, blocking, token, revision, private)

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
