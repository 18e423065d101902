"""Argument dataclasses of the training recipes, parsed by `transformers.HfArgumentParser`.

A config file (JSON/YAML) holds any field of these classes flat, e.g.
`{"model_name_or_path": "Luyu/co-condenser-marco", "data": "msmarco", "learning_rate": 1e-5, ...}`;
`--flag value` options override it (led_hf/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from led_hf.errors import LedError

EMPTY_POOL_CHOICES = ("skip", "in_batch")  # led_hf.data.groups.EMPTY_POOL_POLICIES


@dataclass
class ModelArguments:
    """Which encoder to start from and how it turns texts into vectors."""

    model_name_or_path: str = field(metadata={"help": "Folder or hub id of the initial model (any AutoModel)."})
    pooling: str | None = field(default=None, metadata={
        "help": "cls (coCondenser, the reference) or mean (MiniLM-style). Default: the model folder's "
                "led_config.json, else its sentence-transformers pooling, else cls."})
    normalize: bool | None = field(default=None, metadata={
        "help": "L2-normalise embeddings (cosine scores). Default: from the model folder, else off (raw dot)."})
    temperature: float | None = field(default=None, metadata={
        "help": "Scores are divided by it in the loss. Default: from the model folder, else 0.05 when "
                "normalised and 1.0 for raw dot products."})
    separate_encoders: bool = field(default=False, metadata={
        "help": "Train separate query and passage encoders (both start from the same weights)."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run model code shipped with a hub model (off: only architectures transformers knows)."})


@dataclass
class DataArguments:
    """Where the training groups come from (a folder written by `led prepare`)."""

    data: str = field(metadata={"help": "Prepared dataset folder (output of `led prepare`)."})
    train_split: str = field(default="train", metadata={"help": "qrels split whose rows are the training examples."})
    negs_sources: list[str] = field(default_factory=lambda: ["bm25"], metadata={
        "help": "Negative sources (DATA/negatives/<source>), concatenated in this order; "
                "a comma-separated string is accepted too."})
    num_negs_per_system: int = field(default=200, metadata={
        "help": "Each source's list is truncated to this many passages before pooling."})
    num_negatives: int = field(default=7, metadata={"help": "Hard negatives per query (group size = 1 + this)."})
    dedupe_negatives: bool = field(default=False, metadata={
        "help": "Remove passages found by several sources from the pool (reference: keep duplicates)."})
    query_max_length: int = field(default=32, metadata={"help": "Query tokens, special tokens included."})
    passage_max_length: int = field(default=128, metadata={"help": "Passage tokens, special tokens included."})
    empty_pool: str = field(default="skip", metadata={
        "help": "A query with no negatives left: skip its rows, or in_batch (other queries' positives "
                "fill its group)."})

    eval_split: str | None = field(default=None, metadata={
        "help": "qrels split evaluated by retrieval (led_hf.evaluation.RetrievalEvaluator) after training and "
                "at every `trainer.evaluate()`; metrics go to the logs, eval_results.json and the model card."})
    eval_mode: str = field(default="full", metadata={
        "help": "full: search the corpus (or eval_max_passages of it); rerank: score DATA/candidates/<split>."})
    eval_max_queries: int | None = field(default=1000, metadata={
        "help": "Evaluate a fixed, seeded subset of this many queries (spec §6: 1000)."})
    eval_max_passages: int | None = field(default=None, metadata={
        "help": "full mode: search a sub-corpus of this many passages (judged ones first); default all."})

    def __post_init__(self):
        if isinstance(self.negs_sources, str):
            self.negs_sources = [self.negs_sources]
        self.negs_sources = [name.strip() for item in self.negs_sources for name in str(item).split(",") if name.strip()]
        if not self.negs_sources:
            raise LedError("negs_sources is empty: name at least one DATA/negatives/<source>")
        if self.empty_pool not in EMPTY_POOL_CHOICES:
            raise LedError(f"empty_pool must be one of {', '.join(EMPTY_POOL_CHOICES)}, got {self.empty_pool!r}")
        for name in ("num_negatives", "query_max_length", "passage_max_length", "num_negs_per_system"):
            if getattr(self, name) < (0 if name == "num_negatives" else 1):
                raise LedError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class DenseTrainingArguments(TrainingArguments):
    """`TrainingArguments` with retrieval-friendly defaults, plus the dense loss options.

    Changed defaults: `remove_unused_columns=False` (the groups' text columns are no model inputs),
    `ddp_broadcast_buffers=False` (BERT's position-id buffers need no syncing, and broadcasting them
    every step collides with a second forward), `dataloader_drop_last=True` (a gathered batch across
    devices needs the same number of rows everywhere; one incomplete batch per epoch is not worth it),
    `ddp_find_unused_parameters=False` (every trainable parameter gets a gradient: DenseEncoder
    freezes BERT's unused pooler; skipping the per-step graph search is faster),
    `prediction_loss_only=True` (evaluation reports the loss, not the embeddings),
    `per_device_eval_batch_size=64` (evaluation encodes, no backward pass),
    `logging_steps=10`, `save_total_limit=3`.
    """

    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Keep all dataset columns (the collator needs the ids and texts)."})
    ddp_broadcast_buffers: bool | None = field(default=False, metadata={
        "help": "`broadcast_buffers` of DistributedDataParallel (off: nothing to sync in BERT-like encoders)."})
    dataloader_drop_last: bool = field(default=True, metadata={
        "help": "Drop the last incomplete batch (equal batch sizes across devices for the gathered loss)."})
    ddp_find_unused_parameters: bool | None = field(default=False, metadata={
        "help": "`find_unused_parameters` of DistributedDataParallel (off: all trainable parameters are used)."})
    prediction_loss_only: bool = field(default=True, metadata={
        "help": "Evaluation computes the loss only (the embeddings are not collected)."})
    per_device_eval_batch_size: int = field(default=64, metadata={
        "help": "Texts per forward pass when evaluating (encoding needs no backward pass: larger than training)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N optimizer steps (or a ratio < 1)."})
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep at most this many checkpoints."})
    in_batch_negatives: bool = field(default=True, metadata={
        "help": "Score each query against every passage of the (global) batch; off: its own group only."})
    gather_across_devices: bool = field(default=True, metadata={
        "help": "Under DDP, share the passages (and queries) of all processes as negatives (spec §4)."})


@dataclass
class SpladeModelArguments:
    """Which masked-LM to start the SPLADE encoder from and how it pools (spec §3)."""

    model_name_or_path: str = field(metadata={
        "help": "Folder or hub id of any AutoModelForMaskedLM (distilbert-base-uncased in the reference), "
                "or a SPLADE checkpoint written by led-hf."})
    mask_special_tokens: bool = field(default=True, metadata={
        "help": "Leave [CLS] and each text's final [SEP] out of the max-pooling (reference: on)."})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "Run model code shipped with a hub model (off: only architectures transformers knows)."})


@dataclass
class SpladeTrainingArguments(DenseTrainingArguments):
    """`DenseTrainingArguments` plus the FLOPS regulariser (spec §4):

        loss = contrastive + λ_q(step) · FLOPS(Q) + λ_d(step) · FLOPS(D),   λ(step) = λ · min(1, step / k)^2

    k = `flops_warmup_steps` optimizer steps (0: constant λ, the reference); the step is the Trainer's
    global step, so the schedule continues correctly after `resume_from_checkpoint`.
    """

    query_flops_weight: float = field(default=6e-4, metadata={"help": "λ_q, FLOPS weight of the queries."})
    passage_flops_weight: float = field(default=8e-4, metadata={"help": "λ_d, FLOPS weight of the passages."})
    flops_warmup_steps: int = field(default=0, metadata={
        "help": "Quadratic warm-up of both λ over this many optimizer steps (0: constant, the reference)."})
    flops_over_global_batch: bool = field(default=False, metadata={
        "help": "Under DDP, average FLOPS over the gathered global batch instead of each device's own rows."})

    def __post_init__(self):
        super().__post_init__()
        if self.query_flops_weight < 0 or self.passage_flops_weight < 0 or self.flops_warmup_steps < 0:
            raise LedError("query_flops_weight, passage_flops_weight and flops_warmup_steps must be >= 0")
