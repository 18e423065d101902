"""Cross-encoder: one relevance logit per (query, passage) pair from `AutoModelForSequenceClassification`.

    s(q, p) = classifier(encoder("[CLS] query [SEP] title [SEP] text [SEP]"))      one logit, fp32

The pair format is `led_hf.collators.CrossEncoderCollator`'s (docs/method.md §4). In LED w/ RT the frozen
cross-encoder is the "RT" teacher whose scores over each query's candidates feed the KL loss.

Any sequence-classification checkpoint loads (e.g. `cross-encoder/ms-marco-MiniLM-L-6-v2`); a backbone
without a classification head (all-MiniLM-L6-v2, SPLADE-tiny's BERT, `Luyu/co-condenser-marco`) gets a
freshly initialised 1-logit head, with one warning. Checkpoint layout written by `save_pretrained`:

    PATH/config.json, model.safetensors    plain `AutoModelForSequenceClassification` folder
    PATH/tokenizer files                   `model_max_length` = the training pair length
    PATH/led_config.json                   {"kind": "cross-encoder", "num_labels": 1, "max_length": 256, ...}

so `AutoModelForSequenceClassification.from_pretrained(PATH)` and `sentence_transformers.CrossEncoder(PATH)`
both load it; the latter's `predict` returns sigmoid(s) (the same ranking) unless given `activation_fn`.

>>> model = CrossEncoder.from_pretrained("cross-encoder/ms-marco-MiniLM-L-6-v2")     # doctest: +SKIP
>>> collate = CrossEncoderCollator(tokenizer, max_length=256)                        # doctest: +SKIP
>>> model.score(**collate([{"qid": "1", "pid": "7", "query": "q", "text": "p"}])["pairs"])  # doctest: +SKIP
tensor([-3.21])
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel
from transformers.utils import ModelOutput

from led_hf.errors import LedError
from led_hf.modeling.checkpoint import read_led_config, sub_state_dict, write_led_config
from led_hf.modeling.encoder import accepted_inputs, batch_rows, model_inputs

logger = logging.getLogger(__name__)
KIND = "cross-encoder"
_warned_new_heads: set[str] = set()


@dataclass
class CrossEncoderOutput(ModelOutput):
    """fp32 logits, one per pair: scores [N] (N = B*G for training groups, positive first in each group)."""

    scores: torch.Tensor | None = None


class CrossEncoder(nn.Module):
    """A sequence-classification model held as `self.model`, scoring tokenized pairs.

    Args:
        model: an `AutoModelForSequenceClassification` instance with `num_labels` = 1.
        max_length: the pair length it was trained with (saved; re-ranking and sentence-transformers
            default to it).
    """

    def __init__(self, model: PreTrainedModel, max_length: int | None = None):
        super().__init__()
        if model.config.num_labels != 1:
            raise LedError(
                f"a cross-encoder scores with one logit; the model has num_labels={model.config.num_labels}"
            )
        self.model = model
        self.max_length = max_length
        self._accepted_inputs = accepted_inputs(model)

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        num_labels: int = 1,
        trust_remote_code: bool = False,
        torch_dtype: torch.dtype | str | None = None,
        allow_new_head: bool = True,
    ) -> CrossEncoder:
        """Load a folder or hub id as `AutoModelForSequenceClassification(num_labels=1)`.

        Weights the checkpoint lacks (a plain backbone's classifier, and BERT's pooler when the backbone
        is a masked LM) are freshly initialised and reported in one warning per path; with
        `allow_new_head=False` (re-ranking, teachers: an untrained head scores at random) that is an error.
        A folder whose `led_config.json` names another kind ("dense", "splade") is still accepted as a
        backbone to start from.
        """
        path = str(path)
        saved = read_led_config(path)
        kwargs = dict(num_labels=num_labels, trust_remote_code=trust_remote_code, output_loading_info=True)
        if torch_dtype is not None:
            kwargs["dtype"] = torch_dtype
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
        except (OSError, ValueError, RuntimeError) as err:
            raise LedError(f"{path}: cannot load a sequence-classification model ({err})") from err
        mismatched = [
            item[0] if isinstance(item, tuple | list) else item for item in info.get("mismatched_keys") or []
        ]
        new_weights = sorted(map(str, info.get("missing_keys") or [])) + sorted(map(str, mismatched))
        if new_weights:
            if not allow_new_head:
                raise LedError(
                    f"{path} has no trained classification head (missing {', '.join(new_weights)}): "
                    "train one with `led train cross-encoder` or pass a trained cross-encoder"
                )
            if path not in _warned_new_heads:
                _warned_new_heads.add(path)
                logger.warning(
                    "%s: new %d-logit head; freshly initialised: %s", path, num_labels, ", ".join(new_weights)
                )
        max_length = saved.get("max_length") if saved.get("kind") == KIND else None
        return cls(model, max_length=max_length)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load the weights of a folder written by `save_pretrained` (e.g. to resume training)."""
        loaded = CrossEncoder.from_pretrained(
            path, num_labels=self.model.config.num_labels, allow_new_head=False
        )
        self.model.load_state_dict(loaded.model.state_dict())

    # -- scoring -------------------------------------------------------------------------------------
    @property
    def config(self):
        """The backbone's config; the Trainer reads it for model metadata."""
        return self.model.config

    def score(self, **pairs) -> torch.Tensor:
        """Tokenized pairs (input_ids, attention_mask, token_type_ids, ... [N, L]) -> [N] fp32 logits.

        Cast to fp32 after the head: under bf16 autocast the logits come out in bf16, whose 8-bit mantissa
        would coarsen a softmax over a query's candidates.
        """
        return self.model(**model_inputs(pairs, self._accepted_inputs)).logits.float().view(-1)

    def score_candidates(
        self, pairs: Mapping, group_size: int | None = None, chunk_size: int | None = None
    ) -> torch.Tensor:
        """Teacher scores: logits [N] (fp32) of tokenized pairs, `chunk_size` pairs per forward pass (all
        at once when None); with `group_size` G, viewed as [N/G, G] (each query's own candidates)."""
        num_pairs = pairs["input_ids"].shape[0]
        step = chunk_size or num_pairs
        scores = torch.cat(
            [self.score(**batch_rows(pairs, start, start + step)) for start in range(0, num_pairs, step)]
        )
        return scores if group_size is None else scores.view(-1, group_size)

    def forward(self, pairs=None, group_size: int | None = None) -> CrossEncoderOutput:
        """`CrossEncoderCollator` batch -> scores [N]; with `group_size` G, N must be a multiple of G
        (the caller views them as [N/G, G])."""
        if pairs is None:
            raise LedError("CrossEncoder.forward needs `pairs` (a tokenized batch)")
        scores = self.score(**pairs)
        if group_size is not None and scores.shape[0] % int(group_size):
            raise LedError(f"{scores.shape[0]} pairs do not split into groups of {group_size}")
        return CrossEncoderOutput(scores=scores)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    # -- saving --------------------------------------------------------------------------------------
    def led_config(self) -> dict:
        return {
            "kind": KIND,
            "architecture": type(self.model).__name__,
            "num_labels": self.model.config.num_labels,
            "max_length": self.max_length,
            "input_format": "[CLS] query [SEP] title [SEP] text [SEP]",
            "score": "logit",
        }

    def save_pretrained(
        self, path: str | os.PathLike, tokenizer=None, state_dict: dict | None = None
    ) -> None:
        """Write the layout in the module docstring. `state_dict` (keys of this module, e.g. gathered by
        DeepSpeed ZeRO-3) replaces the live weights when given."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, state_dict=sub_state_dict(state_dict, "model."))
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
            if self.max_length:
                _set_model_max_length(path, int(self.max_length))
        write_led_config(path, self.led_config())


def _set_model_max_length(path: Path, max_length: int) -> None:
    """Record the training pair length as the saved tokenizer's `model_max_length`: sentence-transformers
    truncates to it, so that `CrossEncoder(PATH)` sees the pairs this model was trained on (the live
    tokenizer object is left alone)."""
    file = path / "tokenizer_config.json"
    if not file.is_file():
        return
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LedError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from err
    config["model_max_length"] = max_length
    file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
