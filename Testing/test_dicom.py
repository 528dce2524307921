"""Clinical DICOM (issue 18): CT series out of multi-series studies, DICOM SEG and RTSTRUCT checked against
their CT, the index of a TCIA-like download, the HCC-TACE-Seg importer with images, and the lesion mask
written back as DICOM SEG. The DICOM data are two demo-cohort cases written by ``dicom_demo`` (pydicom and
highdicom) in TCIA's folder layout; nothing is downloaded."""

import os
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from TACEPredictLib import InputError
from TACEPredictLib.data import dicom_demo
from TACEPredictLib.data import dicom
from TACEPredictLib.cli import main
from TACEPredictLib.data.images import read_image, read_segmentation, resample_mask_to, same_geometry
from TACEPredictLib.data.importers import import_hcc_tace_seg
from TACEPredictLib.data.manifest import read_manifest, validate_manifest

from conftest import HCC_TACE_SEG_CSV, write_manifest


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Two TCIA-like patients: HCC_001 (demo case 1, 27 mm tumour, cropped to 96 x 96) with the NRRD files of
    the same case beside it; HCC_002 (demo case 9, a target and a satellite as 'Mass' and 'Mass 2'). The
    portal series of HCC_001 also holds a localizer and a dose-report screen capture."""
    # their segmentations are DICOM SEG, written with highdicom, which needs pydicom 3: not where pydicom is
    # Slicer 5.10's 2.4.4 (the module never installs highdicom; TACEPredictLib/slicer/dependencies.py)
    pytest.importorskip("highdicom", reason="the demo patients' DICOM SEG is written with highdicom (the dicom "
                                            "extra, needs pydicom 3), which is not installed")
    root = tmp_path_factory.mktemp("tcia")
    one = dicom_demo.write_demo_patient(str(root / "download"), 1, patient_id="HCC_001", crop=(96, 96))
    two = dicom_demo.write_demo_patient(str(root / "download"), 9, patient_id="HCC_002", second_mass=True)
    portal = one["series"]["PORTAL VENOUS 5.0 B30f"]
    dicom_demo.write_localizer(portal["folder"], one["study_info"], 4, 36000.0, series_uid=portal["uid"])
    dicom_demo.write_secondary_capture(portal["folder"], one["study_info"], 4, series_uid=portal["uid"])
    nrrd = root / "nrrd"
    nrrd.mkdir()
    for phase in ("ct_ap", "ct_pvp"):
        sitk.WriteImage(one["images"][phase], str(nrrd / f"{phase}.nrrd"), True)
    sitk.WriteImage(one["labels"], str(nrrd / "tumor_label.nrrd"), True)
    return {"root": str(root), "one": one, "two": two, "nrrd": str(nrrd)}


def _arrays_equal(a, b):
    return np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


def test_series_read_in_hu_with_rescale(tree):
    one = tree["one"]
    arterial = read_image(one["series"]["LIVER ARTERIAL 5.0 B30f"]["folder"], "HCC_001", "ct_ap")
    assert same_geometry(arterial, one["images"]["ct_ap"]) and _arrays_equal(arterial, one["images"]["ct_ap"])
    assert arterial.GetPixelID() == sitk.sitkInt16
    assert arterial.GetMetaData("0020|000e") == one["series"]["LIVER ARTERIAL 5.0 B30f"]["uid"]
    # Stored as HU + 1024 with RescaleIntercept -1024: the reader gives the same HU.
    pre_folder = one["series"]["PRE LIVER"]["folder"]
    first = pydicom.dcmread(os.path.join(pre_folder, sorted(os.listdir(pre_folder))[0]))
    assert float(first.RescaleIntercept) == -1024 and first.PixelRepresentation == 0
    pre = read_image(pre_folder)
    assert _arrays_equal(pre, one["images"]["pre"])
    # The localizer and the screen capture filed in the portal series are left out, with a warning.
    with pytest.warns(dicom.DicomWarning, match="localizer"):
        portal = read_image(one["series"]["PORTAL VENOUS 5.0 B30f"]["folder"])
    assert _arrays_equal(portal, one["images"]["ct_pvp"])


def test_series_choice_in_a_study_folder(tree):
    one = tree["one"]
    study = one["study"]
    with pytest.raises(InputError, match="holds 6 DICOM series") as info:
        read_image(study, "HCC_001", "ct_ap")
    assert "case HCC_001, column 'ct_ap'" in str(info.value) and "#uid=" in str(info.value)
    assert _arrays_equal(read_image(study + "#number=3"), one["images"]["ct_ap"])
    assert _arrays_equal(read_image(study + "#description=arterial"), one["images"]["ct_ap"])
    recon = one["series"]["Recon 2: PORTAL VENOUS 10.0"]["uid"]
    assert read_image(f"{study}#uid={recon}").GetSpacing()[2] == pytest.approx(10.0)
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_image(study + "#description=*portal*")
    with pytest.raises(InputError, match="no image series .* matches '#number=42'"):
        read_image(study + "#number=42")
    # Two acquisitions stacked at the same positions in one series: named, and each readable.
    stacked = one["series"]["LIVER 3 PHASE CAP"]["folder"]
    with pytest.raises(InputError, match=r"stacks 2 acquisitions .* acquisitions 2 \(14 slices\), 3 \(14 slices\)"):
        read_image(stacked, "HCC_001", "ct_pvp")
    assert _arrays_equal(read_image(stacked + "#acquisition=3"), one["images"]["ct_pvp"])


def test_missing_slice_and_duplicates(tree, tmp_path):
    delayed = tree["one"]["series"]["DELAYED 5.0"]["folder"]
    with pytest.raises(InputError, match=r'series 6 "DELAYED 5.0" .* misses a slice at -?\d+\.\d+ mm') as info:
        read_image(delayed, "HCC_001", "ct_dp")
    assert info.value.case_id == "HCC_001" and info.value.column == "ct_dp" and "gaps=interpolate" in info.value.fix
    with pytest.warns(dicom.DicomWarning, match="1 missing slice"):
        filled = read_image(delayed + "#gaps=interpolate")
    expected = sitk.GetArrayFromImage(tree["one"]["images"]["ct_dp"]).astype(np.float32)
    got = sitk.GetArrayFromImage(filled)
    missing = expected.shape[0] // 2
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.delete(got, missing, 0), np.delete(expected, missing, 0))
    np.testing.assert_allclose(got[missing], (expected[missing - 1] + expected[missing + 1]) / 2, atol=1e-3)

    folder = tmp_path / "dup"
    shutil.copytree(tree["one"]["series"]["LIVER ARTERIAL 5.0 B30f"]["folder"], folder)
    names = sorted(os.listdir(folder))
    shutil.copy(folder / names[3], folder / "copy.dcm")  # the same instance twice: harmless
    assert read_image(str(folder)).GetSize()[2] == 14
    ds = pydicom.dcmread(folder / names[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 99
    ds.save_as(folder / "other.dcm")
    with pytest.raises(InputError, match=r"two different slices at the same position \(.*\) .* instances 4 and 99"):
        read_image(str(folder))


def _linear_series(folder, positions, spacing=(0.9, 0.9), shape=(20, 24)):
    """A series whose HU is 2 x + 3 y + 4 z at every pixel's patient position (slope 0.01: exact to 0.005)."""
    study = dicom_demo.new_study("TILT_1")
    image = sitk.Image([shape[1], shape[0], len(positions)], sitk.sitkFloat32)
    image.SetSpacing((*spacing, 1.0))
    values = np.zeros((len(positions), *shape), np.float32)
    j, i = np.mgrid[0:shape[0], 0:shape[1]]
    for k, p in enumerate(positions):
        x, y, z = p[0] + i * spacing[0], p[1] + j * spacing[1], p[2]
        values[k] = 2 * x + 3 * y + 4 * z
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((*spacing, 1.0))
    dicom_demo.write_ct_series(image, str(folder), study, 1, "linear", 36000.0, positions=positions,
                               rescale_slope=0.01, rescale_intercept=0.0)
    return str(folder)


