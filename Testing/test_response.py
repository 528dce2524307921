"""Initial response (CR+PR vs SD+PD): seed 002's radiomics classifiers on features with a known signal."""

import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skops")

from TACEPredictLib import InputError, models  # noqa: E402
from TACEPredictLib.stats import metrics
from TACEPredictLib.data.cohort import CohortData  # noqa: E402
from TACEPredictLib.models.initial_response import KINDS, objective_response  # noqa: E402


def write_response_cohort(folder, cases=160, seed=0, features=40):
    """Arterial radiomics whose features 0-2 carry the latent response score; the rest is noise."""
    rng = np.random.default_rng(seed)
    ids = [f"r{i:03d}" for i in range(cases)]
    latent = rng.normal(size=cases)
    score = 1.6 * latent + rng.logistic(0, 0.5, cases)
    response = np.select([score > 1.2, score > 0.0, score > -1.0], ["CR", "PR", "SD"], "PD")
    os.makedirs(folder, exist_ok=True)
    manifest = os.path.join(folder, "manifest.csv")
    pd.DataFrame({"case_id": ids, "response": response}).to_csv(manifest, index=False)
    values = rng.normal(size=(cases, features))
    values[:, 0] += 1.2 * latent
    values[:, 1] -= 0.9 * latent
    values[:, 2] = 0.5 * values[:, 0] + rng.normal(0, 0.5, cases)
    rows = [pd.DataFrame({"case_id": ids, "phase": "ct_ap", "reader": "seg", "family": "radiomics",
                          "feature": f"original_firstorder_f{j:03d}", "value": values[:, j], "weights": ""})
            for j in range(features)]
    out = os.path.join(folder, "features")
    os.makedirs(out)
    pd.concat(rows).to_parquet(os.path.join(out, "features.parquet"), index=False)
    return manifest, out


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("response")
    manifest, features = write_response_cohort(str(folder))
    table = pd.read_csv(manifest)
    train, test = table.iloc[:110], table.iloc[110:]
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return CohortData(str(folder / "train.csv"), features), CohortData(str(folder / "test.csv"), features)


@pytest.mark.parametrize("kind", KINDS)
def test_each_classifier_finds_the_response_signal_on_held_out_cases(cohort, kind, tmp_path):
    train, test = cohort
    model, info = models.train_bundle("response", kind, train, str(tmp_path / kind), seed=0)
    assert {"ct_ap:radiomics:original_firstorder_f000", "ct_ap:radiomics:original_firstorder_f001"} <= \
        set(model.features)
    label = objective_response(test.table).to_numpy()
    predictions = model.predict(test)
    assert metrics.roc_auc(label, predictions["probability"]) > 0.8
    assert ((predictions["probability"] >= 0) & (predictions["probability"] <= 1)).all()
    assert 0 < model.cutoff < 1 and info["metrics"]["auc_training_out_of_fold"] > 0.75
    loaded, _ = models.load(str(tmp_path / kind))  # skops with the allow-list, through the bundle checksums
    np.testing.assert_allclose(loaded.predict(test)["probability"], predictions["probability"], atol=1e-12)
    assert "trained on" in predictions["provenance"][0]


def test_bad_response_input_names_the_case_and_field(cohort, tmp_path):
    train, _ = cohort
    table = train.table.copy()
    table.loc[3, "response"] = "stable"
    with pytest.raises(InputError, match="r003.*response.*stable"):
        models.train("response", "rf", train.subset(table))
    one_class = train.subset(train.table.assign(response="PD"))
    with pytest.raises(InputError, match="both classes"):
        models.train("response", "logistic", one_class)
    few = pd.concat([train.table[train.table["response"].isin(["SD", "PD"])],
                     train.table[train.table["response"].isin(["CR", "PR"])].head(3)])
    with pytest.raises(InputError, match="3 case.*5 folds"):
        models.train("response", "logistic", train.subset(few))
