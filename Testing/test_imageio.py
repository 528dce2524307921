"""Image and segmentation reading: files, DICOM folders, labelmaps and Slicer .seg.nrrd (checked with real MRML)."""

import os

import numpy as np
import pytest
import SimpleITK as sitk

from TACEPredictLib import InputError
from TACEPredictLib.data.images import (Segment, mask_inside_image, read_image, read_segmentation, same_geometry,
                                    write_seg_nrrd)

from conftest import ct_and_lesion, make_image


def _write_dicom_series(folder, hu, series_uid, spacing=(0.7, 0.7, 2.5)):
    os.makedirs(folder, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(hu.shape[0]):
        image = sitk.GetImageFromArray(hu[k:k + 1].astype(np.int16))
        image.SetSpacing(spacing)
        image.SetOrigin((-50.0, -60.0, -200.0 + k * spacing[2]))
        for tag, value in [("0008|0060", "CT"), ("0020|000e", series_uid), ("0020|000d", "1.2.3"),
                           ("0020|0013", str(k + 1)),
                           ("0020|0032", f"-50\\-60\\{-200.0 + k * spacing[2]}"),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0028|0030", f"{spacing[1]}\\{spacing[0]}"),
                           ("0018|0050", str(spacing[2]))]:
            image.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"{series_uid}_{k:03d}.dcm"))
        writer.Execute(image)


def test_dicom_folder(tmp_path):
    hu, _ = ct_and_lesion(shape=(6, 24, 24))
    _write_dicom_series(str(tmp_path / "ct"), hu, "1.2.3.4")
    image = read_image(str(tmp_path / "ct"))
    assert image.GetSize() == (24, 24, 6)
    assert image.GetSpacing()[2] == pytest.approx(2.5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), hu)

    _write_dicom_series(str(tmp_path / "ct"), hu, "1.2.3.5")
    with pytest.raises(InputError, match="holds 2 DICOM series"):
        read_image(str(tmp_path / "ct"), case_id="p7", column="ct_pvp")
    os.makedirs(tmp_path / "empty")
    with pytest.raises(InputError, match="no DICOM series") as info:
        read_image(str(tmp_path / "empty"), case_id="p7", column="ct_pvp")
    assert str(info.value).startswith("case p7, column 'ct_pvp'")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "ct.jpg"
    path.write_bytes(b"\xff\xd8")
    with pytest.raises(InputError, match="unsupported file type"):
        read_image(str(path))


def test_labelmap_selection(tmp_path):
    labels = np.zeros((6, 20, 20), np.uint8)
    labels[1:5, 2:8, 2:8] = 1  # 144 voxels
    labels[1:5, 10:19, 10:19] = 4  # 324 voxels: the largest
    path = str(tmp_path / "labels.nii.gz")
    sitk.WriteImage(make_image(labels), path)
    seg = read_segmentation(path)
    assert [s.label_value for s in seg.segments] == [1, 4]
    assert seg.find().label_value == 4
    assert seg.find("1").label_value == 1 and seg.find(1.0).label_value == 1
    assert sitk.GetArrayFromImage(seg.mask()).sum() == 324


def test_seg_nrrd_round_trip_and_slicer_reads_it(tmp_path):
    import slicer  # slicer-core: Slicer's real MRML classes

    _, labels = ct_and_lesion()
    labels[2:4, 2:5, 2:5] = 2
    image = make_image(labels, spacing=(0.7, 0.7, 2.5), origin=(-12.0, 30.0, -150.0))
    segments = [Segment("Tumor 1", 1, segment_id="Segment_1", color=(1.0, 0.0, 0.0)),
                Segment("Satellite", 2, segment_id="Segment_2", color=(0.0, 1.0, 0.0))]
    path = str(tmp_path / "tumor.seg.nrrd")
    write_seg_nrrd(image, segments, path)

    seg = read_segmentation(path)
    assert [(s.name, s.label_value, s.segment_id) for s in seg.segments] == [
        ("Tumor 1", 1, "Segment_1"), ("Satellite", 2, "Segment_2")]
    assert seg.find("satellite").label_value == 2  # names match case-insensitively
    assert same_geometry(seg.reference, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg.mask("Tumor 1")), labels == 1)

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(path)
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 2
    assert segmentation.GetSegment("Segment_2").GetName() == "Satellite"
    assert segmentation.GetSegment("Segment_1").GetColor() == pytest.approx((1.0, 0.0, 0.0))


def test_multi_layer_seg_nrrd(tmp_path):
    """Overlapping segments live in separate layers (a 4D NRRD): each is read from its own layer."""
    a = np.zeros((5, 10, 10), np.uint8)
    b = np.zeros_like(a)
    a[1:4, 1:6, 1:6] = 1
    b[1:4, 3:9, 3:9] = 1  # overlaps a
    vector = sitk.Compose(make_image(a), make_image(b))
    vector.SetMetaData("Segment0_ID", "A")
    vector.SetMetaData("Segment0_Name", "Tumor")
    vector.SetMetaData("Segment0_LabelValue", "1")
    vector.SetMetaData("Segment0_Layer", "0")
    vector.SetMetaData("Segment1_ID", "B")
    vector.SetMetaData("Segment1_Name", "Liver")
    vector.SetMetaData("Segment1_LabelValue", "1")
    vector.SetMetaData("Segment1_Layer", "1")
    path = str(tmp_path / "layers.seg.nrrd")
    sitk.WriteImage(vector, path)
    seg = read_segmentation(path)
    assert len(seg.layers) == 2
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg.mask("Liver")), b)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(seg.mask("Tumor")), a)
    assert seg.find().name == "Liver"  # the largest


def test_mask_inside_image_respects_direction():
    hu, labels = ct_and_lesion()
    flipped = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
    ct = make_image(hu, origin=(10.0, 10.0, 0.0), direction=flipped)
    same_space = make_image(labels, origin=(10.0, 10.0, 0.0), direction=flipped)
    wrong = make_image(labels, origin=(10.0, 10.0, 0.0))  # identity direction: mirrored into empty space
    assert mask_inside_image(same_space, ct)
    assert not mask_inside_image(wrong, ct)
