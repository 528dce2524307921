"""Evaluation statistics for researchers' own arrays (numpy in, numbers / pandas out).

Survival conventions: ``time`` is the follow-up time (any unit, the same for every argument), ``event`` is 1
for an observed event and 0 for censoring, and ``risk`` is higher for a worse prognosis (a Cox linear
predictor, a predicted probability of death). Functions that take a horizon ``t`` use the same unit as
``time``. Every function checks its inputs and raises ``ValueError`` naming the argument that is wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def _survival_arrays(time, event, *others):
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    if time.ndim != 1 or event.shape != time.shape:
        raise ValueError(f"time and event must be 1-D arrays of one length (got {time.shape} and {event.shape})")
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        raise ValueError("time must be finite and non-negative")
    if not np.all(np.isin(event, (0, 1))):
        raise ValueError("event must be 0 (censored) or 1 (event)")
    out = [time, event.astype(bool)]
    for name, values in others:
        values = np.asarray(values, dtype=float)
        if values.shape[0] != time.shape[0]:
            raise ValueError(f"{name} has {values.shape[0]} values for {time.shape[0]} times")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} has missing or infinite values")
        out.append(values)
    return out


# --- concordance -------------------------------------------------------------------------------------------

def _concordance_counts(time, event, risk, block=2048):
    """(concordant + 0.5 x tied-risk, comparable) pairs, Harrell's definition."""
    order = np.argsort(time, kind="stable")
    time, event, risk = time[order], event[order], risk[order]
    events = np.flatnonzero(event)
    concordant = 0.0
    comparable = 0.0
    for start in range(0, len(events), block):
        i = events[start:start + block]
        # j is comparable with event i when it outlived i (a censored j at i's time counts as outliving it)
        later = (time[None, :] > time[i, None]) | ((time[None, :] == time[i, None]) & ~event[None, :])
        diff = risk[i, None] - risk[None, :]
        concordant += np.sum(later & (diff > 0)) + 0.5 * np.sum(later & (diff == 0))
        comparable += np.sum(later)
    return concordant, comparable


def concordance_index(time, risk, event):
    """Harrell's C-index: the share of comparable pairs whose higher-risk member fails first.

    A pair is comparable when the earlier time is an event; a censored time equal to an event time counts as
    the longer one; tied risks count one half. Equals ``lifelines.utils.concordance_index(time, -risk, event)``.
    """
    time, event, risk = _survival_arrays(time, event, ("risk", risk))
    concordant, comparable = _concordance_counts(time, event, risk)
    if comparable == 0:
        raise ValueError("no comparable pairs: the C-index needs at least one event before another time")
    return concordant / comparable


def _bootstrap_indices(n, n_bootstrap, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_bootstrap, n))


def concordance_index_ci(time, risk, event, n_bootstrap=1000, seed=0, level=0.95):
    """C-index with a percentile bootstrap confidence interval: ``(c, lower, upper)``."""
    time, event, risk = _survival_arrays(time, event, ("risk", risk))
    c = concordance_index(time, risk, event)
    samples = []
    for idx in _bootstrap_indices(len(time), n_bootstrap, seed):
        concordant, comparable = _concordance_counts(time[idx], event[idx], risk[idx])
        if comparable:
            samples.append(concordant / comparable)
    lower, upper = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return c, float(lower), float(upper)


def compare_concordance(time, risk_a, risk_b, event, n_bootstrap=1000, seed=0, level=0.95):
    """Paired test of two models' C-indices on the same patients.

    Both C-indices are recomputed on the same bootstrap resamples; the difference's standard error is the SD of
    the resampled differences and ``p`` is the two-sided normal p-value of ``(c_a - c_b) / se``. Returns a dict
    with ``c_a``, ``c_b``, ``difference``, its percentile ``lower`` / ``upper`` bounds and ``p``.
    """
    time, event, risk_a, risk_b = _survival_arrays(time, event, ("risk_a", risk_a), ("risk_b", risk_b))
    c_a = concordance_index(time, risk_a, event)
    c_b = concordance_index(time, risk_b, event)
    diffs = []
    for idx in _bootstrap_indices(len(time), n_bootstrap, seed):
        a, comparable = _concordance_counts(time[idx], event[idx], risk_a[idx])
        b, _ = _concordance_counts(time[idx], event[idx], risk_b[idx])
        if comparable:
            diffs.append((a - b) / comparable)
    diffs = np.asarray(diffs)
    se = diffs.std(ddof=1)
    p = float(2 * stats.norm.sf(abs(c_a - c_b) / se)) if se > 0 else (1.0 if c_a == c_b else 0.0)
    lower, upper = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"c_a": c_a, "c_b": c_b, "difference": c_a - c_b, "lower": float(lower), "upper": float(upper),
            "p": p}


