"""MONAI backbones, checkpoints (torchvision layout, safetensors, checksums), batched inference and Grad-CAM
heat maps in the CT's physical space. No test downloads anything."""


import numpy as np
import pytest
import SimpleITK as sitk

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from TACEPredictLib import InputError  # noqa: E402
from TACEPredictLib.imaging import deep_features as deep  # noqa: E402
from TACEPredictLib.data.images import sha256_file  # noqa: E402
from TACEPredictLib.imaging.preprocess import geometry_of  # noqa: E402
from TACEPredictLib.imaging.sampling import centre_patch  # noqa: E402

# torchvision's parameter counts without the ImageNet classifier: the MONAI backbones have the same layout.
TORCHVISION_PARAMETERS = {"densenet121": 7_978_856 - 1_025_000, "resnet50": 25_557_032 - 2_049_000,
                          "resnet101": 44_549_160 - 2_049_000}


@pytest.mark.parametrize("name", ["densenet121", "resnet50", "resnet101"])
def test_backbones_match_torchvision_and_pool_features(name):
    model = deep.build_backbone(name).eval()
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETERS[name]
    with torch.inference_mode():
        features = model(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, deep.FEATURE_SIZES[name])


def _torchvision_layout(model):
    """The backbone's weights with torchvision's key names (DenseNet in the older 'norm.1' form) and head."""
    state = {}
    for key, value in model.state_dict().items():
        key = key[len("net."):]
        key = key.replace(".layers.norm1.", ".norm.1.").replace(".layers.conv1.", ".conv.1.") \
                 .replace(".layers.norm2.", ".norm.2.").replace(".layers.conv2.", ".conv.2.")
        state[key] = value.clone()
    head = "classifier" if model.name == "densenet121" else "fc"
    state[f"{head}.weight"] = torch.zeros(1000, model.feature_size)
    state[f"{head}.bias"] = torch.zeros(1000)
    return state


@pytest.mark.parametrize("name, suffix", [("densenet121", ".pth"), ("resnet50", ".safetensors")])
def test_torchvision_checkpoints_load_into_the_monai_backbone(tmp_path, name, suffix):
    torch.manual_seed(0)
    source = deep.build_backbone(name).eval()
    path = str(tmp_path / f"weights{suffix}")
    if suffix == ".pth":
        torch.save(_torchvision_layout(source), path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in _torchvision_layout(source).items()}, path)
    extractor = deep.DeepFeatureExtractor(name, weights=path, device="cpu")
    assert extractor.provenance["weights"].startswith("file ") and extractor.provenance["warning"] == ""
    assert extractor.provenance["sha256"] == sha256_file(path)
    patches = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        expected = source(torch.from_numpy(patches)).numpy()
    np.testing.assert_allclose(extractor.features(patches), expected, rtol=1e-4, atol=1e-5)


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    path = str(tmp_path / "densenet.pth")
    torch.save(_torchvision_layout(deep.build_backbone("densenet121")), path)
    with pytest.raises(InputError, match="does not fit resnet50"):
        deep.load_weights(deep.build_backbone("resnet50"), path)
    with pytest.raises(InputError, match="checkpoint not found"):
        deep.load_weights(deep.build_backbone("resnet50"), str(tmp_path / "none.pth"))


def test_random_weights_warn_loudly():
    model = deep.build_backbone("densenet121")
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        provenance = deep.load_weights(model, "random")
    assert provenance["weights"] == "random" and "RANDOM WEIGHTS" in provenance["warning"]


def test_imagenet_cache_is_checksummed_and_never_fetched_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not deep.imagenet_checkpoint_cached("densenet121")
    with pytest.raises(InputError, match="not in the cache"):
        deep.imagenet_checkpoint("densenet121", download=False)
    # A corrupt or truncated file in the cache is caught by the SHA-256 prefix in its name.
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "densenet121-a639ec97.pth").write_bytes(b"not the weights")
    assert deep.imagenet_checkpoint_cached("densenet121")
    with pytest.raises(InputError, match="checksum mismatch"):
        deep.imagenet_checkpoint("densenet121", download=False)


