"""Model kinds: a *ForMaskedLM folder is SPLADE wherever a kind is inferred; SPLADE needs a trained MLM head."""

from __future__ import annotations

import json

import pytest

from led_hf.cli.main import main
from led_hf.errors import LedError
from led_hf.mining.job import model_kind
from led_hf.modeling import SpladeEncoder
from led_hf.modeling.bundled import resolve_model_path
from led_hf.modeling.checkpoint import detect_model_kind


def test_masked_lm_folder_is_splade(tiny_bert_mlm_dir, tiny_bert_dir):
    assert detect_model_kind(tiny_bert_mlm_dir) == "splade"
    assert model_kind(str(tiny_bert_mlm_dir)) == "splade"  # mining no longer asks for --kind
    assert detect_model_kind(resolve_model_path("bundled:splade-tiny")) == "splade"
    assert detect_model_kind(resolve_model_path("bundled:all-minilm-l6-v2")) == "dense"  # modules.json
    assert detect_model_kind(tiny_bert_dir) is None  # a plain BertModel: the command decides


def test_splade_refuses_a_model_without_masked_lm_head(tiny_bert_dir, tiny_bert_mlm_dir):
    SpladeEncoder.from_pretrained(tiny_bert_mlm_dir)  # has its head
    with pytest.raises(
        LedError, match=r"no trained masked-LM head \(missing from the checkpoint: cls\.predictions"
    ):
        SpladeEncoder.from_pretrained(tiny_bert_dir)
    with pytest.raises(LedError, match="no trained masked-LM head"):
        SpladeEncoder.from_pretrained(resolve_model_path("bundled:all-minilm-l6-v2"))


def test_encode_infers_splade_for_a_masked_lm_folder(tiny_bert_mlm_dir, prepared_msmarco, tmp_path):
    out = tmp_path / "enc"
    assert (
        main(
            [
                "encode",
                "--model",
                str(tiny_bert_mlm_dir),
                "--data",
                str(prepared_msmarco),
                "--corpus",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    shard = next(out.glob("shard-*"))
    assert (shard / "indptr.npy").is_file() and not (shard / "embeddings.npy").exists()
    assert json.loads((out / "manifest.json").read_text())["model"]


def test_encode_with_kind_splade_refuses_a_dense_model(tiny_bert_dir, prepared_msmarco, tmp_path, capsys):
    out = tmp_path / "enc"
    code = main(
        [
            "encode",
            "--model",
            str(tiny_bert_dir),
            "--kind",
            "splade",
            "--data",
            str(prepared_msmarco),
            "--corpus",
            "--output",
            str(out),
            "--no-progress",
        ]
    )
    assert code != 0 and "no trained masked-LM head" in capsys.readouterr().err
    assert not out.exists()
