"""What every model shares: the typed interface the registry, the CLI, the Slicer module and the validation call
(``Model``), labelled cases, the one prediction-table builder, and the small logistic helpers of the
integrations."""

from __future__ import annotations

import abc
import warnings

import numpy as np
import pandas as pd

from .. import InputError, InputWarning

FOLDS = 5  # cross-validation folds of every fitted model's out-of-fold predictions


class Model(abc.ABC):
    """A trained (or published) model of one task. Hyper-parameters go to ``__init__``; ``fit`` learns from a
    ``CohortData``; a bundle stores ``params()`` (JSON) and ``tensors()`` (arrays) and ``from_params`` restores
    them. ``provenance`` and ``notice`` are attached by the registry and copied into every prediction."""

    task: str = ""
    kind: str = ""
    label: str = ""
    cutoff: float = 0.5
    provenance: str = ""
    notice: str = ""

    def __init__(self, cutoff=0.5):
        self.cutoff = cutoff  # the risk-group threshold (set again by ``fit``)
        self.info = {}  # what training measured; stored in the bundle
        self.provenance = ""
        self.notice = ""

    @abc.abstractmethod
    def fit(self, data, seed=0):
        """Learn from ``data`` (a ``CohortData``); returns self."""

    @abc.abstractmethod
    def predict(self, data):
        """One row per case: score, probability or risk, group at the cut-off, provenance and notice."""

    @abc.abstractmethod
    def params(self):
        """Everything but the arrays, as JSON-able data."""

    def tensors(self):
        """Named arrays (network weights, estimators as bytes) for the bundle's safetensors file."""
        return {}

    @classmethod
    @abc.abstractmethod
    def from_params(cls, params, tensors=None):
        """The model a bundle's ``params()`` / ``tensors()`` describe."""

    def tables(self):
        """Tables written next to the bundle (selected features, training history, coefficients)."""
        return {}


class ProbabilityModel(Model):
    """A model of a binary outcome: ``probability(data)`` per case; ``labelled(data)`` its training cases."""

    group_names = ("response", "no response")  # above / below the cut-off

    @abc.abstractmethod
    def probability(self, data):
        """P(outcome) per case of ``data``, in case order."""

    @abc.abstractmethod
    def labelled(self, data):
        """``(cases with a label, their 0 / 1 labels)``."""

    def predict(self, data):
        return prediction_table(self, data, self.probability(data))


def prediction_table(model, data, probability, score=None, extra=None, groups=None):
    """One row per case of a probability model: score (default: the probability), the probability, its group at
    the model's cut-off (``groups``: the names above and below it; default the model's), the provenance and the
    research-use notice. ``extra``: more columns, placed after ``model``. A model whose ``cutoff`` is None gets
    an empty risk group and a NaN cut-off."""
    groups = groups or model.group_names
    cutoff = model.cutoff
    columns = {"case_id": data.case_ids, "task": model.task, "model": model.label, **(extra or {}),
               "score": probability if score is None else score, "probability": probability,
               # no cut-off (a published score its paper never thresholds): no risk group
               "risk_group": np.where(probability >= cutoff, *groups) if cutoff is not None else "",
               "cutoff": cutoff if cutoff is not None else np.nan, "provenance": model.provenance,
               "notice": model.notice}
    return pd.DataFrame(columns)


def labelled_cases(data, label):
    """The cases with a label (``label``: a Series over ``data.table``, NA where unknown) and their labels as
    integers; the others are left out with a warning naming the first."""
    missing = label.isna()
    if missing.any():
        warnings.warn(f"{int(missing.sum())} case(s) without an outcome are left out (first: "
                      f"{data.table.loc[missing, 'case_id'].iloc[0]})", InputWarning, stacklevel=3)
    return data.subset(data.table[~missing]), label[~missing].to_numpy(dtype=int)


def check_classes(label, folds=FOLDS, column="response", names=("objective response", "no objective response")):
    """Both classes present, each with at least ``folds`` cases (stratified k-fold CV needs them)."""
    counts = {int(v): int((label == v).sum()) for v in (0, 1)}
    if min(counts.values()) == 0:
        only = names[0] if counts[1] else names[1]
        raise InputError(f"every labelled case has {only}: a classifier needs both classes", column=column,
                         fix=f"train on a cohort with both: {names[0]} and {names[1]}")
    if min(counts.values()) < folds:
        raise InputError(f"{min(counts.values())} case(s) in the smaller class, fewer than the {folds} folds of "
                         "the cross-validation", column=column, fix="add cases of that class")


def logit(p):
    p = np.clip(np.asarray(p, float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def logistic_fit(X, y):
    """Unpenalised logistic regression (a tiny ridge keeps separable data finite): (intercept, coefficients)."""
    from sklearn.linear_model import LogisticRegression
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(X, y)
    return float(fit.intercept_[0]), fit.coef_[0].astype(float)


def sub_params(prefix, tensors):
    """The arrays of a component model stored under ``prefix`` in a combined bundle."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class PublishedScore(ProbabilityModel):
    """A published score used with its published coefficients: nothing is trained, no bundle is needed. Its
    cut-off, provenance and notice are the class's own (published), not set per instance."""

    def __init__(self):
        self.info = {}

    def fit(self, data, seed=0):
        raise InputError(f"{self.label} is a published score, used as published: there is nothing to train",
                         column="--model", fix="use it directly with predict or evaluate (no bundle needed)")

    def params(self):
        return {"kind": self.kind}

    @classmethod
    def from_params(cls, params, tensors=None):
        return cls()
