"""Model bundles: a trained model is a folder that runs no code when loaded.

- ``model.json``: format and library version, task, model kind, inputs and preprocessing, training cohort
  summary, metrics, seed, provenance text, and the SHA-256 of every other file in the bundle.
- ``params.json``: the fitted parameters as JSON (coefficients, levels, means, baseline hazard, cut-offs).
- ``weights.safetensors`` (networks only): arrays in the safetensors format (no pickle).
- ``checksums.sha256``: the SHA-256 of every other file of the folder, ``model.json`` included, in the format
  ``sha256sum -c`` reads (written last, by ``seal_bundle``).
- ``checksums.sha256.sig`` (optional): an Ed25519 signature of ``checksums.sha256`` (``models.signing``).

``load_bundle`` refuses, with a message saying what to do, a folder that is not a bundle, a bundle written by
a newer format or an incompatible library version, any file whose checksum does not match, a malformed file
(bad JSON, missing keys, wrong types: an InputError naming the file) and numeric parameters that are not
finite or do not fit together (``validate_params``). Checksums catch corruption, not forgery: whoever can
edit a file can rewrite its checksum. A bundle is unsigned unless it carries a signature, which is checked
when a public key is given. Bundles written before ``checksums.sha256`` existed still load, with a warning
that their ``model.json`` was not protected.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import warnings

import numpy as np

from .. import InputError, InputWarning, RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE, __version__
from ..data.images import sha256_file

FORMAT = "tacepredict-model"
FORMAT_VERSION = 1
PARAMS_FILE = "params.json"
WEIGHTS_FILE = "weights.safetensors"
MANIFEST_FILE = "model.json"
CHECKSUMS_FILE = "checksums.sha256"
SIGNATURE_FILE = "checksums.sha256.sig"
UNSIGNED = ("unsigned: checksums.sha256 detects damaged or changed files, not forgery (anyone who edits a file "
            "can rewrite its checksum); a signature (tacepredict sign-bundle) and --public-key prove the origin")


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
    return (text + (f"; {', '.join(shown)}" if shown else "") + (f"; {info['method']}" if info.get("method") else "")
            + citation_text(info.get("paper")))


def citation_text(paper):
    """What a provenance line says of the method's paper (``paper``: its citation, or a sentence saying the
    model is no published method); empty when unknown."""
    return f"; method: {paper}" if paper else ""


def save_bundle(directory, task, kind, params, training, metrics=None, tensors=None, seed=None, settings=None,
                paper=None, method=None):
    """Write a bundle; ``training`` summarises the training cohort (cases, events, cohort, synthetic); ``paper``:
    the citation of the method's paper (``registry.PAPERS``), stored as ``paper`` and named in the provenance;
    ``method``: one line on how this model departs from the paper's method (its ``method_notes()``), if it says."""
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
        "seed": seed, "paper": paper, "method": method, "settings": settings or {}, "training": training, "metrics": metrics or {},
        "library_versions": _library_versions(), "files": files,
        "notice": RESEARCH_USE_NOTICE + (" " + SYNTHETIC_DATA_NOTICE if training.get("synthetic") else ""),
        "integrity": UNSIGNED,
    }
    if paper:
        info["paper"] = paper
    info["provenance"] = provenance_text(info)
    _write_json(os.path.join(directory, MANIFEST_FILE), info)
    seal_bundle(directory)
    return info


def _bundle_files(directory):
    return sorted(name for name in os.listdir(directory)
                  if os.path.isfile(os.path.join(directory, name)) and name not in (CHECKSUMS_FILE, SIGNATURE_FILE)
                  and not name.startswith("."))


def seal_bundle(directory):
    """Write ``checksums.sha256`` over every file of the bundle folder (call again after adding a file); a
    signature of the previous checksums no longer applies and is removed."""
    lines = [f"{sha256_file(os.path.join(directory, name))}  {name}\n" for name in _bundle_files(directory)]
    path = os.path.join(directory, CHECKSUMS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    os.replace(path + ".tmp", path)
    signature = os.path.join(directory, SIGNATURE_FILE)
    if os.path.exists(signature):
        os.remove(signature)
    return path


def read_checksums(directory):
    """{file name: SHA-256} of ``checksums.sha256``, or None for a bundle written before it existed."""
    path = os.path.join(directory, CHECKSUMS_FILE)
    if not os.path.isfile(path):
        return None
    sums = {}
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path} ({type(exc).__name__})", column="--model",
                         fix="re-copy the whole bundle folder") from None
    for number, line in enumerate(text.splitlines(), 1):
        match = re.fullmatch(r"([0-9a-f]{64}) [ *]([^/\\]+)", line.strip())
        if not match or match.group(2) in (".", ".."):
            raise InputError(f"{path} line {number} is not '<sha256>  <file name>'", column="--model",
                             fix="re-copy the whole bundle folder")
        sums[match.group(2)] = match.group(1)
    return sums


