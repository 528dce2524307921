"""IPCW statistics (time-dependent AUC, Brier, integrated Brier) against scikit-survival on tied data."""

import numpy as np
import pytest

from TACEPredictLib.stats import metrics as M

sksurv_metrics = pytest.importorskip("sksurv.metrics")
from sksurv.nonparametric import CensoringDistributionEstimator  # noqa: E402
from sksurv.util import Surv  # noqa: E402


def tied_cohort(n, seed):
    """Whole-month times (ties everywhere, deaths and censorings at the same times) and a tied risk score."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    death = rng.exponential(20 / np.exp(0.8 * x))
    censor = rng.uniform(2, 40, n)
    time = np.ceil(np.minimum(death, censor))
    event = (death <= censor).astype(int)
    risk = np.round(x + rng.normal(0, 0.5, n), 1)  # tied risks too
    return time, event, risk


def test_censoring_distribution_puts_deaths_before_censorings():
    # 5 at risk at time 2, one death and one censoring there: G(2) = 1 - 1/(5 - 1) = 0.75 (0.80 before the fix)
    time = np.array([1, 2, 2, 3, 4, 5.0])
    event = np.array([1, 1, 0, 1, 0, 1])
    times, g = M.censoring_survival(time, event)
    assert dict(zip(times, g))[2.0] == pytest.approx(0.75, abs=1e-15)
    theirs = CensoringDistributionEstimator().fit(Surv.from_arrays(event.astype(bool), time))
    np.testing.assert_allclose(g, theirs.predict_proba(times), atol=1e-15)


@pytest.mark.parametrize("separate_training", [False, True])
def test_time_dependent_auc_and_brier_equal_scikit_survival_with_ties(separate_training):
    time, event, risk = tied_cohort(300, seed=1)
    if separate_training:
        train_time, train_event, _ = tied_cohort(500, seed=2)
        train_time = np.minimum(train_time, time.max() + 5)  # sksurv needs the test times inside the training range
    else:
        train_time, train_event = time, event
    assert len(np.unique(time)) < 60 and np.intersect1d(time[event == 1], time[event == 0]).size > 10
    train = Surv.from_arrays(train_event.astype(bool), train_time)
    test = Surv.from_arrays(event.astype(bool), time)
    horizons = np.array([5.0, 10.0, 15.0, 20.0, 25.0])
    theirs, _ = sksurv_metrics.cumulative_dynamic_auc(train, test, risk, horizons)
    ours = M.time_dependent_auc(time, event, risk, horizons, train_time, train_event)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)

    rng = np.random.default_rng(3)
    surv = np.clip(np.exp(-np.exp(0.8 * risk)[:, None] * horizons[None, :] / 25) + rng.normal(0, 0.02, (300, 5)),
                   0, 1)
    _, brier_theirs = sksurv_metrics.brier_score(train, test, surv, horizons)
    brier_ours = [M.brier_score(time, event, surv[:, k], t, train_time, train_event) for k, t in enumerate(horizons)]
    np.testing.assert_allclose(brier_ours, brier_theirs, rtol=0, atol=1e-10)
    ibs_theirs = sksurv_metrics.integrated_brier_score(train, test, surv, horizons)
    assert M.integrated_brier_score(time, event, surv, horizons, train_time, train_event) == pytest.approx(
        ibs_theirs, abs=1e-10)
    if not separate_training:  # the default (censoring from the evaluated data) is the same
        np.testing.assert_allclose(M.time_dependent_auc(time, event, risk, horizons), theirs, rtol=0, atol=1e-10)
