"""Clinical DICOM as it comes: CT series chosen out of multi-series studies, DICOM SEG and RTSTRUCT
segmentations checked against the CT they were drawn on, an index of what a download holds, and the lesion
mask written back as DICOM SEG.

Reading is done by pydicom (headers, pixel data, modality LUT) and highdicom (SEG); nothing is hand-parsed.

**Series references.** A CT column of the manifest may name a DICOM folder (a series, a study, a patient: the
folder is searched recursively) plus a series choice after ``#``::

    HCC_001/1.000000-STUDY/                               # the folder holds exactly one image series
    HCC_001/1.000000-STUDY#uid=1.2.840.113619.2.55.3...   # SeriesInstanceUID
    HCC_001/1.000000-STUDY#number=4                       # SeriesNumber
    HCC_001/1.000000-STUDY#description=*arterial*         # SeriesDescription, a case-insensitive glob
    HCC_001/103.000000-LIVER 3 PHASE CAP#acquisition=3    # one acquisition of a series that stacks several
    ...#number=4&acquisition=2                            # keys combine with '&'
    ...#uid=...&gaps=interpolate                          # accept missing slices (interpolated, with a warning)

A description without a wildcard matches as a case-insensitive substring. ``tacepredict index-dicom DIR``
lists every series with the reference that selects it (column ``reference``).

**What a series read does** (``read_series``): localizers (ImageType LOCALIZER), secondary captures and
non-image objects are ignored; slices are sorted by their position along the slice normal; a duplicated
position is an error (naming the series and the position), unless the copies are the same instance, or they
are different acquisitions stacked in one series (then the error lists them: choose one with
``acquisition=``); a missing slice is an error naming the series and the missing position; the modality LUT
(RescaleSlope / RescaleIntercept) is applied per slice; gantry tilt (slices sheared along the normal) and
non-uniform spacing are resampled onto a regular orthogonal grid with a ``DicomWarning`` (or refused with
``irregular="error"``). The result is a SimpleITK image in HU (int16 when the rescale keeps integers, else
float32) whose metadata carries the series' UIDs.

**Segmentations.** ``read_segmentation`` reads a DICOM SEG (highdicom) or an RTSTRUCT (pydicom; each ROI's
closed planar contours rasterised onto the referenced CT's grid: a voxel is inside when its centre lies inside
the polygon, even-odd across a slice's contours, or on an edge). Each segment / ROI is one layer of an
``imageio.Segmentation`` with ``label_value`` = segment / ROI number, so ``seg_label`` picks by name or number.
Given the case's CT columns (``ct_paths``), the SEG's / RTSTRUCT's referenced series must be one of them and
its frame of reference the same, else an ``InputError`` names the case and the column.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import SimpleITK as sitk

from .. import InputError

# Segment / ROI names that say "tumour" (HCC-TACE-Seg calls it "Mass").
TUMOUR_NAMES = re.compile(r"(mass|tumou?r|lesion|hcc|neoplasm|nodule|carcinoma|gtv)", re.IGNORECASE)
SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # binary/fractional, labelmap
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "DOC", "REG", "RWV", "PLAN"}

# Two slices closer than this along the normal are at the same position (positions are written with ~1e-3 mm
# precision; no CT reconstructs slices 0.05 mm apart).
DUPLICATE_TOLERANCE_MM = 0.05
# A step between neighbouring slices over 1.5 x the typical step is a missing slice (or several).
GAP_FACTOR = 1.5
# Spacing is uniform when no slice lies further than this from the straight line through the positions
# (max of 0.02 mm and 1% of the spacing: positions rounded to 0.01 mm stay uniform).
UNIFORM_TOLERANCE_MM, UNIFORM_TOLERANCE_FRACTION = 0.02, 0.01
# Gantry tilt: the slices' in-plane drift along the series, in pixels, above which the grid is sheared.
TILT_TOLERANCE_PIXELS = 0.05
# A contour vertex must lie within this fraction of a slice from a slice centre.
CONTOUR_SLICE_TOLERANCE = 0.25
# A voxel centre closer than this (pixels) to a contour edge is inside (contours through pixel centres).
EDGE_TOLERANCE_PIXELS = 1e-3

HEADER_TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "PatientID", "PatientName", "StudyInstanceUID", "StudyDate",
    "StudyTime", "StudyDescription", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate",
    "SeriesTime", "AcquisitionNumber", "AcquisitionDate", "AcquisitionTime", "ContentDate", "ContentTime",
    "ImageType", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
    "NumberOfFrames", "SliceThickness", "InstanceNumber", "FrameOfReferenceUID", "ContrastBolusAgent",
    "ContrastBolusStartTime", "MediaStorageSOPClassUID", "PixelData",
]


class DicomWarning(UserWarning):
    """A DICOM series was read with a correction (resampled tilt or spacing, ignored slices)."""


def _pydicom():
    import pydicom
    return pydicom


def _highdicom(case_id=None, column=None):
    try:
        import highdicom
    except ImportError:
        raise InputError("reading or writing DICOM SEG needs highdicom, which is not installed", case_id, column,
                         "pip install highdicom  (or: bash scripts/setup_env.sh, whose default extras include "
                         "'dicom')") from None
    return highdicom


# --------------------------------------------------------------------------------------------- references

@dataclass(frozen=True)
class SeriesChoice:
    """What follows '#' in a CT reference."""
    uid: str | None = None
    number: int | None = None
    description: str | None = None
    acquisition: int | None = None
    gaps: str | None = None  # None (missing slices are an error) or "interpolate"

    def text(self):
        parts = [f"{k}={v}" for k, v in (("uid", self.uid), ("number", self.number),
                                        ("description", self.description), ("acquisition", self.acquisition),
                                        ("gaps", self.gaps)) if v is not None]
        return "&".join(parts)


_CHOICE_KEYS = {"uid": "uid", "series": "uid", "seriesinstanceuid": "uid", "number": "number",
                "seriesnumber": "number", "description": "description", "seriesdescription": "description",
                "acquisition": "acquisition", "acquisitionnumber": "acquisition", "gaps": "gaps"}


def _parse_choice(text):
    values = {}
    for part in text.split("&"):
        if "=" not in part:
            return None
        key, value = part.split("=", 1)
        key = _CHOICE_KEYS.get(key.strip().lower())
        if key is None:
            return None
        value = value.strip()
        if key in ("number", "acquisition"):
            try:
                value = int(float(value))
            except ValueError:
                raise InputError(f"'{part}': {key} must be a whole number", fix="e.g. #number=4") from None
        if key == "gaps" and value.lower() != "interpolate":
            raise InputError(f"'{part}': the only gaps option is 'interpolate'", fix="write gaps=interpolate")
        values[key] = value.lower() if key == "gaps" else value
    return SeriesChoice(**values) if values else None


def split_reference(path):
    """(folder, SeriesChoice or None) of a CT reference ``folder#key=value&...``; a path whose '#' tail is not
    a series choice is returned whole."""
    text = str(path)
    if "#" in text:
        head, tail = text.rsplit("#", 1)
        choice = _parse_choice(tail)
        if choice is not None:
            return head, choice
    return text, None


def format_reference(folder, uid=None, acquisition=None):
    """The manifest reference of a series (and acquisition) under ``folder``."""
    parts = [f"uid={uid}"] if uid else []
    if acquisition is not None:
        parts.append(f"acquisition={int(acquisition)}")
    return folder + ("#" + "&".join(parts) if parts else "")


def is_series_reference(path):
    """True for a DICOM folder or a ``folder#choice`` reference (what ``read_series`` reads)."""
    if path is None:
        return False
    folder, choice = split_reference(path)
    return choice is not None or os.path.isdir(folder)


def reference_exists(path):
    """Whether the file or folder a manifest cell names exists (ignoring a series choice)."""
    return path is not None and os.path.exists(split_reference(path)[0])


def is_dicom_file(path):
    """A file with the DICOM preamble ('DICM' at byte 128), or named *.dcm."""
    if not os.path.isfile(path):
        return False
    if path.lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ headers

def _text(value):
    if value is None:
        return ""
    return str(value).strip()


def _int_or_none(value):
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None


def _seconds(date, time):
    """Seconds since 1970 of a DICOM DA + TM pair (time alone: seconds since midnight), or None."""
    time = _text(time).replace(":", "")
    if not time:
        return None
    try:
        hours, minutes = int(time[0:2]), int(time[2:4] or 0)
        seconds = float(time[4:] or 0)
    except ValueError:
        return None
    base = 0.0
    date = _text(date).replace(".", "").replace("-", "")
    if len(date) == 8 and date.isdigit():
        try:
            base = _dt.datetime(int(date[:4]), int(date[4:6]), int(date[6:8]),
                                tzinfo=_dt.timezone.utc).timestamp()
        except ValueError:
            base = 0.0
    return base + hours * 3600 + minutes * 60 + seconds


