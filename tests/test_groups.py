"""Training groups: pools from several sources, per-epoch draws, empty pools, streaming shards, and the
epoch reaching the dataset through a real `transformers.Trainer` run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from led_hf.data.groups import TrainGroups
from led_hf.data.sampling import draw_negatives, negative_pool
from led_hf.errors import LedError

NEGATIVES = {
    # q1's positive 0 sits inside its bm25 list; q2 has two positives (two training rows);
    # q4 is in no source; q5's only candidate is its own positive -> both have empty pools.
    "bm25": {"q1": [5, 6, 0, 7, 8, 9, 10], "q2": [2, 3, 4, 11], "q3": [12, 13], "q5": [5]},
    "mined": {"q1": [6, 14, 15], "q2": [16, 3], "q3": [12, 17, 18, 19, 1]},
}
QRELS = [("q1", 0), ("q2", 1), ("q2", 2), ("q3", 3), ("q4", 4), ("q5", 5)]


def write_prepared(root: Path, pid_prefix: str = "") -> Path:
    """A prepared folder written directly with `datasets` (same columns as `led prepare`)."""
    from datasets import Dataset

    pid = lambda i: f"{pid_prefix}{i}"  # noqa: E731
    Dataset.from_dict(
        {
            "pid": [pid(i) for i in range(20)],
            "title": [f"title {i}" if i % 3 else "" for i in range(20)],
            "text": [f"passage number {i}" for i in range(20)],
        }
    ).save_to_disk(root / "corpus")
    Dataset.from_dict(
        {"qid": [f"q{i}" for i in range(6, 0, -1)], "text": [f"query {i}" for i in range(6, 0, -1)]}
    ).save_to_disk(root / "queries")
    Dataset.from_dict(
        {
            "qid": [q for q, _ in QRELS] + ["q3"],
            "pid": [pid(p) for _, p in QRELS] + [pid(19)],
            "score": [1] * len(QRELS) + [0],
        }
    ).save_to_disk(root / "qrels" / "train")
    for source, lists in NEGATIVES.items():
        Dataset.from_dict(
            {
                "qid": list(lists),
                "pids": [[pid(p) for p in v] for v in lists.values()],
                "scores": [[float(-k) for k in range(len(v))] for v in lists.values()],
            }
        ).save_to_disk(root / "negatives" / source)
    return root


@pytest.fixture(scope="module", params=["", "d"], ids=["identity-ids", "hashed-ids"])
def prepared(request, tmp_path_factory) -> tuple[Path, str]:
    return write_prepared(tmp_path_factory.mktemp("prepared"), request.param), request.param


def reference_pool(qid: str, sources: list[str], depth: int, dedupe: bool, prefix: str) -> list[str]:
    positives = {f"{prefix}{p}" for q, p in QRELS if q == qid}
    lists = [[f"{prefix}{p}" for p in NEGATIVES[s].get(qid, [])] for s in sources]
    return negative_pool(lists, depth, positives, dedupe)


@pytest.mark.parametrize("dedupe", [False, True])
def test_items_follow_the_spec_draw(prepared, dedupe):
    root, prefix = prepared
    groups = TrainGroups(
        root,
        negs_sources="bm25, mined",
        num_negs_per_system=4,
        num_negatives=3,
        dedupe_negatives=dedupe,
        seed=11,
        show_progress=False,
    )
    assert groups.group_size == 4 and groups.num_empty_pools == 2 and groups.num_skipped_rows == 2
    assert len(groups) == 4  # q1, q2 (x2), q3; q4/q5 skipped
    positives = [(q, p) for q, p in QRELS if q not in ("q4", "q5")]
    for epoch in (0, 1):
        groups.set_epoch(epoch)
        for i, (qid, positive) in enumerate(positives):
            item = groups[i]
            assert item["qid"] == qid and item["query"] == f"query {qid[1:]}"
            assert item["pids"][0] == f"{prefix}{positive}"
            pool = reference_pool(qid, ["bm25", "mined"], 4, dedupe, prefix)
            # example row = position among positive qrels rows (here equal to i)
            assert item["pids"][1:] == draw_negatives(pool, 3, seed=11, epoch=epoch, row=i)
            rows = [int(p[len(prefix) :]) for p in item["pids"]]
            assert item["texts"] == [f"passage number {r}" for r in rows]
            assert item["titles"] == [f"title {r}" if r % 3 else "" for r in rows]
    # q3's pool has 5 (or 4 deduped) entries > 3: the draw changes between epochs, not within one
    groups.set_epoch(0)
    first = groups[3]["pids"]
    assert groups[3]["pids"] == first
    assert any(
        groups.candidate_rows(3, epoch=e).tolist() != groups.candidate_rows(3, epoch=0).tolist()
        for e in range(1, 6)
    )


def test_source_order_truncation_and_unknown_source(prepared):
    root, prefix = prepared
    groups = TrainGroups(
        root, negs_sources=["mined", "bm25"], num_negs_per_system=2, num_negatives=1, show_progress=False
    )
    # q1: mined[:2] = 6, 14; bm25[:2] = 5, 6 -> [6, 14, 5, 6]
    assert groups.pool(0).tolist() == [6, 14, 5, 6]
    with pytest.raises(LedError, match="no negatives source 'nope'"):
        TrainGroups(root, negs_sources="bm25,nope", show_progress=False)


def test_empty_pools_in_batch_fill_with_other_positives(prepared, caplog):
    root, prefix = prepared
    with caplog.at_level(logging.WARNING):
        groups = TrainGroups(
            root,
            negs_sources="bm25",
            num_negs_per_system=200,
            num_negatives=2,
            empty_pool="in_batch",
            show_progress=False,
        )
    assert "2 of 5 training queries have an empty negative pool" in caplog.text
    assert len(groups) == 6 and groups.num_skipped_rows == 0
    training_positives = {f"{prefix}{p}" for _, p in QRELS}
    for epoch in range(3):
        groups.set_epoch(epoch)
        for index in (4, 5):  # q4, q5
            item = groups[index]
            assert len(item["pids"]) == 3 and item["pids"][0] == f"{prefix}{QRELS[index][1]}"
            negatives = item["pids"][1:]
            assert set(negatives) <= training_positives - {item["pids"][0]}
            assert len(set(negatives)) == 2  # 5 others >= NN: without replacement
    # rows with a pool draw the same as with empty_pool="skip" (the draw is keyed by the example row)
    skipping = TrainGroups(root, negs_sources="bm25", num_negatives=2, show_progress=False)
    skipping.set_epoch(2)
    assert [skipping[i] for i in range(4)] == [groups[i] for i in range(4)]


def test_pickles_without_copying_tables(prepared):
    import pickle

    root, _ = prepared
    groups = TrainGroups(root, negs_sources="bm25", num_negatives=2, show_progress=False)
    groups.set_epoch(1)
    item = groups[0]  # opens the readers, which must not travel with the pickle
    clone = pickle.loads(pickle.dumps(groups))
    assert "_corpus" not in clone.__dict__ and clone[0] == item


def test_no_negatives_at_all(prepared):
    root, _ = prepared
    groups = TrainGroups(root, negs_sources=None, num_negatives=0, show_progress=False)
    assert groups.group_size == 1 and len(groups) == 6 and groups.num_empty_pools == 0
    assert len(groups[0]["pids"]) == 1
    with pytest.raises(LedError, match="no training rows left"):
        TrainGroups(root, negs_sources=None, num_negatives=2, show_progress=False)


def test_bad_ids_are_reported(tmp_path):
    from datasets import Dataset

    root = write_prepared(tmp_path / "data")
    Dataset.from_dict({"qid": ["q1"], "pids": [["3", "99"]], "scores": [[1.0, 0.5]]}).save_to_disk(
        root / "negatives" / "broken"
    )
    with pytest.raises(
        LedError, match=r"negatives/broken: qid 'q1' lists pid '99', which is not in the corpus"
    ):
        TrainGroups(root, negs_sources="broken", show_progress=False)
    Dataset.from_dict({"qid": ["q9"], "pid": ["1"], "score": [1]}).save_to_disk(root / "qrels" / "bad")
    with pytest.raises(LedError, match=r"qrels/bad: qid 'q9' is not in"):
        TrainGroups(root, split="bad", num_negatives=0, show_progress=False)


class PidRecorder(torch.nn.Module):
    """A trivial model: its loss is a function of one weight; it records the pids of every batch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[str]] = []

    def forward(self, pids, **kwargs):
        self.seen.append([p for group in pids for p in group])
        return {"loss": (self.weight - 1.0).pow(2).sum()}


