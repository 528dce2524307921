"""The image networks (seeds 002, 003, 004) and their integrations, on lesion patches with a known signal, and
the extraction's patch cache they train from."""

import json
import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("sklearn")

from TACEPredictLib import InputError, models  # noqa: E402
from TACEPredictLib.stats import metrics
from TACEPredictLib.data.outcomes import MRECIST_CLASSES, objective_response  # noqa: E402
from TACEPredictLib.models.aggressive_progression import ModelD  # noqa: E402
from TACEPredictLib.models.initial_response import ResponseCNN, ResponseIntegration  # noqa: E402
from TACEPredictLib.models.mrecist import MRecistNet  # noqa: E402
from TACEPredictLib.models.training import case_mean, predict_network, stack_patches  # noqa: E402
from TACEPredictLib.stats.splits import stratified_folds  # noqa: E402
from TACEPredictLib.data.cohort import CohortData  # noqa: E402

FEATURES = 2048


def write_patch_cohort(folder, cases=120, seed=0):
    """Cases whose patches carry their labels: the response patch's lesion is brighter in responders, the
    slice boxes' lesion texture is coarser with aggressive progression, and the (cached) ResNet-50 vectors
    of the inside patches shift with the mRECIST class. Returns (train manifest, test manifest, features)."""
    rng = np.random.default_rng(seed)
    ids = [f"p{i:03d}" for i in range(cases)]
    response = np.array(MRECIST_CLASSES)[np.arange(cases) % 4]
    responder = np.isin(response, ("CR", "PR"))
    latent = rng.normal(size=cases)
    aggressive = (latent + rng.normal(0, 0.5, cases) > 0.6).astype(int)
    table = pd.DataFrame({
        "case_id": ids, "response": response, "aggressive_pd": aggressive,
        "aggressive_pd_days": rng.uniform(30, 700, cases).round(1), "os_days": rng.uniform(100, 1500, cases).round(1),
        "os_event": rng.integers(0, 2, cases), "tumor_size_mm": rng.uniform(20, 90, cases).round(1),
        "cirrhosis": rng.integers(0, 2, cases), "fusion_lesion": rng.integers(0, 2, cases),
        "capsule": rng.choice(["absent", "non-intact", "intact"], cases), "nodule_in_nodule": rng.integers(0, 2, cases)})
    out = os.path.join(folder, "features")
    os.makedirs(os.path.join(out, "cache"))
    yy, xx = np.mgrid[:224, :224]
    disk = (yy - 112) ** 2 + (xx - 112) ** 2 < 30 ** 2
    by, bx = np.mgrid[:128, :128]
    box_disk = (by - 64) ** 2 + (bx - 64) ** 2 < 45 ** 2
    class_shift = rng.normal(0, 1, (4, FEATURES)).astype(np.float32)
    index = []
    for i, case in enumerate(ids):
        centre = rng.normal(60, 10, (224, 224))
        centre[disk] += 40 + (60 if responder[i] else 0) + rng.normal(0, 15)
        boxes = []
        for _ in range(3):
            coarse = np.kron(rng.normal(0, 1, (16, 16)), np.ones((8, 8)))
            box = rng.normal(60, 8, (128, 128))
            box[box_disk] += 30 + (15 + 25 * aggressive[i]) * coarse[box_disk]
            boxes.append(box)
        inside = rng.normal(90, 10, (3, 1, 224, 224))
        cls = MRECIST_CLASSES.index(response[i])
        vectors = rng.normal(0, 1, (3, FEATURES)).astype(np.float32) + 0.35 * class_shift[cls]
        path = os.path.join("cache", f"{case}.patches.npz")
        # the CT-and-mask patch: the same CT, its lesion mask the disk
        ct_mask = np.stack([centre, disk])[None].astype(np.int16)
        np.savez_compressed(os.path.join(out, path), centre=centre[None, None].astype(np.int16), ct_mask=ct_mask,
                            boxes=np.stack(boxes)[:, None].astype(np.int16), inside=inside.astype(np.int16),
                            inside_resnet50_ct_ap=vectors)
        index.append({"case_id": case, "file": path})
    pd.DataFrame(index).to_csv(os.path.join(out, "patches.csv"), index=False)
    with open(os.path.join(out, "extraction.json"), "w") as handle:
        json.dump({"settings": {"sampling": "inside", "normalisation": "window", "weights": "random",
                                "deep": ["resnet50"]}}, handle)
    open(os.path.join(folder, "SYNTHETIC"), "w").close()
    test = np.arange(cases) % 3 == 0
    paths = []
    for name, rows in (("train", ~test), ("test", test)):
        paths.append(os.path.join(folder, f"{name}.csv"))
        table[rows].to_csv(paths[-1], index=False)
    return paths[0], paths[1], out


