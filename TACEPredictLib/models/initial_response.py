"""Initial response to TACE, objective (CR + PR) against none (SD + PD): seed 002's whole method.

Peng J, Huang J, Huang G, Zhang J. Predicting the Initial Treatment Response to Transarterial Chemoembolization
in Intermediate-Stage Hepatocellular Carcinoma by the Integration of Radiomics and Deep Learning. Front Oncol
2021;11:730282. doi:10.3389/fonc.2021.730282

Radiomics classifiers (``RadiomicsResponseClassifier``, the paper's cML): arterial-phase radiomics of the 3D
ROI, the ICC >= 0.75 filter when the extraction has one, recursive feature elimination with a random forest whose number of features is chosen by 5-fold cross-validated AUC
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

The CNN (``ResponseCNN``): two convolution + two pooling layers + dense, leaky ReLU 0.1, on the largest slice's
arterial CT and ROI mask (the lesion box resized to 224 x 224; channels: windowed CT, mask, CT inside the mask);
the smaller class's training patches copied (flipped or rotated) until the classes are equal, as the paper
balanced them by augmentation; Adam (lr 1e-3, L2 1e-6), batch 16, random flips and rotations; a fifth of the
training cases aside for early stopping and the cut-off.

The integrations (``ResponseIntegration``): ``<classifier>+cnn``, the mean of the two probabilities;
``<classifier>+size`` and ``cnn+size``, logistic regression on the classifier's (the CNN's) out-of-fold logit
and the tumour size. Each is fitted on predictions its components did not see while training.
docs/response.md has the paper's setting beside each default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError
from ..data.outcomes import objective_response
from .base import FOLDS, ProbabilityModel, check_classes, labelled_cases, logistic_fit, logit, sub_params
from .networks import response_cnn_net, torch_module
from .training import PatchModel

KINDS = ("linear", "logistic", "svm", "gbm", "rf")
PHASES = ("ct_ap",)
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


class RadiomicsResponseClassifier(ProbabilityModel):
    """One of seed 002's classical models on RFE-selected arterial-phase radiomics."""

    task = "response"

    def __init__(self, kind="rf", family="radiomics", phases=PHASES, icc_filter=True, max_features=30):
        super().__init__()
        if kind not in KINDS:
            raise InputError(f"unknown response model '{kind}'", column="--model", fix="use one of " + ", ".join(KINDS))
        self.kind = kind
        self.family = family
        self.phases = tuple(phases)
        self.icc_filter = icc_filter
        self.max_features = max_features
        self.features = []
        self.estimator = None

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


class ResponseCNN(PatchModel):
    """Seed 002's CNN of objective response on the largest slice's arterial CT and ROI mask (224 x 224 x 3:
    windowed CT, mask, CT inside the mask; the ``ct_mask`` patch set), the classes balanced by augmented copies.
    A bundle written before the mask was read records the ``centre`` set (CT repeated to three channels) and
    keeps reading it."""

    task = "response"
    kind = "cnn"
    patch_set = "ct_mask"
    legacy_patch_set = "centre"
    channels = 3
    balance = True

    group_names = ("response", "no response")
    label_column = "response"
    outcome_names = ("objective response", "no objective response")

    @property
    def label(self):
        return "cnn (largest-slice CT and mask)" if self.patch_set == "ct_mask" else "cnn (largest-slice patch)"

    def case_label(self, table):
        return objective_response(table)

    def build(self):
        return response_cnn_net(self.width)

    def optimiser(self, net):
        return torch_module().optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-6)

    def training_options(self):
        from ..imaging.sampling import Augmenter
        return {"batch_size": 16, "augment": Augmenter(flips=True, rotate90=True), "patience": 10}


INTEGRATIONS = tuple(f"{k}+cnn" for k in KINDS) + tuple(f"{k}+size" for k in KINDS) + ("cnn+size",)


