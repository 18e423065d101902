"""Synthetic MS MARCO-format folders for benchmarks (deterministic for a seed; not for tests of quality).

    generate_msmarco(folder, num_passages=1_000_000, num_queries=100_000, negatives_per_query=30, seed=0)

writes the layout `led prepare --format msmarco` reads:
    collection.tsv        pid<TAB>text     pids "0".."N-1", 20-80 words from a 5,000-word vocabulary
    titles.tsv            pid<TAB>title    (every 3rd pid has none: exercises the lockstep join)
    queries.train.tsv     qid<TAB>text     qids "0".."Q-1"
    qrels.train.tsv       qid 0 pid 1      one positive per query (~10% get a second one)
    train.negatives.tsv   qid<TAB>pid,...  `negatives_per_query` random pids, sometimes including a positive
    queries.dev.tsv / qrels.dev.tsv        a dev split of max(1, Q // 100) further queries
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CHUNK = 20_000


def _vocabulary(rng: np.random.Generator, size: int = 5_000) -> np.ndarray:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 10, size=size)
    return np.array(["".join(rng.choice(letters, n)) for n in lengths], dtype=object)


def _texts(rng: np.random.Generator, vocabulary: np.ndarray, count: int, low: int, high: int) -> list[str]:
    words = vocabulary[rng.integers(0, len(vocabulary), size=(count, high))]
    lengths = rng.integers(low, high + 1, size=count)
    return [" ".join(row[:n]) for row, n in zip(words, lengths)]


def add_size_options(parser) -> None:
    """`--passages`, `--queries`, `--negatives`, `--seed`: the arguments of `generate_msmarco`, for a
    benchmark's command line (read back by `generate_from_options`)."""
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--negatives", type=int, default=30, help="pids per train.negatives.tsv line")
    parser.add_argument("--seed", type=int, default=0)


def generate_from_options(folder, args) -> Path:
    """`generate_msmarco` with the sizes parsed from `add_size_options`."""
    return generate_msmarco(folder, args.passages, args.queries, args.negatives, args.seed)


def generate_msmarco(
    folder, num_passages: int, num_queries: int, negatives_per_query: int, seed: int = 0
) -> Path:
    """Write a synthetic MS MARCO-format folder at `folder` (created) and return its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocabulary = _vocabulary(rng)
    with (
        open(folder / "collection.tsv", "w", encoding="utf-8") as collection,
        open(folder / "titles.tsv", "w", encoding="utf-8") as titles,
    ):
        for start in range(0, num_passages, _CHUNK):
            count = min(_CHUNK, num_passages - start)
            texts = _texts(rng, vocabulary, count, 20, 80)
            heads = _texts(rng, vocabulary, count, 1, 4)
            collection.write("".join(f"{start + i}\t{t}\n" for i, t in enumerate(texts)))
            titles.write("".join(f"{start + i}\t{h}\n" for i, h in enumerate(heads) if (start + i) % 3))
    num_dev = max(1, num_queries // 100)
    splits = {"train": range(num_queries), "dev": range(num_queries, num_queries + num_dev)}
    for split, qids in splits.items():
        positives = rng.integers(0, num_passages, size=(len(qids), 2))
        second = rng.random(len(qids)) < 0.1
        with open(folder / f"queries.{split}.tsv", "w", encoding="utf-8") as queries:
            for start in range(0, len(qids), _CHUNK):
                texts = _texts(rng, vocabulary, min(_CHUNK, len(qids) - start), 3, 10)
                queries.write("".join(f"{qids[start + i]}\t{t}?\n" for i, t in enumerate(texts)))
        with open(folder / f"qrels.{split}.tsv", "w", encoding="utf-8") as qrels:
            for row, qid in enumerate(qids):
                qrels.write(f"{qid}\t0\t{positives[row, 0]}\t1\n")
                if second[row] and positives[row, 1] != positives[row, 0]:
                    qrels.write(f"{qid}\t0\t{positives[row, 1]}\t1\n")
        if split == "train":
            with open(folder / "train.negatives.tsv", "w", encoding="utf-8") as negatives:
                for start in range(0, len(qids), _CHUNK):
                    count = min(_CHUNK, len(qids) - start)
                    pids = rng.choice(num_passages, size=(count, negatives_per_query), replace=True)
                    # a positive among the candidates, as in real BM25 lists: prepare must drop it
                    with_positive = rng.random(count) < 0.2
                    pids[with_positive, 0] = positives[start : start + count][with_positive, 0]
                    negatives.write(
                        "".join(
                            f"{qids[start + i]}\t{','.join(map(str, row))}\n" for i, row in enumerate(pids)
                        )
                    )
    return folder


# ----------------------------------------------------------------------------- MS MARCO-shaped, at scale
MSMARCO_PASSAGES, MSMARCO_TRAIN_QUERIES, MSMARCO_DEV_QUERIES = 8_841_823, 502_939, 6_980


def _zipf_words(rng: np.random.Generator, size: int = 30_000) -> tuple[np.ndarray, np.ndarray]:
    """A vocabulary of `size` made-up words (2-9 letters) and the CDF of a Zipf(s=1) draw over it."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(2, 10, size=size)
    words = np.array(["".join(rng.choice(letters, n)) for n in lengths], dtype=object)
    cdf = np.cumsum(1.0 / np.arange(1, size + 1))
    return words, cdf / cdf[-1]


