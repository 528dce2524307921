"""pyradiomics 3.0.1 parameter files for the torch engine: the same YAML/JSON/dict layout (``imageType``,
``featureClass``, ``setting``), the same defaults, the same feature names.

Everything the engine cannot do the way pyradiomics does is refused with an ``InputError`` that names the
setting (never silently ignored): voxel-based extraction (``voxelSetting``), ``force2D: true``, distances other
than ``[1]``, a GLCM ``weightingNorm``, wavelets other than ``coif1``, the LBP image types and ``shape2D``.
An unknown key (a typo such as ``binwidth``) is refused the same way; pyradiomics' schema refuses it too.

This module needs neither pyradiomics nor pywt: the feature names below are pyradiomics 3.0.1's (its classes'
``get<Name>FeatureValue`` methods, in the order ``inspect.getmembers`` lists them, which is the order
pyradiomics writes them), with the deprecated ones flagged.
"""

from __future__ import annotations

import copy
import json
import numbers
import os

from TACEPredictLib import InputError

# name -> deprecated, in pyradiomics' order (alphabetical by method name)
FEATURE_NAMES = {
    "shape": {"Compactness1": True, "Compactness2": True, "Elongation": False, "Flatness": False,
              "LeastAxisLength": False, "MajorAxisLength": False, "Maximum2DDiameterColumn": False,
              "Maximum2DDiameterRow": False, "Maximum2DDiameterSlice": False, "Maximum3DDiameter": False,
              "MeshVolume": False, "MinorAxisLength": False, "SphericalDisproportion": True, "Sphericity": False,
              "SurfaceArea": False, "SurfaceVolumeRatio": False, "VoxelVolume": False},
    "firstorder": {"10Percentile": False, "90Percentile": False, "Energy": False, "Entropy": False,
                   "InterquartileRange": False, "Kurtosis": False, "Maximum": False,
                   "MeanAbsoluteDeviation": False, "Mean": False, "Median": False, "Minimum": False,
                   "Range": False, "RobustMeanAbsoluteDeviation": False, "RootMeanSquared": False,
                   "Skewness": False, "StandardDeviation": True, "TotalEnergy": False, "Uniformity": False,
                   "Variance": False},
    "glcm": {"Autocorrelation": False, "ClusterProminence": False, "ClusterShade": False,
             "ClusterTendency": False, "Contrast": False, "Correlation": False, "DifferenceAverage": False,
             "DifferenceEntropy": False, "DifferenceVariance": False, "Dissimilarity": True, "Homogeneity1": True,
             "Homogeneity2": True, "Id": False, "Idm": False, "Idmn": False, "Idn": False, "Imc1": False,
             "Imc2": False, "InverseVariance": False, "JointAverage": False, "JointEnergy": False,
             "JointEntropy": False, "MCC": False, "MaximumProbability": False, "SumAverage": False,
             "SumEntropy": False, "SumSquares": False, "SumVariance": True},
    "glrlm": {"GrayLevelNonUniformity": False, "GrayLevelNonUniformityNormalized": False,
              "GrayLevelVariance": False, "HighGrayLevelRunEmphasis": False, "LongRunEmphasis": False,
              "LongRunHighGrayLevelEmphasis": False, "LongRunLowGrayLevelEmphasis": False,
              "LowGrayLevelRunEmphasis": False, "RunEntropy": False, "RunLengthNonUniformity": False,
              "RunLengthNonUniformityNormalized": False, "RunPercentage": False, "RunVariance": False,
              "ShortRunEmphasis": False, "ShortRunHighGrayLevelEmphasis": False,
              "ShortRunLowGrayLevelEmphasis": False},
    "glszm": {"GrayLevelNonUniformity": False, "GrayLevelNonUniformityNormalized": False,
              "GrayLevelVariance": False, "HighGrayLevelZoneEmphasis": False, "LargeAreaEmphasis": False,
              "LargeAreaHighGrayLevelEmphasis": False, "LargeAreaLowGrayLevelEmphasis": False,
              "LowGrayLevelZoneEmphasis": False, "SizeZoneNonUniformity": False,
              "SizeZoneNonUniformityNormalized": False, "SmallAreaEmphasis": False,
              "SmallAreaHighGrayLevelEmphasis": False, "SmallAreaLowGrayLevelEmphasis": False,
              "ZoneEntropy": False, "ZonePercentage": False, "ZoneVariance": False},
    "gldm": {"DependenceEntropy": False, "DependenceNonUniformity": False,
             "DependenceNonUniformityNormalized": False, "DependencePercentage": True, "DependenceVariance": False,
             "GrayLevelNonUniformity": False, "GrayLevelNonUniformityNormalized": True, "GrayLevelVariance": False,
             "HighGrayLevelEmphasis": False, "LargeDependenceEmphasis": False,
             "LargeDependenceHighGrayLevelEmphasis": False, "LargeDependenceLowGrayLevelEmphasis": False,
             "LowGrayLevelEmphasis": False, "SmallDependenceEmphasis": False,
             "SmallDependenceHighGrayLevelEmphasis": False, "SmallDependenceLowGrayLevelEmphasis": False},
    "ngtdm": {"Busyness": False, "Coarseness": False, "Complexity": False, "Contrast": False, "Strength": False},
}
# pyradiomics' getFeatureClasses() order (module names, alphabetical): the order of the classes when a
# parameter file enables all of them
FEATURE_CLASSES = ("firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape")
TEXTURE_CLASSES = ("glcm", "glrlm", "glszm", "gldm", "ngtdm")

