"""Radiomics of the 3D ROI, with TACEPredict's CT parameter file (``Resources/radiomics_ct.yaml``) or the
user's own, by one of two engines:

* ``torch`` (the default): TACEPredict's own engine (``torch_radiomics``), pyradiomics 3.0.1's parameter files,
  feature names and values (agreement measured to 1e-12, docs/radiomics_engine.md), on the CPU, a CUDA GPU or
  Apple MPS, and on every Python Slicer ships;
* ``pyradiomics``: the reference, where it is installed (it does not build on Python 3.12, Slicer 5.10+).
"""

from __future__ import annotations

import copy
import logging
import os

import numpy as np
import SimpleITK as sitk

from .. import InputError

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources")  # the package's
DEFAULT_PARAMS = os.path.join(RESOURCES, "radiomics_ct.yaml")
PRESETS = {"ct": DEFAULT_PARAMS, "ct-fast": os.path.join(RESOURCES, "radiomics_ct_fast.yaml")}

NOT_INSTALLED = ("pyradiomics is not installed, so radiomics features are unavailable (deep features, clinical "
                 "models and the aggressive-PD clinical-semantic score still work). pyradiomics often fails to "
                 "build on Python 3.12 (Slicer 5.10+)")
INSTALL_HINT = ("on Python 3.11: pip install numpy setuptools wheel versioneer && "
                "pip install --no-build-isolation pyradiomics  (or: bash scripts/setup_env.sh radiomics,test)")


def available():
    """(True, version) when pyradiomics imports, else (False, the reason)."""
    try:
        import radiomics
    except Exception as exc:  # ImportError, or a broken C extension
        return False, f"{NOT_INSTALLED} ({type(exc).__name__}: {exc})"
    return True, getattr(radiomics, "__version__", "unknown")


def resolve_params(params):
    """A preset name (``ct``, ``ct-fast``) to its file in Resources; None to the ``ct`` defaults; else as given."""
    if params is None:
        return DEFAULT_PARAMS
    return PRESETS.get(params, params) if isinstance(params, str) else params


ENGINES = ("torch", "pyradiomics")


def make_extractor(params=None, engine="torch", device="auto"):
    """A configured extractor (``TorchRadiomicsExtractor`` or pyradiomics' ``RadiomicsFeatureExtractor``, which
    answer the same calls): ``params`` is a preset name (``ct``, the default, or ``ct-fast``), a YAML/JSON
    file, or a dict in pyradiomics' parameter-file layout; ``device`` is the torch engine's."""
    if engine not in ENGINES:
        raise InputError(f"unknown radiomics engine '{engine}'", column="radiomics-engine",
                         fix="use torch (TACEPredict's own) or pyradiomics (the reference, where installed)")
    params = resolve_params(params)
    if isinstance(params, str) and not os.path.isfile(params):
        raise InputError(f"radiomics parameter file not found: {params}", column="radiomics-params",
                         fix=f"give a preset ({', '.join(PRESETS)}) or a pyradiomics YAML file, e.g. a copy of "
                         f"{DEFAULT_PARAMS}")
    if engine == "torch":
        try:
            from .torch_radiomics import TorchRadiomicsExtractor
        except ImportError as exc:
            raise InputError(f"the torch radiomics engine cannot load ({exc})", column="radiomics-engine",
                             fix="install torch (pip install -e \".[deep]\"; in Slicer, the PyTorch extension)") from None
        return TorchRadiomicsExtractor(params, device=device)
    ok, detail = available()
    if not ok:
        raise InputError(detail, column="radiomics-engine", fix="use --radiomics-engine torch, or " + INSTALL_HINT)
    from radiomics import featureextractor
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    try:
        return featureextractor.RadiomicsFeatureExtractor(params)
    except Exception as exc:  # pykwalify's schema errors and YAML errors have no common base
        raise InputError(f"invalid radiomics parameters ({type(exc).__name__}: {str(exc).strip()[:300]})",
                         column="radiomics-params",
                         fix="check the file against https://pyradiomics.readthedocs.io/en/latest/customization.html"
                         ) from None


def restrict_to(extractor, names):
    """Limit ``extractor`` to what computing ``names`` (e.g. ``wavelet-LLH_glrlm_ShortRunEmphasis``) needs: their
    image types (LoG only at their sigmas) and feature classes, and in each class only those features. A
    fitted model reads a handful of features; this skips the texture matrices nobody asked for (a new patient
    in Slicer). The values of the kept features are unchanged."""
    import re
    image_types, classes = {}, {}
    for name in names:
        image_type, feature_class, feature = name.split("_", 2)
        if image_type == "original":
            image_types.setdefault("Original", {})
        elif image_type.startswith("wavelet"):
            image_types.setdefault("Wavelet", dict(extractor.enabledImagetypes.get("Wavelet", {})))
        elif image_type.startswith("log-sigma-"):
            sigma = float(re.match(r"log-sigma-(\d+)-(\d+)-mm", image_type).expand(r"\1.\2"))
            log = image_types.setdefault("LoG", {**extractor.enabledImagetypes.get("LoG", {}), "sigma": []})
            log["sigma"] = sorted(set(log["sigma"]) | {sigma})
        else:
            raise InputError(f"cannot restrict radiomics to '{name}' (image type {image_type!r})", column="features",
                             fix="extract every feature instead")
        classes.setdefault(feature_class, set()).add(feature)
    extractor.disableAllImageTypes()
    extractor.enableImageTypes(**image_types)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(**{k: sorted(v) for k, v in classes.items()})
    return extractor


