"""The image networks' building blocks and how their weights go in and out of a bundle.

Torch is imported lazily (``torch_module``): the library imports without it, and clinical models never need it.
Model_D's residual unit is MONAI's ``ResNetBlock``; bundles written before it was (keys ``body.*`` / ``skip.*``)
are read through ``LEGACY_RESIDUAL_KEYS``.
"""

from __future__ import annotations

import re

import numpy as np


def torch_module():
    from ..imaging.deep_features import _torch
    return _torch()


def response_cnn_net(width=8):
    """Seed 002's small CNN: conv - leaky ReLU - pool, twice, then a dense layer and a two-way softmax."""
    nn = torch_module().nn
    return nn.Sequential(  # 224 -> 112 (strided convolution) -> 28 -> 14: cheap enough for a 2-core CPU
        nn.Conv2d(3, width, 5, stride=2, padding=2), nn.LeakyReLU(0.1), nn.MaxPool2d(4),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(2 * width * 14 * 14, 64), nn.LeakyReLU(0.1), nn.Linear(64, 2))


def residual_block(cin, cout, stride):
    """A 2D basic residual block (3x3 conv, BN, ReLU, 3x3 conv, BN, + skip, ReLU): MONAI's ``ResNetBlock``, with a
    1x1 conv + BN skip where the shape changes. The skip is created after the block's own layers, the order in
    which their initial weights are drawn."""
    from monai.networks.nets.resnet import ResNetBlock
    nn = torch_module().nn
    block = ResNetBlock(cin, cout, spatial_dims=2, stride=stride)
    if stride != 1 or cin != cout:
        block.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    return block


def model_d_net(width=8, dropout=0.5):
    """Seed 004's Model_D: a convolution block, six residual blocks (the width doubles, and the size halves, at
    the third and fifth), flatten, dropout and a two-way softmax, for 128 x 128 one-channel boxes. The last
    feature maps are averaged over the box before flattening: the signal is the lesion's texture wherever it
    lies, and a 4 x 4 grid flattened (16 times the weights) ranked the demo's training cases worse."""
    nn = torch_module().nn
    widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    blocks, cin = [], width
    for i, cout in enumerate(widths):
        blocks.append(residual_block(cin, cout, 2 if i in (2, 4) else 1))
        cin = cout
    return nn.Sequential(
        nn.Conv2d(1, width, 5, 2, 2, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),  # 128 -> 32
        *blocks, nn.AdaptiveAvgPool2d(1),  # 8 x 8 -> 1 x 1
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, 2))


def head_net(in_features, classes):
    """The new classification head of a frozen backbone: standardisation is done outside, so a linear layer."""
    return torch_module().nn.Linear(in_features, classes)


# Residual-block keys of bundles written before Model_D used MONAI's block -> MONAI's names.
LEGACY_RESIDUAL_KEYS = ((r"\.body\.0\.", ".conv1."), (r"\.body\.1\.", ".bn1."), (r"\.body\.3\.", ".conv2."),
                        (r"\.body\.4\.", ".bn2."), (r"\.skip\.", ".downsample."))


def state_to_arrays(net, prefix="net."):
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def arrays_to_state(net, tensors, prefix="net."):
    torch = torch_module()
    state = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            for old, new in LEGACY_RESIDUAL_KEYS:
                name = re.sub(old, new, name)
            state[name] = torch.from_numpy(np.asarray(value).copy())
    net.load_state_dict(state)
    return net