@dataclass
class Instance:
    """The header fields of one DICOM file that selection, geometry and indexing need."""
    path: str
    sop_class: str
    sop_uid: str
    modality: str
    patient_id: str
    study_uid: str
    study_date: str
    study_description: str
    series_uid: str
    series_number: int | None
    series_description: str
    frame_of_reference: str
    image_type: tuple
    position: tuple | None
    orientation: tuple | None
    pixel_spacing: tuple | None
    rows: int
    columns: int
    frames: int
    acquisition_number: int | None
    acquisition_time: float | None
    contrast_agent: str
    contrast_start: float | None
    slice_thickness: float | None
    instance_number: int | None
    has_pixels: bool

    @property
    def is_segmentation(self):
        return self.sop_class in SEG_SOP_CLASSES or self.sop_class == RTSTRUCT_SOP_CLASS

    @property
    def is_localizer(self):
        return "LOCALIZER" in self.image_type

    @property
    def is_secondary_capture(self):
        return self.sop_class.startswith(SECONDARY_CAPTURE_PREFIX)

    @property
    def is_image(self):
        """A slice that can belong to a CT volume: pixel data, no localizer, no screen capture (a secondary
        capture without a position and orientation: dose reports, screenshots; one with them is a derived
        volume's slice, as ITK-based tools write them)."""
        screen = self.is_secondary_capture and (self.position is None or self.orientation is None)
        return (self.has_pixels and self.modality not in NON_IMAGE_MODALITIES and not self.is_localizer
                and not screen and not self.is_segmentation)


def _read_header(path):
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=False, specific_tags=HEADER_TAGS, defer_size=64)
        meta = ds.get("file_meta", None)
        # Each element converted once (pydicom converts raw values on every access).
        v = {keyword: ds.get(keyword) for keyword in HEADER_TAGS if keyword != "PixelData" and keyword in ds}
        has_pixels = "PixelData" in ds
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, TypeError, AttributeError, KeyError):
        return None
    sop_class = _text(v.get("SOPClassUID")) or _text(getattr(meta, "MediaStorageSOPClassUID", "") if meta else "")
    if not sop_class or sop_class == MEDIA_STORAGE_DIRECTORY:
        return None

    def floats(name, count):
        try:
            values = tuple(float(x) for x in v.get(name))
        except (TypeError, ValueError):
            return None
        return values if len(values) == count else None

    study_date = v.get("StudyDate")
    series_date = v.get("SeriesDate") or study_date
    acquisition = (_seconds(v.get("AcquisitionDate") or v.get("ContentDate") or series_date, v.get("AcquisitionTime"))
                   or _seconds(v.get("ContentDate") or series_date, v.get("ContentTime"))
                   or _seconds(series_date, v.get("SeriesTime")))
    contrast_start = _seconds(v.get("AcquisitionDate") or series_date, v.get("ContrastBolusStartTime"))
    image_type = v.get("ImageType") or ()
    if isinstance(image_type, str):
        image_type = (image_type,)
    thickness = _text(v.get("SliceThickness"))
    return Instance(
        path=path, sop_class=sop_class, sop_uid=_text(v.get("SOPInstanceUID")),
        modality=_text(v.get("Modality")).upper(), patient_id=_text(v.get("PatientID")),
        study_uid=_text(v.get("StudyInstanceUID")), study_date=_text(study_date),
        study_description=_text(v.get("StudyDescription")), series_uid=_text(v.get("SeriesInstanceUID")),
        series_number=_int_or_none(v.get("SeriesNumber")), series_description=_text(v.get("SeriesDescription")),
        frame_of_reference=_text(v.get("FrameOfReferenceUID")),
        image_type=tuple(_text(t).upper() for t in image_type),
        position=floats("ImagePositionPatient", 3), orientation=floats("ImageOrientationPatient", 6),
        pixel_spacing=floats("PixelSpacing", 2), rows=_int_or_none(v.get("Rows")) or 0,
        columns=_int_or_none(v.get("Columns")) or 0, frames=_int_or_none(v.get("NumberOfFrames")) or 1,
        acquisition_number=_int_or_none(v.get("AcquisitionNumber")), acquisition_time=acquisition,
        contrast_agent=_text(v.get("ContrastBolusAgent")), contrast_start=contrast_start,
        slice_thickness=float(thickness) if thickness else None,
        instance_number=_int_or_none(v.get("InstanceNumber")), has_pixels=has_pixels)


_SCAN_CACHE = {}
_SCAN_CACHE_SIZE = 16


def _list_files(folder):
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            files.append(os.path.join(dirpath, name))
    return files


def scan(folder, progress=None):
    """Every DICOM file under ``folder`` (recursively) as an ``Instance``; cached per folder until a file
    changes."""
    folder = os.path.abspath(folder)
    files = _list_files(folder)
    signature = []
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            continue
        signature.append((path, st.st_size, st.st_mtime_ns))
    signature = tuple(signature)
    cached = _SCAN_CACHE.get(folder)
    if cached is not None and cached[0] == signature:
        return cached[1]
    instances = []
    for i, (path, _, _) in enumerate(signature):
        header = _read_header(path)
        if header is not None:
            instances.append(header)
        if progress:
            progress(i + 1, len(signature))
    if len(_SCAN_CACHE) >= _SCAN_CACHE_SIZE:
        _SCAN_CACHE.pop(next(iter(_SCAN_CACHE)))
    _SCAN_CACHE[folder] = (signature, instances)
    return instances


# ------------------------------------------------------------------------------------------ series choice

def _series_name(instance):
    number = "" if instance.series_number is None else f" {instance.series_number}"
    description = f' "{instance.series_description}"' if instance.series_description else ""
    return f"series{number}{description} ({instance.series_uid})"


@dataclass
class SeriesSelection:
    """The image instances of one series (one acquisition when chosen) under a folder."""
    folder: str
    choice: SeriesChoice | None
    series_uid: str
    instances: list
    ignored: dict = field(default_factory=dict)  # reason -> count of files left out

    @property
    def first(self):
        return self.instances[0]

    @property
    def name(self):
        text = _series_name(self.first)
        if self.choice is not None and self.choice.acquisition is not None:
            text += f", acquisition {self.choice.acquisition}"
        return text

    @property
    def frame_of_reference(self):
        return self.first.frame_of_reference

    @property
    def reference(self):
        return format_reference(self.folder, self.series_uid,
                                None if self.choice is None else self.choice.acquisition)


def _describe_series(groups):
    lines = []
    for uid, members in groups.items():
        images = [m for m in members if m.is_image]
        lines.append(f"{_series_name(members[0])}: {members[0].modality}, {len(images)} image(s)")
    return "; ".join(lines)


def _matches(instance, choice):
    if choice.uid is not None and instance.series_uid != choice.uid:
        return False
    if choice.number is not None and instance.series_number != choice.number:
        return False
    if choice.description is not None:
        pattern = choice.description.lower()
        text = instance.series_description.lower()
        if any(ch in pattern for ch in "*?["):
            if not fnmatch.fnmatchcase(text, pattern):
                return False
        elif pattern not in text:
            return False
    return True


def select_series(reference, case_id=None, column=None):
    """The series a CT reference names (see the module docstring); raises InputError naming what the folder
    holds when the choice is missing, matches nothing or matches several series."""
    folder, choice = split_reference(reference)
    if not os.path.isdir(folder):
        raise InputError(f"DICOM folder not found: {folder}", case_id, column,
                         "check the path; paths are relative to the manifest's folder")
    instances = scan(folder)
    if not instances:
        raise InputError(f"folder holds no DICOM series: {folder}", case_id, column,
                         "point to a folder with the DICOM files of the series, or to an image file")
    groups = {}
    for instance in instances:
        groups.setdefault(instance.series_uid, []).append(instance)
    image_groups = {uid: members for uid, members in groups.items() if any(m.is_image for m in members)}
    if not image_groups:
        raise InputError(f"{folder} holds no image series, only: {_describe_series(groups)}", case_id, column,
                         "point the CT column to the CT series' folder")
    if choice is not None and (choice.uid, choice.number, choice.description) != (None, None, None):
        candidates = {uid: m for uid, m in image_groups.items() if _matches(m[0], choice)}
        if not candidates:
            raise InputError(f"no image series in {folder} matches '#{choice.text()}'; it holds: "
                             f"{_describe_series(image_groups)}", case_id, column,
                             "choose one of those (#uid=..., #number=... or #description=...); "
                             "`tacepredict index-dicom` lists them")
    else:
        candidates = image_groups
    if len(candidates) > 1:
        raise InputError(f"{folder} holds {len(candidates)} DICOM series: {_describe_series(candidates)}",
                         case_id, column, "name the one you mean after '#': #uid=<SeriesInstanceUID>, "
                         "#number=<SeriesNumber> or #description=<pattern> (`tacepredict index-dicom` lists "
                         "each series with its reference)")
    uid, members = next(iter(candidates.items()))
    ignored = {}
    for m in members:
        if m.is_image:
            continue
        reason = ("localizer" if m.is_localizer else "screen capture" if m.is_secondary_capture
                  else "no pixel data" if not m.has_pixels else f"{m.modality} object")
        ignored[reason] = ignored.get(reason, 0) + 1
    images = [m for m in members if m.is_image]
    if choice is not None and choice.acquisition is not None:
        chosen = [m for m in images if m.acquisition_number == choice.acquisition]
        if not chosen:
            numbers = sorted({m.acquisition_number for m in images if m.acquisition_number is not None})
            raise InputError(f"{_series_name(members[0])} has no acquisition {choice.acquisition} "
                             f"(it holds acquisitions {numbers or 'without numbers'})", case_id, column,
                             "choose one of those with #...&acquisition=N")
        images = chosen
    return SeriesSelection(folder=folder, choice=choice, series_uid=uid, instances=images, ignored=ignored)


