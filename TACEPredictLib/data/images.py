"""Reading CT volumes and tumour segmentations, writing Slicer ``.seg.nrrd`` files, and the image checks
that every command shares (CT intensity range, geometry, lesion size).

Images are SimpleITK images in LPS physical space, as ITK reads them; Slicer's RAS conversion happens only in
the MRML adapter.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .. import InputError
from ..outputs import sha256_file  # noqa: F401 (bundles, extraction and deep features read it from here)

IMAGE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")

# A lesion smaller than this (on the segmentation's grid) cannot carry texture statistics: radiomics and
# patch sampling refuse it. 30 voxels is e.g. 3x3 pixels on 3-4 slices.
MIN_LESION_VOXELS = 30

# Relative tolerance on spacing / origin / direction when deciding that two images share a grid.
GEOMETRY_TOLERANCE = 1e-3

# Header checks before any voxel is read (``check_image_file``). The largest CT series are about 512 x 512 x 3000
# voxels (0.8e9); a header declaring more than 2^30 voxels is refused before memory is allocated for it.
MAX_VOXELS = 2 ** 30
# Voxel spacing a CT can have (mm): below it the header is broken (or in metres), above it not a CT volume.
SPACING_RANGE = (0.05, 50.0)


def _has_image_suffix(path):
    lower = path.lower()
    return any(lower.endswith(s) for s in IMAGE_SUFFIXES)


def _bytes_per_component(pixel_id):
    text = sitk.GetPixelIDValueAsString(pixel_id)
    bits = re.search(r"(\d+)-bit", text)
    size = int(bits.group(1)) // 8 if bits else 8
    return size * (2 if "complex" in text else 1)


def _nrrd_layout(path):
    """(encoding, data file or None, header bytes) of an NRRD file, or None when it is not one."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head.startswith(b"NRRD"):
        return None
    end = head.find(b"\n\n")
    if end < 0:
        return None
    fields = {}
    for line in head[:end].decode("latin-1").splitlines()[1:]:
        if ":" in line and not line.startswith("#"):
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip().lstrip("=").strip()
    data_file = fields.get("data file") or fields.get("datafile")
    return fields.get("encoding", "raw").lower(), data_file, end + 2


def _nifti_layout(path, compressed):
    """vox_offset of a NIfTI-1 / NIfTI-2 header, or None."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(544)
    except (OSError, EOFError, zlib.error):
        return None
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            return int(struct.unpack(order + "f", head[108:112])[0])
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            return int(struct.unpack(order + "q", head[168:176])[0])
    return None


def _metaimage_layout(path):
    """(compressed, data file, header bytes, compressed data size or None) of a MetaImage (.mha / .mhd)
    header, or None."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    fields, offset = {}, 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        key, _, value = raw.decode("latin-1").partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break
    else:
        return None
    try:
        compressed_size = int(fields.get("compresseddatasize", "")) if fields.get("compresseddatasize") else None
    except ValueError:
        compressed_size = None
    return (fields.get("compresseddata", "false").lower() == "true", fields["elementdatafile"], offset,
            compressed_size)


def _gzip_size_matches(path, offset, expected):
    """Whether the gzip stream starting at ``offset`` of ``path`` inflates to ``expected`` bytes: the trailer's
    size field first (free), then, only when it disagrees (multi-member streams), by inflating."""
    size = os.path.getsize(path)
    if size - offset >= 18:
        with open(path, "rb") as handle:
            handle.seek(size - 4)
            if struct.unpack("<I", handle.read(4))[0] == expected % 2 ** 32:
                return True
    total = 0
    try:
        with open(path, "rb") as raw:
            raw.seek(offset)
            with gzip.GzipFile(fileobj=raw) as stream:
                for block in iter(lambda: stream.read(1 << 22), b""):
                    total += len(block)
                    if total > expected:
                        return True  # more data than the header says: ITK reads what it needs
    except (OSError, EOFError, zlib.error):
        return False
    return total >= expected