def _check_linear(image, margin=3):
    array = sitk.GetArrayFromImage(image)
    errors = []
    for k in range(array.shape[0]):
        for j in range(margin, array.shape[1] - margin):
            for i in range(margin, array.shape[2] - margin):
                x, y, z = image.TransformIndexToPhysicalPoint((i, j, k))
                errors.append(abs(array[k, j, i] - (2 * x + 3 * y + 4 * z)))
    return max(errors)


def test_gantry_tilt_and_uneven_spacing_are_resampled(tmp_path):
    tilted = [(-10.0 + 0.35 * k, -12.0, 10.0 + 2.5 * k) for k in range(6)]  # 8 degrees of tilt
    folder = _linear_series(tmp_path / "tilt", tilted)
    with pytest.warns(dicom.DicomWarning, match="gantry tilt .* about 8.0 degrees"):
        image = read_image(folder)
    assert image.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert image.GetSpacing()[2] == pytest.approx(2.5)
    assert _check_linear(image, margin=3) < 0.02  # linear interpolation of a linear field is exact
    with pytest.raises(InputError, match="irregular: gantry tilt"):
        dicom.read_series(folder, irregular="error")

    uneven = [(-10.0, -12.0, z) for z in (10.0, 12.5, 15.4, 17.3, 20.0, 22.5, 24.8)]
    folder = _linear_series(tmp_path / "uneven", uneven)
    with pytest.warns(dicom.DicomWarning, match="non-uniform slice spacing"):
        image = read_image(folder)
    assert image.GetSize()[2] == 7 and image.GetSpacing()[2] == pytest.approx(14.8 / 6)  # the same span
    assert _check_linear(image, margin=0) < 0.02