# --------------------------------------------------------------------------------------------- geometry

@dataclass
class SeriesGeometry:
    """The regular grid a series is read onto, and how its slices map to it.

    Duck-types SimpleITK's GetSize / GetSpacing / GetOrigin / GetDirection so that ``imageio.same_geometry``
    compares it with an image without reading pixel data.
    """
    selection: SeriesSelection
    instances: list               # sorted along the normal
    positions: np.ndarray         # each instance's position along the normal (mm)
    offsets: np.ndarray           # each instance's in-plane offset from the first one, (column, row) pixels
    output_positions: np.ndarray  # positions of the output slices along the normal
    spacing: tuple
    origin: tuple
    direction: tuple
    size: tuple
    corrections: list             # what was resampled, in words

    def GetSize(self):  # noqa: N802 - SimpleITK's names
        return self.size

    def GetSpacing(self):  # noqa: N802
        return self.spacing

    def GetOrigin(self):  # noqa: N802
        return self.origin

    def GetDirection(self):  # noqa: N802
        return self.direction

    @property
    def regular(self):
        return not self.corrections

    def empty_image(self, pixel=sitk.sitkUInt8):
        image = sitk.Image([int(s) for s in self.size], pixel)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def _axes(orientation):
    row = np.array(orientation[:3], float)
    col = np.array(orientation[3:], float)
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def _point_text(point):
    return "(" + ", ".join(f"{c:.2f}" for c in point) + ")"


def series_geometry(selection, case_id=None, column=None, irregular="resample"):
    """Sort, check and plan the grid of a selected series from its headers alone (see the module docstring).

    ``irregular``: "resample" (gantry tilt and non-uniform spacing are resampled, with a DicomWarning) or
    "error" (refused). Missing slices and duplicated positions are always errors (unless the reference says
    ``gaps=interpolate``).
    """
    name = selection.name
    instances = [m for m in selection.instances]
    multi = [m for m in instances if m.frames > 1]
    if multi:
        raise InputError(f"{name} is a multi-frame (enhanced) image; TACEPredict reads single-frame series",
                         case_id, column, "export the series as classic single-frame CT images")
    missing_geometry = [m for m in instances if m.position is None or m.orientation is None
                        or m.pixel_spacing is None]
    if missing_geometry:
        selection.ignored["no position or orientation"] = len(missing_geometry)
        instances = [m for m in instances if m not in missing_geometry]
    if len(instances) < 2:
        raise InputError(f"{name} has {len(instances)} slice(s) with a position; a 3D volume needs at least 2",
                         case_id, column, "choose the CT series of the volume (`tacepredict index-dicom`)")
    orientations = {}
    for m in instances:
        orientations.setdefault(tuple(np.round(m.orientation, 4)), []).append(m)
    if len(orientations) > 1:
        counts = ", ".join(f"{len(v)} slices at {k}" for k, v in orientations.items())
        raise InputError(f"{name} mixes slice orientations ({counts})", case_id, column,
                         "choose one series of parallel slices (reformats are usually their own series)")
    shapes = {(m.rows, m.columns, tuple(np.round(m.pixel_spacing, 5))) for m in instances}
    if len(shapes) > 1:
        raise InputError(f"{name} mixes slice sizes or pixel spacings ({sorted(shapes)})", case_id, column,
                         "choose one series whose slices share one matrix")
    row, col, normal = _axes(instances[0].orientation)
    positions = np.array([np.dot(m.position, normal) for m in instances])
    order = np.argsort(positions, kind="stable")
    instances = [instances[i] for i in order]
    positions = positions[order]

    # Duplicated positions: the same instance twice (dropped), stacked acquisitions, or an error.
    keep = [0]
    for i in range(1, len(instances)):
        if positions[i] - positions[keep[-1]] >= DUPLICATE_TOLERANCE_MM:
            keep.append(i)
            continue
        a, b = instances[keep[-1]], instances[i]
        if a.sop_uid == b.sop_uid:
            selection.ignored["duplicate file of the same instance"] = \
                selection.ignored.get("duplicate file of the same instance", 0) + 1
            continue
        point = _point_text(b.position)
        acquisitions = sorted({m.acquisition_number for m in instances if m.acquisition_number is not None})
        if len(acquisitions) > 1 and a.acquisition_number != b.acquisition_number:
            summary = ", ".join(
                f"{n} ({sum(m.acquisition_number == n for m in instances)} slices)" for n in acquisitions)
            raise InputError(f"{name} stacks {len(acquisitions)} acquisitions at the same slice positions "
                             f"(e.g. {point}): acquisitions {summary}", case_id, column,
                             "choose one with '#...&acquisition=N' (`tacepredict index-dicom` lists the phase "
                             "of each)")
        raise InputError(f"{name} has two different slices at the same position {point} "
                         f"({positions[i]:.2f} mm along the slice normal): instances "
                         f"{a.instance_number} and {b.instance_number}", case_id, column,
                         "remove the duplicate files, or choose one series / acquisition")
    instances = [instances[i] for i in keep]
    positions = positions[keep]
    if len(instances) < 2:
        raise InputError(f"{name} has all its slices at one position", case_id, column,
                         "choose the CT series of the volume")

    steps = np.diff(positions)
    step = float(np.median(steps))
    corrections = []
    gaps = np.nonzero(steps > GAP_FACTOR * step)[0]
    if len(gaps):
        allow = selection.choice is not None and selection.choice.gaps == "interpolate"
        missing = []
        for g in gaps:
            count = int(round(steps[g] / step)) - 1
            for k in range(1, max(count, 1) + 1):
                missing.append(positions[g] + steps[g] * k / (max(count, 1) + 1))
        if not allow:
            first = missing[0]
            point = np.array(instances[0].position) + (first - positions[0]) * normal
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise InputError(f"{name} misses a slice at {first:.2f} mm along the slice normal (patient position "
                             f"about {_point_text(point)}){more}: the neighbouring slices are {steps[gaps[0]]:.2f} "
                             f"mm apart where the series steps {step:.2f} mm", case_id, column,
                             "re-export or re-download the series with all its slices; to read it anyway with "
                             "the gap interpolated, add '&gaps=interpolate' (or '#gaps=interpolate') to the "
                             "reference")
        corrections.append(f"{len(missing)} missing slice(s) interpolated at "
                           + ", ".join(f"{p:.2f}" for p in missing[:5]) + " mm")
    fit = np.polyfit(np.arange(len(positions)), positions, 1) if not len(gaps) else None
    uniform = True
    if fit is not None:
        residual = np.max(np.abs(np.polyval(fit, np.arange(len(positions))) - positions))
        uniform = residual <= max(UNIFORM_TOLERANCE_MM, UNIFORM_TOLERANCE_FRACTION * abs(fit[0]))
        if uniform:
            # Positions carry ~1e-6 mm of precision (decimal strings): a fitted 4.999999999999992 is 5.
            step = round(float(fit[0]), 6)
    if not uniform:
        corrections.append(f"non-uniform slice spacing ({steps.min():.3f}-{steps.max():.3f} mm) resampled to "
                           f"{step:.3f} mm")
    ps = instances[0].pixel_spacing  # (row spacing, column spacing)
    deltas = np.array([np.array(m.position) - np.array(instances[0].position) for m in instances])
    in_plane = deltas - np.outer(deltas @ normal, normal)
    offsets = np.stack([in_plane @ row / ps[1], in_plane @ col / ps[0]], axis=1)  # (column, row) pixels
    if np.max(np.abs(offsets)) > TILT_TOLERANCE_PIXELS:
        span = positions[-1] - positions[0]
        drift = np.linalg.norm(in_plane[-1])
        angle = np.degrees(np.arctan2(drift, span)) if span > 0 else 0.0
        corrections.append(f"gantry tilt (slices shifted {drift:.1f} mm in-plane over {span:.1f} mm, about "
                           f"{angle:.1f} degrees) resampled onto an orthogonal grid")
    else:
        offsets = np.zeros_like(offsets)
    if corrections and irregular == "error":
        raise InputError(f"{name} is irregular: " + "; ".join(corrections), case_id, column,
                         "resample it (irregular='resample') or re-export a regular series")
    if (uniform and not len(gaps)):
        output_positions = positions[0] + step * np.arange(len(positions))
    else:  # the acquired range, in steps as close to the typical one as divide it evenly
        span = positions[-1] - positions[0]
        intervals = max(int(round(span / step)), 1)
        step = span / intervals
        output_positions = positions[0] + step * np.arange(intervals + 1)
    direction = tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel())
    return SeriesGeometry(selection=selection, instances=instances, positions=positions, offsets=offsets,
                          output_positions=output_positions, spacing=(float(ps[1]), float(ps[0]), abs(step)),
                          origin=tuple(float(v) for v in instances[0].position), direction=direction,
                          size=(instances[0].columns, instances[0].rows, len(output_positions)),
                          corrections=corrections)


