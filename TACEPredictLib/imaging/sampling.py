"""Lesion sampling: the 2D patches each published method feeds its network, and training augmentations.

Inputs are numpy volumes (z, y, x) on one grid: one HU volume per phase (stacked as channels, in the order
given) and the lesion mask. Every sampler returns ``Patch`` objects that remember where they came from
(slice and pixel box), so that a heat map computed on a patch can be put back into the CT
(``TACEPredictLib.imaging.deep_features.heatmap_volume``).

a. ``centre_patch``     largest-area axial slice, 224x224 centred on the ROI centroid (seeds 000, 001).
b. ``inside_patches``   squares entirely inside the ROI on the largest slice and its two neighbours, one
                        per slice (about three per patient), resized to 224x224 (seed 003).
c. ``slice_boxes``      every tumour slice: the lesion's box on that slice plus 5 pixels, resized to
                        128x128 (seed 004).
d. ``ct_mask_patch``    the largest slice's lesion box plus 5 pixels, resized to 224x224, as two channels: the
                        CT (HU) and the ROI mask (seed 002's CNN: "a CT image and mask of the ROI ... from the
                        largest tumor layer ... 224 x 224 x 3"; ``models.training.stack_patches`` makes the
                        three input channels: windowed CT, mask, CT inside the mask).

Augmentations (``Augmenter``) are for training only: feature extraction never augments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage



@dataclass
class Patch:
    """A (channels, height, width) float32 array and where it came from: ``slice_index`` on the volume's
    z axis and the source box ``(row0, col0, row1, col1)`` in pixels (end exclusive; it may reach past the
    image, where the patch is padded)."""
    array: np.ndarray
    slice_index: int
    box: tuple
    kind: str


def _stack(volumes):
    volumes = [np.asarray(v) for v in (volumes if isinstance(volumes, (list, tuple)) else [volumes])]
    shapes = {v.shape for v in volumes}
    if len(shapes) != 1:
        raise ValueError(f"phases must share one grid, got shapes {sorted(shapes)}")
    return np.stack(volumes).astype(np.float32)  # (C, z, y, x)


def slice_areas(mask):
    """Lesion pixels per axial slice."""
    return np.asarray(mask, bool).reshape(mask.shape[0], -1).sum(1)


def largest_slice(mask):
    """Index of the axial slice with the largest lesion area."""
    areas = slice_areas(mask)
    if areas.max() == 0:
        raise ValueError("the mask is empty")
    return int(np.argmax(areas))


def _cut(stack2d, row0, col0, row1, col1, pad):
    """stack2d[:, row0:row1, col0:col1] with out-of-image pixels set to ``pad`` (per channel)."""
    channels, height, width = stack2d.shape
    out = np.empty((channels, row1 - row0, col1 - col0), np.float32)
    out[:] = np.asarray(pad, np.float32).reshape(-1, 1, 1)
    r0, c0, r1, c1 = max(row0, 0), max(col0, 0), min(row1, height), min(col1, width)
    if r1 > r0 and c1 > c0:
        out[:, r0 - row0:r1 - row0, c0 - col0:c1 - col0] = stack2d[:, r0:r1, c0:c1]
    return out


def resize(stack2d, size, order=1):
    """Resize (C, h, w) to (C, size, size) (bilinear by default)."""
    channels, height, width = stack2d.shape
    if (height, width) == (size, size):
        return stack2d.astype(np.float32)
    factors = (1.0, size / height, size / width)
    out = ndimage.zoom(stack2d, factors, order=order, mode="nearest", grid_mode=True)
    return out[:, :size, :size].astype(np.float32)


def centre_patch(volumes, mask, size=224):
    """(a) A ``size`` x ``size`` patch of the largest slice, centred on the lesion's centroid there."""
    stack = _stack(volumes)
    mask = np.asarray(mask, bool)
    z = largest_slice(mask)
    rows, cols = np.nonzero(mask[z])
    centre_r, centre_c = int(round(rows.mean())), int(round(cols.mean()))
    row0, col0 = centre_r - size // 2, centre_c - size // 2
    pad = stack.reshape(stack.shape[0], -1).min(1)
    array = _cut(stack[:, z], row0, col0, row0 + size, col0 + size, pad)
    return Patch(array, z, (row0, col0, row0 + size, col0 + size), "centre")


