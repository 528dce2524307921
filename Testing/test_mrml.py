"""The MRML adapter and one-patient Apply on slicer-core's real MRML scene (no Slicer application)."""

import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from conftest import make_image  # noqa: E402

from TACEPredictLib import RESEARCH_USE_NOTICE, InputError, models  # noqa: E402
from TACEPredictLib.slicer import mrml  # noqa: E402
from TACEPredictLib.data.cohort import CohortData, Standardiser  # noqa: E402
from TACEPredictLib.data.manifest import read_manifest  # noqa: E402

TILTED = sitk.VersorTransform((0.2, 0.3, 0.9), 0.5).GetMatrix()


def tilted_image(array, spacing=(0.7, 0.8, 2.5)):
    return make_image(array, spacing=spacing, origin=(10.0, -20.0, 30.0), direction=TILTED)


def test_volume_round_trip_keeps_voxels_and_geometry():
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    image = tilted_image(array)
    scene = slicer.vtkMRMLScene()
    node = mrml.image_to_volume(image, scene, "ct")
    back = mrml.volume_to_image(node)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), array)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    # the voxel (i, j, k) is at the same place: LPS in SimpleITK, RAS in MRML
    import vtk
    ijk_to_ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ijk_to_ras)
    ras = ijk_to_ras.MultiplyPoint((3, 2, 1, 1))[:3]
    lps = image.TransformIndexToPhysicalPoint((3, 2, 1))
    np.testing.assert_allclose(ras, (-lps[0], -lps[1], lps[2]), atol=1e-9)


def test_volume_under_a_linear_transform_is_read_in_world_coordinates():
    scene = slicer.vtkMRMLScene()
    node = mrml.image_to_volume(tilted_image(np.zeros((3, 4, 5), np.int16)), scene, "ct")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    import vtk
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # 5 mm towards R = -5 mm in LPS x
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    assert mrml.volume_to_image(node).GetOrigin()[0] == pytest.approx(10.0 - 5.0)


def test_segment_export_picks_one_of_several_segments():
    labels = np.zeros((10, 20, 30), np.uint8)
    labels[2:5, 3:8, 4:10] = 1
    labels[6:9, 10:15, 20:25] = 2
    scene = slicer.vtkMRMLScene()
    ct = mrml.image_to_volume(tilted_image(labels.astype(np.int16) * 40), scene, "ct")
    labelmap = mrml.image_to_volume(tilted_image(labels), scene, "labels", labelmap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    second = segmentation.GetSegmentation().GetNthSegmentID(1)
    for key in (second, "Label_2"):  # by id or by name
        mask = mrml.segment_mask(segmentation, key, ct)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), labels == 2)
        np.testing.assert_allclose(mask.GetDirection(), TILTED, atol=1e-9)
    with pytest.raises(InputError, match="Label_1, Label_2"):
        mrml.segment_mask(segmentation, "Tumour", ct)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mrml.labelmap_mask(labelmap, 1)), labels == 1)
    assert scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 1  # the export node is removed


def test_tables_cell_by_cell():
    frame = pd.DataFrame({"model": ["a", "b"], "score": [0.25, -1.5], "group": ["high", None]})
    scene = slicer.vtkMRMLScene()
    node = mrml.dataframe_to_table(frame, scene, "results")
    table = node.GetTable()
    assert table.GetNumberOfRows() == 2 and table.GetNumberOfColumns() == 3
    assert table.GetValueByName(1, "model").ToString() == "b"
    assert table.GetValueByName(1, "score").ToDouble() == -1.5
    assert table.GetValueByName(1, "group").ToString() == ""
    back = mrml.table_to_dataframe(node)
    assert list(back["score"]) == [0.25, -1.5] and list(back["model"]) == ["a", "b"]


