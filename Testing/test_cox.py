"""Cox models: coefficients equal R's survival::coxph on lifelines' copies of the standard datasets."""

import numpy as np
import pytest

from TACEPredictLib.stats.cox import (ConvergenceError, _breslow_loglik_grad, _RiskSets, cv_elastic_net_cox,
                                elastic_net_path, fit_cox, mrmr_rank, score_statistics, stepwise_aic,
                                survival_from_baseline, univariate_screen)

datasets = pytest.importorskip("lifelines.datasets")

from r_reference import LUNG_COEF, LUNG_SE, ROSSI_COEF, ROSSI_LOGLIK, ROSSI_SE  # noqa: E402


def test_rossi_equals_r_coxph():
    rossi = datasets.load_rossi()
    names = list(ROSSI_COEF)
    fit = fit_cox(rossi[names].to_numpy(), rossi["week"], rossi["arrest"], names)
    np.testing.assert_allclose(fit.coef, [ROSSI_COEF[n] for n in names], atol=1e-4)
    np.testing.assert_allclose(fit.se, [ROSSI_SE[n] for n in names], atol=1e-4)
    assert fit.loglik == pytest.approx(ROSSI_LOGLIK, abs=1e-3)
    table = fit.summary()
    assert table.loc[table["covariate"] == "prio", "p"].item() == pytest.approx(0.0014, abs=1e-4)


def test_lung_equals_r_coxph():
    lung = datasets.load_lung()[["time", "status", "age", "sex"]].dropna()
    fit = fit_cox(lung[["age", "sex"]].to_numpy(), lung["time"], lung["status"], ["age", "sex"])
    np.testing.assert_allclose(fit.coef, [LUNG_COEF["age"], LUNG_COEF["sex"]], atol=1e-4)
    np.testing.assert_allclose(fit.se, [LUNG_SE["age"], LUNG_SE["sex"]], atol=1e-4)


def test_baseline_gives_kaplan_meier_without_covariates():
    lung = datasets.load_lung()
    fit = fit_cox(np.zeros((len(lung), 0)), lung["time"], lung["status"], [])
    from TACEPredictLib.stats.metrics import kaplan_meier, survival_at
    km = kaplan_meier(lung["time"], lung["status"])
    s = survival_from_baseline([0.0], fit.baseline_time, fit.baseline_cumhaz, [365.0])[0, 0]
    # Breslow (Nelson-Aalen) survival is close to, and never below, Kaplan-Meier
    assert survival_at(km, 365.0) <= s < survival_at(km, 365.0) + 0.01


def test_score_statistic_is_the_logrank_test_for_a_binary_covariate():
    from TACEPredictLib.stats.metrics import logrank_test
    rossi = datasets.load_rossi()
    z = score_statistics(rossi[["fin", "prio"]].to_numpy(), rossi["week"], rossi["arrest"])
    logrank = logrank_test(rossi["week"], rossi["arrest"], rossi["fin"])
    assert z[0] ** 2 == pytest.approx(logrank["statistic"], rel=1e-9)
    assert z[0] < 0 < z[1]  # financial aid protects, prior convictions harm


def test_univariate_screen_and_stepwise_aic():
    rossi = datasets.load_rossi()
    names = list(ROSSI_COEF)
    X = rossi[names].to_numpy(dtype=float)
    screen = univariate_screen(X, rossi["week"], rossi["arrest"], names)
    assert list(screen["covariate"][:2]) == ["prio", "age"]
    assert screen["p"].is_monotonic_increasing
    fit, chosen, trace = stepwise_aic(X, rossi["week"], rossi["arrest"], names)
    assert trace["aic"].is_monotonic_decreasing
    # no single move from the result lowers the AIC any further
    for j in range(len(names)):
        columns = sorted(set(chosen) ^ {j})
        if columns:
            other = fit_cox(X[:, columns], rossi["week"], rossi["arrest"]).aic
            assert other >= fit.aic - 1e-9
    assert {"prio", "age", "fin"} <= set(fit.names)


def test_separation_is_reported_not_fitted():
    time = np.arange(1.0, 21.0)
    event = np.ones(20)
    x = (time < 10).astype(float)  # every early death has x = 1: the hazard ratio is infinite
    with pytest.raises(ConvergenceError, match="separates"):
        fit_cox(x, time, event)


def _simulated(n=240, p=25, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    lp = 0.8 * X[:, 0] - 0.6 * X[:, 1]
    death = rng.exponential(500 / np.exp(lp))
    censor = rng.uniform(100, 1500, n)
    return X, np.minimum(death, censor), (death <= censor).astype(int)


def test_elastic_net_solution_satisfies_the_optimality_conditions():
    X, time, event = _simulated()
    n = len(time)
    for l1_ratio in (0.5, 1.0):
        lambdas, coefs = elastic_net_path(X, time, event, l1_ratio, n_lambda=8)
        rs = _RiskSets(X, time, event)
        for lam, beta in zip(lambdas, coefs):
            _, grad = _breslow_loglik_grad(rs, beta)
            g = grad / n - lam * (1 - l1_ratio) * beta
            active = beta != 0
            np.testing.assert_allclose(g[active], lam * l1_ratio * np.sign(beta[active]), atol=2e-3)
            assert np.all(np.abs(g[~active]) <= lam * l1_ratio + 2e-3)
        assert np.all(coefs[0] == 0)  # lambda_max zeroes every coefficient
        assert np.count_nonzero(coefs[-1]) > 2


def test_cross_validated_lasso_finds_the_true_covariates():
    X, time, event = _simulated()
    fit = cv_elastic_net_cox(X, time, event, l1_ratios=(0.5, 1.0), seed=0)
    assert fit.coef[0] > 0.3 and fit.coef[1] < -0.2
    assert np.count_nonzero(fit.coef[2:]) <= 6
    assert set(fit.cv["l1_ratio"]) == {0.5, 1.0}
    assert fit.lam in set(fit.cv["lam"])


def test_mrmr_skips_a_redundant_copy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 100))
    X = np.column_stack([a, a + rng.normal(0, 0.01, 100), b])
    order = mrmr_rank(X, [3.0, 2.9, 2.0], 3)
    assert order == [0, 2, 1]