def _largest_inside_square(mask2d):
    """(row0, col0, side) of the largest axis-aligned square of pixels all inside ``mask2d``."""
    # Classic dynamic programme: side of the largest all-ones square ending at each pixel.
    height, width = mask2d.shape
    best = np.zeros((height + 1, width + 1), np.int32)
    top = (0, 0, 0)
    for r in range(height):
        row = mask2d[r]
        if not row.any():
            continue
        for c in np.nonzero(row)[0]:
            side = 1 + min(best[r, c + 1], best[r + 1, c], best[r, c])
            best[r + 1, c + 1] = side
            if side > top[2]:
                top = (r - side + 1, c - side + 1, int(side))
    return top


def inside_patches(volumes, mask, size=224, neighbours=1, min_side=6):
    """(b) On the largest slice and its ``neighbours`` slices either side: the largest square entirely inside
    the ROI (at least ``min_side`` pixels), resized to ``size`` x ``size``. One patch per usable slice.

    A thin or irregular lesion in which no ``min_side`` square fits on those slices (a rim, a band one or two
    pixels wide) degrades to one patch: the largest square that does fit on any of its slices (at least one
    pixel, as every non-empty lesion has one), on the slice where that square is largest; such a patch is
    (nearly) uniform, so its features describe the lesion's mean attenuation only. Its ``kind`` is
    ``inside-small``. Every lesion ``validate`` accepts therefore yields patches."""
    stack = _stack(volumes)
    mask = np.asarray(mask, bool)
    z0 = largest_slice(mask)
    patches = []
    for z in range(max(0, z0 - neighbours), min(mask.shape[0], z0 + neighbours + 1)):
        row0, col0, side = _largest_inside_square(mask[z])
        if side < min_side:
            continue
        cut = stack[:, z, row0:row0 + side, col0:col0 + side]
        patches.append(Patch(resize(cut, size), z, (row0, col0, row0 + side, col0 + side), "inside"))
    if not patches:
        best = (0, None, None)
        for z in np.nonzero(slice_areas(mask))[0]:
            row0, col0, side = _largest_inside_square(mask[z])
            if side > best[0]:
                best = (side, int(z), (row0, col0))
        side, z, (row0, col0) = int(best[0]), best[1], (int(best[2][0]), int(best[2][1]))
        cut = stack[:, z, row0:row0 + side, col0:col0 + side]
        patches.append(Patch(resize(cut, size), z, (row0, col0, row0 + side, col0 + side), "inside-small"))
    return patches


def _box_patch(stack, mask2d, z, margin, size, kind):
    rows, cols = np.nonzero(mask2d)
    row0, row1 = int(rows.min()) - margin, int(rows.max()) + 1 + margin
    col0, col1 = int(cols.min()) - margin, int(cols.max()) + 1 + margin
    # Square the box around its centre so that resizing keeps the lesion's shape.
    side = max(row1 - row0, col1 - col0)
    row0 -= (side - (row1 - row0)) // 2
    col0 -= (side - (col1 - col0)) // 2
    pad = stack.reshape(stack.shape[0], -1).min(1)
    cut = _cut(stack[:, z], row0, col0, row0 + side, col0 + side, pad)
    return Patch(resize(cut, size), z, (row0, col0, row0 + side, col0 + side), kind)


def slice_boxes(volumes, mask, margin=5, size=128):
    """(c) Every slice holding lesion: its lesion box plus ``margin`` pixels, squared, resized to ``size``."""
    stack = _stack(volumes)
    mask = np.asarray(mask, bool)
    return [_box_patch(stack, mask[z], z, margin, size, "slice-box")
            for z in np.nonzero(slice_areas(mask))[0]]


