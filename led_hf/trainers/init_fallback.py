"""Keep the initial model when training does not beat it on the evaluation split (`fallback_to_init`).

    before training:  m_0 = metric(initial model) on eval_split    (the evaluator's fixed query subset)
                      W_0 = the initial weights, copied to the CPU (by the main process only; under DDP the
                            other ranks receive W_0 by broadcast when it is the model kept)
    after training:   m_T = metric(trained model), same queries
    saved model    =  the trained one if m_T beats m_0 by more than g, else W_0
                      (beats: m_T > m_0 + g, or m_T < m_0 - g for a loss; g = fallback_min_gain, default 0)

The metric is `metric_for_best_model` (default `eval_ndcg@10`; a loss is better lower). A fine-tuning that
hurts on the dev split (a collection unlike the ones the recipe was tuned on, too many graded positives,
a learning rate too high) then leaves the model as it was instead of worse; a margin g above 0 also keeps
the init when the dev gain is within the noise of a small dev split (a few dozen queries). The decision is
logged, and the metrics written after it (`eval_results.json`, the model card) are those of the model saved:
`init_*` for the initial model, `trained_*` for the trained one, `eval_*` for the saved one, `kept_init` 1 or
0 and the margin `fallback_min_gain`. How far the decision stands above the split's noise is written beside
it (the decision itself stays the comparison of means above): `fallback_queries` and the p-values of a paired
randomization and a paired t-test of m_T - m_0 over the same queries (`fallback_p_randomization`,
`fallback_p_t`, docs/method.md §6); a large p says the split could not tell the two models apart. The test
reads the evaluator's per-query values only when their mean is the compared score (the evaluation they come
from is the one being decided on); otherwise it is left out with a warning. `fallback_metric` and
`fallback_greater_is_better` name what was compared, for the pipeline report's note.
"""

from __future__ import annotations

import logging

import torch

from led_hf.errors import LedError
from led_hf.evaluation.significance import (
    beats,
    detectable_difference,
    difference_phrase,
    paired_randomization_test,
    paired_t_test,
)

logger = logging.getLogger(__name__)


def metric_name(args) -> tuple[str, bool]:
    """(metric without its `eval_` prefix, greater is better) from `metric_for_best_model`."""
    name = args.metric_for_best_model or "ndcg@10"
    name = name[len("eval_") :] if name.startswith("eval_") else name
    greater = args.greater_is_better if args.greater_is_better is not None else not name.endswith("loss")
    return name, greater