@pytest.fixture(scope="module")
def patch_cohort(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("patches"))
    train, test, features = write_patch_cohort(folder)
    return CohortData(train, features), CohortData(test, features), folder


def test_stratified_folds_are_stratified_and_reproducible():
    label = np.array([1] * 11 + [0] * 40)
    fold = stratified_folds(label, 5, seed=3)
    assert sorted(np.bincount(fold[label == 1])) == [2, 2, 2, 2, 3]
    assert (np.bincount(fold[label == 0]) == 8).all()
    np.testing.assert_array_equal(fold, stratified_folds(label, 5, seed=3))
    assert not np.array_equal(fold, stratified_folds(label, 5, seed=4))


def test_response_cnn_learns_the_visible_signal_and_round_trips(patch_cohort, tmp_path):
    train, test, _ = patch_cohort
    model, info = models.train_bundle("response", "cnn", train, str(tmp_path / "cnn"), seed=0, epochs=12)
    label = objective_response(test.table).to_numpy(dtype=int)
    probability = model.probability(test)
    assert metrics.roc_auc(label, probability) > 0.85
    assert 0 < model.cutoff < 1 and info["metrics"]["auc_validation_cases"] > 0.8
    loaded, _ = models.load(str(tmp_path / "cnn"))
    np.testing.assert_allclose(loaded.probability(test), probability, atol=1e-6)
    assert os.path.isfile(tmp_path / "cnn" / "training_history.csv")
    # paper 002's input: the CT and the mask (windowed CT, mask, CT inside the mask), recorded in the bundle
    assert model.patch_set == "ct_mask" and loaded.patch_set == "ct_mask"
    with open(tmp_path / "cnn" / "params.json") as handle:
        assert json.load(handle)["patch_set"] == "ct_mask"
    x, _ = model.inputs(test)
    stored = test.patches("ct_mask")[0][0]
    assert x.shape[1:] == (3, 224, 224)
    np.testing.assert_array_equal(x[0, 1] > 0, stored[1] == 1)  # the mask channel is the mask
    np.testing.assert_allclose(x[0, 2][stored[1] == 0], -2.0)  # CT inside the mask: 0 (scaled) outside it
    np.testing.assert_allclose(x[0, 2][stored[1] == 1], x[0, 0][stored[1] == 1])
    # the classes balanced by copies (40 responders, 40 not, among the 80 training cases: only the fold split's
    # difference, if any, is copied; none when they are equal)
    _, y = model.labelled(train)
    held = stratified_folds(y, 5, 0) == 0
    counts = np.bincount(y[~held], minlength=2)
    assert model.info["balancing_copies"] == counts.max() - counts.min()
    # the method's paper in every bundle's provenance, and so in every prediction
    citation = models.registry.PAPERS["002"]
    assert citation in info["provenance"] and citation in loaded.predict(test)["provenance"].iloc[0]


def test_response_cnn_balances_an_unbalanced_cohort(patch_cohort):
    """Paper 002 balanced its classes by augmentation: with 3 responders to 1 non-responder the training set
    gets distinct flipped / rotated copies of the non-responders until the classes are equal."""
    train, _, _ = patch_cohort
    table = train.table
    keep = ~table["response"].isin(("SD",))  # CR, PR, PD: 2 : 1
    unbalanced = train.subset(table[keep])
    model = ResponseCNN(epochs=1).fit(unbalanced)
    _, y = model.labelled(unbalanced)
    held = stratified_folds(y, 5, 0) == 0
    counts = np.bincount(y[~held], minlength=2)
    assert counts[1] > 1.5 * counts[0] and model.info["balancing_copies"] == counts[1] - counts[0]
    assert ResponseCNN.balance and not ModelD.balance  # Model_D balances by noisy oversampling (paper 004)


