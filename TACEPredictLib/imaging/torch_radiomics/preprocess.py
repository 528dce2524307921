"""Preprocessing exactly as pyradiomics 3.0.1 does it (``imageoperations`` and ``featureextractor.loadImage``):
mask selection, normalisation, resampling, pre-cropping, mask checks and correction, resegmentation and the
gray-level discretisation with pyradiomics' exact bin edges.

Geometry work (reading, resampling, cropping, the mask checks) runs in SimpleITK with the very calls pyradiomics
makes, so the grid, the B-spline values and the cast back to the CT's pixel type are identical; it touches only
the ROI's neighbourhood (pre-crop / resampling grid) and takes a few milliseconds per lesion. The per-voxel work
on the ROI's images (resegmentation, discretisation) runs in torch.

Errors pyradiomics raises as ``ValueError`` are ``InputError`` here (a subclass of ``ValueError``), with the
setting that caused them in ``column``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import SimpleITK as sitk
import torch

from TACEPredictLib import InputError


def read_image(source, what):
    """A SimpleITK image from a path or an image (pyradiomics accepts exactly these two)."""
    if isinstance(source, sitk.Image):
        return source
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str) and os.path.isfile(source):
        return sitk.ReadImage(source)
    raise InputError(f"cannot read the {what}: {source!r} is neither an existing file nor a SimpleITK image",
                     column=what, fix="give a SimpleITK image or the path of an image file")


def get_mask(mask, label=1, label_channel=0):
    """``imageoperations.getMask``: a vector segmentation's channel, cast to UInt32, and the label checks.
    pyradiomics uses ``numpy.unique`` over the whole mask; ``min == max`` and ``any(mask == label)`` say the
    same thing without sorting a whole CT's worth of voxels."""
    if "vector" in mask.GetPixelIDTypeAsString().lower():
        components = mask.GetNumberOfComponentsPerPixel()
        if label_channel >= components:
            raise InputError(f"label_channel {label_channel} requested, but the segmentation has only "
                             f"{components} channel(s)", column="label_channel", fix="choose an existing channel")
        selector = sitk.VectorIndexSelectionCastImageFilter()
        selector.SetIndex(label_channel)
        mask = selector.Execute(mask)
    mask = sitk.Cast(mask, sitk.sitkUInt32)
    array = sitk.GetArrayViewFromImage(mask)
    if array.min() == array.max():
        raise InputError("no labels found in this mask (nothing is segmented)", column="label",
                         fix="check the segmentation")
    if not (array == label).any():
        present = np.unique(array)
        raise InputError(f"label ({label:g}) not present in mask; choose from {present[present != 0].tolist()}",
                         column="label", fix="set 'label' to one of the labels present")
    return mask


@contextmanager
def geometry_tolerance(tolerance):
    """pyradiomics sets SimpleITK's global coordinate/direction tolerance to ``geometryTolerance``; the engine
    sets it for the duration of one extraction and restores it afterwards."""
    if tolerance is None:
        yield
        return
    old = (sitk.ProcessObject.GetGlobalDefaultCoordinateTolerance(),
           sitk.ProcessObject.GetGlobalDefaultDirectionTolerance())
    sitk.ProcessObject.SetGlobalDefaultCoordinateTolerance(tolerance)
    sitk.ProcessObject.SetGlobalDefaultDirectionTolerance(tolerance)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultCoordinateTolerance(old[0])
        sitk.ProcessObject.SetGlobalDefaultDirectionTolerance(old[1])


def normalize_image(image, settings):
    """``imageoperations.normalizeImage``: z-score over the whole image, optional clipping at +-removeOutliers,
    then times normalizeScale (SimpleITK's Normalize, as pyradiomics)."""
    scale = settings.get("normalizeScale", 1)
    outliers = settings.get("removeOutliers")
    image = sitk.Normalize(image)
    if outliers is not None:
        array = sitk.GetArrayFromImage(image)
        array[array > outliers] = outliers
        array[array < -outliers] = -outliers
        clipped = sitk.GetImageFromArray(array)
        clipped.CopyInformation(image)
        image = clipped
    return image * scale


def _label_shape_bbox(mask, label):
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    if label not in stats.GetLabels():
        raise InputError(f"label ({label}) not present in mask", column="label", fix="check the segmentation")
    return np.array(stats.GetBoundingBox(label))


