"""SPLADE encoder: a masked-LM backbone whose max-pooled, log-saturated logits are sparse term weights.

    w[v] = max_t log(1 + relu(z[t, v])) * m[t]          score(q, d) = <w_q, w_d>      (docs/method.md §3)

`m` is the attention mask with `[CLS]` and each row's final `[SEP]` also zeroed (option: keep them).
The checkpoint is a plain `AutoModelForMaskedLM` folder + tokenizer, plus `led_config.json`
(`{"kind": "splade", ...}`) that records the pooling options, so any MLM checkpoint loads either way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from led_hf.errors import LedError
from led_hf.modeling.checkpoint import LED_CONFIG_NAME, read_led_config, sub_state_dict, write_led_config
from led_hf.modeling.encoder import BiEncoder, accepted_inputs, batch_rows, model_inputs
from led_hf.modeling.pooling import splade_pool
from led_hf.modeling.scores import dot_scores, group_scores


class SpladeEncoder(BiEncoder):
    """One shared masked-LM encoder for queries and passages.

    The interface is `BiEncoder`'s: `encode_query(batch)` / `encode_passage(batch)` (also `encode(batch)`:
    both sides share the encoder) take a tokenizer output (input_ids, attention_mask, optional
    token_type_ids) and return [N, V] fp32 term weights; `forward(query=, passage=)` returns an
    `EncoderOutput` with both. As a teacher, `score_candidates` scores passages against queries.
    Pooling and scores stay fp32 under fp16/bf16 autocast.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        cls_token_id: int | None,
        sep_token_id: int | None,
        mask_special_tokens: bool = True,
    ):
        super().__init__()
        self.model = model
        self.cls_token_id = cls_token_id
        self.sep_token_id = sep_token_id
        self.mask_special_tokens = mask_special_tokens
        self._accepted_inputs = accepted_inputs(model)

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
        return cls(model, cls_token_id, sep_token_id, mask_special_tokens=mask_special_tokens)

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

    def _encode(self, side: str, batch: Mapping) -> torch.Tensor:
        logits = self.model(**model_inputs(batch, self._accepted_inputs)).logits
        return splade_pool(logits, self.pooling_mask(batch["input_ids"], batch["attention_mask"]))

    def encode(self, batch: Mapping | None = None, /, **inputs) -> torch.Tensor:
        """Tokenizer output (a mapping, or the same as keywords) -> [N, V] fp32 term weights (either side)."""
        return self.encode_passage(batch, **inputs)

    score = staticmethod(dot_scores)  # [Nq, V] x [Np, V] -> [Nq, Np] dot products in fp32

    def score_candidates(
        self,
        query: Mapping | torch.Tensor,
        passage: Mapping,
        group_size: int | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Teacher scores <w_q, w_p> in fp32, the passages encoded `chunk_size` rows at a time (all at once
        when None) so that only scores, never [N, V] weights of every passage, are held.

        `query` is a tokenized batch [B, L] or its term weights [B, V]; `passage` a tokenized batch [N, L].
        With `group_size` G, N = B*G and passage row r is a candidate of query r // G: returns [B, G]
        (chunks are cut at group boundaries). Without it every passage is scored against every query:
        returns [B, N]. Gradients flow unless the caller runs it under `torch.no_grad()`.
        """
        query_weights = query if torch.is_tensor(query) else self.encode(query)
        num_passages = passage["input_ids"].shape[0]
        step = chunk_size or num_passages
        if group_size:
            step = max(step // group_size, 1) * group_size
        scores = []
        for start in range(0, num_passages, step):
            weights = self.encode(batch_rows(passage, start, start + step))
            if group_size:
                owners = query_weights[start // group_size : (start + len(weights)) // group_size]
                with torch.autocast(device_type=weights.device.type, enabled=False):
                    scores.append(group_scores(owners.float(), weights.float()))
            else:
                scores.append(dot_scores(query_weights, weights))
        return torch.cat(scores, dim=0 if group_size else 1)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def led_config(self) -> dict:
        return {
            "kind": "splade",
            "architecture": type(self.model).__name__,
            "mask_special_tokens": self.mask_special_tokens,
            "cls_token_id": self.cls_token_id,
            "sep_token_id": self.sep_token_id,
            "pooling": "max_t log1p(relu(logits)) over the attention mask",
            "similarity": "dot",
        }

    def save_pretrained(
        self, path: str | os.PathLike, tokenizer=None, state_dict: dict | None = None
    ) -> None:
        """Write a plain `AutoModelForMaskedLM` folder (+ tokenizer) and `led_config.json`.

        `state_dict` (keys of this module, e.g. gathered by DeepSpeed ZeRO-3) replaces the live weights.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, state_dict=sub_state_dict(state_dict, "model."))
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        write_led_config(path, self.led_config())

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load the weights of a folder written by `save_pretrained` (e.g. to resume training)."""
        self.model.load_state_dict(_load_mlm(str(path)).state_dict())


def _load_mlm(path: str, **kwargs) -> PreTrainedModel:
    try:
        return AutoModelForMaskedLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise LedError(f"{path}: cannot load a masked-LM model ({err})") from err
