"""`tacepredict compare`: every model of one task on the same cohort. On the validation runner's held-out split,
with the runner's own bundles, it reproduces the runner's comparison table number for number (both call
stats.compare), and it refuses to mix tasks."""

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from TACEPredictLib import cli  # noqa: E402
from TACEPredictLib.data.outcomes import MRECIST_CLASSES, mrecist_label, objective_response  # noqa: E402
from TACEPredictLib.models import registry  # noqa: E402
from TACEPredictLib.models.base import ProbabilityModel, labelled_cases, logistic_fit, prediction_table  # noqa: E402
from TACEPredictLib.stats import metrics as M  # noqa: E402
from TACEPredictLib.stats.compare import subgroup_table  # noqa: E402
from TACEPredictLib.stats.validation import run_response_validation, run_survival_validation  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import write_survival_cohort  # noqa: E402


def _assert_same_numbers(validation, compared, key, required):
    """Every column both tables have, row by row (matched on ``key``), equal; ``required`` among them."""
    validation = validation.set_index(key)
    compared = compared.set_index("model").loc[validation.index]
    shared = [c for c in compared.columns if c in validation.columns and c not in ("label",)]
    assert set(required) <= set(shared), set(required) - set(shared)
    for column in shared:
        ours, theirs = compared[column], validation[column]
        if pd.api.types.is_numeric_dtype(theirs):
            np.testing.assert_allclose(ours.to_numpy(float), theirs.to_numpy(float), rtol=0, atol=1e-12,
                                       err_msg=column)
        else:
            assert list(ours.astype(str)) == list(theirs.astype(str)), column
    return shared


def test_compare_reproduces_the_survival_validation_on_its_held_out_split(tmp_path):
    manifest, _ = write_survival_cohort(str(tmp_path / "cohort"), cases=120, seed=1)
    runs = (("clinical-cox", "clinical-cox", {}), ("nomogram-clinical", "nomogram", {"variant": "clinical"}))
    validation, _ = run_survival_validation(manifest, None, str(tmp_path / "val"), runs=runs, n_bootstrap=40,
                                            log=lambda *_: None)
    stem = os.path.splitext(manifest)[0]
    out = tmp_path / "compare"
    assert cli.main(["compare", "--models", str(tmp_path / "val" / "models" / "clinical-cox"),
                     str(tmp_path / "val" / "models" / "nomogram-clinical"), "--manifest", stem + "_test.csv",
                     "--train-manifest", stem + "_train.csv", "--reference", "clinical-cox,nomogram-clinical",
                     "--bootstrap", "40", "--subgroups", "child_pugh,ecog", "--out", str(out)]) == 0
    compared = pd.read_csv(out / "comparison.csv")
    _assert_same_numbers(validation, compared, "run", [
        "c_index", "c_index_lower", "c_index_upper", "auc_1y", "auc_2y", "auc_3y", "auc_3y_lower",
        "integrated_brier_score", "calibration_rmse", "logrank_p", "c_minus_clinical-cox", "p_vs_nomogram-clinical",
        "auc_2y_p_vs_clinical-cox", "hr_high_vs_low", "ppv_at_horizon", "npv_at_horizon"])
    assert {"km_clinical-cox.png", "km_clinical-cox_at_risk.csv", "time_dependent_auc.png", "decision_curves.png",
            "paired.csv", "correlation.png", "subgroups.csv", "subgroups.png"} <= set(os.listdir(out))
    # tumour size is in the correlation heat map
    correlation = pd.read_csv(out / "correlation.csv", index_col=0)
    assert list(correlation.columns) == ["clinical-cox", "nomogram-clinical", "tumor_size_mm"]
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["statistic"]) == {"c_index", "auc_1y", "auc_2y", "auc_3y"} and len(paired) == 8
    subgroups = pd.read_csv(out / "subgroups.csv")
    test = pd.read_csv(stem + "_test.csv")
    a = subgroups[(subgroups["subgroup"] == "child_pugh") & (subgroups["level"] == "A")
                  & (subgroups["model"] == "clinical-cox")].iloc[0]
    member = test["child_pugh"] == "A"
    risk = pd.read_csv(tmp_path / "val" / "reports" / "clinical-cox" / "predictions.csv")["risk_score"].to_numpy()
    assert a["n"] == member.sum() and a["events"] == test.loc[member, "os_event"].sum()
    assert a["value"] == pytest.approx(M.concordance_index(test.loc[member, "os_days"], risk[member.to_numpy()],
                                                           test.loc[member, "os_event"]), abs=1e-12)
    assert set(subgroups["subgroup"]) == {"child_pugh", "ecog"} and subgroups["p_between_levels"].between(0, 1).all()


