"""Time TACEPredictLib's torch texture classes (GLCM, GLRLM, GLSZM, GLDM, NGTDM) against pyradiomics', with parity.

Cases: balls of --radius voxels (default 10, 20, 50: 4,139, 33,371 and 523,155 ROI voxels at 1 mm), each with
--images smooth noisy CT-like images of different contrast (13 by default, the ``ct`` preset's batch: 5 to 70
gray levels at binWidth 25), made with numpy from fixed seeds so that every machine gets the same arrays. The
engine gets the batch in one call; pyradiomics' five classes run image by image on the first --pyradiomics-images
images (their own binning included) and the time is scaled to the whole batch. --clock cpu measures process CPU
time (use it on a shared, busy machine); CUDA always uses wall time with synchronisation. Same thread count on
both sides (--threads, default 1; pyradiomics' C matrices are single-threaded).

Here, with pyradiomics:
    PYTHONPATH=$PWD python benchmarks/bench_torch_radiomics_texture.py --clock cpu
    PYTHONPATH=$PWD python benchmarks/bench_torch_radiomics_texture.py --save-reference texture_ref.npz
On a machine without pyradiomics (a GPU box), with the file written above:
    PYTHONPATH=$PWD python benchmarks/bench_torch_radiomics_texture.py --reference texture_ref.npz --device cuda

Prints per case and class: engine seconds, pyradiomics seconds (measured now or stored), speed-up, and the largest
difference from pyradiomics over the compared images (relative; absolute where the value is below 1e-3), plus the
peak GPU memory on CUDA.
"""

import argparse
import logging
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from TACEPredictLib.imaging.torch_radiomics.texture import TEXTURE_CLASSES, texture_features  # noqa: E402

BIN_WIDTH = 25.0


def lesion(radius, seed, noise):
    """HU image and ball mask (numpy), as Testing/test_torch_radiomics_texture.py makes them."""
    rng = np.random.default_rng(seed)
    n = 2 * radius + 6
    z, y, x = np.indices((n, n, n)) - n / 2
    r = np.sqrt(z ** 2 + y ** 2 + x ** 2)
    field = rng.normal(0, 1, (n, n, n))
    for axis in range(3):
        for _ in range(2):
            field = (np.roll(field, 1, axis) + field + np.roll(field, -1, axis)) / 3
    return field * (noise / field.std()) + 60 + 3.0 * (r - radius), (r < radius)


def bin_fixed_width(hu, roi):
    """pyradiomics' binImage with binWidth (getBinEdges: edges from the ROI minimum rounded down to the width)."""
    values = hu[roi]
    low = values.min() - values.min() % BIN_WIDTH
    edges = np.arange(low, values.max() + 2 * BIN_WIDTH, BIN_WIDTH)
    out = np.zeros(hu.shape, dtype=np.int64)
    out[roi] = np.digitize(values, edges)
    return out


def pyradiomics_run(hu, roi):
    import SimpleITK as sitk
    from radiomics import gldm, glcm, glrlm, glszm, ngtdm
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    image, mask = sitk.GetImageFromArray(hu), sitk.GetImageFromArray(roi.astype(np.uint8))
    classes = {"glcm": glcm.RadiomicsGLCM, "glrlm": glrlm.RadiomicsGLRLM, "glszm": glszm.RadiomicsGLSZM,
               "gldm": gldm.RadiomicsGLDM, "ngtdm": ngtdm.RadiomicsNGTDM}
    values, seconds = {}, {}
    for cls, klass in classes.items():
        t = clock()
        result = klass(image, mask, binWidth=BIN_WIDTH).execute()
        seconds[cls] = clock() - t
        values.update({f"{cls}_{k}": float(v) for k, v in result.items()})
    return values, seconds


def clock():
    return time.process_time() if ARGS.clock == "cpu" and ARGS.device == "cpu" else time.perf_counter()


def sync():
    if ARGS.device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    torch.set_num_threads(ARGS.threads)
    reference = dict(np.load(ARGS.reference, allow_pickle=True)) if ARGS.reference else {}
    saved = {}
    device = torch.device(ARGS.device)
    for radius in ARGS.radius:
        arrays = [lesion(radius, s, 20.0 + 15.0 * s) for s in range(ARGS.images)]
        roi = arrays[0][1]
        binned = torch.from_numpy(np.stack([bin_fixed_width(hu, roi) for hu, _ in arrays]))
        x, m = binned.to(device), torch.from_numpy(roi).to(device)
        print(f"radius {radius}: {int(roi.sum())} ROI voxels, {ARGS.images} images, Ng "
              f"{[int(b.max()) for b in binned]}")
        texture_features(x, m, {c: None for c in TEXTURE_CLASSES}, {})            # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        engine, got = {}, {}
        for cls in TEXTURE_CLASSES + ("all",):
            classes = {c: None for c in TEXTURE_CLASSES} if cls == "all" else {cls: None}
            best = float("inf")
            for _ in range(ARGS.repeat):
                sync()
                t = clock()
                out = texture_features(x, m, classes, {})
                sync()
                best = min(best, clock() - t)
            engine[cls] = best
            if cls == "all":
                got = {f"{c}_{k}": v.cpu().double().numpy() for c, d in out.items() for k, v in d.items()}
        peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else None
        key = f"r{radius}"
        if ARGS.reference:
            ref_values = reference[key + "_values"].item()
            ref_seconds = reference[key + "_seconds"].item()
        else:
            ref_values, ref_seconds = {}, {c: 0.0 for c in TEXTURE_CLASSES}
            k = min(ARGS.pyradiomics_images, ARGS.images)
            for hu, _ in arrays[:k]:
                values, seconds = pyradiomics_run(hu, roi)
                for name, v in values.items():
                    ref_values.setdefault(name, []).append(v)
                for c in TEXTURE_CLASSES:
                    ref_seconds[c] += seconds[c] * ARGS.images / k
            ref_seconds["all"] = sum(ref_seconds[c] for c in TEXTURE_CLASSES)
            saved[key + "_values"] = np.array(ref_values, dtype=object)
            saved[key + "_seconds"] = np.array(ref_seconds, dtype=object)
        for cls in TEXTURE_CLASSES + ("all",):
            worst = 0.0
            for name, want in ref_values.items():
                if cls != "all" and not name.startswith(cls + "_"):
                    continue
                have = got[name][:len(want)]
                want = np.asarray(want)
                ok = ~(np.isnan(want) & np.isnan(have))
                diff = np.abs(have - want)[ok]
                scale = np.where(np.abs(want[ok]) < 1e-3, 1.0, np.abs(want[ok]))
                worst = max(worst, float(np.max(diff / scale)) if diff.size else 0.0)
            print(f"  {cls:6s} engine {engine[cls]:8.3f} s   pyradiomics {ref_seconds[cls]:8.3f} s   "
                  f"{ref_seconds[cls] / engine[cls]:6.1f}x   largest difference {worst:.1e}")
        if peak is not None:
            print(f"  peak GPU memory {peak:.0f} MiB")
    if ARGS.save_reference:
        np.savez(ARGS.save_reference, **saved)
        print("saved", ARGS.save_reference)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--radius", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--images", type=int, default=13)
    parser.add_argument("--pyradiomics-images", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference", help="npz written by --save-reference (no pyradiomics needed)")
    parser.add_argument("--save-reference", help="write pyradiomics' values and times to this npz")
    ARGS = parser.parse_args()
    main()
