"""Offline fixtures: tiny tokenizers and models built from a config, tiny MS MARCO / BEIR folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
# `--precision auto` would pick bf16 on CPUs with native bf16 and fp32 elsewhere: pin it to fp32 so that the
# suite (and the processes it spawns) computes the same on every machine. test_precision covers bf16.
os.environ["LED_HF_CPU_BF16"] = "0"

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="session")
def msmarco_dir() -> Path:
    return FIXTURES / "msmarco_tiny"


@pytest.fixture(scope="session")
def beir_dir() -> Path:
    return FIXTURES / "beir_tiny"


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    path = SHARED_DATA / "scifact"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return path


def _fixture_vocabulary() -> list[str]:
    words: set[str] = set()
    for path in FIXTURES.rglob("*"):
        if path.is_file() and path.suffix in (".tsv", ".jsonl", ".trec", ".dev", ""):
            words.update(re.findall(r"\w+", path.read_text(encoding="utf-8").lower()))
    punctuation = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~—")
    return SPECIAL_TOKENS + punctuation + sorted(words)


def _write_tokenizer(directory: Path):
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(_fixture_vocabulary()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(
        vocab=str(vocab_file), do_lower_case=True
    )  # transformers 5: `vocab`, not `vocab_file`
    tokenizer.save_pretrained(directory)
    return tokenizer


def _tiny_bert_config(vocab_size: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BertModel with a tokenizer built from the fixture text."""
    import torch
    from transformers import BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = _write_tokenizer(directory)
    torch.manual_seed(0)
    config = _tiny_bert_config(len(tokenizer))
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def no_dropout_bert_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """The tiny BERT without dropout: a train-mode forward is then deterministic (for gradient comparisons)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    config = BertConfig.from_pretrained(
        tiny_bert_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    BertModel.from_pretrained(tiny_bert_dir, config=config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_mlm_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BertForMaskedLM (SPLADE-style backbone) with the fixture tokenizer."""
    import torch
    from transformers import BertForMaskedLM

    directory = tmp_path_factory.mktemp("tiny-bert-mlm")
    tokenizer = _write_tokenizer(directory)
    torch.manual_seed(0)
    config = _tiny_bert_config(len(tokenizer))
    BertForMaskedLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_distilbert_mlm_dir(tmp_path_factory) -> Path:
    """A 2-layer DistilBertForMaskedLM: the reference recipe's SPLADE architecture, in miniature."""
    import torch
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    directory = tmp_path_factory.mktemp("tiny-distilbert-mlm")
    tokenizer = _write_tokenizer(directory)
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=256
    )
    DistilBertForMaskedLM(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """A cross-encoder checkpoint (a 1-logit head on the tiny BERT, saved, so it loads as trained)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from led_hf.modeling.cross_encoder import CrossEncoder

    directory = tmp_path_factory.mktemp("tiny-cross-encoder")
    torch.manual_seed(1)
    # built directly: CrossEncoder.from_pretrained(tiny_bert_dir) warns once per path, which a test checks
    model = CrossEncoder(
        AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1), max_length=64
    )
    model.save_pretrained(directory, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir))
    return directory


@pytest.fixture(scope="session")
def prepared_msmarco(tmp_path_factory, msmarco_dir) -> Path:
    """The tiny MS MARCO fixture converted by `led prepare` (read-only for tests)."""
    from led_hf.cli.main import main

    out = tmp_path_factory.mktemp("prepared") / "msmarco"
    assert main(["prepare", "--format", "msmarco", "--input", str(msmarco_dir), "--output", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def prepared_beir(tmp_path_factory, beir_dir) -> Path:
    """The tiny BEIR fixture converted by `led prepare` (read-only for tests)."""
    from led_hf.cli.main import main

    out = tmp_path_factory.mktemp("prepared") / "beir"
    assert main(["prepare", "--format", "beir", "--input", str(beir_dir), "--output", str(out)]) == 0
    return out
