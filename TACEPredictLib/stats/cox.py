"""Cox proportional-hazards models in numpy: the fit, the screens and the penalised signature.

- ``fit_cox``: Newton-Raphson on the partial likelihood with Efron's tie handling (R ``survival::coxph``'s
  default; coefficients equal R's to 1e-4 on ``rossi`` and ``lung``, see Testing/test_cox.py), Wald standard
  errors, p-values and 95% CIs, AIC, and the Breslow baseline cumulative hazard for survival predictions.
- ``univariate_screen`` and ``stepwise_aic`` (R ``step(direction="both")`` from the full model).
- ``score_statistics``: every column's univariate Cox score test at once (used for ranking thousands of
  features), ``mrmr_rank``: minimum-redundancy maximum-relevance ordering on it.
- ``elastic_net_cox`` (one fit) and ``cv_elastic_net_cox`` (5-fold cross-validated lambda and l1 ratio, the
  Verweij and van Houwelingen cross-validated partial likelihood that glmnet uses), Breslow ties.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .splits import stratified_folds
from .stepwise import stepwise_aic as stepwise_search


class ConvergenceError(ValueError):
    """The partial likelihood has no finite maximum (e.g. a covariate separates events perfectly)."""


def _check(X, time, event):
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    if X.shape[0] != len(time) or len(event) != len(time):
        raise ValueError(f"X has {X.shape[0]} rows for {len(time)} times and {len(event)} events")
    if not np.all(np.isfinite(X)):
        raise ValueError("X has missing or infinite values")
    if not np.all(np.isfinite(time)) or np.any(time < 0):
        raise ValueError("time must be finite and non-negative")
    if not np.all(np.isin(event, (0, 1))):
        raise ValueError("event must be 0 or 1")
    if event.sum() == 0:
        raise ValueError("no events: a Cox model needs at least one observed event")
    return X, time, event.astype(bool)


class _RiskSets:
    """Sorted data and the index bookkeeping shared by every evaluation of the partial likelihood."""

    def __init__(self, X, time, event):
        event = np.asarray(event).astype(bool)
        order = np.argsort(time, kind="stable")
        self.X = X[order]
        self.time = time[order]
        self.event = event[order]
        self.order = order
        self.event_times, self.first = np.unique(self.time, return_index=True)
        # for each distinct time: deaths at it
        self.group = np.searchsorted(self.event_times, self.time)
        self.deaths = np.bincount(self.group, weights=self.event, minlength=len(self.event_times))
        keep = self.deaths > 0
        self.death_groups = np.flatnonzero(keep)
        # one row per death: its group and its rank l (0..d-1) among the deaths at that time (Efron)
        dead = np.flatnonzero(self.event)
        self.dead = dead
        self.dead_group = self.group[dead]
        rank = np.zeros(len(dead))
        _, starts, counts = np.unique(self.dead_group, return_index=True, return_counts=True)
        for s, c in zip(starts, counts):
            rank[s:s + c] = np.arange(c)
        self.dead_fraction = rank / self.deaths[self.dead_group]

    def reverse_cumsum_at_groups(self, values):
        """Sum of ``values`` over the risk set (time >= t) of every distinct time."""
        total = np.cumsum(values[::-1], axis=0)[::-1]
        return total[self.first]

    def death_sums(self, values):
        """Sum of ``values`` over the deaths at every distinct time."""
        out = np.zeros((len(self.event_times),) + values.shape[1:])
        np.add.at(out, self.group[self.event], values[self.event])
        return out


def _efron(rs, beta, hessian=True):
    eta = rs.X @ beta
    shift = eta.max()
    w = np.exp(eta - shift)
    wx = w[:, None] * rs.X
    s0 = rs.reverse_cumsum_at_groups(w)
    s1 = rs.reverse_cumsum_at_groups(wx)
    d0 = rs.death_sums(w)
    d1 = rs.death_sums(wx)
    g = rs.dead_group
    f = rs.dead_fraction
    denom = s0[g] - f * d0[g]
    a = (s1[g] - f[:, None] * d1[g]) / denom[:, None]
    loglik = float(np.sum(eta[rs.dead]) - np.sum(np.log(denom) + shift))
    grad = rs.X[rs.dead].sum(0) - a.sum(0)
    if not hessian:
        return loglik, grad, None
    wxx = wx[:, :, None] * rs.X[:, None, :]
    s2 = rs.reverse_cumsum_at_groups(wxx)
    d2 = rs.death_sums(wxx)
    info = np.einsum("k,kij->ij", 1.0 / denom, s2[g] - f[:, None, None] * d2[g]) - a.T @ a
    return loglik, grad, info


@dataclass
class CoxFit:
    """A fitted Cox model; ``summary()`` is the hazard-ratio table."""

    names: list
    coef: np.ndarray
    se: np.ndarray
    loglik: float
    loglik_null: float
    n: int
    events: int
    iterations: int
    baseline_time: np.ndarray = field(repr=False)
    baseline_cumhaz: np.ndarray = field(repr=False)

    @property
    def aic(self):
        return -2 * self.loglik + 2 * len(self.coef)

    def linear_predictor(self, X):
        return np.asarray(X, dtype=float).reshape(-1, len(self.coef)) @ self.coef

    def summary(self, level=0.95):
        z = self.coef / self.se
        q = stats.norm.ppf((1 + level) / 2)
        return pd.DataFrame({
            "covariate": self.names, "coef": self.coef, "se": self.se, "hazard_ratio": np.exp(self.coef),
            "hr_lower": np.exp(self.coef - q * self.se), "hr_upper": np.exp(self.coef + q * self.se),
            "z": z, "p": 2 * stats.norm.sf(np.abs(z))})

    def likelihood_ratio_p(self):
        statistic = 2 * (self.loglik - self.loglik_null)
        return float(stats.chi2.sf(statistic, len(self.coef))) if len(self.coef) else 1.0


def breslow_baseline(lp, time, event):
    """Breslow's baseline cumulative hazard for a linear predictor: ``(event_times, cumhaz)``, so that
    S(t | x) = exp(-cumhaz(t) exp(lp(x)))."""
    lp = np.asarray(lp, dtype=float)
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    times = np.unique(time[event])
    w = np.exp(lp)
    at_risk = np.array([w[time >= t].sum() for t in times])
    deaths = np.array([np.sum(event & (time == t)) for t in times])
    return times, np.cumsum(deaths / at_risk)


def survival_from_baseline(lp, baseline_time, baseline_cumhaz, horizons):
    """S(t | x) at each horizon for each linear predictor: patients x horizons."""
    horizons = np.atleast_1d(np.asarray(horizons, dtype=float))
    idx = np.searchsorted(np.asarray(baseline_time), horizons, side="right") - 1
    cumhaz = np.where(idx >= 0, np.asarray(baseline_cumhaz)[np.maximum(idx, 0)], 0.0)
    return np.exp(-np.exp(np.asarray(lp, dtype=float))[:, None] * cumhaz[None, :])


def collinear_columns(X, names):
    """A sentence naming covariates that duplicate or linearly combine others (the information matrix is then
    singular), or None. Exact duplicates and constant columns are named first; otherwise the columns of the
    smallest singular vector of the centred, scaled design."""
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] == 0:
        return None
    names = list(names)
    centred = X - X.mean(0)
    scale = np.sqrt((centred ** 2).sum(0))
    constant = [names[j] for j in np.flatnonzero(scale < 1e-12)]
    if constant:
        return f"{', '.join(repr(c) for c in constant)} {'is' if len(constant) == 1 else 'are'} constant"
    Z = centred / scale
    for a in range(Z.shape[1]):
        for b in range(a + 1, Z.shape[1]):
            if abs(float(Z[:, a] @ Z[:, b])) > 1 - 1e-10:
                return f"'{names[a]}' and '{names[b]}' are duplicates (perfectly correlated)"
    if X.shape[0] <= X.shape[1]:
        return f"{X.shape[1]} covariates for {X.shape[0]} cases"
    _, values, vectors = np.linalg.svd(Z, full_matrices=False)
    if values[-1] > 1e-8 * values[0]:
        return None
    weights = np.abs(vectors[-1])
    involved = [names[j] for j in np.argsort(-weights) if weights[j] > 1e-6]
    return f"{', '.join(repr(c) for c in involved)} are collinear (one is a linear combination of the others)"


def fit_cox(X, time, event, names=None, max_iter=50, tol=1e-9):
    """Maximum partial-likelihood Cox fit, Efron ties, Newton-Raphson with step halving from beta = 0.
    Collinear or duplicated covariates, and covariates whose coefficient diverges (separation), raise a
    ConvergenceError that names them."""
    X, time, event = _check(X, time, event)
    names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
    collinear = collinear_columns(X, names) if X.shape[1] > 1 else None
    if collinear:
        raise ConvergenceError(f"the covariates cannot all be estimated: {collinear}")
    rs = _RiskSets(X, time, event)
    beta = np.zeros(X.shape[1])
    loglik0, grad, info = _efron(rs, beta)
    loglik = loglik0
    iterations = 0
    for iterations in range(1, max_iter + 1 if X.shape[1] else 1):
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            raise ConvergenceError("the information matrix is singular: "
                                   + (collinear_columns(X, names) or "a covariate has no variation among the "
                                      "cases at risk")) from None
        new = beta + step
        new_loglik, new_grad, new_info = _efron(rs, new)
        halvings = 0
        while not np.isfinite(new_loglik) or new_loglik < loglik - 1e-12:
            step /= 2
            halvings += 1
            if halvings > 30:
                break
            new = beta + step
            new_loglik, new_grad, new_info = _efron(rs, new)
        converged = abs(new_loglik - loglik) <= tol * (abs(loglik) + tol)
        beta, loglik, grad, info = new, new_loglik, new_grad, new_info
        if converged and np.max(np.abs(step)) < 1e-6:
            break
    if not X.shape[1]:
        bt, bh = breslow_baseline(np.zeros(len(time)), time, event)
        return CoxFit(names, beta, np.zeros(0), loglik, loglik0, len(time), int(event.sum()), 0, bt, bh)
    if np.any(np.abs(beta) > 25) or not np.isfinite(loglik):
        diverging = [names[j] for j in np.flatnonzero(~np.isfinite(beta) | (np.abs(beta) > 25))] or names
        raise ConvergenceError(f"the coefficient of {', '.join(repr(c) for c in diverging)} diverges: "
                               f"{'it (nearly) separates' if len(diverging) == 1 else 'they (nearly) separate'} "
                               "events from non-events, so the hazard ratio is infinite")
    try:
        cov = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        raise ConvergenceError("the information matrix is singular: "
                               + (collinear_columns(X, names) or "the covariates are collinear")) from None
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    bt, bh = breslow_baseline(X @ beta, time, event)
    return CoxFit(names, beta, se, loglik, loglik0, len(time), int(event.sum()), iterations, bt, bh)


def univariate_screen(X, time, event, names):
    """One Cox model per column: a table with coef, hazard ratio, 95% CI, Wald p and its Benjamini-Hochberg
    adjustment over the columns tested (``p_fdr``; the screen itself selects on ``p``, as the papers do), sorted
    by p."""
    from .metrics import benjamini_hochberg
    X, time, event = _check(X, time, event)
    rows = []
    for j, name in enumerate(names):
        try:
            row = fit_cox(X[:, [j]], time, event, [name]).summary().iloc[0].to_dict()
        except ConvergenceError as exc:
            row = {"covariate": name, "coef": np.nan, "p": np.nan, "note": str(exc)}
        rows.append(row)
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p") + 1, "p_fdr", benjamini_hochberg(table["p"].to_numpy(float)))
    return table.sort_values("p", na_position="last").reset_index(drop=True)


def stepwise_aic(X, time, event, names, start=None):
    """Bidirectional stepwise selection by AIC, from ``start`` (column indices; default all columns).

    Every step tries dropping each included and adding each excluded covariate and takes the move that lowers
    the AIC most; it stops when no move lowers it. Returns ``(fit, indices, trace)``.
    """
    X, time, event = _check(X, time, event)

    def aic(columns):
        try:
            return fit_cox(X[:, columns], time, event, [names[j] for j in columns]).aic
        except ConvergenceError:
            return np.inf

    current, _, steps = stepwise_search(range(X.shape[1]), range(X.shape[1]) if start is None else start, aic)
    trace = [{"step": k, "move": move, "covariates": [names[j] for j in columns], "aic": value}
             for k, (move, columns, value) in enumerate(steps)]
    fit = fit_cox(X[:, current], time, event, [names[j] for j in current]) if current else None
    return fit, current, pd.DataFrame(trace)


def score_statistics(X, time, event):
    """Univariate Cox score-test z statistic of every column at once, with the hypergeometric variance for tied
    deaths, so that z^2 is exactly the log-rank statistic for a binary column. Large |z| = strong univariate
    association; the sign is that of the log hazard ratio."""
    X, time, event = _check(X, time, event)
    rs = _RiskSets(X, time, event)
    n_at_risk = rs.reverse_cumsum_at_groups(np.ones(len(time)))[rs.death_groups]
    s1 = rs.reverse_cumsum_at_groups(rs.X)[rs.death_groups]
    s2 = rs.reverse_cumsum_at_groups(rs.X ** 2)[rs.death_groups]
    d = rs.deaths[rs.death_groups]
    mean = s1 / n_at_risk[:, None]
    variance = s2 / n_at_risk[:, None] - mean ** 2
    score = rs.X[rs.event].sum(0) - (d[:, None] * mean).sum(0)
    ties = np.where(n_at_risk > 1, (n_at_risk - d) / np.maximum(n_at_risk - 1, 1), 1.0)
    info = ((d * ties)[:, None] * variance).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(info > 0, score / np.sqrt(info), 0.0)


def mrmr_rank(X, relevance, n_select):
    """Minimum-redundancy maximum-relevance order of columns (Ding and Peng's quotient form): the first is the
    most relevant; each next maximises relevance / mean |Pearson r| with those already chosen."""
    X = np.asarray(X, dtype=float)
    relevance = np.abs(np.asarray(relevance, dtype=float))
    n_select = min(n_select, X.shape[1])
    sd = X.std(0)
    Z = np.where(sd > 0, (X - X.mean(0)) / np.where(sd > 0, sd, 1), 0.0)
    chosen = [int(np.argmax(relevance))]
    redundancy = np.zeros(X.shape[1])
    while len(chosen) < n_select:
        last = Z[:, chosen[-1]]
        redundancy += np.abs(Z.T @ last) / len(last)
        score = relevance / np.maximum(redundancy / len(chosen), 1e-6)
        score[chosen] = -np.inf
        chosen.append(int(np.argmax(score)))
    return chosen


# --- penalised Cox (Breslow ties) -------------------------------------------------------------------------

def _breslow_loglik_grad(rs, beta):
    eta = rs.X @ beta
    shift = eta.max()
    w = np.exp(eta - shift)
    s0 = rs.reverse_cumsum_at_groups(w)[rs.death_groups]
    s1 = rs.reverse_cumsum_at_groups(w[:, None] * rs.X)[rs.death_groups]
    d = rs.deaths[rs.death_groups]
    loglik = float(np.sum(eta[rs.event]) - np.sum(d * (np.log(s0) + shift)))
    grad = rs.X[rs.event].sum(0) - (d[:, None] * s1 / s0[:, None]).sum(0)
    return loglik, grad


def breslow_loglik(X, time, event, beta):
    """The Breslow partial log-likelihood of ``beta``."""
    X, time, event = _check(X, time, event)
    return _breslow_loglik_grad(_RiskSets(X, time, event), np.asarray(beta, dtype=float))[0]


def _fista(rs, n, lam, l1_ratio, beta, max_iter=3000, tol=1e-5):
    """Minimise -loglik/n + lam (l1_ratio |b|_1 + (1 - l1_ratio)/2 |b|^2) by FISTA with backtracking."""
    l1 = lam * l1_ratio
    l2 = lam * (1 - l1_ratio)

    def smooth(b):
        loglik, grad = _breslow_loglik_grad(rs, b)
        return -loglik / n + 0.5 * l2 * b @ b, -grad / n + l2 * b

    step = 1.0
    y = beta.copy()
    t = 1.0
    for _ in range(max_iter):
        fy, gy = smooth(y)
        while True:
            z = y - step * gy
            new = np.sign(z) * np.maximum(np.abs(z) - step * l1, 0.0)
            fnew, _ = smooth(new)
            d = new - y
            if fnew <= fy + gy @ d + (d @ d) / (2 * step) + 1e-12:
                break
            step /= 2
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        y = new + (t - 1) / t_next * (new - beta)
        change = np.max(np.abs(new - beta)) if beta.size else 0.0
        beta, t = new, t_next
        if change < tol:
            break
        step *= 1.1  # let the step grow back after a backtrack
    return beta


def elastic_net_path(X, time, event, l1_ratio, n_lambda=30, lambda_min_ratio=0.02, lambdas=None):
    """Coefficients along a decreasing lambda path (warm starts): ``(lambdas, coefs)`` with coefs
    n_lambda x p. X should be standardised."""
    X, time, event = _check(X, time, event)
    rs = _RiskSets(X, time, event)
    n = len(time)
    if lambdas is None:
        _, grad0 = _breslow_loglik_grad(rs, np.zeros(X.shape[1]))
        lam_max = np.max(np.abs(grad0)) / n / max(l1_ratio, 1e-3)
        lambdas = lam_max * np.logspace(0, np.log10(lambda_min_ratio), n_lambda)
    beta = np.zeros(X.shape[1])
    coefs = []
    for lam in lambdas:
        beta = _fista(rs, n, lam, l1_ratio, beta)
        coefs.append(beta.copy())
    return np.asarray(lambdas), np.asarray(coefs)


@dataclass
class ElasticNetCox:
    """A cross-validated elastic-net Cox fit: the chosen ``l1_ratio`` / ``lam`` and the coefficients."""

    coef: np.ndarray
    l1_ratio: float
    lam: float
    cv: pd.DataFrame  # l1_ratio, lam, cv_deviance, cv_se, nonzero


def cv_elastic_net_cox(X, time, event, l1_ratios=(0.1, 0.5, 0.9, 1.0), n_folds=5, n_lambda=30, seed=0,
                       rule="min"):
    """Choose lambda and l1 ratio by K-fold cross-validated partial likelihood, then refit on all data.

    The CV deviance of a fold is -2 [loglik_all(b_-k) - loglik_-k(b_-k)] (Verweij and van Houwelingen 1993).
    ``rule="1se"`` takes the largest lambda within one standard error of the minimum (sparser signatures).
    """
    X, time, event = _check(X, time, event)
    # by event status, dealt out in turn
    folds = stratified_folds(np.asarray(event).astype(bool), n_folds, seed, deal="cyclic", strata=(True, False))
    rows = []
    for alpha in l1_ratios:
        lambdas, _ = elastic_net_path(X, time, event, alpha, n_lambda=n_lambda)
        deviance = np.zeros((n_folds, len(lambdas)))
        for k in range(n_folds):
            train = folds != k
            if event[train].sum() == 0:
                raise ValueError(f"fold {k + 1} of {n_folds} leaves no events for training")
            _, coefs = elastic_net_path(X[train], time[train], event[train], alpha, lambdas=lambdas)
            rs_all = _RiskSets(X, time, event)
            rs_train = _RiskSets(X[train], time[train], event[train])
            for i, b in enumerate(coefs):
                deviance[k, i] = -2 * (_breslow_loglik_grad(rs_all, b)[0] - _breslow_loglik_grad(rs_train, b)[0])
        for i, lam in enumerate(lambdas):
            rows.append({"l1_ratio": alpha, "lam": lam, "cv_deviance": deviance[:, i].sum(),
                         "cv_se": deviance[:, i].std(ddof=1) * np.sqrt(n_folds)})
    cv = pd.DataFrame(rows)
    best = cv.loc[cv["cv_deviance"].idxmin()]
    if rule == "1se":
        within = cv[(cv["l1_ratio"] == best["l1_ratio"])
                    & (cv["cv_deviance"] <= best["cv_deviance"] + best["cv_se"])]
        best = within.loc[within["lam"].idxmax()]
    lambdas = cv.loc[cv["l1_ratio"] == best["l1_ratio"], "lam"].to_numpy()
    path = lambdas[lambdas >= best["lam"] - 1e-15]
    _, coefs = elastic_net_path(X, time, event, best["l1_ratio"], lambdas=path)
    return ElasticNetCox(coefs[-1], float(best["l1_ratio"]), float(best["lam"]), cv)