# Deprecated features whose pyradiomics method raises DeprecationWarning: asked for by name, pyradiomics
# writes no value for them (it logs the reason and skips the key). The engine does the same.
NOT_WRITTEN = {"glcm": {"Dissimilarity", "Homogeneity1", "Homogeneity2", "SumVariance"},
               "gldm": {"GrayLevelNonUniformityNormalized", "DependencePercentage"}}

# every image type pyradiomics 3.0.1 knows; the engine computes all but the LBP ones
IMAGE_TYPES = ("Exponential", "Gradient", "LBP2D", "LBP3D", "LoG", "Logarithm", "Original", "Square",
               "SquareRoot", "Wavelet")
SUPPORTED_IMAGE_TYPES = ("Original", "Wavelet", "LoG", "Square", "SquareRoot", "Logarithm", "Exponential",
                         "Gradient")


def default_settings():
    """``RadiomicsFeatureExtractor._getDefaultSettings()`` of pyradiomics 3.0.1."""
    return {"minimumROIDimensions": 2, "minimumROISize": None, "normalize": False, "normalizeScale": 1,
            "removeOutliers": None, "resampledPixelSpacing": None, "interpolator": "sitkBSpline",
            "preCrop": False, "padDistance": 5, "distances": [1], "force2D": False, "force2Ddimension": 0,
            "resegmentRange": None, "label": 1, "additionalInfo": True}


INTERPOLATORS = ("sitkNearestNeighbor", "sitkLinear", "sitkBSpline", "sitkGaussian", "sitkLabelGaussian",
                 "sitkHammingWindowedSinc", "sitkCosineWindowedSinc", "sitkWelchWindowedSinc",
                 "sitkLanczosWindowedSinc", "sitkBlackmanWindowedSinc")


def _number(name, value, kind, low=None, low_open=False, high=None, where="setting"):
    ok_type = (isinstance(value, numbers.Integral) if kind is int else isinstance(value, numbers.Real))
    if isinstance(value, bool) or not ok_type:
        raise InputError(f"radiomics {where} '{name}' must be {'an integer' if kind is int else 'a number'}, "
                         f"got {value!r}", column=name, fix="correct the parameter file")
    if low is not None and (value < low or (low_open and value == low)):
        raise InputError(f"radiomics {where} '{name}' must be {'>' if low_open else '>='} {low}, got {value!r}",
                         column=name, fix="correct the parameter file")
    if high is not None and value > high:
        raise InputError(f"radiomics {where} '{name}' must be <= {high}, got {value!r}", column=name,
                         fix="correct the parameter file")


