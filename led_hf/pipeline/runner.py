"""Run a multi-stage recipe: each stage is a list of `led` commands plus an optional run to evaluate.

A pipeline config (JSON) looks like::

    {"output": "runs/demo",
     "stages": [
       {"name": "bm25", "commands": [["bm25", "--data", "{output}/data", "--split", "test",
                                      "--output", "{output}/bm25.trec"]],
        "evaluate": {"data": "{output}/data", "split": "test", "run": "{output}/bm25.trec"}}]}

Strings may use `{output}`, the bundled models' `{minilm}` / `{splade_tiny}` and the config's own
`"variables"`, set with `--set NAME=VALUE` (led_hf/pipeline/variables.py). Optional stage keys:
`"compare_to": [stage names]` (the report tests the stage against each, paired over queries: its init and
BM25, say; led_hf/pipeline/compare.py) and `"seeds": [0, 1, 2]` (the stage runs once per seed as
`<name>-seed<S>`, `{seed}` filled in its strings, which must use it; the report shows mean ± std). A
completed stage
leaves `OUTPUT/stages/<name>.json` (wall time, metrics); a rerun skips it, so an interrupted pipeline
resumes at the first unfinished stage. A stage with `"cache": {"inputs": [paths]}` is computed once per
machine and its record reused by any later run, whatever its output folder (led_hf/pipeline/cache.py).

Every command runs in its own process, `python -m led_hf ARGS` (or the stage's `launcher` prefix, e.g.
`["accelerate", "launch", "--config_file", "configs/accelerate/multi_gpu_bf16.yaml", "-m", "led_hf"]`),
its output streamed line by line: a stage's memory is returned to the system when it ends, so the
pipeline's peak RSS is its largest stage's, not the sum of all of them. Tests may hand `Pipeline.run`
another `run_command(argv, launcher) -> exit status`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_per_query, evaluate_run, metric_names
from led_hf.pipeline import cache
from led_hf.pipeline.variables import (
    BUNDLED_PLACEHOLDERS,
    Variable,
    check_folders,
    fill,
    placeholders,
    read_variables,
    used_variables,
)
from led_hf.secrets import mask_command, shown_command

logger = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    commands: list[list[str]]
    model: str | None = None
    evaluate: dict | None = None
    description: str = ""
    compare_to: list[str] = field(default_factory=list)  # stage (or seed group) names, for the report
    group: str | None = None  # the config's stage name when this is one seed of a `seeds` stage
    seed: int | None = None
    launcher: list[str] | None = None  # argv prefix replacing `python -m led_hf`
    resources: str = ""  # what the stage needs, for --dry-run (e.g. "8 GPUs, ~6 h")
    cache_inputs: list[str] | None = None  # content-hash cached when set (led_hf.pipeline.cache)
    template: dict = field(default_factory=dict)  # the config entry as written (the cache key's part)
    variables: list[str] = field(default_factory=list)  # the config variables it uses


@dataclass
class Pipeline:
    output: Path
    stages: list[Stage] = field(default_factory=list)
    variables: dict[str, Variable] = field(default_factory=dict)
    config: Path = Path("pipeline.json")

    @classmethod
    def from_file(
        cls, path: str | Path, output: str | None = None, settings: dict[str, str] | None = None
    ) -> Pipeline:
        """`settings`: values for the config's variables (`--set NAME=VALUE`)."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # ValueError: invalid JSON or not UTF-8
            raise LedError(f"{path}: cannot read pipeline config: {err}") from err
        if not isinstance(raw, dict):
            raise LedError(f"{path}: a pipeline config is one JSON object with 'output' and 'stages'")
        out = output or raw.get("output")
        if not out:
            raise LedError(f"{path}: no 'output' folder (set it in the file or pass --output)")
        variables = read_variables(raw, settings or {}, path)
        values = {**placeholders(), **{v.name: v.value for v in variables.values()}, "output": str(out)}
        # the report's model column shows the bundled model's name, not the folder its package installed
        shown = {**values, **BUNDLED_PLACEHOLDERS}
        stages = []
        for number, entry in enumerate(raw.get("stages", []), 1):
            if not isinstance(entry, dict) or "name" not in entry or "commands" not in entry:
                raise LedError(f"{path}: stage {number} needs 'name' and 'commands'")
            compare_to = entry.get("compare_to", [])
            if not isinstance(compare_to, list) or not all(isinstance(n, str) for n in compare_to):
                raise LedError(f"{path}: stage {entry['name']!r}: 'compare_to' must be a list of stage names")
            unknown = [n for n in compare_to if n not in {stage.group or stage.name for stage in stages}]
            if unknown:
                raise LedError(f"{path}: stage {entry['name']!r} compares to {unknown}, not an earlier stage")
            for seed in _seeds(entry, path):
                filled = {**values, "seed": str(seed)} if seed is not None else values
                display = {**shown, "seed": str(seed)} if seed is not None else shown
                stages.append(
                    Stage(
                        name=entry["name"] if seed is None else f"{entry['name']}-seed{seed}",
                        commands=[
                            [fill(arg, filled, path) for arg in command] for command in entry["commands"]
                        ],
                        model=fill(entry["model"], display, path) if entry.get("model") else None,
                        evaluate={k: fill(str(v), filled, path) for k, v in entry["evaluate"].items()}
                        if entry.get("evaluate")
                        else None,
                        description=entry.get("description", ""),
                        compare_to=compare_to,
                        group=None if seed is None else entry["name"],
                        seed=seed,
                        launcher=_launcher(entry.get("launcher"), filled, path, number),
                        resources=entry.get("resources", ""),
                        cache_inputs=_cache_inputs(entry, filled, path),
                        template=entry,
                        variables=used_variables(entry, variables),
                    )
                )
        if len({stage.name for stage in stages}) != len(stages):
            raise LedError(f"{path}: stage names must be unique")
        _check_cached_outputs_unused(stages, path)
        return cls(output=Path(out), stages=stages, variables=variables, config=path)

    def check_inputs(self, stage: Stage) -> None:
        """Stop with one line when a folder variable the stage uses names no folder (`--set NAME=PATH`)."""
        check_folders(stage.variables, self.variables, self.config, stage.name)

    def run(
        self,
        run_command: Callable[[list[str], list[str] | None], int] | None = None,
        only: list[str] | None = None,
        force: bool = False,
        use_cache: bool = True,
    ) -> list[dict]:
        """Run every stage not yet completed (or those in `only`), each command through
        `run_command(argv, launcher) -> exit status` (default `run_subprocess`); one record per stage.
        `use_cache=False` recomputes cached stages (and refreshes their cache entries)."""
        run_command = run_command or run_subprocess
        records = []
        for stage in self.stages:
            done = self.output / "stages" / f"{stage.name}.json"
            selected = only is None or stage.name in only
            if done.exists() and not (force and selected):
                logger.info("stage %s: already complete, skipped", stage.name)
                record = json.loads(done.read_text(encoding="utf-8"))
                # the report follows the config as it is now
                record["compare_to"], record["model"] = stage.compare_to, stage.model
                records.append(_note_guard(record, stage.model))
                continue
            if not selected:
                continue
            self.check_inputs(stage)
            print(f"\n=== stage {stage.name}: {stage.description}", flush=True)
            start = time.perf_counter()
            key = (
                cache.stage_key(stage.template, stage.cache_inputs)
                if stage.cache_inputs is not None
                else None
            )
            cached = cache.load(key) if key and use_cache and not force else None
            if cached is not None:
                record = {
                    **cached,
                    "name": stage.name,
                    "model": stage.model,  # the cached record may come from another output folder
                    "cached": True,
                    "computed_wall_time_s": cached.get("computed_wall_time_s", cached.get("wall_time_s")),
                    "wall_time_s": round(time.perf_counter() - start, 1),
                }
                print(f"    cached result (key {key[:12]}): " + json.dumps(record.get("metrics")), flush=True)
                with atomic_file(done) as handle:
                    json.dump(record, handle, indent=2)
                records.append(record)
                continue
            for command in stage.commands:
                if force and done.exists():
                    command = replacing(command)
                print("    $ " + " ".join(mask_command(command_line(command, stage.launcher))), flush=True)
                status = run_command(command, stage.launcher)
                if status != 0:
                    raise LedError(f"stage {stage.name}: `{shown_command(command)}` failed (exit {status})")
            record = {
                "name": stage.name,
                "description": stage.description,
                "model": stage.model,
                "wall_time_s": round(time.perf_counter() - start, 1),
                "compare_to": stage.compare_to,
                "group": stage.group,
                "seed": stage.seed,
            }
            _note_guard(record, stage.model)
            if stage.evaluate:
                record["metrics"], record["per_query"] = _evaluate(stage.evaluate)
                print(f"    {stage.name}: " + json.dumps(record["metrics"]), flush=True)
            with atomic_file(done) as handle:
                json.dump(record, handle, indent=2)
            if key:
                cache.store(key, record)
            records.append(record)
        return records