def settings_of(extractor):
    """The extractor's full configuration as plain data (for cache keys and provenance)."""
    return {"setting": {k: (list(v) if isinstance(v, tuple) else v) for k, v in extractor.settings.items()},
            "imageType": extractor.enabledImagetypes,
            "featureClass": extractor.enabledFeatures}


def extract(image, mask, extractor=None, label=1, case_id=None, column=None):
    """Radiomics features of ``mask == label`` in ``image`` (SimpleITK images or file paths) as an ordered
    {name: float} dict, pyradiomics' diagnostics left out."""
    extractor = extractor or make_extractor()
    try:
        result = extractor.execute(image, mask, label=label)
    except ValueError as exc:  # pyradiomics' messages for bad masks / geometry mismatches
        raise InputError(f"radiomics refused the ROI ({str(exc).strip().splitlines()[0]})", case_id, column,
                         "check the segmentation against the CT (geometry, label value, size)") from None
    return {name: float(np.asarray(value)) for name, value in result.items()
            if not name.startswith("diagnostics_")}



def extract_from_crop(image, mask, crop_index, full_size, extractor=None, case_id=None, column=None):
    """``extract`` for a crop of a bigger CT (``crop_index``: where the crop starts on the whole grid of size
    ``full_size``), equal to pyradiomics on the whole CT.

    pyradiomics anchors its resampling grid to the image's first voxel, so on a bare crop the 1 mm grid
    would shift by a fraction of a voxel and change the features. Here the crop is resampled onto the very
    grid pyradiomics chooses on the whole CT (``imageoperations.resampleImage`` of pyradiomics 3.0: the
    mask's bounding box plus ``padDistance`` new voxels, origin at the half-voxel offset) and pyradiomics
    runs on that without resampling again; the whole CT is never needed.
    """
    extractor = extractor or make_extractor()
    settings = extractor.settings
    new_spacing = settings.get("resampledPixelSpacing")
    interpolator = settings.get("interpolator")
    if new_spacing is None or interpolator is None:
        return extract(image, mask, extractor, case_id=case_id, column=column)
    mask = sitk.Cast(mask > 0, sitk.sitkUInt8)
    label = 1
    mask_spacing = np.array(mask.GetSpacing())
    new_spacing = np.array(new_spacing, float)
    new_spacing = np.where(new_spacing == 0, mask_spacing, new_spacing)
    nonzero = np.nonzero(sitk.GetArrayViewFromImage(mask))
    if len(nonzero[0]) == 0:
        raise InputError("the lesion is empty", case_id, column, "check the segmentation")
    lower = np.array([int(a.min()) for a in nonzero][::-1]) + np.asarray(crop_index)
    size = np.array([int(a.max()) - int(a.min()) + 1 for a in nonzero][::-1])
    new_spacing = np.where(size != 1, new_spacing, mask_spacing)  # no resampling across a single slice
    if np.allclose(np.array(image.GetSpacing()), new_spacing):
        return extract(image, mask, extractor, label=label, case_id=case_id, column=column)
    pad = settings.get("padDistance", 5)
    ratio = mask_spacing / new_spacing
    new_lower = np.floor((lower - 0.5) * ratio - pad)
    new_upper = np.ceil((lower + size - 0.5) * ratio + pad)
    new_lower = np.maximum(new_lower, 0)
    new_upper = np.minimum(new_upper, np.ceil(np.asarray(full_size) * ratio) - 1)
    new_size = np.array(new_upper - new_lower + 1, dtype=int).tolist()
    origin_index = 0.5 * (new_spacing - mask_spacing) / mask_spacing + new_lower / ratio - np.asarray(crop_index)
    origin = mask.TransformContinuousIndexToPhysicalPoint(origin_index.tolist())
    if isinstance(interpolator, str):
        interpolator = getattr(sitk, interpolator, sitk.sitkBSpline)
    resample = sitk.ResampleImageFilter()
    resample.SetOutputSpacing(new_spacing.tolist())
    resample.SetOutputDirection(mask.GetDirection())
    resample.SetSize(new_size)
    resample.SetOutputOrigin(origin)
    resample.SetOutputPixelType(image.GetPixelID())
    resample.SetInterpolator(interpolator)
    image = resample.Execute(image)
    resample.SetOutputPixelType(mask.GetPixelID())
    resample.SetInterpolator(sitk.sitkNearestNeighbor)
    mask = resample.Execute(mask)
    return extract(image, mask, _without_resampling(extractor), label=label, case_id=case_id, column=column)


def _without_resampling(extractor):
    """The same extractor with resampling and pre-cropping switched off: the image is already the grid
    pyradiomics would have resampled to."""
    plain = copy.copy(extractor)
    plain.settings = dict(extractor.settings, resampledPixelSpacing=None, preCrop=False)
    return plain
