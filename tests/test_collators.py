"""Collators: exact token sequences with the tiny fixture tokenizer, shapes, padding, group order."""

from __future__ import annotations

import pytest
import torch

from led_hf.collators import CrossEncoderCollator, EncodeCollator, TrainCollator, encode_passages


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def tokens(tokenizer, ids) -> list[str]:
    return tokenizer.convert_ids_to_tokens([int(i) for i in ids])


def unpadded(tokenizer, batch, row) -> list[str]:
    mask = batch["attention_mask"][row].bool()
    return tokens(tokenizer, batch["input_ids"][row][mask])


ITEMS = [
    {
        "qid": "1",
        "query": "aspirin heart",
        "pids": ["0", "8"],
        "titles": ["Aspirin", ""],
        "texts": ["Aspirin reduces risk.", "Salt raises pressure."],
    },
    {
        "qid": "2",
        "query": "vitamin d deficiency in winter",
        "pids": ["1", "3"],
        "titles": ["", "Sleep"],
        "texts": ["Vitamin D deficiency is common.", "Short sleep raises blood pressure."],
    },
]


def test_train_collator_contract(tokenizer):
    batch = TrainCollator(tokenizer)(ITEMS)
    assert set(batch) == {"query", "passage"}
    assert batch["query"]["input_ids"].shape == (2, 7)  # "vitamin d deficiency in winter" + CLS/SEP
    assert batch["passage"]["input_ids"].shape[0] == 4
    # group order, positive first; (title, text) pairs only where a title exists
    assert unpadded(tokenizer, batch["passage"], 0) == [
        "[CLS]",
        "aspirin",
        "[SEP]",
        "aspirin",
        "reduces",
        "risk",
        ".",
        "[SEP]",
    ]
    assert unpadded(tokenizer, batch["passage"], 1) == ["[CLS]", "salt", "raises", "pressure", ".", "[SEP]"]
    assert unpadded(tokenizer, batch["passage"], 2) == [
        "[CLS]",
        "vitamin",
        "d",
        "deficiency",
        "is",
        "common",
        ".",
        "[SEP]",
    ]
    assert unpadded(tokenizer, batch["passage"], 3)[:4] == ["[CLS]", "sleep", "[SEP]", "short"]
    # the title is segment 0, the text segment 1; single texts are all segment 0
    assert batch["passage"]["token_type_ids"][0, :8].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    assert not batch["passage"]["token_type_ids"][1].any()
    # dynamic padding: the longest row sets the width, padding is [PAD] with mask 0
    lengths = batch["passage"]["attention_mask"].sum(1)
    assert batch["passage"]["input_ids"].shape[1] == int(lengths.max())
    assert set(tokens(tokenizer, batch["passage"]["input_ids"][1][6:])) == {"[PAD]"}


def test_train_collator_docstring_example(tokenizer):
    batch = TrainCollator(tokenizer)(ITEMS[:1])
    assert batch["query"]["input_ids"].shape == (1, 4) and batch["passage"]["input_ids"].shape == (2, 8)
    assert tokenizer.batch_decode(batch["passage"]["input_ids"]) == [
        "[CLS] aspirin [SEP] aspirin reduces risk. [SEP]",
        "[CLS] salt raises pressure. [SEP] [PAD] [PAD]",
    ]


def test_lengths_and_pad_to_multiple_of(tokenizer):
    long_text = " ".join(["blood pressure"] * 200)
    item = {
        "qid": "9",
        "query": " ".join(["heart"] * 100),
        "pids": ["0", "1"],
        "titles": ["Aspirin", ""],
        "texts": [long_text, long_text],
    }
    batch = TrainCollator(tokenizer)([item])
    assert batch["query"]["input_ids"].shape == (1, 32) and batch["passage"]["input_ids"].shape == (2, 128)
    assert unpadded(tokenizer, batch["passage"], 0)[:3] == [
        "[CLS]",
        "aspirin",
        "[SEP]",
    ]  # text cut, title kept
    assert tokens(tokenizer, batch["passage"]["input_ids"][:, -1]) == ["[SEP]", "[SEP]"]
    with pytest.raises(ValueError, match="multiple of pad_to_multiple_of"):
        TrainCollator(tokenizer, query_max_length=8, pad_to_multiple_of=16)
    batch = TrainCollator(tokenizer, query_max_length=32, passage_max_length=32, pad_to_multiple_of=16)(ITEMS)
    assert batch["query"]["input_ids"].shape == (2, 16)  # 7 tokens -> padded to 16
    assert batch["query"]["attention_mask"].sum(1).tolist() == [4, 7]
    assert batch["passage"]["input_ids"].shape == (4, 16)  # longest 10 tokens -> 16


def test_group_size_must_agree(tokenizer):
    bad = dict(ITEMS[1], pids=["1"], titles=[""], texts=["x"])
    with pytest.raises(ValueError, match="different sizes"):
        TrainCollator(tokenizer)([ITEMS[0], bad])
    with pytest.raises(ValueError, match="differ in length"):
        TrainCollator(tokenizer)([dict(ITEMS[0], texts=["only one"])])


