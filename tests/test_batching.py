"""NoDuplicatesSampler: global batches without a repeated query or passage, alone, split over two
processes by Accelerate's own batch sharding, and through the Trainer's DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_group_by_query import write_graded

from led_hf.data.batching import NoDuplicatesSampler
from led_hf.data.groups import TrainGroups


def write_many_positives(root):
    """24 queries with 1-4 positives each (some shared by two queries) over 120 passages, and 30-deep
    negative lists: in pair mode two rows of one query, or one passage in two groups, are frequent."""
    from datasets import Dataset

    rng = np.random.default_rng(0)
    Dataset.from_dict(
        {"pid": [str(i) for i in range(120)], "title": [""] * 120, "text": [f"p {i}" for i in range(120)]}
    ).save_to_disk(root / "corpus")
    qids = [f"q{i}" for i in range(24)]
    Dataset.from_dict({"qid": qids, "text": [f"query {q}" for q in qids]}).save_to_disk(root / "queries")
    qrels = []
    for k, qid in enumerate(qids):
        own = rng.choice(120, size=1 + k % 4, replace=False).tolist()
        qrels += [(qid, str(p), int(rng.integers(1, 4))) for p in own]
    Dataset.from_dict(
        {"qid": [q for q, _, _ in qrels], "pid": [p for _, p, _ in qrels], "score": [g for *_, g in qrels]}
    ).save_to_disk(root / "qrels" / "train")
    lists = [[str(p) for p in rng.choice(120, size=30, replace=False)] for _ in qids]
    Dataset.from_dict({"qid": qids, "pids": lists, "scores": [[0.0] * 30] * 24}).save_to_disk(
        root / "negatives" / "bm25"
    )
    return root


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return write_graded(tmp_path_factory.mktemp("graded"))


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    return write_many_positives(tmp_path_factory.mktemp("many"))


def _pair_groups(root, num_negatives=1, seed=5):
    return TrainGroups(
        root,
        negs_sources="bm25",
        num_negatives=num_negatives,
        seed=seed,
        show_progress=False,
        group_by="pair",
    )


def _duplicates(groups, batch, epoch) -> tuple[int, int]:
    queries = [groups.query_number(i) for i in batch]
    passages = [int(r) for i in batch for r in groups.candidate_rows(i, epoch)]
    return len(queries) - len(set(queries)), len(passages) - len(set(passages))


def test_batches_hold_no_query_or_passage_twice(many):
    groups = _pair_groups(many, num_negatives=3)
    assert len(groups) == 60  # 24 queries, 1-4 positives each
    sampler = NoDuplicatesSampler(groups, global_batch_size=8)
    random_hits = 0
    for epoch in range(6):
        groups.set_epoch(epoch)
        batches = sampler.batches()
        flat = [i for batch in batches for i in batch]
        assert sorted(flat) == list(range(len(groups))) == sorted(sampler)  # every row once per epoch
        assert [len(b) for b in batches] == [8] * 7 + [4] and len(sampler) == 60
        # 32 of 120 passages per batch: the last few batches may be left with no duplicate-free choice
        assert sampler.relaxed_items <= 6 and all(number >= 5 for number in sampler.relaxed_batches)
        for number, batch in enumerate(batches):
            queries, passages = _duplicates(groups, batch, epoch)
            assert queries == 0  # rows of one query are spread over the epoch
            assert passages == 0 or number in sampler.relaxed_batches
        # the property is not vacuous: a plain shuffle of the same rows repeats queries or passages
        order = np.random.default_rng([5, epoch]).permutation(len(groups))
        random_hits += sum(_duplicates(groups, order[k : k + 8], epoch) != (0, 0) for k in range(0, 56, 8))
    assert random_hits > 20
    # deterministic per epoch, a new order each epoch
    assert sampler.batches(epoch=2) == NoDuplicatesSampler(_pair_groups(many, 3), 8).batches(epoch=2)
    assert len({tuple(map(tuple, sampler.batches(epoch=e))) for e in range(6)}) == 6


def test_impossible_batches_are_completed_and_counted(graded):
    # q1 has 4 of the 8 rows: batches of 8 cannot avoid repeating it, and every row is still used once
    groups = _pair_groups(graded, num_negatives=0)
    sampler = NoDuplicatesSampler(groups, global_batch_size=8)
    batches = sampler.batches(epoch=0)
    assert [len(b) for b in batches] == [8] and sampler.relaxed_items == 4 and sampler.relaxed_batches == [0]
    with pytest.raises(ValueError):
        NoDuplicatesSampler(groups, global_batch_size=0)


def test_two_processes_split_one_global_batch(many):
    """Accelerate's sharding of the Trainer's DataLoader: rank r takes local batches r, r+2, ...; the two
    local batches of a step together are one duplicate-free window of the sampler."""
    from accelerate.data_loader import BatchSamplerShard

    groups = _pair_groups(many, num_negatives=3)
    per_device, world = 4, 2
    for epoch in range(4):
        groups.set_epoch(epoch)
        sampler = NoDuplicatesSampler(groups, global_batch_size=per_device * world)
        local = torch.utils.data.BatchSampler(sampler, per_device, drop_last=True)
        ranks = [list(BatchSamplerShard(local, world, rank)) for rank in range(world)]
        batches = sampler.batches()
        assert len(ranks[0]) == len(ranks[1]) == 7  # 60 rows: 7 full global batches, the rest dropped
        for step, (batch0, batch1) in enumerate(zip(*ranks)):
            assert batch0 + batch1 == batches[step]
            if step not in sampler.relaxed_batches:
                assert _duplicates(groups, batch0 + batch1, epoch) == (0, 0)


def test_the_trainer_uses_it(many, tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from led_hf.arguments import DenseTrainingArguments
    from led_hf.collators.train import TrainCollator
    from led_hf.modeling import DenseEncoder
    from led_hf.trainers.dense import DenseTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)

    def trainer(**settings):
        return DenseTrainer(
            model=DenseEncoder.from_pretrained(tiny_bert_dir),
            args=DenseTrainingArguments(
                output_dir=str(tmp_path),
                use_cpu=True,
                per_device_train_batch_size=8,
                report_to="none",
                **settings,
            ),
            train_dataset=_pair_groups(many, num_negatives=3),
            data_collator=TrainCollator(tokenizer, 8, 8),
            processing_class=tokenizer,
        )

    trained = trainer()
    batches = list(trained.get_train_dataloader())
    assert len(batches) == 7  # drop_last
    sampler = trained._get_train_sampler()
    sampler.batches(epoch=0)
    for number, batch in enumerate(batches):
        rows = batch["passage_rows"].tolist()
        assert len(rows) == 32 and (len(rows) == len(set(rows)) or number in sampler.relaxed_batches)
    assert not isinstance(trainer(no_duplicates_in_batch=False)._get_train_sampler(), NoDuplicatesSampler)
    assert not isinstance(
        trainer(train_sampling_strategy="sequential")._get_train_sampler(), NoDuplicatesSampler
    )


def test_fewer_rows_than_one_batch_is_an_error_not_zero_steps(graded, tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer

    from led_hf.arguments import DenseTrainingArguments
    from led_hf.collators.train import TrainCollator
    from led_hf.errors import LedError
    from led_hf.modeling import DenseEncoder
    from led_hf.trainers.dense import DenseTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    groups = TrainGroups(graded, negs_sources="bm25", num_negatives=1, show_progress=False)  # 4 queries
    trainer = DenseTrainer(
        model=DenseEncoder.from_pretrained(tiny_bert_dir),
        args=DenseTrainingArguments(
            output_dir=str(tmp_path),
            use_cpu=True,
            per_device_train_batch_size=8,
            max_steps=2,
            report_to="none",
        ),
        train_dataset=groups,
        data_collator=TrainCollator(tokenizer, 8, 8),
        processing_class=tokenizer,
    )
    with pytest.raises(LedError, match="4 training rows make no full batch of 8"):
        trainer.train()
