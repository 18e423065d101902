"""The README and docs/ cannot drift from the code: their commands parse, their example runs, their links resolve.

- every `led ...` line (and `accelerate launch scripts/train_<method>.py ...` / `-m led_hf ...` line) of a
  shell block is parsed by the command's own argument parser (parse only: nothing runs);
- every inline `led <command> --flag` names a real command and options that command accepts;
- every command and training method is shown, and every option of a command is named somewhere;
- the pipeline configs (the JSON example in docs/pipeline.md and configs/*/pipeline*.json) parse the same way;
- the Python examples of docs/training.md run (on the tiny fixture model and collection);
- links and repository paths resolve, and nothing points outside the repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from led_hf.cli.main import COMMANDS
from led_hf.cli.main import main as led
from led_hf.cli.train import RECIPES

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
HEADING = re.compile(r"^#+ (.+)$", re.M)
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z_]*)$")  # <method>, CONFIG, DATA ...


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _blocks(path: Path, languages: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """(language, line number of the fence, body) of each fenced block in one of `languages`."""
    text = path.read_text(encoding="utf-8")
    return [
        (m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) in languages
    ]


def _prose(path: Path) -> str:
    """The text outside fenced blocks."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def _led_argv(tokens: list[str], where: str) -> list[str] | None:
    """The `led` arguments of one shell command line, or None when it runs something else (make, pip, ...)."""
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if tokens[:1] == ["led"]:
        return tokens[1:]
    if tokens[:3] == ["python", "-m", "led_hf"]:
        return tokens[3:]
    if tokens[:2] == ["accelerate", "launch"]:
        for position, token in enumerate(tokens):
            if token == "-m":
                assert tokens[position + 1] == "led_hf", (
                    f"{where}: accelerate launch -m {tokens[position + 1]}"
                )
                return tokens[position + 2 :]
            if token.endswith(".py"):
                script = REPO / token
                method = re.fullmatch(r"scripts/train_(\w+)\.py", token)
                assert method and script.is_file(), f"{where}: {token} is not a training script of the repo"
                name = method.group(1).replace("_", "-")
                assert f'"train", "{name}"' in script.read_text(encoding="utf-8"), f"{where}: {token}"
                return ["train", name, *tokens[position + 1 :]]
        raise AssertionError(f"{where}: accelerate launch runs neither a script nor -m led_hf")
    return None


def shell_commands() -> list[tuple[str, list[str]]]:
    """(file:line, argv) of every `led` command in the shell blocks of the README and docs/."""
    found = []
    for path in DOCS:
        for _, start, body in _blocks(path, ("bash", "sh", "shell", "console")):
            lines = body.replace("\\\n", " ").split("\n")  # continuation lines join their command
            for offset, line in enumerate(lines, 1):
                tokens = shlex.split(line, comments=True)
                where = f"{_rel(path)}:{start + offset}"
                argv = _led_argv(tokens, where) if tokens else None
                if argv is not None:
                    found.append((where, argv))
    return found


def inline_commands() -> list[tuple[str, list[str]]]:
    """(file, tokens after `led`) of every `led ...` code span outside fenced blocks."""
    found = []
    for path in DOCS:
        for span in re.findall(r"`(led [^`]+)`", _prose(path)):
            found.append((f"{_rel(path)}: `{span}`", span.split()[1:]))
    return found


class _Parsed(Exception):
    """Raised by the patched parser once it has accepted the arguments: the command never runs."""


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__(parser.prog)
        self.parser = parser


def parse_only(argv: list[str], monkeypatch, capsys) -> str | None:
    """None when `led argv` parses (or prints its help), else why not (the CLI's own message)."""
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        _, extras = original(self, args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise _Parsed(self.prog)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_args)
    try:
        status = led(list(argv))
    except _Parsed:
        return None
    except SystemExit as done:
        status = done.code
    finally:
        monkeypatch.undo()
    if status == 0 and {"-h", "--help"} & set(argv):
        return None
    return f"exit {status}: {capsys.readouterr().err.strip()[-600:]}"


def parser_of(argv: list[str], monkeypatch) -> argparse.ArgumentParser:
    """The argument parser `led argv` builds, taken before it parses anything."""

    def capture(self, args=None, namespace=None):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    try:
        led(list(argv))
    except _Captured as captured:
        return captured.parser
    finally:
        monkeypatch.undo()
    raise AssertionError(f"`led {' '.join(argv)}` built no argument parser")


def _command_prefix(tokens: list[str]) -> list[str]:
    """`led <command>` or `led train <method>` (what selects the parser), placeholders excluded."""
    prefix = [t for t in tokens[:2] if not t.startswith("-")]
    if prefix[:1] != ["train"]:
        prefix = prefix[:1]
    return [t for t in prefix if not PLACEHOLDER.match(t)]


# ---------------------------------------------------------------------------------------------- commands
SHELL_COMMANDS = shell_commands()


def test_the_docs_show_commands():
    assert len(SHELL_COMMANDS) > 50
    assert len({_rel(p) for p in DOCS} & {w.split(":")[0] for w, _ in SHELL_COMMANDS}) >= 5