def _data_problem(path, expected):
    """A sentence when the file holds fewer data bytes than its header declares (truncated), else None. Only
    layouts whose data size can be known without reading the voxels are checked: raw and gzip NRRD, .nii and
    .nii.gz, uncompressed MetaImage."""
    lower = path.lower()
    short = "the file is truncated: its header declares {need:,} bytes of voxel data, it holds {have:,}"
    if lower.endswith((".nrrd", ".nhdr")):
        layout = _nrrd_layout(path)
        if layout is None:
            return None
        encoding, data_file, header = layout
        source, offset = path, header
        if data_file and data_file.upper() != "LIST" and "%" not in data_file:
            source = os.path.join(os.path.dirname(path), data_file.split()[0])
            offset = 0
            if not os.path.isfile(source):
                return f"its data file {source} is missing"
        if encoding == "raw":
            have = os.path.getsize(source) - offset
            return short.format(need=expected, have=max(have, 0)) if have < expected else None
        if encoding in ("gzip", "gz"):
            return None if _gzip_size_matches(source, offset, expected) else                 f"the compressed voxel data is truncated or damaged (it does not inflate to the {expected:,} bytes "                 "the header declares)"
        return None
    if lower.endswith(".nii") or lower.endswith(".nii.gz"):
        compressed = lower.endswith(".gz")
        offset = _nifti_layout(path, compressed)
        if offset is None:
            return None
        if not compressed:
            have = os.path.getsize(path) - offset
            return short.format(need=expected, have=max(have, 0)) if have < expected else None
        return None if _gzip_size_matches(path, 0, offset + expected) else             f"the compressed file is truncated or damaged (it does not inflate to the {offset + expected:,} bytes "             "its header declares)"
    if lower.endswith((".mha", ".mhd")):
        layout = _metaimage_layout(path)
        if layout is None:
            return None
        compressed, data_file, header, compressed_size = layout
        if data_file.upper() == "LOCAL":
            have = os.path.getsize(path) - header
        else:
            source = os.path.join(os.path.dirname(path), data_file)
            if not os.path.isfile(source):
                return f"its data file {source} is missing"
            have = os.path.getsize(source)
        if compressed:  # zlib has no size field; ITK's writer records the compressed size in the header
            if compressed_size is not None and have < compressed_size:
                return short.format(need=compressed_size, have=max(have, 0)).replace("voxel data", "compressed data")
            return None
        return short.format(need=expected, have=max(have, 0)) if have < expected else None
    return None


