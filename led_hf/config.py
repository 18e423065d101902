"""Parse a config file (JSON or YAML) plus `--flag value` overrides into argument dataclasses.

    led train dense configs/msmarco/den_warmup.json --learning_rate 5e-6 --output_dir out/co-stg1

The file holds any field of the dataclasses, flat; each flag overrides the file's value; a field in
neither keeps its dataclass default. Types, choices and `--help` come from `transformers.HfArgumentParser`.
The resolved values are written to `OUTPUT/led_args.json` (a flat config that runs again as is),
without any token.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.errors import InputError, LedError, UsageError

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
ARGS_FILE_NAME = "led_args.json"
_SECRET_FIELD = re.compile(
    r"(^|_)token$"
)  # hub_token, push_to_hub_token; not `include_num_input_tokens_seen`


def read_config_file(path: str | Path) -> dict:
    """A flat {field: value} mapping from a JSON or YAML file."""
    path = Path(path)
    if not path.is_file():
        raise LedError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(path, err.lineno, f"not valid JSON: {err.msg}") from err
    else:
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            raise InputError(path, mark.line + 1 if mark else None, f"not valid YAML: {err}") from err
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InputError(path, 1, "a config file holds one mapping of option names to values")
    return values


def parse_arguments(
    dataclass_types: tuple, argv: list[str], prog: str | None = None, description: str | None = None
) -> tuple:
    """`[CONFIG] [--flag value ...]` -> one instance per dataclass type, flags overriding the file.

    Unknown options in the file or on the command line are an error (naming them), as are options
    that no source sets but the dataclasses require. `--help` prints every option and exits 0.
    """
    from transformers import HfArgumentParser

    parser = HfArgumentParser(dataclass_types, prog=prog, description=description)
    _allow_bare_flags(parser)
    argv = list(argv)
    file_values: dict = {}
    if argv and not argv[0].startswith("-"):
        config_path = Path(argv.pop(0))
        if config_path.suffix not in CONFIG_SUFFIXES:
            raise LedError(f"{config_path}: a config file ends with {', '.join(CONFIG_SUFFIXES)}")
        file_values = read_config_file(config_path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(file_values) - known)
        if unknown:
            raise InputError(config_path, None, f"unknown option(s) {', '.join(unknown)}")
        # The file's values become the parser's defaults: flags still win, and a required option
        # given by the file is no longer required on the command line.
        field_types = declared_types(dataclass_types)
        defaults = {}
        for action in parser._actions:
            if action.dest in file_values:
                action.required = False
                value = file_values[action.dest]
                _check_shape(action, value, field_types.get(action.dest, ""), config_path)
                defaults[action.dest] = _convert(action, value, config_path)
        parser.set_defaults(**defaults)
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=False)
    except (TypeError, ValueError) as err:  # a dataclass rejected a value (e.g. a bad choice)
        unused = re.search(r"not used by the HfArgumentParser: \[(.*)\]", str(err))
        if unused:
            names = " ".join(part.strip(" '\"") for part in unused.group(1).split(","))
            raise UsageError(f"unknown option(s) {names} (see --help)", prog=prog) from err
        raise LedError(f"invalid arguments: {err}") from err
    check_training_ranges(*parsed)
    return parsed


# (field, smallest allowed value): checked on every training recipe before any model or data loads.
TRAINING_MINIMA = (
    ("learning_rate", 0.0),
    ("weight_decay", 0.0),
    ("warmup_ratio", 0.0),
    ("num_train_epochs", 0.0),
    ("per_device_train_batch_size", 1),
    ("per_device_eval_batch_size", 1),
    ("gradient_accumulation_steps", 1),
)


def check_training_ranges(*instances) -> None:
    """A negative learning rate or a batch size of 0 is an error now, not a crash (or a silent no-op) later."""
    for instance in instances:
        for name, smallest in TRAINING_MINIMA:
            value = getattr(instance, name, None)
            if isinstance(value, int | float) and not value >= smallest:  # `not >=` also catches NaN
                raise LedError(f"--{name}: must be >= {smallest}, got {value}")


def declared_types(dataclass_types) -> dict[str, str]:
    """{field: its annotation as text}, read from the classes' own annotations: HfArgumentParser rewrites
    `field.type` (Optional[int] -> int) in place, so the fields no longer say what None-able options are."""
    types: dict[str, str] = {}
    for cls in dataclass_types:
        for klass in reversed(cls.__mro__):
            types.update({name: str(kind) for name, kind in vars(klass).get("__annotations__", {}).items()})
    return types


def _check_shape(action, value, field_type: str, path: Path) -> None:
    """A config value has the option's type: 1.5 for an integer option, a list or a mapping for a scalar one
    and "maybe" for a boolean are refused here instead of being truncated, stringified or taken as true."""
    many = action.nargs in ("+", "*") or "list" in field_type
    if isinstance(value, list) and many:
        for item in value:
            _check_shape(_Scalar(action), item, "", path)
        return
    if isinstance(value, dict) and "dict" in field_type:
        return
    if value is None and ("None" in field_type or "Optional" in field_type or action.default is None):
        return
    convert = action.type if callable(action.type) else None
    kind = "a boolean" if getattr(convert, "__name__", "") == "string_to_bool" else None
    if convert is int:
        kind = "an integer"
        ok = isinstance(value, int) and not isinstance(value, bool) or _parses(int, value)
    elif convert is float:
        kind = "a number"
        ok = isinstance(value, int | float) and not isinstance(value, bool) or _parses(float, value)
    elif kind is not None:
        ok = isinstance(value, bool) or _parses(convert, value)
    else:
        kind = "a single value"
        ok = not isinstance(value, list | dict)
    if not ok:
        raise InputError(path, None, f"option {action.dest}: expected {kind}, got {json.dumps(value)}")


class _Scalar:
    """The per-item view of a list option (its type, without nargs)."""

    def __init__(self, action):
        self.type, self.nargs, self.dest, self.default = action.type, None, action.dest, 0


def _parses(convert, value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        convert(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False
    return True


def _allow_bare_flags(parser) -> None:
    """`--flag` alone means true for optional booleans too (`bf16: bool | None`, `normalize`), as it does for
    plain booleans: HfArgumentParser gives a `bool | None` field without a value default no `nargs="?"`."""
    from transformers.hf_argparser import string_to_bool

    for action in parser._actions:
        if action.type is string_to_bool and action.nargs is None:
            action.nargs, action.const = "?", True


def _convert(action, value, path: Path):
    """Apply the option's argparse type to text values: YAML reads `1e-5` as the string "1e-5"."""
    convert = action.type if callable(action.type) else None
    if convert is None:
        return value
    try:
        if isinstance(value, str):
            return convert(value)
        if isinstance(value, list):
            return [convert(item) if isinstance(item, str) else item for item in value]
    except (TypeError, ValueError) as err:
        raise InputError(path, None, f"option {action.dest}: {err}") from err
    return value