# --- Kaplan-Meier and log-rank ------------------------------------------------------------------------------

def kaplan_meier(time, event, level=0.95):
    """Kaplan-Meier estimate at every distinct time: a table with ``time``, ``at_risk``, ``events``,
    ``censored``, ``survival`` and the Greenwood log(-log) confidence bounds ``lower`` / ``upper``."""
    time, event = _survival_arrays(time, event)
    times, inverse = np.unique(time, return_inverse=True)
    events = np.bincount(inverse, weights=event, minlength=len(times))
    leaving = np.bincount(inverse, minlength=len(times)).astype(float)
    at_risk = len(time) - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
    survival = np.cumprod(1.0 - events / at_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        greenwood = np.cumsum(events / (at_risk * (at_risk - events)))
        z = stats.norm.ppf((1 + level) / 2)
        log_s = np.log(survival)
        se_loglog = np.sqrt(greenwood) / np.abs(log_s)
        lower = np.exp(-np.exp(np.log(-log_s) + z * se_loglog))
        upper = np.exp(-np.exp(np.log(-log_s) - z * se_loglog))
    lower = np.where(survival >= 1, 1.0, np.where(survival <= 0, 0.0, lower))
    upper = np.where(survival >= 1, 1.0, np.where(survival <= 0, 0.0, upper))
    return pd.DataFrame({"time": times, "at_risk": at_risk, "events": events, "censored": leaving - events,
                         "survival": survival, "lower": lower, "upper": upper})


def survival_at(km_table, t):
    """The Kaplan-Meier survival (a ``kaplan_meier`` table) at time(s) ``t``: a step function."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    idx = np.searchsorted(km_table["time"].to_numpy(), t, side="right") - 1
    values = np.where(idx >= 0, km_table["survival"].to_numpy()[np.maximum(idx, 0)], 1.0)
    return values if len(values) > 1 else float(values[0])


def logrank_test(time, event, group):
    """Log-rank test of equal survival across the groups in ``group`` (any labels, two or more groups).

    Returns a dict with ``statistic`` (chi-square), ``df`` and ``p``; equals
    ``lifelines.statistics.multivariate_logrank_test``.
    """
    time, event = _survival_arrays(time, event)
    group = np.asarray(group)
    if group.shape != time.shape:
        raise ValueError("group must have one label per time")
    labels = np.unique(group)
    if len(labels) < 2:
        raise ValueError("the log-rank test needs at least two groups")
    times = np.unique(time[event])
    observed = np.zeros(len(labels))
    expected = np.zeros(len(labels))
    covariance = np.zeros((len(labels), len(labels)))
    at_risk_all = (time[None, :] >= times[:, None])
    deaths_all = (time[None, :] == times[:, None]) & event[None, :]
    n = at_risk_all.sum(1).astype(float)
    d = deaths_all.sum(1).astype(float)
    for k, label in enumerate(labels):
        member = group == label
        observed[k] = deaths_all[:, member].sum()
    at_risk = np.stack([at_risk_all[:, group == label].sum(1) for label in labels], axis=1).astype(float)
    expected = (at_risk * (d / n)[:, None]).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n > 1, d * (n - d) / (n * n * (n - 1)), 0.0)
    for a in range(len(labels)):
        for b in range(len(labels)):
            covariance[a, b] = np.sum(factor * at_risk[:, a] * ((a == b) * n - at_risk[:, b]))
    diff = (observed - expected)[:-1]
    statistic = float(diff @ np.linalg.solve(covariance[:-1, :-1], diff))
    df = len(labels) - 1
    return {"statistic": statistic, "df": df, "p": float(stats.chi2.sf(statistic, df))}


# --- time-dependent discrimination and accuracy ---------------------------------------------------------

def censoring_survival(time, event):
    """Kaplan-Meier of the censoring distribution, G(t) = P(C > t), for inverse-probability-of-censoring
    weights: ``(times, G)`` at every distinct time, a right-continuous step function.

    At a time with both deaths and censorings the deaths come first: the patients who die at u leave the risk
    set before those censored at u, so G's factor at u is 1 - c(u) / (n(u) - d(u)). This is scikit-survival's
    ``CensoringDistributionEstimator`` (``kaplan_meier_estimator(..., reverse=True)``) and R's ``prodlim(...,
    reverse = TRUE)`` convention. (Up to 0.1.0 TACEPredict kept the deaths in the censoring risk set, 1 - c(u) /
    n(u): with 5 at risk, 1 death and 1 censoring, 0.80 where this gives 0.75.)
    """
    time, event = _survival_arrays(time, event)
    times, inverse = np.unique(time, return_inverse=True)
    deaths = np.bincount(inverse, weights=event, minlength=len(times))
    leaving = np.bincount(inverse, minlength=len(times)).astype(float)
    censored = leaving - deaths
    at_risk = len(time) - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])
    still = at_risk - deaths  # at risk of censoring once the deaths at u are out
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(still > 0, 1.0 - censored / still, 1.0)
    return times, np.cumprod(factor)


def _g_at(censoring, t):
    """G(t) of a ``censoring_survival`` pair at time(s) t: the step function including its jump at t (1 before
    the first time, the last value after the last time), as scikit-survival's ``predict_proba`` reads it."""
    times, g = censoring
    idx = np.searchsorted(times, np.asarray(t, dtype=float), side="right") - 1
    return np.where(idx >= 0, g[np.maximum(idx, 0)], 1.0)


