"""Feature reproducibility: ICC(2,1) from repeated delineations, or from automatic perturbations of one mask.

ICC(2,1) is Shrout & Fleiss' two-way random-effects, absolute-agreement, single-rater intraclass correlation
(McGraw & Wong's ICC(A,1)): every delineation ("rater") of every case, the raters a random sample. Seeds 000
and 002 kept features with ICC >= 0.75.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

ICC_THRESHOLD = 0.75
ICC_FORM = "ICC(2,1)"


def icc_2_1(ratings):
    """ICC(2,1) of ``ratings`` shaped (subjects, raters) or (subjects, raters, features) -> float or array.

    ICC = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n), from the two-way ANOVA without
    replication (MSR: subjects, MSC: raters, MSE: residual). A feature constant over every subject and
    rater gets NaN (its reproducibility is undefined), never 1.
    """
    x = np.asarray(ratings, np.float64)
    single = x.ndim == 2
    if single:
        x = x[:, :, None]
    n, k = x.shape[:2]
    if n < 2 or k < 2:
        raise ValueError(f"ICC needs at least 2 subjects and 2 raters, got {n} and {k}")
    grand = x.mean(axis=(0, 1))
    row_means = x.mean(axis=1)
    col_means = x.mean(axis=0)
    ss_rows = k * ((row_means - grand) ** 2).sum(0)
    ss_cols = n * ((col_means - grand) ** 2).sum(0)
    ss_total = ((x - grand) ** 2).sum(axis=(0, 1))
    ss_error = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_error / ((n - 1) * (k - 1))
    denominator = msr + (k - 1) * mse + k * (msc - mse) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = np.where(denominator > 0, (msr - mse) / denominator, np.nan)
    return float(icc[0]) if single else icc


def perturbed_masks(mask, seed=0, spacing=(1.0, 1.0, 1.0)):
    """Automatic stand-ins for other readers when only one delineation exists: the mask eroded by one voxel,
    dilated by one voxel, and with a randomised contour (the boundary moved by smooth noise of about one
    voxel). Returns {name: bool array}; ``mask`` is a (z, y, x) bool array."""
    mask = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(3, 1)
    eroded = ndimage.binary_erosion(mask, structure)
    if eroded.sum() == 0:  # a very thin lesion: erode in-plane only
        eroded = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1) * [[[0]], [[1]], [[0]]])
    dilated = ndimage.binary_dilation(mask, structure)
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, float)[::-1]  # (z, y, x)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    signed = (inside - outside) / spacing.min()  # in voxels, positive inside
    noise = ndimage.gaussian_filter(rng.normal(0, 1, mask.shape), sigma=2.0)
    noise *= 1.0 / max(noise.std(), 1e-12)
    randomised = signed + 0.5 + noise > 0
    return {"eroded": eroded, "dilated": dilated, "contour-randomised": randomised}


def icc_table(features, subject="case_id", rater="reader", group=("phase", "family", "feature"),
              threshold=ICC_THRESHOLD):
    """ICC(2,1) per feature from a tidy table (one row per subject, rater and feature, column ``value``).

    Only subjects with every rater count. Returns one row per feature: the group columns, ``icc``,
    ``subjects``, ``raters`` and ``kept`` (icc >= threshold; NaN ICCs are not kept).
    """
    group = list(group)
    table = features.pivot_table(index=group + [subject], columns=rater, values="value", aggfunc="first")
    table = table.dropna()
    raters = list(table.columns)
    rows = []
    for key, block in table.groupby(level=list(range(len(group))), sort=False):
        values = block.to_numpy()
        icc = icc_2_1(values) if len(values) >= 2 and len(raters) >= 2 else np.nan
        rows.append(dict(zip(group, key if isinstance(key, tuple) else (key,)),
                         icc=icc, subjects=len(values), raters=len(raters)))
    out = pd.DataFrame(rows, columns=group + ["icc", "subjects", "raters"])
    out["kept"] = out["icc"] >= threshold
    return out