class Opaque(torch.utils.data.Dataset):
    """Hides `set_epoch` from Accelerate, as its sharded (multi-process) DataLoader does in effect."""

    def __init__(self, groups):
        self.groups = groups

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, index):
        return self.groups[index]


def _train(groups, output_dir, epochs=2, callbacks=None) -> list[list[str]]:
    from transformers import Trainer, TrainingArguments

    from led_hf.trainers.callbacks import EpochCallback

    callbacks = [EpochCallback()] if callbacks is None else callbacks
    model = PidRecorder()
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=2,
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
        save_strategy="no",
        logging_strategy="no",
        seed=5,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=groups,
        callbacks=callbacks,
        data_collator=lambda features: {"pids": [f["pids"] for f in features]},
    )
    trainer.train()
    return model.seen


def test_trainer_run_sets_the_epoch(prepared, tmp_path):
    root, prefix = prepared

    def make():
        return TrainGroups(
            root,
            negs_sources="bm25,mined",
            num_negs_per_system=200,
            num_negatives=2,
            seed=3,
            show_progress=False,
        )

    seen = _train(make(), tmp_path / "a")
    assert len(seen) == 4  # 4 rows, batch 2, 2 epochs
    epoch0 = {tuple(b) for b in seen[:2]}
    epoch1 = {tuple(b) for b in seen[2:]}
    groups = make()
    expected = {
        e: {tuple(groups.candidate_rows(i, epoch=e).tolist()) for i in range(len(groups))} for e in (0, 1)
    }

    def groups_of(batches):
        flat = [int(p[len(prefix) :]) for b in batches for p in b]
        return {tuple(flat[k : k + 3]) for k in range(0, len(flat), 3)}

    assert groups_of(epoch0) == expected[0] and groups_of(epoch1) == expected[1]
    assert expected[0] != expected[1]  # negatives differ between epochs
    # a second run with the same seed sees the same groups per epoch (its batch order may differ)
    again = _train(make(), tmp_path / "b")
    assert groups_of(again[:2]) == expected[0] and groups_of(again[2:]) == expected[1]

    # Under DDP, Accelerate's sharded sampler takes the epoch and never calls dataset.set_epoch; the
    # callback holding the dataset still reaches it. Without it the second epoch repeats the first.
    from led_hf.trainers.callbacks import EpochCallback

    hidden = make()
    seen = _train(Opaque(hidden), tmp_path / "c", callbacks=[EpochCallback(dataset=hidden)])
    assert groups_of(seen[:2]) == expected[0] and groups_of(seen[2:]) == expected[1]
    stale = _train(Opaque(make()), tmp_path / "d", callbacks=[])
    assert groups_of(stale[:2]) == groups_of(stale[2:]) == expected[0]


def test_epoch_callback_refuses_persistent_workers():
    from types import SimpleNamespace

    from led_hf.trainers.callbacks import EpochCallback

    args = SimpleNamespace(dataloader_persistent_workers=True, dataloader_num_workers=2)
    with pytest.raises(LedError, match="persistent"):
        EpochCallback().on_train_begin(args, None, None)
    EpochCallback().on_train_begin(
        SimpleNamespace(dataloader_persistent_workers=True, dataloader_num_workers=0), None, None
    )


def test_prepared_by_led_prepare(request):
    pytest.importorskip("led_hf.cli.prepare")
    prepared_msmarco = request.getfixturevalue("prepared_msmarco")
    sources = TrainGroups(prepared_msmarco, num_negatives=0, show_progress=False).data.negative_sources()
    groups = TrainGroups(prepared_msmarco, negs_sources=sources[:1], num_negatives=3, show_progress=False)
    item = groups[0]
    assert item["qid"] == "100" and item["pids"][0] == "0" and "0" not in item["pids"][1:]
    assert set(item["pids"][1:]) <= {"5", "3", "8", "2"}
