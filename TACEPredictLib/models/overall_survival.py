"""Overall-survival models (research use only): Cox nomograms, the deep-feature signature, radiomics
LASSO-Cox, clinical Cox; DLOP-Combin lives in ``dlop.py``. Every model has the same interface:

    model = MODEL_CLASSES[kind](**options).fit(data, seed)     # data: covariates.CohortData
    model.predict(data)          # case_id, risk_score, risk_group, surv_1y, surv_2y, surv_3y, provenance
    model.params() / model.tensors()  -> what a bundle stores;  cls.from_params(params, tensors)

Times are days; survival probabilities are given at 1, 2 and 3 years (365.25 days each).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import InputError, InputWarning
from ..stats.cox import (ConvergenceError, breslow_baseline, cv_elastic_net_cox, fit_cox, mrmr_rank, score_statistics,
                  stepwise_aic, survival_from_baseline, univariate_screen)
from ..data.cohort import DEFAULT_CLINICAL, ClinicalEncoder, Standardiser
from ..data.outcomes import check_events, complete_outcome_rows, survival_outcome
from .base import Model

DAYS_PER_YEAR = 365.25
HORIZON_YEARS = (1, 2, 3)
# Survival curves (the Slicer chart, training Kaplan-Meier by risk group): monthly to 4 years, DLOP-Combin's
# last interval.
CURVE_YEARS = np.round(np.arange(0, 4 + 1e-9, 1 / 12), 4)
DEEP_PHASES = ("ct_ap", "ct_pvp")

# Paper 000 (Zhang et al., Front Oncol 2020), Methods: "Continuous variables were transformed into categorical
# variables based on recognized cutoff values"; the cut-offs are its Table 1's (the manifest keeps tumour size
# in mm, so > 5 cm is > 50 mm; ECOG 0 vs 1 was the paper's range, >= 1 codes anything past 0).
PAPER_000_DICHOTOMIES = {
    "age": (">", 55, "age > 55 years"),
    "afp_ng_ml": (">", 400, "AFP > 400 ng/mL"),
    "alt_u_l": (">", 50, "ALT > 50 U/L"),
    "ast_u_l": (">", 40, "AST > 40 U/L"),
    "tumor_size_mm": (">", 50, "largest tumour > 5 cm"),
    "tumor_number": (">=", 3, "tumours >= 3"),
    "ecog": (">=", 1, "ECOG >= 1"),
}
# Paper 000's candidate clinical factors (Methods and Table 1) that the manifest has; its tumour distribution
# (uni- / bilobar), hepatic vein invasion and HBsAg level have no manifest column.
PAPER_000_CLINICAL = ("age", "sex", "bclc", "child_pugh", "ecog", "afp_ng_ml", "alt_u_l", "ast_u_l",
                      "tumor_size_mm", "tumor_number", "cirrhosis", "hbv", "portal_vein_invasion")
# "paper": the dichotomies and candidates above (the default); "continuous": numbers as numbers (log10 AFP) over
# the project's DEFAULT_CLINICAL, what TACEPredict did before and what bundles without the field mean.
CLINICAL_CODINGS = ("paper", "continuous")


def training_outcome(data):
    """The cases of ``data`` with an OS outcome, and their ``(time, event)``; stops when too few events."""
    data = data.subset(complete_outcome_rows(data.table, "os"))
    time, event = survival_outcome(data.table, "os")
    check_events(time, event, len(time))
    return data, time, event


class LinearSignature:
    """A linear score over standardised image features: mRMR (or univariate) ranking, then a cross-validated
    elastic-net Cox model. ``score(data)`` is the signature's linear predictor."""

    def __init__(self, family="densenet121", phases=DEEP_PHASES, ranking="mrmr", n_candidates=30,
                 l1_ratios=(0.1, 0.5, 0.9, 1.0), icc_filter=True):
        self.family = family
        self.phases = tuple(phases)
        self.ranking = ranking
        self.n_candidates = n_candidates
        self.l1_ratios = tuple(l1_ratios)
        self.icc_filter = icc_filter
        self.standardiser = Standardiser()
        self.coef = np.zeros(0)
        self.info = {}

    def fit(self, data, time, event, seed=0):
        wide = data.features(self.phases, self.family, icc_filter=self.icc_filter)
        values = wide.to_numpy(dtype=float)
        varying = values.std(0) > 1e-12
        wide = wide.loc[:, varying]
        if wide.shape[1] == 0:
            raise InputError(f"every {self.family} feature is constant over the training cases", column="--features",
                             fix="check the extraction (features.parquet)")
        scaler = Standardiser().fit(wide)
        Z = scaler.transform(wide)
        relevance = score_statistics(Z, time, event)
        if self.ranking == "mrmr":
            candidates = mrmr_rank(Z, relevance, self.n_candidates)
        else:
            candidates = list(np.argsort(-np.abs(relevance))[:self.n_candidates])
        fit = cv_elastic_net_cox(Z[:, candidates], time, event, l1_ratios=self.l1_ratios, seed=seed)
        keep = np.flatnonzero(fit.coef != 0)
        if keep.size == 0:
            warnings.warn(f"the cross-validated elastic net kept no {self.family} feature: the signature is "
                          "constant (no image signal found)", InputWarning, stacklevel=2)
        chosen = [candidates[k] for k in keep]
        names = [wide.columns[j] for j in chosen]
        self.standardiser = Standardiser(names, scaler.mean[chosen], scaler.sd[chosen])
        self.coef = fit.coef[keep]
        icc = data.icc()
        self.info = {"features_available": int(values.shape[1]), "features_varying": int(varying.sum()),
                     "icc_filtered": bool(self.icc_filter and icc is not None),
                     "candidates": [wide.columns[j] for j in candidates], "l1_ratio": fit.l1_ratio,
                     "lambda": fit.lam, "nonzero": int(keep.size)}
        return self

    def score(self, data):
        if not self.standardiser.names:
            return np.zeros(len(data.case_ids))
        wide = data.features(self.phases, self.family, names=self.standardiser.names)
        return self.standardiser.transform(wide) @ self.coef

    def to_dict(self):
        return {"family": self.family, "phases": list(self.phases), "ranking": self.ranking,
                "n_candidates": self.n_candidates, "l1_ratios": list(self.l1_ratios), "icc_filter": self.icc_filter,
                "standardiser": self.standardiser.to_dict(), "coef": self.coef.tolist(), "info": self.info}

    @classmethod
    def from_dict(cls, data):
        sig = cls(data["family"], data["phases"], data["ranking"], data["n_candidates"], data["l1_ratios"],
                  data["icc_filter"])
        sig.standardiser = Standardiser.from_dict(data["standardiser"])
        sig.coef = np.asarray(data["coef"], dtype=float)
        sig.info = data.get("info", {})
        return sig

    def coefficient_table(self):
        return pd.DataFrame({"feature": self.standardiser.names, "coef": self.coef,
                             "train_mean": self.standardiser.mean, "train_sd": self.standardiser.sd})