def _zipf_texts(rng, words, cdf, lengths: np.ndarray) -> list[str]:
    drawn = words[np.searchsorted(cdf, rng.random(int(lengths.sum())))]
    ends = np.cumsum(lengths)
    return [" ".join(drawn[end - n : end]) for n, end in zip(lengths.tolist(), ends.tolist())]


def generate_msmarco_scale(folder, num_passages: int, num_negatives: int = 200, seed: int = 0) -> dict:
    """An MS MARCO passage-shaped folder for `led prepare --format msmarco`, written chunk by chunk (memory
    does not grow with `num_passages`: 8.8M passages are never held as strings).

    - collection.tsv: pids 0..N-1, lengths ~ Gamma(k=4, θ=14) words clipped to [4, 300] (mean 56, median
      ~51, as MS MARCO passages), words Zipf(s=1) over a 30,000-word made-up vocabulary (~360 bytes/line)
    - queries.train.tsv: 502,939 x N / 8.8M queries (1 + Gamma(3, 2) words, mean ~7); queries.dev.tsv
      6,980 x N / 8.8M (at least 100)
    - qrels.{train,dev}.tsv: one positive per query, a second one for 6% (532,761 / 502,939 on MS MARCO)
    - train.negatives.tsv: `num_negatives` random pids per training query, a positive among them for 20%
    Returns the counts written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words, cdf = _zipf_words(rng)
    scale = num_passages / MSMARCO_PASSAGES
    num_train = max(1, round(MSMARCO_TRAIN_QUERIES * scale))
    num_dev = max(100, round(MSMARCO_DEV_QUERIES * scale))
    words_written = 0
    with open(folder / "collection.tsv", "w", encoding="utf-8") as collection:
        for start in range(0, num_passages, _CHUNK):
            count = min(_CHUNK, num_passages - start)
            lengths = np.clip(np.rint(rng.gamma(4.0, 14.0, count)), 4, 300).astype(np.int64)
            words_written += int(lengths.sum())
            texts = _zipf_texts(rng, words, cdf, lengths)
            collection.write("".join(f"{start + i}\t{t}\n" for i, t in enumerate(texts)))
    counts = {"passages": num_passages, "mean_words": words_written / num_passages, "qrels": {}}
    first_qid = 0
    for split, num in (("train", num_train), ("dev", num_dev)):
        qids = np.arange(first_qid, first_qid + num)
        first_qid += num
        positives = rng.integers(0, num_passages, size=(num, 2))
        second = (rng.random(num) < 0.06) & (positives[:, 1] != positives[:, 0])
        with open(folder / f"queries.{split}.tsv", "w", encoding="utf-8") as queries:
            for start in range(0, num, _CHUNK):
                count = min(_CHUNK, num - start)
                lengths = np.clip(1 + np.rint(rng.gamma(3.0, 2.0, count)), 1, 30).astype(np.int64)
                texts = _zipf_texts(rng, words, cdf, lengths)
                queries.write("".join(f"{qids[start + i]}\t{t}\n" for i, t in enumerate(texts)))
        with open(folder / f"qrels.{split}.tsv", "w", encoding="utf-8") as qrels:
            for start in range(0, num, _CHUNK):
                rows = range(start, min(start + _CHUNK, num))
                qrels.write(
                    "".join(
                        f"{qids[r]}\t0\t{positives[r, 0]}\t1\n"
                        + (f"{qids[r]}\t0\t{positives[r, 1]}\t1\n" if second[r] else "")
                        for r in rows
                    )
                )
        counts[split] = num
        counts["qrels"][split] = num + int(second.sum())
        if split == "train":
            with open(folder / "train.negatives.tsv", "w", encoding="utf-8") as negatives:
                for start in range(0, num, _CHUNK):
                    count = min(_CHUNK, num - start)
                    pids = rng.integers(0, num_passages, size=(count, num_negatives))
                    with_positive = rng.random(count) < 0.2
                    pids[with_positive, 0] = positives[start : start + count][with_positive, 0]
                    negatives.write(
                        "".join(
                            f"{qids[start + i]}\t{','.join(map(str, row))}\n"
                            for i, row in enumerate(pids.tolist())
                        )
                    )
    return counts
