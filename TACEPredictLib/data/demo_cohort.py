"""The built-in synthetic TACE demo cohort (``tacepredict phantom``).

Each case is a multi-phase contrast CT of the right upper abdomen (air, fat, muscle, liver, portal vein,
aorta, spine; Hounsfield units; anisotropic spacing; non-identity origin) with one target HCC and 0-2
satellite lesions, its segmentation (a labelmap for odd cases, a Slicer ``.seg.nrrd`` for even ones) and a
second reader's delineation (``seg_r2``), clinical variables and outcomes.

Ground-truth model (documented in docs/demo_cohort.md; the constants live in this module):

* Latent lesion attributes, drawn per case: diameter ``d`` (mm, log-normal, median 45), necrosis fraction
  ``n`` (radius fraction of the non-enhancing core), heterogeneity ``h`` (0..1, texture amplitude),
  arterial enhancement ``e`` (0..1). Standardised: ``zs = (ln d - ln 45)/0.45``, ``zn = (n - 0.22)/0.13``,
  ``zh = (h - 0.5)/0.29``, ``ze = (e - 0.5)/0.29``.
* Rendering: arterial-phase hyper-enhancement ``+20 + 90 e`` HU over the liver, portal/delayed wash-out,
  necrotic core (~20 HU, no enhancement), texture amplitude ``6 + 34 h`` HU, capsule rim in the portal and
  delayed phases (intact: closed rim; non-intact: part of it), nodule-in-nodule, fusion (two confluent
  nodules).
* Outcomes: see ``outcomes()``; images and clinical variables both carry signal, and
  ``ground_truth.csv`` records every latent value and linear predictor for checking what a model learnt.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from .. import SYNTHETIC_DATA_NOTICE, __version__
from .images import Segment, write_seg_nrrd

MATRIX = 192  # in-plane voxels
Z_EXTENT_MM = 72.0
LIVER_HU = {"ct_ap": 68.0, "ct_pvp": 112.0, "ct_dp": 96.0}
PHASES = ("ct_ap", "ct_pvp", "ct_dp")
DELAYED_PHASE_FRACTION = 0.25  # the delayed phase is optional in practice: only some cases have it

# Outcome model coefficients (see outcomes()).
OS_COEF = {"zs": 0.55, "zh": 0.40, "zn": 0.25, "ze": -0.40, "pvi": 0.70, "child_pugh_b": 0.45,
           "ecog_ge1": 0.35, "z_afp": 0.30, "multifocal": 0.25, "objective_response": -0.40}
OS_WEIBULL_SHAPE = 1.3
OS_MEDIAN_DAYS = 700.0
RESPONSE_COEF = {"ze": 1.2, "zs": -0.8, "zh": -0.7, "zn": -0.5, "capsule_intact": 0.5, "pvi": -0.6,
                 "child_pugh_b": -0.3}
RESPONSE_NOISE_SCALE = 0.55  # logistic noise
RESPONSE_CUTS = (1.45, 0.05, -1.25)  # latent score above cut -> CR, PR, SD; below the last -> PD
APD_COEF = {"intercept": -1.6, "size_mm": 0.009, "cirrhosis": 0.7009, "fusion_lesion": 0.5365,
            "capsule_non_intact": -0.4967, "capsule_intact": -1.7083, "nodule_in_nodule": 0.6375,
            "zh": 1.5, "zn": 1.0, "pvi": 0.6}
APD_DAYS = (30.0, 120.0)  # aggressive progression: earliest day, mean delay after it (exponential)


def _smooth_noise(shape, rng, factor):
    """Unit-variance smooth noise: white noise on a grid ``factor`` times coarser, upsampled."""
    coarse = [max(2, int(np.ceil(s / f)) + 1) for s, f in zip(shape, factor)]
    field = rng.standard_normal(coarse).astype(np.float32)
    zoom = [s / c for s, c in zip(shape, coarse)]
    out = ndimage.zoom(field, zoom, order=1, mode="nearest", grid_mode=True)[: shape[0], : shape[1], : shape[2]]
    out -= out.mean()
    return out / (out.std() + 1e-6)


def _ellipsoid(X, Y, Z, centre, radii, angle):
    """Normalised ellipsoid distance (1 on the surface), rotated by ``angle`` about z."""
    dx, dy, dz = X - centre[0], Y - centre[1], Z - centre[2]
    c, s = np.cos(angle), np.sin(angle)
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2 + (dz / radii[2]) ** 2)


def _logistic(x):
    return 1.0 / (1.0 + np.exp(-x))


def child_pugh_score(c, rng):
    """A Child-Pugh score within the case's class: the bilirubin and albumin points the case's values give
    (bilirubin < 34 / 34-50 / > 50 umol/L, albumin > 35 / 28-35 / < 28 g/L: 1-3 points each) plus 3-5 points
    drawn for INR, ascites and encephalopathy, clipped to the class (A 5-6, B 7-9). Drawn from its own random
    stream, so that every other column is what it was before the score was added."""
    bilirubin, albumin = c["bilirubin_umol_l"], c["albumin_g_l"]
    points = (1 if bilirubin < 34 else 2 if bilirubin <= 50 else 3) + (1 if albumin > 35 else 2 if albumin >= 28 else 3)
    points += 3 + int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1]))
    low, high = (5, 6) if c["child_pugh"] == "A" else (7, 9)
    return int(np.clip(points, low, high))


def draw_case(case_index, seed):
    """Latent attributes and clinical variables of one case (no images)."""
    rng = np.random.default_rng([seed, case_index, 1])
    d = float(np.clip(45.0 * np.exp(0.45 * rng.standard_normal()), 15.0, 95.0))
    zs = (np.log(d) - np.log(45.0)) / 0.45
    n = float(np.clip(0.22 + 0.13 * rng.standard_normal() + 0.04 * zs, 0.0, 0.6))
    h = float(rng.uniform())
    e = float(rng.uniform())
    latent = {"diameter_mm": d, "necrosis": n, "heterogeneity": h, "enhancement": e, "zs": zs,
              "zn": (n - 0.22) / 0.13, "zh": (h - 0.5) / 0.29, "ze": (e - 0.5) / 0.29}

    c = {}
    c["age"] = float(np.round(np.clip(rng.normal(62, 10), 30, 88)))
    c["sex"] = "M" if rng.uniform() < 0.8 else "F"
    c["hbv"] = int(rng.uniform() < 0.6)
    c["cirrhosis"] = int(rng.uniform() < (0.85 if c["hbv"] else 0.7))
    child_b = rng.uniform() < (0.3 if c["cirrhosis"] else 0.1)
    c["child_pugh"] = "B" if child_b else "A"
    albumin = rng.normal(32 if child_b else 39, 4)
    bilirubin = np.exp(rng.normal(np.log(30 if child_b else 15), 0.35))
    c["albumin_g_l"] = round(float(np.clip(albumin, 20, 52)), 1)
    c["bilirubin_umol_l"] = round(float(np.clip(bilirubin, 4, 150)), 1)
    albi = 0.66 * np.log10(c["bilirubin_umol_l"]) - 0.085 * c["albumin_g_l"]
    c["albi_grade"] = "1" if albi <= -2.60 else ("2" if albi <= -1.39 else "3")
    alt = np.exp(rng.normal(np.log(40), 0.5))
    c["alt_u_l"] = round(float(alt), 0)
    c["ast_u_l"] = round(float(alt * np.exp(rng.normal(0.25, 0.3))), 0)
    c["child_pugh_score"] = child_pugh_score(c, np.random.default_rng([seed, case_index, 5]))
    c["ecog"] = int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1]))
    log_afp = 1.6 + 0.45 * zs + 0.35 * latent["zh"] + rng.normal(0, 0.9)
    c["afp_ng_ml"] = round(float(10 ** np.clip(log_afp, 0.3, 5.5)), 1)
    pvi = int(rng.uniform() < _logistic(-2.0 + 0.6 * zs + 0.5 * latent["zh"]))
    c["portal_vein_invasion"] = pvi
    c["mvi"] = int(rng.uniform() < _logistic(-0.8 + 0.5 * zs + 0.6 * latent["zh"]))
    c["tumor_number"] = int(rng.choice([1, 2, 3], p=[0.6, 0.25, 0.15]))
    c["fusion_lesion"] = int(rng.uniform() < _logistic(-1.3 + 0.8 * zs))
    c["capsule"] = str(rng.choice(["absent", "non-intact", "intact"], p=[0.3, 0.35, 0.35]))
    c["nodule_in_nodule"] = int(rng.uniform() < 0.2)
    # Measured size: the fused lesion is longer than the nominal diameter; readers measure to +-2 mm.
    span = d * (1.45 if c["fusion_lesion"] else 1.0)
    c["tumor_size_mm"] = round(float(span + rng.normal(0, 2.0)), 1)
    if c["child_pugh"] == "C":
        bclc = "D"
    elif pvi or c["ecog"] >= 1:
        bclc = "C"
    elif c["tumor_number"] > 1 or c["tumor_size_mm"] > 50:
        bclc = "B"
    elif c["tumor_size_mm"] < 20:
        bclc = "0"
    else:
        bclc = "A"
    c["bclc"] = bclc
    return latent, c


def outcomes(case_index, seed, latent, c):
    """Outcomes from the documented ground-truth model; returns (outcome columns, linear predictors)."""
    rng = np.random.default_rng([seed, case_index, 2])
    z_afp = (np.log10(c["afp_ng_ml"]) - 1.6) / 1.0
    capsule_intact = float(c["capsule"] == "intact")
    child_b = float(c["child_pugh"] == "B")
    pvi = float(c["portal_vein_invasion"])

    r = RESPONSE_COEF
    lp_response = (r["ze"] * latent["ze"] + r["zs"] * latent["zs"] + r["zh"] * latent["zh"] + r["zn"] * latent["zn"]
                   + r["capsule_intact"] * capsule_intact + r["pvi"] * pvi + r["child_pugh_b"] * child_b)
    u = rng.uniform(1e-9, 1 - 1e-9)
    score = lp_response + RESPONSE_NOISE_SCALE * np.log(u / (1 - u))
    cr, pr, sd = RESPONSE_CUTS
    response = "CR" if score > cr else "PR" if score > pr else "SD" if score > sd else "PD"
    objective = float(response in ("CR", "PR"))

    o = OS_COEF
    lp_os = (o["zs"] * latent["zs"] + o["zh"] * latent["zh"] + o["zn"] * latent["zn"] + o["ze"] * latent["ze"]
             + o["pvi"] * pvi + o["child_pugh_b"] * child_b + o["ecog_ge1"] * float(c["ecog"] >= 1)
             + o["z_afp"] * z_afp + o["multifocal"] * float(c["tumor_number"] > 1)
             + o["objective_response"] * objective)
    scale = OS_MEDIAN_DAYS / np.log(2) ** (1 / OS_WEIBULL_SHAPE)
    death = scale * (rng.exponential() / np.exp(lp_os)) ** (1 / OS_WEIBULL_SHAPE)
    follow_up = min(rng.uniform(365, 1825), rng.exponential(3000))
    os_days = min(death, follow_up)

    lp_ttp = 0.5 * latent["zs"] + 0.4 * latent["zh"] - 0.3 * latent["ze"] + 0.5 * pvi - 1.0 * objective
    progression = 250.0 * rng.exponential() / np.exp(lp_ttp)
    ttp_days = min(progression, os_days)

    a = APD_COEF
    lp_apd = (a["intercept"] + a["size_mm"] * c["tumor_size_mm"] + a["cirrhosis"] * c["cirrhosis"]
              + a["fusion_lesion"] * c["fusion_lesion"]
              + a["capsule_non_intact"] * float(c["capsule"] == "non-intact")
              + a["capsule_intact"] * capsule_intact + a["nodule_in_nodule"] * c["nodule_in_nodule"]
              + a["zh"] * latent["zh"] + a["zn"] * latent["zn"] + a["pvi"] * pvi)
    aggressive = rng.uniform() < _logistic(lp_apd)
    apd_time = APD_DAYS[0] + rng.exponential(APD_DAYS[1])
    apd_event = int(aggressive and apd_time <= os_days)
    apd_days = apd_time if apd_event else os_days

    columns = {"os_days": round(float(max(os_days, 1.0)), 1), "os_event": int(death <= follow_up),
               "ttp_days": round(float(max(ttp_days, 1.0)), 1), "progression_event": int(progression <= os_days),
               "response": response, "aggressive_pd": apd_event,
               "aggressive_pd_days": round(float(max(apd_days, 1.0)), 1)}
    predictors = {"lp_os": lp_os, "lp_response": lp_response, "lp_aggressive_pd": lp_apd}
    return columns, predictors


def render_case(case_index, seed, latent, c):
    """The CT phases (int16 HU), the segmentation labelmap and a second reader's delineation."""
    rng = np.random.default_rng([seed, case_index, 3])
    sx = float(rng.uniform(0.68, 0.86))
    sz = float(rng.choice([2.5, 3.0, 5.0]))
    nx = ny = MATRIX
    nz = int(round(Z_EXTENT_MM / sz))
    shape = (nz, ny, nx)
    x = ((np.arange(nx) - nx / 2 + 0.5) * sx).astype(np.float32)
    y = ((np.arange(ny) - ny / 2 + 0.5) * sx).astype(np.float32)
    z = ((np.arange(nz) - nz / 2 + 0.5) * sz).astype(np.float32)
    X, Y, Z = x[None, None, :], y[None, :, None], z[:, None, None]
    half = nx * sx / 2

    # Body: ellipse whose right lateral wall shows at the image's left edge (LPS: x grows to the patient's left).
    body_centre = (-half + 10 + 150.0, 15.0)
    rb = np.sqrt(((X - body_centre[0]) / 150.0) ** 2 + ((Y - body_centre[1]) / 118.0) ** 2) + 0 * Z
    body = rb <= 1.0
    fat = (rb > 1.0 - 14 / 118.0) & body
    muscle = (rb > 1.0 - 24 / 118.0) & ~fat & body

    liver_centre = (-half * 0.15, -5.0, 0.0)
    liver_d = _ellipsoid(X, Y, Z, liver_centre, (half * 0.95, half * 0.8, 120.0), 0.3)
    warp = _smooth_noise(shape, rng, (max(1, int(40 / sz)), 48, 48))
    liver = (liver_d + 0.06 * warp <= 1.0) & body & ~muscle & ~fat
    portal = _ellipsoid(X, Y, Z, (liver_centre[0] + 18, liver_centre[1] + 6, 0), (7, 7, 400), 0.0) <= 1.0
    aorta = _ellipsoid(X, Y, Z, (half * 0.75, 30.0, 0), (11, 11, 400), 0.0) <= 1.0
    spine_d = _ellipsoid(X, Y, Z, (half * 0.6, 62.0, 0), (17, 15, 400), 0.0)

    # Lesions: the target (label 1, with its optional fused twin) and satellites (labels 2, 3).
    d = latent["diameter_mm"]
    radii = np.array([d / 2, d / 2 * rng.uniform(0.8, 1.0), d / 2 * rng.uniform(0.8, 1.0)])
    room = np.array([half * 0.95, half * 0.8]) - radii[:2] * (1.5 if c["fusion_lesion"] else 1.0)
    centre = np.array([liver_centre[0] + rng.uniform(-1, 1) * max(room[0] * 0.5, 0),
                       liver_centre[1] + rng.uniform(-1, 1) * max(room[1] * 0.5, 0),
                       rng.uniform(-1, 1) * max(Z_EXTENT_MM / 2 - radii[2] - 6, 0)])
    angle = float(rng.uniform(0, np.pi))
    edge = _smooth_noise(shape, rng, (max(1, int(12 / sz)), int(12 / sx), int(12 / sx)))
    edge_r2 = _smooth_noise(shape, rng, (max(1, int(6 / sz)), int(6 / sx), int(6 / sx)))
    target_d = _ellipsoid(X, Y, Z, centre, radii, angle)
    if c["fusion_lesion"]:
        offset = 0.9 * radii[0] * np.array([np.cos(angle), np.sin(angle), 0.0])
        twin_d = _ellipsoid(X, Y, Z, centre + offset, radii * 0.8, angle + 0.5)
        target_d = np.minimum(target_d, twin_d)
    irregular = target_d + 0.07 * edge
    target = irregular <= 1.0
    # Reader 2 draws the same lesion a little wider or tighter, with a wobblier border.
    target_r2 = irregular + 0.04 * edge_r2 <= 1.0 + rng.normal(0, 0.03)

    labels = np.zeros(shape, np.uint8)
    labels_r2 = np.zeros(shape, np.uint8)
    labels[target] = 1
    labels_r2[target_r2] = 1
    lesions = [(target_d, target, 1.0)]
    for k in range(c["tumor_number"] - 1):
        r_sat = rng.uniform(6, 12)
        for _ in range(20):  # place the satellite in the liver, away from the target
            sc = np.array([liver_centre[0] + rng.uniform(-0.7, 0.7) * half * 0.9,
                           liver_centre[1] + rng.uniform(-0.7, 0.7) * half * 0.75,
                           rng.uniform(-1, 1) * (Z_EXTENT_MM / 2 - r_sat - 4)])
            if np.linalg.norm((sc - centre)[:2]) > radii.max() * 1.6 + r_sat:
                break
        sat_d = _ellipsoid(X, Y, Z, sc, (r_sat, r_sat * 0.9, r_sat), 0.0)
        sat = (sat_d + 0.05 * edge <= 1.0) & (labels == 0) & liver
        labels[sat] = 2 + k
        labels_r2[(sat_d + 0.05 * edge_r2 <= 1.0) & (labels_r2 == 0) & liver] = 2 + k
        lesions.append((sat_d, sat, 0.7))

    texture = _smooth_noise(shape, rng, (1, 3, 3))
    blotch = _smooth_noise(shape, rng, (max(1, int(8 / sz)), int(8 / sx), int(8 / sx)))
    parenchyma_texture = _smooth_noise(shape, rng, (1, 4, 4))

    phases = {}
    for phase in PHASES:
        hu = np.full(shape, -1000.0, np.float32)
        hu[body] = 38.0
        hu[fat] = -105.0
        hu[muscle] = 52.0
        liver_hu = LIVER_HU[phase]
        hu[liver] = liver_hu + 4.0 * parenchyma_texture[liver]
        hu[portal & liver] = {"ct_ap": 95.0, "ct_pvp": 185.0, "ct_dp": 140.0}[phase]
        hu[aorta] = {"ct_ap": 310.0, "ct_pvp": 165.0, "ct_dp": 125.0}[phase]
        hu[spine_d <= 1.0] = 260.0
        hu[(spine_d <= 1.0) & (spine_d > 0.8)] = 720.0
        for dist, mask, strength in lesions:
            e = latent["enhancement"] * strength
            if phase == "ct_ap":
                base = liver_hu + 20.0 + 90.0 * e
            else:  # wash-out: below the liver in portal and delayed phases
                base = liver_hu - (12.0 + 28.0 * e) * (1.0 if phase == "ct_pvp" else 1.2)
            amplitude = 6.0 + 34.0 * latent["heterogeneity"]
            values = base + amplitude * (0.6 * texture[mask] + 0.8 * blotch[mask])
            if c["nodule_in_nodule"] and strength == 1.0:
                inner = dist[mask] < 0.35
                values[inner] += 45.0 if phase == "ct_ap" else -15.0
            necrotic = dist[mask] + 0.08 * edge[mask] < latent["necrosis"] * strength
            values[necrotic] = 18.0 + 6.0 * texture[mask][necrotic]
            hu[mask] = values
        if phase != "ct_ap" and c["capsule"] != "absent":
            rim = (target_d > 0.93) & (target_d <= 1.06) & ~target & liver
            if c["capsule"] == "non-intact":
                theta = np.arctan2(Y - centre[1], X - centre[0]) + 0 * Z
                rim &= np.cos(theta - angle) > 0.0  # only half of the rim
            hu[rim] = liver_hu + 45.0
        # Partial volume in-plane, then quantum noise.
        hu = ndimage.gaussian_filter(hu, sigma=(0.3, 0.7, 0.7))
        hu += rng.normal(0.0, 11.0, shape).astype(np.float32)
        phases[phase] = np.clip(np.round(hu), -1024, 3071).astype(np.int16)

    origin = (float(-half + rng.uniform(-40, 40)), float(-half - 120 + rng.uniform(-40, 40)),
              float(rng.uniform(-600, -100)))
    spacing = (sx, sx, sz)

    def to_image(array):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        return image

    return ({p: to_image(a) for p, a in phases.items()}, to_image(labels), to_image(labels_r2), spacing)


