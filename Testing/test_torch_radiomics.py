"""The torch radiomics engine against pyradiomics 3.0.1: pyradiomics' own baselines (brain1, breast1 and their
normalisation / resampling / resegmentation variants), the IBSI digital and CT phantoms, generated lesions with
TACEPredict's CT preset, ROI edge cases, the filters on their own, the parameter checks, the functions of
TACEPredictLib.imaging.radiomics, and the CUDA fallback.

Tolerance everywhere: relative 1e-6, absolute 1e-9 near zero (what issue 15 asks). Measured: the largest
difference in this file is ~5e-13 (mesh surface area, summation order); every other value agrees to ~1e-14.
The one relaxed tolerance is named where it is used (brain1's stored mesh baselines predate a pyradiomics
change; the engine is compared with pyradiomics itself there).
"""

import ast
import csv
import logging
import os
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from TACEPredictLib import InputError
from TACEPredictLib.imaging.torch_radiomics import TorchRadiomicsExtractor, filters, make_extractor
from TACEPredictLib.imaging.torch_radiomics.params import FEATURE_NAMES, parse_params

from conftest import REPO, SHARED_DATA, ct_and_lesion, make_image

PYRADIOMICS = os.path.join(SHARED_DATA, "pyradiomics")
IBSI = os.path.join(SHARED_DATA, "ibsi")
CT_PRESET = os.path.join(REPO, "TACEPredictLib", "Resources", "radiomics_ct.yaml")
RELATIVE, ABSOLUTE = 1e-6, 1e-9

