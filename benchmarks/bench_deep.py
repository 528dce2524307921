"""Deep-feature throughput (patches/s) of DenseNet121 (1024-d) and ResNet50 (2048-d) on 224x224x3 patches:
CPU float32 and, where a CUDA GPU is present, GPU float32 and the automatic half precision, with the
speed-up over CPU - measured side by side in one run.

Usage: python benchmarks/bench_deep.py [--patches 64] [--gpu-patches 2048] [--batch 32]
"""

import argparse
import os
import platform
import time
import warnings

import numpy as np
import torch

from TACEPredictLib.imaging.deep_features import DeepFeatureExtractor


def throughput(backbone, device, precision, patches, batch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = DeepFeatureExtractor(backbone, weights="random", device=device, precision=precision,
                                         batch_size=batch)
    extractor.features(patches[:batch])  # warm-up (cuDNN autotuning, allocation)
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    extractor.features(patches)
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    return len(patches) / (time.perf_counter() - start), extractor.provenance["precision"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=64, help="patches timed on the CPU")
    parser.add_argument("--gpu-patches", type=int, default=2048, help="patches timed on the GPU")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} CPU threads; GPU: "
          f"{torch.cuda.get_device_name(0) if gpu else 'none'}")
    rng = np.random.default_rng(0)
    for backbone in ("densenet121", "resnet50"):
        cpu_patches = rng.normal(size=(args.patches, 3, 224, 224)).astype(np.float32)
        cpu_rate, _ = throughput(backbone, "cpu", "float32", cpu_patches, args.batch)
        print(f"{backbone:12s} cpu  float32 : {cpu_rate:8.1f} patches/s")
        if not gpu:
            print(f"{backbone:12s} cuda         : not measured (no CUDA GPU on this machine)")
            continue
        gpu_patches = rng.normal(size=(args.gpu_patches, 3, 224, 224)).astype(np.float32)
        for precision in ("float32", "auto"):
            rate, dtype = throughput(backbone, "cuda", precision, gpu_patches, max(args.batch, 128))
            print(f"{backbone:12s} cuda {dtype:8s}: {rate:8.1f} patches/s ({rate / cpu_rate:.0f}x CPU)")


if __name__ == "__main__":
    main()
