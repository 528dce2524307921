"""pyradiomics on the 3D ROI, with TACEPredict's CT parameter file (``Resources/radiomics_ct.yaml``) or the
user's own.

pyradiomics is optional: it often fails to build on Python 3.12 (Slicer 5.10+). Without it, everything that
does not need radiomics keeps working, and asking for radiomics raises an error that says so plainly.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from . import InputError

DEFAULT_PARAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Resources", "radiomics_ct.yaml")

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


def make_extractor(params=None):
    """A configured ``RadiomicsFeatureExtractor``: ``params`` is a YAML/JSON file, a dict in pyradiomics'
    parameter-file layout, or None for TACEPredict's CT defaults."""
    ok, detail = available()
    if not ok:
        raise InputError(detail, column="radiomics", fix=INSTALL_HINT)
    from radiomics import featureextractor
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    params = DEFAULT_PARAMS if params is None else params
    if isinstance(params, str) and not os.path.isfile(params):
        raise InputError(f"radiomics parameter file not found: {params}", column="radiomics-params",
                         fix=f"give a pyradiomics YAML file, e.g. a copy of {DEFAULT_PARAMS}")
    try:
        return featureextractor.RadiomicsFeatureExtractor(params)
    except Exception as exc:  # pykwalify's schema errors and YAML errors have no common base
        raise InputError(f"invalid radiomics parameters ({type(exc).__name__}: {str(exc).strip()[:300]})",
                         column="radiomics-params",
                         fix="check the file against https://pyradiomics.readthedocs.io/en/latest/customization.html"
                         ) from None


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
        raise InputError(f"pyradiomics refused the ROI ({str(exc).strip().splitlines()[0]})", case_id, column,
                         "check the segmentation against the CT (geometry, label value, size)") from None
    return {name: float(np.asarray(value)) for name, value in result.items()
            if not name.startswith("diagnostics_")}

