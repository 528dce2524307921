"""Demo-cohort generation speed: N cases with 1 worker and with 2, side by side in one run.

Target (foundation issue): 200 cases in under a minute on a 2-core machine.
Usage: python benchmarks/bench_phantom.py [--cases 200]
"""

import argparse
import os
import platform
import tempfile
import time

from TACEPredictLib.data.demo_cohort import generate_cohort


def timed(cases, workers):
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        generate_cohort(folder, cases=cases, seed=0, workers=workers)
        seconds = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    return seconds, size


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=200)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    one, size = timed(args.cases, 1)
    two, _ = timed(args.cases, 2)
    print(f"{args.cases} cases, 1 worker : {one:6.1f} s ({one / args.cases * 1000:.0f} ms/case)")
    print(f"{args.cases} cases, 2 workers: {two:6.1f} s ({two / args.cases * 1000:.0f} ms/case)")
    print(f"speed-up 2 vs 1 workers: {one / two:.2f}x; target 200 cases < 60 s: "
          f"{'met' if two * 200 / args.cases < 60 else 'NOT met'} ({two * 200 / args.cases:.1f} s per 200 cases)")
    print(f"disk: {size / 2**20:.0f} MiB ({size / args.cases / 2**20:.2f} MiB/case)")


if __name__ == "__main__":
    main()
