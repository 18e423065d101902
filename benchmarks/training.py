"""Pieces the training-step benchmarks share: a Trainer driven step by step,
the matmul peak of the machine, and FLOP counts of a BERT forward + backward.

A side's "step" is what `Trainer.train` does per optimizer step, on the trainer's own objects: its
collator turns the batch's items into tensors, `trainer.training_step` runs the forward (under the
autocast that Accelerate wraps around the prepared model's forward) and the backward, then the gradient
is clipped, the optimizer and the LR scheduler step and the gradients are zeroed. The model and the
optimizer come from `Trainer._prepare_for_training`, the set-up `Trainer.train` itself runs; only the
outer loop (callbacks, logging, the DataLoader) is left out, on every side alike.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch


def batches(items: list[dict], batch_size: int) -> list[list[dict]]:
    return [items[start : start + batch_size] for start in range(0, len(items) - batch_size + 1, batch_size)]


def as_columns(item: dict) -> dict:
    """A training group as sentence-transformers' (anchor, positive, negative_1, ...) columns."""
    row = {"anchor": item["query"], "positive": item["texts"][0]}
    row.update({f"negative_{i}": text for i, text in enumerate(item["texts"][1:], 1)})
    return row


def training_arguments(precision: str, **overrides):
    """Arguments every Trainer side shares: CPU, `precision` ("bf16": autocast bf16 over fp32 weights),
    lr 2e-5, weight decay 0.01, clip 1.0, the Trainer's default optimizer (fused AdamW)."""
    from led_hf.arguments import DenseTrainingArguments

    cls = overrides.pop("cls", DenseTrainingArguments)
    return cls(
        output_dir=str(Path(tempfile.gettempdir()) / "led-bench-train"),  # nothing is saved there
        use_cpu=not torch.cuda.is_available(),
        bf16=precision == "bf16",
        learning_rate=2e-5,
        weight_decay=0.01,
        max_grad_norm=1.0,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        **overrides,
    )


class TrainerStep:
    """One optimizer step of `trainer` per call on the next batch of items (see the module docstring)."""

    def __init__(self, trainer, item_batches: list[list[dict]], max_steps: int = 1000):
        self.trainer = trainer
        self.item_batches = item_batches
        self.calls = 0
        loader = trainer.get_train_dataloader() if trainer.train_dataset is not None else None
        self.model, _ = trainer._prepare_for_training(max_steps, loader, None)
        self.model.zero_grad()

    def __call__(self) -> float:
        trainer, model = self.trainer, self.model
        items = self.item_batches[self.calls % len(self.item_batches)]
        self.calls += 1
        inputs = trainer.data_collator(items)
        trainer.current_gradient_accumulation_steps = 1
        loss = trainer.training_step(model, inputs, None)
        if trainer.args.max_grad_norm > 0:
            trainer._clip_grad_norm(model)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()
        return float(loss.detach())

    def loss_without_dropout(self) -> float:
        """The loss of the first batch in eval mode (no dropout), to check that sides compute the same."""
        trainer, model = self.trainer, self.model
        model.eval()
        with torch.no_grad(), trainer.compute_loss_context_manager():
            loss = trainer.compute_loss(
                model, trainer._prepare_inputs(trainer.data_collator(self.item_batches[0]))
            )
        model.train()
        return float(loss)


def autocast_context(precision: str):
    from led_hf.precision import autocast

    return autocast("cpu" if not torch.cuda.is_available() else "cuda", precision)


def matmul_rate(shapes: list[tuple[int, int, int]], precision: str, repeats: int = 3) -> float:
    """FLOP/s of `repeats` passes over the (M, K, N) products `shapes`, operands already in the compute
    dtype of `precision` (bf16 for bf16): the machine's GEMM speed for a step's shapes, with nothing else."""
    from led_hf.precision import autocast_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = autocast_dtype(precision) or torch.float32
    operands = [
        (torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype))
        for m, k, n in shapes
    ]
    flops = repeats * sum(2 * m * k * n for m, k, n in shapes)
    for left, right in operands:  # first touch: allocation, kernel choice
        left @ right
    start = time.perf_counter()
    for _ in range(repeats):
        for left, right in operands:
            left @ right
    if device == "cuda":
        torch.cuda.synchronize()
    return flops / (time.perf_counter() - start)


