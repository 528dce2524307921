"""``TorchRadiomicsExtractor``: a drop-in for the part of pyradiomics' ``RadiomicsFeatureExtractor`` that
TACEPredictLib uses, computing pyradiomics 3.0.1's features with torch.

Pipeline of one ``execute`` (pyradiomics' own order):
1. load (SimpleITK): read, select the label, normalise, then resample onto pyradiomics' grid or pre-crop;
   check the mask (correctMask, geometryTolerance, minimumROIDimensions/Size); resegment on the original image.
2. shape on the ROI (before resegmentation unless resegmentShape) cropped to the final bounding box, as
   pyradiomics does.
3. filters on the whole preprocessed image in torch (Original, Wavelet, LoG, ...), each cropped to the ROI's
   bounding box: B images of one grid and one mask.
4. discretise the B images (pyradiomics' bin edges per image) and compute first-order and the five texture
   classes on the [B, Z, Y, X] batch (one batch per class; the texture classes chunk it themselves when the
   ROI is large).

Devices: ``device="auto"`` picks CUDA, then Apple MPS, then the CPU. float64 everywhere except on MPS, which
has no float64 (float32 there: about 1e-6 relative error, and a bin edge may then move a voxel to the next
gray level). On CUDA out-of-memory the case is recomputed on the CPU with a warning that says so, and
``diagnostics_Engine_Device`` records it.

Memory: the CT is never on the device; only the pre-cropped / resampled neighbourhood of the ROI (bounding box
+ padDistance) is. A 10 cm lesion at 1 mm with padDistance 10 is ~120^3 voxels: 14 MB per float64 image, so
the 13 filtered images of the ``ct`` preset plus the LoG work arrays stay under 1 GB; the texture classes bound
their own chunks.
"""

from __future__ import annotations

import collections
import copy
import time
import warnings

import numpy as np
import SimpleITK as sitk
import torch

from TACEPredictLib import InputError

from . import filters, firstorder, params as params_module, preprocess

ENGINE_NAME = "TACEPredict torch_radiomics (pyradiomics 3.0.1 features)"

# settings that change the texture matrices; images whose values differ go through texture separately
TEXTURE_SETTINGS = ("distances", "symmetricalGLCM", "weightingNorm", "gldm_a", "force2D", "force2Ddimension")


def resolve_device(device="auto"):
    """'auto' -> cuda if available, else mps, else cpu; anything else as torch.device."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available", column="device",
                         fix="use device='auto' or 'cpu'")
    return device


def work_dtype(device):
    """float64; float32 on MPS (no float64 there)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


class _Timer:
    """Time per stage (seconds), CUDA synchronised at each stage boundary when enabled. ``enabled``: True or
    "wall" for wall time, "cpu" for the process' CPU time (robust to other processes on a shared machine)."""

    def __init__(self, enabled, device):
        self.enabled = bool(enabled)
        self.clock = time.process_time if enabled == "cpu" else time.perf_counter
        self.device = device
        self.totals = collections.OrderedDict()
        self._stage = None
        self._start = None

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self, stage):
        if not self.enabled:
            return
        self.stop()
        self._sync()
        self._stage, self._start = stage, self.clock()

    def stop(self):
        if not self.enabled or self._stage is None:
            return
        self._sync()
        self.totals[self._stage] = self.totals.get(self._stage, 0.0) + self.clock() - self._start
        self._stage = None


def _slices(box):
    """(L_x, U_x, L_y, U_y, L_z, U_z) -> numpy/torch slices in [z, y, x] order."""
    return (slice(int(box[4]), int(box[5]) + 1), slice(int(box[2]), int(box[3]) + 1),
            slice(int(box[0]), int(box[1]) + 1))