def _regularise(stack, geometry, order, fill):
    """Resample a (slices, rows, columns) stack on the series' own slice planes onto the geometry's regular
    orthogonal grid: in-plane shift of tilted slices, then linear (order 1) or nearest (order 0) interpolation
    along the normal."""
    from scipy import ndimage
    if not geometry.corrections:
        return stack
    out_dtype = np.float32 if order else stack.dtype
    work = stack.astype(np.float32) if order else stack
    if np.any(geometry.offsets):
        shifted = np.empty_like(work)
        for k in range(len(work)):
            du, dv = geometry.offsets[k]
            shifted[k] = ndimage.shift(work[k], (dv, du), order=order, mode="constant", cval=fill)
        work = shifted
    positions = geometry.positions
    targets = geometry.output_positions
    if len(targets) == len(positions) and np.allclose(targets, positions, atol=1e-6):
        return work.astype(out_dtype)
    index = np.interp(targets, positions, np.arange(len(positions)))
    lower = np.clip(np.floor(index).astype(int), 0, len(positions) - 1)
    upper = np.clip(lower + 1, 0, len(positions) - 1)
    weight = (targets - positions[lower]) / np.maximum(positions[upper] - positions[lower], 1e-9)
    weight = np.where(upper == lower, 0.0, weight)
    if order == 0:
        nearest = np.where(weight >= 0.5, upper, lower)
        return work[nearest].astype(out_dtype)
    w = weight[:, None, None].astype(np.float32)
    return ((1 - w) * work[lower] + w * work[upper]).astype(out_dtype)


def _warn(geometry, case_id, column):
    if geometry.corrections or geometry.selection.ignored:
        where = ", ".join(p for p in (f"case {case_id}" if case_id is not None else "",
                                      f"column '{column}'" if column else "") if p)
        parts = list(geometry.corrections)
        parts += [f"{n} file(s) ignored ({reason})" for reason, n in geometry.selection.ignored.items()]
        warnings.warn(DicomWarning(f"{where + ': ' if where else ''}{geometry.selection.name}: "
                                   + "; ".join(parts)), stacklevel=3)


def header_geometry(reference, case_id=None, column=None, irregular="resample"):
    """The grid ``read_series`` would return, from the headers alone."""
    return series_geometry(select_series(reference, case_id, column), case_id, column, irregular)


def read_series(reference, case_id=None, column=None, irregular="resample"):
    """A CT series in HU as a SimpleITK image (see the module docstring)."""
    geometry = header_geometry(reference, case_id, column, irregular)
    pydicom = _pydicom()
    try:
        from pydicom.pixels import apply_modality_lut
    except ImportError:  # pydicom 2 (older Slicer builds)
        from pydicom.pixel_data_handlers.util import apply_modality_lut
    slices, integral = [], True
    for m in geometry.instances:
        try:
            ds = pydicom.dcmread(m.path)
            stored = ds.pixel_array
        except Exception as exc:  # decoders raise many types (missing plugin, corrupt data)
            raise InputError(f"cannot decode the pixel data of {m.path} ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})", case_id, column,
                             "decompress the series (e.g. gdcmconv --raw) or install the pydicom pixel-data "
                             "plugins for its transfer syntax (pylibjpeg, pyjpegls)") from None
        if stored.ndim != 2:
            raise InputError(f"{m.path} is not a single grey-level slice (pixel array {stored.shape})", case_id,
                             column, "choose a CT series")
        values = apply_modality_lut(stored, ds)
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        if "ModalityLUTSequence" in ds or not float(slope).is_integer() or not float(intercept).is_integer():
            integral = False
        slices.append(np.asarray(values))
    stack = np.stack(slices)
    if integral and stack.min() >= -32768 and stack.max() <= 32767:
        stack = stack.astype(np.int16)
    else:
        stack = stack.astype(np.float32)
    if geometry.corrections:
        stack = _regularise(stack, geometry, order=1, fill=float(stack.min()))
    _warn(geometry, case_id, column)
    image = sitk.GetImageFromArray(stack)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    first = geometry.instances[0]
    for key, value in (("0020|000e", first.series_uid), ("0020|000d", first.study_uid),
                       ("0020|0052", first.frame_of_reference), ("0010|0020", first.patient_id),
                       ("0008|103e", first.series_description), ("0008|0060", first.modality)):
        image.SetMetaData(key, value)
    return image


def reference_digest(path):
    """SHA-256 over the files a DICOM reference reads (a series, or every file of a folder without a series
    choice that holds no image series), for extraction caches."""
    from .images import sha256_file
    folder, choice = split_reference(path)
    try:
        files = sorted(m.path for m in select_series(path).instances)
    except InputError:
        if choice is not None:
            raise
        files = _list_files(folder)
    digest = hashlib.sha256()
    for name in files:
        digest.update(os.path.relpath(name, folder).encode())
        digest.update(sha256_file(name).encode())
    if choice is not None:
        digest.update(choice.text().encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ segmentations

@dataclass
class SegmentationSource:
    """What a DICOM SEG / RTSTRUCT says it was drawn on."""
    kind: str                  # "SEG" or "RTSTRUCT"
    path: str
    series_uids: tuple         # referenced series
    frame_of_reference: str
    instance_uids: frozenset   # referenced SOP instances (may be empty)
    segments: tuple = ()       # (number, name) of each segment / ROI


def segmentation_file(path, case_id=None, column="seg"):
    """A DICOM SEG / RTSTRUCT file, or a folder holding exactly one (TCIA's layout: one folder per series)."""
    if os.path.isfile(path):
        return path
    found = [m for m in scan(path) if m.is_segmentation]
    if len(found) != 1:
        what = "no DICOM SEG or RTSTRUCT" if not found else f"{len(found)} DICOM SEG / RTSTRUCT files"
        raise InputError(f"{path} holds {what}", case_id, column,
                         "point 'seg' to one SEG or RTSTRUCT file (or to the folder holding only it)")
    return found[0].path


def _check_pairing(source, ct_paths, case_id, column):
    """The (CT column, SeriesSelection) the segmentation was drawn on among ``ct_paths``; None when no CT
    column is a DICOM series (nothing to check). Raises InputError naming the case and ``column``."""
    candidates = {}
    for ct_column, ct_path in (ct_paths or {}).items():
        if ct_path is None or not is_series_reference(ct_path):
            continue
        try:
            candidates[ct_column] = select_series(ct_path, case_id, ct_column)
        except InputError:
            continue  # the CT column's own error is reported where it is read
    if not candidates:
        return None
    kind = source.kind
    for ct_column, selection in candidates.items():
        if selection.series_uid not in source.series_uids:
            continue
        own = {m.sop_uid for m in selection.instances}
        if source.instance_uids and not (own & source.instance_uids):
            continue  # another acquisition of the same series
        if source.frame_of_reference and selection.frame_of_reference and \
                source.frame_of_reference != selection.frame_of_reference:
            raise InputError(f"the {kind}'s frame of reference ({source.frame_of_reference}) differs from that of "
                             f"the CT it references, {ct_column} = {selection.name} "
                             f"(frame of reference {selection.frame_of_reference})", case_id, column,
                             "the segmentation's coordinates do not belong to this CT: export it again from the "
                             "CT series it was drawn on")
        return ct_column, selection
    listed = "; ".join(f"{c} = {s.name}" for c, s in candidates.items())
    drawn = ", ".join(source.series_uids) or "(no referenced series)"
    raise InputError(f"the {kind} {os.path.basename(source.path)} was drawn on series {drawn} (frame of reference "
                     f"{source.frame_of_reference or 'not given'}), which is none of this case's CT series: "
                     f"{listed}", case_id, column,
                     "point one CT column to the series the segmentation references (`tacepredict index-dicom` "
                     "lists it with its reference), or use the segmentation drawn on these series")


def _find_near(source, path, case_id, column):
    """The referenced series searched for in the folders above a segmentation file (its series folder's
    parent, TCIA's study folder, then the patient folder)."""
    folder = os.path.dirname(os.path.abspath(path))
    for _ in range(3):
        folder = os.path.dirname(folder)
        if not folder or folder == os.path.dirname(folder):
            break
        instances = scan(folder)
        for uid in source.series_uids:
            if any(m.series_uid == uid and m.is_image for m in instances):
                reference = format_reference(folder, uid)
                selection = select_series(reference, case_id, column)
                if source.instance_uids:
                    by_acquisition = {}
                    for m in selection.instances:
                        if m.sop_uid in source.instance_uids:
                            by_acquisition.setdefault(m.acquisition_number, 0)
                            by_acquisition[m.acquisition_number] += 1
                    if len(by_acquisition) == 1 and len({m.acquisition_number for m in selection.instances}) > 1:
                        acquisition = next(iter(by_acquisition))
                        selection = select_series(format_reference(folder, uid, acquisition), case_id, column)
                return selection
    return None


def seg_source(path):
    """The SegmentationSource of a DICOM SEG or RTSTRUCT file (headers only; a SEG's per-frame references are
    read only when its Referenced Series Sequence does not list the instances)."""
    pydicom = _pydicom()
    tags = ["SOPClassUID", "Modality", "FrameOfReferenceUID", "ReferencedSeriesSequence", "SegmentSequence",
            "ReferencedFrameOfReferenceSequence", "StructureSetROISequence"]
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    sop_class = _text(ds.get("SOPClassUID"))
    if sop_class == RTSTRUCT_SOP_CLASS:
        series, frames, instances = [], [], set()
        for fr in ds.get("ReferencedFrameOfReferenceSequence", []):
            frames.append(_text(fr.get("FrameOfReferenceUID")))
            for study in fr.get("RTReferencedStudySequence", []):
                for s in study.get("RTReferencedSeriesSequence", []):
                    series.append(_text(s.get("SeriesInstanceUID")))
                    for image in s.get("ContourImageSequence", []):
                        instances.add(_text(image.get("ReferencedSOPInstanceUID")))
        rois = ds.get("StructureSetROISequence", [])
        frames += [_text(roi.get("ReferencedFrameOfReferenceUID")) for roi in rois]
        frames = [f for f in frames if f]
        return SegmentationSource("RTSTRUCT", path, tuple(dict.fromkeys(s for s in series if s)),
                                  frames[0] if frames else "", frozenset(instances),
                                  tuple((int(r.ROINumber), _text(r.get("ROIName"))) for r in rois))
    if sop_class in SEG_SOP_CLASSES:
        series, instances = [], set()
        for s in ds.get("ReferencedSeriesSequence", []):
            series.append(_text(s.get("SeriesInstanceUID")))
            for i in s.get("ReferencedInstanceSequence", []):
                instances.add(_text(i.get("ReferencedSOPInstanceUID")))
        if not instances:
            full = pydicom.dcmread(path, stop_before_pixels=True)
            for frame in full.get("PerFrameFunctionalGroupsSequence", []):
                for derivation in frame.get("DerivationImageSequence", []):
                    for image in derivation.get("SourceImageSequence", []):
                        instances.add(_text(image.get("ReferencedSOPInstanceUID")))
        segments = tuple((int(s.SegmentNumber), _text(s.get("SegmentLabel"))) for s in ds.get("SegmentSequence", []))
        return SegmentationSource("SEG", path, tuple(dict.fromkeys(s for s in series if s)),
                                  _text(ds.get("FrameOfReferenceUID")), frozenset(instances), segments)
    raise InputError(f"{path} is a DICOM {_text(ds.get('Modality')) or sop_class} object, not a SEG or RTSTRUCT",
                     fix="point 'seg' to the DICOM SEG or RTSTRUCT file")


def read_segmentation(path, case_id=None, column="seg", ct_paths=None):
    """A DICOM SEG or RTSTRUCT as an ``imageio.Segmentation`` (one layer per segment / ROI).

    ``ct_paths`` ({CT column: resolved path}) are the case's CTs: the segmentation's referenced series must be
    one of them (when any is a DICOM series); a SEG is then placed on that series' grid exactly, an RTSTRUCT
    rasterised on it. Without ``ct_paths``, a SEG keeps its own grid and an RTSTRUCT looks for its CT series
    in the folders above it.
    """
    path = segmentation_file(path, case_id, column)
    try:
        source = seg_source(path)
    except InputError as exc:
        raise InputError(exc.problem, case_id, column, exc.fix) from None
    except Exception as exc:  # pydicom's errors on broken files have no common base
        raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc})", case_id, column,
                         "export the segmentation again as DICOM SEG or RTSTRUCT") from None
    paired = _check_pairing(source, ct_paths, case_id, column)
    selection = paired[1] if paired else None
    if source.kind == "RTSTRUCT":
        if selection is None:
            selection = _find_near(source, path, case_id, column)
        if selection is None:
            raise InputError(f"the RTSTRUCT {path} references CT series {', '.join(source.series_uids) or '?'}, "
                             "which is neither a CT column of this case nor in the folders above the file",
                             case_id, column, "give the CT series in a CT column (or keep the RTSTRUCT in its "
                             "study folder next to the CT series): contours need the CT grid")
        return _read_rtstruct(path, source, series_geometry(selection, case_id, column), case_id, column)
    return _read_seg(path, source, selection, case_id, column)