def test_old_response_cnn_bundles_keep_their_centre_patches(patch_cohort, tmp_path):
    """A response CNN bundle written before the CT-and-mask input reads the centre patch repeated to three
    channels, as it was trained (its params say so; one without the key is taken as such)."""
    train, test, _ = patch_cohort
    model = ResponseCNN(epochs=1)
    model.patch_set = "centre"
    model.balance = False
    model.fit(train)
    models.save(model, str(tmp_path / "old"), train, 0)
    loaded, _ = models.load(str(tmp_path / "old"))
    assert loaded.patch_set == "centre" and loaded.label == "cnn (largest-slice patch)"
    x, _ = loaded.inputs(test)
    np.testing.assert_array_equal(x[:, 0], x[:, 2])  # the CT repeated
    np.testing.assert_allclose(loaded.probability(test), model.probability(test), atol=1e-6)
    params = model.params()
    del params["patch_set"]
    assert ResponseCNN.from_params(params, model.tensors()).patch_set == "centre"


def test_cnn_plus_tumour_size(patch_cohort, tmp_path):
    """Paper 002 integrates the CNN with the tumour size: logistic regression on the CNN's out-of-fold logit and
    the size. Trained as a model, its CNN is a five-fold ensemble (every training case scored out of fold)."""
    train, test, _ = patch_cohort
    # the size carries signal of its own here: responders' tumours are smaller
    responder = objective_response(train.table).to_numpy(dtype=bool)
    sized = train.subset(train.table.assign(tumor_size_mm=np.where(responder, 30.0, 60.0)
                                            + np.random.default_rng(0).normal(0, 12, len(responder))))
    model, info = models.train_bundle("response", "cnn+size", sized, str(tmp_path / "cs"), seed=0, epochs=4)
    assert len(model.cnn.nets) == 5 and np.isfinite(model.cnn.out_of_fold).all()
    b0, b_cnn, b_size = model.coefficients
    assert b_cnn > 0 and b_size < 0  # the CNN's score raises, a larger tumour lowers P(response)
    _, y = model.labelled(sized)
    from TACEPredictLib.models.base import logistic_fit, logit
    intercept, coef = logistic_fit(np.column_stack([logit(model.cnn.out_of_fold),
                                                    sized.table["tumor_size_mm"].to_numpy(float)]), y)
    assert [b0, b_cnn, b_size] == pytest.approx([intercept, *coef], rel=1e-6)
    p = model.probability(test)
    lp = b0 + b_cnn * logit(model.cnn.probability(test)) + b_size * test.table["tumor_size_mm"].to_numpy(float)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-lp)), atol=1e-9)
    loaded, _ = models.load(str(tmp_path / "cs"))
    np.testing.assert_allclose(loaded.probability(test), p, atol=1e-6)
    assert loaded.label == "CNN + tumour size" and models.registry.PAPERS["002"] in info["provenance"]
    # from an already trained single CNN (the validation's way): fitted on the CNN's held-out fifth only
    single = ResponseCNN(epochs=2).fit(sized)
    quick = ResponseIntegration.from_components("cnn+size", sized, cnn=single)
    assert quick.info["combination_cases"] == int(np.isfinite(single.out_of_fold).sum()) < len(y)
    with pytest.raises(InputError, match="tumor_size_mm"):
        ResponseIntegration("cnn+size", epochs=1).fit(sized.subset(sized.table.drop(columns="tumor_size_mm")))


