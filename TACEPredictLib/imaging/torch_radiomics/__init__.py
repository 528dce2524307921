"""TACEPredictLib's radiomics engine in torch: pyradiomics 3.0.1's parameter files, feature names and values
(shape, first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM on the Original, Wavelet, LoG, Square, SquareRoot,
Logarithm, Exponential and Gradient images), with every filtered image of a case in one [B, Z, Y, X] batch on
the CPU, a CUDA GPU or Apple MPS. See docs/radiomics_engine.md.

Public API::

    from TACEPredictLib.imaging.torch_radiomics import TorchRadiomicsExtractor, make_extractor
    extractor = make_extractor("ct")            # TACEPredict's presets, a YAML/JSON file or a dict
    features = extractor.execute(image, mask)   # same keys and values as pyradiomics' execute

``TACEPredictLib.imaging.radiomics``' ``restrict_to``, ``settings_of``, ``extract`` and
``extract_from_crop`` accept this extractor unchanged.
"""

from .extractor import TorchRadiomicsExtractor, resolve_device
from .params import FEATURE_NAMES, parse_params

__all__ = ["TorchRadiomicsExtractor", "make_extractor", "available", "resolve_device", "FEATURE_NAMES",
           "parse_params"]


def available():
    """(True, description): the engine needs only torch, numpy and SimpleITK, which are imported above."""
    import torch
    return True, f"torch {torch.__version__}"


def make_extractor(params=None, device="auto"):
    """The engine's entry point: ``TACEPredictLib.imaging.radiomics.make_extractor(params, "torch", device)``
    (presets ``ct`` and ``ct-fast``, a pyradiomics YAML/JSON file or a dict; errors are InputErrors naming the
    setting)."""
    from ..radiomics import make_extractor as make
    return make(params, engine="torch", device=device)
