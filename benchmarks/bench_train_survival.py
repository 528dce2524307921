"""Time to train every survival model on the demo cohort with cached features, against the 5-minute target.

Trains, in one process and one after another, the clinical Cox, both nomograms, the deep signature, the
radiomics LASSO-Cox and the three DLOP-Combin variants on all cases of the manifest (default: the demo main
job's 200 cases and its extraction folder), and prints each model's seconds and the total / target ratio.

Usage: python benchmarks/bench_train_survival.py [--run demo_run]
"""

import argparse
import os
import platform
import time

from TACEPredictLib import models
from TACEPredictLib.data.cohort import CohortData
from TACEPredictLib.stats.validation import SURVIVAL_RUNS

TARGET_SECONDS = 300.0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", default="demo_run", help="the demo main job's output folder")
    args = parser.parse_args()
    data = CohortData(os.path.join(args.run, "cohort", "manifest.csv"), os.path.join(args.run, "features"))
    data.features(("ct_ap",), "radiomics")  # read the feature table once, outside the timings
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {len(data.case_ids)} cases")
    total = 0.0
    for name, kind, options in SURVIVAL_RUNS:
        start = time.perf_counter()
        models.train("survival", kind, data, seed=0, **options)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:22s} {seconds:7.1f} s")
    print(f"{'all models':22s} {total:7.1f} s; target {TARGET_SECONDS:.0f} s; total / target = "
          f"{total / TARGET_SECONDS:.2f}")


if __name__ == "__main__":
    main()
