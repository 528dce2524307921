"""Cohort feature extraction: radiomics and deep features for every case and phase into one tidy table.

``extract_cohort`` runs every case (in local worker processes, or on a Dask cluster), caches each finished
case under ``OUT/cache`` keyed by the SHA-256 of its input files and of the settings (a re-run recomputes
nothing; changed settings or files recompute; a killed run resumes where it stopped), records each failed
case with its reason in ``failures.csv`` and carries on.

Outputs in OUT: ``features.parquet`` and ``features.csv`` (columns case_id, phase, reader, family, feature,
value, weights), ``failures.csv``, ``registration.csv``, ``icc.csv`` and ``extraction.json``, written as one
unit with ``run.json`` (``outputs.Outputs``): a run that stops (disk full, killed) leaves the previous run's
files as they were, never a mixture. Cache entries are named by ``outputs.file_names`` (unique, also
case-insensitively, for IDs that sanitise alike); an unreadable cache entry is recomputed and reported. A lock
file stops a second run on the same OUT; worker processes end with the run that started them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import sys
import threading
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
from ..outputs import OutputLock, Outputs, file_names, inside, refuse_own_input

# The files one run writes into OUT (run.json lists those of the last run).
OUTPUT_FILES = ("features.parquet", "features.csv", "features_other_readers.parquet", "failures.csv", "patches.csv",
                "registration.csv", "icc.csv", "extraction.json")
# Settings that make two extractions' features differ (a previous OUT with others is replaced only when asked).
RESULT_SETTINGS = ("phases", "register", "radiomics", "radiomics_params", "radiomics_engine", "deep", "weights", "sampling",
                   "normalisation", "patches")
# errno values that stop the whole run (every later case would fail the same way).
_FATAL_ERRNO = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}

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


# -------------------------------------------------------------------------------- workers end with the run

def end_with_parent(parent_pid):
    """Worker initialiser: the worker dies with the process that started it (a killed ``extract`` must not
    leave workers computing, ~0.5 GB each). Linux: the kernel's parent-death signal (prctl PR_SET_PDEATHSIG);
    everywhere: a thread that exits when the parent is gone (checked every second)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch():
        from ..outputs import _alive
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid or not _alive(parent_pid):
                os._exit(1)
    threading.Thread(target=watch, name="tacepredict-parent-watch", daemon=True).start()


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
            set_threads(task["threads"])
        manifest = Manifest(pd.DataFrame([task["row"]]), task["root"])
        row = manifest.table.iloc[0]
        settings = ExtractionSettings(**task["settings"])
        from .preprocess import load_case
        if task.get("patches_only"):  # a cached case whose patch file lacks a newer patch set: add it
            from .sampling import lesion_patches
            path = task["cache"] + ".patches.npz"
            with np.load(path) as stored:
                patches = {k: stored[k] for k in stored.files}
            new = lesion_patches(load_case(manifest, row, settings.phases, settings.register))
            patches.update({k: v for k, v in new.items() if k not in patches})

            def rewrite(target):
                with open(target, "wb") as handle:
                    np.savez_compressed(handle, **patches)
            _write_atomic(path, rewrite)
            return {"case_id": case_id, "status": "ok", "seconds": time.monotonic() - start}
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
    except OSError as exc:
        from ..errors import one_line, os_errno
        code = os_errno(exc)
        if code in _FATAL_ERRNO:  # disk full / read-only: stop the run, every other case would fail too
            return {"case_id": case_id, "status": "fatal", "errno": code, "strerror": os.strerror(code),
                    "filename": exc.filename or task["cache"]}
        return {"case_id": case_id, "status": "failed", "column": "", "error": one_line(exc),
                "fix": "check the case's files and the disk, then run the same command again"}
    except Exception as exc:  # an unexpected failure of one case must not stop the cohort
        last = traceback.format_exc().strip().splitlines()[-1]
        return {"case_id": case_id, "status": "failed", "column": "",
                "error": f"unexpected {type(exc).__name__}: {exc} ({last})",
                "fix": "report this with the case's files if it is not an input problem"}


