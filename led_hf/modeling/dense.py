"""Dense bi-encoder: one vector per text from any `AutoModel` backbone, scored by dot product.

    e = pool(encoder(text))                 pooling "cls" (coCondenser, the reference) or "mean" (MiniLM)
    e = e / ||e||                           only with normalize=True (models trained with cosine)
    score(q, p) = <e_q, e_p>                the loss divides scores by `temperature` (docs/method.md §3, §4)

Checkpoint layout written by `save_pretrained` (every folder loads with `AutoModel.from_pretrained`):

    shared encoder (default)        separate encoders
    PATH/config.json, weights       PATH/led_config.json, tokenizer files
    PATH/tokenizer files            PATH/query_model/    (plain HF folder + tokenizer + ST files)
    PATH/led_config.json            PATH/passage_model/  (plain HF folder + tokenizer + ST files)
    PATH/modules.json, 1_Pooling/, ... (sentence-transformers; `SentenceTransformer(PATH)` gives the same embeddings)

`led_config.json`: {"kind": "dense", "pooling", "normalize", "temperature", "separate_encoders", "max_seq_length"}.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from led_hf.errors import LedError
from led_hf.modeling.checkpoint import read_led_config, sub_state_dict, write_led_config
from led_hf.modeling.encoder import BiEncoder, EncoderOutput, accepted_inputs, model_inputs
from led_hf.modeling.pooling import POOLING_MODES, pool
from led_hf.modeling.st_metadata import read_sentence_transformers_settings, write_sentence_transformers_files
from led_hf.version import __version__

QUERY_FOLDER, PASSAGE_FOLDER = "query_model", "passage_model"
DenseOutput = EncoderOutput  # the name this output had before both encoders shared it


class DenseEncoder(BiEncoder):
    """A bi-encoder over one shared backbone (or two, `separate_encoders`); the interface is `BiEncoder`'s
    (`encode_query(batch)`, `encode_passage(batch)`, `forward(query=, passage=)` -> `EncoderOutput`).

    A shared backbone is held once, as `self.encoder`: one module under two attribute names would be
    saved twice and breaks safetensors checkpointing. Separate backbones are `query_encoder` and
    `passage_encoder`.
    """

    def __init__(
        self,
        encoder: PreTrainedModel,
        pooling: str = "cls",
        normalize: bool = False,
        temperature: float = 1.0,
        passage_encoder: PreTrainedModel | None = None,
        max_seq_length: int | None = None,
    ):
        super().__init__()
        if pooling not in POOLING_MODES:
            raise LedError(f"pooling {pooling!r} is not supported (choose {' or '.join(POOLING_MODES)})")
        if not temperature > 0:
            raise LedError(f"temperature must be positive, got {temperature}")
        if passage_encoder is None:
            self.encoder = encoder
        else:
            self.query_encoder = encoder
            self.passage_encoder = passage_encoder
        self.separate_encoders = passage_encoder is not None
        for backbone in (encoder, passage_encoder):
            # BERT's pooler (a dense layer on [CLS]) is unused by our pooling. A trainable parameter
            # without gradient keeps DDP's bucket from ever reducing (silently un-averaged gradients with
            # find_unused_parameters=False); frozen, it is also kept out of the optimizer, and still saved.
            if backbone is not None and isinstance(getattr(backbone, "pooler", None), nn.Module):
                backbone.pooler.requires_grad_(False)
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.temperature = float(temperature)
        self.max_seq_length = max_seq_length
        self._accepted_inputs = accepted_inputs(encoder)

    # -- loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        pooling: str | None = None,
        normalize: bool | None = None,
        temperature: float | None = None,
        separate_encoders: bool = False,
        torch_dtype: torch.dtype | str | None = None,
        trust_remote_code: bool = False,
    ) -> DenseEncoder:
        """Load a backbone folder (or hub id) with its settings.

        Each setting left as None comes from the folder's `led_config.json`, else from its
        sentence-transformers metadata (all-MiniLM-L6-v2 -> mean pooling, normalised), else the
        reference: cls pooling, raw dot product. Temperature defaults to 0.05 for normalised models
        (cosine scores lie in [-1, 1]; sentence-transformers' MNRL uses scale 20) and 1.0 otherwise.
        A folder saved with separate encoders reloads as such; `separate_encoders=True` on a shared
        folder starts both encoders from the same weights.
        """
        path = str(path)
        saved = read_led_config(path)
        if saved.get("kind", "dense") != "dense":
            raise LedError(f"{path}: led_config.json says kind {saved['kind']!r}, not a dense model")
        if not saved:
            saved = read_sentence_transformers_settings(path)
        pooling = pooling or saved.get("pooling", "cls")
        normalize = bool(saved.get("normalize", False)) if normalize is None else normalize
        if temperature is None:
            temperature = saved.get("temperature", 0.05 if normalize else 1.0)
        load = dict(trust_remote_code=trust_remote_code)
        if torch_dtype is not None:
            load["dtype"] = torch_dtype
        if saved.get("separate_encoders"):
            query_encoder = _load_backbone(os.path.join(path, QUERY_FOLDER), load)
            passage_encoder = _load_backbone(os.path.join(path, PASSAGE_FOLDER), load)
        else:
            query_encoder = _load_backbone(path, load)
            passage_encoder = _load_backbone(path, load) if separate_encoders else None
        return cls(
            query_encoder,
            pooling=pooling,
            normalize=normalize,
            temperature=float(temperature),
            passage_encoder=passage_encoder,
            max_seq_length=saved.get("max_seq_length"),
        )

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load the backbone weights of a folder written by `save_pretrained` (e.g. to resume training)."""
        path = str(path)
        if self.separate_encoders:
            pairs = [
                (self.query_encoder, os.path.join(path, QUERY_FOLDER)),
                (self.passage_encoder, os.path.join(path, PASSAGE_FOLDER)),
            ]
        else:
            pairs = [(self.encoder, path)]
        for module, folder in pairs:
            loaded = _load_backbone(folder, dict(trust_remote_code=False))
            module.load_state_dict(loaded.state_dict())

    # -- encoding ------------------------------------------------------------------------------------
    @property
    def config(self):
        """The (query-side) backbone's config; the Trainer reads it for model metadata."""
        return self._backbone("query").config

    def _backbone(self, side: str) -> PreTrainedModel:
        if not self.separate_encoders:
            return self.encoder
        return self.query_encoder if side == "query" else self.passage_encoder

    def _encode(self, side: str, inputs) -> torch.Tensor:
        inputs = model_inputs(inputs, self._accepted_inputs)
        hidden = self._backbone(side)(**inputs).last_hidden_state
        embeddings = pool(hidden, inputs["attention_mask"], self.pooling)
        return nn.functional.normalize(embeddings, p=2, dim=-1) if self.normalize else embeddings

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        for side in ("query", "passage"):
            self._backbone(side).gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=gradient_checkpointing_kwargs
            )

    # -- saving --------------------------------------------------------------------------------------
    def led_config(self) -> dict:
        return {
            "kind": "dense",
            "pooling": self.pooling,
            "normalize": self.normalize,
            "temperature": self.temperature,
            "separate_encoders": self.separate_encoders,
            "max_seq_length": self._max_seq_length(),
            "similarity": "cosine" if self.normalize else "dot",
        }

    def _max_seq_length(self) -> int:
        if self.max_seq_length:
            return int(self.max_seq_length)
        return int(min(getattr(self.config, "max_position_embeddings", 512) or 512, 512))

    def save_pretrained(
        self, path: str | os.PathLike, tokenizer=None, state_dict: dict | None = None
    ) -> None:
        """Write the layout in the module docstring. `state_dict` (keys of this module, e.g. gathered by
        DeepSpeed ZeRO-3) replaces the live weights when given."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.separate_encoders:
            targets = [
                ("query_encoder.", self.query_encoder, path / QUERY_FOLDER),
                ("passage_encoder.", self.passage_encoder, path / PASSAGE_FOLDER),
            ]
            if tokenizer is not None:  # encoders of either side find the tokenizer at the top too
                tokenizer.save_pretrained(path)
        else:
            targets = [("encoder.", self.encoder, path)]
        for prefix, module, folder in targets:
            module.save_pretrained(folder, state_dict=sub_state_dict(state_dict, prefix))
            if tokenizer is not None:
                tokenizer.save_pretrained(folder)
            write_sentence_transformers_files(
                folder,
                pooling=self.pooling,
                normalize=self.normalize,
                dimension=module.config.hidden_size,
                max_seq_length=self._max_seq_length(),
                versions=_versions(),
            )
        write_led_config(path, self.led_config())


def _load_backbone(path: str, kwargs: dict) -> PreTrainedModel:
    try:
        return AutoModel.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise LedError(f"{path}: cannot load a transformer backbone ({err})") from err


def _versions() -> dict[str, str]:
    import transformers

    return {"led_hf": __version__, "transformers": transformers.__version__, "pytorch": torch.__version__}
