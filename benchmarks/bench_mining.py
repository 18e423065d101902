"""Queries/s of `led mine` (dense and SPLADE) vs sentence-transformers' `mine_hard_negatives` (dense).

    .venv/bin/python benchmarks/bench_mining.py                     # all of SciFact (5,183 passages, 809 queries)
    .venv/bin/python benchmarks/bench_mining.py --limit 300         # a cheap run: 300 passages + the positives

Data: SciFact train (809 claims). `--limit N` keeps the train positives plus the first passages up to
N in all (the queries stay all 809), written as a BEIR folder and prepared with `led prepare`.
Dense: all-MiniLM-L6-v2 (bundled; mean pooling, normalised) on both sides; passages `--max-length`
tokens, queries `--query-max-length`, `--batch-size`, exact search to `--depth`, `--keep` negatives, one
process, the model loaded inside the timed call on both sides, the same precision on both sides: `--precision auto` for led and the same autocast around
sentence-transformers' call (bf16 autocast over fp32 weights on a CPU with native bf16, else fp32).
Both sides encode the corpus and the queries inside the timed region, unless `--reuse-corpus`: then led
gets a `led encode --corpus` folder (`--corpus-embeddings`) and sentence-transformers a warm
`cache_folder`, both made before timing. The two sides alternate (benchmarks/harness.py). SPLADE: the
bundled SPLADE-tiny with `led mine --kind splade` (embedded inverted index, float weights);
sentence-transformers' miner has no sparse counterpart, so only led's rate is given for it.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Row, alternate, median  # noqa: E402
from scifact import BUNDLED_SCIFACT as SCIFACT  # noqa: E402


def limited_scifact(out: Path, limit: int | None) -> Path:
    """A prepared copy of SciFact whose corpus is the train positives + the first passages, `limit` in all."""
    from led_hf.cli.main import main

    source = out / "beir"
    (source / "qrels").mkdir(parents=True)
    shutil.copy(SCIFACT / "queries.jsonl", source / "queries.jsonl")
    shutil.copy(SCIFACT / "qrels" / "train.tsv", source / "qrels" / "train.tsv")
    positives = {
        line.split("\t")[1] for line in (SCIFACT / "qrels" / "train.tsv").read_text().splitlines()[1:]
    }
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    if limit is not None:
        chosen = [line for line in lines if json.loads(line)["_id"] in positives]
        rest = [line for line in lines if json.loads(line)["_id"] not in positives]
        lines = chosen + rest[: max(0, limit - len(chosen))]
    (source / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if main(
        ["prepare", "--format", "beir", "--input", str(source), "--output", str(out / "data"), "--quiet"]
    ):
        raise RuntimeError("led prepare failed")
    return out / "data"


def run_led(data: Path, name: str, model: str, args, extra: list[str]) -> None:
    from led_hf.cli.main import main

    code = main(
        [
            "mine",
            "--data",
            str(data),
            "--split",
            "train",
            "--name",
            name,
            "--model",
            model,
            "--depth",
            str(args.depth),
            "--keep",
            str(args.keep),
            "--batch-size",
            str(args.batch_size),
            "--passage-max-length",
            str(args.max_length),
            "--query-max-length",
            str(args.query_max_length),
            "--precision",
            args.precision,
            "--no-progress",
            "--overwrite",
            *extra,
        ]
    )
    if code != 0:
        raise RuntimeError(f"led mine {name} failed")


def sentence_transformers_miner(data: Path, model_path: str, args, cache: Path | None):
    """A callable running `mine_hard_negatives` on the prepared data, under led's autocast of
    `args.precision`; the number of queries it mines for."""
    import datasets
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from led_hf.data.store import PreparedData
    from led_hf.precision import with_precision

    prepared = PreparedData(data)
    corpus = prepared.corpus.to_dict()
    texts = [f"{title} {text}" if title else text for title, text in zip(corpus["title"], corpus["text"])]
    by_pid = dict(zip(corpus["pid"], texts))
    query_text = dict(zip(prepared.queries["qid"], prepared.queries["text"]))
    pairs = [
        (query_text[qid], by_pid[pid])
        for qid, judged in prepared.qrels_dict("train").items()
        for pid, grade in judged.items()
        if grade > 0
    ]
    dataset = datasets.Dataset.from_dict({"query": [q for q, _ in pairs], "positive": [p for _, p in pairs]})

    @functools.partial(with_precision, device="cpu", precision=args.precision)
    def mine():
        # the model loads inside the timed call, as `led mine` loads its own
        model = SentenceTransformer(model_path, device="cpu")
        model.max_seq_length = args.max_length
        return mine_hard_negatives(
            dataset,
            model,
            corpus=texts,
            range_max=args.depth,
            num_negatives=args.keep,
            output_format="n-tuple",
            batch_size=args.batch_size,
            use_faiss=True,
            cache_folder=str(cache) if cache else None,
            verbose=False,
        )

    if cache is not None:
        mine()  # fills the embedding cache outside the timed run
    return mine, len(set(dataset["query"]))


def run(
    quick: bool = False,
    limit: int | None = None,
    depth: int = 100,
    keep: int = 20,
    max_length: int = 256,
    query_max_length: int = 64,
    batch_size: int = 32,
    reuse_corpus: bool = False,
    splade: bool | None = None,
    repetitions: int | None = None,
) -> list[Row]:
    from led_hf.data.store import PreparedData
    from led_hf.modeling.bundled import resolve_model_path
    from led_hf.precision import resolve_precision

    args = argparse.Namespace(
        depth=depth,
        keep=keep,
        max_length=max_length,
        query_max_length=query_max_length,
        batch_size=batch_size,
        precision=resolve_precision("auto", "cpu"),
    )
    limit = limit or (200 if quick else None)
    repetitions = repetitions or (1 if quick else 2)
    splade = not quick if splade is None else splade
    minilm, splade_tiny = (
        resolve_model_path("bundled:all-minilm-l6-v2"),
        resolve_model_path("bundled:splade-tiny"),
    )
    work = Path(tempfile.mkdtemp(prefix="bench-mining-"))
    rows = []
    try:
        data = limited_scifact(work, limit)
        num_passages = len(PreparedData(data).corpus)
        num_queries = len(PreparedData(data).qrels_dict("train"))
        extra, cache = [], None
        if reuse_corpus:
            from led_hf.cli.main import main as led

            command = [
                "encode",
                "--model",
                minilm,
                "--data",
                str(data),
                "--corpus",
                "--output",
                str(work / "enc"),
            ]
            led([*command, "--max-length", str(max_length), "--batch-size", str(batch_size), "--no-progress"])
            extra, cache = ["--corpus-embeddings", str(work / "enc")], work / "st-cache"
        st_mine, st_queries = sentence_transformers_miner(data, minilm, args, cache)
        print(f"  mining, {num_queries} queries over {num_passages} passages", flush=True)
        sides = {
            "led mine": lambda: run_led(data, "minilm", minilm, args, extra),
            "sentence-transformers": st_mine,
        }
        seconds = alternate(sides, repetitions, warmup=0)
        setting = (
            f"{num_queries} SciFact train queries, {num_passages} passages, depth {depth}, keep {keep}, "
            f"{args.precision}{', corpus encoding reused' if reuse_corpus else ', corpus encoded inside'}"
        )
        rows.append(
            Row(
                entry="mining",
                name="dense mining vs sentence-transformers mine_hard_negatives",
                ours=num_queries / median(seconds["led mine"]),
                baseline=st_queries / median(seconds["sentence-transformers"]),
                unit="queries/s",
                higher_is_better=True,
                note=f"MiniLM-L6, {setting}",
                samples=seconds,
            )
        )
        if splade:
            started = time.perf_counter()
            run_led(data, "splade-tiny", splade_tiny, args, ["--kind", "splade"])
            rows.append(
                Row(
                    entry="mining",
                    name="SPLADE mining (led only: no sentence-transformers counterpart)",
                    ours=num_queries / (time.perf_counter() - started),
                    baseline=None,
                    unit="queries/s",
                    higher_is_better=True,
                    note=f"SPLADE-tiny, embedded inverted index, {setting}",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    from harness import format_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--limit", type=int, default=None, help="passages kept (train positives first; default all)"
    )
    parser.add_argument("--depth", type=int, default=100, help="passages searched per query (default 100)")
    parser.add_argument("--keep", type=int, default=20, help="negatives kept per query (default 20)")
    parser.add_argument("--max-length", type=int, default=256, help="passage tokens (default 256)")
    parser.add_argument("--query-max-length", type=int, default=64, help="query tokens (default 64)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reuse-corpus", action="store_true", help="time search + query encoding only")
    parser.add_argument("--skip-splade", action="store_true")
    parser.add_argument("--repetitions", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(
        limit=args.limit,
        depth=args.depth,
        keep=args.keep,
        max_length=args.max_length,
        query_max_length=args.query_max_length,
        batch_size=args.batch_size,
        reuse_corpus=args.reuse_corpus,
        splade=not args.skip_splade,
        repetitions=args.repetitions,
    )
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
