"""Peak memory for one 512x512x300 CT case (two phases, 0.7x0.7x1 mm, a 45 mm lesion): the whole extraction
(read, crop, register, radiomics with Resources/radiomics_ct.yaml, DenseNet121) against only reading the two
volumes, each in a fresh process (its peak resident set size, VmHWM).

Target (imaging issue): under 2 GB for the whole extraction.
Usage: python benchmarks/bench_memory.py
"""

import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np
import SimpleITK as sitk

SHAPE = (300, 512, 512)  # z, y, x
SPACING = (0.7, 0.7, 1.0)

CHILD = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
mode, manifest_path = sys.argv[1], sys.argv[2]
import SimpleITK as sitk
from TACEPredictLib.imaging.extraction import ExtractionSettings, extract_case
from TACEPredictLib.data.manifest import read_manifest
manifest = read_manifest(manifest_path)
row = manifest.table.iloc[0]
if mode == "read":
    images = [sitk.ReadImage(manifest.resolve(row[p])) for p in ("ct_ap", "ct_pvp")]
    features = 0
else:
    settings = ExtractionSettings(weights="random", device="cpu")
    table, _, _ = extract_case(manifest, row, settings)
    features = len(table)
# VmHWM: this process's own peak (ru_maxrss would include the parent's size inherited at fork).
peak = next((int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM")),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps({"peak_mib": peak, "features": features}))
"""


def write_case(folder):
    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    body = ((y - 256) / 230.0) ** 2 + ((x - 256) / 250.0) ** 2 <= 1
    lesion = (((z - 150) * SPACING[2] / 22.0) ** 2 + ((y - 220) * SPACING[1] / 22.0) ** 2
              + ((x - 300) * SPACING[0] / 20.0) ** 2) <= 1
    for phase, lesion_hu in (("ct_ap", 140), ("ct_pvp", 70)):
        hu = np.where(body, 60, -1000).astype(np.int16)
        hu = np.broadcast_to(hu, SHAPE).copy()
        hu[lesion] = lesion_hu
        hu += rng.normal(0, 12, SHAPE).astype(np.int16)
        image = sitk.GetImageFromArray(hu)
        image.SetSpacing(SPACING)
        sitk.WriteImage(image, os.path.join(folder, f"{phase}.nrrd"), True)
        del hu, image
    seg = sitk.GetImageFromArray(np.broadcast_to(lesion, SHAPE).astype(np.uint8))
    seg.SetSpacing(SPACING)
    sitk.WriteImage(seg, os.path.join(folder, "seg.nrrd"), True)
    with open(os.path.join(folder, "manifest.csv"), "w") as handle:
        handle.write("case_id,ct_ap,ct_pvp,seg\nbig,ct_ap.nrrd,ct_pvp.nrrd,seg.nrrd\n")
    return os.path.join(folder, "manifest.csv")


def main():
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        manifest = write_case(folder)
        results = {}
        for mode in ("read", "extract"):
            output = subprocess.run([sys.executable, "-c", CHILD, mode, manifest], check=True,
                                    capture_output=True, text=True).stdout
            results[mode] = json.loads(output.strip().splitlines()[-1])
    volume_mib = np.prod(SHAPE) * 2 / 2**20
    print(f"CT: {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]} int16, {volume_mib:.0f} MiB per phase, two phases")
    print(f"peak, reading both phases only : {results['read']['peak_mib']:7.0f} MiB")
    print(f"peak, whole extraction         : {results['extract']['peak_mib']:7.0f} MiB "
          f"({results['extract']['features']} features)")
    ratio = results["extract"]["peak_mib"] / 2048
    print(f"extraction / 2 GB target: {ratio:.2f} ({'met' if ratio < 1 else 'NOT met'}); "
          f"extraction / reading only: {results['extract']['peak_mib'] / results['read']['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
