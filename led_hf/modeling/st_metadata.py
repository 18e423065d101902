"""Read and write sentence-transformers metadata, so that a dense checkpoint also loads as
`SentenceTransformer(path)`, a SPLADE checkpoint as `SparseEncoder(path, trust_remote_code=True)`, and
a sentence-transformers folder (e.g. all-MiniLM-L6-v2) brings its pooling and normalisation along.

Written layout (the long-standing format every sentence-transformers version reads; 6.x converts it):

    modules.json                        Transformer (path "") -> Pooling (1_Pooling) [-> Normalize (2_Normalize)]
    config_sentence_transformers.json   {"similarity_fn_name": "dot" | "cosine", "prompts": {}, ...}
    sentence_bert_config.json           {"max_seq_length": 128, "do_lower_case": false}
    1_Pooling/config.json               {"word_embedding_dimension": H, "pooling_mode_cls_token": ..., ...}
    2_Normalize/                        (empty; only when normalised)

SPLADE (`write_sparse_encoder_files`), read by sentence-transformers >= 5.4:

    modules.json                        Transformer (fill-mask) -> SpladePooling, or led_splade_pooling.
                                        MaskedSpladePooling when [CLS]/[SEP] are left out of the pooling
    config_sentence_transformers.json   {"model_type": "SparseEncoder", "similarity_fn_name": "dot", ...}
    sentence_bert_config.json           {"transformer_task": "fill-mask", "max_seq_length": 128, ...}
    1_SpladePooling/config.json         {"pooling_strategy": "max", "activation_function": "relu", ...}
    led_splade_pooling.py               (masking only) the pooling module, led_hf/modeling/st_splade_pooling.py
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from led_hf.errors import LedError
from led_hf.modeling.checkpoint import read_json_file

logger = logging.getLogger(__name__)

_POOLING_FLAGS = {  # legacy 1_Pooling/config.json flag -> our mode name
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def read_sentence_transformers_settings(path: str | os.PathLike) -> dict:
    """{"pooling": str, "normalize": bool, "max_seq_length": int} as far as the folder says; {} if not an ST folder."""
    modules = read_json_file(path, "modules.json")
    if not isinstance(modules, list):
        return {}
    settings: dict = {"normalize": False}
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Pooling":
            pooling_config = read_json_file(path, f"{module.get('path') or '1_Pooling'}/config.json")
            if pooling_config:
                settings["pooling"] = _pooling_mode(pooling_config, path)
        elif kind == "Normalize":
            settings["normalize"] = True
        elif kind != "Transformer":
            logger.warning(
                "%s: sentence-transformers module %s is not reproduced by DenseEncoder", path, kind
            )
    bert_config = read_json_file(path, "sentence_bert_config.json") or {}
    if bert_config.get("max_seq_length"):
        settings["max_seq_length"] = int(bert_config["max_seq_length"])
    return settings


def _pooling_mode(config: dict, path) -> str:
    if isinstance(config.get("pooling_mode"), str):  # sentence-transformers >= 6
        return config["pooling_mode"]
    modes = [name for flag, name in _POOLING_FLAGS.items() if config.get(flag)]
    if len(modes) != 1:
        raise LedError(f"{path}: pooling config combines {modes or 'no'} modes; pass pooling explicitly")
    return modes[0]


def write_sentence_transformers_files(
    path: str | os.PathLike,
    *,
    pooling: str,
    normalize: bool,
    dimension: int,
    max_seq_length: int,
    versions: dict[str, str] | None = None,
) -> None:
    """Write the metadata files listed in the module docstring into `path` (beside the HF weights)."""
    path = Path(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (path / "2_Normalize").mkdir(exist_ok=True)
    _write_json(path / "modules.json", modules)
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "__version__": versions or {},
            "prompts": {},
            "default_prompt_name": None,
            # What the embeddings were trained for: raw dot product (coCondenser) or cosine (normalised).
            "similarity_fn_name": "cosine" if normalize else "dot",
        },
    )
    _write_json(
        path / "sentence_bert_config.json", {"max_seq_length": int(max_seq_length), "do_lower_case": False}
    )
    (path / "1_Pooling").mkdir(exist_ok=True)
    _write_json(
        path / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": int(dimension),
            **{flag: name == pooling for flag, name in _POOLING_FLAGS.items()},
            "include_prompt": True,
        },
    )


def _write_json(file: Path, value) -> None:
    file.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


SPARSE_POOLING_FILE = "led_splade_pooling.py"


def write_sparse_encoder_files(
    path: str | os.PathLike,
    *,
    mask_special_tokens: bool,
    cls_token_id: int | None,
    sep_token_id: int | None,
    vocab_size: int,
    max_seq_length: int,
    versions: dict[str, str] | None = None,
) -> None:
    """Write the SPLADE metadata of the module docstring into `path` (beside the masked-LM weights)."""
    path = Path(path)
    pooling = {
        "pooling_strategy": "max",
        "activation_function": "relu",
        "embedding_dimension": int(vocab_size),
    }
    if mask_special_tokens:
        pooling_type = "led_splade_pooling.MaskedSpladePooling"
        pooling.update(cls_token_id=cls_token_id, sep_token_id=sep_token_id)
        source = Path(__file__).with_name("st_splade_pooling.py")
        (path / SPARSE_POOLING_FILE).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        pooling_type = "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling"
        (path / SPARSE_POOLING_FILE).unlink(missing_ok=True)
    _write_json(
        path / "modules.json",
        [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {"idx": 1, "name": "1", "path": "1_SpladePooling", "type": pooling_type},
        ],
    )
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "__version__": versions or {},
            "model_type": "SparseEncoder",
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "dot",
        },
    )
    _write_json(
        path / "sentence_bert_config.json",
        {"transformer_task": "fill-mask", "max_seq_length": int(max_seq_length), "do_lower_case": False},
    )
    (path / "1_SpladePooling").mkdir(exist_ok=True)
    _write_json(path / "1_SpladePooling" / "config.json", pooling)
