"""Cohort feature extraction: radiomics and deep features for every case and phase into one tidy table.

``extract_cohort`` runs every case (in local worker processes, or on a Dask cluster), caches each finished
case under ``OUT/cache`` keyed by the SHA-256 of its input files and of the settings (a re-run recomputes
nothing; changed settings or files recompute; a killed run resumes where it stopped), records each failed
case with its reason in ``failures.csv`` and carries on. Every output is written atomically.

Outputs in OUT: ``features.parquet`` and ``features.csv`` (columns case_id, phase, reader, family, feature,
value, weights), ``failures.csv``, ``registration.csv``, ``icc.csv`` and ``extraction.json``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .. import RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE, InputError, __version__
from ..data.images import sha256_file
from ..data.manifest import Manifest, is_synthetic, read_manifest
from ..data.dicom import reference_exists

FEATURE_COLUMNS = ["case_id", "phase", "reader", "family", "feature", "value", "weights"]
FAILURE_COLUMNS = ["case_id", "column", "error", "fix"]
MAIN_READER = "seg"


@dataclass
class ExtractionSettings:
    phases: tuple = ("ct_ap", "ct_pvp")
    register: str = "rigid"                  # none, rigid or affine (to the reference phase)
    radiomics: bool = True
    radiomics_params: str | None = None      # preset (ct, ct-fast) or pyradiomics YAML; None = the ct preset
    radiomics_engine: str = "torch"          # torch (TACEPredict's own) or pyradiomics (the reference)
    deep: tuple = ("densenet121",)           # backbones; empty for none
    weights: str = "imagenet"                # imagenet, random, or a checkpoint file
    sampling: str = "centre"                 # centre (largest slice, 224 px) or inside (patches inside the ROI)
    normalisation: str = "zscore"            # zscore (per patch, seed 000) or window (abdominal HU window)
    device: str = "auto"
    precision: str = "auto"
    icc_cases: int = 30                      # cases that also get features of their other delineations
    patches: bool = True                     # store the image CNNs' patch sets (sampling.PATCH_SETS) per case
    threads: int = 0                         # torch/ITK threads per worker; 0 = cores / workers

    def cache_key_data(self):
        """The settings that change feature values (not device or threads), with file contents hashed."""
        data = asdict(self)
        for name in ("device", "threads", "icc_cases"):
            data.pop(name)
        data["phases"] = list(self.phases)
        data["deep"] = list(self.deep)
        params = self.radiomics_params
        if self.radiomics:
            from .radiomics import resolve_params
            data["radiomics_params"] = sha256_file(resolve_params(params))
        if self.weights not in ("imagenet", "random") and self.deep:
            data["weights"] = sha256_file(self.weights)
        if self.weights == "random" and self.deep:
            from .deep_features import RANDOM_INIT_SEED
            data["random_init_seed"] = RANDOM_INIT_SEED  # earlier untrained features were not seeded: recompute
        data["version"] = __version__
        return data


def _sha256_input(path):
    from ..data.dicom import is_series_reference, reference_digest
    if is_series_reference(path):  # a DICOM folder, or folder#series choice
        return reference_digest(path)
    return sha256_file(path)


def _dump_json(data, path):
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1, default=str)


def _write_atomic(path, write):
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ------------------------------------------------------------------------------------------ one case

_WORKER_CACHE = {}  # per process: the radiomics extractor and the deep networks, built once


def _radiomics_extractor(params, engine, device):
    key = ("radiomics", params, engine, device)
    if key not in _WORKER_CACHE:
        from .radiomics import make_extractor
        _WORKER_CACHE[key] = make_extractor(params, engine, device)
    return _WORKER_CACHE[key]


def _deep_extractor(backbone, weights, device, precision):
    key = ("deep", backbone, weights, device, precision)
    if key not in _WORKER_CACHE:
        import warnings

        from .deep_features import DeepFeatureExtractor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the random-weights warning goes into every output instead
            _WORKER_CACHE[key] = DeepFeatureExtractor(backbone, weights, device, precision)
    return _WORKER_CACHE[key]


def _weights_label(provenance):
    if provenance["weights"] == "random":
        return "random (UNTRAINED - see extraction.json)"
    return provenance["weights"] + (f" sha256:{provenance['sha256'][:12]}" if provenance["sha256"] else "")


NORMALISATIONS = ("zscore", "window")


def deep_patches(volume, mask, sampling, normalisation="zscore"):
    """The normalised, three-channel patches a backbone sees for one phase: (N, 3, 224, 224).

    ``zscore`` standardises each patch (seed 000); ``window`` maps the abdominal HU window to unit-variance
    values around zero, which keeps absolute attenuation (enhancement, necrosis) that a z-score removes.
    """
    from .preprocess import window, zscore
    from .sampling import centre_patch, inside_patches, to_three_channels
    if sampling == "centre":
        patches = [centre_patch(volume, mask)]
    elif sampling == "inside":
        patches = inside_patches(volume, mask)
    else:
        raise InputError(f"unknown sampling {sampling!r}", column="sampling", fix="use centre or inside")
    if normalisation == "zscore":
        normalised = [zscore(p.array) for p in patches]
    elif normalisation == "window":
        normalised = [(window(p.array) - 0.5) / 0.25 for p in patches]
    else:
        raise InputError(f"unknown normalisation {normalisation!r}", column="normalisation",
                         fix="use " + " or ".join(NORMALISATIONS))
    return np.stack([to_three_channels(a) for a in normalised]), patches


def extract_case(manifest, row, settings, with_readers=False, case=None, radiomics_names=None, patch_features=None):
    """Features of one case as a tidy DataFrame, plus its registration records and provenance. ``case``: the
    already loaded ``CaseImages`` (settings' phases and registration); ``radiomics_names``: {phase: radiomics
    features (``imagetype_class_feature``)} to compute only those, e.g. the few a fitted model reads;
    ``patch_features``: a dict that receives each backbone's per-patch vectors, ``<backbone>_<phase>`` -> (N, D),
    before they are averaged (the main delineation only)."""
    import SimpleITK as sitk

    from .preprocess import load_case
    from .radiomics import extract_from_crop, make_extractor, restrict_to
    from .reproducibility import perturbed_masks

    readers = manifest.extra_seg_columns if with_readers else []
    if case is None:
        case = load_case(manifest, row, settings.phases, settings.register, readers=readers)
    radiomics_extractors = {}
    if settings.radiomics:
        for phase in settings.phases:
            if radiomics_names is None:
                radiomics_extractors[phase] = _radiomics_extractor(settings.radiomics_params,
                                                                   settings.radiomics_engine, settings.device)
            elif radiomics_names.get(phase):
                radiomics_extractors[phase] = restrict_to(make_extractor(
                    settings.radiomics_params, settings.radiomics_engine, settings.device), radiomics_names[phase])
    masks = {MAIN_READER: case.mask_array()}
    if with_readers:
        if case.reader_masks:
            masks.update({name: case.mask_array(name) for name in case.reader_masks})
        else:
            masks.update(perturbed_masks(masks[MAIN_READER], seed=0, spacing=case.mask.GetSpacing()))
    records = []
    provenance = {}
    for phase in settings.phases:
        image = case.phases[phase]
        volume = sitk.GetArrayFromImage(image)
        for reader, mask in masks.items():
            if mask.sum() < 1:
                continue
            if phase in radiomics_extractors:
                mask_image = sitk.GetImageFromArray(mask.astype(np.uint8))
                mask_image.CopyInformation(image)
                values = extract_from_crop(image, mask_image, case.crop_index, case.full_geometry["size"],
                                           radiomics_extractors[phase],
                                           case_id=case.case_id, column=phase)
                records += [(case.case_id, phase, reader, "radiomics", k, v, "") for k, v in values.items()]
            for backbone in settings.deep:
                extractor = _deep_extractor(backbone, settings.weights, settings.device, settings.precision)
                provenance[backbone] = extractor.provenance
                patches, _ = deep_patches(volume, mask, settings.sampling, settings.normalisation)
                vectors = extractor.features(patches)
                if patch_features is not None and reader == MAIN_READER:
                    patch_features[f"{backbone}_{phase}"] = vectors
                vector = vectors.mean(0)
                label = _weights_label(extractor.provenance)
                records += [(case.case_id, phase, reader, backbone, f"{backbone}_{i:04d}", float(v), label)
                            for i, v in enumerate(vector)]
    table = pd.DataFrame.from_records(records, columns=FEATURE_COLUMNS)
    registration = [r.as_row(case.case_id) for r in case.registrations]
    return table, registration, provenance


def _run_task(task):
    """Worker entry point: one case, cached. Never raises: a failure comes back as a record."""
    start = time.monotonic()
    case_id = task["case_id"]
    features_path, meta_path = task["cache"] + ".parquet", task["cache"] + ".json"
    try:
        if task.get("threads"):
            _set_threads(task["threads"])
        manifest = Manifest(pd.DataFrame([task["row"]]), task["root"])
        row = manifest.table.iloc[0]
        settings = ExtractionSettings(**task["settings"])
        from .preprocess import load_case
        case = load_case(manifest, row, settings.phases, settings.register,
                         readers=manifest.extra_seg_columns if task["with_readers"] else [])
        per_patch = {}
        table, registration, provenance = extract_case(manifest, row, settings, task["with_readers"], case=case,
                                                       patch_features=per_patch)
        if settings.patches:
            from .sampling import lesion_patches
            patches = lesion_patches(case)
            if settings.sampling == "inside":  # the same patches as the "inside" set: keep their deep features
                patches.update({f"inside_{key}": value for key, value in per_patch.items()})

            def write_patches(path):
                with open(path, "wb") as handle:  # a file object: savez would append .npz to the temporary name
                    np.savez_compressed(handle, **patches)
            _write_atomic(task["cache"] + ".patches.npz", write_patches)
        _write_atomic(features_path, lambda p: table.to_parquet(p, index=False))
        meta = {"case_id": case_id, "registration": registration, "provenance": provenance,
                "seconds": time.monotonic() - start}
        _write_atomic(meta_path, lambda p: _dump_json(meta, p))
        return {"case_id": case_id, "status": "ok", "seconds": meta["seconds"]}
    except InputError as exc:
        return {"case_id": case_id, "status": "failed", "column": exc.column or "", "error": exc.problem,
                "fix": exc.fix or ""}
    except Exception as exc:  # an unexpected failure of one case must not stop the cohort
        last = traceback.format_exc().strip().splitlines()[-1]
        return {"case_id": case_id, "status": "failed", "column": "",
                "error": f"unexpected {type(exc).__name__}: {exc} ({last})",
                "fix": "report this with the case's files if it is not an input problem"}


def _set_threads(threads):
    import SimpleITK as sitk
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    try:
        import torch
        torch.set_num_threads(int(threads))
    except ImportError:
        pass


# -------------------------------------------------------------------------------------------- the cohort

@dataclass
class ExtractionResult:
    out_dir: str
    features: pd.DataFrame
    failures: pd.DataFrame
    computed: list = field(default_factory=list)
    cached: list = field(default_factory=list)
    icc: pd.DataFrame | None = None
    warnings: list = field(default_factory=list)


def _case_tasks(manifest, settings, out_dir):
    """One task per case, with its cache key; a case whose inputs cannot be read fails here already."""
    cache_dir = os.path.join(out_dir, "cache")
    os.makedirs(cache_dir, exist_ok=True)
    settings_key = settings.cache_key_data()
    n = len(manifest)
    icc_count = min(settings.icc_cases, n)
    icc_rows = set(np.linspace(0, n - 1, icc_count).round().astype(int)) if icc_count >= 2 else set()
    columns = list(settings.phases) + ["seg"] + manifest.extra_seg_columns
    tasks, failures = [], []
    for i, (_, row) in enumerate(manifest.table.iterrows()):
        case_id = str(row["case_id"])
        with_readers = i in icc_rows
        inputs = {}
        try:
            for column in columns:
                if column not in row.index or (column.startswith("seg_r") and not with_readers):
                    continue
                path = manifest.resolve(row.get(column))
                if path is None:
                    continue  # load_case names what is missing
                if not reference_exists(path):
                    raise InputError(f"file not found: {path}", case_id, column,
                                     "check the path; paths are relative to the manifest's folder")
                inputs[column] = _sha256_input(path)
        except InputError as exc:
            failures.append({"case_id": case_id, "column": exc.column, "error": exc.problem, "fix": exc.fix})
            continue
        key_data = {"settings": settings_key, "inputs": inputs, "with_readers": with_readers,
                    "seg_label": None if "seg_label" not in row.index or pd.isna(row["seg_label"])
                    else str(row["seg_label"])}
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]
        safe_id = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in case_id)
        tasks.append({"case_id": case_id, "row": {k: (None if pd.isna(v) else v) for k, v in row.items()},
                      "root": manifest.root, "settings": asdict(settings), "with_readers": with_readers,
                      "cache": os.path.join(cache_dir, f"{safe_id}.{key}")})
    return tasks, failures


def _is_cached(task):
    return (os.path.isfile(task["cache"] + ".parquet") and os.path.isfile(task["cache"] + ".json")
            and (not task["settings"]["patches"] or os.path.isfile(task["cache"] + ".patches.npz")))


def _run(tasks, workers, dask_address, threads, on_result):
    if not tasks:
        return
    if dask_address:
        from distributed import Client, as_completed
        with Client(dask_address) as client:
            futures = client.map(_run_task, [dict(t, threads=threads) for t in tasks], pure=False)
            for future in as_completed(futures):
                on_result(future.result())
        return
    if workers <= 1:
        for task in tasks:
            on_result(_run_task(dict(task, threads=threads)))
        return
    # spawn, not fork: a forked child can hang on thread pools (OpenMP, ITK) the parent already started.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = {pool.submit(_run_task, dict(task, threads=threads)) for task in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    on_result(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def extract_cohort(manifest_path, out_dir, settings=None, workers=None, dask_address=None, progress=None):
    """Extract features for every case of a manifest into ``out_dir``; see the module docstring."""
    settings = settings or ExtractionSettings()
    manifest = read_manifest(manifest_path)
    missing = [p for p in settings.phases if p not in manifest.table.columns]
    if missing:
        raise InputError(f"the manifest has no column {', '.join(missing)}", column=missing[0],
                         fix=f"choose phases among {', '.join(manifest.phases) or '(none)'}")
    if settings.radiomics:
        from .radiomics import make_extractor
        make_extractor(settings.radiomics_params, settings.radiomics_engine)  # fail once, clearly, first
    for backbone in settings.deep:
        # Also fetches ImageNet weights once here, not in every worker at the same time.
        _deep_extractor(backbone, settings.weights, "cpu", "float32")
    os.makedirs(out_dir, exist_ok=True)
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, cores))
    threads = settings.threads or max(1, cores // workers)

    tasks, failures = _case_tasks(manifest, settings, out_dir)
    cached = [t for t in tasks if _is_cached(t)]
    todo = [t for t in tasks if not _is_cached(t)]
    total = len(manifest)
    done = len(failures) + len(cached)
    computed = []
    if progress:
        progress(done, total)

    def on_result(result):
        nonlocal done
        done += 1
        if result["status"] == "ok":
            computed.append(result["case_id"])
        else:
            failures.append({k: result[k] for k in FAILURE_COLUMNS})
        if progress:
            progress(done, total)

    _run(todo, workers, dask_address, threads, on_result)
    return _assemble(manifest, manifest_path, out_dir, settings, tasks, failures, computed,
                     [t["case_id"] for t in cached])


def _assemble(manifest, manifest_path, out_dir, settings, tasks, failures, computed, cached):
    from .reproducibility import ICC_FORM, ICC_THRESHOLD, icc_table

    failed = {f["case_id"] for f in failures}
    frames, registration, provenance, patch_index = [], [], {}, []
    for task in tasks:
        if task["case_id"] in failed or not _is_cached(task):
            continue
        frames.append(pd.read_parquet(task["cache"] + ".parquet"))
        with open(task["cache"] + ".json") as handle:
            meta = json.load(handle)
        registration += meta["registration"]
        provenance.update(meta["provenance"])
        if settings.patches:
            patch_index.append({"case_id": task["case_id"],
                                "file": os.path.relpath(task["cache"] + ".patches.npz", out_dir)})
    features = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FEATURE_COLUMNS)
    failures_table = pd.DataFrame(failures, columns=FAILURE_COLUMNS)

    icc = None
    readers = features["reader"].unique() if len(features) else []
    if len(readers) > 1:
        icc = icc_table(features, threshold=ICC_THRESHOLD)
        _write_atomic(os.path.join(out_dir, "icc.csv"), lambda p: icc.to_csv(p, index=False))

    main = features[features["reader"] == MAIN_READER]
    _write_atomic(os.path.join(out_dir, "features.parquet"), lambda p: main.to_parquet(p, index=False))
    _write_atomic(os.path.join(out_dir, "features.csv"), lambda p: main.to_csv(p, index=False))
    if len(readers) > 1:
        others = features[features["reader"] != MAIN_READER]
        _write_atomic(os.path.join(out_dir, "features_other_readers.parquet"),
                      lambda p: others.to_parquet(p, index=False))
    _write_atomic(os.path.join(out_dir, "failures.csv"), lambda p: failures_table.to_csv(p, index=False))
    if settings.patches:
        _write_atomic(os.path.join(out_dir, "patches.csv"),
                      lambda p: pd.DataFrame(patch_index, columns=["case_id", "file"]).to_csv(p, index=False))
    _write_atomic(os.path.join(out_dir, "registration.csv"),
                  lambda p: pd.DataFrame(registration).to_csv(p, index=False))

    warnings = [p["warning"] for p in provenance.values() if p.get("warning")]
    synthetic = is_synthetic(manifest_path)
    summary = {
        "notice": RESEARCH_USE_NOTICE,
        "data": SYNTHETIC_DATA_NOTICE if synthetic else f"manifest {os.path.abspath(manifest_path)}",
        "warnings": warnings,
        "tacepredict_version": __version__,
        "settings": asdict(settings),
        "cases": len(manifest), "succeeded": len(manifest) - len(failures), "failed": len(failures),
        "computed_now": len(computed), "from_cache": len(cached),
        "features_per_case": int(main.groupby("case_id").size().median()) if len(main) else 0,
        "deep_weights": provenance,
        "reproducibility": None if icc is None else {
            "form": ICC_FORM, "threshold": ICC_THRESHOLD,
            "readers": sorted(r for r in readers if r != MAIN_READER),
            "subjects": int(icc["subjects"].max()),
            "features": int(len(icc)), "kept": int(icc["kept"].sum()),
            "kept_by_family": {str(k): int(v) for k, v in icc[icc["kept"]].groupby("family").size().items()},
        },
    }
    _write_atomic(os.path.join(out_dir, "extraction.json"), lambda p: _dump_json(summary, p))
    return ExtractionResult(out_dir, main, failures_table, computed, cached, icc, warnings)


def wide_features(features, phases=None, families=None, kept=None):
    """One row per case, one column per ``phase:family:feature`` (for modelling); ``kept`` is an ICC table
    whose ``kept`` rows restrict the columns."""
    table = features
    if phases is not None:
        table = table[table["phase"].isin(phases)]
    if families is not None:
        table = table[table["family"].isin(families)]
    if kept is not None:
        keep = kept[kept["kept"]][["phase", "family", "feature"]]
        table = table.merge(keep, on=["phase", "family", "feature"])
    names = table["phase"] + ":" + table["family"] + ":" + table["feature"]
    wide = table.assign(name=names).pivot_table(index="case_id", columns="name", values="value", aggfunc="first")
    wide.columns.name = None
    return wide
