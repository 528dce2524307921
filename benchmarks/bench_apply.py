"""Apply on one 512 x 512 x 100 CT: from the scene's nodes to filled tables and charts, against the 10 s target.

One demo case (arterial and portal phases and its segmentation) is put on a 512 x 512 x 100 grid (its own
in-plane spacing, so a clinical ~400 mm field of view, and 100 slices over its z extent), loaded into a slicer-core MRML scene, and Apply
(``TACEPredictLib.slicer.mrml.run_case``, what the module's Logic runs) predicts it with the main job's trained
survival bundles and the built-in aggressive-progression score. Dependencies are imported and the models
loaded once before the timed runs (Slicer has them loaded after the first Apply). Prints each step's seconds
and total / target, with and without Grad-CAM heat maps.

Usage: python benchmarks/bench_apply.py [--run demo_run] [--models signature,nomogram-integrated,...]
"""

import argparse
import os
import platform
import time

import numpy as np
import SimpleITK as sitk

TARGET_SECONDS = 10.0
SIZE = (512, 512, 100)


def on_clinical_grid(image, reference=None, label=False):
    """``image`` inside a 512 x 512 x 100 grid: its own in-plane spacing (so the 512 x 512 matrix covers a
    clinical field of view, ~400 mm, with air around the phantom's body) and 100 slices over its z extent."""
    if reference is None:
        size = np.array(image.GetSize(), dtype=float)
        spacing = np.array(image.GetSpacing())
        new_spacing = np.array([spacing[0], spacing[1], spacing[2] * size[2] / SIZE[2]])
        centre = np.array(image.TransformContinuousIndexToPhysicalPoint((size - 1) / 2))
        direction = np.array(image.GetDirection()).reshape(3, 3)
        origin = centre - direction @ ((np.array(SIZE) - 1) / 2 * new_spacing)
        reference = sitk.Image([int(s) for s in SIZE], image.GetPixelID())
        reference.SetSpacing([float(s) for s in new_spacing])
        reference.SetOrigin([float(v) for v in origin])
        reference.SetDirection(image.GetDirection())
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    default = 0 if label else -1024
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, default, image.GetPixelID())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="demo_run", help="the demo main job's output folder")
    parser.add_argument("--models", default=None, help="comma-separated bundle names (default: every one)")
    parser.add_argument("--case", default="demo_0000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import slicer

    from TACEPredictLib.slicer import mrml
    from TACEPredictLib.data.images import read_segmentation
    from TACEPredictLib.data.manifest import read_manifest
    manifest = read_manifest(os.path.join(args.run, "cohort", "manifest.csv"))
    row = manifest.row(args.case)
    models_dir = os.path.join(args.run, "survival", "models")
    names = args.models.split(",") if args.models else sorted(os.listdir(models_dir))
    bundles = [os.path.join(models_dir, name) for name in names]
    arterial = on_clinical_grid(sitk.ReadImage(manifest.resolve(row["ct_ap"])))
    portal = on_clinical_grid(sitk.ReadImage(manifest.resolve(row["ct_pvp"])), arterial)
    seg = read_segmentation(manifest.resolve(row["seg"]), args.case)
    lesion = seg.mask(row.get("seg_label") if isinstance(row.get("seg_label"), str) else None)
    mask = on_clinical_grid(lesion, arterial, label=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; CT {arterial.GetSize()}; "
          f"models: {', '.join(names)} + clinical-semantic")

    scene = slicer.vtkMRMLScene()
    nodes = {"ct_ap": mrml.image_to_volume(arterial, scene, "arterial"),
             "ct_pvp": mrml.image_to_volume(portal, scene, "portal")}
    labelmap = mrml.image_to_volume(mask, scene, "tumour", labelmap=True)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(nodes["ct_ap"])
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    segment = segmentation.GetSegmentation().GetNthSegmentID(0)
    clinical = row.to_dict()

    def apply(heatmaps):
        start = time.perf_counter()
        out = mrml.run_case(scene, nodes, segmentation=segmentation, segment_id=segment, clinical=clinical,
                            bundles=bundles, case_id=args.case, heatmaps=heatmaps, device="cpu")
        return time.perf_counter() - start, out

    apply(False)  # warm-up: imports, first model loads, PyTorch kernels
    for heatmaps in (False, True):
        runs = [apply(heatmaps) for _ in range(args.repeats)]
        seconds = sorted(s for s, _ in runs)
        median, out = seconds[len(seconds) // 2], runs[-1][1]
        failed = out["results"][out["results"]["error"] != ""]
        steps = ", ".join(f"{k} {v:.2f}" for k, v in out["timings"].items() if k != "total")
        print(f"Apply {'with' if heatmaps else 'without'} Grad-CAM: median of {args.repeats} {median:.2f} s "
              f"(min {seconds[0]:.2f}); target {TARGET_SECONDS:.0f} s; total / target = {median / TARGET_SECONDS:.2f}")
        print(f"  steps (s): {steps}")
        if len(failed):
            print(f"  models that did not run: {dict(zip(failed['model'], failed['error']))}")


if __name__ == "__main__":
    main()