def ct_mask_patch(volume, mask, size=224, margin=5):
    """(d) The largest slice's lesion box (plus ``margin`` pixels, squared around its centre) resized to
    ``size`` x ``size``, as two channels: the CT in HU (bilinear) and the ROI mask (resized bilinearly and
    thresholded at 0.5, so it stays 0 / 1). One phase only (``volume`` (z, y, x))."""
    mask = np.asarray(mask, bool)
    z = largest_slice(mask)
    stack = np.stack([np.asarray(volume, np.float32), mask.astype(np.float32)])
    patch = _box_patch(stack, mask[z], z, margin, size, "ct-mask")
    patch.array = np.stack([patch.array[0], (patch.array[1] >= 0.5).astype(np.float32)])
    return patch


def to_three_channels(array):
    """Repeat a one-channel patch to three channels (ImageNet networks); two channels get their mean third."""
    channels = array.shape[0]
    if channels == 3:
        return array
    if channels == 1:
        return np.repeat(array, 3, axis=0)
    if channels == 2:
        return np.concatenate([array, array.mean(0, keepdims=True)])
    raise ValueError(f"cannot map {channels} channels to 3; pick at most three phases")


# -------------------------------------------------------------------------------------------- augmentation

@dataclass
class Augmenter:
    """Random training augmentations from the papers: flips, +-90 degree rotations, shifts, shear, zoom and
    Gaussian noise. Call it on a (N, C, H, W) batch with a numpy Generator; never used at inference.
    ``balancing_copies`` is the class balancing of seeds 002 and 003: fixed, distinct copies of the smaller
    classes' training images, made once before training."""
    flips: bool = True
    rotate90: bool = True
    shift: float = 0.0        # fraction of the size, uniform in +-shift
    shear_deg: float = 0.0
    zoom: float = 0.0         # scale uniform in 1 +- zoom
    noise_variance: float = 0.0

    def __call__(self, batch, rng):
        batch = np.array(batch, np.float32, copy=True)
        for i in range(batch.shape[0]):
            image = batch[i]
            if self.flips and rng.uniform() < 0.5:
                image = image[:, :, ::-1]
            if self.flips and rng.uniform() < 0.5:
                image = image[:, ::-1, :]
            if self.rotate90:
                image = np.rot90(image, k=int(rng.integers(0, 4)), axes=(1, 2))
            batch[i] = image
        if self.shift or self.shear_deg or self.zoom:
            batch = resample_affine(batch, [self._affine(batch.shape[2:], rng) for _ in range(batch.shape[0])])
        if self.noise_variance > 0:
            batch += np.sqrt(self.noise_variance) * rng.standard_normal(batch.shape, dtype=np.float32)
        return batch

    @staticmethod
    def distinct_copy(image, rng):
        """A (C, H, W) copy that differs from the image: rotated by 90, 180 or 270 degrees or flipped left-right,
        with equal odds (seed 003's class balancing)."""
        if rng.uniform() < 0.5:
            return np.rot90(image, k=int(rng.integers(1, 4)), axes=(1, 2))
        return image[:, :, ::-1]

    @staticmethod
    def balancing_copies(x, y, rng, rows=None, below=1.0, classes=None):
        """Class balancing by augmentation (seeds 002 and 003): for every class with fewer than ``below`` times
        the largest class's rows (among ``rows``, a boolean mask; default all), as many ``distinct_copy`` copies
        of its rows (drawn at random, with replacement only when the class has too few) as bring it to the
        largest class's count. Returns ``(copies (M, C, H, W), their classes (M,), their source rows (M,))``,
        empty when nothing needs copies."""
        y = np.asarray(y)
        rows = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
        classes = int(classes or (y.max() + 1 if len(y) else 0))
        counts = np.bincount(y[rows], minlength=classes)
        copies, labels, sources = [], [], []
        for cls in range(classes):
            members = np.flatnonzero(rows & (y == cls))
            need = int(counts.max() - counts[cls])
            if counts[cls] >= below * counts.max() or not len(members) or need <= 0:
                continue
            chosen = rng.choice(members, need, replace=need > len(members))
            copies += [Augmenter.distinct_copy(x[i], rng) for i in chosen]
            labels.append(np.full(need, cls))
            sources.append(chosen)
        if not copies:
            return np.zeros((0,) + tuple(np.shape(x)[1:]), np.float32), np.zeros(0, int), np.zeros(0, int)
        return np.stack(copies).astype(np.float32), np.concatenate(labels), np.concatenate(sources)

    @staticmethod
    def random_flips(batch):
        """Left-right, then up-down flips of a torch batch (N, ..., H, W), each case with probability 1/2 and the
        same for all its channels and phases; drawn from torch's generator on the batch's device (DLOP-Combin's
        fine-tuning)."""
        import torch
        for axis in (-1, -2):
            flip = torch.rand(len(batch), device=batch.device) < 0.5
            batch = torch.where(flip.view((-1,) + (1,) * (batch.dim() - 1)), batch.flip(axis), batch)
        return batch

    def _affine(self, shape, rng):
        """A random (matrix, offset) in array-index space: output pixel p samples the input at matrix p + offset."""
        size = np.array(shape, float)
        scale = 1.0 + rng.uniform(-self.zoom, self.zoom)
        shear = np.tan(np.radians(rng.uniform(-self.shear_deg, self.shear_deg)))
        matrix = np.array([[1.0, shear], [0.0, 1.0]]) / scale
        centre = (size - 1) / 2
        return matrix, centre - matrix @ centre + rng.uniform(-self.shift, self.shift, 2) * size