def _ipcw_censoring(time, event, train_time, train_event):
    """The censoring distribution for IPCW: from the training cohort when given, else from the evaluated one."""
    if train_time is None:
        return censoring_survival(time, event)
    return censoring_survival(train_time, train_event)


def time_dependent_auc(time, event, risk, horizons, train_time=None, train_event=None):
    """Cumulative / dynamic AUC at each horizon (Uno et al. 2007, inverse-probability-of-censoring weights).

    Cases are patients with an event by ``t`` (weight 1 / G(T_i)), controls those still at risk after ``t``;
    tied risks count one half. The censoring distribution G (``censoring_survival``: deaths before censorings
    at tied times) comes from ``train_time`` / ``train_event`` when given, else from the evaluated data.
    Equals ``sksurv.metrics.cumulative_dynamic_auc`` (asserted to 1e-10 on data with tied times). Returns an
    array, one AUC per horizon (NaN where a horizon has no case or no control).
    """
    time, event, risk = _survival_arrays(time, event, ("risk", risk))
    if train_time is not None:
        train_time, train_event = _survival_arrays(train_time, train_event)
    censoring = _ipcw_censoring(time, event, train_time, train_event)
    return _td_auc(time, event, risk, _case_weights(censoring, time, event), horizons)


def _case_weights(censoring, time, event):
    """1 / G(T_i) for the events (0 where G is 0), 0 for the censored."""
    weights = np.zeros_like(time)
    with np.errstate(divide="ignore"):
        g = _g_at(censoring, time)
        weights[event] = np.where(g[event] > 0, 1.0 / g[event], 0.0)
    return weights


def _td_auc(time, event, risk, weights, horizons):
    result = []
    for t in np.atleast_1d(horizons):
        cases = (time <= t) & event
        controls = time > t
        if not cases.any() or not controls.any() or not np.sum(weights[cases]) > 0:
            result.append(np.nan)
            continue
        diff = risk[cases][:, None] - risk[controls][None, :]
        score = ((diff > 0) + 0.5 * (diff == 0)).sum(1)
        result.append(float(np.sum(weights[cases] * score) / (np.sum(weights[cases]) * controls.sum())))
    return np.asarray(result)


def _td_auc_resamples(time, event, risks, horizons, train_time, train_event, n_bootstrap, seed):
    """Time-dependent AUCs of one or more risk scores on the same bootstrap resamples of the patients:
    an array (resamples, scores, horizons). With a training cohort its censoring distribution stays fixed
    (the weights follow their patients); without, G is re-estimated on every resample."""
    weights = None
    if train_time is not None:
        weights = _case_weights(censoring_survival(train_time, train_event), time, event)
    out = np.full((n_bootstrap, len(risks), len(np.atleast_1d(horizons))), np.nan)
    for b, idx in enumerate(_bootstrap_indices(len(time), n_bootstrap, seed)):
        t, e = time[idx], event[idx]
        w = weights[idx] if weights is not None else _case_weights(censoring_survival(t, e), t, e)
        for k, risk in enumerate(risks):
            out[b, k] = _td_auc(t, e, risk[idx], w, horizons)
    return out


def time_dependent_auc_ci(time, event, risk, horizons, train_time=None, train_event=None, n_bootstrap=1000,
                          seed=0, level=0.95):
    """Time-dependent AUC (``time_dependent_auc``) at each horizon with a percentile bootstrap confidence
    interval: a table with ``horizon``, ``auc``, ``lower``, ``upper`` and ``resamples`` (those with both cases
    and controls at the horizon). Paper 001 reports its TD AUCs so (Table 3)."""
    time, event, risk = _survival_arrays(time, event, ("risk", risk))
    if train_time is not None:
        train_time, train_event = _survival_arrays(train_time, train_event)
    horizons = np.atleast_1d(np.asarray(horizons, dtype=float))
    auc = time_dependent_auc(time, event, risk, horizons, train_time, train_event)
    samples = _td_auc_resamples(time, event, [risk], horizons, train_time, train_event, n_bootstrap, seed)[:, 0]
    rows = []
    for k, t in enumerate(horizons):
        column = samples[:, k][np.isfinite(samples[:, k])]
        lower, upper = (np.quantile(column, [(1 - level) / 2, (1 + level) / 2]) if len(column) and
                        np.isfinite(auc[k]) else (np.nan, np.nan))
        rows.append({"horizon": t, "auc": auc[k], "lower": float(lower), "upper": float(upper),
                     "resamples": int(len(column))})
    return pd.DataFrame(rows)