def select_clinical(design, time, event, p_threshold=0.05):
    """Covariates significant in univariate Cox and then in the multivariable Cox of those (seed 001's rule).
    Returns ``(names, univariate_table)``; never empty: falls back to the strongest univariate covariate."""
    screen = univariate_screen(design.to_numpy(dtype=float), time, event, list(design.columns))
    passed = list(screen.loc[screen["p"] < p_threshold, "covariate"])
    if not passed:
        best = screen["covariate"].iloc[0]
        warnings.warn(f"no clinical covariate reaches p < {p_threshold} in univariate Cox; keeping the strongest, "
                      f"'{best}'", InputWarning, stacklevel=2)
        return [best], screen
    _check_events_per_covariate(len(passed), event)
    fit = fit_cox(design[passed].to_numpy(dtype=float), time, event, passed)
    kept = list(fit.summary().query("p < @p_threshold")["covariate"])
    return (kept or [passed[0]]), screen


def _check_events_per_covariate(n_covariates, event):
    events = int(np.sum(event))
    if n_covariates >= events:
        raise InputError(f"{n_covariates} covariates for {events} events: a Cox model cannot be fitted",
                         column="os_event", fix="lower --p-threshold, use fewer covariates, or train lasso-cox")
    if events < 10 * n_covariates:
        warnings.warn(f"{events} events for {n_covariates} covariates (fewer than 10 per covariate): the model "
                      "may overfit", InputWarning, stacklevel=3)


