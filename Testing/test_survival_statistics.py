"""The survival statistics the papers report, against independent references: td-AUC bootstrap CIs and their
paired comparison (scikit-survival on the same resamples), survival decision curves (dcurves), PPV / NPV at a
horizon (closed forms and lifelines' Kaplan-Meier), risk-group hazard ratios (lifelines' Cox), and
Benjamini-Hochberg (statsmodels, R's p.adjust)."""

import os

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib.stats import metrics as M

lifelines = pytest.importorskip("lifelines")


def cohort(n, seed, censor_high=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    death = rng.exponential(20 / np.exp(0.8 * x))
    censor = rng.uniform(2, censor_high, n)
    time = np.ceil(np.minimum(death, censor))
    event = (death <= censor).astype(int)
    return time, event, np.round(x + rng.normal(0, 0.6, n), 1), np.round(x + rng.normal(0, 1.5, n), 1)


def test_time_dependent_auc_ci_is_the_percentile_interval_of_scikit_survival_on_the_same_resamples():
    sksurv_metrics = pytest.importorskip("sksurv.metrics")
    from sksurv.util import Surv
    time, event, risk, other = cohort(120, seed=1)
    train_time, train_event, _, _ = cohort(300, seed=2, censor_high=60)
    horizons = np.array([6.0, 12.0])
    n_bootstrap = 40
    table = M.time_dependent_auc_ci(time, event, risk, horizons, train_time, train_event, n_bootstrap=n_bootstrap,
                                    seed=5)
    train = Surv.from_arrays(train_event.astype(bool), train_time)
    expected = []
    for idx in np.random.default_rng(5).integers(0, len(time), size=(n_bootstrap, len(time))):
        test = Surv.from_arrays(event[idx].astype(bool), time[idx])
        expected.append(sksurv_metrics.cumulative_dynamic_auc(train, test, risk[idx], horizons)[0])
    expected = np.array(expected)
    np.testing.assert_allclose(table["lower"], np.quantile(expected, 0.025, axis=0), atol=1e-10)
    np.testing.assert_allclose(table["upper"], np.quantile(expected, 0.975, axis=0), atol=1e-10)
    np.testing.assert_allclose(table["auc"], M.time_dependent_auc(time, event, risk, horizons, train_time,
                                                                  train_event), atol=0)
    assert (table["lower"] < table["auc"]).all() and (table["auc"] < table["upper"]).all()

    # the paired comparison: same resamples for both scores
    paired = M.compare_time_dependent_auc(time, event, risk, other, horizons, train_time, train_event,
                                          n_bootstrap=n_bootstrap, seed=5)
    expected_other = np.array([sksurv_metrics.cumulative_dynamic_auc(
        train, Surv.from_arrays(event[idx].astype(bool), time[idx]), other[idx], horizons)[0]
        for idx in np.random.default_rng(5).integers(0, len(time), size=(n_bootstrap, len(time)))])
    diffs = expected - expected_other
    np.testing.assert_allclose(paired["lower"], np.quantile(diffs, 0.025, axis=0), atol=1e-10)
    from scipy.stats import norm
    np.testing.assert_allclose(paired["p"], 2 * norm.sf(np.abs(paired["difference"]) / diffs.std(0, ddof=1)),
                               rtol=1e-9)
    assert (paired["difference"] > 0).all()  # the less noisy score discriminates better


def test_td_auc_comparison_of_a_score_with_itself_and_its_reverse():
    time, event, risk, _ = cohort(150, seed=3)
    same = M.compare_time_dependent_auc(time, event, risk, risk, [8, 16], n_bootstrap=50)
    assert (same["difference"] == 0).all() and (same["p"] == 1).all()
    reverse = M.compare_time_dependent_auc(time, event, risk, -risk, [8, 16], n_bootstrap=100)
    assert (reverse["difference"] > 0.3).all() and (reverse["p"] < 1e-4).all() and (reverse["lower"] > 0).all()
    ci = M.time_dependent_auc_ci(time, event, risk, [8, 1000], n_bootstrap=30)
    assert np.isnan(ci.loc[1, "auc"]) and np.isnan(ci.loc[1, "lower"])  # no control after the follow-up


def test_survival_threshold_summary_without_censoring_is_the_binary_summary():
    rng = np.random.default_rng(4)
    time = rng.exponential(10, 200)
    risk = -np.log(time) + rng.normal(0, 1, 200)
    positive = risk > np.median(risk)
    ours = M.survival_threshold_summary(time, np.ones(200), positive, 8.0)
    plain = M.threshold_summary((time <= 8).astype(int), positive.astype(float), 0.5)
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        assert ours[key] == pytest.approx(plain[key], abs=1e-12), key


def test_survival_threshold_summary_with_censoring_by_hand():
    time, event, risk, _ = cohort(200, seed=6)
    positive = risk > 0.3
    t = 12.0
    km = lifelines.KaplanMeierFitter()
    s = float(km.fit(time, event).survival_function_at_times(t).iloc[0])
    s_pos = float(km.fit(time[positive], event[positive]).survival_function_at_times(t).iloc[0])
    s_neg = float(km.fit(time[~positive], event[~positive]).survival_function_at_times(t).iloc[0])
    share = positive.mean()
    ours = M.survival_threshold_summary(time, event, positive, t)
    assert ours["ppv"] == pytest.approx(1 - s_pos, abs=1e-12) and ours["npv"] == pytest.approx(s_neg, abs=1e-12)
    assert ours["sensitivity"] == pytest.approx((1 - s_pos) * share / (1 - s), abs=1e-12)
    assert ours["specificity"] == pytest.approx(1 - s_pos * share / s, abs=1e-12)
    assert ours["event_rate"] == pytest.approx(1 - s, abs=1e-12)
    assert np.isnan(M.survival_threshold_summary(time, event, positive, 1e4)["ppv"])


def test_survival_decision_curve_equals_dcurves():
    dcurves = pytest.importorskip("dcurves")
    data = pd.read_csv(os.path.join(dcurves.data, "df_surv.csv"))
    thresholds = np.array([0.02, 0.06, 0.1, 0.2, 0.3, 0.5, 0.7])  # dcurves fits lifelines per threshold: slow
    theirs = dcurves.dca(data=data, outcome="cancer", modelnames=["cancerpredmarker"], thresholds=thresholds,
                         time=1.5, time_to_outcome_col="ttcancer")
    ours = M.survival_net_benefit(data["ttcancer"], data["cancer"].astype(int), data["cancerpredmarker"], 1.5,
                                  thresholds)
    for column, model in (("model", "cancerpredmarker"), ("treat_all", "all"), ("treat_none", "none")):
        expected = theirs[theirs["model"] == model].sort_values("threshold")["net_benefit"].to_numpy(float)
        np.testing.assert_allclose(ours[column], expected, atol=1e-12)
    assert ours["model"].iloc[1] > ours["treat_all"].iloc[1] > 0  # the marker is worth using at 6 %


def test_risk_group_hazard_ratios_equal_lifelines_cox():
    from lifelines.datasets import load_rossi
    rossi = load_rossi()
    groups = np.select([rossi["prio"] >= 4, rossi["prio"] >= 2], ["high", "intermediate"], "low")
    ours = M.risk_group_hazard_ratios(rossi["week"], rossi["arrest"], groups).set_index("group")
    design = pd.DataFrame({"week": rossi["week"], "arrest": rossi["arrest"],
                           "high": (groups == "high").astype(float),
                           "intermediate": (groups == "intermediate").astype(float)})
    fitter = lifelines.CoxPHFitter().fit(design, "week", "arrest")  # Efron ties, as R's coxph
    for g in ("high", "intermediate"):
        assert ours.loc[g, "hazard_ratio"] == pytest.approx(fitter.hazard_ratios_[g], rel=1e-6)
        assert ours.loc[g, "lower"] == pytest.approx(np.exp(fitter.confidence_intervals_.loc[g].iloc[0]), rel=1e-5)
        assert ours.loc[g, "p"] == pytest.approx(fitter.summary.loc[g, "p"], rel=1e-5)
    assert ours.loc["low", "hazard_ratio"] == 1 and ours["n"].sum() == len(rossi)
    assert ours.loc["high", "events"] == rossi.loc[groups == "high", "arrest"].sum()
    from lifelines.statistics import multivariate_logrank_test
    assert ours["logrank_p"].iloc[0] == pytest.approx(
        multivariate_logrank_test(rossi["week"], groups, rossi["arrest"]).p_value, rel=1e-9)


def test_benjamini_hochberg_equals_statsmodels_and_r():
    from statsmodels.stats.multitest import multipletests
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "BH") is 0.05 five times; c(0.001, 0.04, 0.03, 0.2) gives
    # 0.004, 0.05333333, 0.05333333, 0.2
    np.testing.assert_allclose(M.benjamini_hochberg([0.01, 0.02, 0.03, 0.04, 0.05]), [0.05] * 5, atol=1e-15)
    np.testing.assert_allclose(M.benjamini_hochberg([0.001, 0.04, 0.03, 0.2]), [0.004, 0.16 / 3, 0.16 / 3, 0.2],
                               atol=1e-15)
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 40)])
    np.testing.assert_allclose(M.benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], atol=1e-15)
    with_nan = np.insert(p[:10], 3, np.nan)
    adjusted = M.benjamini_hochberg(with_nan)
    assert np.isnan(adjusted[3])
    np.testing.assert_allclose(np.delete(adjusted, 3), multipletests(p[:10], method="fdr_bh")[1], atol=1e-15)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        M.benjamini_hochberg([0.5, 1.5])