def check_roi(image, mask, label):
    """``imageoperations._checkROI``: the ROI's bounding box (lower index, size; x, y, z) after checking that
    it lies inside the image's physical extent (1e-3 voxel tolerance)."""
    bb = _label_shape_bbox(mask, label)
    nd = mask.GetDimension()
    bounds = (mask.TransformContinuousIndexToPhysicalPoint((bb[:nd] - .5).tolist()),
              mask.TransformContinuousIndexToPhysicalPoint((bb[:nd] + bb[nd:] - 0.5).tolist()))
    bounds = (image.TransformPhysicalPointToContinuousIndex(bounds[0]),
              image.TransformPhysicalPointToContinuousIndex(bounds[1]))
    tolerance = 1e-3
    if np.any(np.min(bounds, axis=0) < (-.5 - tolerance)) or \
            np.any(np.max(bounds, axis=0) > (np.array(image.GetSize()) - .5 + tolerance)):
        raise InputError(f"the ROI's bounding box lies outside the image (ROI bounds in image index space "
                         f"{bounds}, image size {image.GetSize()})", column="mask",
                         fix="check that the segmentation belongs to this image")
    return bb


def correct_mask(image, mask, label):
    """``imageoperations._correctMask``: nearest-neighbour resampling of the mask onto the image grid."""
    check_roi(image, mask, label)
    resample = sitk.ResampleImageFilter()
    resample.SetReferenceImage(image)
    resample.SetInterpolator(sitk.sitkNearestNeighbor)
    return resample.Execute(mask)


def _bounding_box(mask, label, image=None):
    """(L_x, U_x, L_y, U_y, L_z, U_z) and the voxel count of ``mask == label`` (what pyradiomics reads from
    LabelStatisticsImageFilter), from the array."""
    array = sitk.GetArrayViewFromImage(mask) == label
    count = int(array.sum())
    if count == 0:
        return None, 0
    box = []
    for axis in (2, 1, 0):  # x, y, z
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(array.any(axis=other))
        box += [int(hits[0]), int(hits[-1])]
    return np.array(box), count


def _same_space(image, mask):
    """SimpleITK's 'Inputs do not occupy the same physical space' test (as LabelStatisticsImageFilter runs it):
    same size, and origin/spacing/direction equal within the global tolerances."""
    if image.GetSize() != mask.GetSize() or image.GetDimension() != mask.GetDimension():
        return False, "size"
    coord_tol = sitk.ProcessObject.GetGlobalDefaultCoordinateTolerance()
    dir_tol = sitk.ProcessObject.GetGlobalDefaultDirectionTolerance()
    spacing = np.array(image.GetSpacing())
    tolerance = coord_tol * np.abs(spacing[0])  # ITK: coordinate tolerance times the first spacing
    if not np.allclose(image.GetOrigin(), mask.GetOrigin(), rtol=0, atol=tolerance):
        return False, "space"
    if not np.allclose(spacing, mask.GetSpacing(), rtol=0, atol=tolerance):
        return False, "space"
    if not np.allclose(image.GetDirection(), mask.GetDirection(), rtol=0, atol=dir_tol):
        return False, "space"
    return True, None


def check_mask(image, mask, settings):
    """``imageoperations.checkMask``: (bounding box, corrected mask or None). Geometry mismatch: with
    correctMask the mask is resampled onto the image, otherwise an InputError naming geometryTolerance /
    correctMask. Then the ROI's dimensionality and size checks (minimumROIDimensions, minimumROISize)."""
    label = settings.get("label", 1)
    min_dims = settings.get("minimumROIDimensions", 2)
    min_size = settings.get("minimumROISize", None)
    corrected = None
    same, why = _same_space(image, mask)
    if not same:
        if not settings.get("correctMask", False):
            if why == "size":
                raise InputError("image and mask differ in size or dimension", column="correctMask",
                                 fix="enable correctMask to resample the mask onto the image")
            raise InputError("image and mask do not occupy the same physical space (origin, spacing or "
                             "direction differ beyond geometryTolerance)", column="geometryTolerance",
                             fix="increase geometryTolerance or enable correctMask")
        corrected = correct_mask(image, mask, label)
        mask = corrected
    box, count = _bounding_box(mask, label)
    if box is None:
        raise InputError(f"label ({label:g}) not present in mask", column="label", fix="check the segmentation")
    ndims = int(np.sum((box[1::2] - box[0::2] + 1) > 1))
    if ndims == 0:
        raise InputError("the mask holds a single segmented voxel; features cannot be computed for one voxel",
                         column="mask", fix="check the segmentation")
    if ndims < min_dims:
        raise InputError(f"the ROI has too few dimensions ({ndims}, minimum required {min_dims})",
                         column="minimumROIDimensions", fix="lower minimumROIDimensions or check the segmentation")
    if min_size is not None and count <= min_size:
        raise InputError(f"the ROI is too small ({count} voxels, minimumROISize {min_size})",
                         column="minimumROISize", fix="lower minimumROISize or check the segmentation")
    return box, corrected


