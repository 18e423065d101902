"""`led pipeline CONFIG --dry-run`: every stage's commands, inputs, outputs and resources, checked, nothing run.

Inputs and outputs are read from the commands' options: `--data`, `--input`, `--model`, `--teacher`,
`--corpus-vectors`, ... (and a `train METHOD CONFIG`'s config file, and a launcher's `--config_file`) are
inputs; `--output`, `--output_dir` are outputs, and so are `DATA/negatives/NAME` of `mine --name NAME` and
`DATA/teacher_scores/NAME` of `score-teacher --name NAME`. An input must exist on disk, or lie inside (or
contain) the output of an earlier command of the plan; a name that looks like a Hugging Face Hub id
(`org/name` whose `org` is no local folder) given to a model option, or `bundled:...`, is listed as such and not checked. The first
input that is neither is a one-line error naming the stage and the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from led_hf.errors import LedError

INPUT_FLAGS = {
    "--data",
    "--input",
    "--model",
    "--teacher",
    "--corpus-vectors",
    "--corpus-embeddings",
    "--index",
    "--run",
    "--passages",
    "--vectors",
    "--config_file",
    "--model_name_or_path",
    "--teacher_model_name_or_path",
    "--cross_encoder_name_or_path",
}
# options that may name a Hub model instead of a folder (and `prepare --format hf --input` a Hub dataset)
HUB_FLAGS = {
    "--model",
    "--teacher",
    "--model_name_or_path",
    "--teacher_model_name_or_path",
    "--cross_encoder_name_or_path",
}
OUTPUT_FLAGS = {"--output", "--output_dir", "--output-dir"}
NAMED_OUTPUTS = {"mine": "negatives", "score-teacher": "teacher_scores"}
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass
class CommandPlan:
    line: list[str]
    inputs: list[tuple[str, bool]]  # (value, may be a Hub id)
    outputs: list[str]


def _value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def command_plan(argv: list[str], launcher: list[str] | None) -> CommandPlan:
    """The inputs and outputs one stage command names (see the module docstring)."""
    from led_hf.pipeline.runner import command_line

    everything = [*(launcher or []), *argv]
    hub_flags = HUB_FLAGS | ({"--input"} if _value(argv, "--format") == "hf" else set())
    inputs = [
        (value, flag in hub_flags)
        for flag in sorted(INPUT_FLAGS)
        for value in [_value(everything, flag)]
        if value is not None
    ]
    if argv[:1] == ["search"] and _value(argv, "--queries"):  # elsewhere --queries names a split
        inputs.append((_value(argv, "--queries"), False))
    if argv[:1] == ["train"] and len(argv) > 2 and argv[2].endswith(".json"):
        inputs.insert(0, (argv[2], False))
    outputs = [v for flag in sorted(OUTPUT_FLAGS) for v in [_value(argv, flag)] if v is not None]
    if argv[:1] and argv[0] in NAMED_OUTPUTS and _value(argv, "--name") and _value(argv, "--data"):
        outputs.append(f"{_value(argv, '--data')}/{NAMED_OUTPUTS[argv[0]]}/{_value(argv, '--name')}")
    return CommandPlan(command_line(argv, launcher), inputs, outputs)


def _inside(path: str, folder: str) -> bool:
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/") or folder.startswith(path + "/")


def classify(value: str, produced: list[str], output: str, hub: bool = False) -> str | None:
    """'produced', 'file', 'hub' or 'bundled' for an input; None when it is none of them."""
    if value.startswith("bundled:"):
        return "bundled"
    if any(_inside(value, earlier) for earlier in produced):
        return "produced"
    if Path(value).exists():
        return "file"
    if _inside(value, output):
        return None
    first = value.split("/", 1)[0]
    if hub and HUB_ID.match(value) and not value.startswith(".") and not Path(first).is_dir():
        return "hub"
    return None


def dry_run(pipeline) -> str:
    """The plan as text; a LedError naming the stage and the input when an input is missing."""
    lines = [f"pipeline: {len(pipeline.stages)} stages, output {pipeline.output}"]
    for variable in pipeline.variables.values():  # what --set NAME=VALUE can change, as set now
        about = f" ({variable.help})" if variable.help else ""
        lines.append(f"variable {variable.name} = {variable.value}{about}")
    produced: list[str] = []
    output = str(pipeline.output)
    for number, stage in enumerate(pipeline.stages, 1):
        done = (pipeline.output / "stages" / f"{stage.name}.json").exists()
        lines.append(f"\n[{number}] {stage.name}{' (complete)' if done else ''}: {stage.description}")
        if not done:
            pipeline.check_inputs(stage)
        if stage.resources:
            lines.append(f"    resources: {stage.resources}")
        for argv in stage.commands:
            plan = command_plan(argv, stage.launcher)
            lines.append("    $ " + " ".join(plan.line))
            for value, hub in plan.inputs:
                kind = classify(value, produced, output, hub)
                if kind is None:
                    raise LedError(
                        f"stage {stage.name}: input {value} does not exist and no earlier stage produces it"
                    )
                lines.append(f"      in  {value} ({kind})")
            for value in plan.outputs:
                lines.append(f"      out {value}")
            produced += plan.outputs
        if stage.model:
            produced.append(stage.model)
        if stage.evaluate:
            for key in ("data", "run"):
                if classify(stage.evaluate[key], produced, output) is None:
                    raise LedError(
                        f"stage {stage.name}: evaluates {stage.evaluate[key]}, which no stage produces"
                    )
            lines.append(f"    evaluate {stage.evaluate['run']} on {stage.evaluate['split']}")
    return "\n".join(lines)