def test_seg_four_segments_and_pairing(tree, tmp_path):
    one = tree["one"]
    ap = one["series"]["LIVER ARTERIAL 5.0 B30f"]["folder"]
    pvp = one["series"]["PORTAL VENOUS 5.0 B30f"]["folder"]
    seg = read_segmentation(one["seg"], "HCC_001", ct_paths={"ct_ap": ap, "ct_pvp": pvp})
    assert [(s.name, s.label_value) for s in seg.segments] == [
        ("Liver", 1), ("Mass", 2), ("Portal vein", 3), ("Abdominal aorta", 4)]
    assert same_geometry(seg.reference, one["images"]["ct_ap"])
    truth = sitk.GetArrayFromImage(one["labels"]) == 1
    assert np.array_equal(sitk.GetArrayFromImage(seg.mask("Mass")) > 0, truth)
    assert np.array_equal(sitk.GetArrayFromImage(seg.mask("2")) > 0, truth)
    assert seg.find().name == "Mass"  # no seg_label: the tumour, not the larger liver
    liver = sitk.GetArrayFromImage(seg.mask("Liver")) > 0
    assert liver[truth].all()  # overlapping segments stay whole (one layer each)
    # The SEG folder (TCIA's layout) reads too; on its own the SEG keeps its own grid.
    alone = read_segmentation(os.path.dirname(one["seg"]))
    assert np.array_equal(sitk.GetArrayFromImage(resample_mask_to(alone.mask("Mass"), seg.reference)) > 0, truth)

    with pytest.raises(InputError, match="was drawn on series .* none of this case's CT series: ct_pvp") as info:
        read_segmentation(one["seg"], "HCC_001", "seg", ct_paths={"ct_pvp": pvp})
    assert info.value.case_id == "HCC_001" and info.value.column == "seg"
    other = pydicom.dcmread(one["seg"])
    other.FrameOfReferenceUID = pydicom.uid.generate_uid()
    other.save_as(tmp_path / "seg_other_frame.dcm")
    with pytest.raises(InputError, match="frame of reference .* differs from that of the CT it references, ct_ap"):
        read_segmentation(str(tmp_path / "seg_other_frame.dcm"), "HCC_001", "seg_r2", ct_paths={"ct_ap": ap})


def test_rasterise_polygon():
    square = [(1.5, 1.5), (5.5, 1.5), (5.5, 5.5), (1.5, 5.5)]  # along pixel edges: centres 2..5
    inside, edge = dicom.rasterise_polygon(square, (8, 8))
    assert inside.sum() == 16 and inside[2:6, 2:6].all() and not edge.any()
    through = [(2, 2), (5, 2), (5, 5), (2, 5)]  # through the boundary voxels' centres: the edge rule keeps them
    inside, edge = dicom.rasterise_polygon(through, (8, 8))
    assert (inside | edge).sum() == 16 and (inside | edge)[2:6, 2:6].all()
    theta = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.stack([50 + 30.3 * np.cos(theta), 50 + 30.3 * np.sin(theta)], axis=1)
    inside, _ = dicom.rasterise_polygon(circle, (101, 101))
    assert abs(inside.sum() - np.pi * 30.3 ** 2) < 2 * np.pi * 30.3 * 0.5  # within half a pixel of the rim
    hole = dicom.rasterise_polygon([(9.5, 9.5), (19.5, 9.5), (19.5, 19.5), (9.5, 19.5)], (30, 30))[0]
    ring = dicom.rasterise_polygon([(4.5, 4.5), (24.5, 4.5), (24.5, 24.5), (4.5, 24.5)], (30, 30))[0] ^ hole
    assert ring.sum() == 400 - 100


