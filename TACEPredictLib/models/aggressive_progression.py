"""Aggressive progression (extrahepatic metastasis or macrovascular invasion): paper 004's whole method.

Fu S, Pan M, Zhang J, Zhang H, Tang Z, Li Y, Mu W, Huang J, Dong D, Duan C, Li X, Wang S, Chen X, He X, Yan J,
Lu L, Tian J. Deep Learning-Based Prediction of Future Extrahepatic Metastasis and Macrovascular Invasion in
Hepatocellular Carcinoma. Journal of Hepatocellular Carcinoma (Dove Medical Press); the text in
shared/papers carries no year, volume, pages or DOI (``registry.PAPERS["004"]``). Its cohort: 332 patients of five
hospitals whose initial treatment was liver resection or TACE (BCLC 0, A, AB, B).

``ClinicalSemanticScore`` (Model_CS): without training, the published score with its published coefficients (no
bundle, no cut-off: the paper never thresholds Model_CS); ``fit`` derives it on a cohort by the paper's procedure
(univariate logistic screen, stepwise AIC, multivariable logistic; ``stats.logistic``). ``ModelD`` (Model_D): one
convolution block, six residual blocks, flatten, dropout, softmax, on the portal-phase lesion box (+5 pixels,
128 x 128) of every tumour slice; positives oversampled with Gaussian noise (variance 0.01 on the input scale;
the paper's 0.1 drowns the texture, see ``NOISE_VARIANCE``); shift, shear, rotation and zoom augmentation;
patient = mean of the slice scores. Five such networks, one per cross-validation fold, trained for a fixed
number of epochs; their mean is the score. ``ModelCSD`` (Model_CSD): logistic regression on Model_CS's score
and Model_D's logit, fitted on out-of-fold scores.

Cut-offs: every model fitted here takes the Youden cut-off of its out-of-fold training probabilities (the
paper's rule: "we used the Youden index to identify the threshold"); 0.28, the cut-off of the authors' own
Model_CSD, is ``PUBLISHED_CSD_CUTOFF``, used only when asked for (``cutoff="published"``) and named so.

    published score = -1.6705 + 0.009 x maximum diameter (mm) + 0.7009 x cirrhosis + 0.5365 x fusion lesion
                      - 0.4967 x [capsule non-intact] - 1.7083 x [capsule intact] + 0.6375 x nodule-in-nodule
    probability = 1 / (1 + exp(-score))

Coding (manifest columns): ``tumor_size_mm`` = the target lesion's largest diameter in mm; ``cirrhosis``,
``fusion_lesion`` (a confluent multinodular lesion) and ``nodule_in_nodule`` are 0 / 1; ``capsule`` is
``absent`` (the reference, no term), ``non-intact`` (a partial capsule) or ``intact`` (a complete capsule).
Research use only.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import InputError, InputWarning, RESEARCH_USE_NOTICE
from ..data.outcomes import aggressive_label
from .base import (FOLDS, ProbabilityModel, check_classes, labelled_cases, logistic_fit, logit, prediction_table,
                   sub_params)
from .networks import model_d_net, torch_module
from .training import PatchModel

PUBLISHED_COEFFICIENTS = {"intercept": -1.6705, "tumor_size_mm": 0.009, "cirrhosis": 0.7009,
                          "fusion_lesion": 0.5365, "capsule=non-intact": -0.4967, "capsule=intact": -1.7083,
                          "nodule_in_nodule": 0.6375}
# The Youden cut-off of the authors' fitted Model_CSD on their training cohort (paper 004, "Subgroup and Survival
# Analysis"): it belongs to their model, not to a Model_CSD fitted on another cohort.
PUBLISHED_CSD_CUTOFF = 0.28
REQUIRED_COLUMNS = ("tumor_size_mm", "cirrhosis", "fusion_lesion", "capsule", "nodule_in_nodule")
# Model_CS's candidate factors: those of paper 004 (Table 1, and its semantic factors) that the manifest has
# columns for. The paper's neutrophil-to-lymphocyte ratio, lobe, surface, invasive shape, capsule breakthrough,
# corona enhancement, corona with low attenuation, mosaic architecture, CT enhancement ratio and initial
# treatment enter as extra manifest columns named with --covariates.
CS_CANDIDATES = ("age", "sex", "hbv", "cirrhosis", "child_pugh", "bclc", "tumor_size_mm", "tumor_number",
                 "afp_ng_ml", "fusion_lesion", "capsule", "nodule_in_nodule")
# The univariate screen's threshold. The paper does not print it; 0.05 is its stated significance level ("a
# 2-sided p-value < 0.05 was considered statistically significant").
CS_UNIVARIATE_P = 0.05
OUTCOME_NAMES = ("aggressive progression", "no aggressive progression")
YOUDEN_RULE = "Youden cut-off of the training cases' out-of-fold probabilities ({folds}-fold)"
NO_CUTOFF_RULE = "none: paper 004 gives Model_CS no cut-off (set one with --cutoff)"
PUBLISHED_RULE = ("published: 0.28, the Youden cut-off of the authors' Model_CSD on their training cohort (paper "
                  "004), not one derived from this training cohort")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def out_of_fold_logistic(X, y, seed=0, folds=FOLDS):
    """Out-of-fold probabilities of an (all but unpenalised) logistic regression on ``X``: each case scored by
    the fit without its fold (the same stratified folds as Model_D's networks)."""
    from ..stats.splits import stratified_folds
    fold = stratified_folds(y, folds, seed)
    out = np.full(len(y), np.nan)
    for k in range(folds):
        held = fold == k
        intercept, coef = logistic_fit(X[~held], y[~held])
        out[held] = _sigmoid(intercept + X[held] @ coef)
    return out


def youden_of_out_of_fold(y, out_of_fold, what="the model"):
    """The cut-off every fitted model of this task takes: Youden's point of its out-of-fold probabilities. When
    no threshold does better than chance (Youden index 0, the best 'threshold' above every probability), the
    cut-off is 1.0, which calls no case high risk, with a warning."""
    from ..stats.metrics import youden_cutoff
    cutoff, sensitivity, specificity = youden_cutoff(y, out_of_fold)
    if sensitivity + specificity - 1 <= 0 or not np.isfinite(cutoff) or cutoff > 1.0:
        warnings.warn(f"the out-of-fold probabilities of {what} separate the outcomes no better than chance "
                      "(Youden index 0): its cut-off is 1.0, no case is called high risk", InputWarning, stacklevel=3)
        return 1.0
    return float(cutoff)


def derive_clinical_semantic(table, y, candidates=CS_CANDIDATES, p_threshold=CS_UNIVARIATE_P, encoder=None):
    """Paper 004's derivation of Model_CS on one cohort: the candidate columns encoded (numbers as they are,
    log10 AFP, categories as indicators against their first level, e.g. capsule ``absent``), a univariate
    logistic screen (each term's likelihood-ratio p < ``p_threshold``), stepwise AIC (``MASS::stepAIC``) from the
    model of the screened terms, and the multivariable logistic fit of what it keeps. ``encoder``: a coding
    already fitted (the cross-validation folds reuse the whole cohort's, which reads no outcome). Returns ``(encoder, fit, terms kept, screen, trace)``."""
    from ..data.cohort import ClinicalEncoder
    from ..stats.logistic import stepwise_aic_terms, univariate_logistic_screen
    encoder = encoder or ClinicalEncoder().fit(table, candidates)
    if not encoder.spec:
        raise InputError("none of the candidate factors is usable (present, not constant, mostly filled in)",
                         column="--covariates", fix="add the clinical / semantic columns of "
                                                    "docs/aggressive_progression.md to the manifest")
    design = encoder.transform(table, warn=False)
    terms = {item["column"]: list(item["names"]) for item in encoder.spec}
    screen = univariate_logistic_screen(design, y, terms)
    passed = list(screen.loc[screen["p"] < p_threshold, "term"])
    if not passed:
        fitted = screen.dropna(subset=["p"])
        if fitted.empty:
            raise InputError("no candidate factor can be fitted in a univariate logistic model (each separates "
                             "the outcomes or is constant)", column="aggressive_pd", fix="check the labels")
        passed = [fitted["term"].iloc[0]]
        warnings.warn(f"no candidate factor reaches p < {p_threshold} in the univariate logistic screen; "
                      f"starting the stepwise selection from the strongest, '{passed[0]}'", InputWarning,
                      stacklevel=3)
    from ..stats.cox import ConvergenceError
    try:
        fit, kept, trace = stepwise_aic_terms(design, y, terms, passed)
    except ConvergenceError as exc:
        raise InputError(f"the logistic model of {', '.join(passed)} cannot be fitted: {exc}",
                         column="aggressive_pd", fix="drop the separating factor from --covariates") from None
    return encoder, fit, kept, screen, trace


class ClinicalSemanticScore(ProbabilityModel):
    """Model_CS. Untrained: the published logistic score (``predict(table)`` needs only the manifest; no cut-off
    unless one is set). ``fit``: derived on the training cohort by the paper's procedure, with the Youden
    cut-off of its out-of-fold probabilities (the whole derivation repeated without each fold)."""

    task = "aggressive-pd"
    kind = "clinical-semantic"
    label = "clinical-semantic (published coefficients)"
    provenance = ("aggressive-pd / clinical-semantic: the published Model_CS coefficients (paper 004: Fu S, Pan M, "
                  "Zhang J, et al. Deep Learning-Based Prediction of Future Extrahepatic Metastasis and "
                  "Macrovascular Invasion in Hepatocellular Carcinoma. J Hepatocell Carcinoma), used as "
                  "published; not trained or re-calibrated by TACEPredict, not validated on this cohort")
    notice = RESEARCH_USE_NOTICE
    group_names = ("high", "low")

    def __init__(self, p_threshold=CS_UNIVARIATE_P, covariates=None):
        self.info = {}
        self.p_threshold = float(p_threshold)
        self.candidate_columns = tuple(covariates or CS_CANDIDATES)
        self.coefficients = dict(PUBLISHED_COEFFICIENTS)
        self.encoder = None  # set when fitted: the fitted score reads its columns through it
        self.cutoff = None
        self.cutoff_rule = NO_CUTOFF_RULE
        self.extra = {}
        self.out_of_fold = self.out_of_fold_score = None

    @property
    def fitted(self):
        return self.encoder is not None

    def labelled(self, data):
        return labelled_cases(data, aggressive_label(data.table))

    def design(self, table):
        """The published score's five factors as numbers, checked: a missing or invalid value names the case and
        the column (a published score imputes nothing)."""
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
        """The linear score (log-odds) per case."""
        names = [k for k in self.coefficients if k != "intercept"]
        if self.fitted:
            design = self.encoder.transform(table, names=names)
            values = design[names].to_numpy(dtype=float) if names else np.zeros((len(table), 0))
        else:
            values = self.design(table)[names].to_numpy(dtype=float)
        return self.coefficients["intercept"] + values @ np.array([self.coefficients[n] for n in names], float)

    def probability(self, data):
        return _sigmoid(self.score(data.table))

    def predict(self, data):
        """One row per case: the score, the probability of aggressive progression and the risk group (empty
        without a cut-off)."""
        score = self.score(data.table)
        return prediction_table(self, data, _sigmoid(score), score=score)

    def fit(self, data, seed=0):
        from ..stats.metrics import roc_auc
        from ..stats.splits import stratified_folds
        labelled, y = self.labelled(data)
        check_classes(y, column="aggressive_pd", names=OUTCOME_NAMES)
        table = labelled.table.reset_index(drop=True)
        encoder, fit, kept, screen, trace = derive_clinical_semantic(table, y, self.candidate_columns,
                                                                     self.p_threshold)
        # out of fold: the whole derivation (screen, stepwise AIC, fit) repeated without each fold
        fold = stratified_folds(y, FOLDS, seed)
        oof = np.full(len(y), np.nan)
        kept_per_fold = []
        for k in range(FOLDS):
            held = fold == k
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InputWarning)
                try:
                    e, f, kk, _, _ = derive_clinical_semantic(table[~held], y[~held], self.candidate_columns,
                                                              self.p_threshold, encoder=encoder)
                except InputError as exc:
                    raise InputError(f"the derivation fails without cross-validation fold {k + 1} of {FOLDS}: "
                                     f"{exc.problem}", column="aggressive_pd", fix="train on more cases") from None
            oof[held] = f.linear_predictor(e.transform(table[held], warn=False, names=f.names)[f.names]
                                           .to_numpy(float)) if f.names else f.intercept
            kept_per_fold.append(kk)
        self.encoder = encoder
        self.coefficients = {"intercept": fit.intercept, **{n: float(c) for n, c in zip(fit.names, fit.coef)}}
        self.out_of_fold_score, self.out_of_fold = oof, _sigmoid(oof)
        self.cutoff = youden_of_out_of_fold(y, self.out_of_fold, "Model_CS")
        self.cutoff_rule = YOUDEN_RULE.format(folds=FOLDS) + ", the derivation repeated in each fold"
        self.label = "Model_CS (derived on the training cohort)"
        if not kept:
            warnings.warn("the stepwise AIC selection kept no factor: Model_CS is the intercept alone (every case "
                          "gets the training prevalence)", InputWarning, stacklevel=2)
        self.extra = {"univariate": screen.to_dict(orient="records"), "stepwise": trace.to_dict(orient="records"),
                      "coefficients": fit.summary().to_dict(orient="records")}
        self.info = {"cases": int(len(y)), "events": int(y.sum()), "p_threshold": self.p_threshold,
                     "candidates": list(terms_of(encoder)), "screened": list(screen.loc[screen["p"] <
                                                                                     self.p_threshold, "term"]),
                     "kept": list(kept), "kept_per_fold": kept_per_fold,
                     "auc_training_out_of_fold": float(roc_auc(y, self.out_of_fold))}
        return self

    def params(self):
        if not self.fitted:
            return {"kind": self.kind, "fitted": False, "cutoff": self.cutoff, "cutoff_rule": self.cutoff_rule}
        return {"kind": self.kind, "fitted": True, "coefficients": self.coefficients,
                "encoder": self.encoder.to_dict(), "p_threshold": self.p_threshold,
                "candidates": list(self.candidate_columns), "cutoff": self.cutoff, "cutoff_rule": self.cutoff_rule,
                "label": self.label, "extra": self.extra, "info": self.info}

    @classmethod
    def from_params(cls, params, tensors=None):
        from ..data.cohort import ClinicalEncoder
        model = cls(params.get("p_threshold", CS_UNIVARIATE_P), params.get("candidates"))
        if params.get("fitted"):
            model.encoder = ClinicalEncoder.from_dict(params["encoder"])
            model.coefficients = {k: float(v) for k, v in params["coefficients"].items()}
            model.label, model.extra, model.info = params["label"], params.get("extra", {}), params.get("info", {})
        model.cutoff, model.cutoff_rule = params.get("cutoff"), params.get("cutoff_rule", model.cutoff_rule)
        return model

    def tables(self):
        return {name: pd.DataFrame(self.extra[name]) for name in ("univariate", "stepwise", "coefficients")
                if name in self.extra}