def check_image_file(path, case_id=None, column=None, components=1):
    """Read only the header of an image file and refuse, before any voxel is read: a dimension other than 3, a
    declared size beyond ``MAX_VOXELS``, a file holding less voxel data than its header declares (truncated:
    the missing part would read as zeros), implausible spacing, a broken direction, and more than
    ``components`` values per voxel (RGB or vector images as CT). Returns the ImageFileReader."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        raise InputError(f"cannot read {path} ({last})", case_id, column,
                         "re-export the image as .nrrd or .nii.gz") from None
    size = tuple(int(v) for v in reader.GetSize())
    dimension = reader.GetDimension()
    if dimension == 4:
        raise InputError(f"{path} is a 4D image (size {size}); a 3D volume is needed", case_id, column,
                         "export one 3D volume (one phase, one time point) per manifest column")
    if dimension != 3:
        raise InputError(f"{path} is a {dimension}D image (size {size}); a 3D volume is needed", case_id, column,
                         "export the whole series as one 3D volume")
    count = reader.GetNumberOfComponents()
    if count > components:
        raise InputError(f"{path} has {count} values per voxel (an RGB or vector image), not one", case_id, column,
                         "use the original grayscale CT (HU), not a screenshot, colour export or vector field"
                         if components == 1 else "export a labelmap or Slicer .seg.nrrd")
    voxels = int(np.prod(size, dtype=np.int64))
    if voxels > MAX_VOXELS or min(size) < 1:
        raise InputError(f"{path} declares {' x '.join(map(str, size))} voxels, beyond the {MAX_VOXELS:,} this "
                         "tool reads (the header is broken, or this is not one CT volume)", case_id, column,
                         "re-export the image; check its header's sizes")
    expected = voxels * count * _bytes_per_component(reader.GetPixelID())
    problem = _data_problem(path, expected)
    if problem:
        raise InputError(f"{path}: {problem}", case_id, column,
                         "copy or export the file again (an interrupted copy or download truncates it)")
    spacing = reader.GetSpacing()
    low, high = SPACING_RANGE
    if not all(np.isfinite(spacing)) or min(spacing) < low or max(spacing) > high:
        raise InputError(f"{path} has voxel spacing {tuple(round(s, 6) for s in spacing)} mm, outside the "
                         f"{low:g}-{high:g} mm a CT has", case_id, column,
                         "fix the spacing in the file's header (units are mm), or re-export from the scanner's DICOM")
    direction = np.array(reader.GetDirection(), dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise InputError(f"{path} has an invalid direction matrix {direction.round(3).tolist()}", case_id, column,
                         "re-export the image; its orientation in the header is broken")
    return reader


def read_image(path, case_id=None, column=None):
    """Read a 3D image from a file (.nrrd, .nii, .nii.gz, .mha) or a DICOM series: a folder holding one image
    series, or ``folder#choice`` naming one series of a study (see ``dicom.split_reference``); a file's header is checked first
    (``check_image_file``)."""
    from . import dicom
    if path and dicom.split_reference(path)[1] is not None:
        return _check_3d(dicom.read_series(path, case_id, column), path, case_id, column)
    if not path or not os.path.exists(path):
        raise InputError(f"file not found: {path}", case_id, column,
                         "check the path; paths are relative to the manifest's folder")
    if os.path.isdir(path):
        return _check_3d(dicom.read_series(path, case_id, column), path, case_id, column)
    try:
        if not _has_image_suffix(path):
            raise InputError(f"unsupported file type: {path}", case_id, column,
                             f"use one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder")
        check_image_file(path, case_id, column)
        image = sitk.ReadImage(path)
    except InputError:
        raise
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reader error"
        raise InputError(f"cannot read {path} ({first_line})", case_id, column,
                         "re-export the image as .nrrd or .nii.gz") from None
    return _check_3d(image, path, case_id, column)


def _check_3d(image, path, case_id, column):
    if image.GetDimension() != 3 or image.GetSize()[2] < 2:
        raise InputError(f"{path} is a 2D image (size {image.GetSize()}); a 3D volume is needed",
                         case_id, column, "export the whole series as one 3D volume")
    return image


@dataclass
class Segment:
    """One segment: a label value in one layer of the segmentation."""
    name: str
    label_value: int
    layer: int = 0
    segment_id: str = ""
    color: tuple = (0.9, 0.3, 0.2)


@dataclass
class Segmentation:
    """A labelmap (or several layers of them, as in Slicer's .seg.nrrd) with named segments. A DICOM SEG /
    RTSTRUCT read by ``dicom.read_segmentation`` has one layer per segment and a ``source`` attribute (the
    series and frame of reference it was drawn on)."""
    layers: list
    segments: list = field(default_factory=list)
    path: str = ""

    @property
    def reference(self):
        return self.layers[0]

    def voxel_counts(self):
        """Voxels per segment, in segment order."""
        arrays = [sitk.GetArrayViewFromImage(layer) for layer in self.layers]
        return [int(np.count_nonzero(arrays[s.layer] == s.label_value)) for s in self.segments]

    def find(self, selector=None, case_id=None, column="seg_label"):
        """The segment named by ``selector`` (label value, segment name or ID); by default the only
        segment, or the largest one (of a DICOM SEG / RTSTRUCT: the largest named as a tumour, e.g. "Mass",
        when there is one: their other segments are organs)."""
        if not self.segments:
            raise InputError(f"segmentation {self.path} holds no segment (all voxels are 0)",
                             case_id, "seg", "delineate the lesion, or point to the right file")
        if selector is None or (isinstance(selector, float) and np.isnan(selector)) or str(selector).strip() == "":
            if len(self.segments) == 1:
                return self.segments[0]
            counts = np.array(self.voxel_counts())
            if getattr(self, "source", None) is not None:
                from .dicom import TUMOUR_NAMES
                tumours = np.array([bool(TUMOUR_NAMES.search(s.name)) for s in self.segments])
                if tumours.any():
                    counts = np.where(tumours, counts, -1)
            return self.segments[int(np.argmax(counts))]
        text = str(selector).strip()
        for s in self.segments:
            if text.lower() in (s.name.lower(), s.segment_id.lower()):
                return s
        try:
            value = int(float(text))
        except ValueError:
            value = None
        if value is not None:
            for s in self.segments:
                if s.label_value == value:
                    return s
        names = ", ".join(f"{s.name} (label {s.label_value})" for s in self.segments)
        raise InputError(f"no segment '{text}' in {self.path}; it holds: {names}", case_id, column,
                         "use one of those names or label values, or leave it empty for the largest")

    def mask(self, selector=None, case_id=None):
        """Binary uint8 mask of the selected segment, on the segmentation's grid."""
        segment = self.find(selector, case_id)
        layer = self.layers[segment.layer]
        return sitk.Cast(layer == segment.label_value, sitk.sitkUInt8)


def _segments_from_labels(labelmap):
    values = np.unique(sitk.GetArrayViewFromImage(labelmap))
    return [Segment(name=f"label {int(v)}", label_value=int(v), segment_id=str(int(v)))
            for v in values if v != 0]


def _segments_from_seg_nrrd(image):
    keys = set(image.GetMetaDataKeys())
    segments = []
    index = 0
    while f"Segment{index}_ID" in keys or f"Segment{index}_Name" in keys:
        def meta(name, default=""):
            key = f"Segment{index}_{name}"
            return image.GetMetaData(key) if key in keys else default
        color = tuple(float(c) for c in meta("Color", "0.9 0.3 0.2").split()) or (0.9, 0.3, 0.2)
        segments.append(Segment(name=meta("Name", f"Segment_{index + 1}"),
                                label_value=int(meta("LabelValue", str(index + 1))),
                                layer=int(meta("Layer", "0")),
                                segment_id=meta("ID", f"Segment_{index + 1}"),
                                color=color))
        index += 1
    return segments


def read_segmentation(path, case_id=None, column="seg", ct_paths=None):
    """Read a labelmap file, a Slicer ``.seg.nrrd`` (one or several layers), or a DICOM SEG / RTSTRUCT (a
    file, or the folder holding it). ``ct_paths`` ({CT column: path}): the case's CTs, against which a DICOM
    segmentation's referenced series is checked (``dicom.read_segmentation``)."""
    if not path or not os.path.exists(path):
        raise InputError(f"file not found: {path}", case_id, column,
                         "check the path; paths are relative to the manifest's folder")
    if is_dicom_segmentation(path):
        from . import dicom
        return dicom.read_segmentation(path, case_id, column, ct_paths)
    if os.path.isdir(path) or not _has_image_suffix(path):
        raise InputError(f"unsupported segmentation file: {path}", case_id, column,
                         "use a labelmap (.nrrd, .nii.gz, .mha) or a Slicer .seg.nrrd")
    check_image_file(path, case_id, column, components=256)  # a .seg.nrrd stores one layer per component
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as exc:
        raise InputError(f"cannot read {path} ({str(exc).strip().splitlines()[-1]})", case_id, column,
                         "re-export the segmentation from Slicer as .seg.nrrd or as a labelmap") from None
    if image.GetNumberOfComponentsPerPixel() > 1:
        layers = [sitk.VectorIndexSelectionCast(image, i) for i in range(image.GetNumberOfComponentsPerPixel())]
        for layer in layers:
            layer.CopyInformation(layers[0])
    else:
        layers = [image]
    if image.GetDimension() != 3:
        raise InputError(f"{path} is not a 3D segmentation (dimension {image.GetDimension()})", case_id, column,
                         "export a 3D labelmap or .seg.nrrd on the CT's grid")
    pixel = layers[0].GetPixelID()
    if pixel in (sitk.sitkFloat32, sitk.sitkFloat64):
        array = sitk.GetArrayViewFromImage(layers[0])
        if not np.all(np.mod(array, 1) == 0):
            raise InputError(f"{path} holds non-integer values: it looks like an image, not a labelmap",
                             case_id, column, "point 'seg' to the segmentation file")
    layers = [sitk.Cast(layer, sitk.sitkUInt16) if layer.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16)
              else layer for layer in layers]
    segments = _segments_from_seg_nrrd(image)
    if not segments:
        segments = _segments_from_labels(layers[0])
    return Segmentation(layers=layers, segments=segments, path=path)