def test_univariate_cox_screen_reports_fdr_adjusted_p_values():
    from statsmodels.stats.multitest import multipletests
    from lifelines.datasets import load_rossi
    from TACEPredictLib.stats.cox import univariate_screen
    rossi = load_rossi()
    names = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    screen = univariate_screen(rossi[names].to_numpy(float), rossi["week"], rossi["arrest"], names)
    np.testing.assert_allclose(screen["p_fdr"], multipletests(screen["p"], method="fdr_bh")[1], atol=1e-15)
    assert list(screen["p"]) == sorted(screen["p"]) and (screen["p_fdr"] >= screen["p"]).all()


def test_kaplan_meier_figure_has_numbers_at_risk(tmp_path):
    pytest.importorskip("matplotlib")
    from TACEPredictLib.stats.reports import plot_kaplan_meier
    time, event, risk, _ = cohort(80, seed=9)
    groups = np.where(risk > 0, "high", "low")
    counts = plot_kaplan_meier(time * 365.25, event, groups, str(tmp_path / "km.png"), "t", "notice", p=0.5)
    assert os.path.getsize(tmp_path / "km.png") > 10000
    written = pd.read_csv(tmp_path / "km_at_risk.csv", index_col="group")
    assert list(written.index) == ["high", "low"] and written.shape[1] >= 3
    for tick in counts.columns:  # the risk set at each tick: followed for at least that long
        assert counts.loc["high", tick] == np.sum((groups == "high") & (time >= tick))
    assert counts.iloc[:, 0].sum() == 80
