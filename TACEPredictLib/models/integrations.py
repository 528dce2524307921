"""Models built from other models' outputs: seed 002's integrations (a radiomics classifier with the CNN or
with tumour size) and seed 004's Model_CSD (the clinical-semantic score with Model_D).

Each combination is fitted on predictions its components did not see while training: the radiomics
classifiers' out-of-fold probabilities, and for Model_CSD the out-of-fold scores of Model_D's
cross-validation members (the bundle's Model_D is the mean of those members).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError
from .aggressive_progression import HIGH_RISK_CUTOFF, ClinicalSemanticScore
from .image_networks import MODEL_D_EPOCHS, ModelD, ResponseCNN
from .initial_response import KINDS as CML_KINDS, RadiomicsResponseClassifier, check_classes, prediction_table

INTEGRATIONS = tuple(f"{k}+cnn" for k in CML_KINDS) + tuple(f"{k}+size" for k in CML_KINDS)


def _logit(p):
    p = np.clip(np.asarray(p, float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _logistic_fit(X, y):
    """Unpenalised logistic regression (a tiny ridge keeps separable data finite): (intercept, coefficients)."""
    from sklearn.linear_model import LogisticRegression
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(X, y)
    return float(fit.intercept_[0]), fit.coef_[0].astype(float)


def _sub_params(prefix, tensors):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


class ResponseIntegration:
    """``<cml>+cnn``: mean of the radiomics classifier's and the CNN's probabilities; ``<cml>+size``: logistic
    regression on the classifier's logit and the tumour size (``tumor_size_mm``)."""

    task = "response"

    def __init__(self, kind="rf+cnn", epochs=30, width=8, device="auto"):
        if kind not in INTEGRATIONS:
            raise InputError(f"unknown response integration '{kind}'", column="--model",
                             fix="use one of " + ", ".join(INTEGRATIONS))
        self.kind = kind
        self.cml_kind, self.partner = kind.split("+")
        self.cml = RadiomicsResponseClassifier(self.cml_kind)
        self.cnn = ResponseCNN(epochs, width, device) if self.partner == "cnn" else None
        self.coefficients = None
        self.cutoff = 0.5
        self.info = {}
        self.provenance = ""
        self.notice = ""

    @property
    def label(self):
        return f"{self.cml_kind} + {'CNN' if self.cnn else 'tumour size'}"

    def labelled(self, data):
        return self.cml.labelled(data)

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
        self.cml.fit(labelled, seed=seed)
        if self.cnn is not None:
            self.cnn.fit(labelled, seed=seed)
        return self.combine(labelled)

    @classmethod
    def from_components(cls, kind, data, cml, cnn=None):
        """The integration of already trained components (``cml`` fitted in this process, so that its
        out-of-fold probabilities are known): only the combination is fitted."""
        model = cls(kind)
        model.cml = cml
        if model.partner == "cnn":
            model.cnn = cnn
        return model.combine(data)

    def combine(self, data):
        from ..stats.metrics import youden_cutoff
        labelled, y = self.labelled(data)
        out_of_fold = self.cml.out_of_fold
        if self.cnn is not None:
            combined = (out_of_fold + self.cnn.probability(labelled)) / 2
        else:
            X = np.column_stack([_logit(out_of_fold), self._size(labelled)])
            intercept, coef = _logistic_fit(X, y)
            self.coefficients = [intercept, *coef.tolist()]
            combined = self._combine_size(out_of_fold, self._size(labelled))
        self.cutoff = float(youden_cutoff(y, combined)[0])
        self.info = {"cml": self.cml.info, "cnn": self.cnn.info if self.cnn else None,
                     "coefficients": self.coefficients}
        return self

    def _combine_size(self, p_cml, size):
        b0, b_cml, b_size = self.coefficients
        return 1.0 / (1.0 + np.exp(-(b0 + b_cml * _logit(p_cml) + b_size * size)))

    def component_probabilities(self, data):
        parts = {self.cml_kind: self.cml.probability(data)}
        if self.cnn is not None:
            parts["cnn"] = self.cnn.probability(data)
        return parts

    def probability(self, data):
        parts = self.component_probabilities(data)
        if self.cnn is not None:
            return (parts[self.cml_kind] + parts["cnn"]) / 2
        return self._combine_size(parts[self.cml_kind], self._size(data))

    def predict(self, data):
        return prediction_table(self, data, self.probability(data))

    def params(self):
        return {"kind": self.kind, "cml": self.cml.params(), "cnn": self.cnn.params() if self.cnn else None,
                "coefficients": self.coefficients, "cutoff": self.cutoff}

    def tensors(self):
        out = {"cml." + k: v for k, v in self.cml.tensors().items()}
        if self.cnn is not None:
            out.update({"cnn." + k: v for k, v in self.cnn.tensors().items()})
        return out

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls(params["kind"])
        model.cml = RadiomicsResponseClassifier.from_params(params["cml"], _sub_params("cml.", tensors))
        if params["cnn"] is not None:
            model.cnn = ResponseCNN.from_params(params["cnn"], _sub_params("cnn.", tensors))
        model.coefficients, model.cutoff = params["coefficients"], params["cutoff"]
        return model

    def tables(self):
        return {"selected_features": pd.DataFrame({"feature": self.cml.features})}


