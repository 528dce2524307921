"""Case loading, cropping, phase registration, resampling and intensity normalisation."""


import numpy as np
import pytest
import SimpleITK as sitk

from TACEPredictLib import InputError
from TACEPredictLib.data.manifest import read_manifest
from TACEPredictLib.imaging.preprocess import (load_case, minmax, register_phase, resample_isotropic, window, zscore)

from conftest import ct_and_lesion, make_image, write_manifest


def test_load_case_crops_around_the_lesion_on_one_grid(demo_cohort):
    manifest = read_manifest(demo_cohort)
    row = manifest.table.iloc[0]
    case = load_case(manifest, row, ("ct_ap", "ct_pvp"), register="none", readers=["seg_r2"])
    full = sitk.ReadImage(manifest.resolve(row["ct_ap"]))
    ap = case.phases["ct_ap"]
    for image in [case.phases["ct_pvp"], case.mask, case.reader_masks["seg_r2"]]:
        assert image.GetSize() == ap.GetSize() and image.GetOrigin() == ap.GetOrigin()
    mask = case.mask_array()
    assert mask.sum() > 30 and not mask[0].any() and not mask[-1].any()
    # The crop holds the very voxels of the original CT at the same physical points.
    index = full.TransformPhysicalPointToIndex(ap.TransformIndexToPhysicalPoint((5, 7, 2)))
    assert ap[5, 7, 2] == full[index]
    assert case.full_geometry["size"] == full.GetSize()