logging.getLogger("radiomics").setLevel(logging.ERROR)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these ROIs are small, and on a busy 2-core machine OpenMP's second thread mostly
    spins (measured: 5x the CPU time of one thread on the IBSI CT phantom under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pyradiomics_extractor(params):
    pytest.importorskip("radiomics")
    from radiomics import featureextractor
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    return featureextractor.RadiomicsFeatureExtractor(params)


def features(result):
    return {k: float(np.asarray(v)) for k, v in result.items() if not k.startswith("diagnostics_")}


def assert_same(expected, actual, relative=RELATIVE, exclude=()):
    """Same keys in the same order, every value within tolerance (NaN only where pyradiomics has NaN)."""
    assert list(actual) == list(expected)
    bad = []
    for name, value in expected.items():
        if name in exclude:
            continue
        mine = actual[name]
        if np.isnan(value) or np.isnan(mine):
            if not (np.isnan(value) and np.isnan(mine)):
                bad.append((name, value, mine))
        elif abs(mine - value) > max(ABSOLUTE, relative * abs(value)):
            bad.append((name, value, mine))
    assert not bad, f"{len(bad)} of {len(expected)} differ, e.g. {bad[:5]}"


def compare_with_pyradiomics(params, image, mask, **kwargs):
    expected = features(pyradiomics_extractor(params).execute(image, mask, **kwargs))
    actual = features(TorchRadiomicsExtractor(params, device="cpu").execute(image, mask, **kwargs))
    assert_same(expected, actual)
    return actual


def _baseline(case):
    out, settings = {}, None
    for feature_class in ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"):
        with open(os.path.join(PYRADIOMICS, "baseline", f"baseline_{feature_class}.csv")) as handle:
            rows = list(csv.reader(handle))
        if case not in rows[0]:  # shape's baseline has no preprocessing variants
            continue
        column = rows[0].index(case)
        for row in rows[1:]:
            if row[0] == "diagnostics_Configuration_Settings":
                settings = ast.literal_eval(row[column])
            elif not row[0].startswith("diagnostics_"):
                out[row[0]] = float(row[column])
    return settings, out


# brain1's stored mesh baselines (SurfaceArea, MeshVolume and the ratios built on them) differ from what
# pyradiomics 3.0.1 itself computes by up to 0.1%: the baseline predates a change to pyradiomics' marching
# cubes. The engine is compared with pyradiomics 3.0.1 run here for those four values instead.
MESH_FEATURES = {"original_shape_Sphericity", "original_shape_SurfaceVolumeRatio", "original_shape_MeshVolume",
                 "original_shape_SurfaceArea"}


@pytest.mark.parametrize("case", ["brain1", "breast1", "brain1_normalization", "breast1_normalization",
                                  "brain1_resampling", "breast1_resampling", "breast1_resegmentation"])
def test_pyradiomics_baselines(case):
    """Every feature of every class, with the settings pyradiomics' test suite used for the case (voxel
    shift, normalisation with scale 100 and bin width 5, 2 mm B-spline resampling, sigma resegmentation)."""
    settings, expected = _baseline(case)
    name = case.split("_")[0]
    image = os.path.join(PYRADIOMICS, f"{name}_image.nrrd")
    mask = os.path.join(PYRADIOMICS, f"{name}_label.nrrd")
    params = {"imageType": {"Original": {}}, "setting": settings}
    actual = features(TorchRadiomicsExtractor(params, device="cpu").execute(image, mask))
    assert set(expected) <= set(actual)
    exclude = MESH_FEATURES if name == "brain1" else ()
    assert_same(expected, {k: actual[k] for k in expected}, exclude=exclude)
    if exclude:
        reference = features(pyradiomics_extractor({"imageType": {"Original": {}},
                                                    "featureClass": {"shape": None}, "setting": settings})
                             .execute(image, mask))
        assert_same({k: reference[k] for k in exclude}, {k: actual[k] for k in exclude})
    assert len(expected) > 90


def test_filters_and_resegmentation_on_breast1():
    """Wavelet (with its own setting: a fixed bin count), LoG (sigma 1, 3; and 10, which pyradiomics' size
    guard skips), Square, SquareRoot, Logarithm, Exponential and Gradient images, all classes, sigma-mode
    resegmentation: breast1 cropped around the ROI."""
    params = {"imageType": {"Original": {}, "Wavelet": {"binCount": 12}, "LoG": {"sigma": [1.0, 3.0, 10.0]}, "Square": {},
                            "SquareRoot": {}, "Logarithm": {}, "Exponential": {}, "Gradient": {}},
              "setting": {"binWidth": 25, "preCrop": True, "padDistance": 3, "resegmentRange": [-3, 3],
                          "resegmentMode": "sigma", "voxelArrayShift": 300}}
    image = sitk.ReadImage(os.path.join(PYRADIOMICS, "breast1_image.nrrd"))
    mask = sitk.ReadImage(os.path.join(PYRADIOMICS, "breast1_label.nrrd"))
    values = compare_with_pyradiomics(params, image, mask)
    assert "log-sigma-3-0-mm-3D_glszm_ZoneEntropy" in values
    assert not any(k.startswith("log-sigma-10-0") for k in values)
    assert "gradient_firstorder_Mean" in values and "wavelet-HHL_ngtdm_Busyness" in values


def test_ibsi_digital_phantom():
    """IBSI's 5x4x4 digital phantom (binWidth 1, no resampling), Original + Wavelet + LoG, all classes."""
    image = os.path.join(IBSI, "digital_phantom", "image.nii.gz")
    mask = os.path.join(IBSI, "digital_phantom", "mask.nii.gz")
    params = {"imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0, 3.0]}},
              "setting": {"binWidth": 1, "label": 1}}
    values = compare_with_pyradiomics(params, image, mask)
    assert len(values) > 800


def test_ibsi_ct_phantom():
    """The IBSI CT phantom (float32 HU, 0.98 x 0.98 x 3 mm) with IBSI configuration C's preprocessing
    (2 mm isotropic B-spline resampling, bin width 25, resegmentation -1000..400 HU), pre-cropped: all classes
    on the original image, first order on the wavelet (float32: pywt's float arithmetic) and LoG images."""
    image = sitk.ReadImage(os.path.join(IBSI, "ct_phantom", "image.nii.gz"))
    mask = sitk.ReadImage(os.path.join(IBSI, "ct_phantom", "mask.nii.gz"))
    setting = {"resampledPixelSpacing": [2.0, 2.0, 2.0], "interpolator": "sitkBSpline", "binWidth": 25,
               "resegmentRange": [-1000, 400], "preCrop": True, "padDistance": 5}
    compare_with_pyradiomics({"imageType": {"Original": {}}, "setting": setting}, image, mask)
    compare_with_pyradiomics({"imageType": {"Wavelet": {}, "LoG": {"sigma": [2.0, 4.0]}},
                              "featureClass": {"firstorder": None}, "setting": setting}, image, mask)


def _lesion_case(shape=(14, 48, 48), radius=7, seed=0, spacing=(0.8, 0.8, 3.0), centre=None):
    hu, lesion = ct_and_lesion(shape, radius)
    rng = np.random.default_rng(seed)
    hu = (hu + rng.normal(0, 18, hu.shape)).astype(np.int16)
    if centre is not None:
        z, y, x = np.indices(shape)
        lesion = (((z - centre[0]) * 3) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < radius ** 2
        hu[lesion] += 80
    return make_image(hu, spacing=spacing), make_image(lesion.astype(np.uint8), spacing=spacing)


def test_generated_lesion_with_the_ct_preset():
    """TACEPredict's ``ct`` preset (1 mm B-spline resampling, pre-crop, padDistance 10, resegmentation
    -150..400 HU, voxel shift 1000; Original + 8 wavelet + 4 LoG images; all 7 classes): 1,223 features."""
    image, mask = _lesion_case()
    values = compare_with_pyradiomics(CT_PRESET, image, mask)
    assert len(values) == 1223


def test_a_voxel_on_a_bin_edge_changes_only_its_own_image():
    """The one kind of value that cannot match 1e-6 (docs/imaging.md): features of a filtered image in which a
    ROI voxel lies on a bin edge up to rounding. On demo_0026 of the 40-lesion benchmark, one wavelet-LHH
    coefficient is 0 +/- 1e-14 (pywt 1.6e-14, the engine -7.1e-15: summation order), 0 is a bin edge, so the
    voxel gets gray level 2 in pyradiomics and 1 in the engine. Reproduced here by setting that voxel to those
    two values in each library's wavelet-LHH (the same one-voxel move, on a generated lesion). Bound asserted:
    every value of every other image within 1e-6; in that image, first order statistics that do not depend on
    the gray levels within 1e-6, the others by less than 30 / (ROI voxels) relative, GLCM ClusterShade (close to
    0) by less than 0.1 (demo_0026: 34 values above 1e-6, the largest 3.7e-3, ClusterShade)."""
    pytest.importorskip("radiomics")
    from radiomics import imageoperations
    image, mask = _lesion_case()
    params = {"imageType": {"Wavelet": {}}, "setting": {"binWidth": 25, "label": 1}}
    roi = sitk.GetArrayFromImage(mask).astype(bool)
    centre = tuple(int(np.median(c)) for c in np.nonzero(roi))
    assert roi[centre]
    theirs, ours = 1.6e-14, -7.1e-15      # demo_0026's values of the voxel in pywt's and in the engine's image

    original_wavelet = imageoperations.getWaveletImage

    def pyradiomics_wavelet(*args, **kwargs):
        for filtered, name, settings in original_wavelet(*args, **kwargs):
            if name == "wavelet-LHH":
                array = sitk.GetArrayFromImage(filtered)
                edges = imageoperations.getBinEdges(array[roi], binWidth=25)
                assert 0.0 in edges                                   # 0 is a bin edge of this image
                array[centre] = theirs
                tied = sitk.GetImageFromArray(array)
                tied.CopyInformation(filtered)
                filtered = tied
            yield filtered, name, settings

    original_apply = filters.apply

    def engine_wavelet(image_type, image, spacing, settings, source_dtype, region=None):
        out = []
        for name, tensor, dtype in original_apply(image_type, image, spacing, settings, source_dtype, region):
            if name == "wavelet-LHH":
                tensor = tensor.clone()
                tensor[tuple(c - lo for c, (lo, _) in zip(centre, region))] = ours
            out.append((name, tensor, dtype))
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imageoperations, "getWaveletImage", pyradiomics_wavelet)
        patch.setattr(filters, "apply", engine_wavelet)
        raw = pyradiomics_extractor(params).execute(image, mask)
        actual = features(TorchRadiomicsExtractor(params, device="cpu").execute(image, mask))
    # pyradiomics' MCC is numpy's complex sqrt of the second eigenvalue: its real part is the value
    expected = {k: float(np.real(np.asarray(v))) for k, v in raw.items() if not k.startswith("diagnostics_")}
    tied = [name for name in expected if name.startswith("wavelet-LHH_")]
    assert_same(expected, actual, exclude=tied)                   # every other image: 1e-6
    relative = {name: abs(actual[name] - expected[name]) / max(abs(expected[name]), ABSOLUTE) for name in tied}
    moved = sorted((r, n) for n, r in relative.items() if r > RELATIVE)
    assert moved, "the voxel on the edge changed no value: the test no longer reproduces the tie"
    # One voxel of n moves one gray level: the values move by a few / n (here 65 of 93 values above 1e-6 for
    # 695 voxels, the largest 1.3e-2 = 9 / n, GLRLM RunVariance), except GLCM ClusterShade, a sum of cubes
    # close to 0 whose relative change is larger (8.1e-2 here; 3.7e-3 on demo_0026, 96,030 voxels)
    n = int(roi.sum())
    assert max(r for name, r in relative.items() if not name.endswith("ClusterShade")) < 30 / n
    assert relative["wavelet-LHH_glcm_ClusterShade"] < 0.1
    for name in ("Mean", "Median", "Minimum", "Maximum", "Variance", "Skewness", "Kurtosis", "Energy"):
        assert relative[f"wavelet-LHH_firstorder_{name}"] < RELATIVE, name
    assert relative["wavelet-LHH_firstorder_Uniformity"] > RELATIVE         # the gray levels did move


def test_roi_one_voxel_thick_and_touching_the_border():
    """A one-slice ROI (pyradiomics does not resample across a single slice; the LoG guard and the wavelet's
    wrapped voxel on odd axes act on the thin crop) and a lesion touching the image's corner (the pre-crop
    clips at the border; the wavelet wraps around it)."""
    hu, _ = ct_and_lesion((9, 30, 31))
    hu = (hu + np.random.default_rng(1).normal(0, 20, hu.shape)).astype(np.int16)
    roi = np.zeros(hu.shape, np.uint8)
    roi[4, 10:21, 9:22] = 1
    params = {"imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0, 2.0]}},
              "setting": {"resampledPixelSpacing": [1, 1, 1], "interpolator": "sitkBSpline", "binWidth": 25,
                          "padDistance": 4}}
    compare_with_pyradiomics(params, make_image(hu), make_image(roi))
    image, mask = _lesion_case(shape=(12, 36, 36), radius=9, seed=2, centre=(3, 2, 1))
    params = {"imageType": {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [2.0]}},
              "setting": {"preCrop": True, "padDistance": 5, "binWidth": 20}}
    compare_with_pyradiomics(params, image, mask)