def crop_to_mask(image, mask, box, pad=0):
    """``imageoperations.cropToTumorMask``: crop both images to the bounding box plus ``pad`` voxels (clipped to
    the image)."""
    size = np.array(mask.GetSize())
    lower = np.maximum(box[0::2] - pad, 0)
    upper = np.maximum(size - box[1::2] - pad - 1, 0)
    crop = sitk.CropImageFilter()
    crop.SetLowerBoundaryCropSize(lower.tolist())
    crop.SetUpperBoundaryCropSize(upper.tolist())
    return crop.Execute(image), crop.Execute(mask)


def interpolator_of(value):
    if isinstance(value, str):
        return getattr(sitk, value, sitk.sitkBSpline)
    return value


def resample(image, mask, settings):
    """``imageoperations.resampleImage``: the new grid is aligned to the mask's origin (half-voxel offset),
    covers the ROI's bounding box plus padDistance new voxels, clipped to the image; no resampling along an
    axis the ROI spans with a single slice; image with the chosen interpolator, mask nearest neighbour, each
    back in its own pixel type. If the spacing is already right, only the mask is resampled and both are
    cropped."""
    spacing = settings["resampledPixelSpacing"]
    pad = settings.get("padDistance", 5)
    label = settings.get("label", 1)
    mask_spacing = np.array(mask.GetSpacing())
    image_spacing = np.array(image.GetSpacing())
    if len(spacing) != len(mask_spacing):
        raise InputError(f"resampledPixelSpacing has {len(spacing)} values, the image {len(mask_spacing)} "
                         f"dimensions", column="resampledPixelSpacing", fix="give one spacing per axis")
    spacing = np.array(spacing, dtype=float)
    spacing = np.where(spacing == 0, mask_spacing, spacing)
    bb = check_roi(image, mask, label)
    nd = mask.GetDimension()
    spacing = np.where(bb[nd:] != 1, spacing, mask_spacing)
    if np.allclose(image_spacing, spacing):
        ref = sitk.ResampleImageFilter()
        ref.SetReferenceImage(image)
        ref.SetInterpolator(sitk.sitkNearestNeighbor)
        mask = ref.Execute(mask)
        bb = _label_shape_bbox(mask, label)
        box = np.empty(nd * 2, dtype=int)
        box[::2] = bb[:nd]
        box[1::2] = bb[:nd] + bb[nd:] - 1
        return crop_to_mask(image, mask, box, pad)
    ratio = mask_spacing / spacing
    lower = np.floor((bb[:nd] - 0.5) * ratio - pad)
    upper = np.ceil((bb[:nd] + bb[nd:] - 0.5) * ratio + pad)
    max_upper = np.ceil(np.array(mask.GetSize()) * ratio) - 1
    lower = np.where(lower < 0, 0, lower)
    upper = np.where(upper > max_upper, max_upper, upper)
    size = np.array(upper - lower + 1, dtype="int").tolist()
    origin_index = np.array(.5 * (spacing - mask_spacing) / mask_spacing) + lower / ratio
    origin = mask.TransformContinuousIndexToPhysicalPoint(origin_index)
    rif = sitk.ResampleImageFilter()
    rif.SetOutputSpacing(spacing)
    rif.SetOutputDirection(np.array(mask.GetDirection()))
    rif.SetSize(size)
    rif.SetOutputOrigin(origin)
    rif.SetOutputPixelType(image.GetPixelID())
    rif.SetInterpolator(interpolator_of(settings.get("interpolator", sitk.sitkBSpline)))
    resampled_image = rif.Execute(image)
    rif.SetOutputPixelType(mask.GetPixelID())
    rif.SetInterpolator(sitk.sitkNearestNeighbor)
    return resampled_image, rif.Execute(mask)


def load(image, mask, settings):
    """``RadiomicsFeatureExtractor.loadImage``: read, select the mask, normalise, then resample or pre-crop."""
    image = read_image(image, "image")
    mask = get_mask(read_image(mask, "mask"), settings.get("label", 1), settings.get("label_channel", 0))
    if settings.get("normalize", False):
        image = normalize_image(image, settings)
    if settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None:
        image, mask = resample(image, mask, settings)
    elif settings.get("preCrop", False):
        box, corrected = check_mask(image, mask, settings)
        if corrected is not None:
            mask = corrected
        image, mask = crop_to_mask(image, mask, box, settings.get("padDistance", 0))
    return image, mask