def _bool(name, value, where):
    if not isinstance(value, bool):
        raise InputError(f"radiomics {where} '{name}' must be true or false, got {value!r}", column=name,
                         fix="correct the parameter file")


def _seq(name, value, where, kind=float, low=None, low_open=False, length=None):
    if not isinstance(value, (list, tuple)):
        raise InputError(f"radiomics {where} '{name}' must be a list, got {value!r}", column=name,
                         fix="correct the parameter file")
    if length is not None and len(value) not in length:
        raise InputError(f"radiomics {where} '{name}' must have {' or '.join(map(str, length))} values, got "
                         f"{len(value)}", column=name, fix="correct the parameter file")
    for item in value:
        _number(name, item, kind, low, low_open, where=where)


def _unsupported(name, value, why, fix):
    return InputError(f"radiomics setting '{name}: {value!r}' is not supported by the torch engine ({why})",
                      column=name, fix=fix)


PYRADIOMICS_FIX = "use engine='pyradiomics' for this setting, or remove it"


def check_setting(name, value, where="setting"):
    """Validate one setting as pyradiomics' schema does, and refuse what the engine does not implement."""
    if value is None and name in ("minimumROISize", "removeOutliers", "resampledPixelSpacing", "resegmentRange",
                                  "interpolator", "weightingNorm", "binCount", "geometryTolerance"):
        return
    if name == "minimumROIDimensions":
        _number(name, value, int, 1, high=3, where=where)
    elif name == "minimumROISize":
        _number(name, value, int, 0, low_open=True, where=where)
    elif name in ("geometryTolerance", "binWidth", "normalizeScale", "removeOutliers"):
        _number(name, value, float, 0, low_open=True, where=where)
    elif name in ("correctMask", "additionalInfo", "normalize", "preCrop", "resegmentShape", "symmetricalGLCM",
                  "gradientUseSpacing"):
        _bool(name, value, where)
    elif name == "label":
        _number(name, value, int, 0, low_open=True, where=where)
    elif name == "label_channel":
        _number(name, value, int, 0, where=where)
    elif name == "binCount":
        _number(name, value, int, 0, low_open=True, where=where)
    elif name == "resampledPixelSpacing":
        _seq(name, value, where, float, 0, length=(3,))
    elif name == "interpolator":
        if isinstance(value, str):
            if value not in INTERPOLATORS:
                raise InputError(f"radiomics setting 'interpolator: {value}' is not a SimpleITK interpolator",
                                 column=name, fix="use one of " + ", ".join(INTERPOLATORS))
        else:
            _number(name, value, int, 1, high=10, where=where)
    elif name == "padDistance":
        _number(name, value, int, 0, where=where)
    elif name == "distances":
        _seq(name, value, where, int, 0, low_open=True)
        if list(value) != [1]:
            raise _unsupported(name, value, "only distance 1 is implemented", PYRADIOMICS_FIX)
    elif name == "force2D":
        _bool(name, value, where)
        if value:
            raise _unsupported(name, value, "only 3D extraction is implemented", PYRADIOMICS_FIX)
    elif name == "force2Ddimension":
        _number(name, value, int, 0, high=2, where=where)
    elif name == "resegmentRange":
        _seq(name, value, where, float, length=(1, 2))
    elif name == "resegmentMode":
        if value not in ("absolute", "relative", "sigma"):
            raise InputError(f"radiomics setting 'resegmentMode: {value}' is not absolute, relative or sigma",
                             column=name, fix="correct the parameter file")
    elif name == "sigma":
        _seq(name, value, where, float, 0, low_open=True)
    elif name == "start_level":
        _number(name, value, int, 0, where=where)
    elif name == "level":
        _number(name, value, int, 0, low_open=True, where=where)
    elif name == "wavelet":
        if value != "coif1":
            raise _unsupported(name, value, "only pyradiomics' default wavelet coif1 is implemented",
                               PYRADIOMICS_FIX)
    elif name == "voxelArrayShift":
        _number(name, value, int, where=where)
    elif name == "weightingNorm":
        raise _unsupported(name, value, "GLCM distance weighting is not implemented", PYRADIOMICS_FIX)
    elif name == "gldm_a":
        _number(name, value, int, 0, where=where)
    elif name.startswith("lbp2D") or name.startswith("lbp3D"):
        raise _unsupported(name, value, "the LBP image types are not implemented", PYRADIOMICS_FIX)
    else:
        known = sorted(set(default_settings()) | KNOWN_EXTRA)
        raise InputError(f"unknown radiomics setting '{name}'", column=name,
                         fix="check the spelling; pyradiomics' settings are " + ", ".join(known))


