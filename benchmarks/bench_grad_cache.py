"""Peak memory and step time of a DenseTrainer step with and without GradCache, by chunk size (CPU).

    .venv/bin/python benchmarks/bench_grad_cache.py                  # 16 queries x (1 + 7), 32/128 tokens
    .venv/bin/python benchmarks/bench_grad_cache.py --batch 8 --layers 2

A BERT of `--layers` x `--hidden` (random weights, 30,522-token vocabulary) built from a config, synthetic
token ids (every token attended), `Trainer.train()` for 3 steps (AdamW), each configuration in its own
process. Reported per configuration:

    activations MB   the most bytes autograd held for backward at once during one step (non-parameter
                     saved tensors, counted with torch.autograd.graph.saved_tensors_hooks, third
                     step): exact, and what GradCache bounds
    peak RSS MB      the process's peak resident memory during the steps minus its resident memory
                     before them (ru_maxrss): what the machine sees, allocator slack included
    step s           the second step's wall time and CPU time (all threads; no counting hooks): on a shared
                     machine the CPU time is the steadier of the two
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(options: dict) -> dict:
    import torch
    from transformers import BertModel, TrainerCallback

    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    sys.path.insert(0, str(ROOT))
    from activation_memory import SavedActivations
    from bench_gpu import SyntheticBatches, SyntheticCollator, bert_config

    from led_hf.arguments import DenseTrainingArguments
    from led_hf.modeling import DenseEncoder
    from led_hf.trainers.dense import DenseTrainer

    torch.set_num_threads(options["threads"])
    s = dict(
        hidden=options["hidden"], layers=options["layers"], heads=options["hidden"] // 64, ffn=4 * options["hidden"],
        vocab=30522, batch=options["batch"], group=8, query_length=32, passage_length=128,
    )  # fmt: skip
    counter = SavedActivations()
    times = []

    class Measure(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started, self.cpu_started = time.perf_counter(), time.process_time()
            if state.global_step == 2:  # the third step: count what autograd saves (untimed)
                self.hooks = torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack)
                self.hooks.__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:  # on_step_end sees the step count after the step
                times.append((time.perf_counter() - self.started, time.process_time() - self.cpu_started))
            if getattr(self, "hooks", None) is not None:
                self.hooks.__exit__(None, None, None)
                self.hooks = None

    torch.manual_seed(0)
    chunk = options["chunk"]
    with tempfile.TemporaryDirectory() as out:
        trainer = DenseTrainer(
            model=DenseEncoder(BertModel(bert_config(s)), pooling="cls"),
            args=DenseTrainingArguments(
                output_dir=out,
                use_cpu=True,
                per_device_train_batch_size=s["batch"],
                max_steps=3,
                save_strategy="no",
                report_to="none",
                logging_steps=10**6,
                dataloader_num_workers=0,
                disable_tqdm=True,
                gradient_cache=chunk > 0,
                gc_chunk_size=max(chunk, 1),
            ),
            train_dataset=SyntheticBatches(3 * s["batch"]),
            data_collator=SyntheticCollator(s),
            callbacks=[Measure()],
        )
        rss_before = _rss_mb()
        trainer.train()
    return {
        "chunk": chunk,
        "activations_mb": counter.peak / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before,
        "step_s": times[-1][0],
        "step_cpu_s": times[-1][1],
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16, help="queries per step (each with 8 passages)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunks", type=int, nargs="*", default=[0, 8, 4, 2, 1], help="0: no GradCache")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    rows = []
    for chunk in args.chunks:
        options = {"chunk": chunk, "batch": args.batch, "layers": args.layers, "hidden": args.hidden, "threads": args.threads}  # fmt: skip
        done = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(options)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"\nBERT {args.layers} x {args.hidden}, {args.batch} queries x (1 + 7) passages, 32/128 tokens, CPU\n"
    )
    print("| GradCache chunk (queries) | activations MB | peak RSS MB | step s (wall) | step s (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        name = "off" if row["chunk"] == 0 else str(row["chunk"])
        print(
            f"| {name} | {row['activations_mb']:.0f} | {row['peak_rss_mb']:.0f} | {row['step_s']:.1f} | "
            f"{row['step_cpu_s']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