def test_label_value_and_mask_correction():
    """A second label of the mask, and a mask on another grid (2x coarser, shifted by half a voxel):
    refused without correctMask (naming the setting), resampled onto the image with it, as pyradiomics."""
    image, mask = _lesion_case(shape=(10, 32, 32), radius=6, seed=4)
    labels = sitk.GetArrayFromImage(mask)
    labels[labels == 0] = 0
    labels[(labels == 1) & (np.indices(labels.shape)[2] < 16)] = 2
    two = sitk.GetImageFromArray(labels.astype(np.uint8))
    two.CopyInformation(mask)
    params = {"imageType": {"Original": {}, "LoG": {"sigma": [1.5]}}, "setting": {"binWidth": 10}}
    compare_with_pyradiomics(params, image, two, label=2)
    coarse = sitk.Resample(mask, [16, 16, 10], sitk.Transform(), sitk.sitkNearestNeighbor,
                           [o + 0.4 for o in mask.GetOrigin()], [1.6, 1.6, 3.0], mask.GetDirection(), 0,
                           sitk.sitkUInt8)
    with pytest.raises(InputError) as error:
        TorchRadiomicsExtractor(params, device="cpu").execute(image, coarse)
    assert error.value.column in ("correctMask", "geometryTolerance")
    compare_with_pyradiomics({**params, "setting": {"binWidth": 10, "correctMask": True}}, image, coarse)


