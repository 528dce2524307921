"""Cohort extraction: tidy table, cache and resume, per-case failures, local workers and Dask."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from TACEPredictLib.cli import main
from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_cohort, wide_features

from conftest import ct_and_lesion, make_image, write_manifest

LIGHT_PARAMS = """imageType:
  Original: {}
featureClass:
  firstorder:
  glcm: [JointAverage, Contrast]
setting:
  binWidth: %d
  resampledPixelSpacing: [1.0, 1.0, 1.0]
  label: 1
"""


@pytest.fixture()
def light_params(tmp_path):
    def make(bin_width=25):
        path = tmp_path / f"light_{bin_width}.yaml"
        path.write_text(LIGHT_PARAMS % bin_width)
        return str(path)
    return make


def _settings(params, **changes):
    values = dict(radiomics_params=params, deep=(), register="none", icc_cases=0)
    values.update(changes)
    return ExtractionSettings(**values)


def test_extraction_writes_one_tidy_table_with_provenance(demo_cohort, tmp_path, light_params):
    out = str(tmp_path / "out")
    settings = _settings(light_params(), deep=("densenet121",), weights="random", register="rigid", icc_cases=3)
    result = extract_cohort(demo_cohort, out, settings, workers=1)
    assert len(result.failures) == 0 and sorted(result.computed) == [f"demo_{i:04d}" for i in range(6)]
    for name in ("features.parquet", "features.csv", "failures.csv", "registration.csv", "icc.csv",
                 "extraction.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    table = pd.read_parquet(os.path.join(out, "features.parquet"))
    assert list(table.columns) == ["case_id", "phase", "reader", "family", "feature", "value", "weights"]
    assert set(table["reader"]) == {"seg"} and set(table["phase"]) == {"ct_ap", "ct_pvp"}
    counts = table.groupby(["case_id", "phase", "family"]).size().unstack()
    assert (counts["densenet121"] == 1024).all() and (counts["radiomics"] == 20).all()
    deep_rows = table[table["family"] == "densenet121"]
    assert deep_rows["weights"].str.contains("UNTRAINED").all()
    assert np.isfinite(table["value"]).all()
    # On average the tumour is brighter in the arterial phase than in the portal phase (wash-out).
    mean = table[table["feature"] == "original_firstorder_Mean"].pivot(index="case_id", columns="phase", values="value")
    assert (mean["ct_ap"] - mean["ct_pvp"]).mean() > 10
    csv = pd.read_csv(os.path.join(out, "features.csv"))
    assert len(csv) == len(table)

    summary = json.load(open(os.path.join(out, "extraction.json")))
    assert "RESEARCH USE ONLY" in summary["notice"] and "SYNTHETIC" in summary["data"]
    assert any("RANDOM WEIGHTS" in w for w in summary["warnings"])
    assert summary["reproducibility"]["form"] == "ICC(2,1)" and summary["reproducibility"]["readers"] == ["seg_r2"]
    icc = pd.read_csv(os.path.join(out, "icc.csv"))
    assert icc["subjects"].max() == 3 and icc["kept"].sum() == summary["reproducibility"]["kept"]
    registration = pd.read_csv(os.path.join(out, "registration.csv"))
    assert list(registration["phase"]) == ["ct_pvp"] * 6
    assert (registration["ncc_after"] >= registration["ncc_before"]).all()
    wide = wide_features(table, families=["radiomics"])
    assert wide.shape == (6, 40) and "ct_ap:radiomics:original_firstorder_Mean" in wide.columns
    assert wide_features(table, families=["radiomics"], kept=icc).shape[1] == icc[
        (icc["kept"]) & (icc["family"] == "radiomics")].shape[0]


def test_rerun_uses_the_cache_and_changed_settings_recompute(demo_cohort, tmp_path, light_params):
    out = str(tmp_path / "out")
    first = extract_cohort(demo_cohort, out, _settings(light_params()), workers=1)
    again = extract_cohort(demo_cohort, out, _settings(light_params()), workers=1)
    assert again.computed == [] and len(again.cached) == 6
    pd.testing.assert_frame_equal(first.features, again.features)
    changed = extract_cohort(demo_cohort, out, _settings(light_params(10)), workers=1)
    assert len(changed.computed) == 6
    assert not np.allclose(changed.features["value"], first.features["value"])


def test_a_killed_run_resumes_where_it_stopped(demo_cohort, tmp_path, light_params):
    out = str(tmp_path / "out")

    def kill_after_two(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_cohort(demo_cohort, out, _settings(light_params()), workers=1, progress=kill_after_two)
    assert not os.path.exists(os.path.join(out, "features.csv"))
    leftovers = [f for f in os.listdir(os.path.join(out, "cache")) if ".tmp" in f]
    assert leftovers == []
    resumed = extract_cohort(demo_cohort, out, _settings(light_params()), workers=1)
    assert len(resumed.cached) == 2 and len(resumed.computed) == 4
    assert resumed.features["case_id"].nunique() == 6


def _broken_cohort(folder):
    hu, lesion = ct_and_lesion(shape=(12, 40, 40))
    def write(name, array):
        sitk.WriteImage(make_image(array), os.path.join(folder, name))
    write("ct.nrrd", hu)
    write("seg.nrrd", lesion)
    tiny = np.zeros_like(lesion)
    tiny[6, 20, 20:24] = 1
    write("tiny.nrrd", tiny)
    nan = hu.astype(np.float32)
    nan[3, 3, 3] = np.nan
    write("nan.nrrd", nan)
    sitk.WriteImage(make_image(hu[6:7]), os.path.join(folder, "flat.nrrd"))
    open(os.path.join(folder, "garbage.nrrd"), "w").write("not an image")
    good = {"ct_ap": "ct.nrrd", "ct_pvp": "ct.nrrd", "seg": "seg.nrrd"}
    rows = [dict(good, case_id="good1"),
            dict(good, case_id="tiny", seg="tiny.nrrd"),
            dict(good, case_id="nan_voxels", ct_pvp="nan.nrrd"),
            dict(good, case_id="flat", ct_ap="flat.nrrd"),
            dict(good, case_id="garbage", ct_pvp="garbage.nrrd"),
            dict(good, case_id="gone", ct_ap="missing.nrrd"),
            dict(good, case_id="no_pvp", ct_pvp=""),
            dict(good, case_id="good2")]
    return write_manifest(folder, rows)


def test_bad_cases_are_recorded_and_the_rest_completes(tmp_path, light_params, capsys):
    manifest = _broken_cohort(str(tmp_path))
    out = str(tmp_path / "out")
    status = main(["extract", "--manifest", manifest, "--out", out, "--deep", "none", "--register", "none",
                   "--radiomics-params", light_params(), "--workers", "1", "--quiet", "--icc-cases", "0"])
    assert status == 1
    failures = pd.read_csv(os.path.join(out, "failures.csv"), dtype=str).set_index("case_id")
    expected = {"tiny": ("seg", "fewer than the 30"), "nan_voxels": ("ct_pvp", "NaN"), "flat": ("ct_ap", "2D image"),
                "garbage": ("ct_pvp", "cannot read"), "gone": ("ct_ap", "file not found"),
                "no_pvp": ("ct_pvp", "phase is missing")}
    assert sorted(failures.index) == sorted(expected)
    for case_id, (column, words) in expected.items():
        assert failures.loc[case_id, "column"] == column
        assert words in failures.loc[case_id, "error"], failures.loc[case_id, "error"]
        assert isinstance(failures.loc[case_id, "fix"], str) and failures.loc[case_id, "fix"]
    features = pd.read_csv(os.path.join(out, "features.csv"))
    assert sorted(features["case_id"].unique()) == ["good1", "good2"]
    printed = capsys.readouterr().out
    assert "FAILED: case tiny, column 'seg'" in printed and "2 case(s) extracted" in printed


def test_two_local_workers_and_dask_give_the_same_table(demo_cohort, tmp_path, light_params):
    distributed = pytest.importorskip("distributed")
    serial = extract_cohort(demo_cohort, str(tmp_path / "serial"), _settings(light_params()), workers=1)
    parallel = extract_cohort(demo_cohort, str(tmp_path / "parallel"), _settings(light_params()), workers=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        on_dask = extract_cohort(demo_cohort, str(tmp_path / "dask"), _settings(light_params()),
                                 dask_address=cluster.scheduler_address)
    assert len(parallel.computed) == len(on_dask.computed) == 6
    key = ["case_id", "phase", "feature"]
    for other in (parallel, on_dask):
        pd.testing.assert_frame_equal(serial.features.sort_values(key).reset_index(drop=True),
                                      other.features.sort_values(key).reset_index(drop=True))


def test_unknown_phase_and_missing_params_fail_before_any_case(demo_cohort, tmp_path, light_params):
    from TACEPredictLib import InputError
    with pytest.raises(InputError, match="no column ct_xx"):
        extract_cohort(demo_cohort, str(tmp_path / "a"), _settings(light_params(), phases=("ct_xx",)))
    with pytest.raises(InputError, match="parameter file not found"):
        extract_cohort(demo_cohort, str(tmp_path / "b"), _settings(str(tmp_path / "none.yaml")))


def test_features_equal_pyradiomics_run_directly_on_the_files(demo_cohort, tmp_path):
    """Cropping, pixel type and checks change nothing: wavelet features are the most sensitive to the crop."""
    import logging

    featureextractor = pytest.importorskip(
        "radiomics.featureextractor", reason="compares with pyradiomics run directly, which is not installed (it "
                                             "does not build on Python 3.12)")

    from TACEPredictLib.imaging.extraction import extract_case
    from TACEPredictLib.data.manifest import read_manifest
    params = tmp_path / "wavelet.yaml"
    params.write_text("imageType:\n  Original: {}\n  Wavelet: {}\nfeatureClass:\n  firstorder:\n  glszm:\n"
                      "setting:\n  binWidth: 25\n  resampledPixelSpacing: [1.0, 1.0, 1.0]\n  interpolator: sitkBSpline\n"
                      "  preCrop: true\n  label: 1\n")
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    direct = featureextractor.RadiomicsFeatureExtractor(str(params))
    manifest = read_manifest(demo_cohort)
    for index in (0, 1):  # a .seg.nrrd case and a labelmap case
        row = manifest.table.iloc[index]
        expected = direct.execute(manifest.resolve(row["ct_pvp"]), manifest.resolve(row["seg"]), label=1)
        table, _, _ = extract_case(manifest, row, _settings(str(params), phases=("ct_pvp",)))
        ours = dict(zip(table["feature"], table["value"]))
        compared = {k: float(v) for k, v in expected.items() if not k.startswith("diagnostics_")}
        assert len(compared) == len(ours) == 9 * (18 + 16)
        for name, value in compared.items():
            assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