KNOWN_EXTRA = {"geometryTolerance", "correctMask", "label_channel", "binWidth", "binCount", "resegmentMode",
               "resegmentShape", "sigma", "start_level", "level", "wavelet", "gradientUseSpacing",
               "voxelArrayShift", "symmetricalGLCM", "weightingNorm", "gldm_a"}


def check_settings(settings, where="setting"):
    for name, value in settings.items():
        check_setting(name, value, where)
    if settings.get("binCount") is not None and where == "setting":
        pass  # pyradiomics only warns (fixed bin count is discouraged); so does the engine (see extractor)


def check_image_types(image_types):
    if not isinstance(image_types, dict):
        raise InputError(f"radiomics 'imageType' must be a mapping, got {image_types!r}", column="imageType",
                         fix="e.g. imageType: {Original: {}, LoG: {sigma: [2.0]}}")
    for name, custom in image_types.items():
        if name not in IMAGE_TYPES:
            raise InputError(f"unknown radiomics image type '{name}'", column="imageType",
                             fix="use one of " + ", ".join(SUPPORTED_IMAGE_TYPES))
        if name not in SUPPORTED_IMAGE_TYPES:
            raise _unsupported("imageType", name, "the LBP image types are not implemented", PYRADIOMICS_FIX)
        if custom is None:
            continue
        if not isinstance(custom, dict):
            raise InputError(f"radiomics image type '{name}' must map to settings, got {custom!r}",
                             column="imageType", fix=f"write '{name}: {{}}' for no custom settings")
        check_settings(custom, where=f"setting of image type {name}")


def check_feature_classes(feature_classes):
    if not isinstance(feature_classes, dict):
        raise InputError(f"radiomics 'featureClass' must be a mapping, got {feature_classes!r}",
                         column="featureClass", fix="e.g. featureClass: {firstorder: , glcm: }")
    for name, features in feature_classes.items():
        if name == "shape2D":
            raise _unsupported("featureClass", name, "2D shape needs force2D, which is not implemented",
                               PYRADIOMICS_FIX)
        if name not in FEATURE_NAMES:
            raise InputError(f"unknown radiomics feature class '{name}'", column="featureClass",
                             fix="use one of " + ", ".join(FEATURE_CLASSES))
        if features is None:
            continue
        if not isinstance(features, (list, tuple)):
            raise InputError(f"radiomics feature class '{name}' must list feature names, got {features!r}",
                             column="featureClass", fix="give a list, or nothing for every feature")
        unknown = sorted(set(features) - set(FEATURE_NAMES[name]))
        if unknown:
            raise InputError(f"unknown {name} feature(s) {', '.join(unknown)}", column="featureClass",
                             fix=f"{name} has: " + ", ".join(FEATURE_NAMES[name]))


