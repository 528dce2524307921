"""Wrapper overhead: TACEPredict's radiomics path (manifest row -> read, check, crop, pyradiomics) against
calling pyradiomics directly on the same files with the same parameter file, case by case, alternating.

Target (imaging issue): at most 10% overhead. Also prints the largest feature difference between the two.
Usage: python benchmarks/bench_radiomics_overhead.py [--cases 20] [--cohort DIR]
"""

import argparse
import logging
import os
import platform
import tempfile
import time

import numpy as np
from radiomics import featureextractor

from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_case
from TACEPredictLib.data.manifest import read_manifest
from TACEPredictLib.data.demo_cohort import generate_cohort
from TACEPredictLib.imaging.radiomics import DEFAULT_PARAMS


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--cohort", default=None)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    cohort = args.cohort or tempfile.mkdtemp(prefix="bench_radiomics_")
    path = os.path.join(cohort, "manifest.csv")
    if not os.path.isfile(path):
        generate_cohort(cohort, cases=args.cases, seed=0)
    manifest = read_manifest(path)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    direct_extractor = featureextractor.RadiomicsFeatureExtractor(DEFAULT_PARAMS)
    settings = ExtractionSettings(phases=("ct_ap",), register="none", deep=())
    extract_case(manifest, manifest.table.iloc[0], settings)  # build the wrapper's extractor once, as in a run
    direct_total = wrapper_total = 0.0
    worst = 0.0
    rows = manifest.table.head(args.cases)
    for _, row in rows.iterrows():
        start = time.perf_counter()
        direct = direct_extractor.execute(manifest.resolve(row["ct_ap"]), manifest.resolve(row["seg"]), label=1)
        direct_total += time.perf_counter() - start
        start = time.perf_counter()
        table, _, _ = extract_case(manifest, row, settings)
        wrapper_total += time.perf_counter() - start
        ours = dict(zip(table["feature"], table["value"]))
        for name, value in direct.items():
            if name.startswith("diagnostics_"):
                continue
            value = float(np.asarray(value))
            worst = max(worst, abs(ours[name] - value) / max(abs(value), 1e-12))
    overhead = wrapper_total / direct_total - 1
    print(f"{len(rows)} cases, arterial phase, {len(ours)} features each")
    print(f"pyradiomics directly : {direct_total:7.2f} s")
    print(f"TACEPredict wrapper  : {wrapper_total:7.2f} s")
    print(f"overhead: {overhead * 100:+.1f}% (target <= 10%: {'met' if overhead <= 0.10 else 'NOT met'}); "
          f"largest relative feature difference {worst:.1e}")


if __name__ == "__main__":
    main()