def test_a_large_ct_is_cropped_to_the_lesion_and_its_margin(tmp_path):
    hu, lesion = ct_and_lesion(shape=(60, 300, 300), lesion_radius=10)
    sitk.WriteImage(make_image(hu, spacing=(0.7, 0.7, 1.0)), str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(make_image(lesion, spacing=(0.7, 0.7, 1.0)), str(tmp_path / "seg.nrrd"))
    manifest = read_manifest(write_manifest(str(tmp_path), [{"case_id": "c", "ct_ap": "ct.nrrd", "seg": "seg.nrrd"}]))
    case = load_case(manifest, manifest.table.iloc[0], ("ct_ap",))
    size = case.phases["ct_ap"].GetSize()
    # In-plane: lesion (~20 px) + 2 x 80 mm at 0.7 mm = ~250 px; through-plane: lesion (~10 slices) plus
    # 2 x max(15 mm, 20 voxels) = 2 x 20 slices.
    assert 240 <= size[0] <= 260 and 48 <= size[2] <= 52
    assert case.mask_array().sum() == lesion.sum()


def test_registration_recovers_a_known_shift(demo_cohort):
    manifest = read_manifest(demo_cohort)
    case = load_case(manifest, manifest.table.iloc[1], ("ct_ap", "ct_pvp"), register="none")
    fixed, moving = case.phases["ct_ap"], case.phases["ct_pvp"]
    # Move the portal phase's content by (-3, +2) mm in-plane; the registration must undo it.
    shifted = sitk.Resample(moving, moving, sitk.TranslationTransform(3, (3.0, -2.0, 0.0)), sitk.sitkLinear, -1024.0)
    aligned, transform, record = register_phase(fixed, shifted, "rigid")
    assert record.kind == "rigid"
    translation = np.array(sitk.Euler3DTransform(transform).GetTranslation())
    np.testing.assert_allclose(translation[:2], [-3.0, 2.0], atol=0.75)
    assert record.ncc_after > record.ncc_before + 0.01
    assert record.translation_mm == pytest.approx(np.linalg.norm(translation))
    assert aligned.GetSize() == fixed.GetSize()


def test_registration_gives_the_same_transform_whatever_the_itk_threads(demo_cohort):
    """The registration runs its metric on one ITK thread, so a machine with more cores (or an extraction with
    fewer workers) aligns the phases to the bit as this one does, and leaves the caller's thread setting alone."""
    manifest = read_manifest(demo_cohort)
    case = load_case(manifest, manifest.table.iloc[1], ("ct_ap", "ct_pvp"), register="none")
    fixed, moving = case.phases["ct_ap"], case.phases["ct_pvp"]
    shifted = sitk.Resample(moving, moving, sitk.TranslationTransform(3, (3.0, -2.0, 0.0)), sitk.sitkLinear, -1024.0)
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    results = []
    try:
        for threads in (1, 4, 4):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            aligned, transform, _ = register_phase(fixed, shifted, "rigid")
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads
            results.append((transform.GetParameters(), sitk.GetArrayFromImage(aligned)))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    for parameters, voxels in results[1:]:
        assert parameters == results[0][0]
        np.testing.assert_array_equal(voxels, results[0][1])


def test_registration_leaves_aligned_phases_alone(demo_cohort):
    manifest = read_manifest(demo_cohort)
    case = load_case(manifest, manifest.table.iloc[2], ("ct_ap", "ct_pvp"), register="rigid")
    (record,) = case.registrations
    assert record.phase == "ct_pvp"
    assert record.ncc_after >= record.ncc_before
    if "not applied" in record.kind:  # the phantom's phases are aligned: identity is the best answer
        plain = load_case(manifest, manifest.table.iloc[2], ("ct_ap", "ct_pvp"), register="none")
        np.testing.assert_array_equal(case.array("ct_pvp"), plain.array("ct_pvp"))


def test_segmentation_on_another_grid_is_resampled(tmp_path):
    hu, lesion = ct_and_lesion(shape=(12, 40, 40))
    sitk.WriteImage(make_image(hu), str(tmp_path / "ct.nrrd"))
    # The same lesion on a grid with half the in-plane resolution.
    coarse = sitk.Resample(make_image(lesion), [20, 20, 12], sitk.Transform(), sitk.sitkNearestNeighbor,
                           (-80.0, -90.0, -300.0), (1.6, 1.6, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), 0, sitk.sitkUInt8)
    sitk.WriteImage(coarse, str(tmp_path / "seg.nrrd"))
    path = write_manifest(str(tmp_path), [{"case_id": "c1", "ct_ap": "ct.nrrd", "seg": "seg.nrrd"}])
    manifest = read_manifest(path)
    case = load_case(manifest, manifest.table.iloc[0], ("ct_ap",))
    assert case.mask.GetSpacing() == pytest.approx((0.8, 0.8, 3.0))
    assert abs(int(case.mask_array().sum()) - int(lesion.sum())) < 0.35 * lesion.sum()


@pytest.mark.parametrize("change, column, words", [
    (lambda row: row.update(ct_pvp=""), "ct_pvp", "portal venous phase is missing"),
    (lambda row: row.update(seg_label="Tumor 9"), "seg_label", "no segment 'Tumor 9'"),
    (lambda row: row.update(ct_pvp="gone.nrrd"), "ct_pvp", "file not found"),
])
def test_bad_case_errors_name_the_case_and_field(tmp_path, change, column, words):
    hu, lesion = ct_and_lesion()
    sitk.WriteImage(make_image(hu), str(tmp_path / "ap.nrrd"))
    sitk.WriteImage(make_image(hu), str(tmp_path / "pvp.nrrd"))
    sitk.WriteImage(make_image(lesion), str(tmp_path / "seg.nrrd"))
    row = {"case_id": "p7", "ct_ap": "ap.nrrd", "ct_pvp": "pvp.nrrd", "seg": "seg.nrrd", "seg_label": "1"}
    change(row)
    manifest = read_manifest(write_manifest(str(tmp_path), [row]))
    with pytest.raises(InputError) as error:
        load_case(manifest, manifest.table.iloc[0], ("ct_ap", "ct_pvp"))
    assert error.value.case_id == "p7" and error.value.column == column
    assert words in str(error.value)


def test_tiny_lesion_and_non_ct_intensities_are_refused(tmp_path):
    hu, lesion = ct_and_lesion()
    tiny = np.zeros_like(lesion)
    tiny[6, 20, 20:23] = 1
    sitk.WriteImage(make_image(hu), str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(make_image((hu + 1000).astype(np.uint16)), str(tmp_path / "raw.nrrd"))
    sitk.WriteImage(make_image(tiny), str(tmp_path / "tiny.nrrd"))
    sitk.WriteImage(make_image(lesion), str(tmp_path / "seg.nrrd"))
    manifest = read_manifest(write_manifest(str(tmp_path), [
        {"case_id": "tiny", "ct_ap": "ct.nrrd", "seg": "tiny.nrrd"},
        {"case_id": "raw", "ct_ap": "raw.nrrd", "seg": "seg.nrrd"}]))
    with pytest.raises(InputError, match="3 voxels, fewer than the 30"):
        load_case(manifest, manifest.table.iloc[0], ("ct_ap",))
    with pytest.raises(InputError, match="no negative values") as error:
        load_case(manifest, manifest.table.iloc[1], ("ct_ap",))
    assert error.value.column == "ct_ap"


def test_isotropic_resampling_keeps_extent_and_values():
    hu, _ = ct_and_lesion(shape=(10, 40, 40))
    image = make_image(hu.astype(np.float32), spacing=(0.5, 0.5, 2.0))
    iso = resample_isotropic(image, 1.0, sitk.sitkLinear)
    assert iso.GetSpacing() == (1.0, 1.0, 1.0) and iso.GetSize() == (20, 20, 20)
    assert iso.GetOrigin() == image.GetOrigin()
    centre = iso.TransformPhysicalPointToIndex(image.TransformContinuousIndexToPhysicalPoint((20, 20, 5)))
    assert iso[centre] == pytest.approx(140.0)


def test_intensity_normalisations():
    values = np.array([-1000.0, -150.0, 50.0, 250.0, 900.0])
    np.testing.assert_allclose(window(values), [0, 0, 0.5, 1, 1])
    z = zscore(values)
    assert z.mean() == pytest.approx(0, abs=1e-6) and z.std() == pytest.approx(1, abs=1e-6)
    inside = np.array([False, True, True, True, False])
    assert zscore(values, inside)[inside].mean() == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(minmax(values)[[0, -1]], [0, 1])
    assert not zscore(np.ones(4)).any() and not minmax(np.ones(4)).any()
