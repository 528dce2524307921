"""`tacepredict index-dicom` on a generated TCIA-like download: time per series and phase classification.

The download (``dicom_demo.write_tcia_tree``): N demo patients cycling through four protocols (phases named in
the series descriptions; anonymous descriptions, the phases only in the acquisition times; a
ContrastBolusStartTime; three acquisitions stacked in one series), a localizer and a DICOM SEG per study,
a second reconstruction of the portal phase, and a follow-up study for every third patient. Every CT series
(and stacked acquisition) is compared with the phase it was written as.

Usage: python benchmarks/bench_index_dicom.py [--patients 20] [--matrix 192] [--keep DIR]
"""

import argparse
import os
import platform
import shutil
import tempfile
import time

import pandas as pd

from TACEPredictLib.data import dicom
from TACEPredictLib.data import dicom_demo


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--matrix", type=int, default=192, help="in-plane size kept around the tumour (192: whole)")
    parser.add_argument("--keep", default=None, help="write the download here and keep it")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    folder = args.keep or tempfile.mkdtemp(prefix="tcia_")
    truth_file = os.path.join(folder, "truth.csv")
    try:
        if args.keep and os.path.isfile(truth_file):  # a kept download: index it again
            truth = pd.read_csv(truth_file, dtype={"acquisition": "Int64"}).to_dict("records")
            truth = [dict(r, acquisition=None if pd.isna(r["acquisition"]) else int(r["acquisition"])) for r in truth]
            written = None
        else:
            start = time.perf_counter()
            matrix = None if args.matrix >= 192 else (args.matrix, args.matrix)
            truth = dicom_demo.write_tcia_tree(os.path.join(folder, "download"), patients=args.patients, seed=0,
                                               matrix=matrix)
            written = time.perf_counter() - start
            pd.DataFrame(truth).to_csv(truth_file, index=False)
        tree = os.path.join(folder, "download")
        files = sum(len(f) for _, _, f in os.walk(tree)) - 1
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tree) for f in fs)
        print(f"download: {len({r['patient_id'] for r in truth})} patients, {files} files, {size / 2**20:.0f} MiB"
              + (f", written in {written:.1f} s" if written is not None else " (kept from an earlier run)"))

        dicom._SCAN_CACHE.clear()
        start, cpu = time.perf_counter(), time.process_time()
        index = dicom.index_dicom(tree)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"index-dicom: {len(index)} series in {seconds:.2f} s wall, {cpu:.2f} s CPU: "
              f"{seconds / len(index) * 1000:.0f} ms per series ({cpu / len(index) * 1000:.0f} ms CPU), "
              f"{seconds / files * 1000:.1f} ms per file ({cpu / files * 1000:.1f} ms CPU); "
              f"load average at the end {os.getloadavg()[0]:.1f}")

        wrong = []
        for record in truth:
            rows = index[index["series_uid"] == record["series_uid"]]
            if record["acquisition"] is not None:
                rows = rows[rows["acquisition"] == record["acquisition"]]
            got = rows["phase"].iloc[0] if len(rows) == 1 else f"{len(rows)} rows"
            if got != record["phase"]:
                wrong.append((record, got))
        sources = index[index["modality"] == "CT"].groupby("phase_source").size()
        how = ", ".join(f"{k or 'none'} {v}" for k, v in sources.items())
        print(f"phases: {len(truth) - len(wrong)} of {len(truth)} CT series / acquisitions classified right "
              f"(phase_source of the CT rows: {how})")
        for record, got in wrong:
            print(f"WRONG: {record['patient_id']} {record['series_uid']} acquisition {record['acquisition']}: "
                  f"{record['phase']} read as {got}")
        segs = index[index["modality"] == "SEG"]
        print(f"segmentations: {len(segs)}, each with the series it was drawn on: "
              f"{int(segs['drawn_on'].notna().sum())} of {len(segs)}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
