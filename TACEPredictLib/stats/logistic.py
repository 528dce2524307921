"""Unpenalised logistic regression in numpy, and the clinical-score derivation of paper 004 built on it.

- ``fit_logistic``: maximum likelihood by Newton-Raphson (iteratively reweighted least squares) with step
  halving, Wald standard errors and p-values, log-likelihood and AIC (R ``glm(family = binomial)``; equal to
  statsmodels' ``Logit`` to 1e-8, Testing/test_aggressive_refit.py). Separation (a coefficient running to
  infinity) and collinear terms raise ``ConvergenceError`` naming them.
- ``univariate_logistic_screen``: one logistic model per candidate *term* (a number, or a category's indicator
  columns together), p of the likelihood-ratio test of the term (for a one-column term this is the test a
  univariate ``glm`` + ``anova(test = "Chisq")`` gives), and each column's Wald p.
- ``stepwise_aic_terms``: R ``MASS::stepAIC`` with its default scope (from the full model, terms dropped or
  added back whole, the move that lowers the AIC most, until none does).

Only numpy and scipy: this runs in Slicer's Python, whose first-use install list has no statsmodels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .cox import ConvergenceError, collinear_columns
from .stepwise import stepwise_aic


class LogisticFit:
    """A fitted logistic model: ``intercept``, ``coef`` (per named column), ``se`` (intercept first), log-likelihood."""

    def __init__(self, names, params, covariance, loglik, n):
        self.names = list(names)
        self.params = np.asarray(params, float)  # intercept first
        self.covariance = covariance
        self.loglik = float(loglik)
        self.n = int(n)

    @property
    def intercept(self):
        return float(self.params[0])

    @property
    def coef(self):
        return self.params[1:]

    @property
    def se(self):
        return np.sqrt(np.diag(self.covariance))

    @property
    def aic(self):
        return -2 * self.loglik + 2 * len(self.params)

    def linear_predictor(self, X):
        X = np.asarray(X, float).reshape(-1, len(self.coef))
        return self.intercept + X @ self.coef

    def summary(self, level=0.95):
        z = self.params / self.se
        q = stats.norm.ppf((1 + level) / 2)
        return pd.DataFrame({"term": ["intercept"] + self.names, "coef": self.params, "se": self.se,
                             "odds_ratio": np.exp(self.params), "or_lower": np.exp(self.params - q * self.se),
                             "or_upper": np.exp(self.params + q * self.se), "z": z,
                             "p": 2 * stats.norm.sf(np.abs(z))})


def _loglik(eta, y):
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def fit_logistic(X, y, names=None, max_iter=100, tol=1e-10, max_abs_coef=30.0):
    """Maximum-likelihood logistic regression of 0 / 1 ``y`` on the columns of ``X`` (an intercept is added)."""
    X = np.asarray(X, float)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, float)
    names = list(names) if names is not None else [f"x{j}" for j in range(X.shape[1])]
    if X.shape[0] != len(y) or not np.all(np.isin(y, (0, 1))) or not np.all(np.isfinite(X)):
        raise ValueError("X must be finite with one row per 0 / 1 label")
    if y.min() == y.max():
        raise ConvergenceError("every case has the same outcome")
    if X.shape[1]:
        collinear = collinear_columns(X, names)
        if collinear:
            raise ConvergenceError(f"the terms cannot all be estimated: {collinear}")
    design = np.column_stack([np.ones(len(y)), X])
    beta = np.zeros(design.shape[1])
    beta[0] = np.log(y.mean() / (1 - y.mean()))
    loglik = _loglik(design @ beta, y)
    for _ in range(max_iter):
        eta = design @ beta
        p = 1.0 / (1.0 + np.exp(-eta))
        w = p * (1 - p)
        information = design.T @ (design * w[:, None])
        try:
            step = np.linalg.solve(information, design.T @ (y - p))
        except np.linalg.LinAlgError:
            raise ConvergenceError("singular information matrix") from None
        new, scale = beta + step, 1.0
        new_loglik = _loglik(design @ new, y)
        while new_loglik < loglik - 1e-12 and scale > 1e-6:  # step halving
            scale /= 2
            new = beta + scale * step
            new_loglik = _loglik(design @ new, y)
        converged = abs(new_loglik - loglik) < tol * (abs(loglik) + tol) and np.max(np.abs(new - beta)) < 1e-7
        beta, loglik = new, new_loglik
        if converged:
            break
    diverged = [names[j] for j in np.flatnonzero(np.abs(beta[1:]) > max_abs_coef)]
    if diverged or not np.all(np.isfinite(beta)):
        raise ConvergenceError(f"{', '.join(repr(d) for d in diverged) or 'a term'} separates the outcomes "
                               "(its coefficient has no finite estimate)")
    p = 1.0 / (1.0 + np.exp(-(design @ beta)))
    information = design.T @ (design * (p * (1 - p))[:, None])
    return LogisticFit(names, beta, np.linalg.inv(information), loglik, len(y))


def _columns(terms, chosen):
    return [c for t in chosen for c in terms[t]]


def univariate_logistic_screen(design, y, terms):
    """One logistic model per term. ``terms``: {term: [its columns of ``design``]}. A table with the term, its
    columns, the likelihood-ratio p of the term (``p``), the smallest Wald p of its columns, and a note where
    the model cannot be fitted (p NaN); sorted by p."""
    y = np.asarray(y, float)
    null = _loglik(np.full(len(y), np.log(y.mean() / (1 - y.mean()))), y)
    rows = []
    for term, columns in terms.items():
        try:
            fit = fit_logistic(design[columns].to_numpy(float), y, columns)
        except ConvergenceError as exc:
            rows.append({"term": term, "columns": ", ".join(columns), "df": len(columns), "p": np.nan,
                         "wald_p_min": np.nan, "note": str(exc)})
            continue
        statistic = max(0.0, 2 * (fit.loglik - null))
        wald = fit.summary()["p"].to_numpy()[1:]
        rows.append({"term": term, "columns": ", ".join(columns), "df": len(columns),
                     "coef": float(fit.coef[0]) if len(columns) == 1 else np.nan, "lr_statistic": statistic,
                     "p": float(stats.chi2.sf(statistic, len(columns))), "wald_p_min": float(wald.min()),
                     "note": ""})
    return pd.DataFrame(rows).sort_values("p", na_position="last", kind="stable").reset_index(drop=True)


def stepwise_aic_terms(design, y, terms, start):
    """``MASS::stepAIC(glm(y ~ start terms, binomial))`` with its default scope: every step tries dropping each
    term of the model and adding back each dropped term, takes the move that lowers the AIC most, and stops when
    none does. Returns ``(fit, chosen terms, trace)``."""
    y = np.asarray(y, float)

    def aic(chosen):
        columns = _columns(terms, chosen)
        try:
            return fit_logistic(design[columns].to_numpy(float), y, columns).aic
        except ConvergenceError:
            return np.inf

    current, best, steps = stepwise_aic(list(start), start, aic)
    trace = [{"step": k, "move": move, "terms": ", ".join(chosen), "aic": value}
             for k, (move, chosen, value) in enumerate(steps)]
    if not np.isfinite(best):
        raise ConvergenceError("no model of the screened terms can be fitted")
    columns = _columns(terms, current)
    return fit_logistic(design[columns].to_numpy(float), y, columns), current, pd.DataFrame(trace)
