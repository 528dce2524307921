"""Radiomics through TACEPredict (the default engine, torch): pyradiomics' own baselines, the IBSI digital phantom,
the CT parameter file and the error when pyradiomics is missing."""

import ast
import csv
import math
import os

import numpy as np
import pytest

from TACEPredictLib import InputError
from TACEPredictLib.imaging import radiomics as radiomics_features
from TACEPredictLib.imaging.radiomics import extract, make_extractor, settings_of

from conftest import SHARED_DATA, ct_and_lesion, make_image

# Everything here runs through make_extractor's default engine (torch, which needs no pyradiomics) except the
# pyradiomics engine's own case, which skips where pyradiomics is not installed (Python 3.12, Slicer 5.10+).
PYRADIOMICS_INSTALLED = radiomics_features.available()[0]

PYRADIOMICS = os.path.join(SHARED_DATA, "pyradiomics")
IBSI = os.path.join(SHARED_DATA, "ibsi")
CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")


def _baseline(feature_class, case):
    with open(os.path.join(PYRADIOMICS, "baseline", f"baseline_{feature_class}.csv")) as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index(case)
    return {row[0]: row[column] for row in rows[1:]}


# brain1's mesh-based shape features differ from the stored baseline by up to 0.1% (the baseline predates a
# change to pyradiomics' marching cubes; pyradiomics' own test suite accepts 3%). Everything else: 1e-6.
MESH_FEATURES = {"original_shape_Sphericity", "original_shape_SurfaceVolumeRatio", "original_shape_MeshVolume",
                 "original_shape_SurfaceArea"}


@pytest.mark.parametrize("case", ["brain1", "breast1"])
def test_pyradiomics_baselines_are_reproduced(case):
    """Every feature of every class, with the settings pyradiomics' test suite recorded for the case."""
    image = os.path.join(PYRADIOMICS, f"{case}_image.nrrd")
    mask = os.path.join(PYRADIOMICS, f"{case}_label.nrrd")
    compared = 0
    for feature_class in CLASSES:
        baseline = _baseline(feature_class, case)
        settings = ast.literal_eval(baseline["diagnostics_Configuration_Settings"])
        settings = {k: v for k, v in settings.items() if v is not None}
        extractor = make_extractor({"imageType": {"Original": {}}, "featureClass": {feature_class: None},
                                    "setting": settings})
        values = extract(image, mask, extractor)
        expected = {k: float(v) for k, v in baseline.items() if k.startswith(f"original_{feature_class}_")}
        assert set(expected) <= set(values)
        for name, value in expected.items():
            relative = 1e-3 if case == "brain1" and name in MESH_FEATURES else 1e-6
            assert values[name] == pytest.approx(value, rel=relative, abs=1e-9), name
        compared += len(expected)
    assert compared > 90


