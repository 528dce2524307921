"""The demo cohort: deterministic, CT-like, and carrying the documented ground-truth signal."""

import json
import os
import threading
import warnings

import numpy as np
import pandas as pd
import SimpleITK as sitk

from TACEPredictLib import SYNTHETIC_DATA_NOTICE
from TACEPredictLib.data.images import read_segmentation
from TACEPredictLib.data.demo_cohort import draw_case, generate_cohort, outcomes


def _case_arrays(root, row):
    ap = sitk.ReadImage(os.path.join(root, row["ct_ap"]))
    pvp = sitk.ReadImage(os.path.join(root, row["ct_pvp"]))
    seg = read_segmentation(os.path.join(root, row["seg"]))
    mask = sitk.GetArrayFromImage(seg.mask(row["seg_label"])).astype(bool)
    return ap, sitk.GetArrayFromImage(ap), sitk.GetArrayFromImage(pvp), mask


def test_deterministic_whatever_the_workers(tmp_path):
    a = generate_cohort(str(tmp_path / "a"), cases=3, seed=11, workers=1)
    # the workers are spawned, not forked from this (multi-threaded) process: Python 3.12+ warns about such a fork
    # (a forked child can hang on the parent's thread pools)
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            b = generate_cohort(str(tmp_path / "b"), cases=3, seed=11, workers=2)
    finally:
        stop.set()
        waiting.join()
    assert not [w for w in caught if "fork()" in str(w.message)], [str(w.message) for w in caught]
    c = generate_cohort(str(tmp_path / "c"), cases=3, seed=12, workers=1)
    ma, mb, mc = (pd.read_csv(p) for p in (a, b, c))
    pd.testing.assert_frame_equal(ma, mb)
    assert not ma.drop(columns=["case_id", "ct_ap", "ct_pvp", "ct_dp", "seg", "seg_label", "seg_r2"]).equals(
        mc.drop(columns=["case_id", "ct_ap", "ct_pvp", "ct_dp", "seg", "seg_label", "seg_r2"]))
    for rel in ma["ct_ap"]:
        ia = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(tmp_path, "a", rel)))
        ib = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(tmp_path, "b", rel)))
        np.testing.assert_array_equal(ia, ib)


def test_looks_like_contrast_liver_ct(demo_cohort):
    root = os.path.dirname(demo_cohort)
    manifest = pd.read_csv(demo_cohort)
    assert set(manifest["seg"].str.endswith(".seg.nrrd")) == {True, False}  # both formats
    for _, row in manifest.iterrows():
        image, ap, pvp, mask = _case_arrays(root, row)
        spacing = image.GetSpacing()
        assert 0.65 < spacing[0] == spacing[1] < 0.9 and spacing[2] in (2.5, 3.0, 5.0)
        assert np.abs(image.GetOrigin()).min() > 1.0  # not at the origin
        assert ap.dtype == np.int16 and ap.min() <= -950  # air outside the body
        assert np.percentile(ap, 99.9) > 250  # bone / aorta
        ring = sitk.GetArrayFromImage(sitk.BinaryDilate(sitk.GetImageFromArray(mask.astype(np.uint8)),
                                                        [6, 6, 1])).astype(bool) & ~mask
        liver_ap = np.median(ap[ring & (ap > 30) & (ap < 100)])
        assert 45 < liver_ap < 90  # liver parenchyma, arterial phase
        assert np.percentile(ap[mask], 75) > liver_ap + 10  # arterial hyper-enhancement (viable part)
        assert np.median(pvp[mask]) < np.median(pvp[ring & (pvp > 60) & (pvp < 150)])  # portal wash-out
        assert mask.sum() > 500


def test_measured_size_matches_the_mask(demo_cohort):
    root = os.path.dirname(demo_cohort)
    manifest = pd.read_csv(demo_cohort)
    for _, row in manifest.iterrows():
        seg = read_segmentation(os.path.join(root, row["seg"]))
        mask = seg.mask(row["seg_label"])
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.SetComputeFeretDiameter(True)
        stats.Execute(mask)
        feret = stats.GetFeretDiameter(1)
        assert abs(feret - row["tumor_size_mm"]) < 0.25 * row["tumor_size_mm"] + 6


def test_second_reader_agrees_but_differs(demo_cohort):
    root = os.path.dirname(demo_cohort)
    for _, row in pd.read_csv(demo_cohort).iterrows():
        m1 = sitk.GetArrayFromImage(read_segmentation(os.path.join(root, row["seg"])).mask(row["seg_label"]))
        m2 = sitk.GetArrayFromImage(read_segmentation(os.path.join(root, row["seg_r2"])).mask(row["seg_label"]))
        dice = 2 * np.sum(m1 & m2) / (m1.sum() + m2.sum())
        assert 0.8 < dice < 1.0


def test_provenance_files(demo_cohort):
    root = os.path.dirname(demo_cohort)
    meta = json.load(open(os.path.join(root, "cohort.json")))
    assert meta["notice"] == SYNTHETIC_DATA_NOTICE and meta["seed"] == 3 and meta["cases"] == 6
    truth = pd.read_csv(os.path.join(root, "ground_truth.csv"))
    assert list(truth["case_id"]) == list(pd.read_csv(demo_cohort)["case_id"])
    assert {"diameter_mm", "necrosis", "heterogeneity", "enhancement", "lp_os"} <= set(truth.columns)


def _harrell_c(time, event, risk):
    concordant = comparable = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        later = time > time[i]
        comparable += later.sum()
        concordant += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return concordant / comparable


def _auc(score, label):
    pos, neg = score[label == 1], score[label == 0]
    return ((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_ground_truth_carries_image_and_clinical_signal():
    """Without rendering: the outcome model gives learnable, not trivial, signal from images and clinic."""
    rows = []
    for i in range(600):
        latent, clinical = draw_case(i, 5)
        out, lp = outcomes(i, 5, latent, clinical)
        rows.append({**latent, **clinical, **out, **lp})
    df = pd.DataFrame(rows)
    t, e = df["os_days"].to_numpy(), df["os_event"].to_numpy()
    image_risk = (0.55 * df.zs + 0.40 * df.zh + 0.25 * df.zn - 0.40 * df.ze).to_numpy()
    clinical_risk = (0.7 * df.portal_vein_invasion + 0.45 * (df.child_pugh == "B")
                     + 0.35 * (df.ecog >= 1) + 0.3 * np.log10(df.afp_ng_ml)).to_numpy()
    assert 0.3 < 1 - e.mean() < 0.6  # censoring
    assert 0.68 < _harrell_c(t, e, image_risk) < 0.9
    assert 0.58 < _harrell_c(t, e, clinical_risk) < 0.8
    assert _harrell_c(t, e, df["lp_os"].to_numpy()) > _harrell_c(t, e, image_risk)

    objective = df["response"].isin(["CR", "PR"]).astype(int).to_numpy()
    shares = df["response"].value_counts(normalize=True)
    assert all(0.08 < shares[k] < 0.5 for k in ["CR", "PR", "SD", "PD"])
    assert 0.8 < _auc(df["lp_response"].to_numpy(), objective) < 0.98
    apd = df["aggressive_pd"].to_numpy()
    assert 0.1 < apd.mean() < 0.45
    assert 0.75 < _auc(df["lp_aggressive_pd"].to_numpy(), apd) < 0.95
