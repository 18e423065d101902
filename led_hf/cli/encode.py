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
from led_hf.precision import add_precision_argument

QUERIES_ALL = "\0all"  # `--queries` with no split: every query of the table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="led encode",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Encode a prepared dataset's passages (--corpus) or queries (--queries [SPLIT]) with a dense "
        "bi-encoder into OUT/manifest.json + OUT/shard-i-of-n/{embeddings.npy,ids.txt}. Rows are "
        "encoded in length-sorted batches (little padding) and written back in table order. Shards "
        "are contiguous row ranges; a complete shard is skipped on rerun (resumable). Under "
        "`accelerate launch` process r encodes shards r, r+W, ... (W processes).",
        epilog=__doc__.split("\n", 2)[2],
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model folder: a led-hf dense or SPLADE checkpoint, a "
        "sentence-transformers / plain HF folder (pooling is read from it), or bundled:NAME "
        "(bundled:all-minilm-l6-v2; bundled:splade-tiny with --kind splade)",
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (output of `led prepare`)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--corpus", action="store_true", help="encode every passage (title + text)")
    what.add_argument(
        "--queries",
        nargs="?",
        const=QUERIES_ALL,
        metavar="SPLIT",
        help="encode queries: only those with qrels in SPLIT, or all of them without SPLIT",
    )
    parser.add_argument("--output", required=True, help="embeddings folder to write (or to resume)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward pass (default 64)")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per row, special tokens included (default 128 passages, 32 queries)",
    )
    shards = parser.add_mutually_exclusive_group()
    shards.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help="split the rows into this many shards (default: number of processes)",
    )
    shards.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="encode only shard I of N (0-based), e.g. 3/8; single process",
    )
    add_precision_argument(parser)
    parser.add_argument(
        "--store-fp16",
        action="store_true",
        help="store dense embeddings as float16 (half the disk; search reads them as float32)",
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=16384,
        help="rows read and length-sorted together (bounds memory; default 16384)",
    )
    parser.add_argument("--overwrite", action="store_true", help="delete an existing embeddings folder first")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--kind",
        choices=("auto", "dense", "splade"),
        default="auto",
        help="model kind; auto reads led_config.json (default). splade writes sparse CSR shards "
        "(led_hf.retrieval.sparse_encode) from any masked-LM folder",
    )
    return parser