IBSI_NAMES = {
 "shape": {"MeshVolume":"morph_volume","VoxelVolume":"morph_vol_approx","SurfaceArea":"morph_area_mesh","SurfaceVolumeRatio":"morph_av","Sphericity":"morph_sphericity","Maximum3DDiameter":"morph_diam","MajorAxisLength":"morph_pca_maj_axis","MinorAxisLength":"morph_pca_min_axis","LeastAxisLength":"morph_pca_least_axis","Elongation":"morph_pca_elongation","Flatness":"morph_pca_flatness"},
 "firstorder": {"Mean":"stat_mean","Variance":"stat_var","Skewness":"stat_skew","Kurtosis":"stat_kurt","Median":"stat_median","Minimum":"stat_min","10Percentile":"stat_p10","90Percentile":"stat_p90","Maximum":"stat_max","InterquartileRange":"stat_iqr","Range":"stat_range","MeanAbsoluteDeviation":"stat_mad","RobustMeanAbsoluteDeviation":"stat_rmad","Energy":"stat_energy","RootMeanSquared":"stat_rms","Entropy":"ih_entropy","Uniformity":"ih_uniformity"},
 "glcm": {k: v+"_3D_avg" for k, v in {"JointAverage":"cm_joint_avg","JointEnergy":"cm_energy","JointEntropy":"cm_joint_entr","Contrast":"cm_contrast","DifferenceAverage":"cm_diff_avg","DifferenceEntropy":"cm_diff_entr","DifferenceVariance":"cm_diff_var","SumEntropy":"cm_sum_entr","SumAverage":"cm_sum_avg","Id":"cm_inv_diff","Idn":"cm_inv_diff_norm","Idm":"cm_inv_diff_mom","Idmn":"cm_inv_diff_mom_norm","InverseVariance":"cm_inv_var","Correlation":"cm_corr","Autocorrelation":"cm_auto_corr","ClusterTendency":"cm_clust_tend","ClusterShade":"cm_clust_shade","ClusterProminence":"cm_clust_prom","Imc1":"cm_info_corr1","Imc2":"cm_info_corr2","MaximumProbability":"cm_joint_max","SumSquares":"cm_joint_var"}.items()},
 "glrlm": {k: v+"_3D_avg" for k, v in {"ShortRunEmphasis":"rlm_sre","LongRunEmphasis":"rlm_lre","LowGrayLevelRunEmphasis":"rlm_lgre","HighGrayLevelRunEmphasis":"rlm_hgre","ShortRunLowGrayLevelEmphasis":"rlm_srlge","ShortRunHighGrayLevelEmphasis":"rlm_srhge","LongRunLowGrayLevelEmphasis":"rlm_lrlge","LongRunHighGrayLevelEmphasis":"rlm_lrhge","GrayLevelNonUniformity":"rlm_glnu","GrayLevelNonUniformityNormalized":"rlm_glnu_norm","RunLengthNonUniformity":"rlm_rlnu","RunLengthNonUniformityNormalized":"rlm_rlnu_norm","RunPercentage":"rlm_r_perc","GrayLevelVariance":"rlm_gl_var","RunVariance":"rlm_rl_var","RunEntropy":"rlm_rl_entr"}.items()},
 "glszm": {k: v+"_3D" for k, v in {"SmallAreaEmphasis":"szm_sze","LargeAreaEmphasis":"szm_lze","LowGrayLevelZoneEmphasis":"szm_lgze","HighGrayLevelZoneEmphasis":"szm_hgze","SmallAreaLowGrayLevelEmphasis":"szm_szlge","SmallAreaHighGrayLevelEmphasis":"szm_szhge","LargeAreaLowGrayLevelEmphasis":"szm_lzlge","LargeAreaHighGrayLevelEmphasis":"szm_lzhge","GrayLevelNonUniformity":"szm_glnu","GrayLevelNonUniformityNormalized":"szm_glnu_norm","SizeZoneNonUniformity":"szm_zsnu","SizeZoneNonUniformityNormalized":"szm_zsnu_norm","ZonePercentage":"szm_z_perc","GrayLevelVariance":"szm_gl_var","ZoneVariance":"szm_zs_var","ZoneEntropy":"szm_zs_entr"}.items()},
 "ngtdm": {k: v+"_3D" for k, v in {"Coarseness":"ngt_coarseness","Contrast":"ngt_contrast","Busyness":"ngt_busyness","Complexity":"ngt_complexity","Strength":"ngt_strength"}.items()},
 "gldm": {k: v+"_3D" for k, v in {"SmallDependenceEmphasis":"ngl_lde","LargeDependenceEmphasis":"ngl_hde","LowGrayLevelEmphasis":"ngl_lgce","HighGrayLevelEmphasis":"ngl_hgce","SmallDependenceLowGrayLevelEmphasis":"ngl_ldlge","SmallDependenceHighGrayLevelEmphasis":"ngl_ldhge","LargeDependenceLowGrayLevelEmphasis":"ngl_hdlge","LargeDependenceHighGrayLevelEmphasis":"ngl_hdhge","GrayLevelNonUniformity":"ngl_glnu","DependenceNonUniformity":"ngl_dcnu","DependenceNonUniformityNormalized":"ngl_dcnu_norm","GrayLevelVariance":"ngl_gl_var","DependenceVariance":"ngl_dc_var","DependenceEntropy":"ngl_dc_entr"}.items()},
}


def _ibsi_reference(name):
    with open(os.path.join(IBSI, name)) as handle:
        return {r[2]: (float(r[0]), float(r[1])) for r in csv.reader(handle, delimiter=";")
                if r and r[0] not in ("", "reference value")}


def _within(value, reference, tolerance):
    """IBSI's tolerance, or half a unit in the third significant digit the reference is rounded to."""
    rounding = 0.5 * 10 ** (math.floor(math.log10(abs(reference))) - 2) if reference else 1e-9
    return abs(value - reference) <= max(tolerance, rounding)


# Known differences between pyradiomics and IBSI on the digital phantom (docs/radiomics.md).
IBSI_KNOWN_DIFFERENCES = {
    "firstorder_Kurtosis": "pyradiomics reports kurtosis, IBSI excess kurtosis (kurtosis - 3)",
    "shape_MinorAxisLength": "pyradiomics' PCA uses the population covariance, IBSI the sample covariance",
    "shape_LeastAxisLength": "pyradiomics' PCA uses the population covariance, IBSI the sample covariance",
}


