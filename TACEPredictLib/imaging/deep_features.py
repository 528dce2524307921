"""Deep features from MONAI backbones (DenseNet121: 1024-d, ResNet50/101: 2048-d, global-average-pooled),
their weights (ImageNet, a local checkpoint, or random with a loud warning), and Grad-CAM heat maps put back
into the CT's physical space.

torch and MONAI are optional (``pip install tacepredict[deep]``); nothing here downloads anything unless a
user asks for ``weights="imagenet"``.
"""

from __future__ import annotations

import os
import re
import sys
import warnings

import numpy as np
import SimpleITK as sitk

from .. import InputError
from ..data.images import sha256_file

FEATURE_SIZES = {"densenet121": 1024, "resnet50": 2048, "resnet101": 2048}

# torchvision's ImageNet-1K (V1) checkpoints: the 8 hex digits in each name are the start of the file's SHA-256.
IMAGENET_URLS = {
    "densenet121": "https://download.pytorch.org/models/densenet121-a639ec97.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
}

# Grad-CAM target layers: the last convolutional stage of each backbone.
TARGET_LAYERS = {"densenet121": "net.features.norm5", "resnet50": "net.layer4", "resnet101": "net.layer4"}

RANDOM_WEIGHTS_WARNING = ("WARNING: RANDOM WEIGHTS - these deep features come from a randomly initialised "
                          "network (no pretrained checkpoint) and carry no learned image knowledge; use "
                          "weights 'imagenet' or a checkpoint file for real analyses")


def _torch():
    try:
        import monai  # noqa: F401
        import torch
    except ImportError as exc:
        raise InputError(f"deep features need torch and MONAI ({exc})", column="deep",
                         fix="pip install 'tacepredict[deep]' (in Slicer: install the PyTorch extension first)"
                         ) from None
    return torch


def select_device(request="auto"):
    """'auto' picks cuda, then mps, then cpu; an explicit device must be available."""
    torch = _torch()
    if request in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(request)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA GPU is available", column="device",
                         fix="use --device auto or --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("MPS was requested but is not available", column="device", fix="use --device auto or cpu")
    return device


def select_dtype(device, request="auto"):
    """float32 on CPU; on a GPU 'auto' picks bfloat16 where supported, else float16."""
    torch = _torch()
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if request not in (None, "", "auto"):
        if request not in names:
            raise InputError(f"unknown precision {request!r}", column="precision", fix=f"use one of {sorted(names)}")
        return names[request]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


RANDOM_INIT_SEED = 0  # untrained ("random") weights are the same in every process and every run


