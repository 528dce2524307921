import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from TACEPredictLib.data.demo_cohort import generate_cohort

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
HCC_TACE_SEG_CSV = os.path.join(SHARED_DATA, "hcc_tace_seg", "clinical.csv")


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory):
    """Six synthetic cases (both segmentation formats, with and without the delayed phase)."""
    out = tmp_path_factory.mktemp("demo")
    return generate_cohort(str(out), cases=6, seed=3, workers=2)


def make_image(array, spacing=(0.8, 0.8, 3.0), origin=(-80.0, -90.0, -300.0), direction=None):
    image = sitk.GetImageFromArray(np.asarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def ct_and_lesion(shape=(12, 40, 40), lesion_radius=6):
    """A small CT in HU (air, soft tissue, brighter lesion) and its lesion labelmap."""
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2
    body = ((y - centre[1]) ** 2 + (x - centre[2]) ** 2) < (shape[1] * 0.45) ** 2
    lesion = ((z - centre[0]) ** 2 * 4 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < lesion_radius ** 2
    hu = np.where(body, 60, -1000).astype(np.int16)
    hu[lesion] = 140
    return hu, lesion.astype(np.uint8)


def write_manifest(folder, rows):
    path = os.path.join(folder, "manifest.csv")
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_survival_cohort(folder, cases=200, seed=0, families=(("densenet121", 24), ("resnet50", 32),
                                                                ("radiomics", 30), ("resnet101", 32))):
    """A clinical manifest (no images) with a known Cox structure, and an extraction folder whose features carry
    two latent image factors. OS hazard: log HR 0.8 PVI + 0.6 [Child-Pugh B] + 0.4 (log10 AFP - 1.6)
    + 0.9 u1 + 0.7 u2; u1 and u2 are only visible through the image features. Returns (manifest, features)."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(cases)]
    u1, u2 = rng.normal(size=cases), rng.normal(size=cases)
    pvi = (rng.random(cases) < 0.25).astype(int)
    child_b = rng.random(cases) < 0.25
    log_afp = 1.6 + rng.normal(0, 0.9, cases)
    lp = 0.8 * pvi + 0.6 * child_b + 0.4 * (log_afp - 1.6) + 0.9 * u1 + 0.7 * u2
    death = rng.exponential(700 / np.exp(lp))
    censor = rng.uniform(300, 1800, cases)
    table = pd.DataFrame({
        "case_id": ids, "age": np.round(rng.normal(62, 9, cases), 1), "sex": rng.choice(["M", "F"], cases, p=[.8, .2]),
        "child_pugh": np.where(child_b, "B", "A"), "ecog": rng.choice([0, 1, 2], cases, p=[.6, .3, .1]),
        "afp_ng_ml": np.round(10 ** log_afp, 1), "capsule": rng.choice(["absent", "non-intact", "intact"], cases),
        "portal_vein_invasion": pvi, "cirrhosis": (rng.random(cases) < 0.8).astype(int),
        "tumor_size_mm": np.round(np.exp(rng.normal(np.log(45), 0.4, cases)), 1),
        "os_days": np.round(np.minimum(death, censor), 1), "os_event": (death <= censor).astype(int)})
    os.makedirs(folder, exist_ok=True)
    manifest = os.path.join(folder, "manifest.csv")
    table.to_csv(manifest, index=False)
    rows = []
    for family, count in families:
        for phase in ("ct_ap", "ct_pvp"):
            values = rng.normal(size=(cases, count))
            values[:, 0] += 1.5 * u1
            values[:, 1] += 1.5 * u2
            values[:, 2] = values[:, 2] * 0.3 + u1 - u2
            values[:, 3] = values[:, 0] + rng.normal(0, 0.1, cases)  # a near duplicate (mRMR redundancy)
            for j in range(count):
                rows.append(pd.DataFrame({"case_id": ids, "phase": phase, "reader": "seg", "family": family,
                                          "feature": f"f{j:03d}", "value": values[:, j], "weights": "synthetic"}))
    features = os.path.join(folder, "features")
    os.makedirs(features, exist_ok=True)
    pd.concat(rows, ignore_index=True).to_parquet(os.path.join(features, "features.parquet"), index=False)
    return manifest, features