def test_resegmentation_that_leaves_nothing_names_the_setting():
    image, mask = _lesion_case()
    extractor = TorchRadiomicsExtractor({"setting": {"resegmentRange": [2000, 3000]}}, device="cpu")
    with pytest.raises(InputError) as error:
        extractor.execute(image, mask)
    assert error.value.column == "resegmentRange" and "0 voxel" in str(error.value)


def test_parameter_errors_name_the_setting():
    with pytest.raises(InputError, match="binwidth") as error:
        TorchRadiomicsExtractor({"setting": {"binwidth": 25}})
    assert error.value.column == "binwidth"
    unsupported = [({"setting": {"force2D": True}}, "force2D"),
                   ({"setting": {"distances": [1, 2]}}, "distances"),
                   ({"setting": {"weightingNorm": "euclidean"}}, "weightingNorm"),
                   ({"setting": {"wavelet": "db2"}}, "wavelet"),
                   ({"setting": {"lbp2DRadius": 1.0}}, "lbp2DRadius"),
                   ({"imageType": {"LBP3D": {}}}, "imageType"),
                   ({"imageType": {"LoG": {"sigma": [1.0], "distances": [2]}}}, "distances"),
                   ({"featureClass": {"shape2D": None}}, "featureClass"),
                   ({"voxelSetting": {"kernelRadius": 2}}, "voxelSetting")]
    for params, column in unsupported:
        with pytest.raises(InputError, match="not supported by the torch engine") as error:
            TorchRadiomicsExtractor(params)
        assert error.value.column == column, params
    for params, column in [({"featureClass": {"glcm": ["Contrastt"]}}, "featureClass"),
                           ({"featureClass": {"texture": None}}, "featureClass"),
                           ({"imageType": {"Sobel": {}}}, "imageType"),
                           ({"settings": {}}, "radiomics-params"),
                           ({"setting": {"binWidth": -1}}, "binWidth"),
                           ({"setting": {"resegmentRange": [1, 2, 3]}}, "resegmentRange")]:
        with pytest.raises(InputError) as error:
            TorchRadiomicsExtractor(params)
        assert error.value.column == column, params
    extractor = TorchRadiomicsExtractor()
    extractor.settings["distances"] = [2]  # changed after construction: refused at execute
    image, mask = _lesion_case(shape=(8, 20, 20), radius=5)
    with pytest.raises(InputError, match="distances"):
        extractor.execute(image, mask)
    with pytest.raises(InputError, match="not found"):
        make_extractor("no-such-file.yaml")


