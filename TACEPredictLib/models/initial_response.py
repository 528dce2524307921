"""Initial response to TACE, objective (CR + PR) against none (SD + PD), from radiomics (seed 002's cML).

Arterial-phase radiomics of the 3D ROI, the ICC >= 0.75 filter when the extraction has one, recursive
feature elimination with a random forest whose number of features is chosen by 5-fold cross-validated AUC
(the paper kept 14), then one of five classifiers on the chosen features:

* ``linear``: least-squares regression of the 0 / 1 label, clipped to [0, 1] (the paper's thresholded linear
  regression);
* ``logistic``: L2 logistic regression;
* ``svm``: RBF support-vector machine with Platt-scaled probabilities;
* ``gbm``: gradient boosting;
* ``rf``: random forest.

The cut-off is the Youden point of the training cases' out-of-fold probabilities (5-fold), so it is not
tuned on the apparent fit. The fitted scikit-learn estimators are stored with skops and loaded only if every
type in the file is on ``TRUSTED_TYPES`` (never pickle).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import InputError
from ..data.cohort import InputWarning

KINDS = ("linear", "logistic", "svm", "gbm", "rf")
RESPONSE_CODES = {"CR": 1, "PR": 1, "SD": 0, "PD": 0}
LABEL = "objective_response"
PHASES = ("ct_ap",)
FOLDS = 5
# What a response bundle's estimator file may contain: nothing else is loaded.
TRUSTED_TYPES = [
    "sklearn.pipeline.Pipeline", "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._base.LinearRegression", "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.svm._classes.SVC", "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._gb.GradientBoostingClassifier", "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._classes.DecisionTreeRegressor", "sklearn.tree._tree.Tree",
    "sklearn.ensemble._gb_losses.BinomialDeviance", "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.Interval", "sklearn.dummy.DummyClassifier",
    "sklearn.utils._bunch.Bunch", "numpy.random._mt19937.MT19937", "numpy.random.mtrand.RandomState",
    "builtins.slice", "collections.OrderedDict",
]


def objective_response(table):
    """1 for CR / PR, 0 for SD / PD, NaN where the response is missing; an unknown code names the case."""
    if "response" not in table.columns:
        raise InputError("the manifest has no 'response' column", column="response",
                         fix="add the mRECIST response (CR, PR, SD or PD)")
    codes = table["response"]
    unknown = codes.notna() & ~codes.astype(str).isin(RESPONSE_CODES)
    if unknown.any():
        raise InputError(f"unknown response code '{codes[unknown].iloc[0]}'", table.loc[unknown, "case_id"].iloc[0],
                         "response", "use CR, PR, SD or PD (mRECIST)")
    return codes.map(RESPONSE_CODES).astype(float)


def labelled_cases(data, label):
    """The cases with a label (``label``: a Series over ``data.table``, NA where unknown) and their labels as
    integers; the others are left out with a warning naming the first."""
    missing = label.isna()
    if missing.any():
        warnings.warn(f"{int(missing.sum())} case(s) without an outcome are left out (first: "
                      f"{data.table.loc[missing, 'case_id'].iloc[0]})", InputWarning, stacklevel=3)
    return data.subset(data.table[~missing]), label[~missing].to_numpy(dtype=int)


def prediction_table(model, data, probability, groups=("response", "no response")):
    """One row per case of a probability model: score = probability, its group at the model's cut-off
    (``groups``: the names above and below it), the provenance and the research-use notice."""
    return pd.DataFrame({"case_id": data.case_ids, "task": model.task, "model": model.label,
                         "score": probability, "probability": probability,
                         "risk_group": np.where(probability >= model.cutoff, *groups),
                         "cutoff": model.cutoff, "provenance": model.provenance, "notice": model.notice})


def check_classes(label, folds=FOLDS):
    """Both classes present, each with at least ``folds`` cases (stratified k-fold CV needs them)."""
    counts = {int(v): int((label == v).sum()) for v in (0, 1)}
    if min(counts.values()) == 0:
        only = "objective response" if counts[1] else "no objective response"
        raise InputError(f"every labelled case has {only}: a classifier needs both classes", column="response",
                         fix="train on a cohort with responders and non-responders")
    if min(counts.values()) < folds:
        raise InputError(f"{min(counts.values())} case(s) in the smaller class, fewer than the {folds} folds of "
                         "the cross-validation", column="response", fix="add cases of that class")


def _estimator(kind, seed):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    models = {
        "linear": lambda: LinearRegression(),
        "logistic": lambda: LogisticRegression(C=1.0, max_iter=5000),
        "svm": lambda: SVC(kernel="rbf", C=1.0, gamma="scale", probability=True, random_state=seed),
        "gbm": lambda: GradientBoostingClassifier(n_estimators=150, max_depth=2, learning_rate=0.05,
                                                  subsample=0.8, random_state=seed),
        "rf": lambda: RandomForestClassifier(n_estimators=300, min_samples_leaf=3, random_state=seed, n_jobs=1),
    }
    if kind not in models:
        raise InputError(f"unknown response model '{kind}'", column="--model", fix="use one of " + ", ".join(KINDS))
    return make_pipeline(StandardScaler(), models[kind]())


def _probability(estimator, X):
    if hasattr(estimator, "predict_proba"):
        return estimator.predict_proba(X)[:, 1]
    return np.clip(estimator.predict(X), 0.0, 1.0)  # thresholded linear regression


class RadiomicsResponseClassifier:
    """One of seed 002's classical models on RFE-selected arterial-phase radiomics."""

    task = "response"

    def __init__(self, kind="rf", family="radiomics", phases=PHASES, icc_filter=True, max_features=30):
        if kind not in KINDS:
            raise InputError(f"unknown response model '{kind}'", column="--model", fix="use one of " + ", ".join(KINDS))
        self.kind = kind
        self.family = family
        self.phases = tuple(phases)
        self.icc_filter = icc_filter
        self.max_features = max_features
        self.features = []
        self.estimator = None
        self.cutoff = 0.5
        self.info = {}
        self.provenance = ""
        self.notice = ""

    @property
    def label(self):
        return f"{self.kind} (radiomics)"

    def labelled(self, data):
        return labelled_cases(data, objective_response(data.table))

    def fit(self, data, seed=0):
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.feature_selection import RFECV
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        from ..stats.metrics import youden_cutoff
        data, y = self.labelled(data)
        check_classes(y)
        wide = data.features(self.phases, self.family, icc_filter=self.icc_filter)
        wide = wide.loc[:, wide.std() > 1e-12]
        # RFE with a random forest; the number of features is the one with the best 5-fold CV AUC. Candidates:
        # the strongest univariate features first (RFE over thousands of features would take minutes).
        from scipy import stats
        auc = np.array([stats.mannwhitneyu(col[y == 1], col[y == 0]).statistic / (y.sum() * (1 - y).sum())
                        for col in wide.to_numpy(dtype=float).T])
        strength = np.abs(auc - 0.5)
        candidates = list(wide.columns[np.argsort(-strength)[:min(200, wide.shape[1])]])
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        forest = RandomForestClassifier(n_estimators=200, min_samples_leaf=3, random_state=seed, n_jobs=1)
        rfe = RFECV(forest, step=0.2, min_features_to_select=2, cv=folds, scoring="roc_auc", n_jobs=1)
        rfe.fit(wide[candidates].to_numpy(dtype=float), y)
        chosen = [c for c, keep in zip(candidates, rfe.support_) if keep]
        if len(chosen) > self.max_features:  # RFECV's tie-breaking can keep many: keep the forest's top ranked
            importance = rfe.estimator_.feature_importances_
            chosen = [chosen[j] for j in np.argsort(-importance)[:self.max_features]]
        self.features = chosen
        X = wide[chosen].to_numpy(dtype=float)
        out_of_fold = cross_val_predict(_estimator(self.kind, seed), X, y, cv=folds,
                                        method="predict_proba" if self.kind != "linear" else "predict")
        out_of_fold = np.clip(out_of_fold[:, 1] if out_of_fold.ndim == 2 else out_of_fold, 0, 1)
        self.out_of_fold = out_of_fold  # what an integration is fitted on (not stored in the bundle)
        self.cutoff = float(youden_cutoff(y, out_of_fold)[0])
        self.estimator = _estimator(self.kind, seed).fit(X, y)
        from ..stats.metrics import roc_auc
        self.info = {"candidates": len(candidates), "features_available": int(wide.shape[1]),
                     "rfe_cv_auc": float(np.max(rfe.cv_results_["mean_test_score"])),
                     "n_features": len(chosen), "auc_training_out_of_fold": float(roc_auc(y, out_of_fold)),
                     "cases": int(len(y)), "responders": int(y.sum())}
        return self

    def probability(self, data):
        X = data.features(self.phases, self.family, names=self.features).to_numpy(dtype=float)
        return _probability(self.estimator, X)

    def predict(self, data):
        return prediction_table(self, data, self.probability(data))

    # Bundles ----------------------------------------------------------------------------------------------
    def params(self):
        return {"kind": self.kind, "family": self.family, "phases": list(self.phases), "icc_filter": self.icc_filter,
                "max_features": self.max_features, "features": self.features, "cutoff": self.cutoff,
                "info": self.info}

    def tensors(self):
        import skops.io
        return {"estimator_skops": np.frombuffer(skops.io.dumps(self.estimator), dtype=np.uint8).copy()}

    @classmethod
    def from_params(cls, params, tensors=None):
        import skops.io
        model = cls(params["kind"], params["family"], params["phases"], params["icc_filter"], params["max_features"])
        model.features, model.cutoff, model.info = params["features"], params["cutoff"], params.get("info", {})
        blob = bytes(tensors["estimator_skops"].tobytes())
        untrusted = [t for t in skops.io.get_untrusted_types(data=blob) if t not in TRUSTED_TYPES]
        if untrusted:
            raise InputError(f"the bundle's estimator holds types TACEPredict does not load: {', '.join(untrusted)}",
                             column="--model", fix="re-train the model with this TACEPredict")
        model.estimator = skops.io.loads(blob, trusted=TRUSTED_TYPES)
        return model

    def tables(self):
        return {"selected_features": pd.DataFrame({"feature": self.features})}


MODEL_CLASSES = {kind: RadiomicsResponseClassifier for kind in KINDS}