def compare_time_dependent_auc(time, event, risk_a, risk_b, horizons, train_time=None, train_event=None,
                               n_bootstrap=1000, seed=0, level=0.95):
    """Paired bootstrap test of two risk scores' time-dependent AUCs on the same patients, at each horizon.

    Both AUCs are recomputed on the same resamples (as ``compare_concordance`` does for the C-index); the
    difference's SE is the SD of the resampled differences and ``p`` the two-sided normal p-value of
    ``(auc_a - auc_b) / se``. A table with ``horizon``, ``auc_a``, ``auc_b``, ``difference``, its percentile
    ``lower`` / ``upper`` and ``p``.
    """
    time, event, risk_a, risk_b = _survival_arrays(time, event, ("risk_a", risk_a), ("risk_b", risk_b))
    if train_time is not None:
        train_time, train_event = _survival_arrays(train_time, train_event)
    horizons = np.atleast_1d(np.asarray(horizons, dtype=float))
    auc_a = time_dependent_auc(time, event, risk_a, horizons, train_time, train_event)
    auc_b = time_dependent_auc(time, event, risk_b, horizons, train_time, train_event)
    samples = _td_auc_resamples(time, event, [risk_a, risk_b], horizons, train_time, train_event, n_bootstrap,
                                seed)
    rows = []
    for k, t in enumerate(horizons):
        diffs = samples[:, 0, k] - samples[:, 1, k]
        diffs = diffs[np.isfinite(diffs)]
        difference = auc_a[k] - auc_b[k]
        if not np.isfinite(difference) or len(diffs) < 2:
            rows.append({"horizon": t, "auc_a": auc_a[k], "auc_b": auc_b[k], "difference": difference,
                         "lower": np.nan, "upper": np.nan, "p": np.nan})
            continue
        se = diffs.std(ddof=1)
        p = float(2 * stats.norm.sf(abs(difference) / se)) if se > 0 else (1.0 if difference == 0 else 0.0)
        lower, upper = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
        rows.append({"horizon": t, "auc_a": auc_a[k], "auc_b": auc_b[k], "difference": float(difference),
                     "lower": float(lower), "upper": float(upper), "p": p})
    return pd.DataFrame(rows)


