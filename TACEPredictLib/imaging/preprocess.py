"""Preprocessing of one case: load the CT phases and the target lesion, crop early, register the phases to a
reference, resample, and normalise intensities.

Everything here works on SimpleITK images (LPS physical space) and numpy arrays (z, y, x). Cropping to the
lesion comes first, so that a 512x512x300 CT never gets copied, resampled or registered whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .. import InputError
from ..data import images as imageio
from ..data.manifest import IMAGE_COLUMNS, PHASE_NAMES

# Room kept around the lesion when cropping (x, y, z in mm): in-plane, a 224-pixel patch centred on the lesion
# (about 160 mm at 0.7 mm pixels) still sees real tissue; through-plane, the two neighbouring slices and the
# wavelet/LoG filters' support.
CROP_MARGIN_MM = (80.0, 80.0, 15.0)

# ... and at least this many voxels on every side: pyradiomics pads its own crop by 10 (resampled) voxels, and
# ITK's B-spline resampling prefilters the whole input with a recursive filter whose influence falls by 0.27
# per voxel; 20 voxels make radiomics of the crop equal radiomics of the whole CT to better than 1e-6.
MIN_MARGIN_VOXELS = 20

# The region registered (lesion plus this margin, mm): the liver around the lesion, which must align.
REGISTRATION_MARGIN_MM = (30.0, 30.0, 15.0)
# The metric's voxels: a tenth, drawn with a fixed seed (the same result every run). On 29 demo cases, whose
# phases are aligned, it took 0.54 s a case instead of 1.9 s with every voxel and moved no phase by more than
# 0.16 mm (every voxel: up to 3.2 mm); with a 5 mm, 2 degree motion applied it left a similar error
# (median 4.1 mm against 3.4 mm at the lesion's region).
SAMPLING_FRACTION, SAMPLING_SEED = 0.1, 1

# Abdominal soft-tissue window (HU) for [0, 1] normalisation.
WINDOW_LEVEL = 50.0
WINDOW_WIDTH = 400.0

REGISTRATION_KINDS = ("none", "rigid", "affine")


@dataclass
class Registration:
    """How one phase was aligned to the reference phase."""
    phase: str
    kind: str
    parameters: list = field(default_factory=list)
    translation_mm: float = 0.0
    rotation_deg: float = 0.0
    ncc_before: float = float("nan")
    ncc_after: float = float("nan")

    def as_row(self, case_id):
        return {"case_id": case_id, "phase": self.phase, "kind": self.kind,
                "translation_mm": round(self.translation_mm, 4), "rotation_deg": round(self.rotation_deg, 4),
                "ncc_before": round(self.ncc_before, 5), "ncc_after": round(self.ncc_after, 5),
                "parameters": " ".join(f"{p:.6g}" for p in self.parameters)}


@dataclass
class CaseImages:
    """One case, cropped around the target lesion, every phase and mask on the reference phase's grid."""
    case_id: str
    reference_phase: str
    phases: dict                      # phase column -> sitk image (HU, the reference CT's pixel type) on the
                                      # cropped reference grid
    mask: sitk.Image                  # uint8 target lesion on the same grid
    reader_masks: dict = field(default_factory=dict)   # seg_r2, ... -> uint8 masks on the same grid
    registrations: list = field(default_factory=list)
    full_geometry: dict = field(default_factory=dict)  # the reference CT's whole grid (see ``empty_image``)
    crop_index: tuple = (0, 0, 0)                      # where the crop starts on that grid

    def array(self, phase):
        return sitk.GetArrayFromImage(self.phases[phase])

    def mask_array(self, reader="seg"):
        mask = self.mask if reader == "seg" else self.reader_masks[reader]
        return sitk.GetArrayFromImage(mask).astype(bool)


def crop_box(mask, margin_mm=CROP_MARGIN_MM, min_voxels=0):
    """(index, size) of the lesion's bounding box plus a margin in mm (and at least ``min_voxels``), clipped
    to the mask's grid."""
    box = imageio.mask_bounding_box(mask)
    if box is None:
        return None
    lower, upper = box
    spacing = mask.GetSpacing()
    size = mask.GetSize()
    pad = [max(int(np.ceil(m / s)), min_voxels) for m, s in zip(margin_mm, spacing)]
    index = [max(0, lo - p) for lo, p in zip(lower, pad)]
    end = [min(n - 1, hi + p) for hi, p, n in zip(upper, pad, size)]
    return index, [e - i + 1 for i, e in zip(index, end)]


