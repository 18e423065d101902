"""Paired significance tests against scipy on constructed per-query values."""

import numpy as np
import pytest
from scipy import stats

from led_hf.errors import LedError
from led_hf.evaluation.significance import (
    bootstrap_interval,
    compare_paired,
    detectable_difference,
    paired_randomization_test,
    paired_t_test,
    t_interval,
)

# 12 queries: the run wins on most, loses on a few, ties on two
RUN = np.array([0.9, 0.7, 0.65, 1.0, 0.3, 0.55, 0.8, 0.0, 0.62, 0.71, 0.5, 0.33])
BASE = np.array([0.8, 0.7, 0.5, 0.9, 0.35, 0.4, 0.8, 0.1, 0.5, 0.6, 0.45, 0.2])


def _mean_statistic(x, y, axis):
    return np.mean(x - y, axis=axis)


def test_paired_t_test_matches_scipy():
    t, p = paired_t_test(RUN, BASE)
    expected = stats.ttest_rel(RUN, BASE)
    assert t == pytest.approx(expected.statistic, rel=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-10)
    assert 0 < p < 0.05


def test_exact_randomization_test_matches_scipy():
    # 2^12 = 4096 <= n_resamples: both enumerate every sign pattern, so the p-values agree exactly
    p = paired_randomization_test(RUN, BASE, n_resamples=5000)
    expected = stats.permutation_test(
        (RUN, BASE), _mean_statistic, permutation_type="samples", n_resamples=5000, vectorized=True
    )
    assert p == pytest.approx(expected.pvalue, abs=1e-12)
    # and by hand: the share of the 4096 sign patterns at least as extreme, times 2
    diff = RUN - BASE
    signs = 1 - 2 * ((np.arange(4096)[:, None] >> np.arange(12)[None, :]) & 1)
    null = (signs * diff).mean(axis=1)
    one_sided = np.mean(null >= diff.mean() - 1e-12)
    assert p == pytest.approx(min(1.0, 2 * one_sided))


def test_sampled_randomization_test_is_seeded_and_close_to_scipy():
    rng = np.random.default_rng(3)
    base = rng.uniform(size=80)
    run = np.clip(base + rng.normal(0.03, 0.1, size=80), 0, 1)
    p1 = paired_randomization_test(run, base, n_resamples=20000, seed=1)
    assert p1 == paired_randomization_test(run, base, n_resamples=20000, seed=1)
    expected = stats.permutation_test(
        (run, base),
        _mean_statistic,
        permutation_type="samples",
        n_resamples=20000,
        vectorized=True,
        random_state=0,
    )
    assert p1 == pytest.approx(expected.pvalue, abs=0.01)


def test_identical_systems_are_not_different():
    assert paired_t_test(RUN, RUN) == (0.0, 1.0)
    assert paired_randomization_test(RUN, RUN) == 1.0


def test_intervals():
    diff = RUN - BASE
    low, high = t_interval(diff)
    expected = stats.ttest_rel(RUN, BASE).confidence_interval(0.95)
    assert (low, high) == pytest.approx((expected.low, expected.high), rel=1e-10)
    boot_low, boot_high = bootstrap_interval(diff, seed=0)
    assert boot_low < diff.mean() < boot_high
    assert (boot_low, boot_high) == bootstrap_interval(diff, seed=0)
    # the percentile bootstrap interval is close to the t interval for a mean
    assert boot_low == pytest.approx(low, abs=0.03) and boot_high == pytest.approx(high, abs=0.03)


def test_compare_paired_per_metric():
    run = {f"q{i}": {"ndcg@10": float(v), "mrr@10": float(v) / 2} for i, v in enumerate(RUN)}
    base = {f"q{i}": {"ndcg@10": float(v), "mrr@10": float(v) / 2} for i, v in enumerate(BASE)}
    result = compare_paired(run, base, ["ndcg@10", "mrr@10"], n_resamples=5000)
    ndcg = result["ndcg@10"]
    assert ndcg["difference"] == pytest.approx((RUN - BASE).mean())
    assert ndcg["mean"] == pytest.approx(RUN.mean()) and ndcg["baseline_mean"] == pytest.approx(BASE.mean())
    assert ndcg["p_t"] == pytest.approx(stats.ttest_rel(RUN, BASE).pvalue)
    assert ndcg["num_queries"] == 12
    assert ndcg["detectable"] == pytest.approx(detectable_difference(RUN - BASE))
    assert result["mrr@10"]["difference"] == pytest.approx(ndcg["difference"] / 2)


