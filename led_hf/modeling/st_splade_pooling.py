"""SPLADE pooling for sentence-transformers' `SparseEncoder` with [CLS] and each text's final [SEP] left out.

led-hf's SPLADE pools max_t log(1 + relu(z[t, v])) over the attention mask with [CLS] and each row's last
attended [SEP] zeroed (a title/text separator stays), led_hf/modeling/splade.py. sentence-transformers'
`SpladePooling` pools over the attention mask alone, so term weights would differ (by up to ~0.5 on a
trained model). `SpladeEncoder.save_pretrained` copies this file into the checkpoint as
`led_splade_pooling.py` and names `led_splade_pooling.MaskedSpladePooling` in `modules.json`; load with

    SparseEncoder(PATH, trust_remote_code=True)

It imports only torch and sentence-transformers: it runs where led-hf is not installed.
"""

from __future__ import annotations

import torch
from sentence_transformers.sparse_encoder.modules import SpladePooling


class MaskedSpladePooling(SpladePooling):
    """`SpladePooling` whose pooling mask leaves out `cls_token_id` and each row's last `sep_token_id`."""

    config_keys: list[str] = [*SpladePooling.config_keys, "cls_token_id", "sep_token_id"]

    def __init__(
        self,
        pooling_strategy: str = "max",
        activation_function: str = "relu",
        embedding_dimension: int | None = None,
        chunk_size: int | None = None,
        cls_token_id: int | None = None,
        sep_token_id: int | None = None,
    ) -> None:
        super().__init__(pooling_strategy, activation_function, embedding_dimension, chunk_size)
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id

    def pooling_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`[CLS] a [SEP] b [SEP] [PAD]` -> `0 1 1 1 0 0` (same as led_hf SpladeEncoder.pooling_mask)."""
        mask = attention_mask.bool()
        if self.cls_token_id is not None:
            mask = mask & (input_ids != self.cls_token_id)
        if self.sep_token_id is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            is_sep = (input_ids == self.sep_token_id) & attention_mask.bool()
            last_sep = torch.where(is_sep, positions, -1).amax(dim=1, keepdim=True)
            mask = mask & (positions != last_sep)
        return mask

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "cu_seq_lens_q" in features:
            raise NotImplementedError(
                "MaskedSpladePooling needs padded inputs (no flash-attention unpadding)"
            )
        attention_mask = features["attention_mask"]
        mask = self.pooling_mask(features["input_ids"], attention_mask).to(attention_mask.dtype)
        pooled = super().forward({**features, "attention_mask": mask})
        features["sentence_embedding"] = pooled["sentence_embedding"]
        if self.embedding_dimension is None:
            self.embedding_dimension = pooled["sentence_embedding"].shape[1]
        return features
