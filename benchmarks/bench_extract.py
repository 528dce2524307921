"""Cohort extraction speed: N demo cases, two phases, radiomics (Resources/radiomics_ct.yaml, ~1,200 features
per phase) + DenseNet121 (1024 per phase), rigid registration, ICC extras (other delineation) for --icc-cases cases - with 1 worker and with
2, side by side in one run, each from an empty cache.

Targets (imaging issue): 100 cases in under 10 minutes on a 2-core CPU; 2 workers >= 1.7x faster than 1.
DenseNet121 runs with random weights here (same computation as ImageNet weights, which need a download).
Usage: python benchmarks/bench_extract.py [--cases 100] [--workers 1,2] [--icc-cases 30] [--cohort DIR]
"""

import argparse
import os
import platform
import shutil
import tempfile
import time
import warnings

from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_cohort
from TACEPredictLib.data.demo_cohort import generate_cohort


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--cohort", default=None, help="reuse a demo cohort folder (made if missing)")
    parser.add_argument("--icc-cases", type=int, default=30, help="cases with ICC extras (0: none)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    work = tempfile.mkdtemp(prefix="bench_extract_")
    cohort = args.cohort or os.path.join(work, "cohort")
    manifest = os.path.join(cohort, "manifest.csv")
    if not os.path.isfile(manifest):
        generate_cohort(cohort, cases=args.cases, seed=0)
    settings = ExtractionSettings(weights="random", device="cpu", icc_cases=args.icc_cases)
    seconds = {}
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            out = os.path.join(work, f"out_{workers}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                result = extract_cohort(manifest, out, settings, workers=workers)
                seconds[workers] = time.perf_counter() - start
            per_case = result.features.groupby("case_id").size().median()
            print(f"{workers} worker(s): {seconds[workers]:7.1f} s for {args.cases} cases "
                  f"({seconds[workers] / args.cases:.2f} s/case), {len(result.failures)} failed, "
                  f"{per_case:.0f} features/case" + ("" if result.icc is None else
                  f", ICC(2,1) >= 0.75 kept {int(result.icc['kept'].sum())}/{len(result.icc)}"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    best = min(seconds.values())
    print(f"target 100 cases < 600 s: {'met' if best * 100 / args.cases < 600 else 'NOT met'} "
          f"({best * 100 / args.cases:.0f} s per 100 cases)")
    if 1 in seconds and 2 in seconds:
        ratio = seconds[1] / seconds[2]
        print(f"speed-up 2 vs 1 workers: {ratio:.2f}x (target >= 1.7x: {'met' if ratio >= 1.7 else 'NOT met'})")


if __name__ == "__main__":
    main()
