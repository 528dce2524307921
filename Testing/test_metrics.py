"""TACEPredictLib.stats.metrics against lifelines and against closed forms."""

import numpy as np
import pytest

from TACEPredictLib.stats import metrics as M

lifelines = pytest.importorskip("lifelines")
from lifelines.datasets import load_rossi  # noqa: E402
from lifelines.statistics import multivariate_logrank_test  # noqa: E402
from lifelines.utils import concordance_index as lifelines_cindex  # noqa: E402


@pytest.fixture(scope="module")
def rossi():
    data = load_rossi()
    rng = np.random.default_rng(0)
    risk = np.round(data["prio"].to_numpy() + rng.normal(0, 1, len(data)))  # tied risks on purpose
    return data["week"].to_numpy(float), data["arrest"].to_numpy(int), risk, data


def test_concordance_equals_lifelines(rossi):
    time, event, risk, _ = rossi
    assert M.concordance_index(time, risk, event) == pytest.approx(lifelines_cindex(time, -risk, event), abs=1e-12)
    c, lower, upper = M.concordance_index_ci(time, risk, event, n_bootstrap=200)
    assert lower < c < upper
    assert M.concordance_index(time, -risk, event) == pytest.approx(1 - M.concordance_index(time, risk, event))


def test_paired_concordance_test(rossi):
    time, event, risk, _ = rossi
    same = M.compare_concordance(time, risk, risk, event, n_bootstrap=100)
    assert same["difference"] == 0 and same["p"] == 1.0
    reversed_risk = M.compare_concordance(time, risk, -risk, event, n_bootstrap=300)
    assert reversed_risk["difference"] > 0.15 and reversed_risk["p"] < 0.001 and reversed_risk["lower"] > 0


def test_kaplan_meier_and_logrank_equal_lifelines(rossi):
    time, event, _, data = rossi
    km = M.kaplan_meier(time, event)
    fitter = lifelines.KaplanMeierFitter().fit(time, event)
    expected = fitter.survival_function_.iloc[1:, 0].to_numpy()
    np.testing.assert_allclose(km["survival"], expected, atol=1e-12)
    np.testing.assert_allclose(km["lower"], fitter.confidence_interval_.iloc[1:, 0], atol=1e-9)
    groups = (data["race"] + 2 * data["mar"]).to_numpy()
    ours = M.logrank_test(time, event, groups)
    theirs = multivariate_logrank_test(time, groups, event)
    assert ours["statistic"] == pytest.approx(theirs.test_statistic, rel=1e-9)
    assert ours["p"] == pytest.approx(theirs.p_value, rel=1e-9) and ours["df"] == 3


def test_time_dependent_auc_without_censoring_is_the_roc_auc_of_the_status():
    rng = np.random.default_rng(2)
    time = rng.exponential(100, 300)
    risk = -np.log(time) + rng.normal(0, 1, 300)
    event = np.ones(300)
    auc = M.time_dependent_auc(time, event, risk, [50, 100])
    for t, value in zip([50, 100], auc):
        assert value == pytest.approx(M.roc_auc((time <= t).astype(int), risk), abs=1e-12)
    assert np.isnan(M.time_dependent_auc(time, event, risk, [time.max() + 1])[0])


def test_ipcw_auc_corrects_for_censoring():
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.normal(size=n)
    death = rng.exponential(100 / np.exp(x))
    censor = rng.uniform(0, 200, n)  # heavy censoring, independent of x (the IPCW assumption)
    full = M.time_dependent_auc(death, np.ones(n), x, [60])[0]
    time, event = np.minimum(death, censor), (death <= censor).astype(int)
    weighted = M.time_dependent_auc(time, event, x, [60])[0]
    # without weights, early deaths (more often observed) dominate the cases and bias the AUC
    cases, controls = (time <= 60) & (event == 1), time > 60
    naive = np.mean(x[cases][:, None] > x[controls][None, :])
    assert weighted == pytest.approx(full, abs=0.015)
    assert abs(naive - full) > 2 * abs(weighted - full)


def test_brier_and_integrated_brier_without_censoring():
    rng = np.random.default_rng(4)
    time = rng.exponential(100, 200)
    event = np.ones(200)
    surv = rng.uniform(size=(200, 3))
    times = np.array([20.0, 60.0, 120.0])
    for k, t in enumerate(times):
        assert M.brier_score(time, event, surv[:, k], t) == pytest.approx(np.mean(((time > t) - surv[:, k]) ** 2))
    ibs = M.integrated_brier_score(time, event, surv, times)
    scores = [np.mean(((time > t) - surv[:, k]) ** 2) for k, t in enumerate(times)]
    assert ibs == pytest.approx(np.trapezoid(scores, times) / 100.0)


