"""A diverged (NaN) model downstream: encode refuses NaN rows, search and mine refuse an empty answer."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from led_hf.cli.main import main
from led_hf.modeling.dense import DenseEncoder


@pytest.fixture(scope="module")
def models(tiny_bert_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(a dense checkpoint, the same with every weight NaN: what temperature 1e-45 used to save)."""
    root = tmp_path_factory.mktemp("nan-models")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = DenseEncoder.from_pretrained(tiny_bert_dir, pooling="mean")
    model.save_pretrained(root / "good", tokenizer=tokenizer)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    model.save_pretrained(root / "nan", tokenizer=tokenizer)
    return root / "good", root / "nan"


@pytest.fixture
def data(prepared_msmarco, tmp_path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(prepared_msmarco, out)
    return out


def encode(model, data, out, *what) -> int:
    return main(
        ["encode", "--model", str(model), "--data", str(data), *what, "--output", str(out), "--no-progress"]
    )


def test_encode_refuses_nan_embeddings(models, data, tmp_path, capsys):
    assert encode(models[1], data, tmp_path / "enc", "--corpus") == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # the lines before are progress bars
    assert last.startswith("led encode: error: the encoder produced a non-finite embedding (id ")
    assert not list((tmp_path / "enc").glob("shard-*"))  # no shard published


def test_search_refuses_when_nothing_is_found_for_any_query(models, data, tmp_path, capsys):
    good = models[0]
    assert encode(good, data, tmp_path / "corpus", "--corpus") == 0
    assert encode(good, data, tmp_path / "queries", "--queries", "train") == 0
    run = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--passages",
                str(tmp_path / "corpus"),
                "--queries",
                str(tmp_path / "queries"),
                "--output",
                str(run),
                "--cpu",
                "--depth",
                "5",
            ]
        )
        == 0
    )
    assert run.stat().st_size > 0
    # An encoding written before encode checked for NaN (or edited by hand): faiss finds nothing.
    for embeddings in (tmp_path / "queries").glob("shard-*/embeddings.npy"):
        array = np.load(embeddings, mmap_mode="r+")
        array[:] = np.nan
        array.flush()
        del array
    capsys.readouterr()
    bad_run = tmp_path / "bad.trec"
    assert (
        main(
            [
                "search",
                "--passages",
                str(tmp_path / "corpus"),
                "--queries",
                str(tmp_path / "queries"),
                "--output",
                str(bad_run),
                "--cpu",
                "--depth",
                "5",
            ]
        )
        == 1
    )
    assert "no passage retrieved for any of the" in capsys.readouterr().err
    assert not bad_run.exists()


def test_mine_refuses_when_no_negative_is_found(models, data, tmp_path, capsys):
    good, nan = models
    assert (
        main(
            [
                "mine",
                "--data",
                str(data),
                "--no-progress",
                "--name",
                "nan",
                "--model",
                str(nan),
                "--depth",
                "5",
            ]
        )
        == 1
    )
    assert "non-finite" in capsys.readouterr().err
    assert not (data / "negatives" / "nan").exists()
    # With NaN corpus embeddings of the good model, the search finds nothing for every query.
    assert encode(good, data, tmp_path / "corpus", "--corpus") == 0
    for embeddings in (tmp_path / "corpus").glob("shard-*/embeddings.npy"):
        array = np.load(embeddings, mmap_mode="r+")
        array[:] = np.nan
        array.flush()
        del array
    capsys.readouterr()
    assert (
        main(
            [
                "mine",
                "--data",
                str(data),
                "--no-progress",
                "--name",
                "empty",
                "--model",
                str(good),
                "--depth",
                "5",
                "--corpus-embeddings",
                str(tmp_path / "corpus"),
            ]
        )
        == 1
    )
    assert "no negative for any of the" in capsys.readouterr().err
    assert not (data / "negatives" / "empty").exists() and not (data / ".mine-empty").exists()
