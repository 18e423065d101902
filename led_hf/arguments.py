"""Argument dataclasses of the training recipes, parsed by `transformers.HfArgumentParser`.

A config file (JSON/YAML) holds any field of these classes flat, e.g.
`{"model_name_or_path": "Luyu/co-condenser-marco", "data": "msmarco", "learning_rate": 1e-5, ...}`;
`--flag value` options override it (led_hf/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from led_hf import precision
from led_hf.errors import LedError

EMPTY_POOL_CHOICES = ("skip", "in_batch")  # led_hf.data.groups.EMPTY_POOL_POLICIES
GROUP_BY_CHOICES = ("query", "pair")  # led_hf.data.groups.GROUP_BY
POSITIVE_SAMPLING_CHOICES = ("uniform", "grade")  # led_hf.data.groups.POSITIVE_SAMPLING


@dataclass
class ModelArguments:
    """Which encoder to start from and how it turns texts into vectors."""

    model_name_or_path: str = field(
        metadata={"help": "Folder or hub id of the initial model (any AutoModel)."}
    )
    pooling: str | None = field(
        default=None,
        metadata={
            "help": "cls (coCondenser, the reference) or mean (MiniLM-style). Default: the model folder's "
            "led_config.json, else its sentence-transformers pooling, else cls."
        },
    )
    normalize: bool | None = field(
        default=None,
        metadata={
            "help": "L2-normalise embeddings (cosine scores). Default: from the model folder, else off (raw dot)."
        },
    )
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "Scores are divided by it in the loss. Default: from the model folder, else 0.05 when "
            "normalised and 1.0 for raw dot products."
        },
    )
    separate_encoders: bool = field(
        default=False,
        metadata={"help": "Train separate query and passage encoders (both start from the same weights)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run model code shipped with a hub model (off: only architectures transformers knows)."
        },
    )


@dataclass
class PoolArguments:
    """Which candidates a training query can draw: its positives in `train_split` and its negative pool
    (each source's list truncated to `num_negs_per_system`, concatenated). The training recipes
    (`DataArguments`) and `led score-teacher` (which scores exactly that pool) share these options."""

    data: str = field(metadata={"help": "Prepared dataset folder (output of `led prepare`)."})
    train_split: str = field(
        default="train", metadata={"help": "qrels split whose rows are the training examples."}
    )
    negs_sources: list[str] = field(
        default_factory=lambda: ["bm25"],
        metadata={
            "help": "Negative sources (DATA/negatives/<source>), concatenated in this order; "
            "a comma-separated string is accepted too."
        },
    )
    num_negs_per_system: int = field(
        default=200,
        metadata={"help": "Each source's list is truncated to this many passages before pooling."},
    )

    def __post_init__(self):
        if isinstance(self.negs_sources, str):
            self.negs_sources = [self.negs_sources]
        self.negs_sources = [
            name.strip() for item in self.negs_sources for name in str(item).split(",") if name.strip()
        ]
        if not self.negs_sources:
            raise LedError("negs_sources is empty: name at least one DATA/negatives/<source>")
        if self.num_negs_per_system < 1:
            raise LedError(f"num_negs_per_system must be positive, got {self.num_negs_per_system}")


@dataclass
class DataArguments(PoolArguments):
    """Where the training groups come from (a folder written by `led prepare`) and how they are drawn."""

    group_by: str = field(
        default="query",
        metadata={
            "help": "query: one training row per query per epoch, its positive drawn per epoch from its qrels "
            "(Tevatron); pair: one row per (query, positive) qrels pair (the reference recipe, MS MARCO parity)."
        },
    )
    positive_min_score: int = field(
        default=1,
        metadata={
            "help": "Lowest qrels grade drawn as a training positive. Lower positive grades still count as "
            "positives: never negatives, masked as false negatives."
        },
    )
    positive_sampling: str = field(
        default="uniform",
        metadata={
            "help": "group_by query: uniform (each positive once every n epochs, in a fixed per-query shuffle) "
            "or grade (drawn with probability proportional to its qrels grade)."
        },
    )
    num_negatives: int = field(
        default=7, metadata={"help": "Hard negatives per query (group size = 1 + this)."}
    )
    dedupe_negatives: bool = field(
        default=False,
        metadata={
            "help": "Remove passages found by several sources from the pool (reference: keep duplicates)."
        },
    )
    query_max_length: int = field(default=32, metadata={"help": "Query tokens, special tokens included."})
    passage_max_length: int = field(
        default=128, metadata={"help": "Passage tokens, special tokens included."}
    )
    empty_pool: str = field(
        default="skip",
        metadata={
            "help": "A query with no negatives left: skip its rows, or in_batch (other queries' positives "
            "fill its group)."
        },
    )

    eval_split: str | None = field(
        default=None,
        metadata={
            "help": "qrels split evaluated by retrieval (led_hf.evaluation.RetrievalEvaluator) at every "
            "eval_strategy step/epoch and after training (no eval_dataset needed); metrics (eval_ndcg@10, "
            "eval_mrr@10, ...) go to the logs, metric_for_best_model, eval_results.json and the model card."
        },
    )
    eval_mode: str = field(
        default="full",
        metadata={
            "help": "full: search the corpus (or eval_max_passages of it); rerank: score DATA/candidates/<split>."
        },
    )
    eval_max_queries: int | None = field(
        default=1000,
        metadata={"help": "Evaluate a fixed, seeded subset of this many queries (docs/method.md §6: 1000)."},
    )
    eval_max_passages: int | None = field(
        default=None,
        metadata={
            "help": "full mode: search a sub-corpus of this many passages: the subset's judged passages, its "
            "candidates, then seeded distractors; default the full corpus."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.empty_pool not in EMPTY_POOL_CHOICES:
            raise LedError(
                f"empty_pool must be one of {', '.join(EMPTY_POOL_CHOICES)}, got {self.empty_pool!r}"
            )
        if self.group_by not in GROUP_BY_CHOICES:
            raise LedError(f"group_by must be one of {', '.join(GROUP_BY_CHOICES)}, got {self.group_by!r}")
        if self.positive_sampling not in POSITIVE_SAMPLING_CHOICES:
            raise LedError(
                f"positive_sampling must be one of {', '.join(POSITIVE_SAMPLING_CHOICES)}, "
                f"got {self.positive_sampling!r}"
            )
        if self.positive_min_score < 1:
            raise LedError(f"positive_min_score must be >= 1, got {self.positive_min_score}")
        for name in ("num_negatives", "query_max_length", "passage_max_length"):
            if getattr(self, name) < (0 if name == "num_negatives" else 1):
                raise LedError(f"{name} must be positive, got {getattr(self, name)}")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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
    `logging_steps=10`, `save_total_limit=3`, `dataloader_pin_memory` only when CUDA is present,
    `bf16` unset = on when training on a CPU with native bf16 (led_hf/precision.py), resolved here once.
    """

    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 autocast over fp32 master weights (Trainer's mixed precision). Default: on when training "
            "runs on a CPU with native bf16 (AVX512-BF16 or AMX; LED_HF_CPU_BF16=0/1 overrides the detection), "
            "off elsewhere (GPU recipes set bf16 or fp16 themselves). `--bf16 false` opts out; led_args.json "
            "records the resolved value."
        },
    )

    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep all dataset columns (the collator needs the ids and texts)."}
    )
    ddp_broadcast_buffers: bool | None = field(
        default=False,
        metadata={
            "help": "`broadcast_buffers` of DistributedDataParallel (off: nothing to sync in BERT-like encoders)."
        },
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={
            "help": "Drop the last incomplete batch (equal batch sizes across devices for the gathered loss)."
        },
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={
            "help": "`find_unused_parameters` of DistributedDataParallel (off: all trainable parameters are used)."
        },
    )
    prediction_loss_only: bool = field(
        default=True,
        metadata={"help": "Evaluation computes the loss only (the embeddings are not collected)."},
    )
    per_device_eval_batch_size: int = field(
        default=64,
        metadata={
            "help": "Texts per forward pass when evaluating (encoding needs no backward pass: larger than training)."
        },
    )
    logging_steps: float = field(
        default=10, metadata={"help": "Log every N optimizer steps (or a ratio < 1)."}
    )
    save_total_limit: int | None = field(default=3, metadata={"help": "Keep at most this many checkpoints."})
    dataloader_pin_memory: bool = field(
        default_factory=_cuda_available,
        metadata={
            "help": "Pin batches in page-locked memory (default: on only when CUDA is available; pointless on CPU)."
        },
    )
    in_batch_negatives: bool = field(
        default=True,
        metadata={
            "help": "Score each query against every passage of the (global) batch; off: its own group only."
        },
    )
    gather_across_devices: bool = field(
        default=True,
        metadata={
            "help": "Under DDP, share the passages (and queries) of all processes as negatives (docs/method.md §4)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an output_dir that holds a led-hf run (its checkpoints are removed); without it "
            "a rerun resumes from the last checkpoint, and a finished run is refused."
        },
    )
    on_nonfinite: str = field(
        default="stop",
        metadata={
            "help": "A NaN/inf loss or gradient norm: `stop` (one-line error naming the step and loss part) "
            "or `skip` (drop that step's update, counted as `skipped_batches` in the logs).",
            "choices": ["stop", "skip"],
        },
    )
    gradient_cache: bool = field(
        default=False,
        metadata={
            "help": "GradCache: encode the batch in chunks without activations, take the loss's gradient with "
            "respect to the representations, then re-encode chunk by chunk with grad (led_hf/trainers/"
            "grad_cache.py). Peak memory is one chunk's: the per-device batch is no longer bounded by memory."
        },
    )
    gc_chunk_size: int = field(
        default=8,
        metadata={"help": "GradCache: queries (with their groups' passages) per chunk."},
    )
    hub_license: str | None = field(
        default=None,
        metadata={
            "help": "License in the model card's metadata (a Hub license id, e.g. apache-2.0); default: the "
            "base model's, when its lineage records one."
        },
    )
    hub_datasets: list[str] | None = field(
        default=None,
        metadata={
            "help": "Hub dataset ids in the model card's metadata; default: from the prepared data's manifest "
            "(MS MARCO -> microsoft/ms_marco, a BEIR dataset -> BeIR/<name>)."
        },
    )

    no_duplicates_in_batch: bool = field(
        default=True,
        metadata={
            "help": "Order each epoch so that no global batch (all devices) holds a query or a passage twice "
            "(led_hf.data.batching.NoDuplicatesSampler); applies with train_sampling_strategy random."
        },
    )
    mask_false_negatives: bool = field(
        default=True,
        metadata={
            "help": "Leave candidates that are qrels positives of the query (any grade; in-batch, cross-device "
            "or hard negatives) out of the contrastive denominator and the LED rank/KL pairs."
        },
    )

    fallback_to_init: bool = field(
        default=False,
        metadata={
            "help": "With eval_split: evaluate the initial model too, and save its weights instead of the trained "
            "ones unless training beats it on metric_for_best_model (default eval_ndcg@10); "
            "eval_results.json holds init_*, trained_*, eval_* (the saved model), kept_init and the decision's "
            "paired test over the evaluation queries (fallback_queries, fallback_p_randomization, fallback_p_t) "
            "and the metric compared (fallback_metric, fallback_greater_is_better)."
        },
    )
    fallback_min_gain: float = field(
        default=0.0,
        metadata={
            "help": "With fallback_to_init: the trained model is saved only if it beats the initial one by more "
            "than this, in metric_for_best_model's units (e.g. 0.005 nDCG@10), so that a dev gain within the "
            "noise of a small dev split keeps the init."
        },
    )

    def __post_init__(self):
        # before TrainingArguments' own checks, which read bf16 (mixed precision, device checks)
        on_cpu = precision.trains_on_cpu(self.use_cpu)
        self.bf16 = precision.training_bf16(self.bf16, self.fp16, on_cpu)
        if self.bf16 and on_cpu:
            self.use_cpu = True  # TrainingArguments refuses bf16 on a CPU-only machine unless told so
        super().__post_init__()
        if self.gc_chunk_size < 1:
            raise LedError(f"gc_chunk_size must be at least 1, got {self.gc_chunk_size}")
        if self.fallback_min_gain < 0:
            raise LedError(f"fallback_min_gain must be 0 or more, got {self.fallback_min_gain}")