def _segments_and_layers(names, numbers, masks, reference_image, path, source, kind):
    from .images import Segment, Segmentation
    layers, segments = [], []
    dtype = np.uint8 if max(numbers, default=1) < 256 else np.uint16
    for i, (name, number, mask) in enumerate(zip(names, numbers, masks)):
        layer = sitk.GetImageFromArray((mask.astype(bool) * number).astype(dtype))
        layer.CopyInformation(reference_image)
        layers.append(layer)
        segments.append(Segment(name=name or f"{kind} {number}", label_value=int(number), layer=i,
                                segment_id=str(number)))
    segmentation = Segmentation(layers=layers, segments=segments, path=path)
    segmentation.source = source
    return segmentation


def _read_seg(path, source, selection, case_id, column):
    hd = _highdicom(case_id, column)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:
        raise InputError(f"cannot read the DICOM SEG {path} ({type(exc).__name__}: {exc})", case_id, column,
                         "export the segmentation again as DICOM SEG") from None
    numbers = [int(n) for n in seg.segment_numbers]
    names = [_text(seg.get_segment_description(n).SegmentLabel) for n in numbers]
    if not numbers:
        raise InputError(f"the DICOM SEG {path} holds no segment", case_id, column,
                         "point 'seg' to a SEG with the tumour segment")
    binary = str(seg.SegmentationType).upper() != "FRACTIONAL"
    if selection is not None:
        geometry = series_geometry(selection, case_id, column)
        uids = [m.sop_uid for m in geometry.instances]
        try:
            pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers,
                                                       ignore_spatial_locations=True, skip_overlap_checks=True)
        except (ValueError, RuntimeError, KeyError, AttributeError):
            pixels = None  # frames not referenced per source instance: fall back to the SEG's own geometry
        if pixels is not None:
            masks = pixels >= 0.5 if not binary else pixels > 0
            masks = np.moveaxis(masks, -1, 0)  # (segments, slices, rows, columns)
            if geometry.corrections:
                masks = np.stack([_regularise(m.astype(np.uint8), geometry, 0, 0) for m in masks])
            return _segments_and_layers(names, numbers, masks, geometry.empty_image(), path, source, "segment")
    try:
        volume = seg.get_volume(combine_segments=False, segment_numbers=numbers, skip_overlap_checks=True)
    except Exception as exc:
        raise InputError(f"the DICOM SEG {path} does not form a regular 3D volume on its own ({exc})", case_id,
                         column, "give the CT series it was drawn on in a CT column of the same row") from None
    array = np.asarray(volume.array)
    if array.ndim == 3:
        array = array[..., None]
    affine = np.asarray(volume.affine, float)
    reference = sitk.Image([int(array.shape[2]), int(array.shape[1]), int(array.shape[0])], sitk.sitkUInt8)
    axes = affine[:3, :3]  # columns: slice, row, column index directions (scaled)
    spacing = np.linalg.norm(axes, axis=0)
    direction = np.stack([axes[:, 2] / spacing[2], axes[:, 1] / spacing[1], axes[:, 0] / spacing[0]], axis=1)
    reference.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))
    reference.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    reference.SetDirection(tuple(float(v) for v in direction.ravel()))
    masks = [(array[..., i] >= 0.5) if not binary else (array[..., i] > 0) for i in range(array.shape[-1])]
    return _segments_and_layers(names, numbers, masks, reference, path, source, "segment")


# --------------------------------------------------------------------------------------------- RTSTRUCT