def crop(image, index, size):
    return sitk.RegionOfInterest(image, [int(s) for s in size], [int(i) for i in index])


def _ncc(a, b, mask=None):
    x = sitk.GetArrayViewFromImage(a).astype(np.float64)
    y = sitk.GetArrayViewFromImage(b).astype(np.float64)
    if mask is not None:
        keep = sitk.GetArrayViewFromImage(mask) > 0
        x, y = x[keep], y[keep]
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


def register_phase(fixed, moving, kind="rigid", working_spacing_mm=2.0):
    """Align ``moving`` to ``fixed`` (both cropped around the lesion).

    Mattes mutual information (contrast differs between phases) on both images resampled to
    ``working_spacing_mm`` (fast, and sub-millimetre on CT), sampled at a fixed random ``SAMPLING_FRACTION`` of
    the voxels, regular-step gradient descent, geometry-centred initialisation. The result is kept only when it raises the normalised cross-correlation (NCC) with the
    reference; otherwise the phases stay as they were (already aligned, or the optimiser went astray).
    Returns (moving on fixed's grid, the transform, a ``Registration`` record with NCC before and after).
    """
    if kind not in ("rigid", "affine"):
        raise ValueError(f"registration kind must be rigid or affine, not {kind!r}")
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    coarse_fixed = resample_isotropic(fixed, working_spacing_mm, sitk.sitkLinear)
    coarse_moving = resample_isotropic(moving, working_spacing_mm, sitk.sitkLinear)
    initial = sitk.CenteredTransformInitializer(
        coarse_fixed, coarse_moving, sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3),
        sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(SAMPLING_FRACTION, SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=0.02, numberOfIterations=100,
                                                    relaxationFactor=0.5)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetSmoothingSigmasPerLevel([working_spacing_mm / 2])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetShrinkFactorsPerLevel([1])
    method.SetInitialTransform(initial, inPlace=False)
    # one ITK thread: the metric's multi-threaded sums make the result depend on the thread count (two runs on 2+
    # threads differ by ~1e-7, enough to move resampled voxels by 1 HU); at 2 mm the registration is cheap
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        transform = method.Execute(coarse_fixed, coarse_moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    final = transform.GetNthTransform(transform.GetNumberOfTransforms() - 1) \
        if isinstance(transform, sitk.CompositeTransform) else transform

    before = sitk.Resample(moving, fixed, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    aligned = sitk.Resample(moving, fixed, final, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    ncc_before, ncc_after = _ncc(fixed, before), _ncc(fixed, aligned)
    if not ncc_after > ncc_before:
        return before, sitk.Transform(), Registration(phase="", kind=f"{kind} (not applied: NCC did not improve)",
                                                      ncc_before=ncc_before, ncc_after=ncc_before)
    if kind == "rigid":
        euler = sitk.Euler3DTransform(final)
        translation = np.array(euler.GetTranslation())
        rotation = np.degrees(np.linalg.norm(euler.GetParameters()[:3]))
    else:
        affine = sitk.AffineTransform(final)
        translation = np.array(affine.GetTranslation())
        u, _, vt = np.linalg.svd(np.array(affine.GetMatrix()).reshape(3, 3))
        rotation = np.degrees(np.arccos(np.clip((np.trace(u @ vt) - 1) / 2, -1, 1)))
    record = Registration(phase="", kind=kind, parameters=list(final.GetParameters()),
                          translation_mm=float(np.linalg.norm(translation)), rotation_deg=float(rotation),
                          ncc_before=ncc_before, ncc_after=ncc_after)
    return aligned, final, record


def load_case(manifest, row, phases=None, register="rigid", reference_phase=None, readers=(),
              margin_mm=CROP_MARGIN_MM):
    """Load one manifest row: the requested CT phases and the target lesion (plus other readers' masks),
    cropped around the lesion, all on the reference phase's grid.

    The reference phase is ``reference_phase`` or the first phase whose grid the segmentation shares (else
    the first phase present). Other phases are registered to it (``register``: none, rigid or affine) or, with
    ``none``, resampled through physical space. Raises ``InputError`` naming the case and the column.
    """
    case_id = str(row["case_id"])
    if register not in REGISTRATION_KINDS:
        raise ValueError(f"register must be one of {REGISTRATION_KINDS}, not {register!r}")
    wanted = list(phases or manifest.phases)
    paths = {}
    for phase in wanted:
        path = manifest.resolve(row.get(phase)) if phase in row.index else None
        if path is None:
            raise InputError(f"the {PHASE_NAMES.get(phase, phase)} phase is missing", case_id, phase,
                             "add the image path, or leave this phase out (--phases)")
        paths[phase] = path
    seg_path = manifest.resolve(row.get("seg")) if "seg" in row.index else None
    if seg_path is None:
        raise InputError("no segmentation: image features need the target lesion", case_id, "seg",
                         "add the segmentation file (labelmap or .seg.nrrd)")
    selector = row.get("seg_label") if "seg_label" in row.index else None
    ct_paths = {c: manifest.resolve(row.get(c)) for c in IMAGE_COLUMNS if c in row.index}
    mask = imageio.read_segmentation(seg_path, case_id, "seg", ct_paths=ct_paths).mask(selector, case_id)
    _check_lesion(mask, case_id, "seg")

    # One whole CT in memory at a time: each phase is cropped as soon as it is read.
    if reference_phase is None:
        reference_phase = next((p for p in wanted if _same_grid_on_disk(mask, paths[p])), wanted[0])
    reference = _read_ct(paths[reference_phase], case_id, reference_phase)
    if not imageio.same_geometry(mask, reference):
        if not imageio.mask_inside_image(mask, reference):
            raise InputError(f"the lesion lies outside the {PHASE_NAMES.get(reference_phase)} CT: segmentation "
                             "and image do not share physical space", case_id, "seg",
                             "check that the segmentation belongs to this CT (origin, direction)")
        mask = imageio.resample_mask_to(mask, reference)
        _check_lesion(mask, case_id, "seg")

    index, size = crop_box(mask, margin_mm, MIN_MARGIN_VOXELS)
    mask = crop(mask, index, size)
    # Phases keep the reference CT's pixel type (integer HU as stored), so that radiomics sees exactly what
    # pyradiomics would see on the original files.
    fixed = crop(reference, index, size)
    full_geometry = geometry_of(reference)
    reference_grid = _Grid(full_geometry)
    del reference
    cropped = {reference_phase: fixed}
    registrations = []
    for phase in wanted:
        if phase == reference_phase:
            continue
        moving = _read_ct(paths[phase], case_id, phase)
        if register == "none":
            if imageio.same_geometry(moving, reference_grid):
                cropped[phase] = sitk.Cast(crop(moving, index, size), fixed.GetPixelID())
            else:
                cropped[phase] = _resample_like(moving, fixed, sitk.Transform())
            continue
        # Register the liver around the lesion (what must align), then resample the whole crop.
        near_index, near_size = crop_box(mask, REGISTRATION_MARGIN_MM)
        near = crop(fixed, near_index, near_size)
        region = _region_around(moving, fixed, margin_mm)
        del moving
        _, transform, record = register_phase(near, _region_around(region, near, margin_mm), register)
        record.phase = phase
        registrations.append(record)
        cropped[phase] = _resample_like(region, fixed, transform)

    reader_masks = {}
    for column in readers:
        path = manifest.resolve(row.get(column)) if column in row.index else None
        if path is None:
            continue
        other = imageio.read_segmentation(path, case_id, column, ct_paths=ct_paths).mask(selector, case_id)
        reader_masks[column] = sitk.Resample(other, mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                             sitk.sitkUInt8)
    return CaseImages(case_id=case_id, reference_phase=reference_phase, phases=cropped, mask=mask,
                      reader_masks=reader_masks, registrations=registrations, full_geometry=full_geometry,
                      crop_index=tuple(int(i) for i in index))


def geometry_of(image):
    """The grid of an image (size, spacing, origin, direction) as plain tuples."""
    return {"size": image.GetSize(), "spacing": image.GetSpacing(), "origin": image.GetOrigin(),
            "direction": image.GetDirection()}


def empty_image(geometry, pixel=sitk.sitkFloat32):
    """A zero-filled image on the grid described by ``geometry_of``."""
    image = sitk.Image([int(s) for s in geometry["size"]], pixel)
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    return image


class _Grid:
    """A grid described by ``geometry_of``, answering what ``imageio.same_geometry`` asks of an image."""

    def __init__(self, geometry):
        self.geometry = geometry

    def GetSize(self):  # noqa: N802 - SimpleITK's method names
        return self.geometry["size"]

    def GetSpacing(self):  # noqa: N802
        return self.geometry["spacing"]

    def GetOrigin(self):  # noqa: N802
        return self.geometry["origin"]

    def GetDirection(self):  # noqa: N802
        return self.geometry["direction"]


def _read_ct(path, case_id, column):
    image = imageio.read_image(path, case_id, column)
    problem = imageio.ct_intensity_problem(image)
    if problem:
        raise InputError(problem[0], case_id, column, problem[1])
    return image


def _same_grid_on_disk(mask, path):
    """Whether the image file (or DICOM series) at ``path`` has ``mask``'s grid, from its header alone (False
    if unsure)."""
    from ..data import dicom
    if dicom.is_series_reference(path):
        try:
            return imageio.same_geometry(mask, dicom.header_geometry(path))
        except InputError:
            return False
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(path)
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    return len(reader.GetSize()) == 3 and imageio.same_geometry(mask, reader)


def _resample_like(moving, fixed, transform):
    """``moving`` on ``fixed``'s grid (linear), rounded to ``fixed``'s pixel type when that is an integer."""
    resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    if fixed.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        return sitk.Cast(resampled, fixed.GetPixelID())
    return sitk.Cast(sitk.Round(resampled), fixed.GetPixelID())


def _region_around(moving, fixed, margin_mm):
    """The part of ``moving`` covering ``fixed``'s physical extent plus a margin, on moving's own grid."""
    corners = []
    size = fixed.GetSize()
    for i in (0, size[0] - 1):
        for j in (0, size[1] - 1):
            for k in (0, size[2] - 1):
                point = fixed.TransformIndexToPhysicalPoint((i, j, k))
                corners.append(moving.TransformPhysicalPointToContinuousIndex(point))
    corners = np.array(corners)
    spacing = np.array(moving.GetSpacing())
    pad = np.ceil(np.array(margin_mm) / spacing / 2).astype(int)
    lower = np.maximum(np.floor(corners.min(0)).astype(int) - pad, 0)
    upper = np.minimum(np.ceil(corners.max(0)).astype(int) + pad, np.array(moving.GetSize()) - 1)
    if np.any(upper < lower):
        raise InputError("the phase does not overlap the reference phase around the lesion", None, None,
                         "check that all phases belong to the same examination")
    return crop(moving, lower, upper - lower + 1)


def _check_lesion(mask, case_id, column):
    problem = imageio.lesion_problem(mask)
    if problem:
        raise InputError(problem[0], case_id, column, problem[1])


# ---------------------------------------------------------------------------------- resampling, intensities

def resample_isotropic(image, spacing=1.0, interpolator=sitk.sitkBSpline, default=-1024.0):
    """Resample to ``spacing`` mm on every axis (same origin and direction, extent preserved)."""
    spacing = [float(spacing)] * 3 if np.isscalar(spacing) else [float(s) for s in spacing]
    old_spacing, old_size = np.array(image.GetSpacing()), np.array(image.GetSize())
    size = [max(1, int(round(n))) for n in old_size * old_spacing / np.array(spacing)]
    pixel = sitk.sitkUInt8 if interpolator == sitk.sitkNearestNeighbor else sitk.sitkFloat32
    return sitk.Resample(image, size, sitk.Transform(), interpolator, image.GetOrigin(), spacing,
                         image.GetDirection(), default, pixel)


def window(array, level=WINDOW_LEVEL, width=WINDOW_WIDTH):
    """Clip to a HU window and scale to [0, 1]."""
    low = level - width / 2.0
    return np.clip((np.asarray(array, np.float32) - low) / width, 0.0, 1.0)


def zscore(array, mask=None):
    """Zero mean, unit variance (statistics over ``mask`` when given); a constant array becomes zeros."""
    array = np.asarray(array, np.float32)
    values = array[mask] if mask is not None else array
    std = float(values.std())
    return (array - float(values.mean())) / std if std > 0 else np.zeros_like(array)


def minmax(array):
    """Scale to [0, 1]; a constant array becomes zeros."""
    array = np.asarray(array, np.float32)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


__all__ = ["CaseImages", "Registration", "load_case", "register_phase", "crop_box", "crop", "geometry_of", "empty_image",
           "resample_isotropic", "window", "zscore", "minmax", "IMAGE_COLUMNS"]
