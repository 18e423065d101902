"""Mask tokens in command lines before they are printed, logged or recorded (stage manifests, errors).

    mask_command(["train", "dense", "--hub_token", "hf_abc..."]) -> ["train", "dense", "--hub_token", "***"]

The value after any `--*token` option (`--hub_token`, `--token`, `--hub-token`, `--token=...`) and
anything shaped like a Hugging Face token (`hf_` followed by 20 or more letters and digits) is replaced.
"""

from __future__ import annotations

import re

MASK = "***"
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")
_TOKEN_OPTION = re.compile(r"^--?[\w-]*token$", re.IGNORECASE)


def mask_text(text: str) -> str:
    """`text` with every hf_... token replaced."""
    return _HF_TOKEN.sub(MASK, text)


def mask_command(argv: list[str]) -> list[str]:
    """A copy of `argv` with token option values and hf_... tokens masked."""
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        arg = str(arg)
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        option, equals, _ = arg.partition("=")
        if _TOKEN_OPTION.match(option):
            if equals:
                masked.append(f"{option}={MASK}")
            else:
                masked.append(arg)
                hide_next = True
            continue
        masked.append(mask_text(arg))
    return masked


def shown_command(argv: list[str]) -> str:
    """`led ARGS` with secrets masked, for messages."""
    return " ".join(["led", *mask_command(argv)])