class MatmulPeak:
    """A side of `harness.alternate` measuring `matmul_rate(shapes, precision)` each call (`rates`, FLOP/s)."""

    def __init__(self, shapes: list[tuple[int, int, int]], precision: str):
        self.shapes, self.precision, self.rates = shapes, precision, []

    def __call__(self) -> None:
        self.rates.append(matmul_rate(self.shapes, self.precision))


def bert_linear_shapes(config, tokens: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of one BERT layer's linear layers' forward products over `tokens` tokens."""
    hidden, inner = config.hidden_size, config.intermediate_size
    return [
        (tokens, hidden, 3 * hidden),  # Q, K, V
        (tokens, hidden, hidden),  # attention output
        (tokens, hidden, inner),  # feed-forward in
        (tokens, inner, hidden),  # feed-forward out
    ]


def bert_training_flops(config, batch_shapes: list[tuple[int, int]], mlm_head: bool = False) -> float:
    """Matmul FLOPs of a forward + backward of a BERT encoder over batches [(rows, padded length)].

        per layer, per token:  2 * (4 H^2 + 2 H I)   linear layers (forward)
                               4 * L * H             attention scores Q K^T and weights x V (forward)
        MLM head (SPLADE):     2 * (H^2 + H V)        transform + vocabulary projection, per token
        forward + backward = 3 x forward (the backward computes two products per forward product)

    H hidden size, I feed-forward size, L the padded sequence length, V the vocabulary. Padded tokens
    count: the hardware computes them. Embedding look-ups, layer norms, softmax, GELU and the loss are
    not matmuls and are left out, so the ratio to the matmul peak is an upper bound on useful work.
    """
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    forward = 0.0
    for rows, length in batch_shapes:
        tokens = rows * length
        forward += layers * tokens * (2 * (4 * hidden * hidden + 2 * hidden * inner) + 4 * length * hidden)
        if mlm_head:
            forward += tokens * 2 * (hidden * hidden + hidden * config.vocab_size)
    return 3 * forward


def bf16_against_fp32(entry: str, what: str, seconds: dict[str, list[float]]):
    """The row of led's bf16-autocast step against its fp32 step, timed in the same rounds."""
    from harness import Row, median

    return Row(
        entry=entry,
        name=f"{what}, led bf16 autocast vs led fp32",
        ours=median(seconds["led bf16"]),
        baseline=median(seconds["led fp32"]),
        unit="s/step",
        note="the CPU training default (bf16 where the CPU has it) against fp32, same rounds",
    )


def step_benchmark_main(run, description: str, argv: list[str] | None = None) -> int:
    """`python benchmarks/bench_train_*.py [--precision P]... [--repetitions N]`: one entry's table."""
    import argparse

    from harness import format_table

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--precision", action="append", choices=["fp32", "bf16"], help="repeatable; default auto"
    )
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    print(format_table(run(quick=True, precisions=args.precision, repetitions=args.repetitions)))
    return 0


def step_inputs(model: str, quick: bool, precisions, repetitions, batch: int, group: int, query_length: int):
    """What a training-step entry starts from: (model folder, precisions, repetitions, tokenizer, batches
    of SciFact training groups whose queries fit `query_length` tokens, 4 batches of `batch` groups)."""
    from scifact import scifact_groups
    from transformers import AutoTokenizer

    from led_hf.modeling.bundled import resolve_model_path
    from led_hf.precision import resolve_precision

    model_path = resolve_model_path(model)
    precisions = precisions or ([resolve_precision("auto", "cpu")] if quick else ["fp32", "bf16"])
    repetitions = repetitions or (2 if quick else 7)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    groups = scifact_groups(
        batch * 4, group, query_fits=lambda text: len(tokenizer(text).input_ids) <= query_length
    )
    return model_path, precisions, repetitions, tokenizer, batches(groups, batch)