def test_model_d_csd_and_nomogram(patch_cohort, tmp_path):
    train, test, _ = patch_cohort
    csd, info = models.train_bundle("aggressive-pd", "csd", train, str(tmp_path / "csd"), seed=0, epochs=10)
    label = test.table["aggressive_pd"].to_numpy(dtype=int)
    d_auc = metrics.roc_auc(label, csd.d.probability(test))
    assert d_auc > 0.8  # the slice texture carries the outcome
    # Model_D is a five-fold ensemble: every training case has an out-of-fold score, which Model_CSD is fitted
    # on, and a new case's score is the members' mean.
    _, y_train = csd.labelled(train)
    assert len(csd.d.nets) == 5 and not np.isnan(csd.d.out_of_fold).any()
    assert csd.info["auc_out_of_fold_model_d"] == pytest.approx(metrics.roc_auc(y_train, csd.d.out_of_fold))
    x, groups = stack_patches(test.patches("boxes"))
    members = [case_mean(predict_network(net, x, "cpu")[:, 1], groups, len(label)) for net in csd.d.nets]
    np.testing.assert_allclose(csd.d.probability(test), np.mean(members, axis=0), atol=1e-6)
    assert np.ptp(members, axis=0).max() > 1e-3  # the members differ
    assert csd.coefficients["d_logit"] > 0  # Model_D's score raises the combined risk
    predictions = csd.predict(test)
    # its cut-off: the Youden point of its own out-of-fold probabilities, not the authors' 0.28
    assert csd.cutoff == metrics.youden_cutoff(y_train, csd.out_of_fold)[0] and not np.isnan(csd.out_of_fold).any()
    assert set(predictions["risk_group"]) <= {"high", "low"} and (predictions["cutoff"] == csd.cutoff).all()
    expected = 1 / (1 + np.exp(-predictions["score"]))
    np.testing.assert_allclose(predictions["probability"], expected)
    # its Model_CS is derived on the training cases (the paper's procedure), not the published coefficients
    assert csd.variant == "refit" and csd.cs.fitted
    np.testing.assert_allclose(predictions["cs_score"], csd.cs.score(test.table))
    assert os.path.getsize(tmp_path / "csd" / "nomogram.png") > 10_000
    loaded, _ = models.load(str(tmp_path / "csd"))
    np.testing.assert_allclose(loaded.probability(test), csd.probability(test), atol=1e-6)


def test_mrecist_head_on_cached_backbone_features(patch_cohort, tmp_path):
    train, test, _ = patch_cohort
    model, info = models.train_bundle("mrecist", "resnet50", train, str(tmp_path / "m"), seed=0, weights="random")
    predictions = model.predict(test)
    p = predictions[[f"p_{c}" for c in MRECIST_CLASSES]].to_numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(predictions["probability"], p[:, 0] + p[:, 1], atol=1e-6)
    truth = test.table["response"].to_numpy()
    assert (predictions["predicted_class"].to_numpy() == truth).mean() > 0.6  # chance: 0.25
    assert metrics.roc_auc(np.isin(truth, ("CR", "PR")).astype(int), predictions["probability"]) > 0.85
    assert model.info["backbone"]["weights"] == "random"
    loaded, _ = models.load(str(tmp_path / "m"))
    np.testing.assert_allclose(loaded.class_probabilities(test), model.class_probabilities(test), atol=1e-6)


def test_integrations_of_a_classifier_with_the_cnn_and_with_size(patch_cohort):
    train, test, _ = patch_cohort

    class Fixed:  # a fitted classifier stand-in: out-of-fold and new-case probabilities from another column
        features = ["size"]
        info = {}

        def __init__(self, data):
            self.out_of_fold = self.probability(data)

        def probability(self, data):
            return 1 / (1 + np.exp((data.table["os_days"].to_numpy() - 800) / 300))

        def labelled(self, data):
            return data, objective_response(data.table).to_numpy(dtype=int)

    cnn = ResponseCNN(epochs=8).fit(train)
    mean = ResponseIntegration.from_components("rf+cnn", train, Fixed(train), cnn)
    np.testing.assert_allclose(mean.probability(test), (Fixed(test).probability(test) + cnn.probability(test)) / 2)
    sized = ResponseIntegration.from_components("rf+size", train, Fixed(train))
    intercept, b_cml, b_size = sized.coefficients
    assert np.isfinite([intercept, b_cml, b_size]).all() and 0 <= sized.cutoff <= 1
    with pytest.raises(InputError, match="tumor_size_mm"):
        sized.probability(test.subset(test.table.drop(columns="tumor_size_mm")))