def _chaikin(polygon, iterations=2):
    for _ in range(iterations):
        following = np.roll(polygon, -1, axis=0)
        polygon = np.stack([0.75 * polygon + 0.25 * following, 0.25 * polygon + 0.75 * following], 1).reshape(-1, 2)
    return polygon


def test_rtstruct_on_the_ct_grid(tree, tmp_path):
    one = tree["one"]
    ap = one["series"]["LIVER ARTERIAL 5.0 B30f"]["folder"]
    rt = read_segmentation(one["rtstruct"], "HCC_001", ct_paths={"ct_ap": ap})
    assert [(s.name, s.label_value) for s in rt.segments] == [("Mass", 1), ("Liver", 2)]
    truth = sitk.GetArrayFromImage(one["labels"]) == 1
    assert np.array_equal(sitk.GetArrayFromImage(rt.mask("Mass")) > 0, truth)  # pixel-edge contours: exact
    # Without the CT columns, the RTSTRUCT finds its CT series in its study folder.
    assert np.array_equal(sitk.GetArrayFromImage(read_segmentation(one["rtstruct"]).mask("1")) > 0, truth)
    # Contours off the voxel outline: within half a voxel of it (corner cutting moves it up to 0.35 voxel)
    # every voxel centre stays on its side, and the mask comes back exact; beyond (vertices jittered up to 0.7
    # voxel) only voxels next to the lesion's border change.
    datasets = [pydicom.dcmread(os.path.join(ap, n), stop_before_pixels=True) for n in sorted(os.listdir(ap))]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    smooth = dicom_demo.write_rtstruct(datasets, {"Mass": truth}, str(tmp_path / "smooth.dcm"),
                                       contours=lambda m: [_chaikin(p) for p in dicom_demo.pixel_edge_contours(m)])
    mask = sitk.GetArrayFromImage(read_segmentation(smooth, ct_paths={"ct_ap": ap}).mask("Mass")) > 0
    assert np.array_equal(mask, truth)
    rng = np.random.default_rng(0)
    jitter = dicom_demo.write_rtstruct(
        datasets, {"Mass": truth}, str(tmp_path / "jitter.dcm"),
        contours=lambda m: [p + rng.uniform(-0.7, 0.7, p.shape) for p in dicom_demo.pixel_edge_contours(m)])
    mask = sitk.GetArrayFromImage(read_segmentation(jitter, ct_paths={"ct_ap": ap}).mask("Mass")) > 0
    from scipy import ndimage
    square = np.ones((3, 3), bool)
    band = np.stack([ndimage.binary_dilation(t, square) & ~ndimage.binary_erosion(t, square) for t in truth])
    flipped = mask ^ truth
    assert flipped.any() and (flipped <= band).all() and flipped.sum() < 0.1 * truth.sum()


def _manifests(tree):
    one, folder = tree["one"], tree["root"]
    ap = os.path.relpath(one["series"]["LIVER ARTERIAL 5.0 B30f"]["folder"], folder)
    study = os.path.relpath(one["study"], folder)
    pvp = f"{study}#description=PORTAL VENOUS 5.0"
    rows = {"nrrd": {"ct_ap": "nrrd/ct_ap.nrrd", "ct_pvp": "nrrd/ct_pvp.nrrd", "seg": "nrrd/tumor_label.nrrd",
                     "seg_label": "1"},
            "seg": {"ct_ap": ap, "ct_pvp": pvp, "seg": os.path.relpath(one["seg"], folder), "seg_label": "Mass"},
            "rtstruct": {"ct_ap": ap, "ct_pvp": pvp, "seg": os.path.relpath(one["rtstruct"], folder),
                         "seg_label": "Mass"}}
    paths = {}
    for name, row in rows.items():
        sub = os.path.join(folder, f"m_{name}")
        os.makedirs(sub, exist_ok=True)
        row = {k: (os.path.join("..", v) if k != "seg_label" else v) for k, v in row.items()}
        paths[name] = write_manifest(sub, [{"case_id": "HCC_001", **row}])
    return paths