@pytest.fixture(scope="module")
def signature_bundle(demo_cohort, tmp_path_factory):
    """A signature model on real (untrained-DenseNet121, centre-patch) features of the demo cohort: three
    features per phase, standardised on the cohort, so that prediction through MRML can be compared with
    prediction from the cohort's own extraction."""
    from TACEPredictLib.stats.cox import breslow_baseline
    from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_cohort
    from TACEPredictLib.models.overall_survival import LinearSignature, SignatureCox
    folder = tmp_path_factory.mktemp("signature")
    features = str(folder / "features")
    extract_cohort(demo_cohort, features, ExtractionSettings(radiomics=False, weights="random", icc_cases=0),
                   workers=1)
    data = CohortData(demo_cohort, features)
    wide = data.features(("ct_ap", "ct_pvp"), "densenet121")
    names = [c for c in wide.columns if c.endswith(("_0003", "_0100", "_0500"))]
    model = SignatureCox()
    model.signature = LinearSignature("densenet121")
    model.signature.standardiser = Standardiser().fit(wide[names])
    model.signature.coef = np.array([0.8, -0.5, 0.3, 0.6, 0.2, -0.4])
    model.covariates, model.coef = ["signature"], np.array([1.0])
    score = model.signature.score(data)
    table = data.table
    model.baseline = breslow_baseline(score, table["os_days"].astype(float).to_numpy(),
                                      table["os_event"].astype(float).to_numpy())
    model.cutoff = float(np.median(score))
    bundle = str(folder / "bundle")
    models.save(model, bundle, data, seed=0)
    return bundle, data, model


