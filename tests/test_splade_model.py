"""SpladeEncoder: special-token masking, BERT and DistilBERT backbones, plain-folder save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from led_hf.errors import LedError
from led_hf.modeling.splade import SpladeEncoder


def _numpy_reference(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (np.log1p(np.maximum(logits.astype(np.float64), 0)) * mask[:, :, None]).max(axis=1)


def test_pooling_mask_drops_cls_and_final_sep_only(tiny_bert_mlm_dir):
    encoder = SpladeEncoder.from_pretrained(tiny_bert_mlm_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_mlm_dir)
    batch = tokenizer(["query"], ["passage text here"], return_tensors="pt")
    batch2 = tokenizer(["query words", "query"], padding=True, return_tensors="pt")
    ids = batch["input_ids"][0].tolist()
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    mask = encoder.pooling_mask(batch["input_ids"], batch["attention_mask"])[0].tolist()
    # [CLS] query [SEP] passage text here [SEP]: the middle [SEP] stays
    assert ids[0] == cls and ids[2] == sep and ids[-1] == sep
    assert mask == [False, True, True, True, True, True, False]
    padded = encoder.pooling_mask(batch2["input_ids"], batch2["attention_mask"]).tolist()
    assert padded == [[False, True, True, False], [False, True, False, False]]
    keep = SpladeEncoder.from_pretrained(tiny_bert_mlm_dir, mask_special_tokens=False)
    assert (
        keep.pooling_mask(batch2["input_ids"], batch2["attention_mask"]).tolist()
        == batch2["attention_mask"].bool().tolist()
    )


@pytest.mark.parametrize("fixture", ["tiny_bert_mlm_dir", "tiny_distilbert_mlm_dir"])
def test_encode_matches_textbook_pooling(fixture, request):
    path = request.getfixturevalue(fixture)
    encoder = SpladeEncoder.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["what is the query", "passage"], padding=True, return_tensors="pt")
    with torch.no_grad():
        weights = encoder.encode_passage(batch)
        mlm = AutoModelForMaskedLM.from_pretrained(path).eval()
        inputs = {k: v for k, v in batch.items() if k != "token_type_ids" or "distil" not in fixture}
        logits = mlm(**inputs).logits.numpy()
        scores = encoder.score(encoder.encode_query(batch), weights)
        out = encoder(query=batch, passage=batch)
    mask = batch["attention_mask"].numpy().copy()
    mask[:, 0] = 0
    mask[np.arange(2), mask.shape[1] - 1 - np.argmax(batch["attention_mask"].numpy()[:, ::-1], axis=1)] = 0
    assert weights.shape == (2, len(tokenizer)) and weights.dtype == torch.float32
    np.testing.assert_allclose(weights.numpy(), _numpy_reference(logits, mask), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        scores.numpy(), weights.double().numpy() @ weights.double().numpy().T, rtol=1e-5
    )
    torch.testing.assert_close(out.query_embeddings, weights)


def test_save_is_a_plain_mlm_folder(tiny_distilbert_mlm_dir, tmp_path):
    encoder = SpladeEncoder.from_pretrained(tiny_distilbert_mlm_dir, mask_special_tokens=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_distilbert_mlm_dir)
    encoder.save_pretrained(tmp_path / "out", tokenizer)
    config = json.loads((tmp_path / "out" / "led_config.json").read_text())
    assert config["kind"] == "splade" and config["mask_special_tokens"] is False
    plain = AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    assert type(plain).__name__ == "DistilBertForMaskedLM"
    for name, tensor in encoder.model.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[name], tensor)
    assert AutoTokenizer.from_pretrained(tmp_path / "out").vocab == tokenizer.vocab
    again = SpladeEncoder.from_pretrained(tmp_path / "out")
    assert again.mask_special_tokens is False and again.cls_token_id == tokenizer.cls_token_id


def test_refuses_other_kinds_and_non_mlm(tiny_bert_mlm_dir, tiny_bert_dir, tmp_path):
    with pytest.raises(LedError):
        SpladeEncoder.from_pretrained(tmp_path / "missing")
    folder = tmp_path / "dense"
    encoder = SpladeEncoder.from_pretrained(tiny_bert_mlm_dir)
    encoder.save_pretrained(folder)
    (folder / "led_config.json").write_text('{"kind": "dense"}')
    with pytest.raises(LedError, match="not a SPLADE model"):
        SpladeEncoder.from_pretrained(folder)
