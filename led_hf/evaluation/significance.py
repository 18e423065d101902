"""Paired significance tests over per-query metric values (docs/method.md §6, "Significance").

Two systems evaluated on the same queries give paired values a_i, b_i; the tests look at the
differences d_i = a_i - b_i (n queries):

- paired t-test: t = mean(d) / (std(d, ddof=1) / sqrt(n)), two-sided p from Student's t with n - 1
  degrees of freedom (as `scipy.stats.ttest_rel`);
- paired randomization (sign-flip) test: under H0 each d_i is as likely to be -d_i, so the null
  distribution of mean(d) is that of mean(s_i d_i) over random signs s_i in {-1, +1}. Exact over all
  2^n sign patterns when 2^n <= `n_resamples`, else `n_resamples` seeded draws with the +1 correction
  p = (count + 1) / (n_resamples + 1); two-sided p = min(1, 2 min(p_less, p_greater)) (as
  `scipy.stats.permutation_test(..., permutation_type="samples")`);
- 95% interval of mean(d): t interval mean(d) +- t_{0.975, n-1} std(d)/sqrt(n), and a percentile
  bootstrap over queries (seeded), which `mean_interval` also gives for a single system's mean;
- detectable difference: the smallest true mean difference delta that the paired t-test at level alpha
  (two-sided) finds with probability `power`, given these queries' spread s = std(d, ddof=1). With
  T ~ noncentral t(n - 1, lambda), lambda = delta sqrt(n) / s, power(delta) = P(|T| > t_{1-alpha/2, n-1});
  delta = lambda* s / sqrt(n) for the lambda* where power(delta) = `power` (about 2.8 s / sqrt(n) for
  alpha 0.05, power 0.8 and many queries). A split whose detectable difference exceeds the effect being
  studied cannot show it, however many seeds are run.

Everything is a pure function of arrays and a seed, so a report computed twice is identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import optimize, stats

from led_hf.errors import LedError

# scipy's permutation_test counts null statistics within this relative distance of the observed one as
# ties (floating-point sums of the same values in another order differ in the last bits)
_TIE_TOLERANCE = 1e-14


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise LedError(f"paired values need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise LedError(f"a paired test needs at least 2 queries, got {len(a)}")
    return a - b


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of the paired t-test of mean(a - b) = 0; p = 1.0 when every difference is 0."""
    diff = _differences(a, b)
    n = len(diff)
    spread = diff.std(ddof=1)
    if spread == 0.0:
        return (0.0, 1.0) if diff.mean() == 0.0 else (float(np.sign(diff.mean()) * np.inf), 0.0)
    t = diff.mean() / (spread / np.sqrt(n))
    return float(t), float(2.0 * stats.t.sf(abs(t), df=n - 1))


