"""The package's structure as users and contributors meet it: every declared model is a typed model of its
task, a new model is one declaration away from the command line, and bundles written before the
restructuring still load and predict the same numbers."""

import importlib.util
import os

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib import cli, models
from TACEPredictLib.data.cohort import CohortData
from TACEPredictLib.data.outcomes import objective_response
from TACEPredictLib.models import registry
from TACEPredictLib.models.base import Model, ProbabilityModel, labelled_cases, logistic_fit
from TACEPredictLib.models.overall_survival import SurvivalModel

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy_bundles")


def test_every_declared_model_is_a_typed_model_of_its_task_with_a_unique_kind():
    kinds = [spec.kind for spec in registry.MODELS]
    assert len(kinds) == len(set(kinds)), "a model kind is declared twice"
    for task in registry.TASKS:  # an old kind name a bundle may carry still names one model of its task
        own = registry.models_of(task)
        aliases = [a for spec in own for a in spec.aliases]
        assert not set(aliases) & {spec.kind for spec in own} and len(aliases) == len(set(aliases))
    for spec in registry.MODELS:
        assert spec.task in registry.TASKS and spec.paper in registry.PAPERS
        cls = spec.cls
        assert issubclass(cls, Model), spec.kind
        output = registry.TASKS[spec.task].output
        assert issubclass(cls, SurvivalModel if output == "risk" else ProbabilityModel), spec.kind
        model = cls() if spec.published else models.make_model(spec.task, spec.kind)
        assert model.task == spec.task
        if not spec.published:  # every declared hyper-parameter is one the class takes
            import inspect
            assert set(spec.options) <= set(inspect.signature(cls.__init__).parameters), spec.kind


def test_an_option_a_model_does_not_take_is_refused_by_name():
    with pytest.raises(Exception, match="option 'epochs' does not apply to the clinical-cox model"):
        models.make_model("survival", "clinical-cox", epochs=3)
    with pytest.raises(Exception, match="unknown response model 'model-d'"):
        models.make_model("response", "model-d")


class AgeLogistic(ProbabilityModel):
    """The worked example of docs/architecture.md: a toy response model, a logistic regression on age."""

    task = "response"
    kind = "toy-age"
    label = "toy: logistic regression on age"

    def __init__(self):
        super().__init__()
        self.coefficients = None

    def labelled(self, data):
        return labelled_cases(data, objective_response(data.table))

    def fit(self, data, seed=0):
        labelled, y = self.labelled(data)
        intercept, slope = logistic_fit(labelled.table[["age"]].to_numpy(float), y)
        self.coefficients = [intercept, float(slope[0])]
        return self

    def probability(self, data):
        b0, b1 = self.coefficients
        return 1.0 / (1.0 + np.exp(-(b0 + b1 * data.table["age"].to_numpy(float))))

    def params(self):
        return {"coefficients": self.coefficients, "cutoff": self.cutoff}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls()
        model.coefficients, model.cutoff = params["coefficients"], params["cutoff"]
        return model


def test_a_new_model_is_a_few_lines_and_trains_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "MODELS", registry.MODELS + (
        registry.ModelSpec("response", "toy-age", AgeLogistic, "toy: logistic regression on age"),))
    rng = np.random.default_rng(0)
    age = rng.normal(62, 9, 80).round(1)
    responder = rng.random(80) < 1 / (1 + np.exp(-(age - 62) / 4))
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"case_id": [f"c{i}" for i in range(80)], "age": age,
                  "response": np.where(responder, "PR", "SD")}).to_csv(manifest, index=False)
    assert cli.main(["train", "--task", "response", "--model", "toy-age", "--manifest", str(manifest),
                     "--out", str(tmp_path / "toy")]) == 0
    assert cli.main(["evaluate", "--model", str(tmp_path / "toy"), "--manifest", str(manifest),
                     "--out", str(tmp_path / "report"), "--bootstrap", "50"]) == 0
    assert cli.main(["predict", "--model", str(tmp_path / "toy"), "--manifest", str(manifest),
                     "--out", str(tmp_path / "p.csv")]) == 0
    metrics = pd.read_csv(tmp_path / "report" / "metrics.csv").set_index("metric")["value"]
    assert float(metrics["auc"]) > 0.75
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert predictions["model"].iloc[0] == "toy: logistic regression on age"
    assert predictions["probability"].corr(pd.Series(age), method="spearman") > 0.999  # monotone in age
    assert "toy-age" in cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help()


def _legacy_inputs(folder):
    spec = importlib.util.spec_from_file_location("legacy_make", os.path.join(LEGACY, "make.py"))
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    return make.write_inputs(str(folder))


def test_bundles_written_before_the_restructuring_load_and_predict_the_same_numbers(tmp_path):
    """One bundle of every model kind of commit 4164fd6 (before the move; Model_D's kind was `cnn` and its
    residual blocks had other key names), made by Testing/data/legacy_bundles/make.py."""
    data = CohortData(*_legacy_inputs(tmp_path))
    expected = pd.read_csv(os.path.join(LEGACY, "expected_predictions.csv"), dtype={"case_id": str})
    bundles = sorted(expected["bundle"].unique())
    assert len(bundles) == 20
    for bundle in bundles:
        model, info = models.load(os.path.join(LEGACY, bundle))
        # written before bundles named their paper: the method's paper is added to the provenance on load
        assert registry.PAPERS[registry.model_spec(info["task"], info["kind"]).paper] in model.provenance
        prediction = model.predict(data)
        column = "risk_score" if info["task"] == "survival" else "probability"
        want = expected[expected["bundle"] == bundle].set_index("case_id")["value"]
        got = prediction.set_index("case_id")[column].loc[want.index]
        np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float), rtol=1e-6, atol=1e-9,
                                   err_msg=bundle)


def test_the_slicer_modules_catalogue_is_the_registry():
    """The Slicer module reads its model list from Resources/model_catalogue.json before anything is installed;
    `python scripts/write_model_catalogue.py` rewrites it after a change to the registry."""
    import json
    with open(registry.CATALOGUE_FILE, encoding="utf-8") as handle:
        assert json.load(handle) == registry.catalogue()