def test_defaults_follow_pyradiomics():
    extractor = pyradiomics_extractor(CT_PRESET)
    settings, image_types, classes = parse_params(CT_PRESET)
    assert settings == extractor.settings
    assert image_types == extractor.enabledImagetypes
    assert classes == extractor.enabledFeatures
    default = pyradiomics_extractor(None)
    mine = TorchRadiomicsExtractor()
    assert mine.settings == default.settings and mine.enabledImagetypes == default.enabledImagetypes
    assert set(FEATURE_NAMES) == {k for k in default.enabledFeatures if k != "shape2D"}


def test_radiomics_features_functions_accept_the_engine():
    """``radiomics_features.extract``, ``restrict_to``, ``settings_of`` and ``extract_from_crop`` (TACEPredict's
    own use of pyradiomics) work unchanged with the torch extractor and give pyradiomics' values."""
    from TACEPredictLib.imaging import radiomics as rf
    hu, lesion = ct_and_lesion((16, 60, 60), 8)
    hu = (hu + np.random.default_rng(3).normal(0, 15, hu.shape)).astype(np.int16)
    image, mask = make_image(hu), make_image(lesion.astype(np.uint8))
    names = ["original_firstorder_Median", "wavelet-HLH_glrlm_ShortRunEmphasis", "log-sigma-2-0-mm-3D_glcm_Idmn",
             "original_shape_Sphericity", "log-sigma-4-0-mm-3D_ngtdm_Busyness"]
    ours = rf.restrict_to(make_extractor("ct", device="cpu"), names)
    theirs = rf.restrict_to(rf.make_extractor("ct"), names)
    assert rf.settings_of(ours) == rf.settings_of(theirs)
    expected, actual = rf.extract(image, mask, theirs), rf.extract(image, mask, ours)
    assert set(names) <= set(actual)
    assert_same(expected, actual)
    # a crop of the CT: pyradiomics' resampling grid of the whole CT, pyradiomics run without resampling
    crop = sitk.RegionOfInterest(image, [36, 40, 12], [12, 10, 2])
    crop_mask = sitk.RegionOfInterest(mask, [36, 40, 12], [12, 10, 2])
    expected = rf.extract_from_crop(crop, crop_mask, (12, 10, 2), image.GetSize(), theirs)
    actual = rf.extract_from_crop(crop, crop_mask, (12, 10, 2), image.GetSize(), ours)
    assert_same(expected, actual)
    assert ours.settings["resampledPixelSpacing"] == [1.0, 1.0, 1.0]  # the copy without resampling is separate