def is_dicom_segmentation(path):
    """A DICOM file (SEG / RTSTRUCT expected), or a folder (a DICOM series folder holding the SEG)."""
    from . import dicom
    return bool(path) and (os.path.isdir(path) or dicom.is_dicom_file(path))


def write_seg_nrrd(labelmap, segments, path):
    """Write a single-layer labelmap as a Slicer ``.seg.nrrd`` with named, coloured segments.

    Uses the header fields Slicer's segmentation storage node reads (Segment<N>_ID, _Name, _Color,
    _LabelValue, _Layer, _Extent, ...), so Slicer opens the file as a segmentation node, not a volume.
    """
    image = sitk.Cast(labelmap, sitk.sitkUInt8)
    size = image.GetSize()
    image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|")
    image.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    extent = f"0 {size[0] - 1} 0 {size[1] - 1} 0 {size[2] - 1}"
    for i, s in enumerate(segments):
        image.SetMetaData(f"Segment{i}_ID", s.segment_id or f"Segment_{i + 1}")
        image.SetMetaData(f"Segment{i}_Name", s.name)
        image.SetMetaData(f"Segment{i}_NameAutoGenerated", "0")
        image.SetMetaData(f"Segment{i}_Color", " ".join(f"{c:.6g}" for c in s.color))
        image.SetMetaData(f"Segment{i}_ColorAutoGenerated", "0")
        image.SetMetaData(f"Segment{i}_LabelValue", str(int(s.label_value)))
        image.SetMetaData(f"Segment{i}_Layer", str(int(s.layer)))
        image.SetMetaData(f"Segment{i}_Extent", extent)
        image.SetMetaData(f"Segment{i}_Tags", "|")
    sitk.WriteImage(image, path, True)


