"""pyradiomics 3.0.1's first-order features for a batch of images sharing one ROI.

``values`` [B, N]: the ROI's voxel values of each image (float64; pyradiomics casts the cropped image to float),
``binned`` [B, N]: their gray levels (``preprocess.discretize``), ``shift`` [B]: each image's voxelArrayShift,
``voxel_volume``: the product of the image's spacing (TotalEnergy).

pyradiomics' conventions, kept here:
- Energy, TotalEnergy and RootMeanSquared use the values shifted by voxelArrayShift; nothing else does.
- Entropy and Uniformity use the binned histogram: p_i = count_i / N over the gray levels present,
  Entropy = -sum p_i log2(p_i + eps) with eps = numpy.spacing(1) (2.2e-16).
- Percentiles: numpy's default ('linear') method, with numpy's own lerp (``a + (b - a) t``, or
  ``b - (b - a)(1 - t)`` when t >= 0.5) and virtual index (N - 1) q; the median is the mean of the middle two.
- Variance is ``std ** 2``; StandardDeviation is population std (deprecated, computed when named).
- Skewness m3 / m2^1.5 and Kurtosis m4 / m2^2 with m2 replaced by 1 for a flat region (so they are 0 there),
  moments taken around the mean as ``mean((x - mean) ** k)``.
- RobustMeanAbsoluteDeviation: mean absolute deviation of the voxels inside [P10, P90] (both included) from
  their own mean.

All features of all B images come out of a handful of batched reductions and one sort; no per-image Python
loop and no host synchronisation.
"""

from __future__ import annotations

import numpy as np
import torch

EPS = float(np.spacing(1))


def _lerp(a, b, t):
    diff = b - a
    low = a + diff * t
    high = b - diff * (1 - t)
    return torch.where(t >= 0.5, high, low)


