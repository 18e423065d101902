"""report.png: each stage's nDCG@10 with its 95% bootstrap interval, baselines apart from trained stages, on an
axis fitted to the values (not zero-based: 0.650 and 0.683 must look different), and each training stage's
loss curve from its checkpoint's trainer_state.json (`log_history`)."""

from __future__ import annotations

import json
from pathlib import Path

from led_hf.atomic import atomic_file
from led_hf.pipeline.compare import interval

BASELINE_COLOUR, TRAINED_COLOUR = "#7f7f7f", "#4C72B0"


def loss_curve(record: dict) -> tuple[list[int], list[float]] | None:
    """(steps, losses) logged in MODEL/trainer_state.json, or None (no model folder, nothing logged)."""
    model = record.get("model")
    state = Path(model) / "trainer_state.json" if model else None
    if state is None or not state.is_file():
        return None
    try:
        history = json.loads(state.read_text(encoding="utf-8")).get("log_history", [])
    except (OSError, json.JSONDecodeError):
        return None
    points = [(entry["step"], entry["loss"]) for entry in history if "loss" in entry and "step" in entry]
    if not points:
        return None
    return [step for step, _ in points], [loss for _, loss in points]


def plot_report(folded: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = [entry for entry in folded if (entry.get("metrics") or {}).get("ndcg@10") is not None]
    # a baseline is a stage that is compared to nothing (BM25, zero-shot models); trained stages name a reference
    ordered = [e for e in scored if not e["compare_to"]] + [e for e in scored if e["compare_to"]]
    curves = [
        (record["name"], curve)
        for entry in folded
        for record in entry["records"]
        if (curve := loss_curve(record)) is not None
    ]
    panels = 2 if curves else 1
    fig, axes = plt.subplots(
        1, panels, figsize=(5.2 * panels + 1, max(3.0, 0.45 * len(ordered) + 1.4)), squeeze=False
    )
    ax = axes[0][0]
    lows, highs = [], []
    for position, entry in enumerate(ordered):
        value = entry["metrics"]["ndcg@10"]
        bounds = interval(entry) or (value, value)
        lows.append(bounds[0])
        highs.append(bounds[1])
        colour = TRAINED_COLOUR if entry["compare_to"] else BASELINE_COLOUR
        ax.errorbar(
            value,
            position,
            xerr=[[value - bounds[0]], [bounds[1] - value]],
            fmt="o",
            color=colour,
            capsize=3,
        )
        label = f"{value:.4f}"
        if len(entry["records"]) > 1:
            label += f" ± {entry['metrics_std']['ndcg@10']:.4f} ({len(entry['records'])} seeds)"
        ax.annotate(
            label, (value, position), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7
        )
    baselines = sum(1 for e in ordered if not e["compare_to"])
    if 0 < baselines < len(ordered):
        ax.axhline(baselines - 0.5, color="#cccccc", linewidth=1)
    ax.set_yticks(range(len(ordered)), [e["name"] for e in ordered], fontsize=8)
    ax.invert_yaxis()
    if ordered:
        span = max(highs) - min(lows) or 0.01
        ax.set_xlim(min(lows) - 0.08 * span, max(highs) + 0.08 * span)
    ax.set_xlabel("nDCG@10 (95% bootstrap interval over queries; grey: baselines)", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", color="#eeeeee")
    if curves:
        loss_ax = axes[0][1]
        for name, (steps, losses) in curves:
            loss_ax.plot(steps, losses, label=name, linewidth=1.2)
        loss_ax.set_xlabel("step", fontsize=8)
        loss_ax.set_ylabel("training loss", fontsize=8)
        loss_ax.set_title("training loss (trainer_state.json)", fontsize=9)
        loss_ax.legend(fontsize=7)
        loss_ax.grid(color="#eeeeee")
    fig.tight_layout()
    with atomic_file(path, mode="wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
