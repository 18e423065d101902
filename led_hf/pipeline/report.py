"""Write a pipeline's report: `report.json` (per stage: name, model, metrics, wall time), `report.md`, `report.png`."""

from __future__ import annotations

import json
from pathlib import Path

from led_hf.atomic import atomic_file

COLUMNS = ("ndcg@10", "mrr@10", "recall@50", "recall@1000", "trec_recall@1000")


def write_report(records: list[dict], output: Path, title: str = "led-hf pipeline") -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "report.json", "md": output / "report.md", "png": output / "report.png"}
    with atomic_file(paths["json"]) as handle:
        json.dump({"title": title, "stages": records}, handle, indent=2)
    with atomic_file(paths["md"]) as handle:
        handle.write(render_markdown(records, title))
    _plot(records, paths["png"], title)
    return paths


def render_markdown(records: list[dict], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| stage | " + " | ".join(COLUMNS) + " | queries | wall time (s) | model |",
        "|---|" + "---:|" * (len(COLUMNS) + 2) + "---|",
    ]
    for record in records:
        metrics = record.get("metrics") or {}
        cells = [f"{metrics[c]:.4f}" if c in metrics else "" for c in COLUMNS]
        wall = record.get("wall_time_s", "")
        if record.get("cached"):  # led_hf.pipeline.cache: an earlier run's result
            wall = f"cached (computed in {record.get('computed_wall_time_s')})"
        lines.append(
            f"| {record['name']} | "
            + " | ".join(cells)
            + f" | {metrics.get('num_queries', '')} | {wall} | {record.get('model') or ''} |"
        )
    return "\n".join(lines) + "\n"


def _plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [r for r in records if r.get("metrics")]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(scored) + 1), 3.6))
    values = [r["metrics"]["ndcg@10"] for r in scored]
    bars = ax.bar([r["name"] for r in scored], values, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], fontsize=8)
    ax.set_ylabel("nDCG@10 (test)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, min(1.0, max(values, default=0.5) * 1.15 + 0.02))
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    with atomic_file(path, mode="wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