@pytest.mark.parametrize("case_id", ["demo_0000", "demo_0001"])  # a .seg.nrrd case and a labelmap case
def test_apply_from_nodes_equals_the_cohort_pipeline(demo_cohort, signature_bundle, case_id, tmp_path):
    bundle, data, model = signature_bundle
    manifest = read_manifest(demo_cohort)
    scene = slicer.vtkMRMLScene()
    nodes = mrml.load_case_nodes(scene, manifest, case_id)
    seg = nodes["seg"]
    is_segmentation = seg.IsA("vtkMRMLSegmentationNode")
    assert is_segmentation == (case_id == "demo_0000")
    clinical = manifest.row(case_id).to_dict()
    out = mrml.run_case(scene, {"ct_ap": nodes["ct_ap"], "ct_pvp": nodes["ct_pvp"]},
                        segmentation=seg if is_segmentation else None, segment_id=nodes["segment"],
                        labelmap=None if is_segmentation else seg, label=nodes["segment"],
                        clinical=clinical, bundles=[bundle], case_id=case_id, device="cpu")
    results = out["results"].set_index("task")
    assert (out["results"]["error"] == "").all(), out["results"]["error"].tolist()
    # same score as the cohort extraction of the same files: nodes, geometry and mask survived the trip
    expected = model.risk_score(data.subset(data.table[data.table["case_id"] == case_id]))[0]
    assert results.loc["survival", "score"] == pytest.approx(expected, abs=1e-4)
    assert np.isnan(results.loc["aggressive-pd", "cutoff"])  # the published Model_CS has no cut-off
    assert results.loc["aggressive-pd", "risk_group"] == ""
    assert "synthetic" in results.loc["survival", "notice"].lower()

    # the results table node, cell by cell
    table = mrml.table_to_dataframe(out["nodes"]["results"]).set_index("task")
    assert table.loc["survival", "score"] == pytest.approx(expected, abs=1e-4)
    assert table.loc["survival", "risk_group"] == ("high" if expected > model.cutoff else "low")
    assert table.loc["aggressive-pd", "notice"] == RESEARCH_USE_NOTICE
    assert table.loc["survival", "provenance"] == models.load(bundle)[0].provenance != ""
    features = mrml.table_to_dataframe(out["nodes"]["features"])
    assert {"family", "feature", "ct_ap", "ct_pvp"} <= set(features.columns) and len(features) == 2 * 1024 // 2

    # survival chart: the patient's curve starts at 1 and falls; the training KM groups are absent here
    curves = mrml.table_to_dataframe(out["nodes"]["survival_table"])
    patient = curves[[c for c in curves.columns if c.startswith("patient")][0]].to_numpy()
    assert patient[0] == pytest.approx(1.0) and np.all(np.diff(patient) <= 1e-12) and patient[-1] < 1
    chart = out["nodes"]["survival_chart"]
    assert chart.GetNumberOfPlotSeriesNodes() == 1
    assert out["nodes"]["probability_chart"].GetNumberOfPlotSeriesNodes() == 2

    # Grad-CAM heat maps on the arterial CT's geometry, in [0, 1], only around the lesion's largest slice
    for phase in ("ct_ap", "ct_pvp"):
        heat = mrml.volume_to_image(out["nodes"][f"heatmap {model.label} {phase}"])
        ct = mrml.volume_to_image(nodes["ct_ap"])
        assert heat.GetSize() == ct.GetSize()
        np.testing.assert_allclose(heat.GetOrigin(), ct.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(heat.GetSpacing(), ct.GetSpacing(), atol=1e-9)
        np.testing.assert_allclose(heat.GetDirection(), ct.GetDirection(), atol=1e-9)
        values = sitk.GetArrayFromImage(heat)
        assert 0 <= values.min() and values.max() <= 1 + 1e-6 and values.max() > 0.5
        assert np.count_nonzero(values.max(axis=(1, 2)) > 0) <= 3  # one slice (linear resampling may touch two)

    # a second Apply for the same case updates the nodes instead of adding new ones
    count = scene.GetNumberOfNodes()
    mrml.run_case(scene, {"ct_ap": nodes["ct_ap"], "ct_pvp": nodes["ct_pvp"]},
                  segmentation=seg if is_segmentation else None, segment_id=nodes["segment"],
                  labelmap=None if is_segmentation else seg, label=nodes["segment"], clinical=clinical,
                  bundles=[bundle], case_id=case_id, device="cpu")
    assert scene.GetNumberOfNodes() == count

    # the scene is saved with its data and opens again with the same tables
    path = mrml.save_scene(scene, str(tmp_path / "scene"), case_id)
    reopened = slicer.vtkMRMLScene()
    reopened.SetURL(path)
    assert reopened.Connect() == 1
    results_node = reopened.GetFirstNodeByName(f"TACEPredict {case_id} results")
    assert mrml.table_to_dataframe(results_node).set_index("task").loc["survival", "score"] == \
        pytest.approx(expected, abs=1e-4)
    assert reopened.GetFirstNodeByName(f"TACEPredict {case_id} survival").GetNumberOfPlotSeriesNodes() == 1


def test_a_failing_model_is_reported_and_the_others_still_run(demo_cohort, signature_bundle, tmp_path):
    bundle, _, _ = signature_bundle
    manifest = read_manifest(demo_cohort)
    scene = slicer.vtkMRMLScene()
    nodes = mrml.load_case_nodes(scene, manifest, "demo_0002")
    clinical = manifest.row("demo_0002").to_dict()
    clinical.pop("capsule")  # Model_CS needs it
    out = mrml.run_case(scene, {"ct_ap": nodes["ct_ap"]}, segmentation=nodes["seg"], segment_id=nodes["segment"],
                        clinical=clinical, bundles=[bundle, str(tmp_path / "not_a_bundle")], case_id="demo_0002",
                        device="cpu", heatmaps=False)
    errors = out["results"].set_index("model")["error"]
    assert "capsule" in errors[[m for m in errors.index if m.startswith("clinical-semantic")][0]]
    assert "ct_pvp" in errors["signature"]  # the signature needs the portal phase, which was not given
    assert "not_a_bundle" in out["results"]["model"].tolist()
    with pytest.raises(InputError, match="segmentation"):
        mrml.run_case(scene, {"ct_ap": nodes["ct_ap"]}, case_id="demo_0002")


def test_headless_batch_script_saves_a_scene_per_case_and_records_failures(demo_cohort, signature_bundle,
                                                                           tmp_path):
    import subprocess
    import sys
    bundle, _, _ = signature_bundle
    table = pd.read_csv(demo_cohort, dtype=str)
    table["ct_ap"] = [os.path.join(os.path.dirname(demo_cohort), p) for p in table["ct_ap"]]
    for column in ("ct_pvp", "ct_dp", "seg", "seg_r2"):
        table[column] = [os.path.join(os.path.dirname(demo_cohort), p) if isinstance(p, str) else p
                         for p in table[column]]
    table.loc[table["case_id"] == "demo_0003", "ct_pvp"] = str(tmp_path / "missing.nrrd")
    manifest = tmp_path / "manifest.csv"
    table.to_csv(manifest, index=False)
    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "slicer_batch.py")
    out = tmp_path / "batch"
    done = subprocess.run([sys.executable, script, "--manifest", str(manifest), "--bundle", bundle, "--out",
                           str(out), "--cases", "demo_0002,demo_0003", "--device", "cpu"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]  # one case failed
    failures = pd.read_csv(out / "failures.csv")
    assert failures["case_id"].tolist() == ["demo_0003"]
    assert "missing.nrrd" in failures["error"][0] and failures["column"][0] == "ct_pvp"
    results = pd.read_csv(out / "cohort_results.csv")
    assert set(results["case_id"]) == {"demo_0002"} and set(results["task"]) == {"survival", "aggressive-pd"}
    reopened = slicer.vtkMRMLScene()
    reopened.SetURL(str(out / "demo_0002" / "demo_0002.mrml"))
    assert reopened.Connect() == 1
    heat = [reopened.GetNthNode(i) for i in range(reopened.GetNumberOfNodes())
            if "Grad-CAM" in (reopened.GetNthNode(i).GetName() or "")]
    assert len(heat) == 2 and heat[0].GetImageData().GetDimensions() == \
        reopened.GetFirstNodeByName("demo_0002_ct_ap").GetImageData().GetDimensions()


def test_reports_become_tables_and_charts(tmp_path):
    from TACEPredictLib.stats import metrics
    rng = np.random.default_rng(0)
    n = 40
    survival = tmp_path / "survival"
    survival.mkdir()
    group = np.where(np.arange(n) < 20, "low", "high")
    days = np.round(rng.exponential(np.where(group == "low", 900, 300)), 1) + 1
    event = (rng.random(n) < 0.8).astype(int)
    pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "risk_group": group, "os_days": days,
                  "os_event": event}).to_csv(survival / "predictions.csv", index=False)
    pd.DataFrame({"metric": ["c_index"], "value": [0.7]}).to_csv(survival / "metrics.csv", index=False)
    pd.DataFrame({"group": [1, 2], "predicted": [0.3, 0.6], "observed": [0.25, 0.65]}).to_csv(
        survival / "calibration.csv", index=False)
    scene = slicer.vtkMRMLScene()
    nodes = mrml.report_to_scene(scene, str(survival), "signature")
    curves = mrml.table_to_dataframe(nodes["curve_table"])
    km = metrics.kaplan_meier(days[group == "high"], event[group == "high"])
    one_year = curves.loc[np.isclose(curves["years"], 1.0), "high risk (n=20)"].iloc[0]
    assert one_year == pytest.approx(metrics.survival_at(km, 365.25))
    assert nodes["curve_chart"].GetNumberOfPlotSeriesNodes() == 2
    assert mrml.table_to_dataframe(nodes["calibration_table"])["observed"].tolist() == [0.25, 0.65]
    assert mrml.table_to_dataframe(nodes["metrics"])["value"].tolist() == [0.7]

    binary = tmp_path / "binary"
    binary.mkdir()
    label = np.array([0, 0, 1, 1, 0, 1])
    # as Model_CSD's report has them: its two inputs' columns come before the label
    pd.DataFrame({"case_id": list("abcdef"), "cs_score": [-1.0, 0.2, 0.1, 1.5, -0.3, 2.0],
                  "d_probability": [0.2, 0.5, 0.4, 0.7, 0.3, 0.8], "probability": [0.1, 0.4, 0.35, 0.8, 0.2, 0.9],
                  "aggressive_pd": label}).to_csv(binary / "predictions.csv", index=False)
    pd.DataFrame({"metric": ["auc"], "value": [0.89]}).to_csv(binary / "metrics.csv", index=False)
    nodes = mrml.report_to_scene(scene, str(binary), "Model_CS")
    roc = mrml.table_to_dataframe(nodes["curve_table"])
    assert list(roc.columns) == ["false positive rate", "AUC 0.889", "chance"]
    assert roc.iloc[-1, :2].tolist() == [1.0, 1.0]