# ----------------------------------------------------------------------------------------------- checks

def ct_intensity_problem(image):
    """(problem, fix) when ``image`` does not look like CT in Hounsfield units, else None."""
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        return (f"{bad} voxels are NaN or infinite", "re-export the image; NaN/inf usually comes from a broken "
                "conversion or resampling")
    lo, hi = float(array.min()), float(array.max())
    if hi - lo < 1e-6:
        return f"the image is constant ({lo:g})", "point to the CT image, not an empty export"
    if hi <= 1.0 + 1e-6 and lo >= -1.0 - 1e-6:
        return (f"values lie in [{lo:g}, {hi:g}]: the image looks normalised, not in Hounsfield units",
                "use the original CT (HU), before any normalisation")
    if lo >= 0:
        return (f"no negative values (range {lo:g}..{hi:g}): not CT in Hounsfield units (raw stored values "
                "without rescale slope/intercept, or an MR image)",
                "apply the DICOM rescale (HU = slope * value + intercept) or use the CT series")
    if lo < -3100 or hi > 40000:
        return (f"range {lo:g}..{hi:g} HU is outside what CT stores",
                "check the DICOM rescale slope/intercept of this series")
    return None


def lesion_problem(mask):
    """(problem, fix) when the target lesion ``mask`` is empty or too small for image features, else None."""
    voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    if voxels == 0:
        return "the target lesion is empty (0 voxels)", "check 'seg_label' or the segmentation file"
    if voxels < MIN_LESION_VOXELS:
        return (f"the target lesion has {voxels} voxels, fewer than the {MIN_LESION_VOXELS} needed for image "
                "features", "check the segmentation, or use this case for clinical models only")
    return None


def same_geometry(a, b, tolerance=GEOMETRY_TOLERANCE):
    """True when two images share size, spacing, origin and direction (within a tolerance)."""
    if a.GetSize() != b.GetSize():
        return False
    spacing_a, spacing_b = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if not np.allclose(spacing_a, spacing_b, rtol=tolerance, atol=0):
        return False
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance * spacing_a.min() * 10):
        return False
    return np.allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)


def mask_bounding_box(mask):
    """(lower, upper) voxel index of the non-zero region, inclusive, or None when empty."""
    array = sitk.GetArrayViewFromImage(mask)
    nonzero = np.nonzero(array)
    if len(nonzero[0]) == 0:
        return None
    lower = [int(axis.min()) for axis in nonzero][::-1]  # numpy is z, y, x; ITK is x, y, z
    upper = [int(axis.max()) for axis in nonzero][::-1]
    return lower, upper


def mask_inside_image(mask, image):
    """Whether the mask's non-zero bounding box lies inside the image's physical extent."""
    box = mask_bounding_box(mask)
    if box is None:
        return False
    lower, upper = box
    size = image.GetSize()
    for corner in np.array(np.meshgrid(*zip(lower, upper), indexing="ij")).reshape(3, -1).T:
        point = mask.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
        index = image.TransformPhysicalPointToContinuousIndex(point)
        if any(i < -0.5 - 1e-3 or i > s - 0.5 + 1e-3 for i, s in zip(index, size)):
            return False
    return True


def resample_mask_to(mask, reference):
    """Nearest-neighbour resampling of a mask onto another image's grid."""
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
