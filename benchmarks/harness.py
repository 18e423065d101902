"""What every benchmark entry shares: the machine line, alternating timed sides, result rows, the table.

A comparison is a set of *sides* (callables doing one unit of work: a training step, an encoding run, a
search) timed in the same process. The machine's speed drifts (other jobs share it, clocks change), so
`alternate` runs the sides in turn, rotating the order every repetition, and reports each side's median:
a slow minute hits every side alike instead of one. Benchmarks report numbers; they never assert them.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_description() -> dict:
    """CPU model, logical cores and the vector/matrix flags that decide bf16 speed (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": [flag for flag in CPU_FLAGS if flag in flags],
    }


def machine_description() -> dict:
    """Everything a reader needs to place the numbers: CPU, thread count, library versions, date, load."""
    import torch
    import transformers

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    versions["transformers"] = transformers.__version__
    try:
        import sentence_transformers

        versions["sentence-transformers"] = sentence_transformers.__version__
    except ImportError:
        versions["sentence-transformers"] = None
    from led_hf.precision import resolve_precision

    return {
        "cpu": cpu_description(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "auto_precision_cpu": resolve_precision("auto", "cpu"),
        "versions": versions,
        "date": datetime.date.today().isoformat(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(machine: dict) -> str:
    cpu = machine["cpu"]
    versions = ", ".join(f"{name} {value}" for name, value in machine["versions"].items() if value)
    line = (
        f"{machine['date']}: {cpu['model']}, {cpu['cores']} cores ({machine['torch_threads']} torch threads), "
        f"flags {' '.join(cpu['flags']) or 'none of ' + '/'.join(CPU_FLAGS)}; "
        f"--precision auto on CPU = {machine['auto_precision_cpu']}; {versions}; "
        f"load average {' '.join(map(str, machine['load_average_start']))} at start"
    )
    if machine.get("load_average_end"):
        line += f", {' '.join(map(str, machine['load_average_end']))} at end"
    if machine.get("cuda"):
        line += f"; GPU {machine['cuda']}"
    return line


@dataclass
class Row:
    """One line of the table. `ratio` > 1 means ours is better, whichever way the unit points."""

    entry: str
    name: str
    ours: float | None
    baseline: float | None
    unit: str
    higher_is_better: bool = False
    note: str = ""
    samples: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.ours or not self.baseline:
            return None
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def alternate(
    sides: dict[str, Callable[[], object]], repetitions: int, warmup: int = 1, log: bool = True
) -> dict[str, list[float]]:
    """Seconds of every call of each side, `repetitions` rounds after `warmup` untimed rounds.

    Round r runs the sides in the order rotated by r, so that no side always follows the same one (a
    side that leaves caches cold or memory fragmented would otherwise tax the same neighbour).
    """
    names = list(sides)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repetitions):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            sides[name]()
            elapsed = time.perf_counter() - start
            if round_index >= warmup:
                seconds[name].append(elapsed)
        if log and round_index >= warmup:
            done = "warm-up" if round_index < warmup else f"{round_index - warmup + 1}/{repetitions}"
            print(
                f"    round {done}: "
                + ", ".join(f"{name} {seconds[name][-1]:.3g}s" for name in names if round_index >= warmup),
                flush=True,
            )
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values)


def format_table(rows: list[Row]) -> str:
    """A Markdown table: entry, comparison, ours, baseline, unit, ratio (> 1: ours better), note."""
    lines = [
        "| entry | comparison | ours | baseline | unit | ratio | note |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        lines.append(
            f"| {row.entry} | {row.name} | {_number(row.ours)} | {_number(row.baseline)} | {row.unit} "
            f"| {ratio} | {row.note} |"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def write_json(path: Path, machine: dict, rows: list[Row], command: list[str], errors: dict) -> None:
    from led_hf.atomic import atomic_file

    with atomic_file(path) as handle:
        json.dump(
            {
                "machine": machine,
                "command": command,
                "rows": [row.to_dict() for row in rows],
                "errors": errors,
            },
            handle,
            indent=2,
        )
        handle.write("\n")