class SurvivalModel(Model):
    """Shared prediction, cut-off and serialisation logic; subclasses set ``kind`` and implement
    ``fit``, ``risk_score``, ``survival_days`` and ``params``."""

    task = "survival"
    kind = None
    cutoff_rule = "median of the training risk scores"

    def __init__(self):
        super().__init__(cutoff=np.nan)

    def survival(self, data, years=HORIZON_YEARS):
        return self.survival_days(data, np.asarray(years, dtype=float) * DAYS_PER_YEAR)

    @property
    def label(self):
        """The kind and, where it has one, the variant: 'dlop (ct-only)'."""
        variant = getattr(self, "variant", None) or getattr(self, "extra", {}).get("variant")
        return f"{self.kind} ({variant})" if variant else self.kind

    def risk_and_survival(self, data):
        """Risk scores and survival at 1, 2 and 3 years (a model whose inputs are costly overrides this)."""
        return self.risk_score(data), self.survival(data)

    def predict(self, data):
        risk, surv = self.risk_and_survival(data)
        out = pd.DataFrame({"case_id": data.case_ids, "task": self.task, "model": self.label,
                            "risk_score": risk, "risk_group": np.where(risk > self.cutoff, "high", "low"),
                            "cutoff": self.cutoff})
        for k, years in enumerate(HORIZON_YEARS):
            out[f"surv_{years}y"] = surv[:, k]
        out["provenance"] = self.provenance
        out["notice"] = self.notice
        return out

    def tensors(self):
        return None

    def tables(self):
        """Named tables a bundle folder also shows as CSV (hazard ratios, selection steps, ...)."""
        return {}


