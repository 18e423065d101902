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