def _sort_rows(values):
    """Each row of ``values [B, N]`` in increasing order. On the CPU numpy's sort (vectorised, about 5x faster
    than torch's there on one thread; the sort was most of first order's time); torch's on other devices. A sort
    is a sort: the same values in the same order either way."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sort(values.numpy(), axis=1))
    return torch.sort(values, dim=1).values


def _percentile(sorted_values, q):
    """numpy.percentile(..., q, method='linear') along dim 1 of already sorted values."""
    n = sorted_values.shape[1]
    virtual = (n - 1) * (np.true_divide(q, 100.0))
    previous = int(np.floor(virtual))
    if virtual >= n - 1:
        return sorted_values[:, -1]
    gamma = virtual - previous
    a = sorted_values[:, previous]
    b = sorted_values[:, previous + 1]
    t = torch.full_like(a, gamma)
    return _lerp(a, b, t)


#: On the CPU, images are processed a few at a time so that every temporary stays under ~2 MB: larger blocks
#: are fresh memory maps for the allocator, and their page faults cost more than the arithmetic (first order
#: of 13 images of a 10 cm lesion: 0.97 s of CPU in one block, 0.36 s one image at a time).
CPU_BLOCK_BYTES = 2 * 2 ** 20


def firstorder_features(values, binned, names, shift, voxel_volume, levels=None):
    """{feature name: tensor [B]} for the requested ``names`` (pyradiomics' firstorder names). ``levels``: an
    upper bound of the gray levels (the longest bin-edge list + 1), known on the host, which saves reading
    ``binned.max()`` back from the device."""
    rows = max(1, CPU_BLOCK_BYTES // max(1, values.shape[1] * values.element_size()))
    if values.device.type != "cpu" or rows >= values.shape[0]:
        return _firstorder(values, binned, names, shift, voxel_volume, levels)
    parts = [_firstorder(values[b0:b0 + rows], binned[b0:b0 + rows], names, shift[b0:b0 + rows], voxel_volume,
                         levels) for b0 in range(0, values.shape[0], rows)]
    return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}


def _firstorder(values, binned, names, shift, voxel_volume, levels=None):
    names = list(names)
    out = {}
    n = values.shape[1]
    need = set(names)
    shifted = None
    if need & {"Energy", "TotalEnergy", "RootMeanSquared"}:
        shifted = values + shift.to(values.dtype).unsqueeze(1)
        energy = (shifted * shifted).sum(1)
    mean = values.mean(1)
    centred = values - mean.unsqueeze(1)
    sorted_values = None
    if need & {"10Percentile", "90Percentile", "InterquartileRange", "Median", "RobustMeanAbsoluteDeviation",
               "Minimum", "Maximum", "Range"}:
        sorted_values = _sort_rows(values)
    percentiles = {}

    def percentile(q):
        if q not in percentiles:
            percentiles[q] = _percentile(sorted_values, q)
        return percentiles[q]

    m2 = squares = None
    if need & {"Skewness", "Kurtosis", "Variance", "StandardDeviation"}:
        squares = centred * centred
        m2 = squares.mean(1)
    p = None
    if need & {"Entropy", "Uniformity"}:
        if levels is None:
            levels = int(binned.max().item()) + 1 if binned.numel() else 1
        batch = values.shape[0]
        offsets = torch.arange(batch, device=values.device).unsqueeze(1) * levels
        counts = torch.bincount((binned + offsets).reshape(-1), minlength=batch * levels)
        p = counts.reshape(batch, levels).to(values.dtype) / n
    for name in names:
        if name == "Energy":
            out[name] = energy
        elif name == "TotalEnergy":
            out[name] = energy * voxel_volume
        elif name == "RootMeanSquared":
            out[name] = torch.sqrt(energy / n)
        elif name == "Entropy":
            present = p > 0
            out[name] = -1.0 * torch.where(present, p * torch.log2(p + EPS), torch.zeros_like(p)).sum(1)
        elif name == "Uniformity":
            out[name] = (p * p).sum(1)
        elif name == "Minimum":
            out[name] = sorted_values[:, 0]
        elif name == "Maximum":
            out[name] = sorted_values[:, -1]
        elif name == "Range":
            out[name] = sorted_values[:, -1] - sorted_values[:, 0]
        elif name == "Mean":
            out[name] = mean
        elif name == "Median":
            half = n // 2
            if n % 2:
                out[name] = sorted_values[:, half]
            else:
                out[name] = (sorted_values[:, half - 1] + sorted_values[:, half]) / 2
        elif name == "10Percentile":
            out[name] = percentile(10)
        elif name == "90Percentile":
            out[name] = percentile(90)
        elif name == "InterquartileRange":
            out[name] = percentile(75) - percentile(25)
        elif name == "MeanAbsoluteDeviation":
            out[name] = centred.abs().mean(1)
        elif name == "RobustMeanAbsoluteDeviation":
            low, high = percentile(10).unsqueeze(1), percentile(90).unsqueeze(1)
            inside = ((values - low) >= 0) & ((values - high) <= 0)
            weight = inside.to(values.dtype)
            count = weight.sum(1)
            robust_mean = (values * weight).sum(1) / count
            out[name] = ((values - robust_mean.unsqueeze(1)).abs() * weight).sum(1) / count
        elif name == "StandardDeviation":
            out[name] = torch.sqrt(m2)
        elif name == "Variance":
            out[name] = torch.sqrt(m2) ** 2
        elif name in ("Skewness", "Kurtosis"):
            safe = torch.where(m2 == 0, torch.ones_like(m2), m2)
            # pyradiomics: numpy.power(x - mean, 3 or 4); products here (the same to ~1 ulp)
            if name == "Skewness":
                out[name] = (squares * centred).mean(1) / safe ** 1.5
            else:
                out[name] = (squares * squares).mean(1) / safe ** 2.0
        else:
            raise KeyError(f"unknown firstorder feature {name}")
    return out
