"""Seconds per dense training step: led's DenseTrainer vs sentence-transformers' MNRL trainer vs a plain
PyTorch loop, and the share of the machine's matmul peak that led's step reaches.

    .venv/bin/python benchmarks/bench_train_dense.py                   # auto precision, 5 steps per side
    .venv/bin/python benchmarks/bench_train_dense.py --precision fp32 --repetitions 3

Same on every side: all-MiniLM-L6-v2 (bundled: mean pooling, normalised, temperature 0.05 = MNRL's
scale 20), 8 SciFact claims x (1 positive + 7 other abstracts), 32 query / 128 passage tokens, the same
batches in the same order, lr 2e-5, weight decay 0.01, gradient clipping at 1.0, fused AdamW, one
process, `--precision` (bf16 = autocast bf16 over fp32 master weights, as `Trainer(bf16=True)` does).
Sides (benchmarks/training.py: each is one optimizer step, collation included):

    led                     DenseTrainer.training_step on TrainCollator batches (the `led train dense` path)
    sentence-transformers   SentenceTransformerTrainer.training_step, MultipleNegativesRankingLoss (scale 20)
    plain PyTorch           AutoModel + mean pooling + normalisation + cross-entropy, written out by hand
    matmul peak             the linear layers' GEMMs of one step's shapes alone, same precision (FLOP/s)

led's share of the peak = FLOPs of its forward + backward (training.bert_training_flops) / its step time,
over the GEMM rate measured in the same rounds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, alternate, median  # noqa: E402
from training import (  # noqa: E402
    MatmulPeak,
    TrainerStep,
    as_columns,
    autocast_context,
    bert_linear_shapes,
    bert_training_flops,
    bf16_against_fp32,
    step_benchmark_main,
    step_inputs,
    training_arguments,
)

MODEL = "bundled:all-minilm-l6-v2"
QUERY_LENGTH, PASSAGE_LENGTH, BATCH, GROUP = 32, 128, 8, 8
TEMPERATURE = 0.05


def led_side(model_path: str, item_batches, precision: str) -> TrainerStep:
    from transformers import AutoTokenizer

    from led_hf.collators.train import TrainCollator
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.trainers.dense import DenseTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = DenseEncoder.from_pretrained(model_path, temperature=TEMPERATURE)
    trainer = DenseTrainer(
        model=model,
        args=training_arguments(precision),
        data_collator=TrainCollator(tokenizer, QUERY_LENGTH, PASSAGE_LENGTH),
        processing_class=tokenizer,
    )
    return TrainerStep(trainer, item_batches)


def sentence_transformers_side(model_path: str, item_batches, precision: str) -> TrainerStep:
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(model_path, device="cpu" if not torch.cuda.is_available() else "cuda")
    model.max_seq_length = PASSAGE_LENGTH
    loss = MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE)
    trainer = SentenceTransformerTrainer(
        model=model, args=training_arguments(precision, cls=SentenceTransformerTrainingArguments), loss=loss
    )
    columns = [[as_columns(item) for item in batch] for batch in item_batches]
    return TrainerStep(trainer, columns)


class PlainLoop:
    """The same maths without a framework: what a user writes by hand with transformers + torch."""

    def __init__(self, model_path: str, item_batches, precision: str):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).train()
        self.model.pooler.requires_grad_(False)  # unused by mean pooling (led and ST freeze or skip it too)
        decay = [
            p
            for n, p in self.model.named_parameters()
            if p.requires_grad and "bias" not in n and "LayerNorm" not in n
        ]
        rest = [
            p
            for n, p in self.model.named_parameters()
            if p.requires_grad and ("bias" in n or "LayerNorm" in n)
        ]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
            lr=2e-5,
            fused=True,
        )
        self.item_batches, self.precision, self.calls = item_batches, precision, 0

    def embed(self, texts: list[str], max_length: int) -> torch.Tensor:
        batch = self.tokenizer(
            texts, max_length=max_length, truncation=True, padding=True, return_tensors="pt"
        )
        with autocast_context(self.precision):
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden.float() * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def loss(self, items: list[dict]) -> torch.Tensor:
        queries = self.embed([item["query"] for item in items], QUERY_LENGTH)
        passages = self.embed([text for item in items for text in item["texts"]], PASSAGE_LENGTH)
        targets = torch.arange(len(items)) * GROUP
        return torch.nn.functional.cross_entropy(queries @ passages.T / TEMPERATURE, targets)

    def loss_without_dropout(self) -> float:
        self.model.eval()
        with torch.no_grad():
            loss = float(self.loss(self.item_batches[0]))
        self.model.train()
        return loss

    def __call__(self) -> float:
        items = self.item_batches[self.calls % len(self.item_batches)]
        self.calls += 1
        loss = self.loss(items)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        return float(loss.detach())


def step_shapes(tokenizer, item_batch) -> list[tuple[int, int]]:
    """[(rows, padded length)] of the query and passage forwards of one batch, as TrainCollator pads them."""
    from led_hf.collators.train import TrainCollator

    batch = TrainCollator(tokenizer, QUERY_LENGTH, PASSAGE_LENGTH)(item_batch)
    return [tuple(batch["query"]["input_ids"].shape), tuple(batch["passage"]["input_ids"].shape)]


def run(
    quick: bool = False, precisions: list[str] | None = None, repetitions: int | None = None
) -> list[Row]:
    from transformers import AutoConfig

    model_path, precisions, repetitions, tokenizer, item_batches = step_inputs(
        MODEL, quick, precisions, repetitions, BATCH, GROUP, QUERY_LENGTH
    )
    config = AutoConfig.from_pretrained(model_path)
    shapes = [step_shapes(tokenizer, batch) for batch in item_batches]
    step_flops = [bert_training_flops(config, batch_shapes) for batch_shapes in shapes]
    # the GEMMs of one step: every linear layer's forward product (x 3 for the backward's two), one layer's
    # shapes stand for all of them (same shapes in every layer)
    gemm_shapes = [shape for rows, length in shapes[0] for shape in bert_linear_shapes(config, rows * length)]
    sides, checks, peaks = {}, {}, {}
    for precision in precisions:
        torch.manual_seed(0)
        group = {
            "led": led_side(model_path, item_batches, precision),
            "sentence-transformers": sentence_transformers_side(model_path, item_batches, precision),
            "plain PyTorch": PlainLoop(model_path, item_batches, precision),
        }
        # same weights, same batch, no dropout: the sides compute the same loss before any step
        checks[precision] = {name: side.loss_without_dropout() for name, side in group.items()}
        peaks[precision] = MatmulPeak(gemm_shapes, precision)
        sides.update({f"{name} {precision}": side for name, side in group.items()})
        sides[f"matmul peak {precision}"] = peaks[precision]
    # every precision's sides in one rotation: the bf16-over-fp32 speed-up is measured like the rest
    print(f"  dense step, {' and '.join(precisions)}", flush=True)
    seconds = alternate(sides, repetitions)
    rows = []
    for precision in precisions:
        led = median(seconds[f"led {precision}"])
        # the step's FLOPs over its time, per batch the led side ran (batches cycle in the same order)
        led_rate = median(
            [step_flops[(i + 1) % len(step_flops)] / t for i, t in enumerate(seconds[f"led {precision}"])]
        )
        peak = median(peaks[precision].rates[1:])  # the warm-up round's call is not one of the timed ones
        samples = {
            name: times for name, times in seconds.items() if name.endswith(precision) and "peak" not in name
        }
        note = (
            f"{precision}, MiniLM-L6, 8x(1+7), 32/128 tokens; initial no-dropout loss of batch 1: "
            + ", ".join(f"{name} {value:.4f}" for name, value in checks[precision].items())
        )
        for baseline, name, row_note in (
            ("sentence-transformers", "sentence-transformers MNRL", note),
            ("plain PyTorch", "plain PyTorch loop", f"{precision}, same maths by hand"),
        ):
            rows.append(
                Row(
                    entry="train-dense",
                    name=f"dense step vs {name} ({precision})",
                    ours=led,
                    baseline=median(seconds[f"{baseline} {precision}"]),
                    unit="s/step",
                    note=row_note,
                    samples=samples,
                )
            )
        rows.append(
            Row(
                entry="train-dense",
                name=f"dense step share of matmul peak ({precision})",
                ours=led_rate / 1e9,
                baseline=peak / 1e9,
                unit="GFLOP/s",
                higher_is_better=True,
                note=f"ratio = share of the peak ({led_rate / peak:.0%}); FLOPs: benchmarks/training.py",
            )
        )
    if {"fp32", "bf16"} <= set(precisions):
        rows.append(bf16_against_fp32("train-dense", "dense step", seconds))
    return rows


def main(argv: list[str] | None = None) -> int:
    return step_benchmark_main(run, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