def resegment(image_array, roi, settings):
    """``imageoperations.resegmentMask`` on arrays: keep the ROI voxels inside the closed range
    (absolute values, relative to the ROI's maximum, or mean +- n standard deviations). InputError naming
    resegmentRange when one voxel or none is left."""
    values = image_array[roi]
    window = settings["resegmentRange"]
    mode = settings.get("resegmentMode", "absolute")
    if window is None or len(window) == 0 or len(window) > 2:
        raise InputError(f"resegmentRange must hold 1 or 2 values, got {window!r}", column="resegmentRange",
                         fix="e.g. resegmentRange: [-150, 400]")
    if mode == "absolute":
        thresholds = sorted(window)
    elif mode == "relative":
        top = np.max(values)
        thresholds = [top * t for t in sorted(window)]
    elif mode == "sigma":
        mean, sd = np.mean(values), np.std(values)
        thresholds = [mean + sd * t for t in sorted(window)]
    else:
        raise InputError(f"resegmentMode {mode!r} is not absolute, relative or sigma", column="resegmentMode",
                         fix="correct the parameter file")
    keep = roi.copy()
    keep[keep] = values >= thresholds[0]
    if len(thresholds) == 2:
        keep[keep] = image_array[keep] <= thresholds[1]
    kept = int(keep.sum())
    if kept <= 1:
        raise InputError(f"resegmentation to {list(window)} ({mode}) left {kept} voxel(s) of the ROI "
                         f"({int(roi.sum())} voxels, values {float(np.min(values)):g}..{float(np.max(values)):g})",
                         column="resegmentRange", fix="widen resegmentRange or check the image's intensity units")
    return keep


def check_array_roi(roi, settings):
    """``checkMask``'s dimension/size checks on a boolean array (after resegmentation); returns the
    (L_x, U_x, L_y, U_y, L_z, U_z) box."""
    count = int(roi.sum())
    box = []
    for axis in (2, 1, 0):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(roi.any(axis=other))
        box += [int(hits[0]), int(hits[-1])]
    box = np.array(box)
    ndims = int(np.sum((box[1::2] - box[0::2] + 1) > 1))
    min_dims = settings.get("minimumROIDimensions", 2)
    min_size = settings.get("minimumROISize", None)
    if ndims == 0:
        raise InputError("after resegmentation the ROI is a single voxel", column="resegmentRange",
                         fix="widen resegmentRange")
    if ndims < min_dims:
        raise InputError(f"after resegmentation the ROI has too few dimensions ({ndims}, minimum {min_dims})",
                         column="resegmentRange", fix="widen resegmentRange or lower minimumROIDimensions")
    if min_size is not None and count <= min_size:
        raise InputError(f"after resegmentation the ROI is too small ({count} voxels, minimumROISize "
                         f"{min_size})", column="resegmentRange", fix="widen resegmentRange")
    return box


# ---------------------------------------------------------------- discretisation

def bin_edges(minimum, maximum, settings):
    """``imageoperations.getBinEdges`` from the ROI's minimum and maximum, which are all it reads. ``minimum``
    and ``maximum`` are numpy scalars of the image's own dtype (int16 for a CT, float32 for a LoG image,
    float64 for a wavelet image): pyradiomics' arithmetic (``min % binWidth``, ``numpy.arange``) runs in
    that dtype, and so does this, so that the edges are the same numbers to the last bit."""
    bin_width = settings.get("binWidth", 25)
    bin_count = settings.get("binCount")
    if bin_count is not None:
        edges = np.histogram(np.array([minimum, maximum]), bin_count)[1]
        edges[-1] += 1
        return np.asarray(edges)
    low = minimum - (minimum % bin_width)
    high = maximum + 2 * bin_width
    edges = np.arange(low, high, bin_width)
    if len(edges) == 1:
        edges = np.array([edges[0] - .5, edges[0] + .5])
    return np.asarray(edges)


def discretize(values, edges):
    """``numpy.digitize(values, edges)`` for each image of a batch: ``values`` [B, N] float (the ROI's voxels),
    ``edges`` a list of B 1-D numpy arrays. Returns int64 [B, N], 1..len(edges) (values equal to an edge go
    to the bin above it, as digitize does). The edges are padded with +inf to one [B, E] tensor so that the
    whole batch is one ``searchsorted``."""
    width = max(len(e) for e in edges)
    table = np.full((len(edges), width), np.inf)
    for i, e in enumerate(edges):
        table[i, :len(e)] = np.asarray(e, dtype=np.float64)
    table = torch.as_tensor(table.astype(np.float64 if values.dtype == torch.float64 else np.float32),
                            device=values.device)
    return torch.searchsorted(table, values.contiguous(), right=True)