@dataclass
class SpladeModelArguments:
    """Which masked-LM to start the SPLADE encoder from and how it pools (docs/method.md §3)."""

    model_name_or_path: str = field(
        metadata={
            "help": "Folder or hub id of any AutoModelForMaskedLM (distilbert-base-uncased in the reference), "
            "or a SPLADE checkpoint written by led-hf."
        }
    )
    mask_special_tokens: bool = field(
        default=True,
        metadata={"help": "Leave [CLS] and each text's final [SEP] out of the max-pooling (reference: on)."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run model code shipped with a hub model (off: only architectures transformers knows)."
        },
    )


@dataclass
class SpladeTrainingArguments(DenseTrainingArguments):
    """`DenseTrainingArguments` plus the FLOPS regulariser (docs/method.md §4) and an optional
    distillation term towards precomputed teacher scores:

        loss = contrastive + λ_q(step) · FLOPS(Q) + λ_d(step) · FLOPS(D) [+ w_kl · KL(t ‖ s; T)]
        λ(step) = λ · min(1, step / k)^2

    k = `flops_warmup_steps` optimizer steps (0: constant λ, the reference); the step is the Trainer's
    global step, so the schedule continues correctly after `resume_from_checkpoint`. t: the scores
    `led score-teacher` stored in DATA/teacher_scores/`teacher_scores_name` (a cross-encoder, a dense
    bi-encoder, another SPLADE, BM25) of each query's own candidates; s: the SPLADE dot products.
    """

    query_flops_weight: float = field(default=6e-4, metadata={"help": "λ_q, FLOPS weight of the queries."})
    passage_flops_weight: float = field(default=8e-4, metadata={"help": "λ_d, FLOPS weight of the passages."})
    flops_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Quadratic warm-up of both λ over this many optimizer steps (0: constant, the reference)."
        },
    )
    flops_over_global_batch: bool = field(
        default=False,
        metadata={
            "help": "Under DDP, average FLOPS over the gathered global batch instead of each device's own rows."
        },
    )
    kl_weight: float = field(
        default=0.0,
        metadata={
            "help": "w_kl, weight of a KL distillation term towards precomputed teacher scores of each query's "
            "candidates (teacher_scores_name; 0, the reference, disables it)."
        },
    )
    kl_temperature: float = field(
        default=1.0, metadata={"help": "T of the KL term: softmax(t / T) against softmax(s / T)."}
    )
    teacher_scores_name: str | None = field(
        default=None,
        metadata={
            "help": "DATA/teacher_scores/<name> that the KL term distils from (`led score-teacher`: a "
            "cross-encoder, dense, SPLADE or BM25 teacher)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.query_flops_weight < 0 or self.passage_flops_weight < 0 or self.flops_warmup_steps < 0:
            raise LedError("query_flops_weight, passage_flops_weight and flops_warmup_steps must be >= 0")
        if self.kl_weight < 0 or not self.kl_temperature > 0:
            raise LedError("kl_weight must be >= 0 and kl_temperature positive")
        if self.kl_weight > 0 and not self.teacher_scores_name:
            raise LedError(f"kl_weight is {self.kl_weight:g} but teacher_scores_name is not set")


@dataclass
class CrossEncoderModelArguments:
    """Which model the cross-encoder starts from (`led train cross-encoder`)."""

    model_name_or_path: str = field(
        metadata={
            "help": "Folder or hub id of a sequence-classification model (a trained cross-encoder), or of any "
            "backbone (e.g. bundled:all-minilm-l6-v2, bundled:splade-tiny), which gets a fresh 1-logit head."
        }
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "help": "Run model code shipped with a hub model (off: only architectures transformers knows)."
        },
    )


@dataclass
class CrossEncoderDataArguments(DataArguments):
    """`DataArguments` for (query, passage) pairs: one pair length replaces query/passage_max_length (unused),
    and evaluation re-ranks a TREC run (`eval_run`) instead of searching (eval_mode, eval_max_passages unused)."""

    max_length: int = field(
        default=256,
        metadata={
            "help": "Tokens of a `[CLS] query [SEP] title [SEP] text [SEP]` pair, special tokens included."
        },
    )
    eval_run: str | None = field(
        default=None,
        metadata={
            "help": "TREC run whose top eval_depth passages per eval_split query are re-ranked after training; "
            "the metrics go to eval_results.json and the model card."
        },
    )
    eval_depth: int = field(default=100, metadata={"help": "Passages per query re-ranked by the evaluation."})

    def __post_init__(self):
        super().__post_init__()
        if self.max_length < 2 or self.eval_depth < 1:
            raise LedError(
                f"max_length must be >= 2 and eval_depth >= 1, got {self.max_length}, {self.eval_depth}"
            )
        if self.eval_run and not self.eval_split:
            raise LedError("eval_run needs eval_split (the qrels the re-ranked run is scored against)")


@dataclass
class CrossEncoderTrainingArguments(DenseTrainingArguments):
    """`DenseTrainingArguments` for a cross-encoder: each pair is scored alone, so there are no in-batch
    negatives and nothing is gathered across devices (`in_batch_negatives` and `gather_across_devices` have
    no effect); `dataloader_drop_last` therefore defaults to off."""

    dataloader_drop_last: bool = field(
        default=False,
        metadata={"help": "Drop the last incomplete batch (not needed: the listwise loss is per query)."},
    )


TEACHER_SCORE_MODES = ("online", "precomputed")
RANK_LOSS_FORMS = ("pairwise", "listwise")


@dataclass
class LEDTrainingArguments(DenseTrainingArguments):
    """`DenseTrainingArguments` plus the LED teachers and distillation losses (docs/method.md §4):

        loss = contrastive + rank_weight · rank_consistency(s, t_splade) [+ kl_weight · KL(t_ce ‖ s; T)]

    s, t: scores of each query's own G candidates ([B, G], positive first). The teachers are frozen and
    never saved with the student. Defaults are LED's reference values (rank weight 1.0, positive in the
    rank loss, no KL); LED w/ RT sets `cross_encoder_name_or_path`, kl_weight 1.5, kl_temperature 3,
    rank_weight 1.2, rank_include_positive false.
    """

    teacher_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The frozen SPLADE teacher (a `led train splade` checkpoint or any masked-LM folder; "
            "bundled:splade-tiny). Needed by the rank loss unless teacher_scores=precomputed."
        },
    )
    cross_encoder_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "The frozen cross-encoder teacher of LED w/ RT (a `led train cross-encoder` checkpoint or any "
            "1-logit sequence classifier). Needed when kl_weight > 0 unless teacher_scores=precomputed."
        },
    )
    rank_weight: float = field(default=1.0, metadata={"help": "w_rank, weight of the rank-consistency loss."})
    rank_include_positive: bool = field(
        default=True,
        metadata={"help": "Rank the positive with the negatives in the rank loss (LED: on; LED w/ RT: off)."},
    )
    rank_margin: float = field(default=0.0, metadata={"help": "Hinge margin of the rank loss (reference 0)."})
    rank_loss: str = field(
        default="pairwise",
        metadata={
            "help": "Form of the lexical teacher's term: pairwise (LED's hinge over the teacher's ordered pairs) "
            "or listwise (KL(softmax(t / T) || softmax(s / T)) over the same candidates, T = rank_temperature)."
        },
    )
    rank_temperature: float = field(
        default=1.0,
        metadata={
            "help": "rank_loss listwise: T of the KL. Pick it for the teacher's score scale (SPLADE dot products "
            "and BM25 scores span tens; z-scored fused scores about 1)."
        },
    )
    min_teacher_gap: float | None = field(
        default=None,
        metadata={
            "help": "Keep only candidate pairs whose teacher scores differ by at least this (reference: all pairs)."
        },
    )
    kl_weight: float = field(
        default=0.0,
        metadata={"help": "w_kl, weight of the cross-encoder KL loss (LED w/ RT: 1.5; 0 disables it)."},
    )
    kl_temperature: float = field(default=3.0, metadata={"help": "T of the KL loss (LED w/ RT: 3)."})
    teacher_scores: str = field(
        default="online",
        metadata={
            "help": "online: the teachers score every training group as it comes; precomputed: read the scores "
            "that `led score-teacher` stored in DATA/teacher_scores/<name> (no teacher model is loaded)."
        },
    )
    teacher_scores_name: str | None = field(
        default=None,
        metadata={"help": "precomputed: DATA/teacher_scores/<name> of the SPLADE teacher (rank loss)."},
    )
    cross_encoder_scores_name: str | None = field(
        default=None,
        metadata={"help": "precomputed: DATA/teacher_scores/<name> of the cross-encoder (KL loss)."},
    )
    teacher_query_max_length: int | None = field(
        default=None,
        metadata={
            "help": "Query tokens for the SPLADE teacher (default: query_max_length). The teacher reuses the "
            "student's token ids when vocabularies and lengths agree, else tokenizes itself."
        },
    )
    teacher_passage_max_length: int | None = field(
        default=None,
        metadata={"help": "Passage tokens for the SPLADE teacher (default: passage_max_length)."},
    )
    cross_encoder_max_length: int | None = field(
        default=None,
        metadata={
            "help": "Pair tokens for the cross-encoder (default: the length it was trained with, else 256)."
        },
    )
    teacher_batch_size: int = field(
        default=128,
        metadata={
            "help": "Online: the teachers encode at most this many texts/pairs per forward pass (bounds memory)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.teacher_scores not in TEACHER_SCORE_MODES:
            raise LedError(
                f"teacher_scores must be one of {', '.join(TEACHER_SCORE_MODES)}, got {self.teacher_scores!r}"
            )
        if self.rank_weight < 0 or self.kl_weight < 0:
            raise LedError("rank_weight and kl_weight must be >= 0")
        if not self.kl_temperature > 0 or not self.rank_temperature > 0 or self.teacher_batch_size < 1:
            raise LedError("kl_temperature, rank_temperature and teacher_batch_size must be positive")
        if self.rank_loss not in RANK_LOSS_FORMS:
            raise LedError(f"rank_loss must be one of {', '.join(RANK_LOSS_FORMS)}, got {self.rank_loss!r}")
        precomputed = self.teacher_scores == "precomputed"
        needs = [
            (
                "rank_weight",
                self.rank_weight,
                "teacher_scores_name" if precomputed else "teacher_model_name_or_path",
            ),
            (
                "kl_weight",
                self.kl_weight,
                "cross_encoder_scores_name" if precomputed else "cross_encoder_name_or_path",
            ),
        ]
        for weight_name, weight, source in needs:
            if weight > 0 and not getattr(self, source):
                raise LedError(
                    f"{weight_name} is {weight:g} but {source} is not set "
                    f"(teacher_scores={self.teacher_scores})"
                )
