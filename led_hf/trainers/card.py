"""The model card (`README.md`) written into every checkpoint and the final output folder.

It states what the folder holds and how it was made: base model, training data, loss, the model's
settings, the main hyper-parameters and the last logged metrics. It is assembled from an explicit
list of fields, so no token (or any other unlisted argument) can end up in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from led_hf.version import __version__

CARD_NAME = "README.md"
_TRAINING_FIELDS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "warmup_steps",
    "weight_decay",
    "lr_scheduler_type",
    "max_grad_norm",
    "bf16",
    "fp16",
    "seed",
    "in_batch_negatives",
    "gather_across_devices",
)
_DATA_FIELDS = (
    "data",
    "train_split",
    "negs_sources",
    "num_negs_per_system",
    "num_negatives",
    "dedupe_negatives",
    "query_max_length",
    "passage_max_length",
)


def write_model_card(
    output_dir, *, model, args, state, model_args=None, data_args=None, loss_description: str = ""
) -> Path:
    settings = model.led_config() if hasattr(model, "led_config") else {}
    kind = settings.get("kind", "retrieval")
    base_model = getattr(model_args, "model_name_or_path", None) or "unknown"
    world_size = getattr(args, "world_size", 1)
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size

    tags = ["led-hf", f"{kind}-retrieval"]
    library = "transformers"
    if kind == "dense":
        tags += ["sentence-transformers", "feature-extraction"]
        library = "sentence-transformers"
    front = ["---", f"library_name: {library}", "tags:", *[f"- {tag}" for tag in tags]]
    if base_model != "unknown":
        front.append(f"base_model: {json.dumps(base_model)}")
    front.append("---")

    lines = [
        *front,
        "",
        f"# {kind.capitalize()} retriever trained with led-hf {__version__}",
        "",
        f"- Base model: `{base_model}`",
    ]
    if data_args is not None:
        lines.append(
            "- Training data: "
            + ", ".join(
                f"{name}=`{_fmt(getattr(data_args, name))}`"
                for name in _DATA_FIELDS
                if hasattr(data_args, name)
            )
        )
    if loss_description:
        lines.append(f"- Loss: {loss_description}")
    if settings:
        lines.append("- Model: " + ", ".join(f"{key}=`{_fmt(value)}`" for key, value in settings.items()))
    lines.append(
        f"- Progress: step {state.global_step} of {state.max_steps}, epoch {_fmt(state.epoch or 0)}, "
        f"global batch {global_batch} queries ({world_size} process(es))"
    )

    lines += ["", "## Training arguments", "", "| argument | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(getattr(args, name))} |" for name in _TRAINING_FIELDS if hasattr(args, name)]

    metrics = _last_metrics(state.log_history)
    if metrics:
        lines += ["", "## Last logged metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in metrics.items()]

    if kind == "dense":
        lines += [
            "",
            "## Usage",
            "",
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            "model = SentenceTransformer(PATH)  # or led_hf.modeling.DenseEncoder.from_pretrained(PATH)",
            "embeddings = model.encode(['a query', 'a passage'])",
            "```",
        ]
    path = Path(output_dir) / CARD_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _last_metrics(log_history: list[dict]) -> dict:
    """The latest training log line (loss and its parts) and the latest evaluation line, merged."""
    merged: dict = {}
    for wanted in (lambda entry: "loss" in entry, lambda entry: any(k.startswith("eval_") for k in entry)):
        for entry in reversed(log_history):
            if wanted(entry):
                merged.update(
                    {k: v for k, v in entry.items() if isinstance(v, int | float) and k != "total_flos"}
                )
                break
    return merged


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(getattr(value, "value", value))
