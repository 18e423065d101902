"""The fine-tune a sentence-transformers user would run instead of led-hf's DEN warm-up, as the baseline of
the dev studies (docs/quality.md): all-MiniLM-L6-v2 trained with SentenceTransformerTrainer and
MultipleNegativesRankingLoss on a `led prepare`d folder's training queries and their BM25 negatives.

    .venv/bin/python benchmarks/st_baseline.py --data runs/demo-scifact-dev/data --output OUT --steps 44 --seed 42

then score OUT like any led-hf model (`led encode` of the corpus and the queries, `led search`, `led
evaluate --baseline`). The folder needs BM25 top-200 negatives of its training queries
(DATA/negatives/bm25: `led bm25 --negatives bm25`, as every demo pipeline writes them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def train_sentence_transformers(data: Path, output: str, max_steps: int, seed: int) -> dict:
    """The DEN warm-up's budget (max_steps of 16, lr 2e-5, 10% warm-up, weight decay 0.01) spent the way a
    sentence-transformers user would: SentenceTransformerTrainer, MultipleNegativesRankingLoss at scale 20
    (= 1 / the DEN config's temperature 0.05), BatchSamplers.NO_DUPLICATES, and the dataset of (anchor,
    positive, negative) rows that sentence-transformers expects: one per qrels pair of the train split
    (grade >= 1), its negative drawn (seeded) from the query's BM25 top 200, positives excluded."""
    import numpy as np
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from led_hf.data.store import PreparedData
    from led_hf.pipeline.variables import placeholders

    prepared = PreparedData(data)
    queries = dict(zip(prepared.queries["qid"], prepared.queries["text"]))
    corpus = prepared.corpus
    texts = {p: f"{t} {x}".strip() for p, t, x in zip(corpus["pid"], corpus["title"], corpus["text"])}
    graded = prepared.qrels_dict("train").items()
    positives = {qid: {p for p, grade in judged.items() if grade >= 1} for qid, judged in graded}
    positives = {qid: pids for qid, pids in positives.items() if pids}
    negatives = prepared.negatives("bm25")
    pools = {qid: [p for p in pids[:200] if p not in positives.get(qid, ())]
             for qid, pids in zip(negatives["qid"], negatives["pids"])}  # fmt: skip
    rng = np.random.default_rng(seed)
    rows = [(queries[qid], texts[pid], texts[str(rng.choice(pools[qid]))])
            for qid in positives for pid in sorted(positives[qid])]  # fmt: skip
    dataset = Dataset.from_dict(
        {key: [row[i] for row in rows] for i, key in enumerate(("anchor", "positive", "negative"))}
    )
    model = SentenceTransformer(placeholders()["minilm"], device="cpu")
    model.max_seq_length = 256
    args = SentenceTransformerTrainingArguments(
        output_dir=output + "-work", max_steps=max_steps, per_device_train_batch_size=16, learning_rate=2e-5,
        warmup_ratio=0.1, weight_decay=0.01, seed=seed, batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no", report_to="none", logging_steps=5, use_cpu=True,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model, scale=20.0)
    )
    trainer.train()
    model.save(output)
    return {"rows": len(rows), "epochs": round(trainer.state.epoch, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="a `led prepare`d folder with BM25 negatives")
    parser.add_argument("--output", required=True, help="where the fine-tuned model is saved")
    parser.add_argument(
        "--steps", type=int, required=True, help="optimizer steps of 16 rows (one epoch: rows / 16)"
    )
    parser.add_argument("--seed", type=int, default=42, help="training and negative-drawing seed")
    args = parser.parse_args()
    print(json.dumps(train_sentence_transformers(Path(args.data), args.output, args.steps, args.seed)))


if __name__ == "__main__":
    main()
