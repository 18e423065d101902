"""The GPU check: bf16 training-step throughput and MFU of the dense, SPLADE and LED trainers at BERT-base
size, with gradient checkpointing and GradCache, and `led encode` against sentence-transformers' fp16 encode.

    bash benchmarks/gpu/run.sh                       # on the GPU machine: this, then the gpu-marked tests
    python benchmarks/gpu/bench_gpu.py --cpu-smoke   # here: a tiny model, a few steps (import/crash check)

Nothing is downloaded: models are BERT-base configs with random weights (bert-base-uncased's shape:
12 layers, 768 wide, 30,522-token vocabulary), texts are random words of a synthetic 30,522-entry
WordPiece vocabulary. Training runs through `Trainer.train()` of the real trainers (Accelerate, bf16
autocast, AdamW) on synthetic batches of 64 queries x (1 + 7) passages, 32 / 128 tokens, every token
attended (no padding). Printed:

    bf16 matmul       8192^3 bf16 products, TFLOP/s (the denominator of MFU)
    train rows        step time (median of the timed steps), student tokens/s, model TFLOP/s, MFU,
                      peak GPU memory. Model FLOPs: 3 x forward for the trained encoder (forward +
                      backward), 1 x forward for LED's frozen SPLADE teacher; recomputation (checkpointing,
                      GradCache's extra forward) is not counted, so their MFU shows what they cost.
    encode rows       passages/s of `led encode`'s encode_to_folder (bf16 autocast, length-sorted) and of
                      SentenceTransformer.encode with fp16 weights, same model and passages.

Forward FLOPs of a sequence of s tokens through L layers of width d, FFN width f, vocabulary V:
s * L * (8 d^2 + 4 d f + 4 s d), plus s * (2 d^2 + 2 d V) for SPLADE's MLM head.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CLS, SEP, PAD = 2, 3, 0  # ids in the synthetic vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK] w0 w1 ...


# ----------------------------------------------------------------------------- settings
def settings(cpu_smoke: bool) -> dict:
    if cpu_smoke:
        return dict(
            device="cpu", hidden=32, layers=2, heads=2, ffn=64, vocab=1000, batch=2, group=4,
            query_length=8, passage_length=16, warmup=1, steps=2, chunk=1, passages=200, matmul=256,
        )  # fmt: skip
    return dict(
        device="cuda", hidden=768, layers=12, heads=12, ffn=3072, vocab=30522, batch=64, group=8,
        query_length=32, passage_length=128, warmup=3, steps=8, chunk=16, passages=30000, matmul=8192,
    )  # fmt: skip


def bert_config(s: dict):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=s["vocab"],
        hidden_size=s["hidden"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        intermediate_size=s["ffn"],
        max_position_embeddings=512,
    )


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- matmul ceiling
def matmul_rate(s: dict) -> float:
    """FLOP/s of n x n x n products in the training precision (bf16 on the GPU, fp32 on the CPU smoke)."""
    n, device = s["matmul"], s["device"]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    repeats = 20 if device == "cuda" else 3
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started)


# ----------------------------------------------------------------------------- training steps
def forward_flops(s: dict, length: int, sequences: int, mlm_head: bool = False) -> float:
    d, layers, f, v = s["hidden"], s["layers"], s["ffn"], s["vocab"]
    per_token = layers * (8 * d * d + 4 * d * f + 4 * length * d)
    if mlm_head:
        per_token += 2 * d * d + 2 * d * v
    return float(sequences * length * per_token)


class SyntheticBatches(torch.utils.data.Dataset):
    """Rows whose collator draws random token ids: the data pipeline costs nothing measurable."""

    def __init__(self, rows: int):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: int) -> dict:
        return {"row": index}


class SyntheticCollator:
    def __init__(self, s: dict):
        self.s = s
        self.generator = torch.Generator().manual_seed(0)

    def _texts(self, rows: int, length: int) -> dict:
        ids = torch.randint(5, self.s["vocab"], (rows, length), generator=self.generator)
        ids[:, 0], ids[:, -1] = CLS, SEP
        return {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }

    def __call__(self, features: list[dict]) -> dict:
        rows = len(features)
        return {
            "query": self._texts(rows, self.s["query_length"]),
            "passage": self._texts(rows * self.s["group"], self.s["passage_length"]),
        }


class StepTimer(TrainerCallback):
    def __init__(self, device: str):
        self.device, self.times, self.started = device, [], None

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        self.times.append(time.perf_counter() - self.started)


def train_step_row(kind: str, variant: str, s: dict, peak_flops: float, work: Path) -> dict:
    from transformers import BertForMaskedLM, BertModel

    from led_hf.arguments import DenseTrainingArguments, LEDTrainingArguments, SpladeTrainingArguments
    from led_hf.modeling import DenseEncoder
    from led_hf.modeling.splade import SpladeEncoder
    from led_hf.trainers.dense import DenseTrainer
    from led_hf.trainers.led import LEDTrainer
    from led_hf.trainers.splade import SpladeTrainer

    device, config = s["device"], bert_config(s)
    torch.manual_seed(0)
    common = dict(
        output_dir=str(work / f"{kind}-{variant}"),
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        per_device_train_batch_size=s["batch"],
        max_steps=s["warmup"] + s["steps"],
        learning_rate=1e-5,
        save_strategy="no",
        report_to="none",
        logging_steps=10**6,
        dataloader_num_workers=2 if device == "cuda" else 0,
        gradient_checkpointing=variant == "checkpointing",
        gradient_cache=variant == "grad-cache",
        gc_chunk_size=s["chunk"],
        disable_tqdm=True,
    )
    timer = StepTimer(device)
    extra = {}
    if kind == "splade":
        model = SpladeEncoder(BertForMaskedLM(config), CLS, SEP)
        trainer_class, args = SpladeTrainer, SpladeTrainingArguments(**common)
    else:
        model = DenseEncoder(BertModel(config), pooling="cls")
        if kind == "dense":
            trainer_class, args = DenseTrainer, DenseTrainingArguments(**common)
        else:
            trainer_class = LEDTrainer
            args = LEDTrainingArguments(**common, teacher_model_name_or_path="random-bert-base-mlm")
            extra["teacher"] = SpladeEncoder(BertForMaskedLM(config), CLS, SEP)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=SyntheticBatches(s["batch"] * (s["warmup"] + s["steps"])),
        data_collator=SyntheticCollator(s),
        callbacks=[timer],
        **extra,
    )
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    step = statistics.median(timer.times[s["warmup"] :])
    queries, passages = s["batch"], s["batch"] * s["group"]
    student = forward_flops(s, s["query_length"], queries, kind == "splade") + forward_flops(
        s, s["passage_length"], passages, kind == "splade"
    )
    flops = 3 * student
    if kind == "led":  # the frozen teacher: forward only
        flops += forward_flops(s, s["query_length"], queries, True)
        flops += forward_flops(s, s["passage_length"], passages, True)
    tokens = queries * s["query_length"] + passages * s["passage_length"]
    row = {
        "what": f"train {kind}",
        "variant": variant,
        "step_ms": 1000 * step,
        "tokens_per_s": tokens / step,
        "tflops": flops / step / 1e12,
        "mfu": flops / step / peak_flops,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
    }
    del trainer, model, extra
    return row


# ----------------------------------------------------------------------------- encoding
class ListTable:
    """The part of a `datasets.Dataset` that `TextSource` reads (`len()`, `table[a:b]` -> columns, `.data`:
    the Arrow table), without `datasets` (the GPU image has pyarrow, not datasets)."""

    def __init__(self, columns: dict[str, list]):
        import pyarrow as pa

        self.columns = columns
        self.data = pa.table(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return {name: values[index] for name, values in self.columns.items()}
        return {name: [values[i] for i in index] for name, values in self.columns.items()}


def synthetic_model_folder(s: dict, work: Path) -> tuple[Path, list[str]]:
    """A random BERT dense checkpoint (led-hf + sentence-transformers files) with a synthetic WordPiece
    vocabulary, and random passages of 60-200 words of it."""
    from transformers import BertModel, BertTokenizerFast

    from led_hf.modeling import DenseEncoder

    folder = work / "encoder"
    folder.mkdir(parents=True, exist_ok=True)
    words = [f"w{i}" for i in range(s["vocab"] - 5)]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    torch.manual_seed(0)
    model = DenseEncoder(BertModel(bert_config(s)), pooling="cls", max_seq_length=s["passage_length"])
    model.save_pretrained(folder, tokenizer=tokenizer)
    rng = np.random.default_rng(0)
    passages = [
        " ".join(words[j] for j in rng.integers(0, len(words), rng.integers(60, 200)))
        for _ in range(s["passages"])
    ]
    return folder, passages


def encode_rows(s: dict, work: Path) -> list[dict]:
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from led_hf.collators.encode import EncodeCollator
    from led_hf.modeling import DenseEncoder
    from led_hf.precision import with_precision
    from led_hf.retrieval.encode import TextSource, encode_to_folder

    device = s["device"]
    folder, passages = synthetic_model_folder(s, work)
    precision = "bf16" if device == "cuda" else "fp32"
    table = ListTable(
        {"pid": [str(i) for i in range(len(passages))], "title": [""] * len(passages), "text": passages}
    )
    model = DenseEncoder.from_pretrained(folder).to(device).eval()
    encode = with_precision(model.encode_passage, device, precision)
    collate = EncodeCollator(
        AutoTokenizer.from_pretrained(folder),
        max_length=s["passage_length"],
        kind="passage",
        pad_to_multiple_of=8 if device == "cuda" else None,
    )
    rows = []

    def led_once(round_: int) -> float:
        started = time.perf_counter()
        encode_to_folder(
            TextSource(table, "pid", "passages"),
            work / f"led-encode-{round_}",
            encode_fn=lambda batch: encode(**batch),
            collate=collate,
            shard_indices=[0],
            num_shards=1,
            batch_size=256,
            device=device,
            progress=False,
            manifest={"model": str(folder), "data": "synthetic", "max_length": s["passage_length"]},
        )
        synchronize(device)
        return time.perf_counter() - started

    with torch.no_grad():
        led_once(0)  # warm-up (kernels, allocator)
        seconds = led_once(1)
    rows.append(
        {
            "what": "encode led",
            "variant": "fp32" if precision == "fp32" else f"{precision} autocast",
            "passages_per_s": len(passages) / seconds,
        }
    )
    del model

    st_kwargs = {"torch_dtype": torch.float16} if device == "cuda" else {}
    st_model = SentenceTransformer(str(folder), device=device, model_kwargs=st_kwargs)
    st_model.max_seq_length = s["passage_length"]
    for _ in range(2):  # the second round is timed
        started = time.perf_counter()
        st_model.encode(passages, batch_size=256, convert_to_numpy=True, show_progress_bar=False)
        synchronize(device)
        seconds = time.perf_counter() - started
    rows.append(
        {
            "what": "encode sentence-transformers",
            "variant": "fp16 weights" if device == "cuda" else "fp32",
            "passages_per_s": len(passages) / seconds,
        }
    )
    return rows


# ----------------------------------------------------------------------------- report
def format_table(rows: list[dict], peak_flops: float, s: dict) -> str:
    lines = [
        f"{'bf16' if s['device'] == 'cuda' else 'fp32'} matmul ({s['matmul']}^3): {peak_flops / 1e12:.3g} TFLOP/s"
        "  (MFU denominator)",
        "",
        "| what | variant | step ms | tokens/s | model TFLOP/s | MFU | peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "step_ms" in row:
            lines.append(
                f"| {row['what']} | {row['variant']} | {row['step_ms']:.1f} | {row['tokens_per_s']:,.0f} | "
                f"{row['tflops']:.1f} | {100 * row['mfu']:.1f}% | {row['peak_gb']:.1f} |"
            )
    lines += ["", "| encode | precision | passages/s |", "|---|---|---:|"]
    for row in rows:
        if "passages_per_s" in row:
            lines.append(f"| {row['what']} | {row['variant']} | {row['passages_per_s']:,.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model on the CPU: checks it runs")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--only", nargs="*", help="subset of: dense splade led encode")
    args = parser.parse_args(argv)
    s = settings(args.cpu_smoke)
    if s["device"] == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --cpu-smoke", file=sys.stderr)
        return 1
    if s["device"] == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    peak = matmul_rate(s)
    print(f"matmul: {peak / 1e12:.3g} TFLOP/s", flush=True)
    wanted = set(args.only or ["dense", "splade", "led", "encode"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="led-gpu-bench-") as tmp:
        work = Path(tmp)
        for kind in ("dense", "splade", "led"):
            if kind not in wanted:
                continue
            for variant in ("plain", "checkpointing", "grad-cache"):
                row = train_step_row(kind, variant, s, peak, work)
                rows.append(row)
                print(json.dumps(row), f"({time.perf_counter() - started:.0f} s)", flush=True)
        if "encode" in wanted:
            for row in encode_rows(s, work):
                rows.append(row)
                print(json.dumps(row), f"({time.perf_counter() - started:.0f} s)", flush=True)
    table = format_table(rows, peak, s)
    print("\n" + table, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_flops": peak, "settings": s, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