class ToyLogistic(ProbabilityModel):
    """A response model fitted in milliseconds: a logistic regression on one manifest column."""

    task = "response"

    def __init__(self, column="age"):
        super().__init__()
        self.column, self.kind, self.coefficients = column, f"toy-{column}", None

    @property
    def label(self):
        return f"toy on {self.column}"

    def labelled(self, data):
        return labelled_cases(data, objective_response(data.table))

    def fit(self, data, seed=0):
        labelled, y = self.labelled(data)
        intercept, slope = logistic_fit(labelled.table[[self.column]].to_numpy(float), y)
        self.coefficients = [intercept, float(slope[0])]
        self.cutoff = float(M.youden_cutoff(y, self.probability(labelled))[0])
        return self

    def probability(self, data):
        b0, b1 = self.coefficients
        return 1.0 / (1.0 + np.exp(-(b0 + b1 * data.table[self.column].to_numpy(float))))

    def params(self):
        return {"column": self.column, "coefficients": self.coefficients, "cutoff": self.cutoff}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls(params["column"])
        model.coefficients, model.cutoff = params["coefficients"], params["cutoff"]
        return model


class ToyMrecist(ToyLogistic):
    """A four-class toy: class probabilities from a fixed softmax of one column (no training)."""

    task = "mrecist"

    def labelled(self, data):
        return labelled_cases(data, mrecist_label(data.table))

    def fit(self, data, seed=0):
        self.coefficients = [0.0, 1.0]
        return self

    def class_probabilities(self, data):
        x = data.table[self.column].to_numpy(float)
        x = (x - x.mean()) / x.std()
        logits = -np.outer(x, [1.5, 0.5, -0.5, -1.5]) * self.coefficients[1]
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def probability(self, data):
        p = self.class_probabilities(data)
        return p[:, 0] + p[:, 1]

    def predict(self, data):
        p = self.class_probabilities(data)
        return prediction_table(self, data, p[:, 0] + p[:, 1],
                                extra={f"p_{c}": p[:, i] for i, c in enumerate(MRECIST_CLASSES)})


@pytest.fixture
def toy_models(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", registry.MODELS + tuple(
        registry.ModelSpec(task, f"toy-{column}", cls, f"toy on {column}", fixed={"column": column})
        for task, cls, columns in (("response", ToyLogistic, ("age", "afp", "size")),
                                   ("mrecist", ToyMrecist, ("age2",)))
        for column in columns))


def response_cohort(folder, cases=150, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=cases)
    table = pd.DataFrame({
        "case_id": [f"r{i:03d}" for i in range(cases)],
        "age": np.round(60 + 8 * (latent + rng.normal(0, 0.8, cases)), 1),
        "afp": np.round(100 + 30 * (latent + rng.normal(0, 1.6, cases)), 1),
        "size": np.round(50 + 10 * rng.normal(size=cases), 1),
        "bclc": rng.choice(["A", "B", "C"], cases),
        "response": np.select([latent > 1.0, latent > 0.0, latent > -1.0], ["CR", "PR", "SD"], "PD")})
    table["tumor_size_mm"] = table["size"]
    table["age2"] = table["age"]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "manifest.csv")
    table.to_csv(path, index=False)
    return path


