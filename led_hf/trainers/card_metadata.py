"""The Hub metadata of a model card (its YAML front matter), rendered by huggingface_hub's `ModelCardData`.

base_model     the Hub id the weights descend from, or nothing: a local folder or `bundled:` name is no
               Hub id (the Hub refuses the card). Lineage: a Hub id as given; a local checkpoint's own
               `led_config.json` "base_model" or its card's `base_model`; a bundled model's known origin.
license        `hub_license`, else the base's license when its lineage says it
datasets       `hub_datasets`, else what `led prepare` read: MS MARCO -> microsoft/ms_marco, a BEIR
               folder named like a BEIR dataset -> BeIR/<name>
pipeline_tag   dense: sentence-similarity; SPLADE: feature-extraction; cross-encoder: text-ranking
tags, library_name, and `model-index` with the latest retrieval evaluation (nDCG@10, MRR@10, recall)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from led_hf.modeling.checkpoint import read_led_config

# bundled:<name> -> (Hub id it was published under, license); None: origin unknown, left out
BUNDLED_ORIGINS: dict[str, tuple[str, str] | None] = {
    "bundled:all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "bundled:splade-tiny": None,
}
BEIR_DATASETS = {
    "arguana", "climate-fever", "cqadupstack", "dbpedia-entity", "fever", "fiqa", "hotpotqa", "msmarco",
    "nfcorpus", "nq", "quora", "scidocs", "scifact", "trec-covid", "webis-touche2020",
}  # fmt: skip
PIPELINE_TAGS = {
    "dense": "sentence-similarity",
    "splade": "feature-extraction",
    "cross-encoder": "text-ranking",
}
# metric key in the logs -> (model-index metric type, display name)
CARD_METRICS = {
    "ndcg@10": ("ndcg_at_10", "nDCG@10"),
    "mrr@10": ("mrr_at_10", "MRR@10"),
    "recall@50": ("recall_at_50", "Recall@50"),
    "recall@100": ("recall_at_100", "Recall@100"),
    "recall@1000": ("recall_at_1000", "Recall@1000"),
}


def is_hub_id(name) -> bool:
    """A string the Hub accepts as a model id (`namespace/name` or a legacy `name`), not a local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(name, str) or not name or name.startswith(("bundled:", ".", "/", "~")):
        return False
    if Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def base_model_lineage(name_or_path) -> tuple[str | None, str | None]:
    """(Hub id, license) the model at `name_or_path` descends from; None where unknown."""
    if not name_or_path:
        return None, None
    name = str(name_or_path)
    if name in BUNDLED_ORIGINS:
        return BUNDLED_ORIGINS[name] or (None, None)
    path = Path(name)
    if path.is_dir():
        card = card_front_matter(path)
        base = read_led_config(path).get("base_model") or card.get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        license_ = read_led_config(path).get("license") or card.get("license")
        return (base if is_hub_id(base) else None), (license_ if isinstance(license_, str) else None)
    return (name if is_hub_id(name) else None), None


def card_front_matter(folder) -> dict:
    """The YAML metadata of `folder/README.md` ({} without one)."""
    from huggingface_hub.repocard import metadata_load

    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return {}
    try:
        return metadata_load(readme) or {}
    except Exception:  # a hand-written card with bad YAML: no lineage, not an error
        return {}


def dataset_ids(data_folder) -> list[str]:
    """Hub dataset ids of a prepared data folder, from its `manifest.json` (see the module docstring)."""
    if not data_folder:
        return []
    manifest_path = Path(data_folder) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if manifest.get("format") == "msmarco":
        return ["microsoft/ms_marco"]
    source = Path(str(manifest.get("input") or "")).name.lower()
    return [f"BeIR/{source}"] if manifest.get("format") == "beir" and source in BEIR_DATASETS else []


def model_card_data(
    kind: str, *, model_args, data_args, args, state, model_name: str, eval_metrics: dict
) -> tuple:
    """(huggingface_hub.ModelCardData, base model id or None) for a model of `kind`."""
    from huggingface_hub import EvalResult, ModelCardData

    base_model, base_license = base_model_lineage(getattr(model_args, "model_name_or_path", None))
    datasets = list(getattr(args, "hub_datasets", None) or dataset_ids(getattr(data_args, "data", None)))
    tags = ["led-hf", f"{kind}-retrieval"]
    library = "transformers"
    if kind == "dense":
        tags += ["sentence-transformers", "feature-extraction", "dense-retrieval"]
        library = "sentence-transformers"
    elif kind == "splade":
        tags += ["sentence-transformers", "sparse-encoder", "splade"]
        library = "sentence-transformers"
    elif kind == "cross-encoder":
        tags += ["cross-encoder", "reranker"]
    eval_results = []
    split = getattr(data_args, "eval_split", None)
    if eval_metrics and split:
        data_name = Path(str(getattr(data_args, "data", "data"))).name
        for key, (metric_type, metric_name) in CARD_METRICS.items():
            if key in eval_metrics:
                eval_results.append(
                    EvalResult(
                        task_type="text-retrieval",
                        task_name="Retrieval",
                        dataset_type=datasets[0] if datasets else data_name,
                        dataset_name=f"{data_name} {split}",
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=metric_name,
                        metric_value=round(float(eval_metrics[key]), 6),
                    )
                )
    data = ModelCardData(
        base_model=base_model,
        license=getattr(args, "hub_license", None) or base_license,
        datasets=datasets or None,
        library_name=library,
        pipeline_tag=PIPELINE_TAGS.get(kind),
        tags=tags,
        model_name=model_name if eval_results else None,
        eval_results=eval_results or None,
    )
    return data, base_model


def card_model_name(args, output_dir) -> str:
    """The model's name in `model-index`: the Hub repo's name, else the output folder's."""
    hub_id = getattr(args, "hub_model_id", None)
    name = hub_id.split("/")[-1] if hub_id else Path(str(getattr(args, "output_dir", output_dir))).name
    return re.sub(r"\s+", "-", name) or "model"
