"""SPLADE encoder: a masked-LM backbone whose max-pooled, log-saturated logits are sparse term weights.

    w[v] = max_t log(1 + relu(z[t, v])) * m[t]          score(q, d) = <w_q, w_d>      (spec §3)

`m` is the attention mask with `[CLS]` and each row's final `[SEP]` also zeroed (option: keep them).
The checkpoint is a plain `AutoModelForMaskedLM` folder + tokenizer, plus `led_config.json`
(`{"kind": "splade", ...}`) that records the pooling options, so any MLM checkpoint loads either way,
plus sentence-transformers metadata: `SparseEncoder(path, trust_remote_code=True)` gives the same
term weights (led_hf/modeling/st_metadata.py).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput

from led_hf.errors import LedError
from led_hf.losses.splade import splade_pool, splade_scores
from led_hf.modeling.activation_checkpointing import ActivationCheckpointing
from led_hf.modeling.checkpoint import LED_CONFIG_NAME, read_led_config, sub_state_dict, write_led_config
from led_hf.modeling.st_metadata import write_sparse_encoder_files


@dataclass
class SpladeOutput(ModelOutput):
    """Term-weight vectors, fp32: queries [B, V], passages [B*G, V] (positive first in each group)."""

    query_representations: torch.Tensor | None = None
    passage_representations: torch.Tensor | None = None


class SpladeEncoder(ActivationCheckpointing, nn.Module):
    """One shared masked-LM encoder for queries and passages.

    `encode_query(batch)` / `encode_passage(batch)` take a tokenizer output (input_ids, attention_mask,
    optional token_type_ids) and return [N, V] fp32 term weights; `forward(query=, passage=)` returns a
    `SpladeOutput` with both. Pooling and scores stay fp32 under fp16/bf16 autocast.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        cls_token_id: int | None,
        sep_token_id: int | None,
        mask_special_tokens: bool = True,
        max_seq_length: int | None = None,
    ):
        super().__init__()
        self.model = model
        # the length sentence-transformers truncates to (the recipe sets the training passage length)
        self.max_seq_length = max_seq_length
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.mask_special_tokens = mask_special_tokens
        # DistilBERT takes no token_type_ids although BERT tokenizers produce them.
        self._accepted_inputs = set(inspect.signature(model.forward).parameters)

    @property
    def config(self):
        return self.model.config

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        mask_special_tokens: bool | None = None,
        torch_dtype: torch.dtype | str | None = None,
        trust_remote_code: bool = False,
    ) -> SpladeEncoder:
        """Load any `AutoModelForMaskedLM` folder or hub id (BERT, DistilBERT, ...).

        `mask_special_tokens` defaults to the value saved in `led_config.json`, else True. The `[CLS]`
        and `[SEP]` ids come from `led_config.json`, else from the folder's tokenizer.
        """
        path = str(path)
        saved = read_led_config(path)
        if saved.get("kind", "splade") != "splade":
            raise LedError(f"{path}: {LED_CONFIG_NAME} says kind {saved['kind']!r}, not a SPLADE model")
        model = _load_mlm(
            path,
            trust_remote_code=trust_remote_code,
            **({} if torch_dtype is None else {"dtype": torch_dtype}),
        )
        cls_token_id, sep_token_id = saved.get("cls_token_id"), saved.get("sep_token_id")
        if "cls_token_id" not in saved:
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            except (OSError, ValueError) as err:
                raise LedError(f"{path}: cannot load the tokenizer ({err})") from err
            cls_token_id, sep_token_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        if mask_special_tokens is None:
            mask_special_tokens = bool(saved.get("mask_special_tokens", True))
        return cls(
            model,
            cls_token_id,
            sep_token_id,
            mask_special_tokens=mask_special_tokens,
            max_seq_length=saved.get("max_seq_length"),
        )

    def pooling_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The attention mask with `[CLS]` and each row's last attended `[SEP]` zeroed ([N, L] bool).

        `[CLS] a [SEP] b [SEP] [PAD]` -> `0 1 1 1 0 0`: a title/text separator stays, the final one goes.
        """
        mask = attention_mask.bool()
        if not self.mask_special_tokens:
            return mask
        if self.cls_token_id is not None:
            mask = mask & (input_ids != self.cls_token_id)
        if self.sep_token_id is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            is_sep = (input_ids == self.sep_token_id) & attention_mask.bool()
            last_sep = torch.where(is_sep, positions, -1).amax(dim=1, keepdim=True)  # -1: no [SEP] in the row
            mask = mask & (positions != last_sep)
        return mask

    def encode(self, batch=None, /, **inputs) -> torch.Tensor:
        """Tokenizer output (a mapping, or the same as keywords) -> [N, V] fp32 term weights."""
        batch = inputs if batch is None else batch
        inputs = {key: value for key, value in batch.items() if key in self._accepted_inputs}
        logits = self.model(**inputs).logits
        return splade_pool(logits, self.pooling_mask(batch["input_ids"], batch["attention_mask"]))

    def encode_query(self, batch=None, /, **inputs) -> torch.Tensor:
        return self.encode(batch, **inputs)

    def encode_passage(self, batch=None, /, **inputs) -> torch.Tensor:
        return self.encode(batch, **inputs)

    @staticmethod
    def score(query_representations: torch.Tensor, passage_representations: torch.Tensor) -> torch.Tensor:
        """[Nq, V] x [Np, V] -> [Nq, Np] dot products in fp32."""
        return splade_scores(query_representations, passage_representations)

    def forward(self, query=None, passage=None) -> SpladeOutput:
        return SpladeOutput(
            query_representations=None if query is None else self.encode_query(query),
            passage_representations=None if passage is None else self.encode_passage(passage),
        )

    def checkpointed_backbones(self) -> list[PreTrainedModel]:
        """For `ActivationCheckpointing`: the masked-LM."""
        return [self.model]

    def led_config(self) -> dict:
        return {
            "kind": "splade",
            "architecture": type(self.model).__name__,
            "mask_special_tokens": self.mask_special_tokens,
            "cls_token_id": self.cls_token_id,
            "sep_token_id": self.sep_token_id,
            "pooling": "max_t log1p(relu(logits)) over the attention mask",
            "similarity": "dot",
            "max_seq_length": self._max_seq_length(),
        }

    def _max_seq_length(self) -> int:
        if self.max_seq_length:
            return int(self.max_seq_length)
        return int(min(getattr(self.config, "max_position_embeddings", 512) or 512, 512))

    def save_pretrained(
        self, path: str | os.PathLike, tokenizer=None, state_dict: dict | None = None
    ) -> None:
        """Write a plain `AutoModelForMaskedLM` folder (+ tokenizer), `led_config.json` and the
        sentence-transformers `SparseEncoder` metadata (led_hf/modeling/st_metadata.py).

        `state_dict` (keys of this module, e.g. gathered by DeepSpeed ZeRO-3) replaces the live weights.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, state_dict=sub_state_dict(state_dict, "model."))
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        write_sparse_encoder_files(
            path,
            mask_special_tokens=self.mask_special_tokens,
            cls_token_id=self.cls_token_id,
            sep_token_id=self.sep_token_id,
            vocab_size=self.vocab_size,
            max_seq_length=self._max_seq_length(),
            versions=_versions(),
        )
        write_led_config(path, self.led_config())

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load the weights of a folder written by `save_pretrained` (e.g. to resume training)."""
        self.model.load_state_dict(_load_mlm(str(path)).state_dict())


def _versions() -> dict[str, str]:
    import transformers

    from led_hf import __version__

    return {"led_hf": __version__, "transformers": transformers.__version__, "pytorch": torch.__version__}


def _load_mlm(path: str, **kwargs) -> PreTrainedModel:
    try:
        return AutoModelForMaskedLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise LedError(f"{path}: cannot load a masked-LM model ({err})") from err