def refuse_sharded_weights(trainer) -> None:
    """The guard copies and reloads whole state dicts; under DeepSpeed ZeRO-3 or FSDP each process holds a shard
    of the weights, so it would save a model it never compared: refuse with a clear error instead."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)  # None without DeepSpeed
    if getattr(plugin, "zero_stage", None) == 3:
        raise LedError(
            "fallback_to_init needs whole weights on every process: not with DeepSpeed ZeRO-3 (use ZeRO-2, "
            "configs/accelerate/deepspeed_zero2.yaml, or DDP)"
        )
    if getattr(trainer, "is_fsdp_enabled", False):
        raise LedError(
            "fallback_to_init needs whole weights on every process: not with FSDP (use DDP or ZeRO-2)"
        )


class InitFallback:
    """Evaluates and keeps the initial model at construction; `settle` picks the one to save after training."""

    def __init__(self, trainer):
        refuse_sharded_weights(trainer)
        self.metric, self.greater = metric_name(trainer.args)
        self.min_gain = trainer.args.fallback_min_gain
        model = trainer.accelerator.unwrap_model(trainer.model)
        # one host copy in all (rank 0), not one per rank: the others get W_0 by broadcast if it is kept
        self.weights = (
            {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
            if trainer.accelerator.is_main_process
            else None
        )
        self.init_metrics = trainer.evaluate(metric_key_prefix="init")
        self.init = self._value(self.init_metrics, "init")
        self.init_per_query = self._per_query(trainer, self.init)

    def _value(self, metrics: dict, prefix: str) -> float:
        key = f"{prefix}_{self.metric}"
        if key not in metrics:
            raise LedError(
                f"fallback_to_init compares {key!r}, which the evaluation does not report "
                f"(it reports {', '.join(sorted(metrics))}): set metric_for_best_model to one of them"
            )
        return float(metrics[key])

    def _per_query(self, trainer, score: float) -> dict[str, float] | None:
        """{qid: metric} of the trainer's latest evaluation, where its evaluator keeps them (rank 0 of a
        retrieval evaluator, a per-query metric) and their mean is `score`, the value being decided on;
        else None (a warning when the values belong to another evaluation)."""
        found = getattr(getattr(trainer, "retrieval_evaluator", None), "per_query", None)
        if not found or self.metric not in next(iter(found.values())):
            return None
        values = {qid: entry[self.metric] for qid, entry in found.items()}
        mean = sum(values.values()) / len(values)
        if abs(mean - score) > 1e-6:
            logger.warning(
                "fallback_to_init: the evaluator's latest per-query %s (mean %.4f) are not those of the score "
                "decided on (%.4f); the decision is written without its paired test",
                self.metric,
                mean,
                score,
            )
            return None
        return values

    def paired_test(self, trained_per_query: dict[str, float] | None) -> dict[str, float]:
        """How far the decision stands above the dev split's noise: `fallback_queries`, the p-values of a
        paired randomization and a paired t-test of trained - init over the same queries, and the difference
        those queries detect with 80% power (`fallback_detectable`; led_hf.evaluation.significance); empty
        without per-query values for both models."""
        init = self.init_per_query
        if not init or not trained_per_query or init.keys() != trained_per_query.keys() or len(init) < 2:
            return {}
        qids = sorted(init)
        a, b = [trained_per_query[q] for q in qids], [init[q] for q in qids]
        return {
            "fallback_queries": float(len(qids)),
            "fallback_p_randomization": paired_randomization_test(a, b),
            "fallback_p_t": paired_t_test(a, b)[1],
            "fallback_detectable": detectable_difference([x - y for x, y in zip(a, b)]),
        }

    def _restore(self, trainer) -> None:
        """Put W_0 back into the model on every rank: rank 0 loads its copy, then (DDP) broadcasts each
        tensor of the state dict in place; every rank takes the same decision (the evaluator broadcasts its
        metrics), so every rank enters the broadcasts."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        with torch.no_grad():
            if self.weights is not None:
                model.load_state_dict(self.weights)
            if trainer.accelerator.num_processes > 1:
                for tensor in model.state_dict().values():
                    torch.distributed.broadcast(tensor, src=0)

    def settle(self, trainer, metrics: dict) -> dict:
        """The metrics of the model to save, given the trained model's `eval_*` metrics (the trainer's latest
        evaluation, whose per-query values the paired test reads); reloads W_0 when the trained model does not
        beat it."""
        trained = self._value(metrics, "eval")
        kept_init = not beats(trained, self.init, self.greater, self.min_gain)
        test = self.paired_test(self._per_query(trainer, trained))
        noise = ""
        if test:
            phrase = difference_phrase(
                trained - self.init,
                test["fallback_queries"],
                test["fallback_p_randomization"],
                test["fallback_detectable"],
            )
            noise = f" ({phrase})"
        result = {
            **self.init_metrics,
            **{f"trained_{k[5:]}": v for k, v in metrics.items() if k.startswith("eval_")},
            **test,
        }
        if kept_init:
            self._restore(trainer)
            saved = {f"eval_{k[5:]}": v for k, v in self.init_metrics.items() if k.startswith("init_")}
            logger.warning(
                "fallback_to_init: the trained model's %s (%.4f) does not beat the initial model's (%.4f) "
                "by more than %g on the evaluation split%s; the initial weights are saved",
                self.metric,
                trained,
                self.init,
                self.min_gain,
                noise,
            )
            trainer.log({**saved, "kept_init": 1.0})  # the card reads the latest eval_* entry
        else:
            saved = dict(metrics)
            logger.info(
                "fallback_to_init: trained %s %.4f beats the initial %.4f%s",
                self.metric,
                trained,
                self.init,
                noise,
            )
        return {
            **result,
            **saved,
            "kept_init": float(kept_init),
            "fallback_min_gain": self.min_gain,
            "fallback_metric": self.metric,
            "fallback_greater_is_better": float(self.greater),
        }