def resolved_arguments(*instances) -> dict:
    """The fields of the argument dataclasses as one flat JSON-able dict, without any token."""
    values: dict = {}
    for instance in instances:
        fields = instance.to_dict() if hasattr(instance, "to_dict") else dataclasses.asdict(instance)
        names = {field.name for field in dataclasses.fields(instance) if field.init}
        for name, value in fields.items():
            if name in names and not _SECRET_FIELD.search(name):
                values[name] = _jsonable(value)
    return values


def save_resolved_arguments(output_dir: str | Path, *instances) -> Path:
    """Write `output_dir/led_args.json` (atomically) and return its path."""
    path = Path(output_dir) / ARGS_FILE_NAME
    with atomic_file(path) as handle:
        json.dump(resolved_arguments(*instances), handle, indent=2, sort_keys=True)
        handle.write("\n")
    return path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return getattr(value, "value", str(value))  # enums -> their value


def add_dataclass_options(parser, cls, flags: dict[str, str] | None = None) -> None:
    """Declare the fields of the argument dataclass `cls` on an argparse `parser`, for the commands that are
    not training recipes (e.g. `led score-teacher` takes `PoolArguments`): `--field-name` (or
    `flags[field]`), help and default from the dataclass, required when it has no default. A list field
    takes one comma-separated value; `cls(**values)` then normalises and checks them."""
    import typing

    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = (flags or {}).get(field.name, "--" + field.name.replace("_", "-"))
        kind = hints[field.name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        if isinstance(default, list):
            default = ",".join(map(str, default))
        shown = "" if default is None else f" (default {default})"
        parser.add_argument(
            flag,
            dest=field.name,
            metavar=flag.lstrip("-").replace("-", "_").upper(),
            type=int if kind is int else float if kind is float else str,
            default=default,
            required=default is None,
            help=field.metadata.get("help", "") + shown,
        )


def _number_option(convert, smallest, strict: bool, what: str):
    """An argparse `type=` that refuses values below `smallest` (or equal to it when `strict`)."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}") from None
        if not (value > smallest if strict else value >= smallest):  # `not` also catches NaN
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = what.replace(" ", "_")  # argparse names the type in some messages
    return parse


# `type=` of the commands' count and size options: 0 batch size, -5 tokens, 1.5 queries are one-line errors.
positive_int = _number_option(int, 0, True, "a positive integer")
non_negative_int = _number_option(int, 0, False, "an integer >= 0")
positive_float = _number_option(float, 0.0, True, "a positive number")
non_negative_float = _number_option(float, 0.0, False, "a number >= 0")
