"""CPU cost of the deep-feature extraction per case, ResNet50 against ResNet101 (DLOP-Combin's paper backbone).

Writes a few synthetic demo cases, cuts the patches the demo's extraction feeds a backbone (both phases, the
sampling and normalisation of the offline demo, `inside` + `window`, and of the ImageNet run, `centre` +
`zscore`) and times each backbone's forward pass on them, after one warm-up case. Run it with one thread, as
the demo's workers do:

    OMP_NUM_THREADS=1 python scripts/benchmark_backbones.py --cases 4 --out /tmp/backbones

Prints one line per backbone and sampling: seconds per case (mean over cases), patches per case.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--out", required=True, help="folder for the synthetic cases")
    parser.add_argument("--backbones", default="resnet50,resnet101")
    args = parser.parse_args(argv)
    import SimpleITK as sitk
    import torch

    from TACEPredictLib.data.demo_cohort import generate_cohort
    from TACEPredictLib.data.manifest import read_manifest
    from TACEPredictLib.imaging.deep_features import DeepFeatureExtractor
    from TACEPredictLib.imaging.extraction import deep_patches
    from TACEPredictLib.imaging.preprocess import load_case

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    path = generate_cohort(args.out, cases=args.cases + 1, seed=0, workers=1)
    manifest = read_manifest(path)
    cases = [load_case(manifest, row, ["ct_ap", "ct_pvp"], "rigid") for _, row in manifest.table.iterrows()]
    for sampling, normalisation in (("inside", "window"), ("centre", "zscore")):
        patches = [[deep_patches(sitk.GetArrayFromImage(c.phases[p]), c.mask_array(), sampling, normalisation)[0]
                    for p in ("ct_ap", "ct_pvp")] for c in cases]
        for name in args.backbones.split(","):
            extractor = DeepFeatureExtractor(name, weights="random", device="cpu", precision="float32")
            seconds = []
            for i, case in enumerate(patches):
                start = time.perf_counter()
                for phase in case:
                    extractor.features(phase)
                if i:  # the first case warms up
                    seconds.append(time.perf_counter() - start)
            count = sum(len(p) for c in patches[1:] for p in c) / len(seconds)
            print(f"{name:10s} {sampling:6s}/{normalisation:6s}: {sum(seconds) / len(seconds):6.2f} s per case "
                  f"(min {min(seconds):.2f}, max {max(seconds):.2f}; {count:.1f} patches per case over 2 phases)",
                  flush=True)


if __name__ == "__main__":
    main()