def test_compare_reproduces_the_response_validation_and_refuses_mixed_tasks(tmp_path, toy_models, capsys):
    manifest = response_cohort(str(tmp_path / "cohort"))
    kinds = ["toy-age", "toy-afp", "toy-size"]
    validation, summary = run_response_validation(manifest, None, str(tmp_path / "val"), kinds=kinds,
                                                  integrations=False, n_bootstrap=40, log=lambda *_: None)
    stem = os.path.splitext(manifest)[0]
    out = tmp_path / "compare"
    assert cli.main(["compare", "--models", *[str(tmp_path / "val" / "models" / k) for k in kinds],
                     "--manifest", stem + "_test.csv", "--reference", summary["reference"], "--bootstrap", "40",
                     "--subgroups", "bclc", "--out", str(out)]) == 0
    compared = pd.read_csv(out / "comparison.csv")
    _assert_same_numbers(validation, compared, "model", [
        "auc", "auc_delong_lower", "auc_bootstrap_upper", "sensitivity", "ppv", "brier", "delong_p_vs_best",
        "delong_p_vs_reference", "delong_p_fdr_vs_reference", "nri_vs_reference", "idi_vs_reference",
        "idi_p_vs_reference", "nri_categorical_vs_reference"])
    assert compared.loc[compared["model"] == "toy-age", "auc"].iloc[0] > 0.75  # the toy carries the signal
    # the validation's correlation heat map is compare's, tumour size included
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "val" / "correlation.csv", index_col=0),
                                  pd.read_csv(out / "correlation.csv", index_col=0))
    correlation = pd.read_csv(out / "correlation.csv", index_col=0)
    assert correlation.loc["toy-size", "tumor_size_mm"] == pytest.approx(1.0)
    assert {"roc_calibration.png", "decision_curves.png", "decision_curves.csv", "calibration.csv"} <= \
        set(os.listdir(out))
    with open(out / "comparison.json") as handle:
        assert json.load(handle)["best"] == summary["best"]

    # subgroups: two levels' AUCs by hand, and the unpaired DeLong test for two levels
    test = pd.read_csv(stem + "_test.csv")
    label = objective_response(test).to_numpy(int)
    output = {"x": test["age"].to_numpy(float)}
    two = test["bclc"].isin(["A", "B"]).to_numpy()
    table = subgroup_table(test[two], ["bclc"], {"x": output["x"][two]}, label[two])
    rows = table.set_index("level")
    for level in ("A", "B"):
        member = (test.loc[two, "bclc"] == level).to_numpy()
        assert rows.loc[level, "value"] == pytest.approx(M.roc_auc(label[two][member], output["x"][two][member]))
    ses = [np.sqrt(M.delong_covariance(label[two][(test.loc[two, "bclc"] == lv).to_numpy()],
                                       output["x"][two][(test.loc[two, "bclc"] == lv).to_numpy()])[1][0, 0])
           for lv in ("A", "B")]
    from scipy.stats import norm
    z = (rows.loc["A", "value"] - rows.loc["B", "value"]) / np.hypot(*ses)
    assert rows["p_between_levels"].iloc[0] == pytest.approx(2 * norm.sf(abs(z)), rel=1e-9)

    # mRECIST: confusion matrix and per-class AUCs with CIs
    out4 = tmp_path / "mrecist"
    assert cli.main(["compare", "--models", "mrecist:toy-age2", "--manifest", stem + "_test.csv", "--out", str(out4),
                     "--bootstrap", "20"]) == 2  # a trained kind is not a published score: told so
    assert "neither a model bundle folder nor a published score" in capsys.readouterr().err
    from TACEPredictLib import models
    from TACEPredictLib.data.cohort import CohortData
    held_out = CohortData(stem + "_test.csv")
    models.save(models.make_model("mrecist", "toy-age2").fit(held_out), str(tmp_path / "toy4"), held_out, 0)
    assert cli.main(["compare", "--models", str(tmp_path / "toy4"), "--manifest", stem + "_test.csv",
                     "--out", str(out4), "--bootstrap", "20"]) == 0
    row = pd.read_csv(out4 / "comparison.csv").iloc[0]
    truth = mrecist_label(test).to_numpy(int)
    p = ToyMrecist("age2").fit(held_out).class_probabilities(held_out)
    assert row["accuracy"] == pytest.approx(np.mean(p.argmax(1) == truth))
    assert row["auc_CR"] == pytest.approx(M.roc_auc((truth == 0).astype(int), p[:, 0]))
    assert row["auc_CR_lower"] < row["auc_CR"] < row["auc_CR_upper"]
    matrix = pd.read_csv(out4 / "toy4" / "confusion_patient.csv", index_col=0).to_numpy()
    assert matrix.sum() == len(test) and np.trace(matrix) == int(np.sum(p.argmax(1) == truth))
    # paper 003's bootstrap CI of each class's AUC beside DeLong's
    boot = M.roc_auc_ci((truth == 3).astype(int), p[:, 3], method="bootstrap", n_bootstrap=20, seed=0)
    assert (row["auc_PD_boot_lower"], row["auc_PD_boot_upper"]) == pytest.approx(boot[1:])
    # `evaluate` of an mRECIST bundle writes the same four-class report as `compare`, beside P(OR)'s
    out5 = tmp_path / "evaluate_mrecist"
    assert cli.main(["evaluate", "--model", str(tmp_path / "toy4"), "--manifest", stem + "_test.csv",
                     "--out", str(out5), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert "patient level: accuracy" in printed and "AUC CR" in printed
    classes = pd.read_csv(out5 / "classes.csv").set_index("level").loc["patient"]
    for column in ("accuracy", "auc_CR", "auc_CR_lower", "auc_CR_upper", "auc_SD_boot_lower", "auc_macro"):
        assert classes[column] == pytest.approx(row[column]), column
    np.testing.assert_array_equal(pd.read_csv(out5 / "confusion_patient.csv", index_col=0).to_numpy(), matrix)
    assert (out5 / "roc_classes_patient.png").stat().st_size > 10_000 and (out5 / "metrics.csv").is_file()

    # mixing tasks is refused, naming each model's task
    assert cli.main(["compare", "--models", str(tmp_path / "val" / "models" / "toy-age"), str(tmp_path / "toy4"),
                     "--manifest", stem + "_test.csv", "--out", str(tmp_path / "mixed")]) == 2
    err = capsys.readouterr().err
    assert "toy-age (response)" in err and "toy4 (mrecist)" in err and "one task at a time" in err
