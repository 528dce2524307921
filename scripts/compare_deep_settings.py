"""Which patch sampling and intensity normalisation let *untrained* DenseNet121 features carry the demo
images' signal? Extracts DenseNet121 features of the demo cohort four ways (centre or inside patches,
per-patch z-score or HU window), trains the signature and both nomograms on the same training split, and
prints held-out C-indices and each signature's concordance with the phantom's true image predictor.

Usage: python scripts/compare_deep_settings.py [--demo demo_run] [--workers N]
(needs demo_run/cohort from ``tacepredict demo``; about 6 minutes per setting on 2 cores, cached after).
Writes docs/measurements/deep_settings.csv, which scripts/write_validation.py quotes (too slow to re-run there).
"""

import argparse
import os
import sys

import pandas as pd

from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_cohort
from TACEPredictLib.stats.validation import run_survival_validation

RUNS = (("nomogram-clinical", "nomogram", {"variant": "clinical"}),
        ("signature", "signature", {}),
        ("nomogram-integrated", "nomogram", {"variant": "integrated"}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default="demo_run")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--settings", default="centre-zscore,centre-window,inside-zscore,inside-window")
    args = parser.parse_args()
    manifest = os.path.join(args.demo, "cohort", "manifest.csv")
    if not os.path.isfile(manifest):
        sys.exit(f"{manifest} not found: run `tacepredict demo --out {args.demo}` first")
    rows = []
    for name in args.settings.split(","):
        sampling, normalisation = name.split("-")
        features = os.path.join(args.demo, "deep_settings", name)
        settings = ExtractionSettings(radiomics=False, deep=("densenet121",), weights="random", sampling=sampling,
                                      normalisation=normalisation)
        extract_cohort(manifest, features, settings, workers=args.workers)
        table, summary = run_survival_validation(manifest, features, os.path.join(features, "validation"),
                                                 runs=RUNS, n_bootstrap=200, log=lambda *a: None)
        truth = summary["ground_truth"]
        c = table.set_index("run")["c_index"]
        rows.append({"setting": name, "signature_c": c["signature"],
                     "signature_vs_true_image_lp": truth["signature_concordance_with_true_image_lp"],
                     "nomogram_integrated_c": c["nomogram-integrated"], "nomogram_clinical_c": c["nomogram-clinical"]})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.3f"), flush=True)
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))
    out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "measurements",
                       "deep_settings.csv")
    pd.DataFrame(rows).round(3).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