def test_batched_inference_is_batch_size_independent():
    torch.manual_seed(0)
    with pytest.warns(UserWarning):
        small = deep.DeepFeatureExtractor("densenet121", weights="random", device="cpu", batch_size=2)
    large = deep.DeepFeatureExtractor.__new__(deep.DeepFeatureExtractor)
    large.__dict__.update(small.__dict__, batch_size=16)
    patches = np.random.default_rng(2).normal(size=(5, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(small.features(patches), large.features(patches), rtol=1e-4, atol=1e-5)
    assert small.provenance["device"] == "cpu" and small.provenance["precision"] == "float32"


def test_device_and_precision_choice():
    assert deep.select_device("auto").type in ("cpu", "cuda", "mps")
    assert deep.select_dtype(torch.device("cpu")) == torch.float32
    assert deep.select_dtype(torch.device("cuda"), "float16") == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            deep.select_device("cuda")
    with pytest.raises(InputError, match="unknown precision"):
        deep.select_dtype(torch.device("cpu"), "int8")


def _brightness_classifier():
    """Class 0 = mean brightness of the image: Grad-CAM for it must light up the bright region."""
    conv = torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.0)
    head = torch.nn.Linear(1, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        head.bias.zero_()
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), head)


def test_gradcam_is_high_where_the_evidence_is_and_lands_on_the_ct():
    # A CT grid with anisotropic spacing and a rotated direction; a bright spot beside the lesion.
    shape = (7, 260, 260)
    volume = np.full(shape, -100.0, np.float32)
    mask = np.zeros(shape, bool)
    mask[2:5, 120:140, 120:140] = True
    mask[3, 118:142, 118:142] = True  # slice 3 is the largest
    volume[3, 60:70, 150:160] = 400.0
    grid = sitk.GetImageFromArray(volume)
    grid.SetSpacing((0.7, 0.7, 3.0))
    grid.SetOrigin((10.0, -20.0, 5.0))
    grid.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    patch = centre_patch(volume, mask)
    scaled = (patch.array - patch.array.min()) / np.ptp(patch.array)
    maps = deep.gradcam(_brightness_classifier(), scaled[None], target_layer="1", class_index=0)
    assert maps.shape == (1, 224, 224) and maps.min() >= 0 and maps.max() == pytest.approx(1.0)
    heat = deep.heatmap_volume(maps, [patch], grid)
    assert heat.GetSize() == grid.GetSize() and heat.GetDirection() == grid.GetDirection()
    array = sitk.GetArrayFromImage(heat)
    assert array[3, 60:70, 150:160].min() > 0.9          # high = important (MONAI's default would give 0)
    assert array[3, 120:140, 120:140].max() < 0.1
    assert not array[[0, 1, 2, 4, 5, 6]].any()          # only the patch's slice
    # On the whole CT's grid (here: a bigger one), the hot spot sits at the same physical point.
    full = sitk.Image([300, 300, 9], sitk.sitkFloat32)
    full.SetSpacing((0.7, 0.7, 3.0))
    full.SetDirection(grid.GetDirection())
    full.SetOrigin(grid.TransformIndexToPhysicalPoint((-10, -10, -1)))
    on_full = deep.heatmap_volume(maps, [patch], grid, geometry_of(full))
    assert on_full.GetSize() == full.GetSize() and on_full.GetOrigin() == full.GetOrigin()
    assert on_full[155 + 10, 65 + 10, 3 + 1] > 0.9


def test_gradcam_on_a_real_backbone():
    backbone = deep.build_backbone("densenet121")
    model = torch.nn.Sequential()
    model.add_module("backbone", backbone)
    model.add_module("head", torch.nn.Linear(backbone.feature_size, 2))
    patches = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    maps = deep.gradcam(model, patches, "backbone." + deep.TARGET_LAYERS["densenet121"], class_index=1)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and maps.max() <= 1.0


def test_3d_backbone_takes_a_cube_and_refuses_2d_imagenet_weights():
    cube = np.random.default_rng(0).normal(size=(1, 32, 32, 32)).astype(np.float32)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        extractor = deep.DeepFeatureExtractor("densenet121", weights="random", device="cpu", spatial_dims=3,
                                              in_channels=1)
    assert extractor.features(cube[None]).shape == (1, 1024)
    with pytest.raises(InputError, match="only for 2D"):
        deep.load_weights(deep.build_backbone("densenet121", spatial_dims=3), "imagenet")


def test_untrained_weights_are_the_same_in_every_process_and_run():
    import torch

    from TACEPredictLib.imaging.deep_features import build_backbone
    first = build_backbone("resnet50").state_dict()
    torch.rand(1000)  # whatever the global RNG did before
    torch.manual_seed(12345)
    second = build_backbone("resnet50").state_dict()
    after = torch.rand(1)
    torch.manual_seed(12345)
    assert torch.equal(after, torch.rand(1))  # building leaves the caller's RNG where it was
    for key in ("net.conv1.weight", "net.layer4.2.conv3.weight"):
        assert torch.equal(first[key], second[key])