def test_detectable_difference_matches_published_power_tables():
    # G*Power, paired / one-sample t-test, two-sided alpha 0.05, power 0.8, n = 10: effect size dz = 0.9960
    unit = np.array([-1.0, 1.0] * 5)
    unit /= unit.std(ddof=1)
    assert detectable_difference(unit) == pytest.approx(0.9960, abs=5e-4)
    # many queries: the normal approximation (z_0.975 + z_0.8) s / sqrt(n) = 2.8016 s / sqrt(n)
    wide = np.tile([-0.2, 0.2], 5000)
    expected = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * wide.std(ddof=1) / np.sqrt(len(wide))
    assert detectable_difference(wide) == pytest.approx(expected, rel=2e-3)


def test_a_true_difference_of_that_size_is_found_at_the_stated_power():
    # independent of the noncentral t: simulate 20,000 paired experiments of 30 queries whose differences
    # have the constructed spread and a true mean of the detectable difference; about 80% reach p < 0.05
    rng = np.random.default_rng(7)
    spread = 0.12
    observed = rng.normal(0.0, spread, size=30)
    delta = detectable_difference(observed)
    assert delta == pytest.approx(
        detectable_difference((observed - observed.mean()) * 2) / 2, rel=1e-9
    )  # only the spread counts, linearly
    simulated = rng.normal(delta, observed.std(ddof=1), size=(20000, 30))
    found = stats.ttest_1samp(simulated, 0.0, axis=1).pvalue < 0.05
    assert found.mean() == pytest.approx(0.8, abs=0.01)
    assert detectable_difference(observed, power=0.9) > delta > detectable_difference(observed, alpha=0.2)


def test_detectable_difference_edge_cases():
    assert detectable_difference([0.3, 0.3, 0.3]) == 0.0
    assert detectable_difference([0.0, 1.0]) > detectable_difference([0.0, 1.0, 0.0, 1.0])
    with pytest.raises(LedError, match="at least 2"):
        detectable_difference([0.1])
    with pytest.raises(LedError, match="alpha"):
        detectable_difference([0.1, 0.2], alpha=0.9, power=0.8)


def test_bad_input_is_named():
    with pytest.raises(LedError, match="same queries"):
        compare_paired({"q1": {"m": 1.0}, "q2": {"m": 0.0}}, {"q1": {"m": 1.0}}, ["m"])
    with pytest.raises(LedError, match="one length"):
        paired_t_test([1.0, 2.0], [1.0])


def _one_positive_data(tmp_path, n: int):
    """A prepared dataset of n queries, query i's one positive passage d{i}; returns (root, qids, pids)."""
    from datasets import Dataset

    root = tmp_path / "data"
    pids = [f"d{i}" for i in range(n)]
    Dataset.from_dict({"pid": pids, "title": [""] * n, "text": pids}).save_to_disk(str(root / "corpus"))
    qids = [f"q{i}" for i in range(n)]
    Dataset.from_dict({"qid": qids, "text": qids}).save_to_disk(str(root / "queries"))
    Dataset.from_dict({"qid": qids, "pid": pids, "score": [1] * n}).save_to_disk(str(root / "qrels" / "dev"))
    return root, qids, pids