def guard(model: str | None) -> dict | None:
    """What `fallback_to_init` decided for the stage's model, read from its eval_results.json: `kept_init` 1
    (the trained model did not beat the init on the evaluation split by more than the margin) or 0, the
    `init_*` and `trained_*` metrics and the `fallback_*` entries (margin, queries, paired p-values); None
    for a model trained without the guard."""
    if not model:
        return None
    try:
        results = json.loads((Path(model) / "eval_results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if "kept_init" not in results:
        return None
    return {
        key: value
        for key, value in results.items()
        if key.startswith(("init_", "trained_", "fallback_")) or key == "kept_init"
    }


def _note_guard(record: dict, model: str | None) -> dict:
    """`record` with "guard" as the model folder says now (a rerun's report follows the folder)."""
    record.pop("guard", None)
    record.pop("kept_init", None)  # stage records written before "guard" held only kept inits, as kept_init
    if found := guard(model):
        record["guard"] = found
    return record


def replacing(argv: list[str]) -> list[str]:
    """A forced rerun of a completed stage replaces what it trained: `led train` refuses an output_dir
    that holds a trained model unless told `--overwrite_output_dir`."""
    if argv[:1] == ["train"] and "--overwrite_output_dir" not in argv:
        return [*argv, "--overwrite_output_dir", "true"]
    return argv


def command_line(argv: list[str], launcher: list[str] | None) -> list[str]:
    """What a stage command runs: `led ARGS` when no launcher is given, else LAUNCHER ARGS."""
    return [*(launcher or ["led"]), *argv]


def _cache_inputs(entry: dict, values: dict[str, str], path: Path) -> list[str] | None:
    spec = entry.get("cache")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("inputs"), list) or not spec["inputs"]:
        raise LedError(
            f'{path}: stage {entry["name"]!r}: "cache" must be {{"inputs": [paths the result depends on]}}'
        )
    return [fill(str(item), values, path) for item in spec["inputs"]]


def _check_cached_outputs_unused(stages: list[Stage], path: Path) -> None:
    """A cache hit brings back the record, not the files: no later stage may read a cached stage's --output."""
    for index, stage in enumerate(stages):
        if stage.cache_inputs is None:
            continue
        outputs = [
            Path(command[i + 1])
            for command in stage.commands
            for i, arg in enumerate(command[:-1])
            if arg == "--output"
        ]
        for later in stages[index + 1 :]:
            for arg in (arg for command in later.commands for arg in command):
                if any(Path(arg) == out or out in Path(arg).parents for out in outputs):
                    raise LedError(
                        f"{path}: stage {later.name!r} reads {arg}, an output of cached stage {stage.name!r} "
                        '(a cache hit does not recreate files): drop its "cache" or read something else'
                    )


def run_subprocess(argv: list[str], launcher: list[str] | None = None) -> int:
    """Run one `led` command in a child process (`python -m led_hf ARGS`, or LAUNCHER ARGS), printing its
    stdout and stderr as they come; the exit status."""
    command = [*(launcher or [sys.executable, "-m", "led_hf"]), *argv]
    env = dict(os.environ)
    # the child imports this very led_hf, installed or not (a checkout run with PYTHONPATH=. included)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    try:
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1
        )
    except OSError as err:
        raise LedError(f"cannot start {command[0]!r}: {err}") from err
    try:
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
        return child.wait()
    except BaseException:  # Ctrl-C: stop the child too, never leave it running on its own
        child.kill()
        child.wait()
        raise