def test_extraction_stores_patches_and_their_backbone_vectors(demo_cohort, tmp_path):
    from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_cohort
    from TACEPredictLib.imaging.sampling import slice_areas
    from TACEPredictLib.imaging.preprocess import load_case
    from TACEPredictLib.data.manifest import read_manifest
    settings = ExtractionSettings(radiomics=False, deep=("resnet50",), weights="random", sampling="inside",
                                  normalisation="window", register="rigid", icc_cases=0)
    out = str(tmp_path / "features")
    result = extract_cohort(demo_cohort, out, settings, workers=1)
    assert len(result.failures) == 0
    data = CohortData(demo_cohort, out)
    centre, boxes = data.patches("centre"), data.patches("boxes")
    assert all(c.shape == (1, 1, 224, 224) and c.dtype == np.int16 for c in centre)
    manifest = read_manifest(demo_cohort)
    case = load_case(manifest, manifest.table.iloc[0], ["ct_ap", "ct_pvp"], "rigid")
    assert len(boxes[0]) == int((slice_areas(case.mask_array()) > 0).sum())
    assert boxes[0].shape[1:] == (1, 128, 128)
    # The cached vectors are what the frozen backbone gives for the stored patches.
    cached = data.patches("inside_resnet50_ct_ap")[0]
    x, _ = stack_patches(data.patches("inside")[:1])
    recomputed = MRecistNet(weights="random")._features(x)
    assert np.corrcoef(cached.ravel(), recomputed.ravel())[0, 1] > 0.999
    with pytest.raises(InputError, match="no patches.csv"):
        CohortData(demo_cohort, str(tmp_path)).patches("centre")
    # A single patient (Slicer's Apply) gets the very patches the cohort extraction stored.
    from TACEPredictLib.slicer.patient import PatientData
    one_case = os.path.join(os.path.dirname(demo_cohort), "one_case.csv")
    pd.read_csv(demo_cohort).iloc[:1].to_csv(one_case, index=False)
    patient = PatientData(one_case)
    patient.extraction_settings = {"phases": ["ct_ap", "ct_pvp"], "register": "rigid"}
    for name in ("centre", "inside", "boxes", "ct_mask"):
        np.testing.assert_array_equal(patient.patches(name)[0], data.patches(name)[0])
    # seed 002's CT and mask: two channels, the second the 0 / 1 lesion mask
    ct_mask = data.patches("ct_mask")
    assert all(p.shape == (1, 2, 224, 224) and set(np.unique(p[0, 1])) == {0, 1} for p in ct_mask)
    # An extraction made before the ct_mask set existed: the same command adds it, features untouched.
    index = pd.read_csv(os.path.join(out, "patches.csv"))
    path = os.path.join(out, index["file"].iloc[0])
    with np.load(path) as stored:
        old = {k: stored[k] for k in stored.files if not k.startswith("ct_mask")}
    np.savez_compressed(path, **old)
    features_file = path.replace(".patches.npz", ".parquet")
    before = os.path.getmtime(features_file)
    with pytest.raises(InputError, match="older TACEPredict") as error:
        CohortData(demo_cohort, out).patches("ct_mask")
    assert error.value.case_id == index["case_id"].iloc[0]
    again = extract_cohort(demo_cohort, out, settings, workers=1)
    assert again.computed == [str(index["case_id"].iloc[0])] and os.path.getmtime(features_file) == before
    refreshed = CohortData(demo_cohort, out)
    np.testing.assert_array_equal(refreshed.patches("ct_mask")[0], ct_mask[0])
    np.testing.assert_array_equal(refreshed.patches("inside_resnet50_ct_ap")[0], cached)


def test_bad_labels_name_the_case_and_the_column(patch_cohort):
    train, _, folder = patch_cohort
    table = train.table.copy()
    table.loc[3, "response"] = "XX"
    with pytest.raises(InputError, match="unknown mRECIST response") as error:
        MRecistNet().fit(train.subset(table))
    assert error.value.case_id == table.loc[3, "case_id"] and error.value.column == "response"
    table = train.table.copy()
    table.loc[5, "aggressive_pd"] = 2
    with pytest.raises(InputError, match="0 or 1") as error:
        ModelD(epochs=1).fit(train.subset(table))
    assert error.value.column == "aggressive_pd"
    one_class = train.subset(train.table.assign(aggressive_pd=0))
    with pytest.raises(InputError):
        ModelD(epochs=1).fit(one_class)
    no_cr = train.subset(train.table[train.table["response"] != "CR"])
    with pytest.raises(InputError, match="CR"):
        MRecistNet().fit(no_cr)