def paired_randomization_test(
    a: Sequence[float], b: Sequence[float], n_resamples: int = 10000, seed: int = 0
) -> float:
    """Two-sided p of the sign-flip randomization test of mean(a - b) = 0 (see the module docstring)."""
    if n_resamples < 1:
        raise LedError(f"n_resamples must be at least 1, got {n_resamples}")
    diff = _differences(a, b)
    n = len(diff)
    observed = diff.mean()
    if n < 63 and 2**n <= n_resamples:
        # every sign pattern once: bit j of pattern k is the sign of query j
        patterns = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)[None, :] & 1
        null = ((1 - 2 * patterns) * diff).mean(axis=1)
        total, correction = len(null), 0
    else:
        signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0]), size=(n_resamples, n))
        null = (signs * diff).mean(axis=1)
        total, correction = n_resamples, 1
    gamma = abs(_TIE_TOLERANCE * observed)
    p_less = (np.count_nonzero(null <= observed + gamma) + correction) / (total + correction)
    p_greater = (np.count_nonzero(null >= observed - gamma) + correction) / (total + correction)
    return float(min(1.0, 2.0 * min(p_less, p_greater)))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of `values` (e.g. paired differences)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        raise LedError(f"an interval needs at least 2 values, got {len(values)}")
    half = stats.t.ppf(0.5 + level / 2, df=len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def detectable_difference(values: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean difference the two-sided paired t-test at level `alpha` detects with probability `power`
    over len(values) queries whose paired differences spread as `values` do (see the module docstring);
    0.0 when every difference is the same."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        raise LedError(f"a detectable difference needs at least 2 values, got {len(values)}")
    if not (0 < alpha < 1 and alpha < power < 1):
        raise LedError(f"need 0 < alpha < power < 1, got alpha {alpha} and power {power}")
    spread = values.std(ddof=1)
    if spread == 0.0:
        return 0.0
    df = len(values) - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(noncentrality: float) -> float:
        dist = stats.nct(df, noncentrality)
        # the lower tail vanishes as the noncentrality grows (scipy returns nan there, not 0)
        return dist.sf(critical) + np.nan_to_num(dist.cdf(-critical)) - power

    # power is alpha at noncentrality 0 and rises towards 1: widen the bracket until it passes `power`
    high = critical + 4.0
    while shortfall(high) < 0:
        high *= 2
    noncentrality = optimize.brentq(shortfall, 0.0, high, xtol=1e-10)
    return float(noncentrality * spread / np.sqrt(len(values)))


def bootstrap_interval(
    values: Sequence[float], level: float = 0.95, n_resamples: int = 10000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`, resampling queries with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 1:
        raise LedError("an interval needs at least 1 value")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # chunks keep the index matrix small for large query sets
    for start in range(0, n_resamples, 1000):
        stop = min(start + 1000, n_resamples)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(
            axis=1
        )
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def compare_paired(
    run: Mapping[str, Mapping[str, float]],
    baseline: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    n_resamples: int = 10000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Paired comparison of two `evaluate_per_query` results ({qid: {metric: value}}) per metric.

    Both must cover the same queries (they do when computed against the same qrels). Returns
    {metric: {"mean", "baseline_mean", "difference", "ci_low", "ci_high", "bootstrap_low",
    "bootstrap_high", "t", "p_t", "p_randomization", "detectable", "num_queries"}}; ci_* is the t interval,
    detectable the difference these queries detect with 80% power at p < 0.05 (`detectable_difference`).
    """
    qids = sorted(run)
    if set(qids) != set(baseline):
        raise LedError(
            f"paired comparison needs the same queries: {len(set(qids) - set(baseline))} only in the run, "
            f"{len(set(baseline) - set(qids))} only in the baseline"
        )
    result = {}
    for metric in metrics:
        a = np.array([run[q][metric] for q in qids], dtype=np.float64)
        b = np.array([baseline[q][metric] for q in qids], dtype=np.float64)
        t, p_t = paired_t_test(a, b)
        diff = a - b
        low, high = t_interval(diff)
        boot_low, boot_high = bootstrap_interval(diff, n_resamples=n_resamples, seed=seed)
        result[metric] = {
            "mean": float(a.mean()),
            "baseline_mean": float(b.mean()),
            "difference": float(diff.mean()),
            "ci_low": low,
            "ci_high": high,
            "bootstrap_low": boot_low,
            "bootstrap_high": boot_high,
            "t": t,
            "p_t": p_t,
            "p_randomization": paired_randomization_test(a, b, n_resamples=n_resamples, seed=seed),
            "detectable": detectable_difference(diff),
            "num_queries": len(qids),
        }
    return result


def difference_phrase(
    difference: float, queries: float, p_randomization: float, detectable: float | None = None
) -> str:
    """A paired difference in words, as the guard's log line and the pipeline report give it:
    "+0.0050 over 30 queries, paired randomization p 0.85, detectable with 80% power: 0.0437"."""
    phrase = f"{difference:+.4f} over {queries:.0f} queries, paired randomization p {p_randomization:.2f}"
    return phrase if detectable is None else f"{phrase}, detectable with 80% power: {detectable:.4f}"


def beats(candidate: float, reference: float, greater_is_better: bool = True, margin: float = 0.0) -> bool:
    """Whether `candidate` is better than `reference` by more than `margin`: above it when greater is better
    (nDCG@10, MRR@10), below it when lower is (a loss). A tie never beats."""
    if greater_is_better:
        return candidate > reference + margin
    return candidate < reference - margin
