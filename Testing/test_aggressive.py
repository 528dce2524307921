"""The published clinical-semantic score for aggressive progression (Model_CS): no training, no bundle, no cut-off
(the refit is in test_aggressive_refit.py)."""

import os

import numpy as np
import pandas as pd
import pytest

from conftest import write_manifest
from TACEPredictLib import cli
from TACEPredictLib.models.aggressive_progression import ClinicalSemanticScore, PUBLISHED_COEFFICIENTS
from TACEPredictLib.data.cohort import CohortData
from TACEPredictLib.stats.metrics import roc_auc

ROWS = [
    {"case_id": "a", "tumor_size_mm": 50, "cirrhosis": 1, "fusion_lesion": 0, "capsule": "absent",
     "nodule_in_nodule": 1},
    {"case_id": "b", "tumor_size_mm": 30, "cirrhosis": 0, "fusion_lesion": 1, "capsule": "intact",
     "nodule_in_nodule": 0},
    {"case_id": "c", "tumor_size_mm": 120, "cirrhosis": 1, "fusion_lesion": 1, "capsule": "non-intact",
     "nodule_in_nodule": 0},
]


def test_published_formula_by_hand(tmp_path):
    data = CohortData(write_manifest(str(tmp_path), ROWS))
    predictions = ClinicalSemanticScore().predict(data)
    expected = [-1.6705 + 0.009 * 50 + 0.7009 + 0.6375, -1.6705 + 0.009 * 30 + 0.5365 - 1.7083,
                -1.6705 + 0.009 * 120 + 0.7009 + 0.5365 - 0.4967]
    np.testing.assert_allclose(predictions["score"], expected, atol=1e-12)
    np.testing.assert_allclose(predictions["probability"], 1 / (1 + np.exp(-np.array(expected))), atol=1e-12)
    # paper 004 gives Model_CS no cut-off: no risk groups unless one is set
    assert list(predictions["risk_group"]) == ["", "", ""] and predictions["cutoff"].isna().all()
    assert predictions["notice"].str.contains("RESEARCH USE ONLY").all()
    assert predictions["provenance"].str.contains("published").all()
    assert PUBLISHED_COEFFICIENTS["capsule=intact"] == -1.7083


def test_missing_factor_names_the_case_and_column(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["fusion_lesion"] = None
    data = CohortData(write_manifest(str(tmp_path), rows))
    with pytest.raises(Exception, match="case b, column 'fusion_lesion'"):
        ClinicalSemanticScore().predict(data)
    data = CohortData(write_manifest(str(tmp_path), [{k: v for k, v in r.items() if k != "capsule"} for r in ROWS]))
    with pytest.raises(Exception, match="column 'capsule'"):
        ClinicalSemanticScore().predict(data)


def test_cli_predicts_without_a_bundle_and_separates_the_demo_outcome(demo_cohort, tmp_path, capsys):
    out = str(tmp_path / "p.csv")
    status = cli.main(["predict", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest",
                       demo_cohort, "--out", out])
    assert status == 0 and "published Model_CS" in capsys.readouterr().out
    predictions = pd.read_csv(out)
    assert len(predictions) == 6 and predictions["risk_group"].isna().all()  # no cut-off, no group
    assert np.allclose(predictions["probability"], 1 / (1 + np.exp(-predictions["score"])))


@pytest.fixture(scope="module")
def cohort40(tmp_path_factory):
    from TACEPredictLib.data.demo_cohort import generate_cohort
    return generate_cohort(str(tmp_path_factory.mktemp("cs") / "cohort"), cases=40, seed=11, workers=2)


def test_model_cs_ranks_the_phantoms_latent_aggressive_progression_risk(cohort40):
    """The phantom draws aggressive progression from the same factors plus image and PVI terms: Model_CS must
    rank the clinical-semantic part of its latent predictor almost exactly, and the whole of it well (a check
    of the coding, not a validation on patients)."""
    from TACEPredictLib.data.demo_cohort import APD_COEF
    manifest = cohort40
    data = CohortData(manifest)
    truth = pd.read_csv(os.path.join(os.path.dirname(manifest), "ground_truth.csv"))
    score = ClinicalSemanticScore().predict(data)["score"].to_numpy()
    other = APD_COEF["zh"] * truth["zh"] + APD_COEF["zn"] * truth["zn"] + \
        APD_COEF["pvi"] * data.table["portal_vein_invasion"].to_numpy()
    semantic = truth["lp_aggressive_pd"] - other
    assert pd.Series(score).corr(semantic, method="spearman") > 0.95
    assert pd.Series(score).corr(truth["lp_aggressive_pd"], method="spearman") > 0.3
    label = (semantic > semantic.median()).astype(int)
    assert roc_auc(label, score) > 0.9


def test_evaluate_command_reports_discrimination_calibration_and_decision_curve(cohort40, tmp_path, capsys):
    out = str(tmp_path / "report")
    status = cli.main(["evaluate", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", cohort40,
                       "--out", out, "--bootstrap", "100"])
    text = capsys.readouterr().out
    assert status == 0 and "AUC" in text and "published" in text
    assert {"roc.png", "calibration.png", "decision_curve.png", "metrics.csv", "decision_curve.csv",
            "predictions.csv"} <= set(os.listdir(out))
    metrics = pd.read_csv(os.path.join(out, "metrics.csv")).set_index("metric")["value"]
    label = pd.read_csv(os.path.join(out, "predictions.csv"))
    assert metrics["cases"] == 40 and metrics["positives"] == label["aggressive_pd"].sum()
    assert metrics["auc_delong_lower"] < metrics["auc"] < metrics["auc_delong_upper"]
    assert np.isnan(metrics["cutoff"]) and np.isnan(metrics["sensitivity"])  # Model_CS has no cut-off
    assert 0 < metrics["youden_cutoff_these_cases"] < 1
    decision = pd.read_csv(os.path.join(out, "decision_curve.csv"))
    assert decision["treat_none"].eq(0).all() and decision["threshold"].between(0, 1).all()
    import json
    with open(os.path.join(out, "metrics.json")) as handle:
        assert "SYNTHETIC DEMO COHORT" in json.load(handle)["notice"]  # evaluated on the demo cohort: it says so