def terms_of(encoder):
    return [item["column"] for item in encoder.spec]


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
    cutoff_rule = YOUDEN_RULE.format(folds=FOLDS)

    def __init__(self, epochs=MODEL_D_EPOCHS, width=8, device="auto"):
        super().__init__(epochs, width, device)

    def case_label(self, table):
        return aggressive_label(table)

    def build(self):
        return model_d_net(self.width)

    def optimiser(self, net):
        return torch_module().optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)

    def params(self):
        return {**super().params(), "cutoff_rule": self.cutoff_rule}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = super().from_params(params, tensors)
        model.cutoff_rule = params.get("cutoff_rule", cls.cutoff_rule)
        return model

    def training_options(self):
        from ..imaging.sampling import Augmenter
        # A fixed number of epochs: picking the epoch by a fold of ~28 cases (6 positives) picked noise (epochs
        # 1-6 of 40 on the demo), and would make the fold's out-of-fold scores optimistic. Noise variance
        # NOISE_VARIANCE, not the paper's 0.1: see its comment.
        return {"batch_size": 32, "oversample_noise": (NOISE_VARIANCE, 1), "per_group": 4, "select": "last",
                "augment": Augmenter(flips=False, rotate90=True, shift=0.1, shear_deg=10.0, zoom=0.1)}


