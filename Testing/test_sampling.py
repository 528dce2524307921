"""The four published lesion samplers and the training augmentations."""

import numpy as np
import pytest
from scipy import ndimage

from TACEPredictLib.imaging.sampling import (Augmenter, centre_patch, ct_mask_patch, inside_patches, largest_slice,
                                             resample_affine, slice_boxes, to_three_channels)


def _lesion(shape=(9, 300, 300), centre=(4, 150, 170), radii=(3, 40, 30)):
    z, y, x = np.indices(shape)
    d = sum(((a - c) / r) ** 2 for a, c, r in zip((z, y, x), centre, radii))
    mask = d <= 1
    ct = np.where(mask, 120.0, 40.0) + (x % 7)  # a pattern that tells positions apart
    return ct.astype(np.float32), mask


def test_largest_slice_and_centre_patch():
    ct, mask = _lesion()
    assert largest_slice(mask) == 4
    patch = centre_patch([ct, ct - 10], mask)
    assert patch.array.shape == (2, 224, 224)  # phases stacked as channels
    assert patch.slice_index == 4 and patch.box == (150 - 112, 170 - 112, 150 + 112, 170 + 112)
    np.testing.assert_array_equal(patch.array[0], ct[4, 38:262, 58:282])
    np.testing.assert_array_equal(patch.array[1], patch.array[0] - 10)


def test_centre_patch_pads_past_the_image_edge():
    ct, mask = _lesion(shape=(5, 120, 120), centre=(2, 60, 30), radii=(2, 10, 10))
    patch = centre_patch(ct, mask)
    assert patch.array.shape == (1, 224, 224)
    assert patch.array[0, 0, 0] == ct.min()  # padding: the darkest value, not garbage
    assert patch.array[0, 112, 112] == ct[2, 60, 30]


def test_inside_patches_lie_entirely_inside_the_roi():
    ct, mask = _lesion()
    patches = inside_patches(ct, mask)
    assert [p.slice_index for p in patches] == [3, 4, 5]  # the largest slice and its two neighbours
    for p in patches:
        row0, col0, row1, col1 = p.box
        assert mask[p.slice_index, row0:row1, col0:col1].all()
        assert row1 - row0 >= 20 and p.array.shape == (1, 224, 224)
        assert p.array.min() >= 120  # nothing of the surrounding liver (40 HU + pattern < 47)


def test_slice_boxes_cover_every_tumour_slice():
    ct, mask = _lesion()
    patches = slice_boxes(ct, mask)
    assert [p.slice_index for p in patches] == [z for z in range(mask.shape[0]) if mask[z].any()]
    for p in patches:
        assert p.array.shape == (1, 128, 128)
        rows, cols = np.nonzero(mask[p.slice_index])
        row0, col0, row1, col1 = p.box
        assert row0 <= rows.min() - 5 and row1 >= rows.max() + 6 and col0 <= cols.min() - 5
        assert row1 - row0 == col1 - col0  # squared box: the lesion keeps its shape


def test_phases_become_three_channels():
    one = np.zeros((1, 4, 4))
    assert to_three_channels(one).shape == (3, 4, 4)
    assert to_three_channels(np.zeros((2, 4, 4))).shape == (3, 4, 4)
    with pytest.raises(ValueError, match="at most three phases"):
        to_three_channels(np.zeros((4, 4, 4)))


def test_augmenter_changes_training_batches_reproducibly():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(4, 2, 32, 32)).astype(np.float32)
    augment = Augmenter(shift=0.1, shear_deg=10, zoom=0.1, noise_variance=0.1)
    first = augment(batch, np.random.default_rng(5))
    again = augment(batch, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)
    assert first.shape == batch.shape and not np.allclose(first, batch)
    # The batched resampling is scipy's per-image affine_transform (bilinear, edges extended).
    transforms = [augment._affine((40, 32), np.random.default_rng(k)) for k in range(3)]
    images = rng.normal(size=(3, 2, 40, 32)).astype(np.float32)
    expected = np.stack([np.stack([ndimage.affine_transform(c, m, offset=o, order=1, mode="nearest") for c in image])
                         for image, (m, o) in zip(images, transforms)])
    np.testing.assert_allclose(resample_affine(images, transforms), expected, atol=1e-4)
    # Flips and quarter turns alone only move pixels: the values are the same set.
    moved = Augmenter()(batch, np.random.default_rng(1))
    np.testing.assert_allclose(np.sort(moved.ravel()), np.sort(batch.ravel()))


def test_ct_mask_patch_is_the_largest_slices_lesion_box_with_its_mask():
    """Seed 002's CNN input: the CT and the ROI mask of the largest tumour slice, 224 x 224."""
    ct, mask = _lesion()
    patch = ct_mask_patch(ct, mask)
    assert patch.array.shape == (2, 224, 224) and patch.slice_index == 4 and patch.kind == "ct-mask"
    row0, col0, row1, col1 = patch.box
    rows, cols = np.nonzero(mask[4])
    assert row0 <= rows.min() - 5 and row1 >= rows.max() + 6 and row1 - row0 == col1 - col0
    lesion = patch.array[1]
    assert set(np.unique(lesion)) == {0.0, 1.0}  # the mask stays a mask after resizing
    # the mask channel marks the lesion in the CT channel: 120 HU (+ pattern) inside, 40 (+ pattern) outside
    inside = ndimage.binary_erosion(lesion == 1, iterations=3)
    outside = ndimage.binary_erosion(lesion == 0, iterations=3)
    assert patch.array[0][inside].min() > 110 and patch.array[0][outside].max() < 56
    # the lesion's share of the box is kept (the box is its extent plus 5 pixels, squared)
    expected = mask[4].sum() / (row1 - row0) ** 2
    assert lesion.mean() == pytest.approx(expected, rel=0.05)


def test_balancing_copies_even_the_classes_with_distinct_copies():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(13, 1, 8, 8)).astype(np.float32)
    y = np.array([0] * 10 + [1] * 3)
    copies, labels, sources = Augmenter.balancing_copies(x, y, np.random.default_rng(1))
    assert len(copies) == 7 and (labels == 1).all() and set(sources) == {10, 11, 12}  # 3 -> 10, every one used
    for copy, source in zip(copies, sources):
        assert copy.shape == x[source].shape and not np.array_equal(copy, x[source])
        assert sorted(copy.ravel()) == pytest.approx(sorted(x[source].ravel()))  # flipped / rotated, not new values
    # restricted to some rows, and a threshold: classes above it are left as they are (seed 003's 80 %)
    rows = np.ones(13, bool)
    rows[:2] = False  # 8 vs 3
    _, labels, sources = Augmenter.balancing_copies(x, y, np.random.default_rng(1), rows=rows)
    assert len(labels) == 5 and rows[sources].all()
    assert len(Augmenter.balancing_copies(x, y, np.random.default_rng(1), below=0.25)[1]) == 0
