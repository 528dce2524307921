"""Time TACEPredictLib's torch shape features against pyradiomics' shape class, per lesion, with parity.

Lesions: balls of 1, 3 and 10 cm diameter at 1 mm, a 10 cm ellipsoid at 0.7 x 0.7 x 5 mm (a typical liver CT
grid), pyradiomics' brain1/breast1 test masks and the IBSI CT phantom's tumour (when ../shared/data is there),
and a few edge cases (a one-voxel sheet, a tilted sheet, one voxel, random noise, all 255 2x2x2 patterns).
Both sides get the mask cropped to the ROI's bounding box, as pyradiomics' extractor hands it to the shape
class, and the same number of CPU threads (--threads, default 1; pyradiomics' shape code is single-threaded).
Each time is the best of --repeat runs. --clock cpu measures process CPU time instead of wall time: use it on a
shared, busy machine (it is what a quiet machine's wall time would be, for one thread); CUDA always uses wall
time with synchronisation.

Here, with pyradiomics:
    PYTHONPATH=$PWD python benchmarks/bench_torch_radiomics_shape.py --clock cpu
    PYTHONPATH=$PWD python benchmarks/bench_torch_radiomics_shape.py --save-reference shape_ref.npz
On a machine without pyradiomics (a GPU box), with the file written above:
    PYTHONPATH=$PWD python benchmarks/bench_torch_radiomics_shape.py --reference shape_ref.npz --device cuda --memory

Prints, per lesion: voxels, pyradiomics ms (measured now, or stored in the reference file), torch ms,
speed-up, and the largest difference from pyradiomics over all 17 features (relative; absolute below 1e-9;
for degenerate PCA, see Testing/test_torch_radiomics_shape.py, the eigenvalue-noise allowance).
--memory adds the peak extra GPU memory for a 10 cm ball inside a 512 x 512 x 300 grid.
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from TACEPredictLib.imaging.torch_radiomics.shape import DEPRECATED, FEATURES, shape_features  # noqa: E402

ALL = list(FEATURES) + list(DEPRECATED)
SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")


def crop(m):
    idx = np.nonzero(m)
    return np.ascontiguousarray(m[tuple(slice(i.min(), i.max() + 1) for i in idx)])


def ellipsoid(radii_mm, spacing):
    """Bool [z, y, x] ellipsoid with semi-axes radii_mm (x, y, z) on a grid of spacing (sx, sy, sz), cropped."""
    half = [int(math.ceil(r / s)) + 1 for r, s in zip(radii_mm, spacing)]
    z, y, x = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half[::-1], spacing[::-1])], indexing="ij")
    return crop((x / radii_mm[0]) ** 2 + (y / radii_mm[1]) ** 2 + (z / radii_mm[2]) ** 2 <= 1)


def lesions():
    """[(name, bool mask [z, y, x], spacing (sx, sy, sz))]."""
    out = [("ball 1 cm, 1 mm", ellipsoid((5, 5, 5), (1.0, 1.0, 1.0)), (1.0, 1.0, 1.0)),
           ("ball 3 cm, 1 mm", ellipsoid((15, 15, 15), (1.0, 1.0, 1.0)), (1.0, 1.0, 1.0)),
           ("ball 10 cm, 1 mm", ellipsoid((50, 50, 50), (1.0, 1.0, 1.0)), (1.0, 1.0, 1.0)),
           ("ellipsoid 10 cm, .7x.7x5", ellipsoid((50, 35, 40), (0.7, 0.7, 5.0)), (0.7, 0.7, 5.0))]
    try:
        import SimpleITK as sitk
        for name, path, label in (("pyradiomics brain1", ("pyradiomics", "brain1_label.nrrd"), 1),
                                  ("pyradiomics breast1", ("pyradiomics", "breast1_label.nrrd"), 1),
                                  ("IBSI CT phantom", ("ibsi", "ct_phantom", "mask.nii.gz"), None)):
            file = os.path.join(SHARED, *path)
            if os.path.exists(file):
                image = sitk.ReadImage(file)
                array = sitk.GetArrayFromImage(image)
                out.append((name, crop(array == label if label else array != 0), image.GetSpacing()))
    except ImportError:
        pass
    sheet = np.zeros((1, 22, 24), bool)
    sheet[0, 2:20, 3:22] = True
    tilted = np.zeros((20, 20, 15), bool)
    for i in range(20):
        tilted[i, 19 - i, 2:13] = True
    patterns = np.zeros((18, 21, 21), bool)
    for code in range(1, 256):
        k = code - 1
        z, y, x = 3 * (k // 49), 3 * ((k // 7) % 7), 3 * (k % 7)
        patterns[z:z + 2, y:y + 2, x:x + 2] = np.array([(code >> b) & 1 for b in range(8)], bool).reshape(2, 2, 2)
    out += [("one-voxel sheet", sheet, (0.9, 0.8, 3.0)), ("tilted sheet", tilted, (1.0, 1.0, 1.0)),
            ("single voxel", np.ones((1, 1, 1), bool), (0.8, 0.9, 2.0)),
            ("random noise", np.random.default_rng(7).random((9, 11, 10)) < 0.45, (0.8, 0.9, 2.0)),
            ("all 2x2x2 patterns", patterns, (0.7, 1.1, 2.3))]
    return out


def pyradiomics_shape(mask, spacing):
    import logging

    import SimpleITK as sitk
    from radiomics import shape
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    m = sitk.GetImageFromArray(mask.astype(np.uint8))
    m.SetSpacing(tuple(float(s) for s in spacing))
    im = sitk.GetImageFromArray(np.zeros(mask.shape, np.float32))
    im.SetSpacing(tuple(float(s) for s in spacing))
    cls = shape.RadiomicsShape(im, m, label=1)
    for name in ALL:
        cls.enableFeatureByName(name)
    with np.errstate(all="ignore"):
        return {k: float(v) for k, v in cls.execute().items()}


def best_time(fn, repeat, clock):
    out, best = fn(), float("inf")  # first call: warm-up
    for _ in range(repeat):
        t = clock()
        out = fn()
        best = min(best, clock() - t)
    return out, best


def worst_difference(got, ref):
    """Largest relative difference (absolute below 1e-9); degenerate-PCA rounding noise allowed (axis lengths
    within 1e-7 x MajorAxisLength, Elongation/Flatness within 1e-7)."""
    worst, where = 0.0, ""
    for k, v in ref.items():
        a = got[k]
        if math.isnan(v) or math.isnan(a):
            d = 0.0 if (math.isnan(v) and math.isnan(a)) else math.inf
        else:
            d = abs(a - v) / abs(v) if abs(v) > 1e-9 else abs(a - v)
            if k in ("LeastAxisLength", "MinorAxisLength") and abs(a - v) <= 1e-7 * ref["MajorAxisLength"]:
                d = 0.0
            if k in ("Elongation", "Flatness") and abs(a - v) <= 1e-7:
                d = 0.0
        if d > worst:
            worst, where = d, k
    return worst, where


def save_reference(path, repeat):
    data = {"names": np.array(ALL)}
    for i, (name, mask, spacing) in enumerate(lesions()):
        reps = 1 if mask.sum() > 1e5 else repeat
        ref, t = best_time(lambda: pyradiomics_shape(mask, spacing), reps, time.process_time)
        data.update({f"name{i}": np.array(name), f"shape{i}": np.array(mask.shape),
                     f"bits{i}": np.packbits(mask.ravel()), f"spacing{i}": np.array(spacing, float),
                     f"ref{i}": np.array([ref[k] for k in ALL]), f"pyr_cpu_s{i}": np.array(t)})
        print(f"{name:26s} {int(mask.sum()):8d} voxels, pyradiomics {t * 1e3:.1f} ms CPU", flush=True)
    data["n"] = np.array(len([k for k in data if k.startswith("name")]) - 1)
    np.savez_compressed(path, **data)


def load_reference(path):
    ref = np.load(path)
    names = [str(x) for x in ref["names"]]
    out = []
    for i in range(int(ref["n"])):
        shape = tuple(int(v) for v in ref[f"shape{i}"])
        mask = np.unpackbits(ref[f"bits{i}"])[:int(np.prod(shape))].astype(bool).reshape(shape)
        out.append((str(ref[f"name{i}"]), mask, tuple(float(v) for v in ref[f"spacing{i}"]),
                    dict(zip(names, (float(v) for v in ref[f"ref{i}"]))), float(ref[f"pyr_cpu_s{i}"])))
    return out


def memory_check(device):
    """Peak extra GPU memory and time for a 10 cm ball at 1 mm inside an uncropped 512 x 512 x 300 mask."""
    ball = ellipsoid((50, 50, 50), (1.0, 1.0, 1.0))
    big = np.zeros((300, 512, 512), bool)
    big[100:100 + ball.shape[0], 200:200 + ball.shape[1], 150:150 + ball.shape[2]] = ball
    tb = torch.from_numpy(big).to(device)
    shape_features(tb, (1.0, 1.0, 1.0), ALL)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    shape_features(tb, (1.0, 1.0, 1.0), ALL)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    print(f"512x512x300 grid, 10 cm ball: {dt * 1e3:.1f} ms, peak GPU memory beyond the mask {peak:.1f} MiB "
          f"(the bool mask: {big.nbytes / 2 ** 20:.0f} MiB)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--save-reference", metavar="FILE", help="write masks + pyradiomics values/times, then stop")
    ap.add_argument("--reference", metavar="FILE", help="read them instead of running pyradiomics")
    ap.add_argument("--memory", action="store_true", help="also the 512x512x300 GPU memory check (CUDA)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.save_reference:
        save_reference(args.save_reference, args.repeat)
        return
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    clock = time.perf_counter if (cuda or args.clock == "wall") else time.process_time
    if args.reference:
        cases = load_reference(args.reference)
        stored = True
    else:
        cases = [(n, m, s, None, None) for n, m, s in lesions()]
        stored = False
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"clock {'wall' if clock is time.perf_counter else 'process CPU'}; pyradiomics "
          f"{'times stored in ' + args.reference + ' (process CPU, 1 thread)' if stored else 'run here'}")
    print(f"{'lesion':26s} {'voxels':>8s} {'pyrad ms':>9s} {'torch ms':>9s} {'speed-up':>8s} {'max diff':>9s}")
    for name, mask, spacing, ref, t_pyr in cases:
        t_mask = torch.from_numpy(mask).to(device)

        def run():
            r = shape_features(t_mask, spacing, ALL)
            if cuda:
                torch.cuda.synchronize()
            return r
        reps = max(1, min(args.repeat, 2)) if mask.sum() > 1e5 else args.repeat
        got, t_torch = best_time(run, reps, clock)
        if ref is None:
            ref, t_pyr = best_time(lambda: pyradiomics_shape(mask, spacing), reps, clock)
        diff, where = worst_difference(got, ref)
        print(f"{name:26s} {int(mask.sum()):8d} {t_pyr * 1e3:9.1f} {t_torch * 1e3:9.1f} "
              f"{t_pyr / t_torch:7.1f}x {diff:9.1e} {where}", flush=True)
    if args.memory and cuda:
        memory_check(device)


if __name__ == "__main__":
    main()