def build_backbone(name="densenet121", spatial_dims=2, in_channels=3):
    """A MONAI backbone whose forward returns the global-average-pooled feature vector. Its initial weights are
    drawn from a fixed seed, so that untrained features are reproducible (the global RNG is left untouched)."""
    torch = _torch()
    from monai.networks.nets import DenseNet121, ResNet

    if name not in FEATURE_SIZES:
        raise InputError(f"unknown backbone {name!r}", column="backbone", fix=f"use one of {sorted(FEATURE_SIZES)}")

    class FeatureBackbone(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.name = name
            self.spatial_dims = spatial_dims
            self.feature_size = FEATURE_SIZES[name]
            if name == "densenet121":
                self.net = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
                self.net.class_layers = torch.nn.Identity()  # features only
            else:
                layers = [3, 4, 6, 3] if name == "resnet50" else [3, 4, 23, 3]
                # torchvision's layout: 7x7 stride-2 stem, no bias in the shortcut convolution.
                self.net = ResNet(block="bottleneck", layers=layers, block_inplanes=[64, 128, 256, 512],
                                  spatial_dims=spatial_dims, n_input_channels=in_channels, conv1_t_size=7,
                                  conv1_t_stride=2, feed_forward=False, bias_downsample=False)

        def forward(self, x):
            if self.name == "densenet121":
                x = torch.relu(self.net.features(x))
                pool = torch.nn.functional.adaptive_avg_pool2d if x.dim() == 4 else \
                    torch.nn.functional.adaptive_avg_pool3d
                return torch.flatten(pool(x, 1), 1)
            return self.net(x)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return FeatureBackbone()


def convert_torchvision_state_dict(name, state):
    """Rename a torchvision DenseNet121/ResNet checkpoint's keys to the MONAI backbone's (``net.`` prefix);
    the ImageNet classifier head is dropped. A state dict already in MONAI's layout passes unchanged."""
    out = {}
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith(("classifier.", "fc.", "class_layers.")):
            continue
        if key.startswith("net."):
            out[key] = value
            continue
        if name == "densenet121":
            # torchvision: denselayerN.norm1 (older files: norm.1); MONAI: denselayerN.layers.norm1
            key = re.sub(r"(denselayer\d+)\.(norm|relu|conv)\.?([12])\.", r"\1.layers.\2\3.", key)
        out["net." + key] = value
    return out


def _imagenet_path(name):
    torch = _torch()
    return os.path.join(torch.hub.get_dir(), "checkpoints", IMAGENET_URLS[name].rsplit("/", 1)[1])


def imagenet_checkpoint_cached(name):
    """Whether torchvision's ImageNet checkpoint for ``name`` is already in the torch hub cache."""
    return os.path.isfile(_imagenet_path(name))


def imagenet_checkpoint(name, download=True):
    """Path of torchvision's ImageNet checkpoint for ``name`` in the torch hub cache, downloaded once (users
    who are online) and checked against the SHA-256 prefix in its file name every time."""
    torch = _torch()
    url = IMAGENET_URLS[name]
    path = _imagenet_path(name)
    folder = os.path.dirname(path)
    expected = os.path.basename(path).rsplit("-", 1)[1].split(".")[0]
    if not os.path.isfile(path):
        if not download:
            raise InputError(f"ImageNet weights for {name} are not in the cache ({path})", column="weights",
                             fix=f"download {url} there, or use a local checkpoint file")
        os.makedirs(folder, exist_ok=True)
        print(f"downloading {url} -> {path}", file=sys.stderr)
        try:
            torch.hub.download_url_to_file(url, path, hash_prefix=expected, progress=True)
        except (OSError, RuntimeError) as exc:  # URLError (offline, proxy), timeouts, a hash mismatch
            reason = getattr(exc, "reason", None) or exc
            raise InputError(f"the ImageNet weights of {name} could not be downloaded ({reason}); this computer "
                             "seems to be offline or behind a proxy", column="--weights",
                             fix=f"on a computer with internet access download {url} and copy it to {path} (or set "
                                 "TORCH_HOME to a folder holding checkpoints/); or give the file with --weights "
                                 "FILE; or use --weights random (untrained features, for testing only)") from None
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise InputError(f"checksum mismatch for {path}: SHA-256 {actual[:12]}..., expected {expected}...",
                         column="weights", fix="delete the file so that it is downloaded again")
    return path


def load_state_dict_file(path):
    """Read a checkpoint without running code: safetensors, or torch.load(weights_only=True)."""
    torch = _torch()
    if not os.path.isfile(path):
        raise InputError(f"checkpoint not found: {path}", column="weights",
                         fix="give 'imagenet', 'random' or the path of a .pth / .safetensors file")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path} ({type(exc).__name__}: {str(exc)[:200]})",
                         column="weights", fix="save the weights with torch.save(model.state_dict(), path)"
                         ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def load_weights(model, weights):
    """Load ``weights`` ('imagenet', 'random' or a file) into a ``build_backbone`` model.

    Returns provenance: {'weights': ..., 'sha256': ..., 'warning': ...}; random weights warn on stderr and
    put ``RANDOM_WEIGHTS_WARNING`` in the provenance, which every output that used them carries.
    """
    if weights in (None, "", "random"):
        warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
        return {"weights": "random", "sha256": "", "warning": RANDOM_WEIGHTS_WARNING, "seed": RANDOM_INIT_SEED}
    if weights == "imagenet":
        if model.spatial_dims != 2:
            raise InputError("ImageNet weights exist only for 2D backbones", column="weights",
                             fix="use a 2D backbone, or a 3D checkpoint file")
        path = imagenet_checkpoint(model.name)
        label = f"imagenet ({IMAGENET_URLS[model.name]})"
    else:
        path = weights
        label = f"file {os.path.abspath(path)}"
    state = convert_torchvision_state_dict(model.name, load_state_dict_file(path))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise InputError(f"checkpoint {path} does not fit {model.name} ({model.spatial_dims}D): "
                         f"{len(missing)} missing keys (e.g. {missing[:2]}), "
                         f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]})",
                         column="weights", fix="use a checkpoint saved from the same backbone")
    return {"weights": label, "sha256": sha256_file(path), "warning": ""}