SEGMENT_COLORS = [(0.85, 0.32, 0.2), (0.95, 0.8, 0.25), (0.4, 0.75, 0.9)]


def generate_case(case_index, seed, out_dir):
    """Draw, render and write one case; returns (manifest row, ground-truth row)."""
    case_id = f"demo_{case_index:04d}"
    latent, clinical = draw_case(case_index, seed)
    outcome, predictors = outcomes(case_index, seed, latent, clinical)
    phases, labels, labels_r2, spacing = render_case(case_index, seed, latent, clinical)
    case_dir = os.path.join(out_dir, case_id)
    os.makedirs(case_dir, exist_ok=True)
    with_delayed = np.random.default_rng([seed, case_index, 4]).uniform() < DELAYED_PHASE_FRACTION
    row = {"case_id": case_id}
    for phase, image in phases.items():
        if phase == "ct_dp" and not with_delayed:
            row[phase] = ""
            continue
        sitk.WriteImage(image, os.path.join(case_dir, f"{phase}.nrrd"), True, 1)
        row[phase] = f"{case_id}/{phase}.nrrd"
    # Alternate segmentation formats so that every pipeline meets both.
    if case_index % 2 == 0:
        names = ["Tumor 1"] + [f"Satellite {k}" for k in range(1, clinical["tumor_number"])]
        segments = [Segment(name=name, label_value=i + 1, segment_id=f"Segment_{i + 1}",
                            color=SEGMENT_COLORS[i % 3]) for i, name in enumerate(names)]
        write_seg_nrrd(labels, segments, os.path.join(case_dir, "tumor.seg.nrrd"))
        write_seg_nrrd(labels_r2, segments, os.path.join(case_dir, "tumor_r2.seg.nrrd"))
        row.update(seg=f"{case_id}/tumor.seg.nrrd", seg_label="Tumor 1", seg_r2=f"{case_id}/tumor_r2.seg.nrrd")
    else:
        sitk.WriteImage(labels, os.path.join(case_dir, "tumor_label.nrrd"), True, 1)
        sitk.WriteImage(labels_r2, os.path.join(case_dir, "tumor_label_r2.nrrd"), True, 1)
        row.update(seg=f"{case_id}/tumor_label.nrrd", seg_label="1", seg_r2=f"{case_id}/tumor_label_r2.nrrd")
    row.update(clinical)
    row.update(outcome)
    truth = {"case_id": case_id, **latent, **predictors,
             "spacing_mm": " ".join(f"{s:.3f}" for s in spacing),
             "target_voxels": int(np.count_nonzero(sitk.GetArrayViewFromImage(labels) == 1))}
    return row, truth