def test_ibsi_digital_phantom_where_definitions_agree():
    reference = _ibsi_reference("digital_phantom/reference_values.csv")
    # IBSI's digital phantom is already discretised (grey levels 1..6): bin width 1, no shift, no resampling.
    extractor = make_extractor({"imageType": {"Original": {}}, "featureClass": {c: None for c in IBSI_NAMES},
                                "setting": {"binWidth": 1, "label": 1, "voxelArrayShift": 0, "gldm_a": 0}})
    values = extract(os.path.join(IBSI, "digital_phantom", "image.nii.gz"),
                     os.path.join(IBSI, "digital_phantom", "mask.nii.gz"), extractor)
    agree, differ = [], []
    for feature_class, names in IBSI_NAMES.items():
        for name, tag in names.items():
            ok = _within(values[f"original_{feature_class}_{name}"], *reference[tag])
            (agree if ok else differ).append(f"{feature_class}_{name}")
    assert sorted(differ) == sorted(IBSI_KNOWN_DIFFERENCES)
    assert len(agree) == 99
    # The documented differences are what they are said to be.
    assert values["original_firstorder_Kurtosis"] - 3 == pytest.approx(reference["stat_kurt"][0], abs=5e-4)
    voxels = values["original_shape_VoxelVolume"] / 8.0  # 2 mm voxels
    correction = math.sqrt(voxels / (voxels - 1))
    assert values["original_shape_MinorAxisLength"] * correction == pytest.approx(
        reference["morph_pca_min_axis"][0], abs=0.006)


def test_default_ct_parameters_give_about_1200_features():
    extractor = make_extractor()
    settings = settings_of(extractor)["setting"]
    assert settings["binWidth"] == 25 and list(settings["resampledPixelSpacing"]) == [1.0, 1.0, 1.0]
    hu, lesion = ct_and_lesion(shape=(16, 48, 48), lesion_radius=9)
    rng = np.random.default_rng(0)
    noisy = (hu + rng.normal(0, 15, hu.shape)).astype(np.int16)
    values = extract(make_image(noisy, spacing=(0.8, 0.8, 2.5)), make_image(lesion, spacing=(0.8, 0.8, 2.5)),
                     extractor)
    assert len(values) == 1223
    families = {name.split("_")[0] for name in values}
    assert {"original", "log-sigma-1-0-mm-3D", "wavelet-LLH"} <= families
    assert all(np.isfinite(v) for v in values.values())


@pytest.mark.parametrize("engine, broken_message", [("torch", "setting 'binWidth' must be a number"),
                                                     ("pyradiomics", "invalid radiomics parameters")])
def test_user_parameter_file_and_bad_files(tmp_path, engine, broken_message):
    if engine == "pyradiomics" and not PYRADIOMICS_INSTALLED:
        pytest.skip("the pyradiomics engine: pyradiomics is not installed (it does not build on Python 3.12)")
    own = tmp_path / "mine.yaml"
    own.write_text("imageType:\n  Original: {}\nfeatureClass:\n  firstorder:\nsetting:\n  binWidth: 10\n")
    hu, lesion = ct_and_lesion()
    values = extract(make_image(hu), make_image(lesion), make_extractor(str(own), engine))
    assert values and all(name.startswith("original_firstorder_") for name in values)
    with pytest.raises(InputError, match="parameter file not found"):
        make_extractor(str(tmp_path / "missing.yaml"), engine)
    broken = tmp_path / "broken.yaml"
    broken.write_text("setting:\n  binWidth: [not, a, number]\n")
    with pytest.raises(InputError, match=broken_message):
        make_extractor(str(broken), engine)


def test_missing_pyradiomics_is_said_plainly(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_radiomics(name, *args, **kwargs):
        if name == "radiomics" or name.startswith("radiomics."):
            raise ImportError("No module named 'radiomics'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_radiomics)
    ok, reason = radiomics_features.available()
    assert not ok and "Python 3.12" in reason
    with pytest.raises(InputError, match="pyradiomics is not installed") as error:
        make_extractor(engine="pyradiomics")
    assert "--no-build-isolation" in error.value.fix and "--radiomics-engine torch" in error.value.fix
    assert type(make_extractor()).__name__ == "TorchRadiomicsExtractor"  # the default engine needs no pyradiomics


def test_restricting_to_a_models_features_keeps_their_values():
    from TACEPredictLib.imaging.radiomics import restrict_to
    hu, labels = ct_and_lesion(shape=(16, 48, 48), lesion_radius=9)
    rng = np.random.default_rng(1)
    image = make_image(hu + rng.normal(0, 15, hu.shape).astype(np.int16))
    mask = make_image(labels.astype(np.uint8))
    names = ["original_firstorder_Maximum", "wavelet-LLH_glrlm_ShortRunEmphasis",
             "log-sigma-3-0-mm-3D_firstorder_90Percentile", "original_shape_LeastAxisLength"]
    full = extract(image, mask, make_extractor())
    restricted = extract(image, mask, restrict_to(make_extractor(), names))
    for name in names:
        assert restricted[name] == pytest.approx(full[name], rel=1e-9)
    assert len(restricted) < len(full) / 5
    assert not any("glcm" in name or "log-sigma-1-0" in name for name in restricted)
    with pytest.raises(InputError, match="image type"):
        restrict_to(make_extractor(), ["gradient_firstorder_Mean"])