def test_calibration_of_true_probabilities():
    rng = np.random.default_rng(5)
    n = 3000
    rate = np.exp(rng.normal(size=n)) / 100
    time = rng.exponential(1 / rate)
    truth = np.exp(-rate * 80)
    table, rmse = M.calibration_at(time, np.ones(n), truth, 80, groups=5)
    assert rmse < 0.03 and len(table) == 5 and table["n"].sum() == n
    _, rmse_bad = M.calibration_at(time, np.ones(n), np.clip(truth + 0.25, 0, 1), 80, groups=5)
    assert rmse_bad > 0.15


def test_roc_and_youden():
    label = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8])
    assert M.roc_auc(label, score) == pytest.approx(15 / 16)
    threshold, sensitivity, specificity = M.youden_cutoff(label, score)
    assert (threshold, sensitivity, specificity) == (0.6, 0.75, 1.0) or (threshold, sensitivity, specificity) == \
        (0.35, 1.0, 0.75)
    with pytest.raises(ValueError, match="single class"):
        M.roc_auc([1, 1], [0.2, 0.3])
    # a score that does not separate the classes (J <= 0 at every score): a finite cut-off, one of the scores,
    # never the ROC curve's +inf start, which a bundle cannot store
    threshold, sensitivity, specificity = M.youden_cutoff([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4])
    assert threshold == 0.1 and (sensitivity, specificity) == (1.0, 0.0)


def test_status_at_and_bad_input():
    status = M.status_at([10, 20, 30], [1, 0, 0], 15)
    assert status[0] == 1 and status[2] == 0 and np.isnan(M.status_at([10], [0], 15)[0])
    with pytest.raises(ValueError, match="non-negative"):
        M.concordance_index([-1, 2], [0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="event must be 0"):
        M.kaplan_meier([1, 2], [1, 2])
    with pytest.raises(ValueError, match="no comparable pairs"):
        M.concordance_index([1, 2], [0.1, 0.2], [0, 0])


def _brute_force_delong(label, scores):
    """DeLong's covariance from its definition: psi over every positive-negative pair (O(m n))."""
    label = np.asarray(label).astype(bool)
    v10, v01 = [], []
    for s in scores:
        x, y = s[label], s[~label]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        v10.append(psi.mean(1))
        v01.append(psi.mean(0))
    v10, v01 = np.array(v10), np.array(v01)
    return v10.mean(1), np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]


def test_delong_equals_its_definition_with_ties():
    rng = np.random.default_rng(7)
    label = rng.random(90) < 0.4
    a = np.round(label * 0.8 + rng.normal(0, 1, 90), 1)  # rounded: many ties
    b = np.round(label * 0.3 + 0.5 * a + rng.normal(0, 1, 90), 1)
    aucs, covariance = M.delong_covariance(label, a, b)
    expected_aucs, expected_cov = _brute_force_delong(label, [a, b])
    np.testing.assert_allclose(aucs, expected_aucs, atol=1e-12)
    np.testing.assert_allclose(covariance, expected_cov, atol=1e-12)
    assert aucs[0] == pytest.approx(M.roc_auc(label, a))
    test = M.delong_test(label, a, b)
    z = (expected_aucs[0] - expected_aucs[1]) / np.sqrt(expected_cov[0, 0] + expected_cov[1, 1] - 2 * expected_cov[0, 1])
    assert test["z"] == pytest.approx(z, rel=1e-12)
    assert M.delong_test(label, a, a)["p"] == 1.0


def test_auc_confidence_intervals():
    rng = np.random.default_rng(8)
    label = rng.random(200) < 0.3
    score = label + rng.normal(0, 1, 200)
    auc, lower, upper = M.roc_auc_ci(label, score)
    b_auc, b_lower, b_upper = M.roc_auc_ci(label, score, method="bootstrap", n_bootstrap=400)
    assert auc == pytest.approx(b_auc, abs=1e-12) and lower < auc < upper and b_lower < auc < b_upper
    assert abs((upper - lower) - (b_upper - b_lower)) < 0.05  # both about 2 x 1.96 x SE wide