def rasterise_polygon(vertices, shape):
    """Boolean (rows, columns) mask of the voxels whose centre lies inside the closed polygon ``vertices``
    ((column, row) pixel coordinates, voxel centres at integers) by the even-odd rule, or within
    EDGE_TOLERANCE_PIXELS of an edge. Returns (inside, on_edge)."""
    rows, columns = shape
    inside = np.zeros(shape, bool)
    on_edge = np.zeros(shape, bool)
    v = np.asarray(vertices, float)
    if len(v) < 3:
        return inside, on_edge
    x0, y0 = v[:, 0], v[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    row_lo = max(int(np.ceil(v[:, 1].min() - EDGE_TOLERANCE_PIXELS)), 0)
    row_hi = min(int(np.floor(v[:, 1].max() + EDGE_TOLERANCE_PIXELS)), rows - 1)
    cols = np.arange(columns, dtype=float)
    for r in range(row_lo, row_hi + 1):
        crossing = ((y0 <= r) & (y1 > r)) | ((y1 <= r) & (y0 > r))
        if crossing.any():
            xa, ya, xb, yb = x0[crossing], y0[crossing], x1[crossing], y1[crossing]
            xs = np.sort(xa + (r - ya) * (xb - xa) / (yb - ya))
            count = np.searchsorted(xs, cols, side="right")  # crossings left of (or at) the centre
            inside[r] = (count % 2) == 1
    # Voxel centres on an edge (contours drawn through boundary voxel centres).
    for xa, ya, xb, yb in zip(x0, y0, x1, y1):
        c_lo = max(int(np.ceil(min(xa, xb) - EDGE_TOLERANCE_PIXELS)), 0)
        c_hi = min(int(np.floor(max(xa, xb) + EDGE_TOLERANCE_PIXELS)), columns - 1)
        r_lo = max(int(np.ceil(min(ya, yb) - EDGE_TOLERANCE_PIXELS)), 0)
        r_hi = min(int(np.floor(max(ya, yb) + EDGE_TOLERANCE_PIXELS)), rows - 1)
        if c_lo > c_hi or r_lo > r_hi:
            continue
        cy, cx = np.mgrid[r_lo:r_hi + 1, c_lo:c_hi + 1].astype(float)
        dx, dy = xb - xa, yb - ya
        length2 = dx * dx + dy * dy
        if length2 == 0:
            distance = np.hypot(cx - xa, cy - ya)
        else:
            t = np.clip(((cx - xa) * dx + (cy - ya) * dy) / length2, 0, 1)
            distance = np.hypot(cx - (xa + t * dx), cy - (ya + t * dy))
        on_edge[r_lo:r_hi + 1, c_lo:c_hi + 1] |= distance <= EDGE_TOLERANCE_PIXELS
    return inside, on_edge


def _read_rtstruct(path, source, geometry, case_id, column):
    pydicom = _pydicom()
    ds = pydicom.dcmread(path)
    names = {int(roi.ROINumber): _text(roi.get("ROIName")) for roi in ds.get("StructureSetROISequence", [])}
    origin = np.array(geometry.origin)
    axes = np.array(geometry.direction).reshape(3, 3) * np.array(geometry.spacing)
    to_index = np.linalg.inv(axes)
    columns, rows, slices = geometry.size
    numbers, masks, skipped = [], [], {}
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        inside = np.zeros((slices, rows, columns), bool)
        edges = np.zeros_like(inside)
        for contour in roi.get("ContourSequence", []):
            kind = _text(contour.get("ContourGeometricType")).upper()
            if kind != "CLOSED_PLANAR":
                skipped[f"{kind or 'untyped'} contour"] = skipped.get(f"{kind or 'untyped'} contour", 0) + 1
                continue
            points = np.array(contour.ContourData, float).reshape(-1, 3)
            index = (points - origin) @ to_index.T  # (column, row, slice)
            k = float(np.mean(index[:, 2]))
            slice_index = int(round(k))
            if np.max(np.abs(index[:, 2] - slice_index)) > CONTOUR_SLICE_TOLERANCE or not 0 <= slice_index < slices:
                skipped["contour off the CT's slices"] = skipped.get("contour off the CT's slices", 0) + 1
                continue
            poly_inside, poly_edge = rasterise_polygon(index[:, :2], (rows, columns))
            inside[slice_index] ^= poly_inside
            edges[slice_index] |= poly_edge
        numbers.append(number)
        masks.append(inside | edges)
    if skipped:
        warnings.warn(DicomWarning(f"case {case_id}: {path}: " + "; ".join(f"{n} {what} ignored"
                                                                          for what, n in skipped.items())),
                      stacklevel=3)
    if not numbers:
        raise InputError(f"the RTSTRUCT {path} holds no ROI contours", case_id, column,
                         "export the structure set with the tumour contours")
    return _segments_and_layers([names.get(n, "") for n in numbers], numbers, masks, geometry.empty_image(),
                                path, source, "ROI")


# --------------------------------------------------------------------------------------- write-back (SEG)

def _plane_image(instance):
    """A one-slice SimpleITK grid on an instance's plane."""
    row, col, normal = _axes(instance.orientation)
    image = sitk.Image([instance.columns, instance.rows, 1], sitk.sitkUInt8)
    image.SetSpacing((instance.pixel_spacing[1], instance.pixel_spacing[0], 1.0))
    image.SetOrigin(instance.position)
    image.SetDirection(tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel()))
    return image


