"""What a pipeline config's strings may name in braces, and the config's own variables.

    {output}               the output folder (the config's "output", or `led pipeline --output`)
    {seed}                 in a stage with "seeds", the seed of that run
    {minilm} {splade_tiny} the folders of the bundled models (led_hf/modeling/bundled.py); a stage's
                           "model" keeps the name instead (bundled:all-minilm-l6-v2), for the report
    {NAME}                 a variable the config declares, set with `led pipeline CONFIG --set NAME=VALUE`

A config declares its variables with their defaults::

    "variables": {
      "cranfield": {"default": "data/cranfield", "folder": true,
                    "help": "a Cranfield copy in BEIR layout (corpus.jsonl, queries.jsonl, qrels/)"},
      "tag": "v1"
    }

A `"folder": true` variable must name an existing folder when a stage that uses it runs (or is planned by
`--dry-run`); otherwise the pipeline stops with one line saying which `--set` to pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from led_hf.errors import LedError
from led_hf.modeling.bundled import resolve_model_path

# placeholder -> the bundled model whose folder it stands for
BUNDLED_PLACEHOLDERS = {"minilm": "bundled:all-minilm-l6-v2", "splade_tiny": "bundled:splade-tiny"}
RESERVED = {"output", "seed", *BUNDLED_PLACEHOLDERS}


@dataclass
class Variable:
    name: str
    value: str
    folder: bool = False  # must be an existing folder when a stage using it runs
    help: str = ""


def placeholders() -> dict[str, str]:
    """The folders of the bundled models that are installed: `{minilm}` and `{splade_tiny}`."""
    values = {}
    for key, name in BUNDLED_PLACEHOLDERS.items():
        try:
            values[key] = resolve_model_path(name)
        except LedError:  # its package is not installed: a config naming it stops at "unknown placeholder"
            continue
    return values


def parse_settings(items: list[str] | None) -> dict[str, str]:
    """`["cranfield=/data/cranfield"]` (repeated `--set NAME=VALUE`) -> {"cranfield": "/data/cranfield"}."""
    settings = {}
    for item in items or []:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise LedError(f"--set {item}: expected NAME=VALUE, e.g. --set cranfield=/data/cranfield")
        settings[name.strip()] = value
    return settings


def read_variables(raw: dict, settings: dict[str, str], path: Path) -> dict[str, Variable]:
    """The config's "variables" with `settings` (from --set) applied over their defaults."""
    declared = raw.get("variables", {})
    if not isinstance(declared, dict):
        raise LedError(f'{path}: "variables" must be an object of name -> default (or {{"default": ...}})')
    variables = {}
    for name, spec in declared.items():
        if name in RESERVED or not name.isidentifier():
            raise LedError(
                f"{path}: variable {name!r}: not a usable name (reserved: {', '.join(sorted(RESERVED))})"
            )
        if isinstance(spec, str):
            spec = {"default": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("default"), str):
            raise LedError(
                f'{path}: variable {name!r} needs a string default: "{name}": "VALUE" or {{"default": ...}}'
            )
        unknown = set(spec) - {"default", "folder", "help"}
        if unknown:
            raise LedError(
                f"{path}: variable {name!r}: unknown keys {sorted(unknown)} (known: default, folder, help)"
            )
        variables[name] = Variable(
            name,
            settings.get(name, spec["default"]),
            bool(spec.get("folder", False)),
            str(spec.get("help", "")),
        )
    unknown = sorted(set(settings) - set(variables))
    if unknown:
        known = ", ".join(sorted(variables)) or "none"
        raise LedError(f"{path}: --set {unknown[0]}: the config declares no such variable (it has: {known})")
    return variables


def used_variables(entry: dict, variables: dict[str, Variable]) -> list[str]:
    """The names of `variables` that a stage's config entry mentions."""
    text = json.dumps(entry)
    return [name for name in variables if "{" + name + "}" in text]


def check_folders(names: list[str], variables: dict[str, Variable], path: Path, stage: str) -> None:
    """A LedError (one line, naming the `--set` to pass) for the first folder variable that is no folder."""
    for name in names:
        variable = variables[name]
        if variable.folder and not Path(variable.value).is_dir():
            what = f" ({variable.help})" if variable.help else ""
            raise LedError(
                f"{path}: stage {stage} reads {{{name}}} = {variable.value}, which is not a folder: "
                f"pass --set {name}=PATH with your copy{what}"
            )


def fill(text: str, values: dict[str, str], path: Path) -> str:
    try:
        return text.format(**values)
    except KeyError as err:
        raise LedError(f"{path}: unknown placeholder {{{err.args[0]}}} in {text!r}") from err
