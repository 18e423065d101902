"""`led encode`: encode a prepared corpus or its queries into sharded embeddings (see led_hf.retrieval.encode).

    led encode --model CKPT --data DATA --corpus --output emb/corpus
    led encode --model CKPT --data DATA --queries test --output emb/test-queries
    accelerate launch -m led_hf encode --model CKPT --data DATA --corpus --output emb/corpus --num-shards 8
    led encode ... --shard 3/8          # one shard of eight (e.g. one job of a cluster array)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from led_hf.errors import LedError

QUERIES_ALL = "\0all"  # `--queries` with no split: every query of the table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led encode", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Encode a prepared dataset's passages (--corpus) or queries (--queries [SPLIT]) with a dense "
                    "bi-encoder into OUT/manifest.json + OUT/shard-i-of-n/{embeddings.npy,ids.txt}. Rows are "
                    "encoded in length-sorted batches (little padding) and written back in table order. Shards "
                    "are contiguous row ranges; a complete shard is skipped on rerun (resumable). Under "
                    "`accelerate launch` process r encodes shards r, r+W, ... (W processes).",
        epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--model", required=True, help="dense model folder (a led-hf checkpoint or a "
                        "sentence-transformers / plain HF folder; pooling is read from it)")
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--corpus", action="store_true", help="encode every passage (title + text)")
    what.add_argument("--queries", nargs="?", const=QUERIES_ALL, metavar="SPLIT",
                      help="encode queries: only those with qrels in SPLIT, or all of them without SPLIT")
    parser.add_argument("--output", required=True, help="embeddings folder to write (or to resume)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default 64)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per row, special tokens included (default 128 passages, 32 queries)")
    shards = parser.add_mutually_exclusive_group()
    shards.add_argument("--num-shards", type=int, default=None,
                        help="split the rows into this many shards (default: number of processes)")
    shards.add_argument("--shard", default=None, metavar="I/N",
                        help="encode only shard I of N (0-based), e.g. 3/8; single process")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="fp16 weights on GPU; embeddings stored as float16")
    precision.add_argument("--bf16", action="store_true", help="bf16 weights on GPU; embeddings stored as float32")
    parser.add_argument("--chunk-rows", type=int, default=16384,
                        help="rows read and length-sorted together (bounds memory; default 16384)")
    parser.add_argument("--overwrite", action="store_true", help="delete an existing embeddings folder first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--kind", choices=("auto", "dense", "splade"), default="auto",
                        help="model kind; auto reads led_config.json (default). splade writes sparse CSR shards "
                             "(led_hf.retrieval.sparse_encode) from any masked-LM folder")
    return parser


def parse_shard(text: str) -> tuple[int, int]:
    """"3/8" -> (3, 8)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise LedError(f"--shard expects I/N such as 3/8, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise LedError(f"--shard {text}: need 0 <= I < N")
    return index, count


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size < 1 or args.chunk_rows < 1:
        raise LedError("--batch-size and --chunk-rows must be positive")
    from led_hf.modeling.checkpoint import load_model_kind

    if args.kind == "splade" or (args.kind == "auto" and Path(args.model).exists()
                                 and load_model_kind(args.model) == "splade"):
        from led_hf.retrieval.sparse_encode import encode_from_args

        return encode_from_args(args)

    import os

    import torch
    from accelerate import PartialState

    launched_world = int(os.environ.get("WORLD_SIZE", "1"))
    # Without cpu=True accelerate silently makes every launched CPU process a lone rank 0, and each would
    # then encode (and race on) every shard.
    state = PartialState(cpu=launched_world > 1 and not torch.cuda.is_available())
    if state.num_processes != launched_world:
        raise LedError(f"launched as {launched_world} processes but accelerate sees {state.num_processes}")
    device = state.device
    world, rank = state.num_processes, state.process_index
    if (args.fp16 or args.bf16) and device.type != "cuda":
        raise LedError(f"--{'fp16' if args.fp16 else 'bf16'} needs a CUDA GPU; this run is on {device.type} "
                       "(encode in fp32 there: half precision on CPU is slower and less accurate)")
    if args.shard is not None:
        if world > 1:
            raise LedError("--shard I/N runs one process; under accelerate use --num-shards")
        shard_index, num_shards = parse_shard(args.shard)
        shard_indices = [shard_index]
    else:
        num_shards = world if args.num_shards is None else args.num_shards
        if num_shards < 1:
            raise LedError(f"--num-shards must be at least 1, got {num_shards}")
        shard_indices = list(range(rank, num_shards, world))

    from led_hf.collators.encode import EncodeCollator
    from led_hf.data.store import PreparedData
    from led_hf.modeling.dense import DenseEncoder
    from led_hf.retrieval.encode import (
        corpus_source,
        encode_to_folder,
        query_source,
        remove_output,
    )

    if not Path(args.model).exists():
        raise LedError(f"--model {args.model} does not exist")
    data = PreparedData(args.data)
    if args.corpus:
        source, kind = corpus_source(data), "passage"
    else:
        source, kind = query_source(data, None if args.queries == QUERIES_ALL else args.queries), "query"
    max_length = args.max_length or (128 if kind == "passage" else 32)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = DenseEncoder.from_pretrained(args.model)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and max_length > positions:
        raise LedError(f"--max-length {max_length} exceeds the model's {positions} positions")
    compute_dtype = torch.float16 if args.fp16 else torch.bfloat16 if args.bf16 else torch.float32
    model.to(device=device, dtype=compute_dtype).eval()
    encode_fn = model.encode_passage if kind == "passage" else model.encode_query
    # Multiples of 8 let fp16/bf16 tensor cores tile evenly; on CPU they only add padded tokens.
    collate = EncodeCollator(tokenizer, max_length=max_length, kind=kind,
                             pad_to_multiple_of=8 if device.type == "cuda" else None)

    if args.overwrite:
        if state.is_main_process:
            remove_output(args.output)
        state.wait_for_everyone()
    manifest = {"model": str(Path(args.model).resolve()), "data": str(data.root.resolve()),
                "max_length": max_length}
    common = dict(encode_fn=lambda batch: encode_fn(**batch), collate=collate, num_shards=num_shards,
                  manifest=manifest, dtype="float16" if args.fp16 else "float32",
                  batch_size=args.batch_size, chunk_rows=args.chunk_rows, device=device,
                  progress=not args.no_progress)
    # The main process writes (or checks) the manifest first so that the others only ever check it.
    if state.is_main_process:
        done = encode_to_folder(source, args.output, shard_indices=shard_indices, **common) if world == 1 else \
            encode_to_folder(source, args.output, shard_indices=[], **common)
    state.wait_for_everyone()
    if world > 1:
        done = encode_to_folder(source, args.output, shard_indices=shard_indices, **common)
        state.wait_for_everyone()
    skipped = len(shard_indices) - len(done)
    print(f"encoded {len(done)} shard(s) of {num_shards} into {args.output}"
          + (f" ({skipped} already complete)" if skipped else ""), flush=True)
    return 0