def test_threshold_summary():
    out = M.threshold_summary([1, 1, 1, 0, 0, 0, 0], [0.9, 0.5, 0.2, 0.6, 0.1, 0.2, 0.27], 0.28)
    assert (out["tp"], out["fn"], out["fp"], out["tn"]) == (2, 1, 1, 3)
    assert out["sensitivity"] == pytest.approx(2 / 3) and out["specificity"] == pytest.approx(3 / 4)
    assert out["ppv"] == pytest.approx(2 / 3) and out["npv"] == pytest.approx(3 / 4)
    assert out["accuracy"] == pytest.approx(5 / 7)


def test_net_benefit_equals_dcurves():
    dcurves = pytest.importorskip("dcurves")
    import os
    import pandas as pd
    data = pd.read_csv(os.path.join(dcurves.data, "df_binary.csv"))
    thresholds = np.round(np.arange(0.01, 0.60, 0.01), 2)
    theirs = dcurves.dca(data=data, outcome="cancer", modelnames=["cancerpredmarker"], thresholds=thresholds)
    ours = M.net_benefit(data["cancer"].astype(int), data["cancerpredmarker"], thresholds)
    for column, model in (("model", "cancerpredmarker"), ("treat_all", "all"), ("treat_none", "none")):
        expected = theirs[theirs["model"] == model].sort_values("threshold")["net_benefit"].to_numpy()
        np.testing.assert_allclose(ours[column], expected, atol=1e-12)


def test_nri_and_idi_by_hand():
    label = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    old = np.array([0.2, 0.3, 0.5, 0.6, 0.1, 0.2, 0.3, 0.4, 0.35, 0.2])
    new = np.array([0.4, 0.25, 0.5, 0.7, 0.05, 0.3, 0.2, 0.3, 0.35, 0.1])
    continuous = M.nri(label, old, new)
    # events: up 2 (0.2->0.4, 0.6->0.7), down 1 -> +1/4; non-events: down 4, up 1 -> +3/6
    assert continuous["events"] == pytest.approx(0.25) and continuous["nonevents"] == pytest.approx(0.5)
    assert continuous["nri"] == pytest.approx(0.75)
    categorical = M.nri(label, old, new, cutoffs=[0.28])
    # events: 0.2->0.4 up, 0.3->0.25 down -> 0; non-events: 0.2->0.3 up, 0.3->0.2 down, 0.4->0.3 same -> 0
    assert categorical["nri"] == pytest.approx(0.0)
    result = M.idi(label, old, new)
    expected = (new - old)[label == 1].mean() - (new - old)[label == 0].mean()
    assert result["idi"] == pytest.approx(expected) and 0 < result["p"] <= 1


def test_binary_calibration():
    rng = np.random.default_rng(9)
    p = rng.uniform(0.05, 0.95, 5000)
    y = (rng.random(5000) < p).astype(int)
    table, brier = M.calibration_binary(y, p, groups=10)
    assert np.max(np.abs(table["predicted"] - table["observed"])) < 0.06 and table["n"].sum() == 5000
    assert brier == pytest.approx(np.mean((p - y) ** 2))


# pROC's own test expectations on its aSAH example (tests/testthat/test-var.R and test-roc.test.R of pROC):
# var(roc, method = "delong") and roc.test(r1, r2) (DeLong, paired, two-sided, 95% CI of the difference).
PROC_DELONG_VARIANCE = {"wfns": 0.00146991470882363, "ndka": 0.0031908105493913, "s100b": 0.00266868245717244}
PROC_ROC_TEST = [  # (a, b, Z, p, CI lower, CI upper)
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
]


def test_delong_variance_and_paired_test_equal_pROC_on_aSAH():
    import os

    import pandas as pd
    data = pd.read_csv(os.path.join(os.path.dirname(__file__), "data", "aSAH.csv"))
    poor = (data["outcome"] == "Poor").astype(int).to_numpy()
    for marker, expected in PROC_DELONG_VARIANCE.items():
        _, covariance = M.delong_covariance(poor, data[marker].to_numpy(dtype=float))
        assert covariance[0, 0] == pytest.approx(expected, abs=1e-12)
    for a, b, z, p, lower, upper in PROC_ROC_TEST:
        result = M.delong_test(poor, data[a].to_numpy(dtype=float), data[b].to_numpy(dtype=float))
        assert result["z"] == pytest.approx(z, abs=1e-9)
        assert result["p"] == pytest.approx(p, abs=1e-12)
        assert (result["lower"], result["upper"]) == pytest.approx((lower, upper), abs=1e-12)
