"""`--precision`: resolution of auto by device, and bf16 encoding through `led encode` (any CPU runs it)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from led_hf import precision as prec
from led_hf.errors import LedError
from led_hf.retrieval import encode as enc
from led_hf.retrieval.sparse_encode import load_sparse


def test_explicit_precisions_are_kept_and_unknown_refused():
    for name in ("fp32", "bf16", "fp16"):
        assert prec.resolve_precision(name, "cpu") == name
    with pytest.raises(LedError, match="precision 'half'"):
        prec.resolve_precision("half", "cpu")


@pytest.mark.parametrize("override, expected", [("1", "bf16"), ("0", "fp32")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, override, expected):
    monkeypatch.setenv(prec.CPU_BF16_ENV, override)
    assert prec.resolve_precision("auto", "cpu") == expected


def test_auto_detection_and_bad_override(monkeypatch):
    monkeypatch.delenv(prec.CPU_BF16_ENV)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert prec.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert prec.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setenv(prec.CPU_BF16_ENV, "yes")
    with pytest.raises(LedError, match="LED_HF_CPU_BF16='yes'"):
        prec.resolve_precision("auto", "cpu")


def test_with_precision_runs_matmuls_in_bf16_and_fp32_is_untouched():
    fn = lambda x: x @ x  # noqa: E731
    assert prec.with_precision(fn, "cpu", "fp32") is fn
    x = torch.randn(4, 4)
    assert prec.with_precision(fn, "cpu", "bf16")(x).dtype == torch.bfloat16


def cli(*args):
    from led_hf.cli.main import main

    return main(["encode", *map(str, args)])


def test_bf16_dense_encoding_is_close_to_fp32_and_recorded(prepared_msmarco, tiny_bert_dir, tmp_path, capsys):
    base = [
        "--model",
        tiny_bert_dir,
        "--data",
        prepared_msmarco,
        "--corpus",
        "--max-length",
        24,
        "--no-progress",
    ]
    assert cli(*base, "--output", tmp_path / "fp32", "--precision", "fp32") == 0
    assert cli(*base, "--output", tmp_path / "bf16", "--precision", "bf16") == 0
    ids32, e32 = enc.load_embeddings(tmp_path / "fp32")
    ids16, e16 = enc.load_embeddings(tmp_path / "bf16")
    assert ids32 == ids16 and e16.dtype == np.float32
    cosine = (e32 * e16).sum(1) / np.linalg.norm(e32, axis=1) / np.linalg.norm(e16, axis=1)
    assert cosine.min() > 0.995 and np.abs(e32 - e16).max() > 1e-6  # bf16 really ran, and stayed close
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["precision"] == "bf16" and manifest["dtype"] == "float32"
    # A rerun into the folder with another precision would mix shards: refused.
    assert cli(*base, "--output", tmp_path / "bf16", "--precision", "fp32") == 1
    assert "precision='bf16'" in capsys.readouterr().err
    # auto resolves per device; the suite pins CPU auto to fp32 (conftest), so it resumes the fp32 folder.
    assert cli(*base, "--output", tmp_path / "fp32") == 0
    assert "0 shard(s)" in capsys.readouterr().out


def test_store_fp16_halves_the_embeddings(prepared_msmarco, tiny_bert_dir, tmp_path):
    base = [
        "--model",
        tiny_bert_dir,
        "--data",
        prepared_msmarco,
        "--corpus",
        "--max-length",
        24,
        "--no-progress",
    ]
    assert cli(*base, "--output", tmp_path / "half", "--store-fp16", "--precision", "fp32") == 0
    assert cli(*base, "--output", tmp_path / "full", "--precision", "fp32") == 0
    half, full = enc.load_embeddings(tmp_path / "half")[1], enc.load_embeddings(tmp_path / "full")[1]
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), full, rtol=1e-3, atol=1e-3)


def test_bf16_splade_encoding_stays_float32_and_close(prepared_beir, tiny_bert_mlm_dir, tmp_path):
    base = [
        "--model",
        tiny_bert_mlm_dir,
        "--kind",
        "splade",
        "--data",
        prepared_beir,
        "--corpus",
        "--max-length",
        24,
        "--no-progress",
    ]
    assert cli(*base, "--output", tmp_path / "fp32", "--precision", "fp32") == 0
    assert cli(*base, "--output", tmp_path / "bf16", "--precision", "bf16") == 0
    dense = {}
    for name in ("fp32", "bf16"):
        (stored,) = (tmp_path / name).glob("shard-*/values.npy")
        assert np.load(stored).dtype == np.float32
        dense[name] = load_sparse(tmp_path / name)[1].toarray()
    assert dense["fp32"].shape == dense["bf16"].shape
    np.testing.assert_allclose(dense["bf16"], dense["fp32"], rtol=0, atol=0.05 * dense["fp32"].max())
