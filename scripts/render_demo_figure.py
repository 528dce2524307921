"""Renders one demo case (every phase through the largest lesion slice, segmentation outlined) to a PNG.

Makes the extension catalogue's screenshot: python scripts/render_demo_figure.py OUT.png [--seed S --case N]
Needs matplotlib (not a TACEPredict dependency).
"""

import argparse
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from TACEPredictLib.data.images import read_segmentation  # noqa: E402
from TACEPredictLib.data.demo_cohort import generate_cohort  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        manifest = generate_cohort(folder, cases=args.case + 1, seed=args.seed, workers=1)
        row = pd.read_csv(manifest).iloc[args.case]
        mask = sitk.GetArrayFromImage(read_segmentation(os.path.join(folder, row["seg"])).mask(row["seg_label"]))
        z = int(np.argmax(mask.sum(axis=(1, 2))))
        phases = [(c, t) for c, t in [("ct_ap", "arterial"), ("ct_pvp", "portal venous"), ("ct_dp", "delayed")]
                  if isinstance(row[c], str)]
        fig, axes = plt.subplots(1, len(phases), figsize=(4 * len(phases), 4.4))
        for ax, (column, title) in zip(np.atleast_1d(axes), phases):
            array = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(folder, row[column])))
            ax.imshow(array[z], cmap="gray", vmin=-160, vmax=240)
            ax.contour(mask[z], levels=[0.5], colors="#ff5533", linewidths=1.2)
            ax.set_title(f"{title} phase", fontsize=11)
            ax.axis("off")
        fig.suptitle(f"TACEPredict synthetic demo case {row['case_id']} (not patient data; research use only)",
                     fontsize=10)
        fig.tight_layout()
        fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
