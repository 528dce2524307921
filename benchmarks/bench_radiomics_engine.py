"""Parity and speed of the torch radiomics engine against pyradiomics 3.0.1, side by side, on demo-cohort lesions.

Three ways to run it:

  # here (pyradiomics installed): both engines in one run
  PYTHONPATH=$PWD python benchmarks/bench_radiomics_engine.py --lesions 8 --device cpu

  # store pyradiomics' values, one-core timings and the exact inputs (cropped CT + mask of each lesion)
  PYTHONPATH=$PWD python benchmarks/bench_radiomics_engine.py --lesions 12 --save-reference ref.npz

  # on a machine without pyradiomics (e.g. a GPU box): compare against the stored reference
  PYTHONPATH=$PWD python benchmarks/bench_radiomics_engine.py --reference ref.npz --device cuda

Lesions: the ``ct_pvp`` phase of a manifest (``--manifest``; default: a 40-case demo cohort generated with
``tacepredict phantom --cases 40 --seed 0`` into ``--cohort-dir``), loaded as TACEPredict loads them
(``preprocess.load_case``), cropped to the lesion plus 15 mm (enough for pyradiomics' resampling grid with
padDistance 10), sorted by volume; ``--lesions N`` takes N of them evenly from the smallest to the largest.
Both engines get the very same cropped image and mask and run the whole ``execute`` (resampling included).

What it prints:
- parity: the largest relative difference (|a - b| / |a|; 0 when |a - b| <= 1e-9) per feature class and per
  image type, and the worst features;
- speed: seconds per lesion for each engine and the ratio, per lesion-size bucket (equivalent-sphere diameter),
  per image type (the engine run once per image type: original, wavelet, log), and the share of time per
  stage (resample, filters, discretise, shape, firstorder, each texture class).
Timings: pyradiomics runs on one thread (SimpleITK's threads set to 1) and its CPU time is reported, which the
load of a shared machine barely changes. The torch engine on ``--device cpu`` is timed the same way (CPU time of
all its ``--threads`` threads, so with more than one thread the ratio is per CPU second, not per wall second;
wall time is printed per lesion); on CUDA its wall time (synchronised) is reported. Run-to-run noise on a
shared 2-core machine is about 10-20 %.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

STAGES = ("resample", "filters", "discretise", "shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
BUCKETS = ((0, 20, "< 20 mm"), (20, 40, "20-40 mm"), (40, 60, "40-60 mm"), (60, 1e9, ">= 60 mm"))
NEAR_ZERO = 1e-9


# ---------------------------------------------------------------- inputs

def load_lesions(manifest_path, count, phase="ct_pvp", margin_mm=15.0):
    """[(case_id, image array, mask array (uint8), spacing, origin, direction)] sorted by lesion volume."""
    import SimpleITK as sitk

    from TACEPredictLib.data.manifest import read_manifest
    from TACEPredictLib.imaging.preprocess import load_case

    manifest = read_manifest(manifest_path)
    if phase not in manifest.phases:
        phase = manifest.phases[0]
    lesions = []
    for _, row in manifest.table.iterrows():
        case = load_case(manifest, row, phases=[phase], register="none")
        image, mask = case.phases[phase], case.mask
        array = sitk.GetArrayFromImage(image)
        roi = sitk.GetArrayFromImage(mask) > 0
        spacing = np.array(image.GetSpacing())
        zyx = np.nonzero(roi)
        margin = np.ceil(margin_mm / spacing[::-1]).astype(int) + 1
        lower = np.maximum([a.min() for a in zyx] - margin, 0)
        upper = np.minimum([a.max() + 1 for a in zyx] + margin, roi.shape)
        window = tuple(slice(lo, hi) for lo, hi in zip(lower, upper))
        origin = image.TransformIndexToPhysicalPoint([int(i) for i in lower[::-1]])
        lesions.append({"case_id": str(case.case_id), "image": np.ascontiguousarray(array[window]),
                        "mask": np.ascontiguousarray(roi[window].astype(np.uint8)), "spacing": list(spacing),
                        "origin": list(origin), "direction": list(image.GetDirection()),
                        "volume_mm3": float(roi.sum() * np.prod(spacing))})
    lesions.sort(key=lambda lesion: lesion["volume_mm3"])
    if count and count < len(lesions):
        picks = sorted(set(np.linspace(0, len(lesions) - 1, count).round().astype(int).tolist()))
        lesions = [lesions[i] for i in picks]
    return lesions


def to_images(lesion):
    import SimpleITK as sitk
    image = sitk.GetImageFromArray(lesion["image"])
    mask = sitk.GetImageFromArray(lesion["mask"])
    for item in (image, mask):
        item.SetSpacing(lesion["spacing"])
        item.SetOrigin(lesion["origin"])
        item.SetDirection(lesion["direction"])
    return image, mask


def ensure_cohort(directory):
    manifest = os.path.join(directory, "manifest.csv")
    if not os.path.isfile(manifest):
        from TACEPredictLib.data.demo_cohort import generate_cohort
        print(f"generating a 40-case demo cohort in {directory} ...", flush=True)
        generate_cohort(directory, cases=40, seed=0)
    return manifest


def resolve_params(params):
    presets = {"ct": os.path.join(ROOT, "TACEPredictLib", "Resources", "radiomics_ct.yaml"),
               "ct-fast": os.path.join(ROOT, "TACEPredictLib", "Resources", "radiomics_ct_fast.yaml")}
    path = presets.get(params, params)
    if isinstance(path, str) and os.path.isfile(path):
        import yaml
        with open(path) as handle:
            return yaml.safe_load(handle)
    raise SystemExit(f"parameter file not found: {params}")


def family(image_type):
    return image_type.split("-")[0] if not image_type.startswith("wavelet") else "wavelet"


# ---------------------------------------------------------------- pyradiomics, instrumented

class PyradiomicsTimer:
    """Wraps pyradiomics' stages (loadImage + checkMask + resegmentMask, filters, binImage, shape, each feature
    class) to measure CPU time per stage and per image type, without changing any value."""

    def __init__(self):
        import radiomics
        from radiomics import featureextractor, imageoperations
        self.stage = collections.defaultdict(float)
        self.by_type = collections.defaultdict(float)
        self.clock = time.process_time
        self.depth = collections.defaultdict(int)
        timer = self

        def timed(stage, function):
            # a call nested in another of the same stage (checkMask inside loadImage) is counted once
            def wrapper(*args, **kwargs):
                timer.depth[stage] += 1
                start = timer.clock()
                try:
                    return function(*args, **kwargs)
                finally:
                    timer.depth[stage] -= 1
                    if timer.depth[stage] == 0:
                        timer.stage[stage] += timer.clock() - start
            return wrapper

        def timed_generator(kind, function):
            def wrapper(*args, **kwargs):
                generator = function(*args, **kwargs)
                while True:
                    start = timer.clock()
                    try:
                        item = next(generator)
                    except StopIteration:
                        timer.stage["filters"] += timer.clock() - start
                        return
                    elapsed = timer.clock() - start
                    timer.stage["filters"] += elapsed
                    timer.by_type[kind] += elapsed
                    yield item
            return wrapper

        extractor_cls = featureextractor.RadiomicsFeatureExtractor
        self._saved = [(extractor_cls, "loadImage", extractor_cls.__dict__["loadImage"]),
                       (imageoperations, "checkMask", imageoperations.checkMask),
                       (imageoperations, "resegmentMask", imageoperations.resegmentMask),
                       (imageoperations, "binImage", imageoperations.binImage),
                       (extractor_cls, "computeShape", extractor_cls.computeShape),
                       (extractor_cls, "computeFeatures", extractor_cls.computeFeatures)]
        for kind in ("Original", "Wavelet", "LoG"):
            name = f"get{kind}Image"
            self._saved.append((imageoperations, name, getattr(imageoperations, name)))
            setattr(imageoperations, name, timed_generator(family(kind.lower()), getattr(imageoperations, name)))
        extractor_cls.loadImage = staticmethod(timed("resample", extractor_cls.__dict__["loadImage"].__func__))
        imageoperations.checkMask = timed("resample", imageoperations.checkMask)
        imageoperations.resegmentMask = timed("resample", imageoperations.resegmentMask)
        imageoperations.binImage = timed("discretise", imageoperations.binImage)
        extractor_cls.computeShape = timed("shape", extractor_cls.computeShape)
        original_compute = extractor_cls.computeFeatures

        def compute_features(self_, image, mask, image_type_name, **kwargs):
            start = timer.clock()
            try:
                return original_compute(self_, image, mask, image_type_name, **kwargs)
            finally:
                timer.by_type[family(image_type_name)] += timer.clock() - start
        extractor_cls.computeFeatures = compute_features
        classes = radiomics.getFeatureClasses()
        self._saved_classes = dict(classes)
        for name, cls in list(classes.items()):
            if name.startswith("shape"):
                continue
            classes[name] = self._timed_class(name, cls)

    def _timed_class(self, name, cls):
        timer = self

        class Timed(cls):
            def __init__(self, *args, **kwargs):
                start = timer.clock()
                binning = timer.stage["discretise"]
                try:
                    super().__init__(*args, **kwargs)
                finally:
                    timer.stage[name] += timer.clock() - start - (timer.stage["discretise"] - binning)

            def execute(self):
                start = timer.clock()
                try:
                    return super().execute()
                finally:
                    timer.stage[name] += timer.clock() - start
        Timed.__name__ = cls.__name__
        Timed.__module__ = cls.__module__  # pyradiomics' class loggers are named after the module
        return Timed

    def reset(self):
        self.stage.clear()
        self.by_type.clear()

    def restore(self):
        import radiomics
        for owner, name, value in self._saved:
            setattr(owner, name, value)
        radiomics.getFeatureClasses().update(self._saved_classes)


def run_pyradiomics(lesions, params, threads):
    """{case_id: {"features": {...}, "seconds": cpu s, "wall": s, "stages": {...}, "types": {...}}}."""
    import SimpleITK as sitk
    from radiomics import featureextractor
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    timer = PyradiomicsTimer()
    out = {}
    try:
        for lesion in lesions:
            image, mask = to_images(lesion)
            extractor = featureextractor.RadiomicsFeatureExtractor(params)
            timer.reset()
            wall, cpu = time.perf_counter(), time.process_time()
            result = extractor.execute(image, mask)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            features = {k: float(np.asarray(v)) for k, v in result.items() if not k.startswith("diagnostics_")}
            stages = {s: timer.stage.get(s, 0.0) for s in STAGES}
            out[lesion["case_id"]] = {"features": features, "seconds": cpu, "wall": wall, "stages": stages,
                                      "types": dict(timer.by_type)}
            print(f"  pyradiomics {lesion['case_id']}: {cpu:.2f} s CPU ({wall:.2f} s wall)", flush=True)
    finally:
        timer.restore()
    return out


# ---------------------------------------------------------------- torch engine

def run_torch(lesions, params, device, per_type=True):
    """{case_id: {"features", "seconds", "stages", "types", "device"}} with a warm-up on the first lesion."""
    import torch

    from TACEPredictLib.imaging.torch_radiomics import TorchRadiomicsExtractor

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    cpu = torch.device(device).type == "cpu"
    clock = time.process_time if cpu else time.perf_counter  # CPU time on the CPU: robust to a shared machine
    extractor = TorchRadiomicsExtractor(params, device=device, profile="cpu" if cpu else "wall")
    image, mask = to_images(lesions[0])
    extractor.execute(image, mask)  # warm-up: CUDA context, kernels, operator caches
    families = []
    for image_type in params.get("imageType", {"Original": {}}):
        families.append(image_type)
    out = {}
    for lesion in lesions:
        image, mask = to_images(lesion)
        extractor.timings.clear()
        sync()
        start, wall = clock(), time.perf_counter()
        result = extractor.execute(image, mask)
        sync()
        seconds, wall = clock() - start, time.perf_counter() - wall
        stages = {s: extractor.timings.get(s, 0.0) for s in STAGES}
        features = {k: float(np.asarray(v)) for k, v in result.items() if not k.startswith("diagnostics_")}
        types = {}
        if per_type and len(families) > 1:
            # each image type alone (no shape: it belongs to none); the same filters and classes as the full run
            for image_type in families:
                single = TorchRadiomicsExtractor(
                    {**params, "imageType": {image_type: params["imageType"][image_type]},
                     "featureClass": {k: v for k, v in (params.get("featureClass") or {}).items()
                                      if k != "shape"} or None},
                    device=device, profile="cpu" if cpu else "wall")
                single.execute(image, mask)
                types[family(image_type.lower())] = sum(v for k, v in single.timings.items()
                                                        if k not in ("resample", "shape"))
        out[lesion["case_id"]] = {"features": features, "seconds": seconds, "wall": wall, "stages": stages,
                                  "types": types, "device": extractor.last_device}
        print(f"  torch {lesion['case_id']}: {seconds:.3f} s {'CPU' if cpu else 'wall'} ({wall:.3f} s wall) on "
              f"{extractor.last_device}", flush=True)
    return out


# ---------------------------------------------------------------- reporting

def relative_difference(a, b):
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    if abs(a - b) <= NEAR_ZERO:
        return 0.0
    return abs(a - b) / abs(a) if a != 0 else math.inf


def parity_report(reference, ours, lines):
    by_class, by_type, worst = collections.defaultdict(float), collections.defaultdict(float), []
    missing, compared = set(), 0
    for case_id, ref in reference.items():
        mine = ours[case_id]["features"]
        for name, value in ref["features"].items():
            if name not in mine:
                missing.add(name)
                continue
            difference = relative_difference(value, mine[name])
            image_type, feature_class, _ = name.split("_", 2)
            by_class[feature_class] = max(by_class[feature_class], difference)
            by_type[family(image_type)] = max(by_type[family(image_type)], difference)
            worst.append((difference, name, case_id, value, mine[name]))
            compared += 1
        extra = set(mine) - set(ref["features"])
        if extra:
            lines.append(f"  {case_id}: {len(extra)} features pyradiomics does not write, e.g. {sorted(extra)[:3]}")
    lines.append(f"parity: {compared} values compared over {len(reference)} lesions; "
                 f"{len(missing)} pyradiomics features missing {sorted(missing)[:5]}")
    lines.append("  largest relative difference per feature class: " +
                 ", ".join(f"{k} {v:.2g}" for k, v in sorted(by_class.items())))
    lines.append("  largest relative difference per image type:    " +
                 ", ".join(f"{k} {v:.2g}" for k, v in sorted(by_type.items())))
    worst.sort(key=lambda item: -item[0])
    lines.append("  worst features (relative difference, feature, lesion, pyradiomics, torch):")
    for difference, name, case_id, a, b in worst[:10]:
        lines.append(f"    {difference:.3g}  {name}  {case_id}  {a!r}  {b!r}")
    over = sum(1 for item in worst if item[0] > 1e-6)
    lines.append(f"  values above 1e-6: {over} of {compared}")


def speed_report(lesions, reference, ours, lines, device, threads):
    info = {lesion["case_id"]: lesion for lesion in lesions}
    lines.append("")
    lines.append(f"speed: pyradiomics 3.0.1 on 1 thread (CPU seconds) vs torch on {device}"
                 + (f" ({threads} thread(s), CPU seconds: all threads' time, so a ratio per CPU second)"
                    if device == "cpu" else " (wall seconds)"))
    lines.append(f"  {'lesion':<11}{'ROI voxels':>11}{'diam mm':>9}{'pyrad s':>9}{'torch s':>9}{'ratio':>8}")
    rows = []
    for case_id, ref in reference.items():
        lesion = info[case_id]
        voxels = int(lesion["mask"].sum())
        diameter = (6 * lesion["volume_mm3"] / math.pi) ** (1 / 3)
        a, b = ref["seconds"], ours[case_id]["seconds"]
        rows.append((case_id, voxels, diameter, a, b))
        lines.append(f"  {case_id:<11}{voxels:>11}{diameter:>9.1f}{a:>9.2f}{b:>9.3f}{a / b:>8.1f}x")
    lines.append("  per lesion-size bucket (equivalent-sphere diameter): lesions, pyradiomics s, torch s, ratio")
    for low, high, label in BUCKETS:
        members = [r for r in rows if low <= r[2] < high]
        if members:
            a = sum(r[3] for r in members)
            b = sum(r[4] for r in members)
            lines.append(f"    {label:<10}{len(members):>4}{a:>10.2f}{b:>10.3f}{a / b:>8.1f}x")
    a, b = sum(r[3] for r in rows), sum(r[4] for r in rows)
    lines.append(f"    {'all':<10}{len(rows):>4}{a:>10.2f}{b:>10.3f}{a / b:>8.1f}x")
    types = collections.defaultdict(lambda: [0.0, 0.0])
    for case_id, ref in reference.items():
        for kind, seconds in ref.get("types", {}).items():
            types[kind][0] += seconds
        for kind, seconds in ours[case_id].get("types", {}).items():
            types[kind][1] += seconds
    if any(v[1] for v in types.values()):
        lines.append("  per image type (filters + features of that type, no resampling or shape; torch: the engine "
                     "run on that type alone): pyradiomics s, torch s, ratio")
        for kind, (a, b) in sorted(types.items()):
            if b:
                lines.append(f"    {kind:<10}{a:>10.2f}{b:>10.3f}{a / b:>8.1f}x")
    lines.append("  share of time per stage: pyradiomics s (share), torch s (share)")
    total_a = sum(sum(ref["stages"].values()) for ref in reference.values()) or 1
    total_b = sum(sum(ours[c]["stages"].values()) for c in reference) or 1
    for stage in STAGES:
        a = sum(ref["stages"].get(stage, 0.0) for ref in reference.values())
        b = sum(ours[c]["stages"].get(stage, 0.0) for c in reference)
        ratio = f"{a / b:8.1f}x" if b > 0 else ""
        lines.append(f"    {stage:<11}{a:>9.2f} ({100 * a / total_a:4.1f}%){b:>9.3f} ({100 * b / total_b:4.1f}%)"
                     f"{ratio}")


# ---------------------------------------------------------------- reference file

def save_reference(path, lesions, params, results, threads):
    arrays = {}
    meta = {"params": params, "threads": threads, "lesions": [], "results": results,
            "versions": versions(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    for i, lesion in enumerate(lesions):
        arrays[f"image_{i:03d}"] = lesion["image"]
        arrays[f"mask_{i:03d}"] = np.packbits(lesion["mask"].astype(bool).ravel())
        meta["lesions"].append({k: lesion[k] for k in ("case_id", "spacing", "origin", "direction", "volume_mm3")}
                               | {"shape": list(lesion["mask"].shape)})
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB, {len(lesions)} lesions)")


def load_reference(path):
    data = np.load(path)
    meta = json.loads(bytes(data["meta"]).decode())
    lesions = []
    for i, info in enumerate(meta["lesions"]):
        shape = tuple(info["shape"])
        mask = np.unpackbits(data[f"mask_{i:03d}"])[:int(np.prod(shape))].reshape(shape).astype(np.uint8)
        lesions.append(dict(info, image=data[f"image_{i:03d}"], mask=mask))
    return meta, lesions


def versions():
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for module in ("torch", "SimpleITK", "radiomics"):
        try:
            imported = __import__(module)
            out[module] = getattr(imported, "__version__", None) or str(getattr(imported, "Version", ""))
        except Exception:
            pass
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=6, help="lesions, smallest to largest (default 6)")
    parser.add_argument("--manifest", help="a TACEPredict manifest (default: generated demo cohort)")
    parser.add_argument("--cohort-dir", default="/tmp/engine_cohort", help="where to generate the demo cohort")
    parser.add_argument("--params", default="ct", help="preset (ct, ct-fast) or pyradiomics parameter file")
    parser.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, mps")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch on cpu (default 1)")
    parser.add_argument("--save-reference", metavar="FILE", help="run pyradiomics only and store its values, "
                        "one-core timings and the inputs")
    parser.add_argument("--reference", metavar="FILE", help="compare against a stored reference (no pyradiomics)")
    parser.add_argument("--no-per-type", action="store_true", help="skip the per-image-type torch runs")
    parser.add_argument("--out", help="also write the report to this file")
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    logging.getLogger("TACEPredictLib").setLevel(logging.ERROR)

    if args.reference:
        meta, lesions = load_reference(args.reference)
        params = meta["params"]
        reference = meta["results"]
        print(f"reference: {len(lesions)} lesions, pyradiomics run with {meta['versions']}")
    else:
        params = resolve_params(args.params)
        manifest = args.manifest or ensure_cohort(args.cohort_dir)
        lesions = load_lesions(manifest, args.lesions)
        print(f"{len(lesions)} lesions from {manifest}, {min(l['volume_mm3'] for l in lesions):.0f} to "
              f"{max(l['volume_mm3'] for l in lesions):.0f} mm^3", flush=True)
        reference = run_pyradiomics(lesions, params, 1 if args.save_reference else args.threads)
        if args.save_reference:
            save_reference(args.save_reference, lesions, params, reference, 1)
            return 0
    from TACEPredictLib.imaging.torch_radiomics import resolve_device
    device = resolve_device(args.device)
    ours = run_torch(lesions, params, device, per_type=not args.no_per_type)
    lines = ["", f"torch radiomics engine vs pyradiomics 3.0.1 ({versions()}), device {device}"
             + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
             f"parameters: {args.params if not args.reference else 'from the reference file'}"]
    parity_report(reference, ours, lines)
    speed_report(lesions, reference, ours, lines, device.type, args.threads)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
