"""Write a pipeline's report: `report.json` (per stage: name, model, metrics, wall time; seed groups and the
paired comparisons of led_hf/pipeline/compare.py), `report.md` and `report.png` (led_hf/pipeline/plot.py)."""

from __future__ import annotations

import json
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.evaluation.significance import beats, difference_phrase
from led_hf.pipeline.compare import comparisons, entries, interval
from led_hf.pipeline.plot import plot_report
from led_hf.trainers.card_metadata import CARD_METRICS

COLUMNS = ("ndcg@10", "mrr@10", "recall@50", "recall@1000", "trec_recall@1000")


def write_report(records: list[dict], output: Path, title: str = "led-hf pipeline") -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "report.json", "md": output / "report.md", "png": output / "report.png"}
    folded = entries(records)
    tests = comparisons(folded)
    summary = [
        {
            "name": entry["name"],
            "seeds": entry["seeds"],
            "metrics": entry.get("metrics"),
            "metrics_std": entry.get("metrics_std"),
            "ndcg@10_interval": interval(entry),
        }
        for entry in folded
    ]
    with atomic_file(paths["json"]) as handle:
        json.dump(
            {"title": title, "stages": records, "summary": summary, "comparisons": tests}, handle, indent=2
        )
    with atomic_file(paths["md"]) as handle:
        handle.write(render_markdown(records, title, folded, tests))
    plot_report(folded, paths["png"], title)
    return paths


def render_markdown(
    records: list[dict], title: str, folded: list[dict] | None = None, tests: list[dict] | None = None
) -> str:
    folded = entries(records) if folded is None else folded
    tests = comparisons(folded) if tests is None else tests
    lines = [
        f"# {title}",
        "",
        "| stage | " + " | ".join(COLUMNS) + " | queries | wall time (s) | model |",
        "|---|" + "---:|" * (len(COLUMNS) + 2) + "---|",
    ]
    for entry in folded:
        metrics, spread = entry.get("metrics") or {}, entry.get("metrics_std") or {}
        seeded = len(entry["records"]) > 1

        first = entry["records"][0]
        walls = [_wall(r) for r in entry["records"]]
        name = f"{entry['name']} (seeds {', '.join(map(str, entry['seeds']))})" if seeded else entry["name"]
        model = (first.get("model") or "") + _kept_mark(entry["records"])
        lines.append(
            f"| {name} | "
            + " | ".join(_cell(metrics, spread, c, seeded) for c in COLUMNS)
            + f" | {metrics.get('num_queries', '')} | {' / '.join(walls)} | {model} |"
        )
    if any(len(e["records"]) > 1 for e in folded):
        lines += ["", "Seeded stages: mean ± std over seeds (sample std)."]
    for record in records:
        if decided := record.get("guard"):
            lines += ["", guard_note(record["name"], decided)]
    if tests:
        lines += [
            "",
            "## Paired comparisons",
            "",
            "Stage minus reference over the same queries (seeded stages: per-query means over seeds); 95% t "
            "interval of the mean difference; p of a paired randomization (sign-flip, 10,000 samples) test and "
            "of a paired t-test; detectable: the smallest difference a paired t-test over these queries finds "
            "(p < 0.05) with 80% power, given the spread of their differences.",
            "",
            "| stage | vs | metric | stage | reference | difference | 95% interval | p (randomization) | p (t) "
            "| detectable |",
            "|---|---|---|---:|---:|---:|---|---:|---:|---:|",
        ]
        for row in tests:
            if "note" in row:
                lines.append(
                    f"| {row['stage']} | {row['reference']} | {row.get('metric', '')} | | | | {row['note']} | | | |"
                )
                continue
            lines.append(
                f"| {row['stage']} | {row['reference']} | {row['metric']} | {row['mean']:.4f} | "
                f"{row['baseline_mean']:.4f} | {row['difference']:+.4f} | "
                f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {_p(row['p_randomization'])} | {_p(row['p_t'])} | "
                f"{row['detectable']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def guard_note(name: str, decided: dict) -> str:
    """One sentence on a stage trained with `fallback_to_init`: which model it saved, the init's and the trained
    model's score on the evaluation split in the metric the guard compared (`fallback_metric`, nDCG@10 in
    records written before it was), and, where the trainer wrote them, how many queries decided and the paired
    randomization p of the difference (a p near 1 says the choice followed the split's noise)."""
    metric = decided.get("fallback_metric", "ndcg@10")
    label = CARD_METRICS[metric][1] if metric in CARD_METRICS else metric
    init, trained = decided.get(f"init_{metric}"), decided.get(f"trained_{metric}")
    margin = decided.get("fallback_min_gain") or 0
    scores = ", ".join(
        f"{which} {value:.4f}" for which, value in (("init", init), ("trained", trained)) if value is not None
    )
    if init is not None and trained is not None and "fallback_p_randomization" in decided:
        scores += ": " + difference_phrase(
            trained - init,
            decided["fallback_queries"],
            decided["fallback_p_randomization"],
            decided.get("fallback_detectable"),  # absent in records written before it was
        )
    scores = f" ({label} {scores})" if scores else ""
    if not decided.get("kept_init"):
        return f"{name}: training beat the init on the evaluation split{scores}; the trained model was saved."
    greater = bool(decided.get("fallback_greater_is_better", 1.0))
    if init is not None and trained is not None and beats(init, trained, greater):
        verdict = f"training {'lowered' if greater else 'raised'} {label} on the evaluation split"
    elif margin:
        verdict = f"training did not beat the init by more than {margin:g} on the evaluation split"
    else:
        verdict = "training did not beat the init on the evaluation split"
    return f"{name}: {verdict}{scores}; the init was kept (`fallback_to_init`), so the stage scores as its init does."


def _kept_mark(records: list[dict]) -> str:
    """ " (init kept)" after the model when its training kept the init (`fallback_to_init`), per seed count."""
    kept = sum(1 for record in records if record.get("guard", {}).get("kept_init"))
    if not kept:
        return ""
    return " (init kept)" if len(records) == 1 else f" (init kept in {kept} of {len(records)} seeds)"


def _p(value: float) -> str:
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _cell(metrics: dict, spread: dict, column: str, seeded: bool) -> str:
    if column not in metrics:
        return ""
    return f"{metrics[column]:.4f} ± {spread[column]:.4f}" if seeded else f"{metrics[column]:.4f}"


def _wall(record: dict) -> str:
    if record.get("cached"):  # led_hf.pipeline.cache: an earlier run's result
        return f"cached (computed in {record.get('computed_wall_time_s')})"
    return str(record.get("wall_time_s", ""))
