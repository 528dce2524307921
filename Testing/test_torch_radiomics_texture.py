"""The torch engine's texture classes (GLCM, GLRLM, GLSZM, GLDM, NGTDM) against pyradiomics 3.0.1's own classes.

Reference: ``radiomics.glcm.RadiomicsGLCM(image, mask, **settings)`` etc., run in this process on the same
SimpleITK image and mask; the engine gets the same discretisation (pyradiomics' ``imageoperations.binImage``).
Tolerance everywhere: relative 1e-6, or absolute 1e-9 where the reference is near zero; measured, the largest
difference over the cases here is 5e-13 relative (GLCM ClusterShade, whose values are near 0), below 1e-13 for
every other feature. No tolerance is relaxed.
"""

import logging
import os

import numpy as np
import pytest
import torch

from TACEPredictLib import InputError
from TACEPredictLib.imaging.torch_radiomics import texture
from TACEPredictLib.imaging.torch_radiomics.texture import FEATURES, generate_angles, texture_features

from conftest import SHARED_DATA

try:  # the CUDA test (for a GPU machine without it) does not need SimpleITK
    import SimpleITK as sitk
except ImportError:  # pragma: no cover
    sitk = None
try:  # the parity tests need pyradiomics; the engine's own checks (batching, chunking, input errors) do not
    from radiomics import gldm, glcm, glrlm, glszm, imageoperations, ngtdm
except ImportError:  # pyradiomics does not build on Python 3.12 (Slicer 5.10+)
    imageoperations = None

needs_sitk = pytest.mark.skipif(sitk is None, reason="SimpleITK not installed")
needs_pyradiomics = pytest.mark.skipif(sitk is None or imageoperations is None,
                                       reason="compares with pyradiomics 3.0.1, the reference, which is not installed "
                                              "(it does not build on Python 3.12)")
logging.getLogger("radiomics").setLevel(logging.ERROR)

CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")
PYRADIOMICS = os.path.join(SHARED_DATA, "pyradiomics")
IBSI = os.path.join(SHARED_DATA, "ibsi")
REL, ABS = 1e-6, 1e-9


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: these matrices are tiny, and on a loaded 2-core machine the threads' synchronisation
    made GLCM's features 10x slower (2.3 s instead of 0.2 s for three images, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _binned(image, mask, settings):
    """pyradiomics' discretisation of the ROI (0 outside), as torch tensors [Z, Y, X]; without pyradiomics, the
    engine's own (``preprocess.bin_edges`` / ``discretize``, what the extractor runs)."""
    array = sitk.GetArrayFromImage(image)
    roi = sitk.GetArrayFromImage(mask) == settings.get("label", 1)
    if imageoperations is not None:
        levels, _ = imageoperations.binImage(array, roi, **settings)
    else:
        from TACEPredictLib.imaging.torch_radiomics import preprocess
        edges = preprocess.bin_edges(array[roi].min(), array[roi].max(), settings)
        levels = np.zeros(array.shape, np.int64)
        levels[roi] = preprocess.discretize(torch.from_numpy(array[roi].astype(np.float64))[None], [edges])[0].numpy()
    return torch.from_numpy(np.where(roi, levels, 0).astype(np.int64)), torch.from_numpy(roi)


def _pyradiomics_class(cls):
    return {"glcm": glcm.RadiomicsGLCM, "glrlm": glrlm.RadiomicsGLRLM, "glszm": glszm.RadiomicsGLSZM,
            "gldm": gldm.RadiomicsGLDM, "ngtdm": ngtdm.RadiomicsNGTDM}[cls]


def _reference(image, mask, settings, classes):
    out = {}
    for cls in classes:
        values = _pyradiomics_class(cls)(image, mask, **settings).execute()
        out[cls] = {name: float(value) for name, value in values.items()}
    return out


