"""The demo cohort as clinical DICOM: TCIA-like study trees written with pydicom (CT series, RTSTRUCT) and
highdicom (SEG), for tests, benchmarks and trying the DICOM path without patient data.

Layout, as TCIA's downloads have it::

    ROOT/<collection>/<PatientID>/<MM-DD-YYYY>-NA-<study description>-<5 digits>/
        <series number>.000000-<series description>-<5 digits>/1-01.dcm ...

``write_demo_patient`` turns one demo-cohort case (``phantom.render_case``) into such a study: a localizer, a
pre-contrast series, arterial, portal and delayed series, a second reconstruction of the portal phase, a
series stacking two acquisitions at the same positions, a DICOM SEG with four segments (liver, mass, portal
vein, abdominal aorta; the liver, vein and aorta are simple shapes around the phantom's tumour, not the
phantom's organs) and an RTSTRUCT of the mass and liver, both drawn on the arterial series. Everything is
SYNTHETIC (see ``TACEPredictLib.SYNTHETIC_DATA_NOTICE``).
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk

from .. import SYNTHETIC_DATA_NOTICE

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"


def _uid(rng=None):
    from pydicom.uid import generate_uid
    if rng is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[str(rng.integers(0, 2 ** 62)) for _ in range(2)])


def _ds(value):
    """A decimal string that fits DICOM's 16 characters."""
    from pydicom.valuerep import format_number_as_ds
    return format_number_as_ds(float(value))


def _time_text(seconds):
    seconds = float(seconds) % 86400
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours):02d}{int(minutes):02d}{secs:09.6f}"


def _dataset(dataset=None, **elements):
    """``dataset`` (default a new pydicom Dataset) with ``elements`` (DICOM keyword = value) set."""
    from pydicom.dataset import Dataset
    dataset = Dataset() if dataset is None else dataset
    dataset.update(elements)
    return dataset


def _save(ds, path):
    """Write ``ds`` as a DICOM file (preamble, file meta): pydicom 3's ``enforce_file_format=True``, which pydicom
    2.4 (Slicer 5.10 ships 2.4.4) calls ``write_like_original=False``."""
    import inspect

    from pydicom.dataset import Dataset
    if "enforce_file_format" in inspect.signature(Dataset.save_as).parameters:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2: the encoding comes from the dataset, not from the file meta's transfer syntax
        syntax = ds.file_meta.TransferSyntaxUID
        ds.is_little_endian, ds.is_implicit_VR = syntax.is_little_endian, syntax.is_implicit_VR
        ds.save_as(path, write_like_original=False)


def _base_dataset(sop_class, sop_uid, study, patient_id):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    meta = _dataset(FileMetaDataset(), MediaStorageSOPClassUID=sop_class, MediaStorageSOPInstanceUID=sop_uid,
                    TransferSyntaxUID=ExplicitVRLittleEndian)
    return _dataset(
        file_meta=meta, SOPClassUID=sop_class, SOPInstanceUID=sop_uid, PatientID=patient_id,
        PatientName=f"Demo^{patient_id}", PatientBirthDate="", PatientSex="O", StudyInstanceUID=study["uid"],
        StudyDate=study["date"], StudyTime=_time_text(study["time"]), StudyDescription=study["description"],
        StudyID="1", AccessionNumber="", ReferringPhysicianName="", Manufacturer="TACEPredict demo",
        PatientIdentityRemoved="YES", BodyPartExamined="ABDOMEN")


def new_study(patient_id, date="20000101", time=36000.0, description="CT ABD LIVER 3 PHASE", rng=None):
    """A study's identity for ``write_ct_series``."""
    return {"uid": _uid(rng), "date": date, "time": time, "description": description, "patient_id": patient_id,
            "frame_of_reference": _uid(rng)}