class ResponseIntegration(ProbabilityModel):
    """``<cml>+cnn``: mean of the radiomics classifier's and the CNN's probabilities; ``<cml>+size`` and
    ``cnn+size``: logistic regression on the classifier's (or the CNN's) logit and the tumour size
    (``tumor_size_mm``), fitted on that score's out-of-fold values. ``cnn+size`` trains its CNN as a five-fold
    ensemble so that every training case has an out-of-fold CNN score (a single CNN given to
    ``from_components`` has one for its held-out fifth only, and the combination is fitted on those cases)."""

    task = "response"

    def __init__(self, kind="rf+cnn", epochs=30, width=8, device="auto"):
        super().__init__()
        if kind not in INTEGRATIONS:
            raise InputError(f"unknown response integration '{kind}'", column="--model",
                             fix="use one of " + ", ".join(INTEGRATIONS))
        self.kind = kind
        self.cml_kind, self.partner = kind.split("+")
        self.cml = RadiomicsResponseClassifier(self.cml_kind) if self.cml_kind != "cnn" else None
        self.cnn = ResponseCNN(epochs, width, device) if "cnn" in (self.partner, self.cml_kind) else None
        if self.cml is None:
            self.cnn.members = FOLDS  # out-of-fold CNN scores of every training case for the size model
        self.coefficients = None

    @property
    def label(self):
        first = "CNN" if self.cml is None else self.cml_kind
        return f"{first} + {'CNN' if self.partner == 'cnn' else 'tumour size'}"

    def labelled(self, data):
        return (self.cml or self.cnn).labelled(data)

    def _size(self, data):
        if "tumor_size_mm" not in data.table.columns:
            raise InputError("the tumour-size integration needs the manifest column 'tumor_size_mm'",
                             column="tumor_size_mm", fix="add tumor_size_mm (largest diameter, mm)")
        size = pd.to_numeric(data.table["tumor_size_mm"], errors="coerce")
        if size.isna().any():
            raise InputError("missing or not a number; the tumour-size integration needs it",
                             data.table["case_id"].iloc[int(np.flatnonzero(size.isna())[0])], "tumor_size_mm",
                             "fill in tumor_size_mm (largest diameter, mm)")
        return size.to_numpy(dtype=float)

    def fit(self, data, seed=0):
        labelled, _ = self.labelled(data)
        if self.partner == "size":
            self._size(labelled)  # before minutes of training
        if self.cml is not None:
            self.cml.fit(labelled, seed=seed)
        if self.cnn is not None:
            self.cnn.fit(labelled, seed=seed)
        return self.combine(labelled)

    @classmethod
    def from_components(cls, kind, data, cml=None, cnn=None):
        """The integration of already trained components (``cml`` fitted in this process, so that its
        out-of-fold probabilities are known): only the combination is fitted."""
        model = cls(kind)
        model.cml = cml if model.cml is not None else None
        if model.cnn is not None:
            model.cnn = cnn
        return model.combine(data)

    def combine(self, data):
        from ..stats.metrics import youden_cutoff
        labelled, y = self.labelled(data)
        first = self.cml if self.cml is not None else self.cnn
        out_of_fold = np.asarray(first.out_of_fold, float)
        scored = np.isfinite(out_of_fold)
        if self.partner == "cnn":
            combined = (out_of_fold + self.cnn.probability(labelled)) / 2
        else:
            size = self._size(labelled)
            X = np.column_stack([logit(out_of_fold[scored]), size[scored]])
            intercept, coef = logistic_fit(X, y[scored])
            self.coefficients = [intercept, *coef.tolist()]
            combined = self._combine_size(out_of_fold[scored], size[scored])
        self.cutoff = float(youden_cutoff(y[scored], combined[scored] if self.partner == "cnn" else combined)[0])
        self.info = {"cml": self.cml.info if self.cml is not None else None,
                     "cnn": {k: v for k, v in self.cnn.info.items() if k != "history"} if self.cnn else None,
                     "coefficients": self.coefficients, "combination_cases": int(scored.sum())}
        return self

    def _combine_size(self, p_first, size):
        b0, b_first, b_size = self.coefficients
        return 1.0 / (1.0 + np.exp(-(b0 + b_first * logit(p_first) + b_size * size)))

    def component_probabilities(self, data):
        parts = {self.cml_kind: self.cml.probability(data)} if self.cml is not None else {}
        if self.cnn is not None:
            parts["cnn"] = self.cnn.probability(data)
        return parts

    def probability(self, data):
        parts = self.component_probabilities(data)
        if self.partner == "cnn":
            return (parts[self.cml_kind] + parts["cnn"]) / 2
        return self._combine_size(parts[self.cml_kind], self._size(data))

    def params(self):
        return {"kind": self.kind, "cml": self.cml.params() if self.cml is not None else None,
                "cnn": self.cnn.params() if self.cnn else None,
                "coefficients": self.coefficients, "cutoff": self.cutoff}

    def tensors(self):
        out = {"cml." + k: v for k, v in self.cml.tensors().items()} if self.cml is not None else {}
        if self.cnn is not None:
            out.update({"cnn." + k: v for k, v in self.cnn.tensors().items()})
        return out

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls(params["kind"])
        if params.get("cml") is not None:
            model.cml = RadiomicsResponseClassifier.from_params(params["cml"], sub_params("cml.", tensors))
        if params["cnn"] is not None:
            model.cnn = ResponseCNN.from_params(params["cnn"], sub_params("cnn.", tensors))
        model.coefficients, model.cutoff = params["coefficients"], params["cutoff"]
        return model

    def tables(self):
        return {"selected_features": pd.DataFrame({"feature": self.cml.features if self.cml is not None else []})}