@pytest.mark.parametrize("where,argv", SHELL_COMMANDS, ids=[w for w, _ in SHELL_COMMANDS])
def test_shell_command_parses(where, argv, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # config paths in the docs are relative to the repository root
    problem = parse_only(argv, monkeypatch, capsys)
    assert problem is None, f"{where}: led {' '.join(argv)}\n{problem}"


def test_a_wrong_flag_or_a_missing_config_is_caught(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert (
        parse_only(["search", "--passages", "a", "--queries", "b", "--output", "c"], monkeypatch, capsys)
        is None
    )
    assert "unrecognized" in parse_only(
        ["search", "--passage", "a", "--queries", "b", "--output", "c", "--x"], monkeypatch, capsys
    )
    assert parse_only(
        ["encode", "--model", "m", "--data", "d", "--output", "o"], monkeypatch, capsys
    )  # no --corpus
    assert (
        parse_only(
            ["train", "dense", "configs/demo/den_scifact.json", "--learning_rate", "1e-5"],
            monkeypatch,
            capsys,
        )
        is None
    )
    assert "no_such_option" in parse_only(
        ["train", "dense", "configs/demo/den_scifact.json", "--no_such_option", "1"], monkeypatch, capsys
    )
    assert "does not exist" in parse_only(["train", "led", "configs/no-such.json"], monkeypatch, capsys)
    assert parse_only(["no-such-command"], monkeypatch, capsys)


INLINE_COMMANDS = inline_commands()


@pytest.mark.parametrize("where,tokens", INLINE_COMMANDS, ids=[w for w, _ in INLINE_COMMANDS])
def test_inline_command_names_a_command_and_its_options(where, tokens, monkeypatch):
    prefix = _command_prefix(tokens)
    if not prefix:
        return  # `led <command> --help`: nothing concrete to check
    assert prefix[0] in COMMANDS, f"{where}: no command {prefix[0]!r}"
    if prefix[0] == "train" and len(prefix) > 1:
        assert prefix[1] in RECIPES, f"{where}: no training method {prefix[1]!r}"
    flags = [t.split("=")[0] for t in tokens if t.startswith("--")]
    if not flags or prefix == ["train"]:
        return
    monkeypatch.chdir(REPO)
    parser = parser_of(
        prefix + (["--index"] if prefix == ["search"] and "--index" in flags else []), monkeypatch
    )
    unknown = [flag for flag in flags if flag not in parser._option_string_actions]
    assert not unknown, f"{where}: {parser.prog} has no option {', '.join(unknown)}"


def test_every_command_and_method_is_shown():
    shown = {argv[0] for _, argv in SHELL_COMMANDS if argv}
    assert set(COMMANDS) <= shown, f"commands without an example: {sorted(set(COMMANDS) - shown)}"
    methods = {argv[1] for _, argv in SHELL_COMMANDS if argv[:1] == ["train"] and len(argv) > 1}
    assert set(RECIPES) <= methods, f"training methods without an example: {sorted(set(RECIPES) - methods)}"


def _documented_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"train"}))
def test_every_option_of_a_command_is_named(command, monkeypatch):
    parser = parser_of([command], monkeypatch)
    options = {action.option_strings[-1] for action in parser._actions if action.option_strings} - {"--help"}
    if command == "search":  # its sparse form has a parser of its own
        options |= {a.option_strings[-1] for a in parser_of(["search", "--index"], monkeypatch)._actions[1:]}
    text = _documented_text()
    missing = sorted(option for option in options if not re.search(re.escape(option) + r"(?![\w-])", text))
    assert not missing, f"led {command}: options named nowhere in README.md or docs/: {missing}"


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_every_led_hf_training_option_is_named(method, monkeypatch):
    """The options led-hf adds (its model/data dataclasses and its TrainingArguments fields) are documented."""
    from transformers import TrainingArguments

    parser = parser_of(["train", method], monkeypatch)
    inherited = {field.name for field in dataclasses.fields(TrainingArguments)}
    ours = {
        field.name
        for dataclass_type in parser.dataclass_types
        for field in dataclasses.fields(dataclass_type)
        if field.init
    }
    ours -= inherited - {"remove_unused_columns", "dataloader_drop_last", "ddp_broadcast_buffers"}
    text = _documented_text()
    missing = sorted(name for name in ours if not re.search(rf"`{name}`|\b{name}\b", text))
    assert not missing, f"led train {method}: options named nowhere in README.md or docs/: {missing}"


def _pipeline_commands() -> list[tuple[str, list[str]]]:
    found = []
    sources = [
        (path, path.read_text(encoding="utf-8")) for path in sorted(REPO.glob("configs/*/pipeline*.json"))
    ]
    sources += [
        (path, body) for path in DOCS for _, _, body in _blocks(path, ("json",)) if '"stages"' in body
    ]
    assert len(sources) >= 2
    for path, text in sources:
        config = json.loads(text)
        # commands run with the config's variables at their defaults and a seeded stage's {seed} filled in
        defaults = {
            name: spec if isinstance(spec, str) else spec["default"]
            for name, spec in config.get("variables", {}).items()
        }
        for stage in config["stages"]:
            values = {**defaults, "seed": str(stage.get("seeds", [0])[0])}
            for argv in stage["commands"]:
                filled = []
                for arg in argv:
                    for name, value in values.items():
                        arg = arg.replace(f"{{{name}}}", value)
                    filled.append(arg)
                found.append((f"{_rel(path)} stage {stage['name']}", filled))
    return found