def write_ct_series(image, folder, study, series_number, description, acquisition_time, *, series_uid=None,
                    acquisition_number=1, rescale_intercept=0.0, rescale_slope=1.0, contrast_agent="",
                    contrast_start=None, skip_slices=(), image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                    positions=None, rng=None, file_start=1):
    """Write a SimpleITK CT (HU) as a single-frame CT series; returns the written datasets (pixel data
    included) in slice order. ``positions``: optional per-slice ImagePositionPatient overrides (tilt and
    spacing tests); ``skip_slices``: slice indices left out (a broken transfer)."""
    os.makedirs(folder, exist_ok=True)
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    row_dir, col_dir = direction[:, 0], direction[:, 1]
    series_uid = series_uid or _uid(rng)
    signed = rescale_intercept >= 0 or array.min() < rescale_intercept
    datasets = []
    for k in range(array.shape[0]):
        if k in skip_slices:
            continue
        sop = _uid(rng)
        position = (positions[k] if positions is not None
                    else image.TransformIndexToPhysicalPoint((0, 0, k)))
        stored = np.round((array[k] - rescale_intercept) / rescale_slope)
        ds = _dataset(
            _base_dataset(CT_IMAGE_STORAGE, sop, study, study["patient_id"]), Modality="CT",
            SeriesInstanceUID=series_uid, SeriesNumber=int(series_number), SeriesDescription=description,
            SeriesDate=study["date"], SeriesTime=_time_text(acquisition_time + 20), AcquisitionDate=study["date"],
            AcquisitionTime=_time_text(acquisition_time), ContentDate=study["date"],
            ContentTime=_time_text(acquisition_time + 20), AcquisitionNumber=int(acquisition_number),
            InstanceNumber=k + 1, FrameOfReferenceUID=study["frame_of_reference"], PositionReferenceIndicator="",
            ImageType=list(image_type), ImagePositionPatient=[_ds(v) for v in position],
            ImageOrientationPatient=[_ds(v) for v in (*row_dir, *col_dir)],
            PixelSpacing=[_ds(spacing[1]), _ds(spacing[0])], SliceThickness=_ds(spacing[2]), KVP="120",
            Rows=array.shape[1], Columns=array.shape[2], SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
            BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=1 if signed else 0,
            RescaleIntercept=_ds(rescale_intercept), RescaleSlope=_ds(rescale_slope), RescaleType="HU",
            PixelData=stored.astype(np.int16 if signed else np.uint16).tobytes())
        if contrast_agent:
            ds.ContrastBolusAgent = contrast_agent
        if contrast_start is not None:
            ds.ContrastBolusStartTime = _time_text(contrast_start)
        _save(ds, os.path.join(folder, f"1-{file_start + k:03d}.dcm"))
        datasets.append(ds)
    return datasets


def write_localizer(folder, study, series_number, acquisition_time, series_uid=None, rng=None):
    """One 64 x 64 CT localizer image (ImageType LOCALIZER), as scanners write their scout."""
    image = sitk.GetImageFromArray(np.full((1, 64, 64), -1000, np.int16))
    image.SetSpacing((8.0, 8.0, 1.0))
    image.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))  # coronal
    return write_ct_series(image, folder, study, series_number, "Topogram 0.6 T20f", acquisition_time,
                           series_uid=series_uid, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), rng=rng,
                           file_start=900)


def write_secondary_capture(folder, study, series_number, series_uid=None, rng=None):
    """A dose-report screenshot: a secondary capture the series reader must ignore."""
    os.makedirs(folder, exist_ok=True)
    sop = _uid(rng)
    ds = _dataset(
        _base_dataset(SECONDARY_CAPTURE_STORAGE, sop, study, study["patient_id"]), Modality="OT",
        ConversionType="WSD", SeriesInstanceUID=series_uid or _uid(rng), SeriesNumber=int(series_number),
        SeriesDescription="Dose Report", InstanceNumber=1, ImageType=["DERIVED", "SECONDARY", "OTHER"], Rows=32,
        Columns=32, SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2", BitsAllocated=8, BitsStored=8,
        HighBit=7, PixelRepresentation=0, PixelData=np.zeros((32, 32), np.uint8).tobytes())
    path = os.path.join(folder, f"1-{999:03d}.dcm")
    _save(ds, path)
    return path


SEGMENT_CODES = {  # name -> (category, type) as SNOMED CT codes in pydicom's code dictionary
    "Liver": ("Organ", "Liver"),
    "Mass": ("MorphologicallyAbnormalStructure", "Neoplasm"),
    "Portal vein": ("AnatomicalStructure", "PortalVein"),
    "Abdominal aorta": ("AnatomicalStructure", "AbdominalAorta"),
}