class TorchRadiomicsExtractor:
    """pyradiomics-compatible feature extractor (parameter files, settings, names, values) on torch.

    ``params``: a pyradiomics parameter file (YAML/JSON), a dict in that layout, or None for pyradiomics'
    defaults (Original image, all classes). Extra keyword arguments override settings, as in pyradiomics.
    ``device``: 'auto' (CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:1', 'mps'.
    ``profile``: record time per stage in ``timings`` (True or "wall": wall time; "cpu": CPU time); adds
    device synchronisations.

    Attributes as pyradiomics': ``settings``, ``enabledImagetypes``, ``enabledFeatures`` (read at every
    ``execute``, so they may be changed between calls, e.g. by ``imaging.radiomics.restrict_to``).
    """

    def __init__(self, params=None, device="auto", profile=False, **settings):
        self.settings, self.enabledImagetypes, self.enabledFeatures = params_module.parse_params(params)
        if settings:
            params_module.check_settings(settings)
            self.settings.update(settings)
        self.device = resolve_device(device)
        self.profile = profile
        self.timings = collections.OrderedDict()
        self.last_device = None

    # ------------------------------------------------------------------ pyradiomics' configuration API
    def disableAllImageTypes(self):  # noqa: N802 - pyradiomics' names
        self.enabledImagetypes = {}

    def enableImageTypeByName(self, imageType, enabled=True, customArgs=None):  # noqa: N802,N803
        if enabled:
            params_module.check_image_types({imageType: customArgs or {}})
            self.enabledImagetypes[imageType] = dict(customArgs or {})
        else:
            self.enabledImagetypes.pop(imageType, None)

    def enableImageTypes(self, **enabledImagetypes):  # noqa: N802,N803
        params_module.check_image_types(enabledImagetypes)
        self.enabledImagetypes.update({k: (v if v is not None else {}) for k, v in enabledImagetypes.items()})

    def disableAllFeatures(self):  # noqa: N802
        self.enabledFeatures = {}

    def enableAllFeatures(self):  # noqa: N802
        for name in params_module.FEATURE_CLASSES:
            self.enabledFeatures[name] = []

    def enableFeatureClassByName(self, featureClass, enabled=True):  # noqa: N802,N803
        if enabled:
            params_module.check_feature_classes({featureClass: None})
            self.enabledFeatures[featureClass] = []
        else:
            self.enabledFeatures.pop(featureClass, None)

    def enableFeaturesByName(self, **enabledFeatures):  # noqa: N802,N803
        params_module.check_feature_classes(enabledFeatures)
        self.enabledFeatures.update(enabledFeatures)

    def addProvenance(self, provenance_on=True):  # noqa: N802
        self.settings["additionalInfo"] = provenance_on

    # ------------------------------------------------------------------ extraction
    def execute(self, imageFilepath, maskFilepath, label=None, label_channel=None, voxelBased=False):  # noqa: N803
        """Features of ``maskFilepath == label`` in ``imageFilepath`` (SimpleITK images or paths): an
        OrderedDict with pyradiomics' keys and order (a few ``diagnostics_*`` keys when additionalInfo)."""
        if voxelBased:
            raise params_module._unsupported("voxelBased", True, "voxel-based extraction is not implemented",
                                             params_module.PYRADIOMICS_FIX)
        settings = dict(self.settings)
        params_module.check_settings(settings)
        params_module.check_image_types(self.enabledImagetypes)
        params_module.check_feature_classes(self.enabledFeatures)
        if label is not None:
            settings["label"] = label
        if label_channel is not None:
            settings["label_channel"] = label_channel
        timer = _Timer(self.profile, self.device)
        timer.start("resample")
        with preprocess.geometry_tolerance(settings.get("geometryTolerance")):
            prepared = self._prepare(imageFilepath, maskFilepath, settings)
        timer.stop()
        device = self.device
        note = str(device)
        try:
            features = self._compute(prepared, settings, device, timer)
        except torch.cuda.OutOfMemoryError:
            if device.type != "cuda":
                raise
            timer.stop()
            torch.cuda.empty_cache()
            warnings.warn(f"CUDA ran out of memory on {device} for this ROI ({prepared['image']} voxels "
                          f"around it, {len(prepared['image_types'])} image types); computed this case on the "
                          f"CPU instead", RuntimeWarning, stacklevel=2)
            device = torch.device("cpu")
            note = "cpu (CUDA out of memory)"
            features = self._compute(prepared, settings, device, timer)
        timer.stop()
        for stage, seconds in timer.totals.items():
            self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        self.last_device = note
        result = collections.OrderedDict()
        if settings.get("additionalInfo", False):
            result["diagnostics_Versions_Engine"] = ENGINE_NAME
            result["diagnostics_Versions_Torch"] = torch.__version__
            result["diagnostics_Versions_SimpleITK"] = sitk.Version.VersionString()
            result["diagnostics_Configuration_Settings"] = copy.deepcopy(settings)
            result["diagnostics_Configuration_EnabledImageTypes"] = copy.deepcopy(self.enabledImagetypes)
            result["diagnostics_Engine_Device"] = note
            result["diagnostics_Image-interpolated_Spacing"] = prepared["spacing"]
            result["diagnostics_Image-interpolated_Size"] = prepared["size"]
            result["diagnostics_Mask-interpolated_BoundingBox"] = prepared["box_pyradiomics"]
            result["diagnostics_Mask-interpolated_VoxelNum"] = prepared["voxels"]
        result.update(features)
        return result

    def execute_many(self, cases):
        """``execute`` for several ROIs: ``cases`` is a list of (image, mask) or (image, mask, label)."""
        out = []
        for case in cases:
            image, mask = case[0], case[1]
            label = case[2] if len(case) > 2 else None
            out.append(self.execute(image, mask, label=label))
        return out

    # ------------------------------------------------------------------ internals
    def _prepare(self, image, mask, settings):
        """Host-side preprocessing: the image array, the ROI masks and the bounding box."""
        label = settings.get("label", 1)
        image, mask = preprocess.load(image, mask, settings)
        if image.GetDimension() != 3:
            raise InputError(f"the torch engine extracts 3D features; the image has {image.GetDimension()} "
                             f"dimensions", column="image", fix="give a 3D image (pyradiomics for 2D)")
        box, corrected = preprocess.check_mask(image, mask, settings)
        if corrected is not None:
            mask = corrected
        array = sitk.GetArrayFromImage(image)
        roi = sitk.GetArrayViewFromImage(mask) == label
        shape_roi = roi
        if settings.get("resegmentRange") is not None:
            roi = preprocess.resegment(array, roi, settings)
            box = preprocess.check_array_roi(roi, settings)
            if settings.get("resegmentShape", False):
                shape_roi = roi
        image_types = [(name, dict(settings, **(custom or {}))) for name, custom in self.enabledImagetypes.items()]
        return {"array": array, "roi": roi, "shape_roi": shape_roi, "box": box, "image": array.shape,
                "spacing": tuple(image.GetSpacing()), "size": tuple(image.GetSize()),
                "box_pyradiomics": tuple(int(b) for b in box), "voxels": int(roi.sum()),
                "image_types": image_types}

    def _compute(self, prepared, settings, device, timer):
        dtype = work_dtype(device)
        spacing = prepared["spacing"]
        crop = _slices(prepared["box"])
        features = collections.OrderedDict()
        classes = [(name, params_module.enabled_names(name, names))
                   for name, names in self.enabledFeatures.items()]

        # shape: pyradiomics' mask (resegmented only with resegmentShape) cropped to the final bounding box
        shape_names = dict(classes).get("shape")
        if shape_names:
            timer.start("shape")
            from .shape import shape_features
            mask = torch.as_tensor(np.ascontiguousarray(prepared["shape_roi"][crop]), device=device)
            for name, value in shape_features(mask, spacing, shape_names).items():
                features[f"original_shape_{name}"] = np.float64(value)
        gray_classes = [(c, n) for c, n in classes if c != "shape"]
        if not gray_classes or not prepared["image_types"]:
            return features

        # filters on the whole preprocessed image, then each result cropped to the ROI's box
        timer.start("filters")
        source_dtype = prepared["array"].dtype
        host_float = np.float64 if dtype == torch.float64 else np.float32  # MPS: no float64 tensors at all
        full = torch.as_tensor(prepared["array"].astype(host_float), device=device)
        region = tuple((c.start, c.stop) for c in crop)
        images = []  # (name, cropped tensor, source dtype, settings)
        for image_type, type_settings in prepared["image_types"]:
            for name, tensor, src in filters.apply(image_type, full, spacing, type_settings, source_dtype, region):
                images.append((name, tensor, src, type_settings))
        del full
        if not images:
            return features
        roi = torch.as_tensor(np.ascontiguousarray(prepared["roi"][crop]), device=device)

        timer.start("discretise")
        stack = torch.stack([img for _, img, _, _ in images])
        values = stack[:, roi]  # [B, N] (ROI voxels in C order, as pyradiomics' image[mask])
        lows = values.amin(1)
        highs = values.amax(1)
        extremes = torch.stack([lows, highs], 1).to("cpu", torch.float64).numpy()
        edges = []
        for (name, _, src, type_settings), (low, high) in zip(images, extremes):
            src = np.dtype(src)
            edges.append(preprocess.bin_edges(np.array(low).astype(src)[()], np.array(high).astype(src)[()],
                                              type_settings))
        binned_values = preprocess.discretize(values, edges)
        levels = max(len(e) for e in edges) + 1

        host_dtype = torch.float32 if device.type == "mps" else torch.float64
        first = dict(gray_classes).get("firstorder")
        host = {}  # (class, feature) -> numpy [B]
        if first:
            timer.start("firstorder")
            shift = torch.as_tensor([float(s.get("voxelArrayShift", 0)) for _, _, _, s in images],
                                    dtype=dtype, device=device)
            voxel_volume = float(np.multiply.reduce(spacing))
            fo = firstorder.firstorder_features(values, binned_values, first, shift, voxel_volume, levels)
            table = torch.stack([fo[f].to(host_dtype) for f in first]).to("cpu", torch.float64).numpy()
            for k, feature in enumerate(first):
                host[("firstorder", feature)] = table[k]
        texture = [(c, n) for c, n in gray_classes if c in params_module.TEXTURE_CLASSES]
        if texture:
            from .texture import texture_features
            binned = torch.zeros(stack.shape, dtype=torch.int64, device=device)
            binned[:, roi] = binned_values
            del stack
            groups = collections.OrderedDict()
            for i, (_, _, _, s) in enumerate(images):
                key = tuple(repr(s.get(k)) for k in TEXTURE_SETTINGS)
                groups.setdefault(key, []).append(i)
            for members in groups.values():
                group_settings = images[members[0]][3]
                if len(members) < len(images):
                    sub = binned.index_select(0, torch.as_tensor(members, device=device))
                else:
                    sub = binned
                # one call for all classes (they share the cropped batch and the neighbour comparisons); when
                # profiling, the shared cropping counts as discretisation and each class' work as its own stage
                timer.start("discretise")
                parts = texture_features(sub, roi, dict(texture), group_settings, spacing,
                                         timer=timer.start if self.profile else None)
                flat = [(cls, feature, tensor) for cls, by_name in parts.items()
                        for feature, tensor in by_name.items()]
                if not flat:
                    continue
                table = torch.stack([t.to(host_dtype) for _, _, t in flat]).to("cpu", torch.float64).numpy()
                for k, (cls, feature, _) in enumerate(flat):
                    column = host.setdefault((cls, feature), np.full(len(images), np.nan))
                    column[members] = table[k]

        # pyradiomics' order: image, then class, then feature
        timer.start("collect")
        order = [(cls, feature) for cls, names in gray_classes for feature in names
                 if feature not in params_module.NOT_WRITTEN.get(cls, ()) and (cls, feature) in host]
        for i, (name, _, _, _) in enumerate(images):
            for cls, feature in order:
                features[f"{name}_{cls}_{feature}"] = np.float64(host[(cls, feature)][i])
        return features
