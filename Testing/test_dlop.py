"""DLOP-Combin as published (paper 001): ResNet101 by default, the post-TACE response and Bolondi's BCLC-B
sub-stage as candidate inputs, the paper's citation in the provenance, and Grad-CAM of its image branch."""

import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import write_survival_cohort
from TACEPredictLib import InputError, models
from TACEPredictLib.data.cohort import CohortData
from TACEPredictLib.data.manifest import read_manifest
from TACEPredictLib.models.dlop_combin import BCLC_B_COVARIATE, RESPONSE_COVARIATE, DLOPCombin, bclc_b_covariate
from TACEPredictLib.models.registry import PAPERS

pytest.importorskip("torch")

CITATION = ("Sun Z, Li X, Liang H, Shi Z, Ren H. A Deep Learning Model Combining Multimodal Factors to Predict the "
            "Overall Survival of Transarterial Chemoembolization. J Hepatocell Carcinoma 2024;11:385-397. "
            "doi:10.2147/JHC.S443660")


def _quiet_train(data, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return models.train("survival", "dlop", data, seed=0, **options)[0]


def test_the_default_backbone_is_the_papers_resnet101():
    assert DLOPCombin().family == "resnet101"
    assert PAPERS["001"] == CITATION


# Hand-checked against Bolondi's table (Semin Liver Dis 2012;32:348-359): B1 Child-Pugh 5-7, within up-to-seven,
# ECOG 0; B2 5-6 beyond; B3 7 beyond; B4 8-9 any tumour burden, ECOG 0-1; no portal vein thrombosis.
BOLONDI_ROWS = [  # case, bclc, child_pugh, score, size mm, number, ecog, pvi, expected
    ("b1-cp6", "B", "A", 6, 40, 2, 0, 0, "B1"),          # 4 cm + 2 = 6: within
    ("b1-cp7", "B", "B", 7, 30, 3, 0, 0, "B1"),          # 3 + 3 = 6: within
    ("b1-edge", "B", "A", 6, 50, 2, 0, 0, "B1"),         # 5 + 2 = 7 exactly: within
    ("b2", "B", "A", 5, 60, 2, 0, 0, "B2"),              # 6 + 2 = 8: beyond
    ("b3", "B", "B", 7, 60, 2, 0, 0, "B3"),
    ("b4-within", "B", "B", 8, 30, 1, 1, 0, "B4"),       # ECOG 1 is allowed in B4
    ("b4-beyond", "B", "B", 9, 90, 3, 0, 0, "B4"),
    ("ecog1-cp6", "B", "A", 6, 60, 2, 1, 0, "outside"),  # ECOG 1 with Child-Pugh 5-7: BCLC C
    ("pvt", "B", "A", 6, 40, 2, 0, 1, "outside"),        # portal vein thrombosis
    ("cp10", "B", "C", 10, 40, 2, 0, 0, "outside"),
    ("stage-c", "C", "A", 5, 40, 2, 0, 0, "outside"),
    ("open", "B", "B", np.nan, 60, 2, 0, 0, np.nan),     # class B beyond: B3 (7) or B4 (8-9), undecided
]


def test_bclc_b_substage_derivation_on_hand_checked_rows():
    table = pd.DataFrame(BOLONDI_ROWS, columns=["case_id", "bclc", "child_pugh", "child_pugh_score", "tumor_size_mm",
                                                "tumor_number", "ecog", "portal_vein_invasion", "expected"])
    got = bclc_b_covariate(table.drop(columns="expected"))
    for case, want, value in zip(table["case_id"], table["expected"], got):
        assert (pd.isna(want) and pd.isna(value)) or value == want, case


def test_child_pugh_score_is_checked_in_the_manifest(tmp_path):
    path = tmp_path / "m.csv"
    table = pd.DataFrame({"case_id": ["a", "b"], "child_pugh": ["A", "A"], "child_pugh_score": [6, 8]})
    table.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"b.*child_pugh_score.*Child-Pugh score 8 does not belong to class A"):
        read_manifest(str(path))
    pd.DataFrame({"case_id": ["a"], "child_pugh_score": [16]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"a.*child_pugh_score.*16 .*outside the plausible range 5..15"):
        read_manifest(str(path))


def test_the_demo_cohort_codes_a_child_pugh_score_within_its_class():
    from TACEPredictLib.data.demo_cohort import draw_case
    table = pd.DataFrame([dict(case_id=str(i), **draw_case(i, 0)[1]) for i in range(200)])
    for klass, allowed in (("A", {5, 6}), ("B", {7, 8, 9})):
        scores = set(table.loc[table["child_pugh"] == klass, "child_pugh_score"])
        assert scores <= allowed and len(scores) >= 2
    assert set(bclc_b_covariate(table).dropna()) == {"B1", "B2", "B3", "B4", "outside"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The survival test cohort (PVI, Child-Pugh B and AFP raise the hazard, two image factors) with a post-TACE
    response that follows survival: objective response for most cases that outlive the median."""
    folder = tmp_path_factory.mktemp("dlop")
    manifest, features = write_survival_cohort(str(folder), cases=140, seed=3)
    table = pd.read_csv(manifest)
    rng = np.random.default_rng(0)
    long = table["os_days"] > table["os_days"].median()
    table["response"] = np.where(long ^ (rng.random(len(table)) < 0.15), "PR", "PD")
    with_response = str(folder / "with_response.csv")
    table.to_csv(with_response, index=False)
    return {"without": CohortData(manifest, features), "with": CohortData(with_response, features)}


def test_the_post_tace_response_is_an_input_when_the_manifest_has_it(cohort, tmp_path):
    model = _quiet_train(cohort["with"])
    assert RESPONSE_COVARIATE in model.clinical_names
    assert model.family == "resnet101" and model.image_scaler.names[0].split(":")[1] == "resnet101"
    info = models.save(model, str(tmp_path / "b"), cohort["with"], seed=0)
    assert CITATION in info["provenance"] and "post-TACE response selected by the Cox screen" in info["provenance"]
    loaded, _ = models.load(str(tmp_path / "b"))
    np.testing.assert_allclose(loaded.risk_score(cohort["with"]), model.risk_score(cohort["with"]), rtol=1e-6)
    # the response enters the network: changing it changes the prediction
    flipped = cohort["with"].subset(cohort["with"].table.assign(
        response=cohort["with"].table["response"].map({"PR": "PD", "PD": "PR"})))
    assert np.mean(np.abs(model.risk_score(flipped) - model.risk_score(cohort["with"]))) > 0.01
    # a manifest without the column cannot feed it, and says which column to add
    with pytest.raises(InputError, match="'response'"):
        model.risk_score(cohort["without"])


def test_without_the_response_column_the_model_works_and_says_so(cohort, tmp_path):
    model = _quiet_train(cohort["without"])
    assert RESPONSE_COVARIATE not in model.clinical_names and BCLC_B_COVARIATE not in model.clinical_names
    info = models.save(model, str(tmp_path / "b"), cohort["without"], seed=0)
    assert "post-TACE response absent: the training manifest has no 'response' column" in info["provenance"]
    assert np.isfinite(model.risk_score(cohort["without"])).all()


def test_the_resnet50_departure_is_named_in_the_provenance(cohort, tmp_path):
    model = _quiet_train(cohort["without"], family="resnet50")
    info = models.save(model, str(tmp_path / "b"), cohort["without"], seed=0)
    assert "backbone resnet50 (named departure; the paper's is resnet101)" in info["provenance"]


# ------------------------------------------------------------------------------------------------- Grad-CAM

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from TACEPredictLib.data.demo_cohort import generate_cohort
    folder = tmp_path_factory.mktemp("dlop_images")
    return folder, generate_cohort(str(folder / "cohort"), cases=10, seed=3, workers=1)


@pytest.fixture(scope="module")
def imaged(demo):
    """A small demo cohort with ResNet101 features (random weights, no download) and a DLOP-Combin on them."""
    from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_cohort
    folder, manifest = demo
    settings = ExtractionSettings(radiomics=False, deep=("resnet101",), weights="random", sampling="centre",
                                  normalisation="zscore", device="cpu", icc_cases=0, patches=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extract_cohort(manifest, str(folder / "features"), settings, workers=1)
    data = CohortData(manifest, str(folder / "features"))
    model = _quiet_train(data, image_components=4, max_epochs=30, covariates=["age", "ecog"])
    return data, model, {"phases": ["ct_ap", "ct_pvp"], "register": "rigid", "weights": "random",
                         "sampling": "centre", "normalisation": "zscore"}


def _check_maps(maps, data, row):
    """Finite, in [0, 1], on the grid of the case's ROI (its segmentation volume); returns how many of the phases'
    maps are not constant (a phase where nothing raises the risk has an all-zero Grad-CAM)."""
    import SimpleITK as sitk
    manifest = read_manifest(data.manifest_path)
    roi = sitk.ReadImage(manifest.resolve(manifest.table.iloc[row]["seg"]))
    assert set(maps) == {"ct_ap", "ct_pvp"}
    varied = 0
    for image in maps.values():
        values = sitk.GetArrayFromImage(image)
        assert image.GetSize() == roi.GetSize() and np.allclose(image.GetSpacing(), roi.GetSpacing())
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
        varied += bool(values.max() > 0 and np.unique(values).size > 10)
    return varied


def test_gradcam_of_the_frozen_feature_dlop_is_a_map_on_the_roi_grid(imaged):
    from TACEPredictLib.imaging.gradcam import dlop_heatmaps, explains
    data, model, extraction = imaged
    assert model.family == "resnet101" and explains(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = dlop_heatmaps(model, data.subset(data.table.iloc[[0]]), extraction)
    assert _check_maps(maps, data, 0) == 2


def test_gradcam_of_a_fine_tuned_dlop(demo):
    """The fine-tuned variant's own trained backbone is the CNN the map is taken at (one epoch, tiny budget). A
    random-weight backbone after one epoch may lower the risk everywhere in a phase (an all-zero risk map): then
    the survival map (paper 001's Figure 6 convention, the negated output) lights up, so gradients do reach the
    backbone."""
    from TACEPredictLib.imaging.gradcam import dlop_heatmaps
    data = CohortData(demo[1])
    model = _quiet_train(data, finetune=True, weights="random", max_epochs=1, batch_size=8, family="resnet50",
                         covariates=["age", "ecog"])
    extraction = {"phases": ["ct_ap", "ct_pvp"], "register": "rigid"}
    one = data.subset(data.table.iloc[[0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = {target: dlop_heatmaps(model, one, extraction, target=target) for target in ("risk", "survival")}
    import SimpleITK as sitk
    for target in maps:
        _check_maps(maps[target], data, 0)
    for phase in ("ct_ap", "ct_pvp"):
        values = [sitk.GetArrayFromImage(maps[t][phase]) for t in maps]
        assert any(v.max() > 0 and np.unique(v).size > 10 for v in values), phase
