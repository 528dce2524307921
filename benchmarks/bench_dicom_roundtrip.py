"""The same demo case as NRRD files and as DICOM (CT series + SEG, CT series + RTSTRUCT): radiomics side by side,
and what the RTSTRUCT polygon rasterisation allows when the contours are not the voxel outline.

Writes demo case ``--case`` (seed 0) as a TCIA-like study (``dicom_demo.write_demo_patient``) and as NRRD,
loads both through ``preprocess.load_case`` as ``tacepredict extract`` does, and compares pyradiomics
(``--preset``, default ct-fast: 293 features of the arterial phase). Then the tumour's RTSTRUCT is written
again with its contours moved off the voxel outline (corner cutting; every vertex jittered uniformly by up to
J voxels) and rasterised back: changed voxels and the radiomics differences per feature class.

Usage: python benchmarks/bench_dicom_roundtrip.py [--case 1] [--preset ct-fast]
"""

import argparse
import os
import platform
import tempfile

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk

from TACEPredictLib.data import dicom_demo
from TACEPredictLib.data.images import read_segmentation
from TACEPredictLib.data.manifest import read_manifest
from TACEPredictLib.imaging.preprocess import load_case
from TACEPredictLib.imaging.radiomics import extract_from_crop, make_extractor


def chaikin(polygon, iterations=2):
    for _ in range(iterations):
        following = np.roll(polygon, -1, axis=0)
        polygon = np.stack([0.75 * polygon + 0.25 * following, 0.25 * polygon + 0.75 * following], 1).reshape(-1, 2)
    return polygon


def features(manifest_path, extractor, mask=None):
    manifest = read_manifest(manifest_path)
    case = load_case(manifest, manifest.table.iloc[0], phases=("ct_ap",), register="none")
    crop_mask = case.mask
    if mask is not None:  # the same crop of another full-grid mask
        full = sitk.GetImageFromArray(mask.astype(np.uint8))
        full.SetSpacing(case.full_geometry["spacing"])
        full.SetOrigin(case.full_geometry["origin"])
        full.SetDirection(case.full_geometry["direction"])
        crop_mask = sitk.Resample(full, case.mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    values = extract_from_crop(case.phases["ct_ap"], crop_mask, case.crop_index, case.full_geometry["size"], extractor)
    return pd.Series(values)


def relative(a, b):
    return (a - b).abs() / b.abs().clip(lower=1e-9)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", type=int, default=1)
    parser.add_argument("--preset", default="ct-fast")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    extractor = make_extractor(args.preset)
    with tempfile.TemporaryDirectory() as folder:
        case = dicom_demo.write_demo_patient(os.path.join(folder, "dl"), args.case, patient_id="HCC_001")
        sitk.WriteImage(case["images"]["ct_ap"], os.path.join(folder, "ct_ap.nrrd"), True)
        sitk.WriteImage(case["labels"], os.path.join(folder, "tumor_label.nrrd"), True)
        ap = case["series"]["LIVER ARTERIAL 5.0 B30f"]["folder"]
        manifests = {}
        for name, seg, label in (("nrrd", os.path.join(folder, "tumor_label.nrrd"), "1"),
                                 ("seg", case["seg"], "Mass"), ("rtstruct", case["rtstruct"], "Mass")):
            ct = os.path.join(folder, "ct_ap.nrrd") if name == "nrrd" else ap
            manifests[name] = os.path.join(folder, f"{name}.csv")
            pd.DataFrame([{"case_id": "HCC_001", "ct_ap": ct, "seg": seg, "seg_label": label}]).to_csv(
                manifests[name], index=False)
        truth = sitk.GetArrayFromImage(case["labels"]) == 1
        print(f"case {args.case}: {case['images']['ct_ap'].GetSize()} voxels of "
              f"{', '.join(f'{s:.3f}' for s in case['images']['ct_ap'].GetSpacing())} mm, tumour {truth.sum()} voxels; "
              f"{args.preset} preset")
        reference = features(manifests["nrrd"], extractor)
        for name in ("seg", "rtstruct"):
            other = features(manifests[name], extractor)[reference.index]
            print(f"NRRD vs DICOM CT + {name.upper():8s}: {len(reference)} features, max relative difference "
                  f"{relative(other, reference).max():.2e}")

        datasets = sorted((pydicom.dcmread(os.path.join(ap, n), stop_before_pixels=True) for n in os.listdir(ap)),
                          key=lambda d: float(d.ImagePositionPatient[2]))
        rng = np.random.default_rng(0)
        variants = [("corner cutting (<= 0.35 voxel)",
                     lambda m: [chaikin(p) for p in dicom_demo.pixel_edge_contours(m)])]
        for amplitude in (0.45, 0.7, 1.0, 1.5):
            variants.append((f"vertices jittered <= {amplitude} voxel",
                             lambda m, a=amplitude: [p + rng.uniform(-a, a, p.shape)
                                                     for p in dicom_demo.pixel_edge_contours(m)]))
        print("RTSTRUCT contours off the voxel outline -> rasterised mask vs the original, radiomics vs NRRD "
              "(max relative difference: shape / first-order / texture classes):")
        for label, contours in variants:
            path = dicom_demo.write_rtstruct(datasets, {"Mass": truth}, os.path.join(folder, "variant.dcm"),
                                             contours=contours)
            mask = sitk.GetArrayFromImage(read_segmentation(path, ct_paths={"ct_ap": ap}).mask("Mass")) > 0
            changed = int((mask ^ truth).sum())
            values = features(manifests["nrrd"], extractor, mask=mask)[reference.index]
            diff = relative(values, reference)
            classes = diff.groupby(diff.index.map(lambda n: n.split("_")[1]))
            shape = classes.max().get("shape", np.nan)
            first = classes.max().get("firstorder", np.nan)
            texture = classes.max().drop(["shape", "firstorder"], errors="ignore").max()
            print(f"  {label:36s}: {changed:5d} voxels changed ({changed / truth.sum() * 100:5.2f}% of the tumour); "
                  f"max relative difference shape {shape:.2e}, first-order {first:.2e}, texture {texture:.2e}; "
                  f"median over features {diff.median():.2e}")


if __name__ == "__main__":
    main()