def write_seg(mask, source_reference, out_path, label="Tumour", case_id=None, column="seg",
              description="Lesion mask used by TACEPredict", series_number=9901):
    """Save ``mask`` (a SimpleITK mask on any grid in the source's physical space; non-zero = lesion) as a
    DICOM SEG referencing the source CT series (a DICOM folder or ``folder#choice`` reference), one BINARY
    segment named ``label``. The mask is resampled (nearest neighbour) onto each source slice's plane; empty
    slices are left out of the SEG. Returns ``out_path``. Needs highdicom."""
    hd = _highdicom(case_id, column)
    from pydicom.sr.codedict import codes

    from .. import __version__
    if not is_series_reference(source_reference):
        raise InputError(f"a DICOM SEG needs the source CT as a DICOM series, not {source_reference}", case_id,
                         column, "give the CT as a DICOM folder (or folder#uid=...) in the manifest")
    selection = select_series(source_reference, case_id, column)
    geometry = series_geometry(selection, case_id, column)
    mask = sitk.Cast(sitk.Cast(mask, sitk.sitkUInt8) > 0, sitk.sitkUInt8)
    frames = []
    for m in geometry.instances:
        plane = sitk.Resample(mask, _plane_image(m), sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        frames.append(sitk.GetArrayFromImage(plane)[0])
    pixels = np.stack(frames).astype(bool)
    if not pixels.any():
        raise InputError("the lesion mask does not overlap the source CT series", case_id, column,
                         "check that the mask belongs to this series (same frame of reference)")
    pydicom = _pydicom()
    datasets = [pydicom.dcmread(m.path, stop_before_pixels=True) for m in geometry.instances]
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=str(label)[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=int(series_number),
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="TACEPredict",
        manufacturer_model_name="TACEPredict", software_versions=str(__version__), device_serial_number="0",
        content_description=str(description)[:64], content_label="LESION",
        series_description=str(description)[:64])
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    seg.save_as(out_path)
    return out_path


# ------------------------------------------------------------------------------------------------- index

PHASES = ("pre-contrast", "arterial", "portal", "delayed")
# Words in a series description naming its phase; the first phase whose pattern matches wins.
PHASE_PATTERNS = (
    ("pre-contrast", re.compile(r"\b(pre|pre[- ]?contrast|non[- ]?con(trast)?|non[- ]?enhanced|unenhanced|plain|"
                                r"native|w/?o)\b")),
    ("arterial", re.compile(r"(arterial|\bart\b|\bap\b|\bhap\b|\blap\b|\bearly\b)")),
    ("portal", re.compile(r"(portal|\bpv\b|\bpvp\b|venous|\bven\b|\bc-a-p\b|\bpp\b)")),
    ("delayed", re.compile(r"(delay|equilibrium|\beq\b|\blate\b|\b\d+\s?min)")),
)
# Timing model: expected seconds after the start of the contrast injection, and a tolerance (one "sd"), for
# the usual multiphase liver protocol (late arterial ~35 s, portal venous ~75 s, delayed 3-5 min); the
# pre-contrast scan ends at least PRE_MARGIN_S before the injection starts (the injector is set up after it).
# Only the differences between a study's acquisitions are known (the injection time is fitted), unless
# ContrastBolusStartTime is given.
PHASE_DELAY_S = {"arterial": (35.0, 10.0), "portal": (75.0, 20.0), "delayed": (210.0, 90.0)}
PRE_MARGIN_S = 30.0
# Series acquired within this many seconds of each other are one acquisition (reconstructions of it).
SAME_ACQUISITION_S = 8.0
# A timing assignment is unambiguous when the next best scores this much worse.
AMBIGUITY_MARGIN = 1.0
# A non-empty ContrastBolusAgent on some acquisitions of a study and not on others: cost of calling an
# acquisition with the agent pre-contrast, or one without it post-contrast.
AGENT_COST = 4.0

INDEX_COLUMNS = ["patient_id", "study_uid", "study_date", "study_description", "series_uid", "series_number",
                 "modality", "description", "acquisition", "phase", "phase_source", "acquisition_time",
                 "seconds_after_first", "slices", "rows", "columns", "pixel_spacing", "slice_spacing",
                 "slice_thickness", "orientation", "frame_of_reference", "contrast_agent", "segments",
                 "referenced_series", "drawn_on", "problems", "path", "reference"]


def phase_from_description(description):
    """The phase a series description names, or None."""
    text = description.lower()
    if re.search(r"\b(\d|three|tri|multi)[- ]?phas", text):
        return None  # "3 phase", "triphasic": the whole protocol, not one phase
    for phase, pattern in PHASE_PATTERNS:
        if pattern.search(text):
            return phase
    return None


def _orientation_name(orientation):
    if orientation is None:
        return ""
    normal = np.abs(_axes(orientation)[2])
    axis = int(np.argmax(normal))
    if normal[axis] < 0.95:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _assignment_cost(times, phases, agents, start):
    """Cost of giving acquisitions (at ``times``, seconds) the ``phases``: squared deviations from the timing
    model with the injection time fitted (or given as ``start``), plus the contrast-agent cost."""
    post = [(t, p) for t, p in zip(times, phases) if p in PHASE_DELAY_S]
    if start is None:
        start = float(np.median([t - PHASE_DELAY_S[p][0] for t, p in post])) if post else None
    cost = 0.0
    for t, p in zip(times, phases):
        if p == "pre-contrast":
            if start is not None and t > start - PRE_MARGIN_S:
                cost += ((t - start + PRE_MARGIN_S) / 10.0) ** 2
        else:
            mean, sd = PHASE_DELAY_S[p]
            cost += ((t - start - mean) / sd) ** 2
    if agents is not None:
        for p, agent in zip(phases, agents):
            if (p == "pre-contrast") == agent:
                cost += AGENT_COST
    return cost


def guess_phases(acquisitions):
    """Phases of one study's acquisitions.

    ``acquisitions``: list of dicts with ``time`` (seconds or None), ``votes`` (phases named by the members'
    descriptions), ``agent`` (any member with a ContrastBolusAgent) and ``start`` (ContrastBolusStartTime,
    seconds, or None). Returns [(phase or "", source)]: source "description", "bolus timing" (delay after
    ContrastBolusStartTime), "timing" (the order and spacing of the acquisitions against the protocol's
    timing model, description-named acquisitions fixed), or "ambiguous"."""
    result = [("", "ambiguous")] * len(acquisitions)
    fixed = {}
    for i, a in enumerate(acquisitions):
        votes = [v for v in a["votes"] if v]
        if votes:
            top = max(PHASES, key=lambda p: (votes.count(p), -PHASES.index(p)))
            fixed[i] = top
            result[i] = (top, "description")
    timed = [i for i, a in enumerate(acquisitions) if a["time"] is not None]
    starts = [a["start"] for a in acquisitions if a["start"] is not None]
    start = float(np.median(starts)) if starts else None
    if start is not None:
        for i in timed:
            if i in fixed:
                continue
            delay = acquisitions[i]["time"] - start
            phase = ("pre-contrast" if delay < 0 else "arterial" if delay < 55 else "portal" if delay < 130
                     else "delayed")
            result[i] = (phase, "bolus timing")
        return result
    free = [i for i in timed if i not in fixed]
    if not free:
        return result
    order = sorted(timed, key=lambda i: acquisitions[i]["time"])
    times = [acquisitions[i]["time"] for i in order]
    agents = [bool(acquisitions[i]["agent"]) for i in order]
    agents = agents if (any(agents) and not all(agents)) else None
    import itertools
    scored = []
    for combo in itertools.combinations(PHASES, len(order)):
        if any(i in fixed and fixed[i] != p for i, p in zip(order, combo)):
            continue
        scored.append((_assignment_cost(times, combo, agents, None), combo))
    if not scored:
        return result
    scored.sort(key=lambda s: s[0])
    best_cost, best = scored[0]
    # Acquisitions whose phase is the same in every assignment within the margin are decided.
    close = [combo for cost, combo in scored if cost - best_cost < AMBIGUITY_MARGIN]
    for position, i in enumerate(order):
        if i in fixed:
            continue
        if len(close) == 1 or all(c[position] == best[position] for c in close):
            result[i] = (best[position], "timing")
    return result


def _acquisition_groups(images):
    """Split a series' image instances into stacked acquisitions when acquisitions repeat slice positions;
    else one group. Returns {acquisition number or None: [instances]}."""
    by_number = {}
    for m in images:
        by_number.setdefault(m.acquisition_number, []).append(m)
    if len(by_number) < 2 or None in by_number:
        return {None: images}
    seen = {}
    for number, members in by_number.items():
        for m in members:
            if m.position is None:
                continue
            key = tuple(np.round(m.position, 1))
            if key in seen and seen[key] != number:
                return by_number
            seen[key] = number
    return {None: images}


def index_dicom(folder, relative_to=None, progress=None):
    """One row per series (per acquisition for series that stack several at the same positions) under
    ``folder``: patient, study, series UID, modality, description, phase guessed from the description and the
    acquisition times of the study's other series (``phase_source`` says how), slice count, spacing, problems
    (gaps, duplicates, tilt) and the manifest ``reference`` that selects it (relative to ``relative_to`` when
    given). SEG / RTSTRUCT rows list their segments and the reference of the series they were drawn on
    (``drawn_on``). Columns: ``INDEX_COLUMNS``."""
    folder = os.path.abspath(folder)
    instances = scan(folder, progress=progress)
    by_series = {}
    for m in instances:
        by_series.setdefault(m.series_uid, []).append(m)
    rows, owners = [], []
    for uid, members in by_series.items():
        first = members[0]
        images = [m for m in members if m.is_image]
        common = os.path.commonpath([os.path.dirname(m.path) for m in members])
        base = {"patient_id": first.patient_id, "study_uid": first.study_uid, "study_date": first.study_date,
                "study_description": first.study_description, "series_uid": uid,
                "series_number": first.series_number, "modality": first.modality,
                "description": first.series_description, "frame_of_reference": first.frame_of_reference,
                "path": common}
        if not images:
            row = dict(base, slices=len(members), phase="", phase_source="",
                       orientation=_orientation_name(first.orientation))
            if first.is_localizer or any(m.is_localizer for m in members):
                row["phase"], row["phase_source"] = "localizer", "image type"
            row["problems"] = ("" if first.is_segmentation else
                               "secondary capture" if first.is_secondary_capture else "no image slices")
            rows.append(row)
            owners.append(members)
            continue
        groups = _acquisition_groups(images)
        for number, group in groups.items():
            if len(groups) == 1:
                number = None
            choice = SeriesChoice(uid=uid, acquisition=number)
            selection = SeriesSelection(folder=common, choice=choice, series_uid=uid, instances=group)
            problems, spacing = [], None
            try:
                geometry = series_geometry(selection, irregular="resample")
                spacing = geometry.spacing[2]
                problems += geometry.corrections
            except InputError as exc:
                problems.append(exc.problem)
            g0 = group[0]
            times = [m.acquisition_time for m in group if m.acquisition_time is not None]
            starts = [m.contrast_start for m in group if m.contrast_start is not None]
            rows.append(dict(
                base, acquisition=number, slices=len(group), rows=g0.rows, columns=g0.columns,
                pixel_spacing=None if g0.pixel_spacing is None else float(g0.pixel_spacing[0]),
                slice_spacing=spacing, slice_thickness=g0.slice_thickness,
                orientation=_orientation_name(g0.orientation), contrast_agent=g0.contrast_agent,
                problems="; ".join(problems), _time=min(times) if times else None,
                _start=min(starts) if starts else None, _stacked=len(groups) > 1,
                _sops=frozenset(m.sop_uid for m in group)))
            owners.append(group)
    table = pd.DataFrame(rows)
    for column in INDEX_COLUMNS + ["_time", "_start", "_stacked", "_sops"]:
        if column not in table.columns:
            table[column] = None
    for column in ("acquisition", "series_number", "slices", "rows", "columns"):
        table[column] = pd.to_numeric(table[column]).astype("Int64")

    # References, relative to the manifest's folder when asked.
    def rel(path):
        return os.path.relpath(path, relative_to) if relative_to else path
    for i, row in table.iterrows():
        series_here = {m.series_uid for m in scan_cached(row["path"])}
        needs_uid = len(series_here) > 1
        acquisition = None if pd.isna(row["acquisition"]) else int(row["acquisition"])
        table.at[i, "reference"] = format_reference(rel(row["path"]), row["series_uid"] if needs_uid else None,
                                                    acquisition)

    # Phases per study: acquisitions grouped by time, description votes, then the timing model.
    table["phase"] = table["phase"].fillna("")
    table["phase_source"] = table["phase_source"].fillna("")
    candidates = table[table["_sops"].notna() & (table["orientation"] != "") & table["modality"].isin(["CT"])]
    for study, members in candidates.groupby("study_uid"):
        members = members.sort_values("_time", na_position="last")
        acquisitions, member_of = [], {}
        for i, row in members.iterrows():
            t = row["_time"]
            target = None
            if t is not None and not pd.isna(t):
                for k, a in enumerate(acquisitions):
                    if a["time"] is not None and abs(a["time"] - t) <= SAME_ACQUISITION_S:
                        target = k
                        break
            if target is None:
                acquisitions.append({"time": None if t is None or pd.isna(t) else float(t), "votes": [],
                                     "agent": False, "start": None, "members": []})
                target = len(acquisitions) - 1
            a = acquisitions[target]
            vote = None if row["_stacked"] else phase_from_description(row["description"] or "")
            a["votes"].append(vote)
            a["agent"] = a["agent"] or bool(row["contrast_agent"])
            if row["_start"] is not None and not pd.isna(row["_start"]):
                a["start"] = float(row["_start"])
            a["members"].append(i)
            member_of[i] = target
        # An acquisition whose members' descriptions disagree is not one acquisition: split it.
        split = []
        for a in acquisitions:
            named = {v for v in a["votes"] if v}
            if len(named) > 1:
                for i, vote in zip(a["members"], a["votes"]):
                    split.append(dict(a, votes=[vote], members=[i], time=None if vote is None else a["time"]))
            else:
                split.append(a)
        phases = guess_phases(split)
        first_time = min((a["time"] for a in split if a["time"] is not None), default=None)
        for a, (phase, source) in zip(split, phases):
            for i in a["members"]:
                table.at[i, "phase"], table.at[i, "phase_source"] = phase, source
                if a["time"] is not None and first_time is not None:
                    table.at[i, "seconds_after_first"] = round(a["time"] - first_time, 1)
    for i, row in table.iterrows():
        if row["_time"] is not None and not pd.isna(row["_time"]):
            table.at[i, "acquisition_time"] = _dt.datetime.fromtimestamp(
                float(row["_time"]), _dt.timezone.utc).strftime("%H:%M:%S")

    # Segmentations: their segments and the series row they were drawn on.
    for i, row in table.iterrows():
        if row["modality"] not in ("SEG", "RTSTRUCT"):
            continue
        path = next((m.path for m in owners[i] if m.is_segmentation), None)
        if path is None:
            continue
        try:
            source = seg_source(path)
            table.at[i, "segments"] = "|".join(f"{n}:{name}" for n, name in source.segments)
        except Exception as exc:  # a broken file is a row with a problem, not a failed index
            table.at[i, "problems"] = f"unreadable ({type(exc).__name__}: {exc})"
            continue
        table.at[i, "path"] = path
        table.at[i, "reference"] = rel(path)
        table.at[i, "referenced_series"] = "|".join(source.series_uids)
        drawn = table[table["series_uid"].isin(source.series_uids) & table["_sops"].notna()]
        if source.instance_uids and len(drawn) > 1:
            drawn = drawn[drawn["_sops"].map(lambda s: bool(s & source.instance_uids))]
        if len(drawn) == 1:
            table.at[i, "drawn_on"] = drawn["reference"].iloc[0]
        elif not len(drawn):
            table.at[i, "problems"] = "its referenced series is not under the indexed folder"
    table = table.drop(columns=["_time", "_start", "_stacked", "_sops"])
    table["path"] = table["path"].map(lambda p: rel(p) if isinstance(p, str) else p)
    order = table.sort_values(["patient_id", "study_date", "study_uid", "series_number", "acquisition"],
                              na_position="last").index
    return table.loc[order, INDEX_COLUMNS].reset_index(drop=True)


def scan_cached(folder):
    """``scan`` for a folder inside one already scanned: filters the cached instances instead of reading
    the files again."""
    folder = os.path.abspath(folder)
    for root, (_, instances) in _SCAN_CACHE.items():
        if folder == root or folder.startswith(root + os.sep):
            return [m for m in instances if os.path.dirname(m.path) == folder
                    or m.path.startswith(folder + os.sep)]
    return scan(folder)


# ------------------------------------------------------------------------------ manifest from an index

PHASE_COLUMNS = {"arterial": "ct_ap", "portal": "ct_pvp", "delayed": "ct_dp"}


def _segment_sizes(path, numbers):
    """Voxels of each segment of a DICOM SEG (or RTSTRUCT, on its CT near it)."""
    segmentation = read_segmentation(path)
    counts = dict(zip([s.label_value for s in segmentation.segments], segmentation.voxel_counts()))
    return {n: counts.get(n, 0) for n in numbers}


def manifest_from_index(index, root=None):
    """A manifest's image columns from ``index_dicom``'s table: one row per patient (``case_id`` = the DICOM
    PatientID) with the study holding its segmentation (the earliest such study; without one, the earliest
    study with a contrast phase), each phase's series (``ct_ap``, ``ct_pvp``, ``ct_dp``; ``ct_pre`` kept as an
    extra column), the SEG / RTSTRUCT (``seg``) and its tumour segment (``seg_label``: the largest of the
    segments whose name says mass / tumour / lesion, the others listed in ``seg_other_tumours``).

    The series the segmentation was drawn on fills its phase's column; the other phases take, in the same
    study, the series with the same frame of reference, the slice spacing closest to it, no problems and the
    most slices. Paths are as the index has them (``root`` joins relative ones to read the SEG's segment
    sizes). Returns (table, report lines)."""
    report = []
    rows = []

    def where(path):
        return path if root is None or os.path.isabs(path) else os.path.join(root, path)

    for patient, items in index.groupby("patient_id", sort=True):
        row = {"case_id": patient}
        all_segs = items[items["modality"].isin(["SEG", "RTSTRUCT"])]
        segs = all_segs[all_segs["drawn_on"].notna()]
        for _, lost in all_segs[all_segs["drawn_on"].isna()].iterrows():
            report.append(f"{patient}: {lost['reference']}: its CT series is not under the folder (or unreadable: "
                          f"{lost['problems'] or 'no problem recorded'}); not used")
        cts = items[(items["modality"] == "CT") & items["phase"].isin(PHASES)]
        if len(segs):
            segs = segs.sort_values(["study_date", "series_number"], na_position="last")
            seg = segs.iloc[0]
            if len(segs) > 1:
                report.append(f"{patient}: {len(segs)} segmentations; used {seg['reference']} (study "
                              f"{seg['study_date']}), not " + ", ".join(segs["reference"].iloc[1:]))
            study = seg["study_uid"]
        else:
            seg = None
            studies = cts.sort_values("study_date")["study_uid"].unique()
            if not len(studies):
                report.append(f"{patient}: no segmentation and no CT series with a known phase")
                rows.append(row)
                continue
            study = studies[0]
            report.append(f"{patient}: no usable DICOM SEG / RTSTRUCT; CT columns from study "
                          f"{items[items['study_uid'] == study]['study_date'].iloc[0]}, 'seg' left empty")
        in_study = cts[cts["study_uid"] == study]
        drawn = None
        if seg is not None:
            match = items[items["reference"] == seg["drawn_on"]]
            drawn = match.iloc[0] if len(match) else None
        for phase in ("pre-contrast", "arterial", "portal", "delayed"):
            column = PHASE_COLUMNS.get(phase, "ct_pre")
            if drawn is not None and drawn["phase"] == phase:
                row[column] = drawn["reference"]
                if drawn["problems"]:
                    report.append(f"{patient}: the series the segmentation was drawn on has a problem: "
                                  f"{drawn['problems']}")
                continue
            options = in_study[in_study["phase"] == phase]
            if not len(options):
                if phase != "pre-contrast":
                    report.append(f"{patient}: no {phase} series in the study")
                continue
            usable = options[options["problems"].fillna("") == ""]
            if not len(usable):
                report.append(f"{patient}: every {phase} series has a problem ("
                              + "; ".join(options["problems"].astype(str)) + "); column left empty")
                continue
            reference_spacing = drawn["slice_spacing"] if drawn is not None else usable["slice_spacing"].min()
            same_frame = drawn is not None and usable["frame_of_reference"] == drawn["frame_of_reference"]
            ranked = usable.assign(
                _frame=(~same_frame) if drawn is not None else False,
                _spacing=(usable["slice_spacing"] - reference_spacing).abs(),
                _slices=-usable["slices"]).sort_values(["_frame", "_spacing", "_slices"])
            row[column] = ranked["reference"].iloc[0]
            if len(ranked) > 1:
                report.append(f"{patient}: {phase}: {len(ranked)} series; used {ranked['description'].iloc[0]!r} "
                              f"({ranked['slice_spacing'].iloc[0]:.2f} mm), not "
                              + ", ".join(f"{d!r}" for d in ranked["description"].iloc[1:]))
        if seg is None:
            rows.append(row)
            continue
        if drawn is None:
            report.append(f"{patient}: the segmentation's series is not under the folder; 'seg' left empty")
        elif drawn["phase"] not in PHASE_COLUMNS:
            report.append(f"{patient}: the segmentation was drawn on a {drawn['phase'] or 'phase-unknown'} series "
                          f"({drawn['description']!r}), which no CT column holds; 'seg' left empty")
        else:
            segments = [(int(n), name) for n, name in
                        (s.split(":", 1) for s in str(seg["segments"] or "").split("|") if ":" in s)]
            tumours = [(n, name) for n, name in segments if TUMOUR_NAMES.search(name)]
            row["seg"] = seg["reference"]
            row["seg_segments"] = "|".join(name for _, name in segments)
            if not tumours:
                report.append(f"{patient}: no segment named as a tumour among {[s for _, s in segments]}; "
                              "'seg_label' left empty")
            else:
                chosen = tumours[0]
                if len(tumours) > 1:
                    sizes = _segment_sizes(where(seg["reference"]), [n for n, _ in tumours])
                    tumours.sort(key=lambda t: -sizes[t[0]])
                    chosen = tumours[0]
                    row["seg_other_tumours"] = "|".join(f"{name} (segment {n}, {sizes[n]} voxels)"
                                                        for n, name in tumours[1:])
                    report.append(f"{patient}: {len(tumours)} tumour segments; used the largest, {chosen[1]!r} "
                                  f"({sizes[chosen[0]]} voxels); others in seg_other_tumours")
                names = [name for _, name in segments]
                row["seg_label"] = chosen[1] if names.count(chosen[1]) == 1 else str(chosen[0])
        row["dicom_study_uid"] = study
        rows.append(row)
    columns = ["case_id", "ct_ap", "ct_pvp", "ct_dp", "seg", "seg_label", "ct_pre", "seg_segments",
               "seg_other_tumours", "dicom_study_uid"]
    table = pd.DataFrame(rows)
    for column in columns:
        if column not in table.columns:
            table[column] = np.nan
    return table[columns], report


def save_case_seg(case, manifest, row, out_dir, label="Tumour"):
    """Write the lesion mask ``extract`` used for one case (``preprocess.load_case``'s ``CaseImages``) as a DICOM
    SEG referencing the CT series it was measured on (the case's reference phase), named
    ``<out_dir>/<case_id>_lesion_seg.dcm``. Returns the path, or None when that phase is not a DICOM series
    (then there is no series to reference)."""
    source = manifest.resolve(row.get(case.reference_phase))
    if source is None or not is_series_reference(source):
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(case.case_id))
    return write_seg(case.mask, source, os.path.join(out_dir, f"{safe}_lesion_seg.dcm"), label=label,
                     case_id=case.case_id, column=case.reference_phase)
