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


# -- training: the `bf16` default of every trainer's arguments ------------------------------------------


@pytest.mark.parametrize(
    "bf16, fp16, on_cpu, native, expected",
    [
        (None, False, True, True, True),  # unset on a bf16 CPU: on
        (None, False, True, False, False),  # unset on a CPU without native bf16: off
        (None, False, False, True, False),  # unset on a GPU: the recipe decides, off
        (None, True, True, True, False),  # fp16 asked for: never both
        (False, False, True, True, False),  # explicit opt-out wins
        (True, False, True, False, True),  # explicit on wins
    ],
)
def test_training_bf16_resolution(monkeypatch, bf16, fp16, on_cpu, native, expected):
    monkeypatch.setenv(prec.CPU_BF16_ENV, "1" if native else "0")
    assert prec.training_bf16(bf16, fp16, on_cpu) is expected


def test_trains_on_cpu(monkeypatch):
    assert prec.trains_on_cpu(True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not prec.trains_on_cpu(False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    if hasattr(torch, "xpu"):
        monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    assert prec.trains_on_cpu(False)


@pytest.mark.parametrize(
    "native, flags, expected",
    [("1", [], True), ("0", [], False), ("1", ["--bf16", "false"], False), ("0", ["--bf16"], True)],
)
def test_training_arguments_resolve_bf16_once_and_record_it(monkeypatch, tmp_path, native, flags, expected):
    """Unset `bf16` becomes True/False when the arguments are parsed (CPU rule), flags win, and led_args.json
    holds the resolved boolean (so a rerun from it trains the same way on any machine)."""
    from led_hf.arguments import DataArguments, ModelArguments, SpladeTrainingArguments
    from led_hf.config import parse_arguments, save_resolved_arguments

    monkeypatch.setenv(prec.CPU_BF16_ENV, native)
    monkeypatch.setattr(prec, "trains_on_cpu", lambda use_cpu: True)
    argv = ["--model_name_or_path", "m", "--data", "d", "--output_dir", str(tmp_path), "--report_to", "none"]
    model, data, training = parse_arguments(
        (ModelArguments, DataArguments, SpladeTrainingArguments), argv + flags
    )
    assert training.bf16 is expected
    assert training.mixed_precision == ("bf16" if expected else "no")
    assert training.use_cpu is expected  # transformers needs use_cpu for bf16 on a CPU-only machine
    saved = json.loads(save_resolved_arguments(tmp_path, model, data, training).read_text())
    assert saved["bf16"] is expected
    monkeypatch.setenv(prec.CPU_BF16_ENV, "0" if expected else "1")  # another machine: the file still rules
    _, _, again = parse_arguments(
        (ModelArguments, DataArguments, SpladeTrainingArguments), [str(tmp_path / "led_args.json")]
    )
    assert again.bf16 is expected