class CoxModel(SurvivalModel):
    """A Cox model over named covariates: encoded clinical columns and / or image signature scores."""

    def __init__(self):
        super().__init__()
        self.encoder = None
        self.signature = None
        self.covariates = []
        self.fit_result = None
        self.coef = np.zeros(0)
        self.baseline = (np.zeros(0), np.zeros(0))
        self.extra = {}

    def design(self, data, warn=True, covariates=None):
        """Encoded clinical columns and the signature score; ``covariates`` limits it to what a fitted model
        uses, so that prediction reads only those inputs."""
        parts = []
        if self.encoder is not None:
            parts.append(self.encoder.transform(data.table, warn=warn, names=covariates))
        if self.signature is not None and (covariates is None or "signature" in covariates):
            parts.append(pd.DataFrame({"signature": self.signature.score(data)}, index=data.case_ids))
        return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=data.case_ids)

    def _finish(self, design, time, event, covariates):
        """Fit the final Cox model on ``covariates`` and set the baseline and the median cut-off."""
        self.covariates = list(covariates)
        X = design[self.covariates].to_numpy(dtype=float)
        try:
            self.fit_result = fit_cox(X, time, event, self.covariates)
        except ConvergenceError as exc:
            raise InputError(f"the Cox model on {', '.join(self.covariates)} does not converge: {exc}",
                             column="os_event", fix="drop the separating covariate or use lasso-cox") from None
        self.coef = self.fit_result.coef
        self.baseline = (self.fit_result.baseline_time, self.fit_result.baseline_cumhaz)
        self.cutoff = float(np.median(X @ self.coef))
        return self

    def risk_score(self, data):
        return self.design(data, covariates=self.covariates)[self.covariates].to_numpy(dtype=float) @ self.coef

    def survival_days(self, data, days):
        return survival_from_baseline(self.risk_score(data), *self.baseline, days)

    def hazard_ratios(self):
        if self.fit_result is not None:
            return self.fit_result.summary()
        return pd.DataFrame(self.extra.get("hazard_ratios", []))

    def params(self):
        table = self.hazard_ratios()
        return {"kind": self.kind, "covariates": self.covariates, "coef": self.coef.tolist(),
                "baseline_time_days": self.baseline[0].tolist(), "baseline_cumhaz": self.baseline[1].tolist(),
                "cutoff": self.cutoff, "cutoff_rule": self.cutoff_rule,
                "encoder": self.encoder.to_dict() if self.encoder else None,
                "signature": self.signature.to_dict() if self.signature else None,
                "hazard_ratios": table.to_dict(orient="records"), "extra": self.extra}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls.__new__(cls)
        CoxModel.__init__(model)
        model.covariates = params["covariates"]
        model.coef = np.asarray(params["coef"], dtype=float)
        model.baseline = (np.asarray(params["baseline_time_days"]), np.asarray(params["baseline_cumhaz"]))
        model.cutoff = params["cutoff"]
        model.encoder = ClinicalEncoder.from_dict(params["encoder"]) if params["encoder"] else None
        model.signature = LinearSignature.from_dict(params["signature"]) if params["signature"] else None
        model.extra = params.get("extra", {})
        model.extra["hazard_ratios"] = params.get("hazard_ratios", [])
        return model

    def tables(self):
        tables = {"hazard_ratios": self.hazard_ratios()}
        if self.signature is not None and len(self.signature.coef):
            tables["signature_coefficients"] = self.signature.coefficient_table()
        for name in ("univariate", "stepwise"):
            if name in self.extra:
                tables[name] = pd.DataFrame(self.extra[name])
        return tables

    def _record_training_design(self, design):
        """Covariate ranges of the training cases (the nomogram's axes)."""
        self.extra["training_design"] = {c: [float(design[c].min()), float(design[c].max()),
                                             bool(set(np.unique(design[c])) <= {0.0, 1.0})]
                                         for c in self.covariates}


class ClinicalCox(CoxModel):
    """Clinical Cox: covariates significant in univariate and then multivariable Cox (p < 0.05)."""

    kind = "clinical-cox"

    def __init__(self, p_threshold=0.05, covariates=None):
        super().__init__()
        self.p_threshold = p_threshold
        self.candidate_columns = tuple(covariates or DEFAULT_CLINICAL)

    def fit(self, data, seed=0):
        data, time, event = training_outcome(data)
        self.encoder = ClinicalEncoder().fit(data.table, self.candidate_columns)
        design = self.design(data, warn=False)
        kept, screen = select_clinical(design, time, event, self.p_threshold)
        self.extra["univariate"] = screen.to_dict(orient="records")
        self._finish(design, time, event, kept)
        self._record_training_design(design)
        return self