def brier_score(time, event, survival_prob, t, train_time=None, train_event=None):
    """Graf et al.'s IPCW Brier score at horizon ``t`` for predicted survival probabilities S(t | x).

    Deaths by ``t`` are weighted 1 / G(T_i), patients alive after ``t`` 1 / G(t), those censored before ``t``
    0; G as in ``time_dependent_auc``. Equals ``sksurv.metrics.brier_score`` (asserted to 1e-10 with ties).
    """
    time, event, survival_prob = _survival_arrays(time, event, ("survival_prob", survival_prob))
    if train_time is not None:
        train_time, train_event = _survival_arrays(train_time, train_event)
    censoring = _ipcw_censoring(time, event, train_time, train_event)
    died = (time <= t) & event
    alive = time > t
    g_died = _g_at(censoring, time)
    g_t = float(_g_at(censoring, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(died, survival_prob ** 2 / g_died, 0.0) + np.where(alive, (1 - survival_prob) ** 2 / g_t, 0.0)
    terms = np.where(np.isfinite(terms), terms, 0.0)
    return float(np.mean(terms))


def integrated_brier_score(time, event, survival_matrix, times, train_time=None, train_event=None):
    """Integral of the Brier score over ``times`` (trapezoid rule) divided by the time span.

    ``survival_matrix`` has one row per patient and one column per time in ``times`` (increasing). Equals
    ``sksurv.metrics.integrated_brier_score`` (asserted to 1e-10 with ties).
    """
    times = np.asarray(times, dtype=float)
    survival_matrix = np.asarray(survival_matrix, dtype=float)
    if survival_matrix.shape != (len(np.asarray(time)), len(times)) or len(times) < 2:
        raise ValueError("survival_matrix must be patients x times, with at least two increasing times")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times must increase")
    scores = [brier_score(time, event, survival_matrix[:, k], t, train_time, train_event)
              for k, t in enumerate(times)]
    return float(np.trapezoid(scores, times) / (times[-1] - times[0]))


def calibration_at(time, event, survival_prob, t, groups=5, level=0.95):
    """Calibration of predicted survival at horizon ``t``: patients are cut into ``groups`` quantile groups of
    predicted survival; each group's mean prediction is set against its Kaplan-Meier survival at ``t``.

    Returns ``(table, rmse)``: table columns ``group``, ``n``, ``predicted``, ``observed``, ``lower``,
    ``upper``; rmse is the root mean squared difference between predicted and observed over the groups.
    """
    time, event, survival_prob = _survival_arrays(time, event, ("survival_prob", survival_prob))
    groups = max(1, min(groups, len(time) // 5))
    ranks = pd.qcut(pd.Series(survival_prob).rank(method="first"), groups, labels=False).to_numpy()
    rows = []
    for g in range(groups):
        member = ranks == g
        km = kaplan_meier(time[member], event[member], level)
        idx = np.searchsorted(km["time"].to_numpy(), t, side="right") - 1
        if idx >= 0:
            observed, lower, upper = km.loc[idx, ["survival", "lower", "upper"]]
        else:
            observed = lower = upper = 1.0
        rows.append({"group": g + 1, "n": int(member.sum()), "predicted": float(survival_prob[member].mean()),
                     "observed": float(observed), "lower": float(lower), "upper": float(upper)})
    table = pd.DataFrame(rows)
    rmse = float(np.sqrt(np.mean((table["predicted"] - table["observed"]) ** 2)))
    return table, rmse


def _km_at(time, event, t):
    """Kaplan-Meier survival at t (inclusive), NaN when the follow-up ends before t."""
    if len(time) == 0 or np.max(time) < t:
        return np.nan
    return float(survival_at(kaplan_meier(time, event), t))


def survival_threshold_summary(time, event, positive, t):
    """Sensitivity, specificity, PPV, NPV and accuracy at horizon ``t`` of calling ``positive`` (e.g. the
    high-risk group) against death by ``t``, censoring handled with Kaplan-Meier estimates (Heagerty et al.
    2000, survivalROC's ``method = "KM"``): with S the cohort's KM survival at t, S+ / S- that of the positive /
    negative calls and P+ their share, PPV = 1 - S+, NPV = S-, sensitivity = (1 - S+) P+ / (1 - S),
    specificity = 1 - S+ P+ / S, accuracy = sensitivity (1 - S) + specificity S. Without censoring before t
    these are the plain proportions of ``threshold_summary`` on the status at t. Paper 001 reports them at
    the Youden cut-off (Table 3). NaN where a group's follow-up ends before t."""
    time, event, positive = _survival_arrays(time, event, ("positive", positive))
    positive = positive.astype(bool)
    s_all = _km_at(time, event, t)
    s_pos = _km_at(time[positive], event[positive], t) if positive.any() else np.nan
    s_neg = _km_at(time[~positive], event[~positive], t) if (~positive).any() else np.nan
    share = positive.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        sensitivity = (1 - s_pos) * share / (1 - s_all) if positive.any() else 0.0
        specificity = 1 - s_pos * share / s_all if positive.any() else 1.0
    accuracy = sensitivity * (1 - s_all) + specificity * s_all
    return {"horizon": float(t), "n_positive": int(positive.sum()), "n_negative": int((~positive).sum()),
            "event_rate": 1 - s_all, "sensitivity": float(sensitivity), "specificity": float(specificity),
            "ppv": 1 - s_pos, "npv": s_neg, "accuracy": float(accuracy)}


def survival_net_benefit(time, event, risk_at_t, t, thresholds):
    """Decision curve of a survival model at horizon ``t`` (Vickers et al. 2008, the survival extension of
    decision-curve analysis): treating the patients whose predicted risk of the event by t (1 - S(t | x))
    reaches the threshold p_t has net benefit (1 - S+(t)) P+ - S+(t) P+ p_t / (1 - p_t), where P+ is the
    share treated and S+ their Kaplan-Meier survival at t; treating everyone, (1 - S(t)) - S(t) p_t / (1 -
    p_t). Equals ``dcurves.dca(..., time=t, time_to_outcome_col=...)``. NaN where the follow-up of the treated
    ends before t. Returns a table with ``threshold``, ``model``, ``treat_all`` and ``treat_none``."""
    time, event, risk_at_t = _survival_arrays(time, event, ("risk_at_t", risk_at_t))
    if np.any((risk_at_t < 0) | (risk_at_t > 1)):
        raise ValueError("risk_at_t must be probabilities of the event by t, in [0, 1]")
    thresholds = np.asarray(thresholds, dtype=float)
    if np.any((thresholds <= 0) | (thresholds >= 1)):
        raise ValueError("thresholds must lie strictly between 0 and 1")
    odds = thresholds / (1 - thresholds)
    s_all = _km_at(time, event, t)
    model = []
    for threshold, o in zip(thresholds, odds):
        treated = risk_at_t >= threshold
        if not treated.any():
            model.append(0.0)
            continue
        s_pos = _km_at(time[treated], event[treated], t)
        share = treated.mean()
        model.append((1 - s_pos) * share - s_pos * share * o)
    return pd.DataFrame({"threshold": thresholds, "model": model, "treat_all": (1 - s_all) - s_all * odds,
                         "treat_none": 0.0})


def risk_group_hazard_ratios(time, event, groups, reference=None, level=0.95):
    """Hazard ratios of risk groups against a reference group (default ``low`` when present, else the first
    label): one Cox model on the group indicators (Efron ties, ``stats.cox.fit_cox``, equal to R's coxph).
    A table with ``group``, ``n``, ``events``, ``hazard_ratio``, ``lower``, ``upper`` and Wald ``p`` (the
    reference row has HR 1), and the log-rank p of the groups in ``logrank_p``."""
    from .cox import ConvergenceError, fit_cox
    time, event = _survival_arrays(time, event)
    groups = np.asarray(groups).astype(str)
    labels = sorted(np.unique(groups))
    if len(labels) < 2:
        raise ValueError("hazard ratios of risk groups need at least two groups")
    reference = str(reference) if reference is not None else ("low" if "low" in labels else labels[0])
    if reference not in labels:
        raise ValueError(f"reference group '{reference}' is not among the groups {labels}")
    others = [g for g in labels if g != reference]
    X = np.column_stack([(groups == g).astype(float) for g in others])
    try:
        summary = fit_cox(X, time, event, others).summary(level).set_index("covariate")
    except ConvergenceError:  # a group without events: its HR is 0 or infinite
        summary = pd.DataFrame(np.nan, index=others, columns=["hazard_ratio", "hr_lower", "hr_upper", "p"])
    logrank = logrank_test(time, event, groups)["p"]
    rows = [{"group": reference, "n": int((groups == reference).sum()),
             "events": int(event[groups == reference].sum()), "hazard_ratio": 1.0, "lower": np.nan,
             "upper": np.nan, "p": np.nan, "logrank_p": logrank}]
    for g in others:
        member = groups == g
        rows.append({"group": g, "n": int(member.sum()), "events": int(event[member].sum()),
                     "hazard_ratio": float(summary.loc[g, "hazard_ratio"]), "lower": float(summary.loc[g, "hr_lower"]),
                     "upper": float(summary.loc[g, "hr_upper"]), "p": float(summary.loc[g, "p"]),
                     "logrank_p": logrank})
    return pd.DataFrame(rows)


# --- binary outcomes ----------------------------------------------------------------------------------------

def _binary_arrays(label, score):
    label = np.asarray(label, dtype=float)
    score = np.asarray(score, dtype=float)
    if label.ndim != 1 or score.shape != label.shape:
        raise ValueError("label and score must be 1-D arrays of one length")
    if not np.all(np.isin(label, (0, 1))):
        raise ValueError("label must be 0 or 1")
    if not np.all(np.isfinite(score)):
        raise ValueError("score has missing or infinite values")
    if label.min() == label.max():
        raise ValueError("label has a single class: ROC analysis needs both")
    return label.astype(bool), score


def roc_curve(label, score):
    """ROC curve: ``(fpr, tpr, thresholds)``, thresholds decreasing; predicted positive when score >= threshold."""
    label, score = _binary_arrays(label, score)
    thresholds = np.unique(score)[::-1]
    tp = np.array([np.sum(label & (score >= c)) for c in thresholds], dtype=float)
    fp = np.array([np.sum(~label & (score >= c)) for c in thresholds], dtype=float)
    tpr = np.concatenate([[0.0], tp / label.sum()])
    fpr = np.concatenate([[0.0], fp / (~label).sum()])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


def roc_auc(label, score):
    """Area under the ROC curve (the Mann-Whitney probability that a positive outscores a negative)."""
    label, score = _binary_arrays(label, score)
    ranks = stats.rankdata(score)
    n_pos = label.sum()
    n_neg = len(label) - n_pos
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def youden_cutoff(label, score):
    """The threshold maximising sensitivity + specificity - 1; returns ``(threshold, sensitivity, specificity)``.
    One of the scores, never the ROC curve's +inf start (nobody positive): on a small training set whose score
    does not separate the classes (J <= 0 everywhere) that start used to win, and a bundle cannot store it."""
    fpr, tpr, thresholds = roc_curve(label, score)
    best = 1 + int(np.argmax((tpr - fpr)[1:]))
    return float(thresholds[best]), float(tpr[best]), float(1 - fpr[best])


def status_at(time, event, t):
    """Binary status at horizon ``t``: 1 = event by t, 0 = known to be event-free at t, NaN = censored before t."""
    time, event = _survival_arrays(time, event)
    status = np.full(len(time), np.nan)
    status[(time <= t) & event] = 1
    status[time > t] = 0
    return status


def _midranks(x):
    return stats.rankdata(x, method="average")


def _delong_placements(label, scores):
    """DeLong's structural components (Sun and Xu's midrank algorithm) of one or more score vectors."""
    positives, negatives = scores[:, label], scores[:, ~label]
    m, n = positives.shape[1], negatives.shape[1]
    v10 = np.empty_like(positives)
    v01 = np.empty_like(negatives)
    for k in range(scores.shape[0]):
        all_ranks = _midranks(np.concatenate([positives[k], negatives[k]]))
        v10[k] = (all_ranks[:m] - _midranks(positives[k])) / n
        v01[k] = 1.0 - (all_ranks[m:] - _midranks(negatives[k])) / m
    return v10, v01


def delong_covariance(label, *scores):
    """AUCs of one or more scores on the same patients and their DeLong covariance matrix (DeLong et al.
    1988; pROC's ``var(roc, method = "delong")`` for one score)."""
    label, _ = _binary_arrays(label, scores[0])
    matrix = np.vstack([_binary_arrays(label, s)[1] for s in scores])
    v10, v01 = _delong_placements(label, matrix)
    aucs = v10.mean(1)
    covariance = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, covariance


def roc_auc_ci(label, score, method="delong", level=0.95, n_bootstrap=1000, seed=0):
    """AUC with a confidence interval: ``(auc, lower, upper)``.

    ``delong``: AUC +- z x DeLong SE, clipped to [0, 1] (pROC's default). ``bootstrap``: percentile interval of
    ``n_bootstrap`` resamples stratified by class (pROC's ``ci.auc(method = "bootstrap")``).
    """
    label, score = _binary_arrays(label, score)
    if method == "delong":
        aucs, covariance = delong_covariance(label, score)
        z = stats.norm.ppf((1 + level) / 2)
        se = float(np.sqrt(covariance[0, 0]))
        return float(aucs[0]), max(0.0, float(aucs[0]) - z * se), min(1.0, float(aucs[0]) + z * se)
    if method != "bootstrap":
        raise ValueError("method must be 'delong' or 'bootstrap'")
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(label), np.flatnonzero(~label)
    samples = []
    for _ in range(n_bootstrap):
        idx = np.concatenate([rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))])
        samples.append(roc_auc(label[idx], score[idx]))
    lower, upper = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return roc_auc(label, score), float(lower), float(upper)


def delong_test(label, score_a, score_b, level=0.95):
    """DeLong's test of two correlated AUCs (two scores on the same patients), as pROC's ``roc.test``:
    a dict with ``auc_a``, ``auc_b``, ``difference``, its ``level`` confidence interval ``lower`` / ``upper``,
    ``z`` and the two-sided ``p``."""
    aucs, covariance = delong_covariance(label, score_a, score_b)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(aucs[0] - aucs[1])
    result = {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference}
    if variance <= 0:
        return {**result, "lower": difference, "upper": difference, "z": 0.0, "p": 1.0}
    se = float(np.sqrt(variance))
    z = difference / se
    half = float(stats.norm.ppf((1 + level) / 2)) * se
    return {**result, "lower": difference - half, "upper": difference + half, "z": float(z),
            "p": float(2 * stats.norm.sf(abs(z)))}


def threshold_summary(label, score, cutoff):
    """Sensitivity, specificity, PPV, NPV and accuracy when ``score >= cutoff`` is called positive, with the
    counts (``tp``, ``fp``, ``tn``, ``fn``); a ratio with an empty denominator is NaN."""
    label, score = _binary_arrays(label, score)
    called = score >= cutoff
    tp, fp = int(np.sum(called & label)), int(np.sum(called & ~label))
    fn, tn = int(np.sum(~called & label)), int(np.sum(~called & ~label))

    def ratio(a, b):
        return a / b if b else float("nan")
    return {"cutoff": float(cutoff), "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn), "accuracy": (tp + tn) / len(label),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def net_benefit(label, probability, thresholds):
    """Decision-curve analysis (Vickers and Elkin 2006): net benefit of treating when ``probability >=
    threshold``, against treating everyone and no one. Equals the ``dcurves`` package. Returns a table with
    ``threshold``, ``model``, ``treat_all`` and ``treat_none`` (one row per threshold; a single number is one
    threshold)."""
    label = np.asarray(label, dtype=float).astype(bool)
    probability = np.asarray(probability, dtype=float)
    if probability.shape != label.shape or not np.all((probability >= 0) & (probability <= 1)):
        raise ValueError("probability must be one value in [0, 1] per label")
    thresholds = np.atleast_1d(np.asarray(thresholds, dtype=float))  # one threshold is a one-row table
    if np.any((thresholds <= 0) | (thresholds >= 1)):
        raise ValueError("thresholds must lie strictly between 0 and 1")
    n = len(label)
    prevalence = label.mean()
    odds = thresholds / (1 - thresholds)
    called = probability[None, :] >= thresholds[:, None]
    tp = (called & label[None, :]).sum(1) / n
    fp = (called & ~label[None, :]).sum(1) / n
    return pd.DataFrame({"threshold": thresholds, "model": tp - fp * odds,
                         "treat_all": prevalence - (1 - prevalence) * odds, "treat_none": 0.0})


def nri(label, p_old, p_new, cutoffs=None):
    """Net reclassification improvement of ``p_new`` over ``p_old`` (Pencina et al. 2008 / 2011).

    With ``cutoffs`` (risk category bounds, e.g. ``[0.28]``) it is the categorical NRI; without, the
    category-free (continuous) NRI. Returns ``nri``, its ``events`` and ``nonevents`` parts, ``z`` and ``p``.
    """
    label, p_old = _binary_arrays(label, p_old)
    _, p_new = _binary_arrays(label, p_new)
    if cutoffs is None:
        up, down = p_new > p_old, p_new < p_old
    else:
        old_cat = np.searchsorted(np.sort(cutoffs), p_old, side="right")
        new_cat = np.searchsorted(np.sort(cutoffs), p_new, side="right")
        up, down = new_cat > old_cat, new_cat < old_cat
    events, nonevents = label, ~label
    pu_e, pd_e = up[events].mean(), down[events].mean()
    pu_n, pd_n = up[nonevents].mean(), down[nonevents].mean()
    nri_events, nri_nonevents = pu_e - pd_e, pd_n - pu_n
    se = np.sqrt((pu_e + pd_e) / events.sum() + (pu_n + pd_n) / nonevents.sum())
    value = nri_events + nri_nonevents
    z = value / se if se > 0 else 0.0
    return {"nri": float(value), "events": float(nri_events), "nonevents": float(nri_nonevents), "z": float(z),
            "p": float(2 * stats.norm.sf(abs(z)))}


def idi(label, p_old, p_new):
    """Integrated discrimination improvement (Pencina et al. 2008): the gain in mean predicted risk among
    events minus that among non-events; returns ``idi``, ``z`` and ``p``."""
    label, p_old = _binary_arrays(label, p_old)
    _, p_new = _binary_arrays(label, p_new)
    diff = p_new - p_old
    events, nonevents = diff[label], diff[~label]
    value = events.mean() - nonevents.mean()
    se = np.sqrt(events.var(ddof=1) / len(events) + nonevents.var(ddof=1) / len(nonevents))
    z = value / se if se > 0 else 0.0
    return {"idi": float(value), "z": float(z), "p": float(2 * stats.norm.sf(abs(z)))}


def calibration_binary(label, probability, groups=10):
    """Predicted against observed risk by quantile group of predicted probability: ``(table, brier)``; table
    columns ``group``, ``n``, ``predicted``, ``observed``."""
    label, probability = _binary_arrays(label, probability)
    groups = max(1, min(groups, len(label) // 5))
    ranks = pd.qcut(pd.Series(probability).rank(method="first"), groups, labels=False).to_numpy()
    table = pd.DataFrame({"group": ranks + 1, "p": probability, "y": label.astype(float)}).groupby("group").agg(
        n=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")).reset_index()
    return table, float(np.mean((probability - label) ** 2))


# --- several tests at once ----------------------------------------------------------------------------------

def benjamini_hochberg(p_values):
    """Benjamini-Hochberg false-discovery-rate adjusted p-values (R's ``p.adjust(p, "BH")``, statsmodels'
    ``multipletests(p, method="fdr_bh")``): p_(i) m / i made monotone from the largest down and capped at 1.
    NaN entries stay NaN and do not count in m (R's convention). Paper 001 adjusts its model comparisons so
    (Table 4, P+)."""
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("p_values must be one-dimensional")
    finite = np.isfinite(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    values = p[finite]
    m = len(values)
    if m == 0:
        return out
    order = np.argsort(values)[::-1]  # largest first
    ranked = values[order] * m / np.arange(m, 0, -1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(ranked))
    result = np.empty(m)
    result[order] = adjusted
    out[finite] = result
    return out