def read_params(params):
    """A parameter file (YAML or JSON path), a JSON string, or a dict -> a deep-copied dict."""
    if params is None:
        return None
    if isinstance(params, dict):
        return copy.deepcopy(params)
    if isinstance(params, os.PathLike):
        params = os.fspath(params)
    if not isinstance(params, str):
        raise InputError(f"radiomics parameters must be a file path or a dict, got {type(params).__name__}",
                         column="radiomics-params", fix="give a YAML/JSON file or a dict")
    if not os.path.isfile(params):
        raise InputError(f"radiomics parameter file not found: {params}", column="radiomics-params",
                         fix="give an existing pyradiomics YAML/JSON parameter file")
    with open(params) as handle:
        text = handle.read()
    yaml = None
    if not params.lower().endswith(".json"):
        try:
            import yaml
        except ImportError:
            raise InputError(f"reading the YAML parameter file {params} needs PyYAML, which is not installed",
                             column="radiomics-params",
                             fix="pip install pyyaml, or give the parameters as a JSON file or a dict") from None
    try:
        if params.lower().endswith(".json"):
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError, json.JSONDecodeError
        raise InputError(f"cannot read radiomics parameter file {params} ({type(exc).__name__}: "
                         f"{str(exc).strip()[:200]})", column="radiomics-params",
                         fix="check the file's YAML/JSON syntax") from None
    return data if data is not None else {}


def parse_params(params):
    """(settings, enabled image types, enabled features) exactly as ``RadiomicsFeatureExtractor(params)``
    would set ``settings``, ``enabledImagetypes`` and ``enabledFeatures`` (shape2D left out of the default
    all-classes set: it is never computed for 3D images)."""
    data = read_params(params)
    if data is None:
        settings = default_settings()
        return settings, {"Original": {}}, {name: [] for name in FEATURE_CLASSES}
    if not isinstance(data, dict):
        raise InputError(f"radiomics parameters must be a mapping with imageType/featureClass/setting, got "
                         f"{type(data).__name__}", column="radiomics-params", fix="see pyradiomics' parameter files")
    for key in data:
        if key == "voxelSetting":
            raise _unsupported("voxelSetting", data[key], "voxel-based extraction is not implemented",
                               PYRADIOMICS_FIX)
        if key not in ("imageType", "featureClass", "setting"):
            raise InputError(f"unknown radiomics parameter section '{key}'", column="radiomics-params",
                             fix="a parameter file has only imageType, featureClass and setting")
    image_types = data.get("imageType") or {}
    feature_classes = data.get("featureClass") or {}
    settings = data.get("setting") or {}
    if not isinstance(settings, dict):
        raise InputError(f"radiomics 'setting' must be a mapping, got {settings!r}", column="setting",
                         fix="e.g. setting: {binWidth: 25}")
    check_image_types(image_types)
    check_feature_classes(feature_classes)
    check_settings(settings)
    image_types = {k: (v if v is not None else {}) for k, v in image_types.items()} or {"Original": {}}
    if not feature_classes:
        feature_classes = {name: [] for name in FEATURE_CLASSES}
    merged = default_settings()
    merged.update(settings)
    return merged, image_types, dict(feature_classes)


def enabled_names(feature_class, names):
    """The features pyradiomics computes for a class given its enabled list (None/[]: every non-deprecated)."""
    if feature_class not in FEATURE_NAMES:
        raise InputError(f"unknown radiomics feature class '{feature_class}'", column="featureClass",
                         fix="use one of " + ", ".join(FEATURE_CLASSES))
    if not names:
        return [n for n, deprecated in FEATURE_NAMES[feature_class].items() if not deprecated]
    ordered = []
    for name in names:
        if name not in FEATURE_NAMES[feature_class]:
            raise InputError(f"unknown {feature_class} feature '{name}'", column="featureClass",
                             fix=f"{feature_class} has: " + ", ".join(FEATURE_NAMES[feature_class]))
        if name not in ordered:
            ordered.append(name)
    return ordered