class Nomogram(CoxModel):
    """Univariate Cox screen, then stepwise-AIC multivariable Cox; ``variant`` 'clinical' (clinical covariates
    only) or 'integrated' (clinical + the deep-feature signature trained on the same cases)."""

    kind = "nomogram"

    def __init__(self, variant="integrated", p_threshold=0.05, family="densenet121", phases=DEEP_PHASES,
                 covariates=None, clinical_coding="paper"):
        super().__init__()
        if clinical_coding not in CLINICAL_CODINGS:
            raise InputError(f"unknown clinical coding '{clinical_coding}'", column="--clinical-coding",
                             fix="use " + " or ".join(CLINICAL_CODINGS))
        self.clinical_coding = clinical_coding
        paper = clinical_coding == "paper"
        self.candidate_columns = tuple(covariates or (PAPER_000_CLINICAL if paper else DEFAULT_CLINICAL))
        if variant not in ("clinical", "integrated"):
            raise InputError(f"unknown nomogram variant '{variant}'", column="--variant",
                             fix="use clinical or integrated")
        self.variant = variant
        self.p_threshold = p_threshold
        self.family = family
        self.phases = phases

    def fit(self, data, seed=0):
        data, time, event = training_outcome(data)
        dichotomies = PAPER_000_DICHOTOMIES if self.clinical_coding == "paper" else None
        self.encoder = ClinicalEncoder(dichotomies=dichotomies).fit(data.table, self.candidate_columns)
        if self.variant == "integrated":
            self.signature = LinearSignature(self.family, self.phases).fit(data, time, event, seed)
        design = self.design(data, warn=False)
        design = design.loc[:, design.std() > 0]
        screen = univariate_screen(design.to_numpy(dtype=float), time, event, list(design.columns))
        passed = list(screen.loc[screen["p"] < self.p_threshold, "covariate"])
        if not passed:
            passed = [screen["covariate"].iloc[0]]
            warnings.warn(f"no covariate reaches p < {self.p_threshold} in univariate Cox; starting from the "
                          f"strongest, '{passed[0]}'", InputWarning, stacklevel=2)
        _check_events_per_covariate(len(passed), event)
        X = design[passed].to_numpy(dtype=float)
        _, chosen, trace = stepwise_aic(X, time, event, passed)
        covariates = [passed[j] for j in chosen] or [passed[0]]
        self.extra["variant"] = self.variant
        self.extra["clinical_coding"] = self.clinical_coding
        self.extra["univariate"] = screen.to_dict(orient="records")
        self.extra["stepwise"] = trace.assign(covariates=trace["covariates"].map(", ".join)).to_dict(orient="records")
        self._finish(design, time, event, covariates)
        self._record_training_design(design)
        return self

    def params(self):
        params = super().params()
        params["variant"] = self.variant
        params["clinical_coding"] = self.clinical_coding
        return params

    @classmethod
    def from_params(cls, params, tensors=None):
        model = super().from_params(params, tensors)
        model.variant = params.get("variant", model.extra.get("variant", "integrated"))
        # bundles written before the option existed coded every clinical covariate as a number
        model.clinical_coding = params.get("clinical_coding", "continuous")
        return model


class SignatureCox(CoxModel):
    """An image-feature signature as a survival model: its score is the Cox linear predictor."""

    kind = "signature"
    family_default = "densenet121"
    ranking = "mrmr"
    l1_ratios = (0.1, 0.5, 0.9, 1.0)

    def __init__(self, family=None, phases=DEEP_PHASES, n_candidates=30):
        super().__init__()
        self.family = family or self.family_default
        self.phases = phases
        self.n_candidates = n_candidates

    def fit(self, data, seed=0):
        data, time, event = training_outcome(data)
        self.signature = LinearSignature(self.family, self.phases, self.ranking, self.n_candidates,
                                         self.l1_ratios).fit(data, time, event, seed)
        score = self.signature.score(data)
        self.covariates = ["signature"]
        self.coef = np.array([1.0])
        self.baseline = breslow_baseline(score, time, event)
        self.cutoff = float(np.median(score))
        self.extra["signature"] = self.signature.info
        return self

    def hazard_ratios(self):
        return pd.DataFrame()

    def tables(self):
        return {"signature_coefficients": self.signature.coefficient_table()}


class LassoCox(SignatureCox):
    """Radiomics LASSO-Cox: ICC-filtered radiomics of both phases, the strongest univariate candidates, then
    a cross-validated LASSO Cox (l1 ratio 1)."""

    kind = "lasso-cox"
    family_default = "radiomics"
    ranking = "univariate"
    l1_ratios = (1.0,)

    def __init__(self, family=None, phases=DEEP_PHASES, n_candidates=100):
        super().__init__(family, phases, n_candidates)


MODEL_CLASSES = {cls.kind: cls for cls in (ClinicalCox, Nomogram, SignatureCox, LassoCox)}