class ModelCSD:
    """Seed 004's Model_CSD: logistic regression on the clinical-semantic score (Model_CS) and Model_D's
    logit; high risk at probability >= 0.28."""

    task = "aggressive-pd"
    kind = "csd"
    label = "Model_CSD (clinical-semantic + CNN)"

    def __init__(self, epochs=MODEL_D_EPOCHS, width=8, device="auto"):
        self.d = ModelD(epochs, width, device)
        self.cs = ClinicalSemanticScore()
        self.coefficients = None
        self.cutoff = HIGH_RISK_CUTOFF
        self.info = {}
        self.provenance = ""
        self.notice = ""

    def labelled(self, data):
        return self.d.labelled(data)

    def fit(self, data, seed=0):
        from ..stats.metrics import roc_auc
        labelled, y = self.labelled(data)
        check_classes(y)
        cs = self.cs.score(labelled.table)
        # The weights rest on Model_D's out-of-fold scores (each case scored by the member that did not train
        # on it), not on its optimistic scores of its own training cases.
        self.d.fit(labelled, seed=seed)
        cross = self.d.out_of_fold
        intercept, coef = _logistic_fit(np.column_stack([cs, _logit(cross)]), y)
        self.coefficients = {"intercept": intercept, "cs_score": float(coef[0]), "d_logit": float(coef[1])}
        self.info = {"model_d": {k: v for k, v in self.d.info.items() if k != "history"},
                     "auc_out_of_fold_model_d": float(roc_auc(y, cross)),
                     "auc_model_cs_training": float(roc_auc(y, cs)), "coefficients": self.coefficients,
                     "cs_score_range": [float(cs.min()), float(cs.max())]}
        return self

    def scores(self, data):
        """Per case: Model_CS's score, Model_D's probability and the combined linear predictor."""
        cs = self.cs.score(data.table)
        d = self.d.probability(data)
        c = self.coefficients
        return cs, d, c["intercept"] + c["cs_score"] * cs + c["d_logit"] * _logit(d)

    def probability(self, data):
        return 1.0 / (1.0 + np.exp(-self.scores(data)[2]))

    def predict(self, data):
        cs, d, lp = self.scores(data)
        probability = 1.0 / (1.0 + np.exp(-lp))
        return pd.DataFrame({"case_id": data.case_ids, "task": self.task, "model": self.label,
                             "cs_score": cs, "d_probability": d, "score": lp, "probability": probability,
                             "risk_group": np.where(probability >= self.cutoff, "high", "low"), "cutoff": self.cutoff,
                             "provenance": self.provenance, "notice": self.notice})

    def params(self):
        return {"kind": self.kind, "model_d": self.d.params(), "coefficients": self.coefficients,
                "cutoff": self.cutoff, "info": self.info}

    def tensors(self):
        return {"d." + k: v for k, v in self.d.tensors().items()}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls()
        model.d = ModelD.from_params(params["model_d"], _sub_params("d.", tensors))
        model.coefficients, model.cutoff, model.info = params["coefficients"], params["cutoff"], params.get("info", {})
        return model

    def tables(self):
        return {"coefficients": pd.DataFrame([{"term": k, "coefficient": v} for k, v in self.coefficients.items()])}