class DeepFeatureExtractor:
    """Batched inference of a backbone on patches: ``features(patches)`` -> (N, feature_size) float32."""

    def __init__(self, backbone="densenet121", weights="imagenet", device="auto", precision="auto",
                 batch_size=32, spatial_dims=2, in_channels=3):
        torch = _torch()
        self.backbone = backbone
        self.device = select_device(device)
        self.dtype = select_dtype(self.device, precision)
        self.batch_size = int(batch_size)
        self.model = build_backbone(backbone, spatial_dims, in_channels)
        self.provenance = load_weights(self.model, weights)
        self.provenance.update(backbone=backbone, spatial_dims=spatial_dims, device=str(self.device),
                               precision=str(self.dtype).replace("torch.", ""))
        self.model.eval().to(self.device)
        self._torch = torch

    def features(self, patches):
        torch = self._torch
        patches = np.asarray(patches, np.float32)
        out = np.empty((len(patches), self.model.feature_size), np.float32)
        autocast = self.device.type != "cpu" and self.dtype != torch.float32
        with torch.inference_mode():
            for start in range(0, len(patches), self.batch_size):
                batch = torch.from_numpy(patches[start:start + self.batch_size]).to(self.device)
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
                    result = self.model(batch)
                out[start:start + len(batch)] = result.float().cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------- Grad-CAM

def gradcam(model, patches, target_layer, class_index=None):
    """Grad-CAM maps (N, H, W) in [0, 1] for a classifier ``model`` on (N, C, H, W) patches, with 1 = most
    important. (MONAI's default normaliser maps the maximum to 0; this one keeps high = important.)"""
    torch = _torch()
    from monai.visualize import GradCAM

    def high_is_important(x):
        x = x - x.amin(dim=tuple(range(1, x.dim())), keepdim=True)
        top = x.amax(dim=tuple(range(1, x.dim())), keepdim=True)
        return torch.where(top > 0, x / top.clamp_min(1e-12), torch.zeros_like(x))

    cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=high_is_important)
    was_training = model.training
    model.eval()
    try:
        batch = torch.as_tensor(np.asarray(patches, np.float32)).to(next(model.parameters()).device)
        maps = cam(batch, class_idx=class_index)
    finally:
        model.train(was_training)
    return maps.detach().float().cpu().numpy()[:, 0]


def heatmap_volume(maps, patches, grid, full_geometry=None):
    """Put 2D heat maps back into the CT: each map is resized to its patch's source box and written into its
    slice of ``grid`` (the cropped reference image the patches came from); where patches overlap, the maximum
    wins. With ``full_geometry`` (``preprocess.geometry_of`` of the whole CT) the result is resampled onto the
    whole CT's grid, so that Slicer overlays it on the original volume. Returns a float32 SimpleITK image."""
    from scipy import ndimage

    from .preprocess import empty_image

    size = grid.GetSize()
    volume = np.zeros((size[2], size[1], size[0]), np.float32)
    for heat, patch in zip(maps, patches):
        row0, col0, row1, col1 = patch.box
        height, width = row1 - row0, col1 - col0
        resized = ndimage.zoom(np.asarray(heat, np.float32), (height / heat.shape[0], width / heat.shape[1]),
                               order=1, grid_mode=True, mode="nearest")[:height, :width]
        r0, c0 = max(row0, 0), max(col0, 0)
        r1, c1 = min(row1, size[1]), min(col1, size[0])
        if r1 <= r0 or c1 <= c0:
            continue
        target = volume[patch.slice_index, r0:r1, c0:c1]
        np.maximum(target, resized[r0 - row0:r1 - row0, c0 - col0:c1 - col0], out=target)
    image = sitk.GetImageFromArray(volume)
    image.CopyInformation(grid)
    if full_geometry is None:
        return image
    reference = empty_image(full_geometry)
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
