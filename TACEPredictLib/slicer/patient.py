"""One patient's predictions from in-memory images and a clinical record.

This is what the Slicer module's Apply and the headless cohort script run: the images (SimpleITK, one per
phase) and the tumour mask are written into a one-case working folder with a one-row manifest, so that the
patient goes through exactly the checks and preprocessing the training cohort went through. Features are
extracted on demand, only the families the chosen models read, with the settings each model's bundle
recorded.
"""

from __future__ import annotations

import os
import time as clock

import numpy as np
import pandas as pd

from .. import InputError, RESEARCH_USE_NOTICE
from ..data.cohort import CohortData
from ..data.manifest import EXTRA_SEG_PATTERN, IMAGE_COLUMNS, read_manifest
from ..errors import one_line
from ..models.overall_survival import CURVE_YEARS, DAYS_PER_YEAR

RESULT_COLUMNS = ["case_id", "task", "model", "score", "probability", "probability_of", "risk_group", "cutoff",
                  "provenance", "notice", "error"]


def write_case(folder, case_id, phases, mask, clinical=None):
    """Write one patient as a one-row manifest in ``folder``; returns the manifest path.

    ``phases``: {"ct_ap": image, "ct_pvp": image, ...} (SimpleITK images in HU); ``mask``: a SimpleITK image
    (non-zero = tumour) on the grid of one of the phases; ``clinical``: {manifest column: value}.
    """
    import SimpleITK as sitk
    os.makedirs(folder, exist_ok=True)
    row = {"case_id": case_id}
    for column, image in phases.items():
        if column not in IMAGE_COLUMNS:
            raise InputError(f"unknown phase '{column}'", case_id, column, "use " + ", ".join(IMAGE_COLUMNS))
        if image is None:
            continue
        sitk.WriteImage(image, os.path.join(folder, f"{column}.nrrd"), useCompression=False)
        row[column] = f"{column}.nrrd"
    if not any(c in row for c in IMAGE_COLUMNS):
        raise InputError("no CT volume given", case_id, "ct_ap", "choose at least the arterial-phase CT")
    if mask is None:
        raise InputError("no tumour segmentation given", case_id, "seg", "choose a segmentation and its segment")
    binary = sitk.Cast(sitk.NotEqual(mask, 0), sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(binary).any():
        raise InputError("the tumour segment is empty", case_id, "seg", "choose a segment that contains the tumour")
    sitk.WriteImage(binary, os.path.join(folder, "seg.nrrd"), useCompression=True)
    row["seg"] = "seg.nrrd"
    for column, value in (clinical or {}).items():
        if column in row or column in IMAGE_COLUMNS or column in ("seg", "seg_label") or \
                EXTRA_SEG_PATTERN.match(column):
            continue  # the images and the mask written above replace the record's own
        row[column] = "" if value is None or (isinstance(value, float) and np.isnan(value)) else value
    path = os.path.join(folder, "manifest.csv")
    pd.DataFrame([row]).to_csv(path, index=False)
    return path


class PatientData(CohortData):
    """A one-case cohort whose features are extracted when a model first asks for a family."""

    def __init__(self, manifest_path, device="auto"):
        super().__init__(manifest_path, features_dir=None)
        self.manifest = read_manifest(manifest_path)
        self.device = device
        self._features = pd.DataFrame(columns=["case_id", "phase", "reader", "family", "feature", "value", "weights"])
        self._icc = None
        self._extracted = {}  # family -> extraction settings used
        self._cases = {}  # (phases, register) -> CaseImages
        # The feature-extraction settings of the model being predicted (its bundle's), set per model.
        self.extraction_settings = None
        self.timings = {}

    def _long_features(self):
        return self._features

    def case(self, phases, register):
        """The case's images, loaded (cropped, registered) once per phases and registration."""
        from ..imaging.preprocess import load_case
        key = (tuple(phases), register)
        if key not in self._cases:
            start = clock.perf_counter()
            self._cases[key] = load_case(self.manifest, self.manifest.table.iloc[0], list(phases), register)
            self.timings["load and register"] = self.timings.get("load and register", 0) + clock.perf_counter() - start
        return self._cases[key]

    def extract(self, family, settings=None, names=None):
        """Extract one family ("radiomics" or a backbone) with ``settings`` (a bundle's feature_extraction);
        ``names`` (``phase:family:feature``): only these radiomics features are computed."""
        from ..imaging.extraction import ExtractionSettings, extract_case
        settings = dict(settings or {})
        wanted = None  # (phase, feature) pairs
        if family == "radiomics" and names is not None:
            wanted = {(name.split(":", 2)[0], name.split(":", 2)[2]) for name in names}
        if family in self._extracted:
            if any(self._extracted[family].get(k) != v for k, v in settings.items() if k != "deep"):
                raise InputError(f"two models need {family} features extracted with different settings",
                                 self.case_ids[0], "model", "use models trained on the same extraction")
            done = self._features[self._features["family"] == family]
            have = set(zip(done["phase"], done["feature"]))
            if wanted is None or wanted <= have:
                return
            self._features = self._features[self._features["family"] != family]  # extract the union again
            wanted |= have
        per_phase = None if wanted is None else \
            {phase: sorted(f for p, f in wanted if p == phase) for phase in {p for p, _ in wanted}}
        keep = {k: settings[k] for k in ("phases", "register", "radiomics_params", "weights", "sampling",
                                         "normalisation") if settings.get(k) is not None}
        if "phases" in keep:
            keep["phases"] = tuple(keep["phases"])
        deep = () if family == "radiomics" else (family,)
        extraction = ExtractionSettings(radiomics=family == "radiomics", deep=deep, device=self.device, **keep)
        available = [p for p in extraction.phases if p in self.manifest.phases]
        if len(available) < len(extraction.phases):
            missing = [p for p in extraction.phases if p not in available][0]
            raise InputError(f"the model needs the {missing} phase", self.case_ids[0], missing,
                             "choose that CT volume")
        case = self.case(extraction.phases, extraction.register)
        start = clock.perf_counter()
        table, _, _ = extract_case(self.manifest, self.manifest.table.iloc[0], extraction, case=case,
                                   radiomics_names=per_phase)
        self.timings[f"extract {family}"] = clock.perf_counter() - start
        self._features = pd.concat([self._features, table], ignore_index=True) if len(self._features) else table
        self._extracted[family] = settings

    def features(self, phases, family, names=None, icc_filter=False):
        self.extract(family, self.extraction_settings, names)
        return super().features(phases, family, names=names, icc_filter=False)

    def patches(self, name):
        """The case's lesion patch set ``name`` (``sampling.PATCH_SETS``), cut from its loaded images as the
        extraction does (with the model's phases and registration)."""
        from ..imaging.sampling import PATCH_SETS, lesion_patches
        case_id = self.case_ids[0]
        if case_id not in self._patch_cache:
            settings = self.extraction_settings or {}
            phases = [p for p in settings.get("phases", ("ct_ap", "ct_pvp")) if p in self.manifest.phases]
            start = clock.perf_counter()
            self._patch_cache[case_id] = lesion_patches(self.case(phases, settings.get("register", "rigid")))
            self.timings["lesion patches"] = clock.perf_counter() - start
        stored = self._patch_cache[case_id]
        if name not in stored:
            phase = next((PATCH_SETS[k][0] for k in PATCH_SETS if name == k or name.startswith(k + "_")), None)
            raise InputError(f"the model needs the '{name}' patches, whose phase the case lacks", case_id, phase,
                             f"choose the {phase} CT volume")
        return [stored[name]]

    def feature_table(self):
        """Extracted features, one row per feature and one column per phase."""
        if not len(self._features):
            return pd.DataFrame(columns=["family", "feature"])
        wide = self._features.pivot_table(index=["family", "feature"], columns="phase", values="value",
                                          aggfunc="first")
        return wide.reset_index().rename_axis(columns=None)


def _survival_rows(model, data):
    predictions = model.predict(data)
    row = predictions.iloc[0]
    result = {"score": row["risk_score"], "probability": row["surv_3y"], "probability_of": "3-year survival",
              "risk_group": row["risk_group"], "cutoff": row["cutoff"]}
    days = CURVE_YEARS * DAYS_PER_YEAR
    curve = np.asarray(model.survival_days(data, days))[0]
    return result, pd.DataFrame({"years": CURVE_YEARS, "survival": curve})


def predict_patient(manifest_path, bundles=(), builtin=(("aggressive-pd", "clinical-semantic"),), device="auto"):
    """Every model in ``bundles`` (folders) and ``builtin`` on the one case of ``manifest_path``.

    Returns a dict: ``results`` (one row per model, RESULT_COLUMNS; a model that cannot run gets its error in
    ``error`` and the others still run), ``curves`` ({model label: survival curve table} for survival
    models), ``km`` ({model label: training Kaplan-Meier by risk group} where the bundle has it),
    ``features`` (wide feature table), ``timings`` (seconds per step), ``data`` (the PatientData), ``models``
    ([(model, bundle info or None)]).
    """
    from .. import models
    data = PatientData(manifest_path, device=device)
    case_id = data.case_ids[0]
    rows, curves, km, loaded = [], {}, {}, []
    for folder in bundles:
        try:
            model, info = models.load(folder)
            loaded.append((model, info, folder))
        except Exception as exc:  # noqa: BLE001 - one bad bundle must not stop the others
            rows.append({"case_id": case_id, "model": os.path.basename(os.path.normpath(str(folder))),
                         "error": one_line(exc)})
    for key in builtin:
        loaded.append((models.built_in(*key), None, None))
    for model, info, folder in loaded:
        start = clock.perf_counter()
        row = {"case_id": case_id, "task": model.task, "model": model.label, "provenance": model.provenance,
               "notice": model.notice}
        try:
            data.extraction_settings = (info or {}).get("training", {}).get("feature_extraction")
            if model.task == "survival":
                result, curve = _survival_rows(model, data)
                row.update(result)
                curves[model.label] = curve
                if info and "risk_group_km" in info.get("metrics", {}):
                    km[model.label] = pd.DataFrame(info["metrics"]["risk_group_km"])
            else:
                prediction = model.predict(data).iloc[0]
                row.update({k: prediction[k] for k in ("score", "probability", "risk_group", "cutoff")},
                           probability_of=models.TASKS[model.task].probability_of)
        except Exception as exc:  # noqa: BLE001 - recorded per model, the others still run
            row["error"] = one_line(exc)
        data.timings[f"predict {model.label}"] = clock.perf_counter() - start
        rows.append(row)
    results = pd.DataFrame(rows).reindex(columns=RESULT_COLUMNS)
    results["notice"] = results["notice"].fillna(RESEARCH_USE_NOTICE)
    results["error"] = results["error"].fillna("")
    return {"results": results, "curves": curves, "km": km, "features": data.feature_table(),
            "timings": data.timings, "data": data, "models": [(m, i) for m, i, _ in loaded]}