def _launcher(value, values: dict[str, str], path: Path, number: int) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise LedError(f"{path}: stage {number}'s 'launcher' must be a non-empty list of strings")
    return [fill(v, values, path) for v in value]


def _evaluate(spec: dict) -> tuple[dict, dict]:
    """(means, {metric: {qid: value}}) of the stage's run; per-query values feed the report's paired tests."""
    qrels = PreparedData(spec["data"]).qrels_dict(spec["split"])
    run = read_run(spec["run"])
    per_query = evaluate_per_query(run, qrels)
    by_metric = {name: {qid: values[name] for qid, values in per_query.items()} for name in metric_names()}
    return evaluate_run(run, qrels), by_metric


def _seeds(entry: dict, path: Path) -> list[int | None]:
    """The stage's seeds ([None] without `seeds`); a seeded stage must use `{seed}` somewhere."""
    if "seeds" not in entry:
        return [None]
    seeds = entry["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise LedError(f"{path}: stage {entry['name']!r}: 'seeds' must be a non-empty list of integers")
    if len(set(seeds)) != len(seeds):
        raise LedError(f"{path}: stage {entry['name']!r}: repeated seeds {seeds}")
    if "{seed}" not in json.dumps(entry["commands"]):
        raise LedError(
            f"{path}: stage {entry['name']!r} has 'seeds' but its commands never use {{seed}} "
            "(each seed would overwrite the last one's outputs)"
        )
    return seeds