def resample_affine(batch, transforms):
    """Bilinear resampling of a (N, C, H, W) batch, one (matrix, offset) per image in (row, column) index
    space, edges extended; what ``scipy.ndimage.affine_transform(order=1, mode="nearest")`` does per channel,
    done for the whole batch at once by torch's ``grid_sample`` (the per-image loop was a quarter of an epoch)."""
    from .deep_features import _torch
    torch = _torch()
    half = (np.array(batch.shape[2:], float) - 1) / 2  # index i <-> normalised i / half - 1 (align_corners)
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])  # (row, column) <-> grid_sample's (x, y)
    theta = np.empty((len(transforms), 2, 3), np.float32)
    for i, (matrix, offset) in enumerate(transforms):
        linear = matrix * half[None, :] / half[:, None]
        shift = (matrix @ half + offset) / half - 1
        theta[i, :, :2], theta[i, :, 2] = swap @ linear @ swap, swap @ shift
    images = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
    grid = torch.nn.functional.affine_grid(torch.from_numpy(theta), list(images.shape), align_corners=True)
    out = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.numpy()


# -------------------------------------------------------------------------------------------- patch sets

# What each image CNN reads (name -> phase, sampler). Stored by the extraction per case as HU (int16), so the
# networks train from a cache instead of re-reading and re-registering every CT.
PATCH_SETS = {
    "centre": ("ct_ap", "largest slice, 224 x 224 centred on the lesion, CT only (the response CNN's input "
                        "before it read the mask as well: its bundles still use it)"),
    "ct_mask": ("ct_ap", "largest slice's lesion box plus 5 pixels, resized to 224 x 224: CT and ROI mask "
                         "(seed 002's CNN)"),
    "inside": ("ct_ap", "largest square inside the ROI on the largest slice and its neighbours, 224 x 224 "
                        "(seed 003's mRECIST network)"),
    "boxes": ("ct_pvp", "every lesion slice's box plus 5 pixels, 128 x 128 (seed 004's Model_D)"),
}


def lesion_patches(case):
    """The patch sets of one loaded case (``preprocess.CaseImages``): {name: (N, 1, H, W) int16 HU}, plus
    ``<name>_slices`` with each patch's slice index (``ct_mask``: (1, 2, H, W), HU and the 0 / 1 mask). A set
    whose phase the case lacks is left out."""
    mask = case.mask_array()
    samplers = {"centre": lambda v: [centre_patch(v, mask)], "inside": lambda v: inside_patches(v, mask),
                "boxes": lambda v: slice_boxes(v, mask), "ct_mask": lambda v: [ct_mask_patch(v, mask)]}
    out = {}
    for name, (phase, _) in PATCH_SETS.items():
        if phase not in case.phases:
            continue
        patches = samplers[name](case.array(phase))
        out[name] = np.clip(np.round(np.stack([p.array for p in patches])), -32768, 32767).astype(np.int16)
        out[name + "_slices"] = np.array([p.slice_index for p in patches], np.int32)
    return out
