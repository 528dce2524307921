"""Model bundles: a trained model is a folder that runs no code when loaded.

- ``model.json``: format and library version, task, model kind, inputs and preprocessing, training cohort
  summary, metrics, seed, provenance text, and the SHA-256 of every other file in the bundle.
- ``params.json``: the fitted parameters as JSON (coefficients, levels, means, baseline hazard, cut-offs).
- ``weights.safetensors`` (networks only): arrays in the safetensors format (no pickle).

``load_bundle`` refuses, with a message saying what to do, a folder that is not a bundle, a bundle written by
a newer format or an incompatible library version, and any file whose checksum does not match.
"""

from __future__ import annotations

import datetime
import json
import os
import platform

import numpy as np

from .. import InputError, RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE, __version__
from ..data.images import sha256_file

FORMAT = "tacepredict-model"
FORMAT_VERSION = 1
PARAMS_FILE = "params.json"
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "model.json"


def _library_versions():
    versions = {"tacepredict": __version__, "python": platform.python_version(), "numpy": np.__version__}
    from importlib import metadata
    # read from the installed distributions: importing torch or pyradiomics only for a version string cost
    # seconds on every bundle save
    for name, distribution in (("pandas", "pandas"), ("scipy", "scipy"), ("torch", "torch"), ("monai", "monai"),
                               ("radiomics", "pyradiomics"), ("SimpleITK", "SimpleITK")):
        try:
            versions[name] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a model bundle")


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, default=_json_default, allow_nan=True)
        handle.write("\n")
    os.replace(tmp, path)


def _compatible(bundle_version):
    """Bundles from the same major version load (0.x: the same minor), older or newer within it."""
    mine = [int(p) for p in __version__.split(".")[:2]]
    theirs = [int(p) for p in str(bundle_version).split(".")[:2]]
    return mine[0] == theirs[0] and (mine[0] > 0 or mine[1] == theirs[1])


def provenance_text(info):
    """One line: what the model is, what it was trained on and how well it did."""
    training = info.get("training", {})
    data = "the SYNTHETIC demo cohort" if training.get("synthetic") else training.get("cohort", "unknown data")
    text = (f"{info['task']} / {info['kind']} (TACEPredict {info['library_versions']['tacepredict']}), trained on "
            f"{data}: {training.get('cases', '?')} cases, {training.get('events', '?')} events")
    metrics = info.get("metrics") or {}
    shown = [f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)][:4]
    return text + (f"; {', '.join(shown)}" if shown else "")


def save_bundle(directory, task, kind, params, training, metrics=None, tensors=None, seed=None, settings=None):
    """Write a bundle; ``training`` summarises the training cohort (cases, events, cohort, synthetic)."""
    os.makedirs(directory, exist_ok=True)
    files = {}
    _write_json(os.path.join(directory, PARAMS_FILE), params)
    files[PARAMS_FILE] = sha256_file(os.path.join(directory, PARAMS_FILE))
    if tensors:
        from safetensors.numpy import save_file
        path = os.path.join(directory, WEIGHTS_FILE)
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path + ".tmp")
        os.replace(path + ".tmp", path)
        files[WEIGHTS_FILE] = sha256_file(path)
    info = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "task": task, "kind": kind,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed, "settings": settings or {}, "training": training, "metrics": metrics or {},
        "library_versions": _library_versions(), "files": files,
        "notice": RESEARCH_USE_NOTICE + (" " + SYNTHETIC_DATA_NOTICE if training.get("synthetic") else ""),
    }
    info["provenance"] = provenance_text(info)
    _write_json(os.path.join(directory, MANIFEST_FILE), info)
    return info


def read_info(directory):
    """``model.json`` of a bundle, checked for format and version (files not yet verified)."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise InputError(f"{directory} is not a TACEPredict model bundle (no {MANIFEST_FILE})", column="--model",
                         fix="give the folder that `tacepredict train --out` wrote")
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} ({exc})", column="--model", fix="re-train or re-copy the bundle") from None
    if info.get("format") != FORMAT:
        raise InputError(f"{path} is not a TACEPredict model manifest", column="--model",
                         fix="give the folder that `tacepredict train --out` wrote")
    if info.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"bundle format {info.get('format_version')} is newer than this TACEPredict reads "
                         f"({FORMAT_VERSION})", column="--model", fix="upgrade TACEPredict")
    trained_with = info.get("library_versions", {}).get("tacepredict", "0.0")
    if not _compatible(trained_with):
        raise InputError(f"the model was trained with TACEPredict {trained_with}, incompatible with this "
                         f"{__version__}", column="--model",
                         fix=f"re-train it with TACEPredict {__version__}, or install TACEPredict {trained_with}")
    return info


def load_bundle(directory):
    """``(info, params, tensors)`` of a bundle after checking every file's SHA-256; tensors may be None."""
    info = read_info(directory)
    for name, digest in info.get("files", {}).items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise InputError(f"the bundle lacks {name}", column="--model", fix="re-copy the whole bundle folder")
        if sha256_file(path) != digest:
            raise InputError(f"{name} does not match the checksum in {MANIFEST_FILE}: the bundle was modified or "
                             "damaged", column="--model", fix="re-copy or re-train the model")
    if PARAMS_FILE not in info.get("files", {}):
        raise InputError(f"the bundle's {MANIFEST_FILE} lists no {PARAMS_FILE}", column="--model",
                         fix="re-train the model")
    with open(os.path.join(directory, PARAMS_FILE), encoding="utf-8") as handle:
        params = json.load(handle)
    tensors = None
    if WEIGHTS_FILE in info["files"]:
        from safetensors.numpy import load_file
        tensors = load_file(os.path.join(directory, WEIGHTS_FILE))
    return info, params, tensors
