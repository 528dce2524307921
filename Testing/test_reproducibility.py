"""ICC(2,1) against the published Shrout & Fleiss example, mask perturbations, and the per-feature ICC table."""

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib.imaging.reproducibility import icc_2_1, icc_table, perturbed_masks

# Shrout & Fleiss (1979), Table 2: six targets rated by four judges; they report ICC(2,1) = 0.29.
SHROUT_FLEISS = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])


def test_icc_2_1_matches_shrout_fleiss():
    assert icc_2_1(SHROUT_FLEISS) == pytest.approx(0.2898, abs=5e-4)


def test_icc_is_vectorised_and_behaves_at_the_extremes():
    rng = np.random.default_rng(0)
    subjects = rng.normal(size=(30, 1, 1))
    ratings = np.concatenate([
        np.repeat(subjects, 2, axis=1),                                     # perfect agreement
        subjects + rng.normal(0, 3, (30, 2, 1)),                            # mostly noise
        np.repeat(subjects, 2, axis=1) + np.array([0.0, 5.0])[None, :, None],  # a systematic offset
        np.ones((30, 2, 1)),                                                 # constant
    ], axis=2)
    icc = icc_2_1(ratings)
    assert icc[0] == pytest.approx(1.0)
    assert icc[1] < 0.3
    assert icc[2] < 0.2  # absolute agreement penalises the offset (consistency would not)
    assert np.isnan(icc[3])
    assert icc[0] == pytest.approx(icc_2_1(ratings[:, :, 0]))


def test_perturbed_masks_differ_by_about_one_voxel():
    z, y, x = np.indices((20, 40, 40))
    mask = (z - 10) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 64
    masks = perturbed_masks(mask, seed=1)
    assert set(masks) == {"eroded", "dilated", "contour-randomised"}
    assert (masks["eroded"] <= mask).all() and (masks["dilated"] >= mask).all()
    assert masks["eroded"].sum() < mask.sum() < masks["dilated"].sum()
    changed = masks["contour-randomised"] ^ mask
    assert 0.02 * mask.sum() < changed.sum() < 0.6 * mask.sum()
    np.testing.assert_array_equal(perturbed_masks(mask, seed=1)["contour-randomised"], masks["contour-randomised"])


def test_icc_table_filters_at_the_threshold():
    rng = np.random.default_rng(3)
    rows = []
    for case in range(12):
        truth = rng.normal()
        for reader in ("seg", "seg_r2"):
            rows.append((f"c{case}", reader, "stable", truth + rng.normal(0, 0.05)))
            rows.append((f"c{case}", reader, "noisy", rng.normal()))
    table = pd.DataFrame(rows, columns=["case_id", "reader", "feature", "value"]).assign(phase="ct_ap", family="radiomics")
    icc = icc_table(table).set_index("feature")
    assert bool(icc.loc["stable", "kept"]) and not bool(icc.loc["noisy", "kept"])
    assert icc.loc["stable", "subjects"] == 12 and icc.loc["stable", "raters"] == 2