def test_wavelet_and_log_filters_match_their_libraries():
    """Wavelet against pywt.swtn (int16: float64 to 1e-15; float32: pywt's float arithmetic, bit for bit) and
    LoG against SimpleITK (float32 intermediates as ITK: identical to the bit on these grids)."""
    pywt = pytest.importorskip("pywt")
    rng = np.random.default_rng(5)
    for shape, dtype in (((9, 14, 11), np.int16), ((7, 10, 13), np.float32)):
        array = (rng.normal(0, 100, shape)).astype(dtype)
        tensor = torch.as_tensor(array.astype(np.float64))
        ours = {name: image.numpy() for name, image, _ in filters.wavelet(tensor, {}, array.dtype)}
        padded = np.pad(array, [(0, n % 2) for n in shape], "wrap")
        decomposition = pywt.swtn(padded, "coif1", level=1, start_level=0, axes=(2, 1, 0))[0]
        for key, value in decomposition.items():
            name = "wavelet-" + key.replace("a", "L").replace("d", "H")
            expected = value[:shape[0], :shape[1], :shape[2]]
            if dtype == np.float32:
                assert np.array_equal(ours[name], expected.astype(np.float64)), name
            else:
                np.testing.assert_allclose(ours[name], expected, rtol=0, atol=1e-12 * np.abs(expected).max())
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.7, 0.9, 2.5))
        stack = filters.laplacian_of_gaussian(tensor, (0.7, 0.9, 2.5), [1.0, 3.0])
        for i, sigma in enumerate((1.0, 3.0)):
            log = sitk.LaplacianRecursiveGaussianImageFilter()
            log.SetSigma(sigma)
            log.SetNormalizeAcrossScale(True)
            expected = sitk.GetArrayFromImage(log.Execute(image)).astype(np.float64)
            mismatched = np.count_nonzero(stack[i].numpy() != expected)
            assert mismatched <= expected.size * 1e-4, (sigma, mismatched)
            np.testing.assert_allclose(stack[i].numpy(), expected, rtol=0, atol=2e-6 * np.abs(expected).max())


def test_cuda_out_of_memory_falls_back_to_the_cpu(monkeypatch):
    image, mask = _lesion_case(shape=(8, 24, 24), radius=6)
    params = {"imageType": {"Original": {}, "LoG": {"sigma": [2.0]}}, "featureClass": {"firstorder": None}}
    reference = features(TorchRadiomicsExtractor(params, device="cpu").execute(image, mask))
    extractor = TorchRadiomicsExtractor(params, device="cpu")
    extractor.device = torch.device("cuda")  # pretend: the first attempt runs out of memory
    real = extractor._compute

    def compute(prepared, settings, device, timer):
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(prepared, settings, device, timer)
    monkeypatch.setattr(extractor, "_compute", compute)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = extractor.execute(image, mask)
    assert any("out of memory" in str(w.message) and "CPU instead" in str(w.message) for w in caught)
    assert result["diagnostics_Engine_Device"] == "cpu (CUDA out of memory)"
    assert features(result) == reference


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    image, mask = _lesion_case()
    cpu = features(TorchRadiomicsExtractor(CT_PRESET, device="cpu").execute(image, mask))
    gpu = TorchRadiomicsExtractor(CT_PRESET, device="cuda").execute(image, mask)
    assert gpu["diagnostics_Engine_Device"].startswith("cuda")
    assert_same(cpu, features(gpu))