MANIFEST_ORDER = ["case_id", "ct_ap", "ct_pvp", "ct_dp", "seg", "seg_label", "seg_r2", "age", "sex", "bclc",
                  "child_pugh", "child_pugh_score", "ecog", "afp_ng_ml", "alt_u_l", "ast_u_l", "albumin_g_l", "bilirubin_umol_l",
                  "albi_grade", "tumor_size_mm", "tumor_number", "cirrhosis", "hbv", "mvi", "portal_vein_invasion",
                  "fusion_lesion", "capsule", "nodule_in_nodule", "os_days", "os_event", "ttp_days",
                  "progression_event", "response", "aggressive_pd", "aggressive_pd_days"]


def _generate_one(args):
    return generate_case(*args)


def generate_cohort(out_dir, cases=40, seed=0, workers=None, progress=None):
    """Write ``cases`` synthetic cases under ``out_dir``; returns the manifest path.

    Output: ``manifest.csv`` (the cohort manifest), ``ground_truth.csv`` (latent attributes and linear
    predictors, for checking models; never an input to them), ``cohort.json`` (provenance).
    Deterministic for a seed, whatever the number of workers.
    """
    if cases < 1:
        raise ValueError("cases must be at least 1")
    os.makedirs(out_dir, exist_ok=True)
    workers = workers or min(os.cpu_count() or 1, cases)
    jobs = [(i, seed, out_dir) for i in range(cases)]
    results = []
    if workers > 1:
        # spawn, not fork (as extraction does): a forked child can hang on thread pools (OpenMP, ITK, torch) the
        # parent already started; Python 3.12 (Slicer 5.10+) warns when a multi-threaded process forks.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for i, result in enumerate(pool.map(_generate_one, jobs, chunksize=2)):
                results.append(result)
                if progress:
                    progress(i + 1, cases)
    else:
        for i, job in enumerate(jobs):
            results.append(_generate_one(job))
            if progress:
                progress(i + 1, cases)
    manifest = pd.DataFrame([r for r, _ in results])[MANIFEST_ORDER]
    manifest_path = os.path.join(out_dir, "manifest.csv")
    manifest.to_csv(manifest_path, index=False)
    pd.DataFrame([t for _, t in results]).to_csv(os.path.join(out_dir, "ground_truth.csv"), index=False)
    with open(os.path.join(out_dir, "cohort.json"), "w") as f:
        json.dump({"notice": SYNTHETIC_DATA_NOTICE, "generator": "tacepredict phantom",
                   "tacepredict_version": __version__, "cases": cases, "seed": seed,
                   "ground_truth_model": "docs/demo_cohort.md"}, f, indent=2)
    return manifest_path