def test_extra_keys_pass_through(tokenizer):
    items = [dict(item, teacher_scores=[float(i), float(i) - 1]) for i, item in enumerate(ITEMS)]
    batch = TrainCollator(tokenizer, extra_keys=("teacher_scores",))(items)
    assert torch.equal(batch["teacher_scores"], torch.tensor([[0.0, -1.0], [1.0, 0.0]]))


def test_encode_collator(tokenizer):
    passages = EncodeCollator(tokenizer, kind="passage")(
        [{"pid": "7", "title": "Sleep", "text": "Short sleep."}, {"id": "8", "text": "Salt intake."}]
    )
    assert passages["ids"] == ["7", "8"]
    assert unpadded(tokenizer, passages["batch"], 0) == [
        "[CLS]",
        "sleep",
        "[SEP]",
        "short",
        "sleep",
        ".",
        "[SEP]",
    ]
    assert unpadded(tokenizer, passages["batch"], 1) == ["[CLS]", "salt", "intake", ".", "[SEP]"]
    queries = EncodeCollator(tokenizer, kind="query")(
        [{"qid": "100", "text": "heart " * 50, "title": "ignored"}]
    )
    assert queries["ids"] == ["100"] and queries["batch"]["input_ids"].shape == (1, 32)
    assert "ignored" not in tokenizer.decode(queries["batch"]["input_ids"][0])
    with pytest.raises(ValueError):
        EncodeCollator(tokenizer, kind="document")


def test_encode_passages_matches_one_by_one(tokenizer):
    titles = ["Aspirin", "", "Vitamin D", ""]
    texts = [
        "Aspirin reduces risk.",
        "Salt raises blood pressure in salt-sensitive people.",
        "Common.",
        "Sleep.",
    ]
    batch = encode_passages(tokenizer, titles, texts, max_length=12)
    for row, (title, text) in enumerate(zip(titles, texts)):
        alone = (
            tokenizer(title, text, truncation=True, max_length=12)
            if title
            else tokenizer(text, truncation=True, max_length=12)
        )
        width = len(alone["input_ids"])
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert batch[key][row, :width].tolist() == alone[key]
        assert batch["attention_mask"][row, width:].sum() == 0


def test_cross_encoder_pairs_exact_sequence(tokenizer):
    collate = CrossEncoderCollator(tokenizer, max_length=32)
    out = collate(
        [
            {
                "qid": "1",
                "pid": "0",
                "query": "aspirin heart",
                "title": "Aspirin",
                "text": "Aspirin reduces risk.",
            },
            {"qid": "1", "pid": "8", "query": "aspirin heart", "title": "", "text": "Salt."},
        ]
    )
    assert out["qids"] == ["1", "1"] and out["pids"] == ["0", "8"]
    assert unpadded(tokenizer, out["pairs"], 0) == [
        "[CLS]",
        "aspirin",
        "heart",
        "[SEP]",
        "aspirin",
        "[SEP]",
        "aspirin",
        "reduces",
        "risk",
        ".",
        "[SEP]",
    ]
    assert out["pairs"]["token_type_ids"][0, :11].tolist() == [0] * 4 + [1] * 7
    assert unpadded(tokenizer, out["pairs"], 1) == [
        "[CLS]",
        "aspirin",
        "heart",
        "[SEP]",
        "salt",
        ".",
        "[SEP]",
    ]
    assert tokenizer.decode(out["pairs"]["input_ids"][0], skip_special_tokens=False).startswith(
        "[CLS] aspirin heart [SEP] aspirin [SEP] aspirin reduces risk. [SEP]"
    )


def test_cross_encoder_groups(tokenizer):
    out = CrossEncoderCollator(tokenizer, max_length=10)(ITEMS)
    assert out["group_size"] == 2 and out["pairs"]["input_ids"].shape == (4, 10)
    # rows in group order, every row starts with its own query; truncation cuts the passage end
    first = unpadded(tokenizer, out["pairs"], 0)
    assert first[:4] == ["[CLS]", "aspirin", "heart", "[SEP]"] and first[-1] == "[SEP]" and len(first) == 10
    assert unpadded(tokenizer, out["pairs"], 2)[:3] == ["[CLS]", "vitamin", "d"]


def test_groups_through_the_collator(tokenizer, tmp_path):
    from test_groups import write_prepared

    from led_hf.data.groups import TrainGroups

    groups = TrainGroups(
        write_prepared(tmp_path / "data"), negs_sources="bm25,mined", num_negatives=3, show_progress=False
    )
    loader = torch.utils.data.DataLoader(groups, batch_size=2, collate_fn=TrainCollator(tokenizer))
    batches = list(loader)
    assert [b["passage"]["input_ids"].shape[0] for b in batches] == [8, 4]  # q1, q2, q3: one row each
    # corpus rows for false-negative masking: q1 has positive 0, q2 positives 1 and 2 (-1 pads)
    assert batches[0]["positive_rows"].tolist() == [[0, -1], [1, 2]]
    assert batches[0]["passage_rows"].tolist() == groups[0]["candidate_rows"] + groups[1]["candidate_rows"]
    assert batches[1]["positive_rows"].tolist() == [[3]]
    first = groups[0]
    expected = encode_passages(tokenizer, first["titles"], first["texts"], 128)
    width = expected["input_ids"].shape[1]
    assert torch.equal(batches[0]["passage"]["input_ids"][:4, :width], expected["input_ids"])