def _write_run(path, qids, pids, ranks: list[int]) -> str:
    """A TREC run that puts query i's positive at ranks[i] among 6 passages (MRR@10 = 1 / rank)."""
    lines = []
    for i, qid in enumerate(qids):
        others = [p for p in pids if p != pids[i]]
        order = others[: ranks[i] - 1] + [pids[i]] + others[ranks[i] - 1 : 5]
        lines += [f"{qid} Q0 {pid} {r} {10 - r} {path.stem}" for r, pid in enumerate(order, 1)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_evaluate_cli_baseline_adds_paired_tests(tmp_path, capsys):
    import json

    from led_hf.cli.main import main
    from led_hf.evaluation.metrics import evaluate_per_query

    root, qids, pids = _one_positive_data(tmp_path, 12)
    # run A puts query i's positive at rank 1 for 9 queries; baseline B at rank 1 + i % 4
    run_a = _write_run(tmp_path / "a.trec", qids, pids, [1 if i < 9 else 3 for i in range(12)])
    run_b = _write_run(tmp_path / "b.trec", qids, pids, [1 + i % 4 for i in range(12)])
    capsys.readouterr()
    argv = ["evaluate", "--data", str(root), "--split", "dev", "--run", run_a, "--baseline", run_b]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    from led_hf.data.runs import read_run
    from led_hf.data.store import PreparedData

    qrels = PreparedData(root).qrels_dict("dev")
    a = evaluate_per_query(read_run(run_a), qrels)
    b = evaluate_per_query(read_run(run_b), qrels)
    va = np.array([a[q]["mrr@10"] for q in sorted(a)])
    vb = np.array([b[q]["mrr@10"] for q in sorted(b)])
    mrr = out["comparison"]["mrr@10"]
    assert out["mrr@10"] == pytest.approx(va.mean()) and out["baseline"]["mrr@10"] == pytest.approx(vb.mean())
    assert mrr["difference"] == pytest.approx(va.mean() - vb.mean())
    assert mrr["p_t"] == pytest.approx(stats.ttest_rel(va, vb).pvalue)
    exact = stats.permutation_test((va, vb), _mean_statistic, permutation_type="samples", vectorized=True)
    assert mrr["p_randomization"] == pytest.approx(exact.pvalue)  # 2^12 patterns < 10000: exact
    assert mrr["detectable"] == pytest.approx(detectable_difference(va - vb))
    assert set(out["comparison"]) >= {"ndcg@10", "recall@50", "trec_recall@1000"}


def test_evaluate_cli_reads_several_runs_of_a_system_as_one(tmp_path, capsys):
    """`--run A1 A2 A3 --baseline B1 B2`: each side's metrics are means over its runs with their sample std,
    and the paired tests compare per-query means over the runs (checked with numpy and scipy)."""
    import json

    from led_hf.cli.main import main

    root, qids, pids = _one_positive_data(tmp_path, 10)
    ranks_a = [[1, 1, 2, 1, 3, 1, 1, 2, 1, 4], [1, 2, 1, 1, 1, 1, 3, 1, 2, 1], [2, 1, 1, 1, 2, 1, 1, 1, 1, 3]]
    ranks_b = [[2, 1, 3, 1, 2, 4, 1, 2, 1, 2], [1, 3, 2, 2, 1, 2, 2, 1, 3, 1]]
    runs_a = [_write_run(tmp_path / f"a{s}.trec", qids, pids, ranks) for s, ranks in enumerate(ranks_a)]
    runs_b = [_write_run(tmp_path / f"b{s}.trec", qids, pids, ranks) for s, ranks in enumerate(ranks_b)]
    capsys.readouterr()
    argv = ["evaluate", "--data", str(root), "--split", "dev", "--run", *runs_a, "--baseline", *runs_b]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)

    rr_a = 1.0 / np.array(ranks_a, dtype=np.float64)  # [runs, queries]
    rr_b = 1.0 / np.array(ranks_b, dtype=np.float64)
    assert out["runs"] == 3 and out["baseline"]["runs"] == 2 and out["num_queries"] == 10
    assert [run["mrr@10"] for run in out["per_run"]] == pytest.approx(rr_a.mean(axis=1).tolist())
    assert out["mrr@10"] == pytest.approx(rr_a.mean())
    assert out["std"]["mrr@10"] == pytest.approx(rr_a.mean(axis=1).std(ddof=1))
    assert out["baseline"]["std"]["mrr@10"] == pytest.approx(rr_b.mean(axis=1).std(ddof=1))
    mrr = out["comparison"]["mrr@10"]
    per_query_a, per_query_b = rr_a.mean(axis=0), rr_b.mean(axis=0)
    assert mrr["difference"] == pytest.approx(per_query_a.mean() - per_query_b.mean())
    assert mrr["p_t"] == pytest.approx(stats.ttest_rel(per_query_a, per_query_b).pvalue)
    exact = stats.permutation_test(
        (per_query_a, per_query_b), _mean_statistic, permutation_type="samples", vectorized=True
    )
    assert mrr["p_randomization"] == pytest.approx(exact.pvalue)  # 2^10 patterns: exact
    # one run per side keeps the single-run object: no runs / std / per_run
    assert main(["evaluate", "--data", str(root), "--split", "dev", "--run", runs_a[0]]) == 0
    single = json.loads(capsys.readouterr().out)
    assert "runs" not in single and single["mrr@10"] == pytest.approx(rr_a[0].mean())


def test_seed_means_and_sample_std():
    from led_hf.evaluation.seeds import mean_and_std, per_query_means

    assert mean_and_std([0.6845, 0.6870, 0.6867]) == pytest.approx(
        (np.mean([0.6845, 0.6870, 0.6867]), np.std([0.6845, 0.6870, 0.6867], ddof=1))
    )
    assert mean_and_std([0.5]) == (0.5, 0.0)
    runs = [{"q1": {"m": 1.0}, "q2": {"m": 0.0}}, {"q1": {"m": 0.5}, "q2": {"m": 0.5}}]
    assert per_query_means(runs) == {"q1": {"m": 0.75}, "q2": {"m": 0.25}}
    with pytest.raises(LedError, match="run 2 is scored on other queries"):
        per_query_means([runs[0], {"q1": {"m": 1.0}}])
    with pytest.raises(LedError, match="non-empty"):
        mean_and_std([])
