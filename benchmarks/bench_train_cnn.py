"""Training throughput (samples/s, forward + backward + optimiser step) of the image networks the main job
trains: seed 002's response CNN (224 x 224 x 3), seed 004's Model_D (128 x 128 slice boxes) and seed 003's
mRECIST head on frozen ResNet-50 vectors (2048-d); on the CPU and, where a CUDA GPU is present, on the GPU,
with the speed-up - measured side by side in one run. Also Model_D's shift / shear / zoom augmentation of one
batch: scipy's per-image affine_transform against the batched resampling the training uses
(``sampling.resample_affine``), with the ratio.

Usage: python benchmarks/bench_train_cnn.py [--steps 20]
"""

import argparse
import os
import platform
import time

import numpy as np
import torch
from scipy import ndimage

from TACEPredictLib.models.networks import head_net, model_d_net, response_cnn_net
from TACEPredictLib.imaging.sampling import Augmenter, resample_affine

NETWORKS = {  # name -> (builder, one sample's shape, batch size the model trains with)
    "response CNN": (lambda: response_cnn_net(8), (3, 224, 224), 16),
    "Model_D": (lambda: model_d_net(8), (1, 128, 128), 32),
    "mRECIST head": (lambda: head_net(2048, 4), (2048,), 64),
}


def samples_per_second(name, device, steps):
    build, shape, batch = NETWORKS[name]
    torch.manual_seed(0)
    net = build().to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(batch,) + shape).astype(np.float32)).to(device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimiser.zero_grad()
        loss_fn(net(x), y).backward()
        optimiser.step()
    for _ in range(3):  # warm-up (allocation, cuDNN autotuning)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per network and device")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch "
          f"{torch.__version__}" + (f", GPU {torch.cuda.get_device_name(0)}" if gpu else ", no CUDA GPU"))
    for name in NETWORKS:
        cpu = samples_per_second(name, torch.device("cpu"), args.steps)
        line = f"{name:13s} CPU {cpu:9.1f} samples/s"
        if gpu:
            cuda = samples_per_second(name, torch.device("cuda"), args.steps * 10)
            line += f" | CUDA {cuda:10.1f} samples/s | speed-up {cuda / cpu:.1f}x"
        print(line)
    if not gpu:
        print("no CUDA GPU here: run this on a GPU machine for the GPU figures and speed-ups")
    augmentation(args.steps)


def augmentation(repeats):
    """Model_D's affine augmentation of a 32 x 1 x 128 x 128 batch, per image (scipy) and batched (torch)."""
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(32, 1, 128, 128)).astype(np.float32)
    augment = Augmenter(shift=0.1, shear_deg=10.0, zoom=0.1)
    transforms = [augment._affine(batch.shape[2:], rng) for _ in range(len(batch))]

    def per_image():
        return np.stack([np.stack([ndimage.affine_transform(c, m, offset=o, order=1, mode="nearest") for c in image])
                         for image, (m, o) in zip(batch, transforms)])
    timings = {}
    for name, run in (("per image (scipy)", per_image), ("batched (torch)", lambda: resample_affine(batch, transforms))):
        run()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        timings[name] = (time.perf_counter() - start) / repeats
        print(f"Model_D augmentation, {name:17s} {1000 * timings[name]:7.2f} ms per batch of 32")
    print(f"batched / per-image speed-up: {timings['per image (scipy)'] / timings['batched (torch)']:.1f}x")


if __name__ == "__main__":
    main()
