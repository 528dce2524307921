"""Aggressive progression (extrahepatic metastasis or macrovascular invasion): seed 004's whole method.

Fu S, Pan M, Zhang J, et al. Deep Learning-Based Prediction of Future Extrahepatic Metastasis and Macrovascular
Invasion in Hepatocellular Carcinoma. J Hepatocell Carcinoma (Dove Medical Press); the text carries no year,
volume or DOI.

``ModelD`` (Model_D): one convolution block, six residual blocks, flatten, dropout, softmax, on the portal-phase
lesion box (+5 pixels, 128 x 128) of every tumour slice; positives oversampled with Gaussian noise (variance
0.01 on the input scale; the paper's 0.1 drowns the texture, see ``NOISE_VARIANCE``); shift, shear, rotation
and zoom augmentation; patient = mean of the slice scores. Five such networks, one per cross-validation fold,
trained for a fixed number of epochs; their mean is the score. ``ModelCSD`` (Model_CSD): logistic regression on
Model_CS's score and Model_D's logit, fitted on Model_D's out-of-fold scores.

``ClinicalSemanticScore`` is the published clinical-semantic model (Model_CS) with its published coefficients:
it needs no training and no bundle. Research use only: it was fitted on the paper's cohort, not validated here
on real patients.

    score = -1.6705 + 0.009 x maximum diameter (mm) + 0.7009 x cirrhosis + 0.5365 x fusion lesion
            - 0.4967 x [capsule non-intact] - 1.7083 x [capsule intact] + 0.6375 x nodule-in-nodule
    probability = 1 / (1 + exp(-score));  high risk when probability >= 0.28

Coding (manifest columns): ``tumor_size_mm`` = the target lesion's largest diameter in mm; ``cirrhosis``,
``fusion_lesion`` (a confluent multinodular lesion) and ``nodule_in_nodule`` are 0 / 1; ``capsule`` is
``absent`` (the reference, no term), ``non-intact`` (a partial capsule) or ``intact`` (a complete capsule).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError, RESEARCH_USE_NOTICE
from ..data.outcomes import aggressive_label
from .base import (ProbabilityModel, PublishedScore, check_classes, labelled_cases, logistic_fit, logit,
                   prediction_table, sub_params)
from .networks import model_d_net, torch_module
from .training import PatchModel

PUBLISHED_COEFFICIENTS = {"intercept": -1.6705, "tumor_size_mm": 0.009, "cirrhosis": 0.7009,
                          "fusion_lesion": 0.5365, "capsule=non-intact": -0.4967, "capsule=intact": -1.7083,
                          "nodule_in_nodule": 0.6375}
HIGH_RISK_CUTOFF = 0.28
REQUIRED_COLUMNS = ("tumor_size_mm", "cirrhosis", "fusion_lesion", "capsule", "nodule_in_nodule")


class ClinicalSemanticScore(PublishedScore):
    """Model_CS: the published logistic clinical-semantic score; ``predict(table)`` needs only the manifest."""

    task = "aggressive-pd"
    kind = "clinical-semantic"
    label = "clinical-semantic (published coefficients)"
    provenance = ("aggressive-pd / clinical-semantic: the published Model_CS coefficients (seed 004), used as "
                  "published; not trained or re-calibrated by TACEPredict, not validated on this cohort")
    notice = RESEARCH_USE_NOTICE
    cutoff = HIGH_RISK_CUTOFF
    group_names = ("high", "low")

    def labelled(self, data):
        return labelled_cases(data, aggressive_label(data.table))

    def design(self, table):
        """The five factors as numbers, checked: a missing or invalid value names the case and the column."""
        for column in REQUIRED_COLUMNS:
            if column not in table.columns:
                raise InputError(f"Model_CS needs the column '{column}', which this manifest lacks", column=column,
                                 fix=f"add '{column}' (see docs/aggressive_progression.md for its coding)")
            missing = table[column].isna()
            if missing.any():
                raise InputError("missing; Model_CS needs all five factors", table.loc[missing, "case_id"].iloc[0],
                                 column, "fill it in (no value is imputed for a published score)")
        capsule = table["capsule"].astype(str)
        unknown = ~capsule.isin(("absent", "non-intact", "intact"))
        if unknown.any():
            raise InputError(f"unknown capsule code '{capsule[unknown].iloc[0]}'", table.loc[unknown, "case_id"].iloc[0],
                             "capsule", "use absent, non-intact or intact")
        return pd.DataFrame({
            "tumor_size_mm": pd.to_numeric(table["tumor_size_mm"]).to_numpy(dtype=float),
            "cirrhosis": pd.to_numeric(table["cirrhosis"]).to_numpy(dtype=float),
            "fusion_lesion": pd.to_numeric(table["fusion_lesion"]).to_numpy(dtype=float),
            "capsule=non-intact": (capsule == "non-intact").to_numpy(dtype=float),
            "capsule=intact": (capsule == "intact").to_numpy(dtype=float),
            "nodule_in_nodule": pd.to_numeric(table["nodule_in_nodule"]).to_numpy(dtype=float),
        }, index=table["case_id"].to_numpy())

    def score(self, table):
        design = self.design(table)
        coefficients = pd.Series(PUBLISHED_COEFFICIENTS)
        return PUBLISHED_COEFFICIENTS["intercept"] + design.to_numpy() @ coefficients[design.columns].to_numpy()

    def probability(self, data):
        return 1.0 / (1.0 + np.exp(-self.score(data.table)))

    def predict(self, data):
        """One row per case: the score, the probability of aggressive progression and the risk group."""
        score = self.score(data.table)
        return prediction_table(self, data, 1.0 / (1.0 + np.exp(-score)), score=score)


# Model_D's oversampling noise, on the network's input scale (HU window W400 L50 mapped to unit scale: 1 = 100
# HU). The paper's variance 0.1 (a standard deviation of 32 HU here) swamps the 6-40 HU lesion texture that
# carries the signal: over training seeds 0-3 on the demo cohort, the internal validation cases' AUC was
# 0.65-0.80 (mean 0.72) with 0.1 and 0.67-0.83 (mean 0.77) with 0.01 (docs/aggressive_progression.md).
NOISE_VARIANCE = 0.01
# Model_D's epochs, fixed: on the demo's training cases (internal 5-fold CV, one network) its out-of-fold
# scores tracked the phantom's true image risk better after 25 epochs than after 15 (Spearman 0.57 / 0.57 vs
# 0.40 / 0.53 over two seeds) and no better after 45 (0.56).
MODEL_D_EPOCHS = 25


class ModelD(PatchModel):
    """Seed 004's Model_D: probability of aggressive progression from every tumour slice's portal-phase box."""

    task = "aggressive-pd"
    kind = "model-d"
    patch_set = "boxes"
    channels = 1
    label = "Model_D (CNN, portal-phase slice boxes)"
    group_names = ("high", "low")
    label_column = "aggressive_pd"
    outcome_names = ("aggressive progression", "no aggressive progression")

    members = 5  # a five-fold cross-validation ensemble (see _PatchModel)

    def __init__(self, epochs=MODEL_D_EPOCHS, width=8, device="auto"):
        super().__init__(epochs, width, device)

    def case_label(self, table):
        return aggressive_label(table)

    def build(self):
        return model_d_net(self.width)

    def optimiser(self, net):
        return torch_module().optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)

    def training_options(self):
        from ..imaging.sampling import Augmenter
        # A fixed number of epochs: picking the epoch by a fold of ~28 cases (6 positives) picked noise (epochs
        # 1-6 of 40 on the demo), and would make the fold's out-of-fold scores optimistic. Noise variance
        # NOISE_VARIANCE, not the paper's 0.1: see its comment.
        return {"batch_size": 32, "oversample_noise": (NOISE_VARIANCE, 1), "per_group": 4, "select": "last",
                "augment": Augmenter(flips=False, rotate90=True, shift=0.1, shear_deg=10.0, zoom=0.1)}


class ModelCSD(ProbabilityModel):
    """Seed 004's Model_CSD: logistic regression on the clinical-semantic score (Model_CS) and Model_D's
    logit; high risk at probability >= 0.28."""

    task = "aggressive-pd"
    kind = "csd"
    label = "Model_CSD (clinical-semantic + CNN)"
    group_names = ("high", "low")

    def __init__(self, epochs=MODEL_D_EPOCHS, width=8, device="auto"):
        super().__init__(cutoff=HIGH_RISK_CUTOFF)
        self.d = ModelD(epochs, width, device)
        self.cs = ClinicalSemanticScore()
        self.coefficients = None

    def labelled(self, data):
        return self.d.labelled(data)

    def fit(self, data, seed=0):
        from ..stats.metrics import roc_auc
        labelled, y = self.labelled(data)
        check_classes(y, column="aggressive_pd", names=ModelD.outcome_names)
        cs = self.cs.score(labelled.table)
        # The weights rest on Model_D's out-of-fold scores (each case scored by the member that did not train
        # on it), not on its optimistic scores of its own training cases.
        self.d.fit(labelled, seed=seed)
        cross = self.d.out_of_fold
        intercept, coef = logistic_fit(np.column_stack([cs, logit(cross)]), y)
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
        return cs, d, c["intercept"] + c["cs_score"] * cs + c["d_logit"] * logit(d)

    def probability(self, data):
        return 1.0 / (1.0 + np.exp(-self.scores(data)[2]))

    def predict(self, data):
        cs, d, lp = self.scores(data)
        return prediction_table(self, data, 1.0 / (1.0 + np.exp(-lp)), score=lp,
                                extra={"cs_score": cs, "d_probability": d})

    def params(self):
        return {"kind": self.kind, "model_d": self.d.params(), "coefficients": self.coefficients,
                "cutoff": self.cutoff, "info": self.info}

    def tensors(self):
        return {"d." + k: v for k, v in self.d.tensors().items()}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls()
        model.d = ModelD.from_params(params["model_d"], sub_params("d.", tensors))
        model.coefficients, model.cutoff, model.info = params["coefficients"], params["cutoff"], params.get("info", {})
        return model

    def tables(self):
        return {"coefficients": pd.DataFrame([{"term": k, "coefficient": v} for k, v in self.coefficients.items()])}
