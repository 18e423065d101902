"""The small files that describe a checkpoint folder beside its plain HF weights.

`led_config.json` says which kind of model a folder holds and how to use it, e.g.
`{"kind": "dense", "pooling": "cls", "normalize": false, "temperature": 1.0, "separate_encoders": false}`.
A folder without it is still a valid plain HF folder; readers then fall back to other metadata
(sentence-transformers' `modules.json`, `1_Pooling/config.json`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from led_hf.errors import LedError

LED_CONFIG_NAME = "led_config.json"
MASKED_LM = "masked-lm"  # detect_model_kind's answer for a plain masked-LM folder


def read_json_file(path: str | os.PathLike, filename: str):
    """`path/filename` parsed as JSON, or None when absent. `path` may also be a hub model id (cached file)."""
    local = Path(path)
    if local.is_dir():
        file = local / filename
        if not file.is_file():
            return None
    else:
        from transformers.utils import cached_file

        try:
            found = cached_file(
                str(path),
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except OSError:
            return None
        if found is None:
            return None
        file = Path(found)
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LedError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from err


def read_led_config(path: str | os.PathLike) -> dict:
    """`led_config.json` of a checkpoint folder (or hub id), or {} when it has none."""
    config = read_json_file(path, LED_CONFIG_NAME)
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise LedError(f"{Path(path) / LED_CONFIG_NAME}: expected a JSON object")
    return config


def write_led_config(path: str | os.PathLike, config: dict) -> None:
    (Path(path) / LED_CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def sub_state_dict(state_dict: dict | None, prefix: str) -> dict | None:
    """The entries of a wrapper's `state_dict` (e.g. gathered by DeepSpeed ZeRO-3) under `prefix`, with the
    prefix dropped, for the wrapped module's `save_pretrained`; None (save the live weights) stays None.

        sub_state_dict({"model.w": a, "head.b": b}, "model.") -> {"w": a}
    """
    if state_dict is None:
        return None
    return {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}


def detect_model_kind(path: str | os.PathLike) -> str | None:
    """What a checkpoint folder (or hub id) holds, decided here only:

    1. `led_config.json`'s "kind" ("dense", "splade", "cross-encoder", ...);
    2. "cross-encoder" when `config.json` names a `*ForSequenceClassification` architecture (a hub cross-encoder);
    3. "dense" with sentence-transformers metadata (`modules.json`);
    4. "masked-lm" when `config.json` names a `*ForMaskedLM` architecture: a plain MLM folder, which a
       SPLADE teacher can load but which could start a dense model too (each command decides);
    5. None otherwise (the caller decides, e.g. from the command it runs).
    """
    kind = read_led_config(path).get("kind")
    if kind is not None:
        return str(kind)
    model_config = read_json_file(path, "config.json")
    architectures = (model_config.get("architectures") or []) if isinstance(model_config, dict) else []
    if any(str(name).endswith("ForSequenceClassification") for name in architectures):
        return "cross-encoder"
    if read_json_file(path, "modules.json") is not None:
        return "dense"
    if any(str(name).endswith("ForMaskedLM") for name in architectures):
        return MASKED_LM
    return None
