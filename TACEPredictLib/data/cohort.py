"""Model inputs from a manifest and an extraction folder: clinical covariates, image features, outcomes.

Everything learned from the training cohort (category levels, imputation values, feature means and SDs) is
kept in plain dicts so that a model bundle stores it as JSON and applies it unchanged to new patients.

Documented handling of imperfect input:
- a covariate missing in more than ``MAX_MISSING_FRACTION`` of the training cases, or constant there, is
  dropped with a warning; other missing values are imputed with the training median (numbers) or the most
  frequent level (categories), with a warning naming the cases; new patients get the same values.
- a case without an outcome is left out of training with a warning naming it; no events, or negative or
  non-numeric times, stop with an error naming the case and the column.
- an unknown category code stops with an error naming the case, the column and the codes the model knows.
- a covariate listed twice, and a text column with more levels than a model can estimate (more than
  ``MAX_LEVELS``, or a distinct value for most cases: free text or an identifier), stop with an error naming
  the column; collinear covariates are named by the Cox fit (``stats.cox.collinear_columns``).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd

from .. import InputError, InputWarning
from .manifest import COLUMNS, is_synthetic, read_manifest
from .outcomes import _cases_text

MAX_MISSING_FRACTION = 0.3
# A categorical covariate becomes one indicator per level but the first: beyond 10 levels, or with a distinct value
# for more than half of the cases (free text, an ID, a date), the indicators cannot be estimated from the events
# (a 140-level column gave hazard ratios of 8e6).
MAX_LEVELS = 10

# Pre-treatment clinical and semantic covariates a survival model may use by default (not outcomes, not
# post-treatment response).
DEFAULT_CLINICAL = ("age", "sex", "bclc", "child_pugh", "ecog", "afp_ng_ml", "alt_u_l", "ast_u_l", "albumin_g_l",
                    "bilirubin_umol_l", "albi_grade", "tumor_size_mm", "tumor_number", "cirrhosis", "hbv", "mvi",
                    "portal_vein_invasion", "fusion_lesion", "capsule", "nodule_in_nodule")
LOG_COLUMNS = {"afp_ng_ml": "log10_afp"}  # skewed labs enter on a log10(x + 1) scale


def _warn(message):
    warnings.warn(message, InputWarning, stacklevel=3)


def _kind(column, values):
    spec = COLUMNS.get(column)
    if spec is not None:
        return "category" if spec.kind == "category" else "number"
    numeric = pd.to_numeric(values, errors="coerce")
    return "number" if numeric.notna().sum() == values.notna().sum() else "category"


class ClinicalEncoder:
    """Turns manifest columns into a numeric design matrix: numbers as they are (log10 for AFP), categories as
    indicator columns against the first level seen in training (``capsule=intact``, ``child_pugh=B``).

    ``dichotomies`` ({column: (operator, threshold, label)}, operator ``">"`` or ``">="``): those number columns
    enter as one 0 / 1 indicator of the value being past the cut-off instead (paper 000's nomograms). Such a
    covariate is never imputed: a missing value is an error naming the case and the column, in training and in
    prediction (which side of a cut-off a patient is on cannot be guessed)."""

    def __init__(self, spec=None, dichotomies=None):
        self.spec = spec or []  # one dict per source column: column, kind, fill, levels, names (+ dichotomy's)
        self.dichotomies = dict(dichotomies or {})

    @property
    def names(self):
        return [name for item in self.spec for name in item["names"]]

    def fit(self, table, columns=DEFAULT_CLINICAL):
        spec = []
        columns = list(columns)
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise InputError(f"the covariate '{twice[0]}' is listed twice", column=twice[0],
                             fix="name each covariate once in --covariates")
        for column in columns:
            if column not in table.columns:
                continue
            values = table[column]
            missing = values.isna()
            if missing.mean() > MAX_MISSING_FRACTION:
                _warn(f"column '{column}' is missing for {missing.sum()} of {len(values)} training cases "
                      f"(> {MAX_MISSING_FRACTION:.0%}): not used as a covariate")
                continue
            kind = _kind(column, values)
            if kind == "number" and column in self.dichotomies:
                item = self._dichotomy(column, values, table["case_id"])
                if item is not None:
                    spec.append(item)
                continue
            if kind == "number":
                numeric = self._numeric(column, values, table["case_id"])
                fill = float(np.nanmedian(numeric))
                if np.nanstd(numeric) == 0:
                    _warn(f"column '{column}' is constant in the training cases: not used as a covariate")
                    continue
                item = {"column": column, "kind": "number", "fill": fill,
                        "names": [LOG_COLUMNS.get(column, column)]}
            else:
                text = values.dropna().astype(str)
                counts = text.value_counts()
                if len(counts) < 2:
                    _warn(f"column '{column}' has a single level in the training cases: not used as a covariate")
                    continue
                codes = COLUMNS[column].codes if column in COLUMNS else ()
                if not codes and (len(counts) > MAX_LEVELS or (len(text) >= 10 and len(counts) > len(text) / 2)):
                    raise InputError(f"has {len(counts)} different values in {len(text)} training cases (e.g. "
                                     f"'{counts.index[0]}', '{counts.index[1]}'): free text or an identifier, not a "
                                     f"category a model can estimate (at most {MAX_LEVELS} levels)", column=column,
                                     fix=f"leave '{column}' out of --covariates, or recode it into a few categories "
                                         "(or numbers, if it is a measurement)")
                levels = [c for c in codes if c in counts.index] or sorted(counts.index)
                fill = str(counts.index[0])
                item = {"column": column, "kind": "category", "fill": fill, "levels": levels,
                        "names": [f"{column}={level}" for level in levels[1:]]}
            if missing.any():
                _warn(f"column '{column}' is missing for case(s) {_cases_text(table.loc[missing, 'case_id'])}: "
                      f"imputed with the training {'median' if kind == 'number' else 'most frequent level'} "
                      f"({item['fill']})")
            spec.append(item)
        self.spec = spec
        return self

    def _dichotomy(self, column, values, case_ids):
        """The spec item of a dichotomised number column, or None (with a warning) when every training case is
        on the same side of the cut-off."""
        operator, threshold, label = self.dichotomies[column]
        item = {"column": column, "kind": "dichotomy", "operator": operator, "threshold": float(threshold),
                "label": label, "fill": None, "names": [f"{column}{operator}{threshold:g}"]}
        indicator = self._indicator(item, values, case_ids)
        if np.all(indicator == indicator[0]):
            _warn(f"column '{column}': every training case has {label} = {'yes' if indicator[0] else 'no'}: "
                  "not used as a covariate")
            return None
        return item

    @classmethod
    def _indicator(cls, item, values, case_ids):
        column = item["column"]
        missing = values.isna().to_numpy()
        if missing.any():
            raise InputError(f"no value, and the model codes it as '{item['label']}' (paper 000's cut-off), which "
                             "is not imputed", case_ids[missing].iloc[0], column,
                             f"give the patient's {column}, leave '{column}' out of --covariates, or train with "
                             "--clinical-coding continuous (imputes the training median)")
        numeric = cls._numeric(column, values, case_ids, log=False)
        past = numeric >= item["threshold"] if item["operator"] == ">=" else numeric > item["threshold"]
        return past.astype(float)

    @staticmethod
    def _numeric(column, values, case_ids, log=True):
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() & values.notna()
        if bad.any():
            case = case_ids[bad].iloc[0]
            raise InputError(f"'{values[bad].iloc[0]}' is not a number", case, column, "give a number")
        numeric = numeric.to_numpy(dtype=float)
        if log and column in LOG_COLUMNS:
            numeric = np.log10(numeric + 1.0)
        return numeric

    def labels(self):
        """{design column: readable label} for the dichotomised covariates (figure axes)."""
        return {item["names"][0]: item["label"] for item in self.spec if item["kind"] == "dichotomy"}

    def transform(self, table, warn=True, names=None):
        """The design matrix; with ``names``, only the source columns those names come from are read (a
        model does not ask for, or warn about, columns it does not use)."""
        columns = {}
        for item in self.spec:
            if names is not None and not set(item["names"]) & set(names):
                continue
            column = item["column"]
            if column not in table.columns:
                raise InputError(f"the model needs the column '{column}', which this manifest lacks", column=column,
                                 fix=f"add '{column}' to the manifest")
            values = table[column]
            if item["kind"] == "dichotomy":
                columns[item["names"][0]] = self._indicator(item, values, table["case_id"])
                continue
            missing = values.isna()
            if missing.any() and warn:
                _warn(f"column '{column}' is missing for case(s) {_cases_text(table.loc[missing, 'case_id'])}: "
                      f"using the training value {item['fill']}")
            if item["kind"] == "number":
                numeric = self._numeric(column, values, table["case_id"])
                fill = item["fill"]
                columns[item["names"][0]] = np.where(np.isnan(numeric), fill, numeric)
            else:
                text = values.astype(object).where(~missing, item["fill"]).astype(str)
                unknown = ~text.isin(item["levels"])
                if unknown.any():
                    case = table.loc[unknown, "case_id"].iloc[0]
                    raise InputError(f"unknown code '{text[unknown].iloc[0]}'", case, column,
                                     f"use one of {', '.join(item['levels'])}")
                for level, name in zip(item["levels"][1:], item["names"]):
                    columns[name] = (text == level).to_numpy(dtype=float)
        return pd.DataFrame(columns, index=table["case_id"].to_numpy())

    def to_dict(self):
        return {"spec": self.spec}

    @classmethod
    def from_dict(cls, data):
        return cls(data["spec"])  # a dichotomy travels in its spec item; bundles without one are unchanged


class Standardiser:
    """Column means and SDs from the training cases; applied unchanged to new cases."""

    def __init__(self, names=(), mean=(), sd=()):
        self.names = list(names)
        self.mean = np.asarray(mean, dtype=float)
        self.sd = np.asarray(sd, dtype=float)

    def fit(self, frame):
        self.names = list(frame.columns)
        self.mean = frame.to_numpy(dtype=float).mean(0)
        sd = frame.to_numpy(dtype=float).std(0, ddof=1)
        self.sd = np.where(sd > 0, sd, 1.0)
        return self

    def transform(self, frame):
        return (frame[self.names].to_numpy(dtype=float) - self.mean) / self.sd

    def to_dict(self):
        return {"names": self.names, "mean": self.mean.tolist(), "sd": self.sd.tolist()}

    @classmethod
    def from_dict(cls, data):
        return cls(data["names"], data["mean"], data["sd"])


class CohortData:
    """A manifest (normalised table) with its optional extraction folder's features, indexed by case."""

    def __init__(self, manifest_path, features_dir=None):
        self.manifest_path = os.path.abspath(manifest_path)
        self.table = read_manifest(manifest_path).table.reset_index(drop=True)
        self.features_dir = os.path.abspath(features_dir) if features_dir else None
        self._features = None
        self._icc = None
        self._patch_files = None
        self._patch_cache = {}  # shared with subsets: each case's patches are read once
        self.synthetic = is_synthetic(self.manifest_path)

    def subset(self, table):
        other = object.__new__(CohortData)
        other.__dict__.update(self.__dict__)
        other.table = table.reset_index(drop=True)
        return other

    @property
    def case_ids(self):
        return list(self.table["case_id"])

    def _long_features(self):
        if self._features is None:
            if self.features_dir is None:
                raise InputError("this model needs image features", column="--features",
                                 fix="give --features with the folder `tacepredict extract` wrote")
            path = os.path.join(self.features_dir, "features.parquet")
            if not os.path.isfile(path):
                raise InputError(f"no features.parquet in {self.features_dir}", column="--features",
                                 fix="run `tacepredict extract --manifest ... --out` on this manifest first")
            from ..outputs import check_run
            mixed = check_run(self.features_dir, names=("features.parquet", "icc.csv", "patches.csv"))
            if mixed:
                raise InputError(f"the extraction folder {self.features_dir} is not one run's result: {mixed}",
                                 column="--features", fix="run the same `tacepredict extract` command again")
            try:
                self._features = pd.read_parquet(path)
            except Exception as exc:  # noqa: BLE001 - pyarrow's errors: a damaged file
                raise InputError(f"{path} is damaged ({type(exc).__name__})", column="--features",
                                 fix="run the same `tacepredict extract` command again") from None
            icc = os.path.join(self.features_dir, "icc.csv")
            self._icc = pd.read_csv(icc) if os.path.isfile(icc) else None
        return self._features

    def icc(self):
        self._long_features()
        return self._icc

    def patches(self, name):
        """The extraction's patch set ``name`` (``sampling.PATCH_SETS``) of each case, in case order: a list of
        (N, 1, H, W) int16 HU arrays."""
        if self.features_dir is None:
            raise InputError("this model needs the lesion patches of an extraction", column="--features",
                             fix="give --features with the folder `tacepredict extract` wrote")
        index_path = os.path.join(self.features_dir, "patches.csv")
        if not os.path.isfile(index_path):
            raise InputError(f"no patches.csv in {self.features_dir}: it was extracted without lesion patches",
                             column="--features", fix="re-run `tacepredict extract` with this TACEPredict")
        if self._patch_files is None:
            index = pd.read_csv(index_path)
            self._patch_files = dict(zip(index["case_id"].astype(str), index["file"]))
        out = []
        for case_id in self.case_ids:
            if case_id not in self._patch_files:
                raise InputError(f"no lesion patches for this case in {self.features_dir}", case_id, "--features",
                                 "extract the case (see failures.csv in the extraction folder)")
            if case_id not in self._patch_cache:
                from ..outputs import inside
                path = inside(self.features_dir, self._patch_files[case_id])
                try:
                    with np.load(path) as stored:
                        self._patch_cache[case_id] = {k: stored[k] for k in stored.files}
                except (OSError, ValueError, EOFError, __import__("zipfile").BadZipFile) as exc:
                    raise InputError(f"the lesion patches {path} are missing or damaged ({type(exc).__name__})",
                                     case_id, "--features", "run the same `tacepredict extract` command again "
                                     "(a damaged cache entry is recomputed)") from None
            stored = self._patch_cache[case_id]
            if name not in stored:
                from ..imaging.sampling import PATCH_SETS
                phase = PATCH_SETS.get(name, (None,))[0]
                if phase and any(PATCH_SETS[k][0] == phase for k in stored if k in PATCH_SETS):
                    # the phase is there: the extraction predates this patch set
                    raise InputError(f"the extraction has no '{name}' patches: it was made by an older TACEPredict",
                                     case_id, "--features", "run the same `tacepredict extract` command again "
                                     "(it adds the patch set to the cached cases without recomputing features)")
                raise InputError(f"the case has no '{name}' patches (its phase is missing)", case_id, "--features",
                                 "give the case the phase that patch set needs (sampling.PATCH_SETS)")
            out.append(stored[name])
        return out

    def features(self, phases, family, names=None, icc_filter=False):
        """Wide feature matrix (cases x ``phase:family:feature``) of this cohort's cases, in case order."""
        from ..imaging.extraction import wide_features
        long = self._long_features()
        kept = self._icc if icc_filter and self._icc is not None else None
        long = long[long["case_id"].isin(self.case_ids)]
        available = set(long["family"].unique())
        if family not in available:
            raise InputError(f"the features in {self.features_dir} have no '{family}' family "
                             f"(they have: {', '.join(sorted(available)) or 'none'})", column="--features",
                             fix=f"extract with `tacepredict extract --deep {family}`" if family != "radiomics"
                             else "extract without --no-radiomics")
        wide = wide_features(long, phases=phases, families=[family], kept=kept)
        missing = [c for c in self.case_ids if c not in wide.index]
        if missing:
            raise InputError(f"no {family} features for this case in {self.features_dir}", missing[0], "--features",
                             "extract the case (see failures.csv in the extraction folder)")
        wide = wide.loc[self.case_ids]
        if names is not None:
            absent = [n for n in names if n not in wide.columns]
            if absent:
                raise InputError(f"the features lack '{absent[0]}' that the model uses", column="--features",
                                 fix="extract with the settings the model was trained with (see its model.json)")
            wide = wide[names]
        bad = ~np.isfinite(wide.to_numpy(dtype=float))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise InputError(f"feature '{wide.columns[col]}' is missing or not finite", wide.index[row], "--features",
                             "re-extract this case")
        return wide