def test_same_case_as_nrrd_and_dicom_gives_the_same_radiomics(tree):
    from TACEPredictLib.imaging.preprocess import load_case
    from TACEPredictLib.imaging.radiomics import extract_from_crop, make_extractor
    manifests = _manifests(tree)
    extractor = make_extractor("ct-fast")
    extractor.disableAllImageTypes()
    extractor.enableImageTypes(Original={}, LoG={"sigma": [2.0]})
    features, cases = {}, {}
    for name, path in manifests.items():
        assert [p for p in validate_manifest(path) if p.severity == "error"] == []
        manifest = read_manifest(path)
        case = load_case(manifest, manifest.row("HCC_001"), phases=("ct_ap", "ct_pvp"), register="none")
        cases[name] = case
        features[name] = extract_from_crop(case.phases["ct_ap"], case.mask, case.crop_index,
                                           case.full_geometry["size"], extractor)
    for name in ("seg", "rtstruct"):
        assert _arrays_equal(cases[name].mask, cases["nrrd"].mask)
        for phase in ("ct_ap", "ct_pvp"):
            assert _arrays_equal(cases[name].phases[phase], cases["nrrd"].phases[phase])
        reference = pd.Series(features["nrrd"])
        other = pd.Series(features[name])[reference.index]
        relative = ((other - reference).abs() / reference.abs().clip(lower=1e-12)).max()
        assert len(reference) > 100 and relative <= 1e-6, (name, relative)


def test_seg_written_back_references_the_source_series(tree, tmp_path):
    from TACEPredictLib.imaging.preprocess import load_case
    manifest = read_manifest(_manifests(tree)["seg"])
    row = manifest.row("HCC_001")
    case = load_case(manifest, row, phases=("ct_ap",), register="none")  # the cropped mask extract uses
    source = manifest.resolve(row["ct_ap"])
    out = dicom.save_case_seg(case, manifest, row, str(tmp_path))  # what `extract --save-seg` calls
    assert out == str(tmp_path / "HCC_001_lesion_seg.dcm")
    written = pydicom.dcmread(out)
    assert written.Modality == "SEG"
    assert written.ReferencedSeriesSequence[0].SeriesInstanceUID == tree["one"]["series"][
        "LIVER ARTERIAL 5.0 B30f"]["uid"]
    assert written.FrameOfReferenceUID == tree["one"]["study_info"]["frame_of_reference"]
    back = read_segmentation(out, "HCC_001", ct_paths={"ct_ap": source})
    assert [s.name for s in back.segments] == ["Tumour"]
    assert np.array_equal(sitk.GetArrayFromImage(back.mask()) > 0, sitk.GetArrayFromImage(tree["one"]["labels"]) == 1)
    with pytest.raises(InputError, match="needs the source CT as a DICOM series"):
        dicom.write_seg(case.mask, os.path.join(tree["nrrd"], "ct_ap.nrrd"), str(tmp_path / "x.dcm"))
    nrrd = read_manifest(_manifests(tree)["nrrd"])
    assert dicom.save_case_seg(load_case(nrrd, nrrd.row("HCC_001"), phases=("ct_ap",), register="none"), nrrd,
                               nrrd.row("HCC_001"), str(tmp_path)) is None