def parse_shard(text: str) -> tuple[int, int]:
    """ "3/8" -> (3, 8)."""
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
    from led_hf.modeling.bundled import resolve_model_path
    from led_hf.modeling.checkpoint import detect_model_kind

    args.model = resolve_model_path(args.model)  # bundled:all-minilm-l6-v2 / bundled:splade-tiny -> folder
    sparse = args.kind == "splade" or (
        args.kind == "auto" and Path(args.model).exists() and detect_model_kind(args.model) == "splade"
    )
    state, shard_indices, num_shards = process_shards(args)
    if not sparse and not Path(args.model).exists():
        raise LedError(f"--model {args.model} does not exist")

    from transformers import AutoTokenizer

    from led_hf.collators.encode import EncodeCollator
    from led_hf.data.store import PreparedData
    from led_hf.precision import resolve_precision
    from led_hf.retrieval.encode import corpus_source, query_source, remove_output

    data = PreparedData(args.data)
    if args.corpus:
        source, kind = corpus_source(data), "passage"
    else:
        source, kind = query_source(data, None if args.queries == QUERIES_ALL else args.queries), "query"
    max_length = args.max_length or (128 if kind == "passage" else 32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # Multiples of 8 let fp16/bf16 tensor cores tile evenly; on CPU they only add padded tokens.
    collate = EncodeCollator(
        tokenizer,
        max_length=max_length,
        kind=kind,
        pad_to_multiple_of=8 if state.device.type == "cuda" else None,
    )
    precision = resolve_precision(args.precision, state.device)
    common = dict(
        collate=collate,
        num_shards=num_shards,
        batch_size=args.batch_size,
        chunk_rows=args.chunk_rows,
        device=state.device,
        progress=not args.no_progress,
        manifest={
            "model": str(Path(args.model).resolve()),
            "data": str(data.root.resolve()),
            "max_length": max_length,
            "precision": precision,
        },
    )
    if sparse:
        encode_folder = sparse_folder_encoder(args, state.device, precision, kind, tokenizer, source, common)
    else:
        encode_folder = dense_folder_encoder(args, state.device, precision, kind, max_length, source, common)

    if args.overwrite:
        if state.is_main_process:
            remove_output(args.output)
        state.wait_for_everyone()
    # The main process writes (or checks) the manifest (and vocab) first so that the others only ever check it.
    world = state.num_processes
    done: list[int] = []
    if state.is_main_process:
        done = encode_folder(shard_indices=shard_indices if world == 1 else [])
    state.wait_for_everyone()
    if world > 1:
        done = encode_folder(shard_indices=shard_indices)
        state.wait_for_everyone()
    skipped = len(shard_indices) - len(done)
    print(
        f"encoded {len(done)} {'sparse ' if sparse else ''}shard(s) of {num_shards} into {args.output}"
        + (f" ({skipped} already complete)" if skipped else ""),
        flush=True,
    )
    return 0


def process_shards(args):
    """(accelerate PartialState, shard indices this process encodes, number of shards) for `led encode`.

    `--shard I/N` -> [I] of N (one process); otherwise process r of W encodes shards r, r+W, ... of
    `--num-shards` (default W).
    """
    import os

    import torch
    from accelerate import PartialState

    launched_world = int(os.environ.get("WORLD_SIZE", "1"))
    # Without cpu=True accelerate silently makes every launched CPU process a lone rank 0, and each would
    # then encode (and race on) every shard.
    state = PartialState(cpu=launched_world > 1 and not torch.cuda.is_available())
    if state.num_processes != launched_world:
        raise LedError(f"launched as {launched_world} processes but accelerate sees {state.num_processes}")
    world, rank = state.num_processes, state.process_index
    if args.shard is not None:
        if world > 1:
            raise LedError("--shard I/N runs one process; under accelerate use --num-shards")
        shard_index, num_shards = parse_shard(args.shard)
        return state, [shard_index], num_shards
    num_shards = world if args.num_shards is None else args.num_shards
    if num_shards < 1:
        raise LedError(f"--num-shards must be at least 1, got {num_shards}")
    return state, list(range(rank, num_shards, world)), num_shards


def dense_folder_encoder(args, device, precision: str, kind: str, max_length: int, source, common: dict):
    """`encode_folder(shard_indices=...)` writing dense embeddings (`encode_to_folder`) with a `DenseEncoder`
    computing in `precision` (autocast over fp32 weights)."""
    from functools import partial

    from led_hf.modeling.dense import DenseEncoder
    from led_hf.precision import with_precision
    from led_hf.retrieval.encode import encode_to_folder

    model = DenseEncoder.from_pretrained(args.model)
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and max_length > positions:
        raise LedError(f"--max-length {max_length} exceeds the model's {positions} positions")
    model.to(device).eval()
    encode = with_precision(
        model.encode_passage if kind == "passage" else model.encode_query, device, precision
    )
    return partial(
        encode_to_folder,
        source,
        args.output,
        encode_fn=lambda batch: encode(**batch),
        dtype="float16" if args.store_fp16 else "float32",
        **common,
    )


def sparse_folder_encoder(args, device, precision: str, kind: str, tokenizer, source, common: dict):
    """`encode_folder(shard_indices=...)` writing sparse CSR shards (`encode_sparse_to_folder`) with a
    `SpladeEncoder` computing in `precision`; weights are always stored as float32 (SPLADE pooling runs in
    fp32 under autocast)."""
    from functools import partial

    from led_hf.modeling.splade import SpladeEncoder
    from led_hf.precision import with_precision
    from led_hf.retrieval.sparse_encode import encode_sparse_to_folder, vocabulary_strings

    if args.store_fp16:
        raise LedError("--store-fp16 is for dense embeddings; SPLADE term weights are stored as float32")
    model = SpladeEncoder.from_pretrained(args.model).to(device).eval()
    encode = with_precision(
        model.encode_passage if kind == "passage" else model.encode_query, device, precision
    )
    return partial(
        encode_sparse_to_folder,
        source,
        args.output,
        encode_fn=encode,
        vocab=vocabulary_strings(tokenizer, model.vocab_size),
        **common,
    )