CS_SOURCES = ("refit", "published-cs")


class ModelCSD(ProbabilityModel):
    """Paper 004's Model_CSD: logistic regression on the clinical-semantic score (Model_CS) and Model_D's logit.
    ``variant``: ``refit`` (default, the paper's procedure: Model_CS derived on the training cohort) or
    ``published-cs`` (the published Model_CS coefficients as its clinical-semantic part). Cut-off: the Youden point of the out-of-fold
    probabilities (``registry.train``'s ``cutoff`` sets the published 0.28 or a number instead)."""

    task = "aggressive-pd"
    kind = "csd"
    label = "Model_CSD (clinical-semantic + CNN)"
    group_names = ("high", "low")
    published_cutoff = (PUBLISHED_CSD_CUTOFF, PUBLISHED_RULE)

    def __init__(self, epochs=MODEL_D_EPOCHS, width=8, device="auto", variant="refit",
                 p_threshold=CS_UNIVARIATE_P, covariates=None):
        super().__init__(cutoff=None)
        if variant not in CS_SOURCES:
            raise InputError(f"unknown Model_CSD variant '{variant}'", column="--variant",
                             fix="use refit (Model_CS derived on this cohort, the paper's procedure) or "
                                 "published-cs (the published Model_CS coefficients)")
        self.variant = variant
        self.d = ModelD(epochs, width, device)
        self.cs = ClinicalSemanticScore(p_threshold, covariates)
        self.coefficients = None
        self.cutoff_rule = YOUDEN_RULE.format(folds=FOLDS)

    def labelled(self, data):
        return self.d.labelled(data)

    def fit(self, data, seed=0):
        from ..stats.metrics import roc_auc
        labelled, y = self.labelled(data)
        check_classes(y, column="aggressive_pd", names=OUTCOME_NAMES)
        # The weights rest on out-of-fold scores (each case scored by a Model_D network, and a Model_CS derivation,
        # that did not see it), not on the components' optimistic scores of their own training cases.
        if self.variant == "refit":
            self.cs.fit(labelled, seed=seed)
            cs = self.cs.out_of_fold_score
        else:
            cs = self.cs.score(labelled.table)
        self.d.fit(labelled, seed=seed)
        cross = self.d.out_of_fold
        X = np.column_stack([cs, logit(cross)])
        intercept, coef = logistic_fit(X, y)
        self.coefficients = {"intercept": intercept, "cs_score": float(coef[0]), "d_logit": float(coef[1])}
        # its own out-of-fold probabilities: the combination refitted without each fold, on the same folds
        self.out_of_fold = out_of_fold_logistic(X, y, seed)
        self.cutoff = youden_of_out_of_fold(y, self.out_of_fold, "Model_CSD")
        self.cutoff_rule = YOUDEN_RULE.format(folds=FOLDS)
        self.info = {"model_d": {k: v for k, v in self.d.info.items() if k != "history"},
                     "variant": self.variant,
                     "auc_out_of_fold_model_d": float(roc_auc(y, cross)),
                     "auc_out_of_fold": float(roc_auc(y, self.out_of_fold)),
                     ("auc_out_of_fold_model_cs" if self.variant == "refit" else "auc_model_cs_training"):
                         float(roc_auc(y, cs)), "coefficients": self.coefficients,
                     "cs_score_range": [float(cs.min()), float(cs.max())]}
        return self

    def scores(self, data):
        """Per case: Model_CS's score, Model_D's probability and the combined linear predictor."""
        cs = self.cs.score(data.table)
        d = self.d.probability(data)
        c = self.coefficients
        return cs, d, c["intercept"] + c["cs_score"] * cs + c["d_logit"] * logit(d)

    def probability(self, data):
        return _sigmoid(self.scores(data)[2])

    def predict(self, data):
        cs, d, lp = self.scores(data)
        return prediction_table(self, data, _sigmoid(lp), score=lp, extra={"cs_score": cs, "d_probability": d})

    def params(self):
        return {"kind": self.kind, "model_d": self.d.params(), "variant": self.variant,
                "model_cs": self.cs.params(), "coefficients": self.coefficients, "cutoff": self.cutoff,
                "cutoff_rule": self.cutoff_rule, "info": self.info}

    def tensors(self):
        return {"d." + k: v for k, v in self.d.tensors().items()}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls()
        model.d = ModelD.from_params(params["model_d"], sub_params("d.", tensors))
        model.coefficients, model.cutoff, model.info = params["coefficients"], params["cutoff"], params.get("info", {})
        if "model_cs" in params:
            model.variant = params["variant"]
            model.cs = ClinicalSemanticScore.from_params(params["model_cs"])
            model.cutoff_rule = params["cutoff_rule"]
        else:  # a bundle written before Model_CS could be refitted: the published score and the published 0.28
            model.variant = "published-cs"
            model.cs = ClinicalSemanticScore()
            model.cutoff_rule = (PUBLISHED_RULE + "; kept from a bundle written before TACEPredict derived "
                                 "Model_CSD's own cut-off" if model.cutoff == PUBLISHED_CSD_CUTOFF
                                 else "as stored in the bundle")
        return model

    def tables(self):
        tables = {"coefficients": pd.DataFrame([{"term": k, "coefficient": v} for k, v in self.coefficients.items()])}
        tables.update({f"model_cs_{name}": table for name, table in self.cs.tables().items()})
        return tables
