"""The bundled SciFact (data/scifact, BEIR layout) as benchmark inputs: prepared with `led prepare`, or as
training groups built directly from the jsonl files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_SCIFACT = ROOT / "data" / "scifact"


def prepared_scifact(folder: Path) -> Path:
    """`led prepare --format beir` of the bundled SciFact into `folder` (kept when already there)."""
    from led_hf.cli.main import main

    if not (folder / "corpus").is_dir():
        command = ["prepare", "--format", "beir", "--input", str(BUNDLED_SCIFACT), "--output", str(folder)]
        if main([*command, "--quiet"]) != 0:
            raise RuntimeError("led prepare failed")
    return folder


def scifact_groups(num_items: int, group_size: int, seed: int = 0, query_fits=None) -> list[dict]:
    """`num_items` training groups in `led_hf.data.groups.TrainGroups`' item format from the bundled
    SciFact: a train claim, its positive abstract, then `group_size - 1` random other abstracts.

    Titles are left empty so that every tool tokenizes exactly the same text (an abstract, truncated).
    `query_fits(text) -> bool` keeps only claims that need no truncation (tools truncate queries
    differently: sentence-transformers has one length for every column).
    """
    corpus = {}
    with open(BUNDLED_SCIFACT / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            corpus[record["_id"]] = record["text"]
    queries = {}
    with open(BUNDLED_SCIFACT / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            queries[record["_id"]] = record["text"]
    positives = {}
    with open(BUNDLED_SCIFACT / "qrels" / "train.tsv", encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            qid, pid, _ = line.rstrip("\n").split("\t")
            if pid in corpus:
                positives.setdefault(qid, pid)
    rng = random.Random(seed)
    pids = sorted(corpus)
    items = []
    kept = [qid for qid in sorted(positives, key=int) if query_fits is None or query_fits(queries[qid])]
    for qid in kept[:num_items]:
        negatives = [pid for pid in rng.sample(pids, group_size + 2) if pid != positives[qid]]
        group = [positives[qid], *negatives[: group_size - 1]]
        items.append(
            {
                "qid": qid,
                "query": queries[qid],
                "pids": group,
                "titles": [""] * group_size,
                "texts": [corpus[pid] for pid in group],
            }
        )
    return items