def read_info(directory):
    """``model.json`` of a bundle, checked for format and version (files not yet verified)."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise InputError(f"{directory} is not a TACEPredict model bundle (no {MANIFEST_FILE})", column="--model",
                         fix="give the folder that `tacepredict train --out` wrote")
    info = _read_json(path)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
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
    _check_types(info, path)
    return info


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise InputError(f"{path} is damaged ({detail})", column="--model",
                         fix="re-copy the whole bundle folder, or re-train the model") from None


# Keys of model.json and their types: a bundle without them, or with other types, is malformed.
_INFO_TYPES = {"task": str, "kind": str, "files": dict, "training": dict, "library_versions": dict,
               "provenance": str}


def _check_types(info, path):
    for key, kind in _INFO_TYPES.items():
        if key not in info:
            raise InputError(f"{path} has no '{key}'", column="--model", fix="re-copy or re-train the bundle")
        if not isinstance(info[key], kind):
            raise InputError(f"'{key}' in {path} is a {type(info[key]).__name__}, not a {kind.__name__}",
                             column="--model", fix="re-copy or re-train the bundle")
    for name, digest in info["files"].items():
        if not isinstance(digest, str) or "/" in name or "\\" in name or name in (".", ".."):
            raise InputError(f"'files' in {path} lists '{name}', which is not a file of the bundle", column="--model",
                             fix="re-copy or re-train the bundle")


# Parts of params.json that describe the fit (tables, training history, summaries) and may hold NaN, e.g. a
# p-value of a covariate that could not be fitted; every other number takes part in predictions.
DESCRIPTIVE_KEYS = {"hazard_ratios", "extra", "info", "history", "training", "univariate", "backbone_weights",
                    "backbone", "metrics"}
# Lists that go together: same length wherever both are present.
PAIRED_KEYS = (("covariates", "coef"), ("names", "mean"), ("names", "sd"), ("baseline_time_days", "baseline_cumhaz"))


def validate_params(params, where=PARAMS_FILE):
    """InputError when a number that predictions use is not finite (NaN, inf, or not a number where lists of
    numbers are), or when paired lists differ in length; ``where`` names the file."""
    def walk(value, path):
        if isinstance(value, dict):
            for a, b in PAIRED_KEYS:
                if isinstance(value.get(a), list) and isinstance(value.get(b), list) and len(value[a]) != len(value[b]):
                    raise InputError(f"{where}: {path or '/'} has {len(value[a])} '{a}' but {len(value[b])} '{b}'",
                                     column="--model", fix="re-copy or re-train the bundle")
            for key, item in value.items():
                if key not in DESCRIPTIVE_KEYS:
                    walk(item, f"{path}/{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{where}: {path} is {value}, not a finite number", column="--model",
                             fix="the bundle is damaged or was trained on broken data: re-train it")
    walk(params, "")


def validate_tensors(tensors, where=WEIGHTS_FILE):
    for name, array in (tensors or {}).items():
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise InputError(f"{where}: array '{name}' holds NaN or infinite values", column="--model",
                             fix="the bundle is damaged or its training diverged: re-train it")


def _verify(directory, sums, source):
    for name, digest in sums.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise InputError(f"the bundle lacks {name}, which {source} lists", column="--model",
                             fix="re-copy the whole bundle folder")
        if sha256_file(path) != digest:
            raise InputError(f"{name} does not match the checksum in {source}: the bundle was modified or damaged",
                             column="--model", fix="re-copy or re-train the model")


def load_bundle(directory, public_key=None):
    """``(info, params, tensors)`` of a bundle after checking every file's SHA-256 (and, with ``public_key``, a
    PEM file, its signature); tensors may be None. ``info["integrity"]`` says what was checked."""
    info = read_info(directory)
    sums = read_checksums(directory)
    if sums is None:
        warnings.warn(f"{directory} was written before bundles had {CHECKSUMS_FILE}: its {MANIFEST_FILE} "
                      "(provenance, training cohort, synthetic-data flag) is not protected by a checksum; "
                      "re-save it with this TACEPredict to protect it", InputWarning, stacklevel=2)
        integrity = f"{MANIFEST_FILE} unprotected (bundle written before {CHECKSUMS_FILE}); unsigned"
    else:
        missing = [name for name in (MANIFEST_FILE, PARAMS_FILE) if name not in sums]
        if missing:
            raise InputError(f"{CHECKSUMS_FILE} does not cover {missing[0]}", column="--model",
                             fix="re-copy the whole bundle folder, or re-train the model")
        _verify(directory, sums, CHECKSUMS_FILE)
        integrity = "checksums verified; " + ("signed (signature not checked: no --public-key)"
                                              if os.path.isfile(os.path.join(directory, SIGNATURE_FILE))
                                              else "unsigned")
    _verify(directory, info["files"], MANIFEST_FILE)
    if public_key:
        from .signing import verify_bundle
        integrity = "checksums verified; " + verify_bundle(directory, public_key)
    if PARAMS_FILE not in info["files"]:
        raise InputError(f"the bundle's {MANIFEST_FILE} lists no {PARAMS_FILE}", column="--model",
                         fix="re-train the model")
    params = _read_json(os.path.join(directory, PARAMS_FILE))
    if not isinstance(params, dict):
        raise InputError(f"{os.path.join(directory, PARAMS_FILE)} holds a {type(params).__name__}, not the model's "
                         "parameters", column="--model", fix="re-copy or re-train the bundle")
    validate_params(params, os.path.join(directory, PARAMS_FILE))
    tensors = None
    if WEIGHTS_FILE in info["files"]:
        from safetensors.numpy import load_file
        path = os.path.join(directory, WEIGHTS_FILE)
        try:
            tensors = load_file(path)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"{path} is damaged ({type(exc).__name__})", column="--model",
                             fix="re-copy the whole bundle folder, or re-train the model") from None
        validate_tensors(tensors, path)
    info["integrity"] = integrity
    return info, params, tensors
