"""Aggressive progression after TACE (extrahepatic metastasis or macrovascular invasion; seed 004).

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

PUBLISHED_COEFFICIENTS = {"intercept": -1.6705, "tumor_size_mm": 0.009, "cirrhosis": 0.7009,
                          "fusion_lesion": 0.5365, "capsule=non-intact": -0.4967, "capsule=intact": -1.7083,
                          "nodule_in_nodule": 0.6375}
HIGH_RISK_CUTOFF = 0.28
REQUIRED_COLUMNS = ("tumor_size_mm", "cirrhosis", "fusion_lesion", "capsule", "nodule_in_nodule")


class ClinicalSemanticScore:
    """Model_CS: the published logistic clinical-semantic score; ``predict(table)`` needs only the manifest."""

    task = "aggressive-pd"
    kind = "clinical-semantic"
    label = "clinical-semantic (published coefficients)"
    provenance = ("aggressive-pd / clinical-semantic: the published Model_CS coefficients (seed 004), used as "
                  "published; not trained or re-calibrated by TACEPredict, not validated on this cohort")
    notice = RESEARCH_USE_NOTICE
    cutoff = HIGH_RISK_CUTOFF

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

    def predict(self, data):
        """One row per case: the score, the probability of aggressive progression and the risk group."""
        table = data.table
        score = self.score(table)
        probability = 1.0 / (1.0 + np.exp(-score))
        return pd.DataFrame({"case_id": table["case_id"].to_numpy(), "task": self.task, "model": self.label,
                             "score": score, "probability": probability,
                             "risk_group": np.where(probability >= self.cutoff, "high", "low"), "cutoff": self.cutoff,
                             "provenance": self.provenance, "notice": self.notice})


BUILT_IN_MODELS = {("aggressive-pd", "clinical-semantic"): ClinicalSemanticScore}