def _assert_parity(cases, settings, classes=tuple(CLASSES), spacing=None):
    """Run the engine once on the batch of ``cases`` (same mask) and compare every image with pyradiomics."""
    binned, masks = zip(*[_binned(image, mask, settings) for image, mask in cases])
    assert all(torch.equal(masks[0], m) for m in masks)
    got = texture_features(torch.stack(binned), masks[0], {c: None for c in classes}, settings, spacing=spacing)
    checked = 0
    for b, (image, mask) in enumerate(cases):
        ref = _reference(image, mask, settings, classes)
        for cls in classes:
            assert list(got[cls]) == list(ref[cls]), cls          # same features, same order
            for name, want in ref[cls].items():
                have = float(got[cls][name][b])
                if np.isnan(want):
                    assert np.isnan(have), f"{cls}_{name}: pyradiomics NaN, engine {have}"
                    continue
                diff = abs(have - want)
                assert diff <= ABS or diff <= REL * abs(want), f"image {b} {cls}_{name}: {have!r} != {want!r}"
                checked += 1
    return checked


def _image(array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    return image


def _lesion_arrays(radius=6, seed=0, noise=40.0):
    """A smooth noisy CT-like lesion (HU) and its ball mask, numpy only: several gray levels at binWidth 25."""
    rng = np.random.default_rng(seed)
    n = 2 * radius + 6
    z, y, x = np.indices((n, n, n)) - n / 2
    r = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    field = rng.normal(0, 1, (n, n, n))
    for axis in range(3):                                  # two passes of a 3-voxel box filter per axis
        for _ in range(2):
            field = (np.roll(field, 1, axis) + field + np.roll(field, -1, axis)) / 3
    hu = field * (noise / field.std()) + 60 + 3.0 * (r - radius)
    return hu, (r < radius).astype(np.uint8)


def _lesion(radius=6, seed=0, noise=40.0, spacing=(1.0, 1.0, 1.0)):
    hu, roi = _lesion_arrays(radius, seed, noise)
    return _image(hu, spacing), _image(roi, spacing)


@needs_pyradiomics
@pytest.mark.parametrize("case", ["brain1", "breast1"])
def test_pyradiomics_test_cases(case):
    """pyradiomics' own test cases (MR, label 1, binWidth 25): all 75 default texture features."""
    image = sitk.ReadImage(os.path.join(PYRADIOMICS, f"{case}_image.nrrd"))
    mask = sitk.ReadImage(os.path.join(PYRADIOMICS, f"{case}_label.nrrd"))
    assert _assert_parity([(image, mask)], {"binWidth": 25, "label": 1}) == 75


@needs_pyradiomics
@pytest.mark.parametrize("bin_width", [25, 1])
def test_ibsi_digital_phantom(bin_width):
    """IBSI digital phantom (5x4x4, levels 1..6 with holes): one gray level at binWidth 25, six at 1."""
    image = sitk.ReadImage(os.path.join(IBSI, "digital_phantom", "image.nii.gz"))
    mask = sitk.ReadImage(os.path.join(IBSI, "digital_phantom", "mask.nii.gz"))
    _assert_parity([(image, mask)], {"binWidth": bin_width, "label": 1})


@needs_pyradiomics
def test_ibsi_ct_phantom_region():
    """A 40x40 in-plane, 12-slice region of the IBSI lung CT phantom holding an edge of its tumour (0.98x0.98x3 mm,
    46 gray levels, 3,608 ROI voxels, the ROI also touching the region's faces)."""
    image = sitk.ReadImage(os.path.join(IBSI, "ct_phantom", "image.nii.gz"))
    mask = sitk.ReadImage(os.path.join(IBSI, "ct_phantom", "mask.nii.gz"))
    roi = sitk.GetArrayFromImage(mask)
    zs, ys, xs = np.nonzero(roi)
    z0, y0, x0 = int(np.median(zs)) - 6, int(ys.min()) - 8, int(xs.min()) - 8
    box = (slice(z0, z0 + 12), slice(y0, y0 + 40), slice(x0, x0 + 40))
    crop_img = _image(sitk.GetArrayFromImage(image)[box], image.GetSpacing())
    crop_mask = _image(roi[box], image.GetSpacing())
    assert roi[box].sum() == 3608
    _assert_parity([(crop_img, crop_mask)], {"binWidth": 25, "label": 1})


@needs_pyradiomics
def test_batch_of_different_images_matches_each_alone():
    """Three images, 7 to 69 gray levels, on one mask in one batch: each matches pyradiomics, and the batch
    gives exactly what each image gives alone (padding to the batch's largest Ng changes nothing)."""
    cases = [_lesion(7, seed=s, noise=n) for s, n in ((1, 25.0), (2, 120.0), (3, 300.0))]
    _assert_parity(cases, {"binWidth": 25})
    binned, masks = zip(*[_binned(i, m, {"binWidth": 25}) for i, m in cases])
    ngs = [int(b.max()) for b in binned]
    assert min(ngs) <= 8 and max(ngs) >= 60
    batch = texture_features(torch.stack(binned), masks[0], {c: None for c in CLASSES}, {})
    for b in range(3):
        alone = texture_features(binned[b][None], masks[0], {c: None for c in CLASSES}, {})
        for cls in CLASSES:
            for name, value in alone[cls].items():
                torch.testing.assert_close(batch[cls][name][b:b + 1], value, rtol=1e-12, atol=1e-14,
                                           equal_nan=True)


@needs_pyradiomics
@pytest.mark.parametrize("settings", [
    {"distances": [1, 2]},
    {"distances": [2]},
    {"symmetricalGLCM": False},
    {"gldm_a": 1},
    {"weightingNorm": "no_weighting"},
    {"force2D": True, "force2Ddimension": 0},
    {"force2D": True, "force2Ddimension": 2},
], ids=lambda s: "-".join(f"{k}={v}" for k, v in s.items()))
def test_settings(settings):
    """pyradiomics' texture settings other than the defaults."""
    _assert_parity([_lesion(5, seed=4, noise=60.0)], {"binWidth": 25, **settings})


@needs_pyradiomics
@pytest.mark.parametrize("norm", ["infinity", "euclidean", "manhattan"])
def test_distance_weighting_uses_the_spacing(norm):
    """GLCM / GLRLM ``weightingNorm`` with an anisotropic spacing; without the spacing the engine refuses."""
    spacing = (0.7, 0.8, 2.5)
    image, mask = _lesion(5, seed=5, noise=60.0, spacing=spacing)
    settings = {"binWidth": 25, "weightingNorm": norm}
    _assert_parity([(image, mask)], settings, classes=("glcm", "glrlm"), spacing=spacing)
    binned, roi = _binned(image, mask, settings)
    with pytest.raises(InputError, match="spacing"):
        texture_features(binned[None], roi, {"glcm": None}, settings)


def _with_mask(image, roi):
    mask = _image(roi.astype(np.uint8), image.GetSpacing())
    return image, mask


@needs_pyradiomics
@pytest.mark.parametrize("shape", ["slice", "sagittal", "line", "scattered", "whole_image", "single_voxel"])
def test_thin_and_degenerate_rois(shape):
    """One-voxel-thick ROIs (empty angles dropped, GLRLM's single-element lines), a line, voxels without any
    neighbour (every GLCM angle empty: NaN as pyradiomics), an ROI filling the image (neighbours outside the
    image), a single voxel."""
    image, mask = _lesion(6, seed=6, noise=80.0)
    ball = sitk.GetArrayFromImage(mask).astype(bool)
    roi = np.zeros_like(ball)
    c = ball.shape[0] // 2
    if shape == "slice":
        roi[c] = ball[c]
    elif shape == "sagittal":
        roi[:, :, c] = ball[:, :, c]
    elif shape == "line":
        roi[c, c, 2:-2] = True
    elif shape == "scattered":
        roi[2:-2:2, 2:-2:2, 2:-2:2] = True
    elif shape == "whole_image":
        array = sitk.GetArrayFromImage(image)[3:9, 2:10, 4:9]
        image = _image(array)
        roi = np.ones(array.shape, dtype=bool)
    else:
        roi[c, c, c] = True
    _assert_parity([_with_mask(image, roi)], {"binWidth": 25})


@needs_pyradiomics
def test_single_gray_level_and_2d_image():
    """A flat ROI (one gray level: Correlation 1, MCC 1, Imc 0, Coarseness 1e6 ...) and a one-slice image."""
    image, mask = _lesion(5, seed=7, noise=1.0)
    flat = _image(np.full(sitk.GetArrayFromImage(image).shape, 40.0))
    _assert_parity([(flat, mask)], {"binWidth": 25})
    array = sitk.GetArrayFromImage(image)
    roi = sitk.GetArrayFromImage(mask)
    c = array.shape[0] // 2
    _assert_parity([(_image(array[c:c + 1] * 4), _image(roi[c:c + 1]))], {"binWidth": 25})


@needs_pyradiomics
def test_noisy_many_levels_with_holes():
    """Uncorrelated noise with 30 levels in a mask with holes: small zones, short runs, many empty cells."""
    rng = np.random.default_rng(3)
    image = _image(rng.integers(0, 300, (10, 11, 12)).astype(float))
    mask = _image((rng.random((10, 11, 12)) < 0.7).astype(np.uint8))
    _assert_parity([(image, mask)], {"binWidth": 10})


@needs_pyradiomics
@pytest.mark.parametrize("cpu_scipy", [False, True], ids=["union-find", "scipy"])
def test_zone_labelling_of_winding_zones(monkeypatch, cpu_scipy):
    """Zones that wind back and forth through the volume (the union-find needs several hooking rounds) beside
    single-voxel zones, one zone crossing between slices; with both zone labellings of the CPU."""
    from TACEPredictLib.imaging.torch_radiomics import glszm
    monkeypatch.setattr(glszm, "CPU_SCIPY", cpu_scipy)
    n = 16
    level = np.full((4, n, n), 200.0)
    for z in (1, 2):
        for row, y in enumerate(range(1, n - 1, 2)):        # boustrophedon: rows joined at alternate ends
            level[z, y, 1:n - 1] = 10.0
            if y + 2 < n - 1:
                level[z, y + 1, (n - 2) if row % 2 == 0 else 1] = 10.0
    level[2] = level[2, ::-1].copy()                        # the second slice winds the other way
    level[0, ::3, ::3] = 400.0
    level[3, 1::2, 1::2] = 10.0
    _assert_parity([(_image(level), _image(np.ones_like(level, dtype=np.uint8)))], {"binWidth": 25},
                   classes=("glszm",))


@pytest.mark.parametrize("settings", [{}, {"force2D": True, "force2Ddimension": 0}], ids=["3D", "force2D"])
def test_scipy_zones_are_the_union_find_zones(settings):
    """The CPU's scipy labelling and the union-find of every other device find the same zones (image, gray
    level, size), on smooth, noisy and holed images of several levels in one batch."""
    from TACEPredictLib.imaging.torch_radiomics import glszm
    rng = np.random.default_rng(7)
    shape = (9, 14, 13)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    smooth = 1 + ((z + y + 2 * x) // 6) % 5
    noisy = rng.integers(1, 8, shape)
    sparse = rng.integers(1, 40, shape)
    binned = torch.as_tensor(np.stack([smooth, noisy, sparse]), dtype=torch.int64)
    mask = torch.as_tensor(rng.random(shape) < 0.8)
    prep = texture.prepare(binned, mask)
    chunk = texture.Chunk(prep, 0, prep.batch)
    angles = generate_angles([1], settings.get("force2D", False), settings.get("force2Ddimension", 0))
    fast = glszm.counts_scipy(chunk, angles)
    labels = glszm.zone_labels(texture.Chunk(prep, 0, prep.batch), angles)
    assert int(labels.unique().numel()) > 100              # many zones, not a trivial case
    key = lambda zones: torch.sort((zones[0] * 100 + zones[1]) * 10 ** 6 + zones[2]).values  # noqa: E731
    nvox = chunk.numel // chunk.nb
    gflat = chunk.g.reshape(-1)
    size = torch.bincount(labels, minlength=labels.numel())
    roots = torch.nonzero((gflat > 0) & (labels == torch.arange(labels.numel()))).flatten()
    slow = (roots // nvox, gflat[roots].to(torch.int64), size[roots])
    assert torch.equal(key(fast), key(slow))


@pytest.mark.parametrize("settings", [{}, {"force2D": True, "force2Ddimension": 0}], ids=["3D", "force2D"])
def test_numpy_run_lengths_are_the_recurrence_run_lengths(monkeypatch, settings):
    """The CPU's run lengths read off the flattened batch (``glrlm.counts_numpy``) and the plane-by-plane
    recurrence of every other device give the same run-count matrices, to the count, on smooth, noisy and
    holed images of several levels in one batch, chunked or not, including a ROI touching the crop's edge."""
    from TACEPredictLib.imaging.torch_radiomics import glrlm
    rng = np.random.default_rng(11)
    shape = (9, 14, 13)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    smooth = 1 + ((z + y + 2 * x) // 6) % 5
    stripes = 1 + (x // 4) % 3                                  # long runs along z and y
    noisy = rng.integers(1, 8, shape)
    binned = torch.as_tensor(np.stack([smooth, stripes, noisy]), dtype=torch.int64)
    mask = torch.as_tensor(rng.random(shape) < 0.85)
    prep = texture.prepare(binned, mask)
    for b0, b1 in [(0, 3), (1, 2), (2, 3)]:
        monkeypatch.setattr(glrlm, "CPU_NUMPY", True)
        fast = glrlm.counts(texture.Chunk(prep, b0, b1), settings)
        monkeypatch.setattr(glrlm, "CPU_NUMPY", False)
        slow = glrlm.counts(texture.Chunk(prep, b0, b1), settings)
        assert fast.dtype == slow.dtype and fast.shape == slow.shape
        assert float(slow[..., 3:].sum()) > 0                   # runs of 4 voxels and longer are present
        assert torch.equal(fast, slow)


@needs_sitk
def test_chunked_batch_gives_the_same_values(monkeypatch):
    """Images processed one chunk at a time (as a large lesion would be) give the same values."""
    cases = [_lesion(6, seed=s, noise=40.0 * (s + 1)) for s in range(3)]
    binned, masks = zip(*[_binned(i, m, {"binWidth": 25}) for i, m in cases])
    whole = texture_features(torch.stack(binned), masks[0], {c: None for c in CLASSES}, {})
    monkeypatch.setattr(texture, "MAX_CHUNK_ELEMENTS", binned[0].numel())      # one image per chunk
    monkeypatch.setattr(texture, "MAX_MATRIX_ELEMENTS", 1)
    chunked = texture_features(torch.stack(binned), masks[0], {c: None for c in CLASSES}, {})
    for cls in CLASSES:
        for name in whole[cls]:
            torch.testing.assert_close(chunked[cls][name], whole[cls][name], rtol=1e-12, atol=0, equal_nan=True)


@needs_pyradiomics
def test_feature_selection_and_deprecated_names():
    """Named features come in the order asked; deprecated ones give no value (pyradiomics 3.0.1 computes none:
    its getters raise DeprecationWarning); an unknown name or class is an InputError."""
    image, mask = _lesion(5, seed=8)
    binned, roi = _binned(image, mask, {"binWidth": 25})
    got = texture_features(binned[None], roi, {"glcm": ["MCC", "Dissimilarity", "Contrast"],
                                               "gldm": ["DependencePercentage"], "ngtdm": []}, {})
    assert list(got["glcm"]) == ["MCC", "Contrast"]
    assert got["gldm"] == {}
    assert list(got["ngtdm"]) == ["Busyness", "Coarseness", "Complexity", "Contrast", "Strength"]
    pyrad = glcm.RadiomicsGLCM(image, mask, binWidth=25)
    for name in ("MCC", "Dissimilarity", "Contrast"):
        pyrad.enableFeatureByName(name)
    assert list(pyrad.execute()) == ["MCC", "Contrast"]
    assert [n for n, dep in FEATURES["glcm"].items() if not dep] == \
        [n for n, dep in glcm.RadiomicsGLCM.getFeatureNames().items() if not dep]
    with pytest.raises(InputError, match="unknown glcm feature 'Contrastt'"):
        texture_features(binned[None], roi, {"glcm": ["Contrastt"]}, {})
    with pytest.raises(InputError, match="unknown texture class"):
        texture_features(binned[None], roi, {"glsm": None}, {})


@needs_pyradiomics
def test_feature_lists_match_pyradiomics():
    for cls in CLASSES:
        assert FEATURES[cls] == _pyradiomics_class(cls).getFeatureNames(), cls


@needs_pyradiomics
def test_angles_are_pyradiomics_angles():
    from radiomics import cMatrices
    size = np.array([9, 9, 9])
    for distances in ([1], [1, 2], [2]):
        for bidirectional in (False, True):
            want = cMatrices.generate_angles(size, np.array(distances), bidirectional, False, 0)
            assert generate_angles(distances, bidirectional=bidirectional) == [tuple(a) for a in want.tolist()]
    want = cMatrices.generate_angles(size, np.array([1]), False, True, 0)
    assert generate_angles([1], force2D=True, force2Ddimension=0) == [tuple(a) for a in want.tolist()]


@needs_sitk
def test_input_errors_and_input_left_alone():
    image, mask = _lesion(4, seed=9)
    binned, roi = _binned(image, mask, {"binWidth": 25})
    small = binned.to(torch.int16)
    before = small.clone()
    texture_features(small[None], roi, {"gldm": None}, {})
    assert torch.equal(small, before)
    with pytest.raises(InputError, match="empty"):
        texture_features(binned[None], torch.zeros_like(roi), {"glcm": None}, {})
    with pytest.raises(InputError, match="< 1 inside the ROI"):
        texture_features((binned * 0)[None], roi, {"glcm": None}, {})
    with pytest.raises(InputError, match="do not match"):
        texture_features(binned[None, :, :-1], roi, {"glcm": None}, {})
    with pytest.raises(InputError, match="integer gray levels"):
        texture_features(binned[None].double(), roi, {"glcm": None}, {})
    with pytest.raises(InputError, match="voxel-based"):
        texture_features(binned[None], roi, {"glcm": None}, {"voxelBased": True})
    assert texture_features(binned[None], roi, {"glcm": ["SumVariance"]}, {}) == {"glcm": {}}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    """On a CUDA machine: the same values as on the CPU (numpy-made lesions: no pyradiomics needed there)."""
    arrays = [_lesion_arrays(7, seed=s, noise=30.0 * (s + 1)) for s in range(4)]
    roi = torch.from_numpy(arrays[0][1].astype(bool))
    x = torch.stack([torch.from_numpy(np.floor((hu - hu[roi.numpy()].min()) / 25).astype(np.int64) + 1) * roi
                     for hu, _ in arrays])
    cpu = texture_features(x, roi, {c: None for c in CLASSES}, {})
    gpu = texture_features(x.cuda(), roi.cuda(), {c: None for c in CLASSES}, {})
    for cls in CLASSES:
        for name in cpu[cls]:
            assert gpu[cls][name].device.type == "cuda"
            torch.testing.assert_close(gpu[cls][name].cpu(), cpu[cls][name], rtol=1e-9, atol=1e-12,
                                       equal_nan=True)
