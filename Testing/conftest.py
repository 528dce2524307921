import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from TACEPredictLib.phantom import generate_cohort

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