def write_seg(datasets, masks, path, series_number=300, description="Segmentation", rng=None):
    """A DICOM SEG (highdicom) of ``masks`` ({segment label: (slices, rows, columns) bool array in the order of
    ``datasets``}), one BINARY segment each in the order given (segment numbers 1, 2, ...)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    descriptions = []
    for number, name in enumerate(masks, start=1):
        category, kind = SEGMENT_CODES.get(name.rstrip(" 0123456789"), SEGMENT_CODES["Mass"])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=getattr(codes.SCT, category),
            segmented_property_type=getattr(codes.SCT, kind),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    pixels = np.stack([np.asarray(m, bool) for m in masks.values()], axis=-1)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=_uid(rng), series_number=int(series_number),
        sop_instance_uid=_uid(rng), instance_number=1, manufacturer="TACEPredict demo",
        manufacturer_model_name="demo", software_versions="1", device_serial_number="0",
        series_description=description)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    seg.save_as(path)
    return path


def pixel_edge_contours(mask):
    """The outlines of a 2D mask along its pixels' edges, as closed polygons of (column, row) vertices
    (pixel centres at integers, edges at half-integers); holes included. Collinear vertices are merged."""
    mask = np.asarray(mask, bool)
    padded = np.pad(mask, 1)
    edges = {}
    rows, columns = np.nonzero(padded)
    for r, c in zip(rows, columns):
        # Corner (i, j) is the top-left corner of padded pixel (i, j); clockwise around the pixel (y down).
        if not padded[r - 1, c]:
            edges.setdefault((r, c), []).append((r, c + 1))
        if not padded[r, c + 1]:
            edges.setdefault((r, c + 1), []).append((r + 1, c + 1))
        if not padded[r + 1, c]:
            edges.setdefault((r + 1, c + 1), []).append((r + 1, c))
        if not padded[r, c - 1]:
            edges.setdefault((r + 1, c), []).append((r, c))
    loops = []
    while edges:
        start = next(iter(edges))
        loop = [start]
        current = start
        while True:
            ends = edges[current]
            end = ends.pop()
            if not ends:
                del edges[current]
            if end == start:
                break
            loop.append(end)
            current = end
        # Merge collinear runs.
        points = np.array(loop, float)
        keep = []
        for i in range(len(points)):
            a, b, c = points[i - 1], points[i], points[(i + 1) % len(points)]
            if abs((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0])) > 0:
                keep.append(b)
        points = np.array(keep)
        # Corner (i, j) of the padded grid is at row i - 1.5, column j - 1.5 of the original pixel centres.
        loops.append(np.stack([points[:, 1] - 1.5, points[:, 0] - 1.5], axis=1))
    return loops


def write_rtstruct(datasets, masks, path, rng=None, contours=pixel_edge_contours):
    """An RTSTRUCT (pydicom) whose ROIs (``masks``: {ROI name: (slices, rows, columns) bool array in the order
    of ``datasets``}) are closed planar contours from ``contours`` (default: along the pixel edges, which the
    reader's centre-inside rule rasterises back exactly)."""
    from pydicom.sequence import Sequence
    first = datasets[0]
    study = {"uid": first.StudyInstanceUID, "date": first.StudyDate, "time": 36000.0,
             "description": first.get("StudyDescription", "")}
    ds = _dataset(
        _base_dataset(RTSTRUCT_STORAGE, _uid(rng), study, first.PatientID), StudyTime=first.StudyTime,
        Modality="RTSTRUCT", SeriesInstanceUID=_uid(rng), SeriesNumber=301, SeriesDescription="RTSTRUCT",
        InstanceNumber=1, StructureSetLabel="TACEPredict demo", StructureSetDate=first.StudyDate,
        StructureSetTime=first.StudyTime, FrameOfReferenceUID=first.FrameOfReferenceUID)
    contour_images = Sequence([_dataset(ReferencedSOPClassUID=d.SOPClassUID, ReferencedSOPInstanceUID=d.SOPInstanceUID)
                               for d in datasets])
    series = _dataset(SeriesInstanceUID=first.SeriesInstanceUID, ContourImageSequence=contour_images)
    study_item = _dataset(ReferencedSOPClassUID=STUDY_COMPONENT_MANAGEMENT,
                          ReferencedSOPInstanceUID=first.StudyInstanceUID,
                          RTReferencedSeriesSequence=Sequence([series]))
    frame = _dataset(FrameOfReferenceUID=first.FrameOfReferenceUID, RTReferencedStudySequence=Sequence([study_item]))
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    rois, roi_contours, observations = Sequence(), Sequence(), Sequence()
    for number, (name, mask) in enumerate(masks.items(), start=1):
        rois.append(_dataset(ROINumber=number, ReferencedFrameOfReferenceUID=first.FrameOfReferenceUID, ROIName=name,
                             ROIGenerationAlgorithm="MANUAL"))
        sequence = Sequence()
        for k, d in enumerate(datasets):
            position = np.array([float(v) for v in d.ImagePositionPatient])
            orientation = np.array([float(v) for v in d.ImageOrientationPatient])
            row_dir, col_dir = orientation[:3], orientation[3:]
            row_spacing, col_spacing = (float(v) for v in d.PixelSpacing)
            for loop in contours(np.asarray(mask[k], bool)):
                points = (position[None, :] + loop[:, :1] * col_spacing * row_dir[None, :]
                          + loop[:, 1:2] * row_spacing * col_dir[None, :])
                image = _dataset(ReferencedSOPClassUID=d.SOPClassUID, ReferencedSOPInstanceUID=d.SOPInstanceUID)
                sequence.append(_dataset(ContourImageSequence=Sequence([image]), ContourGeometricType="CLOSED_PLANAR",
                                         NumberOfContourPoints=len(points),
                                         ContourData=[_ds(v) for v in points.ravel()]))
        roi_contours.append(_dataset(ReferencedROINumber=number, ContourSequence=sequence,
                                     ROIDisplayColor=[220, 80, 50] if number == 1 else [120, 200, 120]))
        observations.append(_dataset(ObservationNumber=number, ReferencedROINumber=number, ROIInterpreter="",
                                     RTROIInterpretedType="GTV" if number == 1 else "ORGAN"))
    _dataset(ds, StructureSetROISequence=rois, ROIContourSequence=roi_contours,
             RTROIObservationsSequence=observations)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _save(ds, path)
    return path


def organ_shapes(labels, spacing):
    """Simple stand-ins for the SEG's other segments around the tumour ``labels`` (z, y, x array): a liver
    (an ellipsoid holding the tumour), a portal vein (a tube through the liver beside the tumour) and an
    abdominal aorta (a tube outside it)."""
    shape = labels.shape
    z, y, x = np.indices(shape).astype(float)
    tumour = labels == 1
    cz, cy, cx = [float(np.mean(a)) for a in np.nonzero(tumour)]
    sx, sy, sz = spacing
    extent = [float(np.ptp(a)) + 1 for a in np.nonzero(tumour)]
    rz, ry, rx = (extent[0] / 2 * sz + 40) / sz, (extent[1] / 2 * sy + 30) / sy, (extent[2] / 2 * sx + 30) / sx
    liver = (((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1) | tumour
    vein_x = min(cx + extent[2] / 2 + 12 / sx, shape[2] - 8)
    vein = ((y - cy) ** 2 + (x - vein_x) ** 2 <= (6 / sx) ** 2) & liver
    aorta_x = max(cx - rx - 14 / sx, 10 / sx)
    aorta = (y - cy) ** 2 + (x - aorta_x) ** 2 <= (11 / sx) ** 2
    return {"Liver": liver, "Portal vein": vein, "Abdominal aorta": aorta}


def _folder(study_dir, number, description, rng):
    return os.path.join(study_dir, f"{number}.000000-{description.replace('/', ' ')}-{rng.integers(10000, 99999)}")


def write_demo_patient(out_root, case_index, seed=0, patient_id=None, collection="HCC-TACE-Demo",
                       second_mass=False, crop=None):
    """One demo-cohort case as a TCIA-like multi-phase study (see the module docstring).

    ``crop``: (x, y) in-plane size kept around the tumour (smaller, faster files); ``second_mass``: add the
    phantom's satellite lesions as a second tumour segment "Mass 2". Returns a dict: the patient folder,
    each series' folder, UIDs, the NRRD-equivalent SimpleITK images and masks (``images``: phase -> image,
    ``labels``: the tumour labelmap), and ``truth`` (one record per series / acquisition with its phase).
    """
    from .demo_cohort import draw_case, render_case
    rng = np.random.default_rng([seed, case_index, 99])
    latent, clinical = draw_case(case_index, seed)
    phases, labels, _, spacing = render_case(case_index, seed, latent, clinical)
    if crop is not None:
        array = sitk.GetArrayViewFromImage(labels)
        _, cy, cx = [int(np.mean(a)) for a in np.nonzero(array == 1)]
        size = labels.GetSize()
        x0 = int(np.clip(cx - crop[0] // 2, 0, size[0] - crop[0]))
        y0 = int(np.clip(cy - crop[1] // 2, 0, size[1] - crop[1]))
        box = (slice(x0, x0 + crop[0]), slice(y0, y0 + crop[1]), slice(None))
        phases = {p: image[box] for p, image in phases.items()}
        labels = labels[box]
    patient_id = patient_id or f"DEMO_{case_index + 1:03d}"
    study = new_study(patient_id, date="20000101", time=36000.0 + 60 * case_index,
                      description="CT ABD LIVER 3 PHASE", rng=rng)
    study_dir = os.path.join(out_root, collection, patient_id,
                             f"01-01-2000-NA-{study['description']}-{rng.integers(10000, 99999)}")
    label_array = sitk.GetArrayFromImage(labels)
    pre_array = sitk.GetArrayFromImage(phases["ct_dp"]).astype(np.int32)
    pre_array = np.where(pre_array > -300, pre_array - 40, pre_array).astype(np.int16)  # crude unenhanced stand-in
    pre = sitk.GetImageFromArray(pre_array)
    pre.CopyInformation(phases["ct_dp"])
    t0 = study["time"] + 300.0
    inject = t0 + 150.0  # injection 2.5 min after the unenhanced scan
    times = {"pre-contrast": t0, "arterial": inject + 33 + rng.uniform(-4, 4),
             "portal": inject + 72 + rng.uniform(-8, 8), "delayed": inject + 200 + rng.uniform(-30, 30)}
    out = {"patient": os.path.join(out_root, collection, patient_id), "study": study_dir, "study_info": study,
           "study_uid": study["uid"],
           "patient_id": patient_id, "images": {}, "labels": labels, "series": {}, "truth": []}

    def series(number, description, image, phase, **kwargs):
        folder = _folder(study_dir, number, description, rng)
        datasets = write_ct_series(image, folder, study, number, description, times[phase], rng=rng,
                                   contrast_agent="" if phase == "pre-contrast" else "OMNIPAQUE 350", **kwargs)
        out["series"][description] = {"folder": folder, "uid": datasets[0].SeriesInstanceUID, "phase": phase,
                                      "datasets": datasets}
        out["truth"].append({"series_uid": datasets[0].SeriesInstanceUID, "acquisition": None, "phase": phase,
                             "description": description})
        return datasets

    loc = _folder(study_dir, 1, "Topogram", rng)
    write_localizer(loc, study, 1, study["time"] + 200, rng=rng)
    out["series"]["Topogram"] = {"folder": loc, "phase": "localizer"}
    series(2, "PRE LIVER", pre, "pre-contrast", rescale_intercept=-1024.0)
    arterial = series(3, "LIVER ARTERIAL 5.0 B30f", phases["ct_ap"], "arterial")
    series(4, "PORTAL VENOUS 5.0 B30f", phases["ct_pvp"], "portal")
    # A second reconstruction of the portal phase: twice the slice spacing (pairs of slices averaged).
    pvp = sitk.GetArrayFromImage(phases["ct_pvp"]).astype(np.float32)
    pairs = pvp[: pvp.shape[0] // 2 * 2].reshape(-1, 2, *pvp.shape[1:]).mean(axis=1)
    thick = sitk.GetImageFromArray(np.round(pairs).astype(np.int16))
    thick.SetSpacing((spacing[0], spacing[1], spacing[2] * 2))
    thick.SetOrigin(phases["ct_pvp"].TransformContinuousIndexToPhysicalPoint((0, 0, 0.5)))
    series(5, "Recon 2: PORTAL VENOUS 10.0", thick, "portal")
    series(6, "DELAYED 5.0", phases["ct_dp"], "delayed", skip_slices=(phases["ct_dp"].GetSize()[2] // 2,))
    # A series stacking the arterial and portal acquisitions at the same positions (as some HCC-TACE-Seg
    # "LIVER 3 PHASE" series do), acquisition numbers 2 and 3.
    stacked_uid = _uid(rng)
    folder = _folder(study_dir, 7, "LIVER 3 PHASE CAP", rng)
    for number, (phase, key) in ((2, ("arterial", "ct_ap")), (3, ("portal", "ct_pvp"))):
        write_ct_series(phases[key], folder, study, 7, "LIVER 3 PHASE CAP", times[phase] + 1.0,
                        series_uid=stacked_uid, acquisition_number=number, contrast_agent="OMNIPAQUE 350",
                        rng=rng, file_start=1 + 100 * number)
        out["truth"].append({"series_uid": stacked_uid, "acquisition": number, "phase": phase,
                             "description": "LIVER 3 PHASE CAP"})
    out["series"]["LIVER 3 PHASE CAP"] = {"folder": folder, "uid": stacked_uid, "phase": "stacked"}
    write_secondary_capture(_folder(study_dir, 999, "Dose Report", rng), study, 999, rng=rng)

    tumour = label_array == 1
    shapes = organ_shapes(label_array, spacing)
    masks = {"Liver": shapes["Liver"], "Mass": tumour, "Portal vein": shapes["Portal vein"],
             "Abdominal aorta": shapes["Abdominal aorta"]}
    if second_mass and (label_array > 1).any():
        masks["Mass 2"] = label_array > 1
    seg_folder = _folder(study_dir, 300, "Segmentation", rng)
    out["seg"] = write_seg(arterial, masks, os.path.join(seg_folder, "1-1.dcm"), rng=rng)
    rt_folder = _folder(study_dir, 301, "RTSTRUCT", rng)
    out["rtstruct"] = write_rtstruct(arterial, {"Mass": tumour, "Liver": shapes["Liver"]},
                                     os.path.join(rt_folder, "1-1.dcm"), rng=rng)
    out["images"] = {"ct_ap": phases["ct_ap"], "ct_pvp": phases["ct_pvp"], "ct_dp": phases["ct_dp"], "pre": pre}
    out["masks"] = masks
    with open(os.path.join(out_root, collection, "README.txt"), "w") as handle:
        handle.write(SYNTHETIC_DATA_NOTICE + "\n")
    return out


# Protocols of the generated download (``write_tcia_tree``): (series description, phase) per acquisition;
# "stacked" acquisitions share one series, as some HCC-TACE-Seg "LIVER 3 PHASE" series do.
PROTOCOLS = {
    "named": [("PRE LIVER", "pre-contrast"), ("LIVER ARTERIAL 5.0", "arterial"), ("PORTAL VENOUS 5.0", "portal"),
              ("DELAYED 3 MIN", "delayed")],
    "unnamed": [("Body 5.0 CE", "arterial"), ("Body 5.0 CE", "portal"), ("Body 5.0 CE", "delayed")],
    "bolus": [("NON CON ABD", "pre-contrast"), ("ABD 5mm", "portal")],
    "stacked": [("PRE LIVER", "pre-contrast"), ("LIVER 3 PHASE CAP", "arterial"), ("LIVER 3 PHASE CAP", "portal"),
                ("LIVER 3 PHASE CAP", "delayed")],
}
_PHASE_KEY = {"pre-contrast": "ct_dp", "arterial": "ct_ap", "portal": "ct_pvp", "delayed": "ct_dp"}


def write_tcia_tree(out_root, patients=20, seed=0, matrix=None, slices=None, collection="HCC-TACE-Demo"):
    """A download of ``patients`` demo cases in TCIA's layout, cycling through the ``PROTOCOLS`` (phases named
    in the descriptions; anonymous descriptions with the phases only in the acquisition times; a
    ContrastBolusStartTime; acquisitions stacked in one series), each study with a localizer, a second
    reconstruction of the portal phase when there is one, and a DICOM SEG (four segments) on the arterial
    series (else the portal one); every third patient also has a follow-up study ("C-A-P"). Acquisition times
    follow the usual liver protocol with random delays (arterial 28-42 s, portal 60-85 s, delayed 150-300 s
    after an injection 90-200 s after the unenhanced scan). ``matrix``: in-plane size kept around the tumour;
    ``slices``: number of slices kept around it (small trees for tests).
    Returns the truth: one dict per CT series / acquisition (patient, series UID, acquisition, phase)."""
    from .demo_cohort import draw_case, render_case
    truth = []
    names = list(PROTOCOLS)
    for p in range(patients):
        rng = np.random.default_rng([seed, p, 7])
        latent, clinical = draw_case(p, seed)
        phases, labels, _, spacing = render_case(p, seed, latent, clinical)
        if matrix is not None or slices is not None:
            array = sitk.GetArrayViewFromImage(labels)
            cz, cy, cx = [int(np.mean(a)) for a in np.nonzero(array == 1)]
            size = labels.GetSize()
            mx, my = matrix or size[:2]
            mz = min(slices or size[2], size[2])
            x0 = int(np.clip(cx - mx // 2, 0, size[0] - mx))
            y0 = int(np.clip(cy - my // 2, 0, size[1] - my))
            z0 = int(np.clip(cz - mz // 2, 0, size[2] - mz))
            box = (slice(x0, x0 + mx), slice(y0, y0 + my), slice(z0, z0 + mz))
            phases = {k: v[box] for k, v in phases.items()}
            labels = labels[box]
        patient_id = f"HCC_{p + 1:03d}"
        protocol = names[p % len(names)]
        studies = [("baseline", PROTOCOLS[protocol], 0)]
        if p % 3 == 2:
            studies.append(("follow-up", [("C-A-P", "portal")], 70))
        for kind, acquisitions, days in studies:
            date = f"2000{1 + days // 30:02d}{1 + days % 30:02d}"
            study = new_study(patient_id, date=date, time=30000.0 + 600 * p,
                              description="CT ABD LIVER 3 PHASE" if kind == "baseline" else "CT CAP FOLLOW UP",
                              rng=rng)
            study_dir = os.path.join(out_root, collection, patient_id,
                                     f"{date[4:6]}-{date[6:8]}-{date[:4]}-NA-{study['description']}-"
                                     f"{rng.integers(10000, 99999)}")
            start = study["time"] + 200
            inject = start + rng.uniform(90, 200)
            delays = {"arterial": rng.uniform(28, 42), "portal": rng.uniform(60, 85), "delayed": rng.uniform(150, 300)}
            write_localizer(_folder(study_dir, 1, "Topogram", rng), study, 1, start - 60, rng=rng)
            stacked_uid, stacked_folder, number, written = _uid(rng), None, 2, {}
            bolus = protocol == "bolus" and kind == "baseline"
            for description, phase in acquisitions:
                time = start if phase == "pre-contrast" else inject + delays[phase]
                image = phases[_PHASE_KEY[phase]]
                agent = "" if phase == "pre-contrast" else "OMNIPAQUE 350"
                if description == "LIVER 3 PHASE CAP":
                    stacked_folder = stacked_folder or _folder(study_dir, number, description, rng)
                    acquisition = 2 + sum(1 for d, _ in acquisitions[:acquisitions.index((description, phase))]
                                          if d == description)
                    datasets = write_ct_series(image, stacked_folder, study, number, description, time,
                                               series_uid=stacked_uid, acquisition_number=acquisition,
                                               contrast_agent=agent, rng=rng, file_start=1 + 100 * acquisition)
                    truth.append({"patient_id": patient_id, "series_uid": stacked_uid, "acquisition": acquisition,
                                  "phase": phase})
                else:
                    datasets = write_ct_series(image, _folder(study_dir, number, description, rng), study, number,
                                               description, time, contrast_agent=agent, rng=rng,
                                               contrast_start=inject if bolus else None)
                    truth.append({"patient_id": patient_id, "series_uid": datasets[0].SeriesInstanceUID,
                                  "acquisition": None, "phase": phase})
                    number += 1
                written.setdefault(phase, datasets)
                if phase == "portal" and kind == "baseline" and protocol != "stacked":
                    recon = f"Recon 2: {description}"
                    thick = write_ct_series(image, _folder(study_dir, number, recon, rng), study, number, recon,
                                            time + 0.5, contrast_agent=agent, rng=rng,
                                            contrast_start=inject if bolus else None)
                    truth.append({"patient_id": patient_id, "series_uid": thick[0].SeriesInstanceUID,
                                  "acquisition": None, "phase": phase})
                    number += 1
            if kind == "baseline":
                source = written.get("arterial") or written["portal"]
                label_array = sitk.GetArrayFromImage(labels)
                shapes = organ_shapes(label_array, spacing)
                write_seg(source, {"Liver": shapes["Liver"], "Mass": label_array == 1,
                                   "Portal vein": shapes["Portal vein"], "Abdominal aorta": shapes["Abdominal aorta"]},
                          os.path.join(_folder(study_dir, 300, "Segmentation", rng), "1-1.dcm"), rng=rng)
    os.makedirs(os.path.join(out_root, collection), exist_ok=True)
    with open(os.path.join(out_root, collection, "README.txt"), "w") as handle:
        handle.write(SYNTHETIC_DATA_NOTICE + "\n")
    return truth