PIPELINE_COMMANDS = _pipeline_commands()


@pytest.mark.parametrize("where,argv", PIPELINE_COMMANDS, ids=[w for w, _ in PIPELINE_COMMANDS])
def test_pipeline_config_command_parses(where, argv, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    problem = parse_only(argv, monkeypatch, capsys)
    assert problem is None, f"{where}: led {' '.join(argv)}\n{problem}"


# ---------------------------------------------------------------------------------------------- examples
def _python_blocks(path: Path, heading: str) -> list[str]:
    """The python blocks of the section under `## heading` (up to the next heading outside a fence)."""
    section, inside, fenced = [], False, False
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        fenced ^= line.startswith("```")
        if not fenced and line.startswith("#"):
            inside = line.strip() == f"## {heading}"
        if inside:
            section.append(line)
    assert section, f"{_rel(path)} has no section {heading!r}"
    return [m.group(2) for m in FENCE.finditer("".join(section)) if m.group(1) == "python"]


def _substitute(code: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert code.count(old) == 1, f"the example no longer contains {old!r} exactly once"
        code = code.replace(old, new)
    return code


def test_python_example_trains_encodes_searches_and_evaluates(
    tmp_path, monkeypatch, capsys, beir_dir, tiny_bert_dir
):
    example, _ = _python_blocks(REPO / "docs" / "training.md", "Use it from Python")
    code = _substitute(
        example,
        {  # the tiny fixture collection and model instead of SciFact and MiniLM, and fewer steps
            'SOURCE = "data/scifact"': f"SOURCE = {str(beir_dir)!r}",
            'MODEL = resolve_model_path("bundled:all-minilm-l6-v2")': f"MODEL = {str(tiny_bert_dir)!r}",
            "max_steps=20": "max_steps=3",
            # the fixture has 3 training queries: a batch of 2 (one per epoch, the last dropped)
            "per_device_train_batch_size=4": "per_device_train_batch_size=2",
        },
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code, "docs/training.md (Use it from Python)", "exec"), namespace)

    assert namespace["trainer"].state.global_step == 3
    output = tmp_path / "runs" / "python-example"
    assert (output / "dense" / "led_config.json").is_file()
    assert len((output / "dense.test.trec").read_text().splitlines()) > 0
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metrics = json.loads(printed[-1])
    assert metrics["num_queries"] == 2 and 0 <= metrics["ndcg@10"] <= 1
    assert {"mrr@10", "recall@50", "recall@1000", "trec_recall@1000"} <= set(metrics)


def test_python_loss_example_runs():
    _, losses = _python_blocks(REPO / "docs" / "training.md", "Use it from Python")
    namespace: dict = {}
    exec(compile(losses, "docs/training.md (losses)", "exec"), namespace)
    loss = namespace["loss"]
    assert loss.ndim == 0 and bool(loss.isfinite())


# ---------------------------------------------------------------------------------------------- links
def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links() -> list[tuple[str, Path, str]]:
    found = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(path)):
            found.append((f"{_rel(path)} -> {target}", path, target))
    return found


LINKS = _links()


@pytest.mark.parametrize("where,path,target", LINKS, ids=[w for w, _, _ in LINKS])
def test_link_resolves(where, path, target):
    if re.match(r"^https?://", target):
        return
    file_part, _, anchor = target.partition("#")
    resolved = (path.parent / file_part).resolve() if file_part else path
    assert resolved.exists(), f"{where}: no such file"
    assert REPO in resolved.parents or resolved == REPO, f"{where}: outside the repository"
    if anchor:
        headings = {_slug(h) for h in HEADING.findall(FENCE.sub("", resolved.read_text(encoding="utf-8")))}
        assert anchor in headings, f"{where}: no heading #{anchor} in {_rel(resolved)}"


def test_repository_paths_named_in_the_docs_exist():
    missing = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for name in re.findall(
            r"(?<![\w./-])((?:configs|scripts|benchmarks|docs|led_hf|tests)/[\w./<>*-]*[\w*>])", text
        ):
            pattern = re.sub(r"<[^>]+>", "*", name)
            if not any(REPO.glob(pattern)):
                missing.append(f"{_rel(path)}: {name}")
    assert not missing, "paths named in the docs that the repository does not have:\n" + "\n".join(missing)


def test_nothing_points_outside_the_repository():
    offending = []
    for path in DOCS:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.\./shared|\bspec\b|shared/env\.md|/work/", line, re.I):
                offending.append(f"{_rel(path)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


def test_slug_follows_github_anchors():
    assert _slug("1. Stages of the reference recipe (MS MARCO passage)") == (
        "1-stages-of-the-reference-recipe-ms-marco-passage"
    )
    assert _slug("The demo, measured") == "the-demo-measured"
    assert _slug("Use it from Python") == "use-it-from-python"