def set_threads(threads):
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
    names = file_names(manifest.table["case_id"].astype(str))
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
        tasks.append({"case_id": case_id, "row": {k: (None if pd.isna(v) else v) for k, v in row.items()},
                      "root": manifest.root, "settings": asdict(settings), "with_readers": with_readers,
                      "cache": inside(cache_dir, f"{names[case_id]}.{key}")})
    return tasks, failures


def _is_cached(task):
    return (os.path.isfile(task["cache"] + ".parquet") and os.path.isfile(task["cache"] + ".json")
            and (not task["settings"]["patches"] or os.path.isfile(task["cache"] + ".patches.npz")))


_CACHE_SUFFIXES = (".parquet", ".json", ".patches.npz")


def _load_cached(task):
    """A cached case's (features, meta), read completely; raises when any of its files is unreadable or not
    this case's."""
    import zipfile
    with open(task["cache"] + ".json", encoding="utf-8") as handle:
        meta = json.load(handle)
    if not isinstance(meta, dict) or meta.get("case_id") != task["case_id"] or "registration" not in meta:
        raise ValueError("its record belongs to another case or lacks the registration")
    frame = pd.read_parquet(task["cache"] + ".parquet")
    if list(frame.columns) != FEATURE_COLUMNS or (len(frame) and set(frame["case_id"]) != {task["case_id"]}):
        raise ValueError("its feature table has other columns or another case")
    if task["settings"]["patches"]:
        with zipfile.ZipFile(task["cache"] + ".patches.npz") as archive:  # reads the central directory
            if not archive.namelist():
                raise ValueError("its patch file is empty")
    return frame, meta


def _missing_patch_sets(task):
    """The patch sets (``sampling.PATCH_SETS``) that the cached patch file lacks although it holds another set
    of the same phase (an extraction by an older TACEPredict, before the set existed; a case without the
    phase has none of its sets, and is not asked again)."""
    import zipfile

    from .sampling import PATCH_SETS
    if not task["settings"]["patches"]:
        return []
    with zipfile.ZipFile(task["cache"] + ".patches.npz") as archive:
        stored = {name[:-4] for name in archive.namelist() if name.endswith(".npy")}
    present = {PATCH_SETS[name][0] for name in stored if name in PATCH_SETS}
    return [name for name, (phase, _) in PATCH_SETS.items() if phase in present and name not in stored]


def _check_cache(tasks):
    """Split tasks into (cached {case_id: (features, meta)}, to compute, warnings): an entry that cannot be
    read completely is deleted and recomputed, and said so; one whose patch file lacks a newer patch set gets
    that set added (``patches_only``), its features kept."""
    cached, todo, notes = {}, [], []
    for task in tasks:
        if not _is_cached(task):
            todo.append(task)
            continue
        try:
            entry = _load_cached(task)
            if _missing_patch_sets(task):
                todo.append(dict(task, patches_only=True))
                continue
            cached[task["case_id"]] = entry
        except Exception as exc:  # noqa: BLE001 - any damage means: compute again
            for suffix in _CACHE_SUFFIXES:
                try:
                    os.remove(task["cache"] + suffix)
                except FileNotFoundError:
                    pass
            notes.append(f"case {task['case_id']}: its cache entry {os.path.basename(task['cache'])} was unreadable "
                         f"({type(exc).__name__}: {str(exc)[:120]}); computed again")
            todo.append(task)
    return cached, todo, notes


