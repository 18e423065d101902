"""What the pipeline report says beyond the means: seed groups, intervals and paired tests between stages.

- A stage run over several `seeds` leaves one record per seed (`group` = the config's stage name);
  `entries` folds them into one entry: per metric the mean and sample std over seeds, and per query the
  mean over seeds (the values the entry is tested and bootstrapped with; led_hf/evaluation/seeds.py).
- `interval`: 95% percentile-bootstrap interval of an entry's mean over queries (seeded).
- `comparisons`: each entry against the stages its config names in `compare_to` (e.g. its init and BM25):
  mean difference, 95% interval, paired randomization and t-test p-values (led_hf.evaluation.significance),
  over the queries both were evaluated on.
"""

from __future__ import annotations

import numpy as np

from led_hf.errors import LedError
from led_hf.evaluation.seeds import mean_and_std, per_query_means
from led_hf.evaluation.significance import bootstrap_interval, compare_paired

SIGNIFICANCE_METRICS = ("ndcg@10", "mrr@10")


def entries(records: list[dict]) -> list[dict]:
    """One entry per stage (seed groups folded), in first-appearance order. Each entry: name, records,
    seeds, compare_to, metrics (means over seeds), metrics_std (0 for one run), per_query
    ({metric: {qid: value}}, mean over seeds; absent without an evaluation or from an older record)."""
    folded: dict[str, dict] = {}
    for record in records:
        name = record.get("group") or record["name"]
        entry = folded.setdefault(
            name, {"name": name, "records": [], "seeds": [], "compare_to": record.get("compare_to") or []}
        )
        entry["records"].append(record)
        if record.get("seed") is not None:
            entry["seeds"].append(record["seed"])
    for entry in folded.values():
        scored = [r for r in entry["records"] if r.get("metrics")]
        if not scored:
            continue
        names = [k for k, v in scored[0]["metrics"].items() if isinstance(v, float | int)]
        entry["metrics"] = {k: _mean([r["metrics"][k] for r in scored]) for k in names}
        entry["metrics_std"] = {k: mean_and_std([r["metrics"][k] for r in scored])[1] for k in names}
        if all(r.get("per_query") for r in scored):
            entry["per_query"] = per_query_means([r["per_query"] for r in scored])
    return list(folded.values())


def _mean(values: list) -> float | int:
    """The mean over seeds; counts (num_queries) that agree stay integers."""
    if all(isinstance(v, int) for v in values) and len(set(values)) == 1:
        return values[0]
    return float(np.mean(values))


def interval(entry: dict, metric: str = "ndcg@10", seed: int = 0) -> tuple[float, float] | None:
    """95% bootstrap interval (over queries) of the entry's mean `metric`; None without per-query values."""
    values = (entry.get("per_query") or {}).get(metric)
    if not values:
        return None
    return bootstrap_interval(np.array([values[q] for q in sorted(values)]), seed=seed)


def comparisons(
    folded: list[dict], metrics=SIGNIFICANCE_METRICS, n_resamples: int = 10000, seed: int = 0
) -> list[dict]:
    """[{stage, reference, metric, difference, ci_low, ci_high, p_randomization, p_t, ...}] for every
    entry and every name in its `compare_to`; a pair that cannot be tested carries a `note` instead."""
    by_name = {entry["name"]: entry for entry in folded}
    rows = []
    for entry in folded:
        for reference_name in entry["compare_to"]:
            reference = by_name.get(reference_name)
            base = {"stage": entry["name"], "reference": reference_name}
            if reference is None or not entry.get("per_query") or not reference.get("per_query"):
                rows.append({**base, "note": "no per-query values (stage not evaluated, or an older record)"})
                continue
            for metric in metrics:
                if metric not in entry["per_query"] or metric not in reference["per_query"]:
                    continue
                try:
                    result = compare_paired(
                        _by_query(entry["per_query"], metric),
                        _by_query(reference["per_query"], metric),
                        [metric],
                        n_resamples=n_resamples,
                        seed=seed,
                    )[metric]
                except LedError as err:
                    rows.append({**base, "metric": metric, "note": str(err)})
                    continue
                rows.append({**base, "metric": metric, **result})
    return rows


def _by_query(per_query: dict, metric: str) -> dict[str, dict[str, float]]:
    return {qid: {metric: value} for qid, value in per_query[metric].items()}
