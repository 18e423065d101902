"""The one interface of led-hf's bi-encoders (`DenseEncoder`, `SpladeEncoder`).

    encode_query(batch) / encode_passage(batch)   a tokenizer output (a mapping, or the same as keywords:
                                                  input_ids, attention_mask, ...) -> [N, D] fp32
    forward(query=batch, passage=batch)           -> EncoderOutput(query_embeddings [B, D],
                                                                   passage_embeddings [B*G, D])

D is the hidden size of a dense model and the vocabulary size of a SPLADE model (term weights). Trainers,
`led encode`, `led mine` and the evaluator only use this interface, so either model plugs in anywhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput


@dataclass
class EncoderOutput(ModelOutput):
    """fp32 vectors: queries [B, D], passages [B*G, D] (positive first in each group of G)."""

    query_embeddings: torch.Tensor | None = None
    passage_embeddings: torch.Tensor | None = None


class BiEncoder(nn.Module):
    """Base of the bi-encoders: subclasses implement `_encode(side, inputs)` ("query" or "passage")."""

    def _encode(self, side: str, inputs: Mapping) -> torch.Tensor:
        raise NotImplementedError

    def encode_query(self, batch: Mapping | None = None, /, **inputs) -> torch.Tensor:
        """Tokenized queries -> [B, D] fp32."""
        return self._encode("query", inputs if batch is None else batch)

    def encode_passage(self, batch: Mapping | None = None, /, **inputs) -> torch.Tensor:
        """Tokenized passages -> [N, D] fp32."""
        return self._encode("passage", inputs if batch is None else batch)

    def forward(self, query: Mapping | None = None, passage: Mapping | None = None) -> EncoderOutput:
        return EncoderOutput(
            query_embeddings=None if query is None else self.encode_query(query),
            passage_embeddings=None if passage is None else self.encode_passage(passage),
        )


def accepted_inputs(model: nn.Module) -> set[str]:
    """The keyword inputs `model.forward` takes: DistilBERT takes no token_type_ids although BERT
    tokenizers produce them, so batches are filtered by this set."""
    return set(inspect.signature(model.forward).parameters)


def model_inputs(batch: Mapping, accepted: set[str]) -> dict:
    return {key: value for key, value in batch.items() if key in accepted}


def batch_rows(batch: Mapping, start: int, stop: int) -> dict:
    """Rows [start, stop) of a tokenized batch (every tensor sliced alike)."""
    return {key: value[start:stop] for key, value in batch.items()}