def previous_settings_differ(out_dir, manifest_path, settings):
    """A sentence when ``out_dir`` holds the result of an extraction from another manifest or with settings
    that change feature values (replacing it asks for --overwrite), else None. Device, threads and the ICC
    case count do not count; a rerun that resumes or adds cases is not a replacement."""
    path = os.path.join(out_dir, "extraction.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            before = json.load(handle)
        old = before.get("settings", {})
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: nothing to protect, the run rewrites it
    new = asdict(settings)
    changed = [k for k in RESULT_SETTINGS if k in old and _comparable(old[k]) != _comparable(new[k])]
    if changed:
        return "other settings (" + ", ".join(f"{k} {old[k]!r} -> {new[k]!r}" for k in changed) + ")"
    old_manifest = before.get("manifest")
    if old_manifest and os.path.abspath(old_manifest) != os.path.abspath(manifest_path):
        return f"another manifest ({old_manifest})"
    return None


def _comparable(value):
    return list(value) if isinstance(value, (list, tuple)) else value


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
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=end_with_parent,
                             initargs=(os.getpid(),)) as pool:
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
    for name in OUTPUT_FILES + ("run.json",):
        refuse_own_input(os.path.join(out_dir, name), [manifest_path])
    os.makedirs(out_dir, exist_ok=True)
    with OutputLock(out_dir, f"extract {os.path.abspath(manifest_path)}") as lock:
        result = _extract_locked(manifest, manifest_path, out_dir, settings, workers, dask_address, progress)
    if lock.taken_over:
        held = lock.taken_over
        result.warnings.insert(0, f"a lock left by pid {held.get('pid')} (started {held.get('started')}, no longer "
                                  "running) was taken over")
    return result


def _extract_locked(manifest, manifest_path, out_dir, settings, workers, dask_address, progress):
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
    cached_data, todo, notes = _check_cache(tasks)
    cached = [t for t in tasks if t["case_id"] in cached_data]
    total = len(manifest)
    done = len(failures) + len(cached)
    computed = []
    if progress:
        progress(done, total)

    def on_result(result):
        nonlocal done
        if result["status"] == "fatal":
            raise OSError(result["errno"], result["strerror"], result["filename"])
        done += 1
        if result["status"] == "ok":
            computed.append(result["case_id"])
        else:
            failures.append({k: result[k] for k in FAILURE_COLUMNS})
        if progress:
            progress(done, total)

    _run(todo, workers, dask_address, threads, on_result)
    result = _assemble(manifest, manifest_path, out_dir, settings, tasks, failures, computed,
                       [t["case_id"] for t in cached], cached_data)
    result.warnings[:0] = notes
    return result