def test_index_classifies_every_series(tree, tmp_path):
    out = tmp_path / "series.csv"
    assert main(["index-dicom", os.path.join(tree["root"], "download"), "--out", str(out), "--quiet"]) == 0
    index = pd.read_csv(out, dtype={"acquisition": "Int64"})
    for patient in ("one", "two"):
        for record in tree[patient]["truth"]:
            match = index[(index["series_uid"] == record["series_uid"])]
            if record["acquisition"] is not None:
                match = match[match["acquisition"] == record["acquisition"]]
            assert len(match) == 1 and match["phase"].iloc[0] == record["phase"], record
    assert set(index.loc[index["description"].str.startswith("Topogram"), "phase"]) == {"localizer"}
    seg = index[(index["modality"] == "SEG") & (index["patient_id"] == "HCC_001")].iloc[0]
    assert seg["segments"] == "1:Liver|2:Mass|3:Portal vein|4:Abdominal aorta"
    arterial = index[index["series_uid"] == tree["one"]["series"]["LIVER ARTERIAL 5.0 B30f"]["uid"]].iloc[0]
    assert seg["drawn_on"] == arterial["reference"]
    delayed = index[index["series_uid"] == tree["one"]["series"]["DELAYED 5.0"]["uid"]].iloc[0]
    assert "misses a slice" in delayed["problems"]
    # The reference column is what a manifest takes (relative to the CSV's folder).
    assert _arrays_equal(read_image(os.path.join(tmp_path, arterial["reference"])), tree["one"]["images"]["ct_ap"])


def test_index_phases_from_descriptions_timing_and_bolus(tmp_path):
    """The four protocols of the generated download (``bench_index_dicom.py`` runs 20 patients), small."""
    pytest.importorskip("highdicom", reason="the generated download's DICOM SEG is written with highdicom (the "
                                            "dicom extra, needs pydicom 3), which is not installed")
    truth = dicom_demo.write_tcia_tree(str(tmp_path), patients=4, matrix=(24, 24), slices=4)
    index = dicom.index_dicom(str(tmp_path))
    for record in truth:
        match = index[index["series_uid"] == record["series_uid"]]
        if record["acquisition"] is not None:
            match = match[match["acquisition"] == record["acquisition"]]
        assert len(match) == 1 and match["phase"].iloc[0] == record["phase"], (record, match["phase"].tolist())
    sources = set(index.loc[index["modality"] == "CT", "phase_source"])
    assert {"description", "timing", "bolus timing", "image type"} <= sources
    assert dicom.guess_phases([{"time": 0.0, "votes": [None], "agent": True, "start": None}]) == [("", "ambiguous")]


def test_import_hcc_tace_seg_with_images(tree, tmp_path):
    clinical = pd.read_csv(HCC_TACE_SEG_CSV)
    subset = tmp_path / "clinical.csv"
    clinical[clinical["TCIA_ID"] != "HCC_002"].to_csv(subset, index=False)
    out = tmp_path / "manifest.csv"
    assert main(["import-hcc-tace-seg", "--clinical", str(subset), "--images",
                 os.path.join(tree["root"], "download"), "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert len(table) == len(clinical) - 1 and list(table.columns[:6]) == ["case_id", "ct_ap", "ct_pvp", "ct_dp",
                                                                           "seg", "seg_label"]
    row = table[table["case_id"] == "HCC_001"].iloc[0]
    assert row["seg_label"] == "Mass" and row["seg_segments"] == "Liver|Mass|Portal vein|Abdominal aorta"
    assert "ARTERIAL" in row["ct_ap"] and "PORTAL VENOUS 5.0" in row["ct_pvp"] and pd.isna(row["ct_dp"])
    assert [p for p in validate_manifest(str(out)) if p.severity == "error" and p.case_id == "HCC_001"] == []

    table, report = import_hcc_tace_seg(HCC_TACE_SEG_CSV, images=os.path.join(tree["root"], "download"),
                                        manifest_dir=str(tmp_path))
    text = "\n".join(report)
    assert "103 clinical row(s) without images" in text
    assert "HCC_001: every delayed series has a problem" in text
    two = table[table["case_id"] == "HCC_002"].iloc[0]
    labels = sitk.GetArrayFromImage(tree["two"]["labels"])
    target, satellites = int((labels == 1).sum()), int((labels > 1).sum())
    largest, other = ("Mass", "Mass 2") if target >= satellites else ("Mass 2", "Mass")
    assert two["seg_label"] == largest and two["seg_other_tumours"].startswith(f"{other} (segment")
    assert f"{min(target, satellites)} voxels" in two["seg_other_tumours"]
    _, report = import_hcc_tace_seg(str(subset), images=os.path.join(tree["root"], "download"))
    assert any("1 imaged patient(s) without a clinical row: HCC_002" in line for line in report)
