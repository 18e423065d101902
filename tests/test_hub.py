"""Hub pushes against a local stand-in for the Hub (tests/hub_fake.py, HF_ENDPOINT on 127.0.0.1): checkpoint
pushes carry what the final push carries and no byte of the token; the card's metadata passes the Hub's
check (base_model lineage, license, datasets, pipeline_tag, tags, model-index); SPLADE checkpoints load in
sentence-transformers' SparseEncoder with `led encode`'s term weights."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).parent))
from hub_fake import FakeHub, metadata_errors  # noqa: E402

from led_hf.modeling import DenseEncoder  # noqa: E402
from led_hf.modeling.checkpoint import read_led_config, write_led_config  # noqa: E402
from led_hf.modeling.splade import SpladeEncoder  # noqa: E402
from led_hf.trainers.card_metadata import base_model_lineage, dataset_ids  # noqa: E402

TOKEN = "hf_TopSecretTestToken0123456789abcdef"
MODEL_FILES = {  # what every push of a dense model holds
    "README.md",
    "led_config.json",
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
}


@pytest.fixture()
def fake_hub(monkeypatch):
    import huggingface_hub.constants as constants
    import transformers.utils.hub as transformers_hub

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(transformers_hub, "_hf_api", None, raising=False)  # re-created on the fake
        yield hub


def _stage_one(tmp_path, tiny_bert_dir) -> Path:
    """A local checkpoint (like runs/msmarco/co-stg1) whose lineage says it descends from a Hub model."""
    folder = tmp_path / "runs" / "co-stg1"
    DenseEncoder.from_pretrained(tiny_bert_dir).save_pretrained(
        folder, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir)
    )
    write_led_config(folder, {**read_led_config(folder), "base_model": "Luyu/co-condenser-marco"})
    return folder


def test_checkpoint_and_final_pushes_carry_the_model_and_never_the_token(
    fake_hub, tiny_bert_dir, prepared_msmarco, tmp_path
):
    from huggingface_hub import ModelCard

    from led_hf.cli.train import main as train_main

    out = tmp_path / "out"
    argv = [
        "dense",
        "--model_name_or_path", str(_stage_one(tmp_path, tiny_bert_dir)),
        "--data", str(prepared_msmarco),
        "--negs_sources", "bm25",
        "--num_negatives", "2",
        "--query_max_length", "16",
        "--passage_max_length", "32",
        "--output_dir", str(out),
        "--use_cpu", "true",
        "--per_device_train_batch_size", "2",
        "--max_steps", "2",
        "--save_strategy", "steps",
        "--save_steps", "1",
        "--eval_split", "train",
        "--eval_strategy", "steps",
        "--eval_steps", "1",
        "--report_to", "none",
        "--dataloader_num_workers", "0",
        "--push_to_hub", "true",
        "--hub_model_id", "tester/led-dense",
        "--hub_token", TOKEN,
        "--hub_strategy", "every_save",
        "--hub_always_push", "true",
        "--hub_license", "apache-2.0",
    ]  # fmt: skip
    assert train_main(argv) == 0
    assert fake_hub.refused == [] and not [call for call in fake_hub.unknown if call.startswith("POST")]
    checkpoint_pushes = [c for c in fake_hub.commits if c["message"].startswith("Training in progress")]
    final_pushes = [c for c in fake_hub.commits if not c["message"].startswith("Training in progress")]
    assert len(checkpoint_pushes) == 2 and final_pushes
    for commit in fake_hub.commits:
        names = set(commit["files"])
        assert commit["repo"] == "tester/led-dense"
        assert MODEL_FILES <= names, MODEL_FILES - names
        assert not any(name.endswith(("training_args.bin", ".pt", ".pth")) for name in names), names
        for name, content in commit["files"].items():
            assert TOKEN.encode() not in content, name
    assert TOKEN.encode() not in b"".join(
        (out / name).read_bytes() for name in ("led_args.json", "README.md")
    )

    card = ModelCard(final_pushes[-1]["files"]["README.md"].decode())
    assert metadata_errors(str(card)) == []
    data = card.data
    assert data.base_model == "Luyu/co-condenser-marco"  # from the init checkpoint's lineage, not its path
    assert data.license == "apache-2.0" and data.datasets == ["microsoft/ms_marco"]
    assert data.pipeline_tag == "sentence-similarity" and "led-hf" in data.tags
    results = {result.metric_type: result.metric_value for result in data.eval_results}
    last_eval = json.loads((out / "eval_results.json").read_text())  # the evaluation after training
    assert results["ndcg_at_10"] == pytest.approx(last_eval["eval_ndcg@10"], abs=1e-6)
    assert results["mrr_at_10"] == pytest.approx(last_eval["eval_mrr@10"], abs=1e-6)
    assert read_led_config(out)["base_model"] == "Luyu/co-condenser-marco"  # the lineage goes on


def test_the_hub_check_refuses_a_local_base_model():
    """What failed every final push of a stage started from a local checkpoint (the fake's check is real)."""
    card = "---\nbase_model: {}\nlibrary_name: sentence-transformers\n---\n# card\n"
    assert metadata_errors(card.format('"bundled:all-minilm-l6-v2"'))
    assert metadata_errors(card.format("runs/msmarco/co-stg1"))
    assert metadata_errors(card.format("sentence-transformers/all-MiniLM-L6-v2")) == []


def test_base_model_lineage(tmp_path, tiny_bert_dir, prepared_msmarco, prepared_beir):
    assert base_model_lineage("bundled:all-minilm-l6-v2") == (
        "sentence-transformers/all-MiniLM-L6-v2",
        "apache-2.0",
    )
    assert base_model_lineage("bundled:splade-tiny") == (None, None)
    assert base_model_lineage("Luyu/co-condenser-marco") == ("Luyu/co-condenser-marco", None)
    assert base_model_lineage("runs/msmarco/co-stg1") == (None, None)  # neither a folder here nor a Hub id
    assert base_model_lineage(tiny_bert_dir) == (None, None)  # a local folder without lineage: left out
    card_only = tmp_path / "card-only"
    card_only.mkdir()
    (card_only / "README.md").write_text(
        "---\nbase_model: distilbert/distilbert-base-uncased\nlicense: mit\n---\n"
    )
    assert base_model_lineage(card_only) == ("distilbert/distilbert-base-uncased", "mit")
    assert dataset_ids(prepared_msmarco) == ["microsoft/ms_marco"]
    assert dataset_ids(prepared_beir) == []  # beir_tiny is no BEIR dataset


def test_splade_checkpoint_loads_in_sparse_encoder_with_led_encode_weights(
    tiny_bert_mlm_dir, prepared_msmarco, tmp_path
):
    from sentence_transformers import SparseEncoder

    from led_hf.cli.main import main as led_main
    from led_hf.data.store import PreparedData
    from led_hf.retrieval.sparse_encode import load_sparse

    checkpoint = tmp_path / "splade"
    model = SpladeEncoder.from_pretrained(tiny_bert_mlm_dir)
    model.save_pretrained(checkpoint, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_mlm_dir))
    encoded = tmp_path / "queries"
    assert led_main(
        ["encode", "--model", str(checkpoint), "--data", str(prepared_msmarco), "--queries", "--output",
         str(encoded), "--no-progress", "--precision", "fp32"]
    ) == 0  # fmt: skip
    ids, weights = load_sparse(encoded)
    data = PreparedData(prepared_msmarco)
    texts = dict(zip(data.queries["qid"], data.queries["text"]))

    st_model = SparseEncoder(str(checkpoint), trust_remote_code=True, device="cpu")
    st_model.max_seq_length = 32  # led encode's query length
    st_weights = st_model.encode(
        [texts[i] for i in ids], convert_to_tensor=True, convert_to_sparse_tensor=False
    )
    np.testing.assert_allclose(st_weights.numpy(), weights.toarray(), atol=1e-5)
    # the masking matters: sentence-transformers' own pooling of the same folder gives other weights
    plain = SparseEncoder(str(tiny_bert_mlm_dir), device="cpu")
    plain.max_seq_length = 32
    plain_weights = plain.encode(
        [texts[i] for i in ids], convert_to_tensor=True, convert_to_sparse_tensor=False
    )
    assert np.abs(plain_weights.numpy() - weights.toarray()).max() > 1e-2
    assert torch.is_tensor(st_weights)