def _assemble(manifest, manifest_path, out_dir, settings, tasks, failures, computed, cached, cached_data=None):
    from .reproducibility import ICC_FORM, ICC_THRESHOLD, icc_table

    failed = {f["case_id"] for f in failures}
    cached_data = cached_data or {}
    frames, registration, provenance, patch_index = [], [], {}, []
    for task in tasks:
        if task["case_id"] in failed or not _is_cached(task):
            continue
        if task["case_id"] in cached_data:
            frame, meta = cached_data[task["case_id"]]
        else:
            frame, meta = _load_cached(task)
        frames.append(frame)
        registration += meta["registration"]
        provenance.update(meta["provenance"])
        if settings.patches:
            patch_index.append({"case_id": task["case_id"],
                                "file": os.path.relpath(task["cache"] + ".patches.npz", out_dir)})
    features = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=FEATURE_COLUMNS)
    failures_table = pd.DataFrame(failures, columns=FAILURE_COLUMNS)

    readers = features["reader"].unique() if len(features) else []
    icc = icc_table(features, threshold=ICC_THRESHOLD) if len(readers) > 1 else None
    main = features[features["reader"] == MAIN_READER]
    warnings = [p["warning"] for p in provenance.values() if p.get("warning")]
    synthetic = is_synthetic(manifest_path)
    summary = {
        "notice": RESEARCH_USE_NOTICE,
        "data": SYNTHETIC_DATA_NOTICE if synthetic else f"manifest {os.path.abspath(manifest_path)}",
        "warnings": warnings,
        "tacepredict_version": __version__,
        "settings": asdict(settings),
        "manifest": os.path.abspath(manifest_path),
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
    # One unit: every file is written into a staging folder first; only when all are written do they replace
    # the previous run's (a full disk leaves the previous files as they were).
    with Outputs(out_dir, "extract", known=OUTPUT_FILES) as outputs:
        if icc is not None:
            icc.to_csv(outputs.path("icc.csv"), index=False)
        main.to_parquet(outputs.path("features.parquet"), index=False)
        main.to_csv(outputs.path("features.csv"), index=False)
        if len(readers) > 1:
            features[features["reader"] != MAIN_READER].to_parquet(
                outputs.path("features_other_readers.parquet"), index=False)
        failures_table.to_csv(outputs.path("failures.csv"), index=False)
        if settings.patches:
            pd.DataFrame(patch_index, columns=["case_id", "file"]).to_csv(outputs.path("patches.csv"), index=False)
        pd.DataFrame(registration).to_csv(outputs.path("registration.csv"), index=False)
        _dump_json(summary, outputs.path("extraction.json"))
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


# ------------------------------------------------------------- a model's features against its training record

# Which recorded extraction settings change what a model reads, by what it reads (registry.ModelSpec.needs).
SETTINGS_READ_BY = {"radiomics": ("phases", "register", "radiomics_params"),
                    "deep": ("phases", "register", "weights", "sampling", "normalisation"),
                    "patches": ("phases", "register")}


def _same_setting(key, recorded, used):
    if key == "phases":  # extra phases do no harm: the model reads its own
        return set(recorded or ()) <= set(used or ())
    if key == "radiomics_params":
        from .radiomics import resolve_params
        try:
            return os.path.realpath(resolve_params(recorded)) == os.path.realpath(resolve_params(used))
        except Exception:  # noqa: BLE001 - a preset or file that no longer resolves: compare the names
            return (recorded or "ct") == (used or "ct")
    return recorded == used


def extract_command(record, manifest="MANIFEST", out="FEATURES_FOLDER"):
    """The ``tacepredict extract`` command line that reproduces the extraction settings ``record``."""
    parts = ["tacepredict extract", f"--manifest {manifest}", f"--out {out}"]
    if record.get("phases"):
        parts.append("--phases " + ",".join(record["phases"]))
    if record.get("register"):
        parts.append(f"--register {record['register']}")
    if record.get("radiomics_params"):
        parts.append(f"--radiomics-params {record['radiomics_params']}")
    if "deep" in record:
        parts.append("--deep " + (",".join(record["deep"]) or "none"))
    for key in ("weights", "sampling", "normalisation"):
        if record.get(key):
            parts.append(f"--{key} {record[key]}")
    return " ".join(parts)


def check_features_match(record, features_dir, needs, manifest="MANIFEST"):
    """InputError when the features in ``features_dir`` were extracted with other settings than ``record`` (a
    bundle's ``training.feature_extraction``) in what the model reads (``needs``). Nothing to compare (no
    record, or an extraction folder without ``extraction.json``) passes: older folders and hand-made tables."""
    if not record or not features_dir or not needs:
        return
    path = os.path.join(features_dir, "extraction.json")
    if not os.path.isfile(path):
        return
    try:
        with open(path, encoding="utf-8") as handle:
            used = json.load(handle)["settings"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is damaged ({type(exc).__name__})", column="--features",
                         fix="run `tacepredict extract` into this folder again") from None
    keys = []
    for need in needs:
        keys += [k for k in SETTINGS_READ_BY.get(need, ()) if k not in keys]
    if "radiomics" in needs and used.get("radiomics") is False:
        raise InputError(f"the model reads radiomics, which {features_dir} was extracted without",
                         column="--features", fix=extract_command(record, manifest))
    differ = [k for k in keys if k in record and not _same_setting(k, record[k], used.get(k))]
    if differ:
        what = ", ".join(f"{k}: model {record[k]!r}, features {used.get(k)!r}" for k in differ)
        raise InputError(f"the features in {features_dir} were extracted with other settings than the model was "
                         f"trained on ({what}); its predictions would be wrong", column="--features",
                         fix="extract with the model's settings: " + extract_command(record, manifest))
