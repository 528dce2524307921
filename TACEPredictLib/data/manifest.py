"""The cohort manifest: one CSV row per patient, the contract every TACEPredict command reads.

``COLUMNS`` documents every known column (name, unit, codes, plausible range). ``validate_manifest`` checks a
manifest and returns one ``Problem`` per thing that is wrong; ``read_manifest`` returns the table with codes
normalised (``sex`` M/F, ``capsule`` absent/non-intact/intact, binary columns 0/1, ...). Unknown columns are
kept unchanged and can be used as covariates.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import InputError
from . import images as imageio

IMAGE_COLUMNS = ("ct_ap", "ct_pvp", "ct_dp")
PHASE_NAMES = {"ct_ap": "arterial", "ct_pvp": "portal venous", "ct_dp": "delayed"}
EXTRA_SEG_PATTERN = re.compile(r"^seg_r\d+$")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id, path, label, number, integer, category, binary
    description: str
    unit: str = ""
    codes: tuple = ()
    low: float | None = None  # plausible range (inclusive); outside it is an error
    high: float | None = None


COLUMNS = {c.name: c for c in [
    Column("case_id", "id", "unique patient / case identifier"),
    Column("ct_ap", "path", "arterial-phase CT: image file, DICOM folder, or DICOM folder#series choice "
                            "(#uid=, #number=, #description=, &acquisition=; docs/dicom.md)"),
    Column("ct_pvp", "path", "portal-venous-phase CT: image file, DICOM folder, or DICOM folder#series choice"),
    Column("ct_dp", "path", "delayed-phase CT: image file, DICOM folder, or DICOM folder#series choice"),
    Column("seg", "path", "tumour segmentation: labelmap file, Slicer .seg.nrrd, DICOM SEG or RTSTRUCT (file or "
                          "its folder)"),
    Column("seg_label", "label", "label value or segment name of the target lesion (default: only or largest); "
                                 "DICOM SEG: segment number or label; RTSTRUCT: ROI number or name"),
    Column("age", "number", "age at TACE", "years", low=10, high=110),
    Column("sex", "category", "sex", codes=("M", "F")),
    Column("bclc", "category", "BCLC stage", codes=("0", "A", "B", "C", "D")),
    Column("child_pugh", "category", "Child-Pugh class", codes=("A", "B", "C")),
    Column("child_pugh_score", "integer", "Child-Pugh score (A 5-6, B 7-9, C 10-15)", low=5, high=15),
    Column("ecog", "integer", "ECOG performance status", low=0, high=4),
    Column("afp_ng_ml", "number", "serum alpha-fetoprotein", "ng/mL", low=0, high=1e7),
    Column("alt_u_l", "number", "alanine aminotransferase", "U/L", low=0, high=10000),
    Column("ast_u_l", "number", "aspartate aminotransferase", "U/L", low=0, high=10000),
    Column("albumin_g_l", "number", "serum albumin", "g/L", low=10, high=70),
    Column("bilirubin_umol_l", "number", "total bilirubin", "umol/L", low=2, high=1000),
    Column("albi_grade", "category", "ALBI grade", codes=("1", "2", "3")),
    Column("tumor_size_mm", "number", "largest diameter of the target lesion", "mm", low=5, high=300),
    Column("tumor_number", "integer", "number of tumours", low=1, high=100),
    Column("cirrhosis", "binary", "liver cirrhosis (1 = yes)"),
    Column("hbv", "binary", "hepatitis B infection (1 = yes)"),
    Column("mvi", "binary", "microvascular invasion (1 = yes)"),
    Column("portal_vein_invasion", "binary", "portal vein tumour invasion / thrombus (1 = yes)"),
    Column("fusion_lesion", "binary", "fusion (confluent multinodular) lesion (1 = yes)"),
    Column("capsule", "category", "tumour capsule on CT", codes=("absent", "non-intact", "intact")),
    Column("nodule_in_nodule", "binary", "nodule-in-nodule architecture (1 = yes)"),
    Column("os_days", "number", "overall survival time from TACE", "days", low=0, high=36500),
    Column("os_event", "binary", "death observed (1) or censored (0)"),
    Column("ttp_days", "number", "time to progression from TACE", "days", low=0, high=36500),
    Column("progression_event", "binary", "progression observed (1) or censored (0)"),
    Column("response", "category", "mRECIST response after TACE", codes=("CR", "PR", "SD", "PD")),
    Column("aggressive_pd", "binary", "aggressive progression: extrahepatic metastasis or macrovascular "
                                      "invasion (1 = yes)"),
    Column("aggressive_pd_days", "number", "time to aggressive progression or censoring", "days", low=0,
           high=36500),
]}

# The patient record a clinician fills in (the Slicer module's clinical form): every column between the images
# and the outcomes.
CLINICAL_COLUMNS = tuple(name for name in list(COLUMNS)[list(COLUMNS).index("age"):list(COLUMNS).index("os_days")])

# Time / event pairs: one without the other is an error.
CHILD_PUGH_CLASS_SCORES = {"A": (5, 6), "B": (7, 8, 9), "C": tuple(range(10, 16))}

OUTCOME_PAIRS = (("os_days", "os_event"), ("ttp_days", "progression_event"),
                 ("aggressive_pd_days", "aggressive_pd"))

_SYNONYMS = {
    "sex": {"m": "M", "male": "M", "f": "F", "female": "F"},
    "capsule": {"absent": "absent", "none": "absent", "no": "absent", "0": "absent",
                "non-intact": "non-intact", "nonintact": "non-intact", "non_intact": "non-intact",
                "incomplete": "non-intact", "partial": "non-intact", "1": "non-intact",
                "intact": "intact", "complete": "intact", "2": "intact"},
    "albi_grade": {"1": "1", "2": "2", "2a": "2", "2b": "2", "3": "3"},
}
_BINARY = {"0": 0, "1": 1, "no": 0, "yes": 1, "n": 0, "y": 1, "false": 0, "true": 1}


@dataclass
class Problem:
    severity: str  # "error" or "warning"
    case_id: str | None
    column: str | None
    message: str
    fix: str = ""

    def __str__(self):
        where = []
        if self.case_id is not None:
            where.append(f"case {self.case_id}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        text = f"{self.severity.upper()}: {', '.join(where) or 'manifest'}: {self.message}"
        return text + (f" -> {self.fix}" if self.fix else "")


def _is_missing(value):
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def _code_text(value):
    """'1.0' -> '1' so that numeric codes read from CSV compare as text."""
    text = str(value).strip()
    try:
        number = float(text)
        if number.is_integer():
            return str(int(number))
    except ValueError:
        pass
    return text


def normalise_value(column, value):
    """The canonical form of one cell; raises ValueError with a fix hint when it is not valid."""
    spec = COLUMNS[column]
    if _is_missing(value):
        return np.nan
    if spec.kind == "binary":
        key = _code_text(value).lower()
        if key not in _BINARY:
            raise ValueError(f"'{value}' is not a 0/1 value", "use 0 or 1 (yes/no and true/false are read too)")
        return _BINARY[key]
    if spec.kind == "category":
        text = _code_text(value)
        synonyms = _SYNONYMS.get(column, {})
        if text.lower() in synonyms:
            return synonyms[text.lower()]
        upper = text.upper()
        if column == "bclc":
            upper = re.sub(r"^(BCLC|STAGE)[\s_-]*", "", upper)
        if column == "child_pugh" and re.fullmatch(r"[ABC]\d{1,2}", upper):
            upper = upper[0]  # A5, B7, ... -> the class
        if upper in spec.codes:
            return upper
        raise ValueError(f"'{value}' is not a valid code", f"use one of {'/'.join(spec.codes)}")
    if spec.kind in ("number", "integer"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"'{value}' is not a number", f"give a number in {spec.unit or 'the documented unit'}")
        if not np.isfinite(number):
            raise ValueError(f"'{value}' is not a finite number", "leave the cell empty when it is unknown")
        if spec.kind == "integer" and not float(number).is_integer():
            raise ValueError(f"'{value}' is not a whole number", "give a whole number")
        return number
    return str(value).strip()


def _unit_hint(column, value):
    """A fix hint for an out-of-range value that looks like a unit mix-up, or None."""
    if column == "tumor_size_mm" and 0 < value < 5:
        return f"{value:g} looks like cm, not mm: multiply by 10"
    if column == "albumin_g_l" and 0 < value < 10:
        return f"{value:g} looks like g/dL, not g/L: multiply by 10"
    if column == "bilirubin_umol_l" and 0 < value < 2:
        return f"{value:g} looks like mg/dL, not umol/L: multiply by 17.1"
    if column in ("os_days", "ttp_days", "aggressive_pd_days") and value < 0:
        return "times are days from TACE and cannot be negative"
    return None


def plausible_value(column, value):
    """``normalise_value``, with a number outside the column's plausible range refused too: raises ValueError
    (message, fix), the fix naming a likely unit mix-up."""
    canonical = normalise_value(column, value)
    spec = COLUMNS[column]
    if isinstance(canonical, float) and not np.isnan(canonical) and spec.low is not None \
            and not spec.low <= canonical <= spec.high:
        fix = _unit_hint(column, canonical) or f"check the value and its unit ({spec.unit or 'see the README'})"
        raise ValueError(f"{canonical:g} {spec.unit} is outside the plausible range {spec.low:g}..{spec.high:g}"
                         .replace("  ", " "), fix)
    return canonical


def plausible_values(column, case_ids, values):
    """``plausible_value`` of each cell of a column: ``(values, errors)``, NaN in place of an invalid value and
    one ``(case_id, message, fix)`` for it in ``errors``, in the column's order."""
    out, errors = [], []
    for case_id, value in zip(case_ids, values):
        try:
            out.append(plausible_value(column, value))
        except ValueError as exc:
            errors.append((case_id, *exc.args))
            out.append(np.nan)
    return out, errors


def check_table(table):
    """Table-level checks (no image loading). Returns (normalised table, problems)."""
    problems = []
    if "case_id" not in table.columns:
        return table, [Problem("error", None, "case_id", "the manifest has no 'case_id' column",
                               "add a 'case_id' column with one unique ID per patient")]
    if len(table) == 0:
        return table, [Problem("error", None, None, "the manifest has no rows", "add one row per patient")]
    table = table.copy()
    ids = table["case_id"].map(lambda v: "" if _is_missing(v) else _code_text(v))
    table["case_id"] = ids
    for row, case_id in enumerate(ids):
        if case_id == "":
            problems.append(Problem("error", f"row {row + 2}", "case_id", "empty case ID",
                                    "give every row a unique case_id"))
    for case_id in sorted(set(ids[ids.duplicated()]) - {""}):
        problems.append(Problem("error", case_id, "case_id", "duplicate case ID", "make every case_id unique"))

    for column in table.columns:
        spec = COLUMNS.get(column)
        if spec is None or spec.kind in ("id", "path", "label"):
            continue
        values, errors = plausible_values(column, ids, table[column])
        problems += [Problem("error", case_id, column, message, fix) for case_id, message, fix in errors]
        table[column] = values

    if "tumor_size_mm" in table.columns:
        sizes = pd.to_numeric(table["tumor_size_mm"], errors="coerce").dropna()
        if len(sizes) >= 5 and sizes.median() < 15 and sizes.max() < 30:
            problems.append(Problem("error", None, "tumor_size_mm",
                                    f"median {sizes.median():g} and maximum {sizes.max():g}: the whole column "
                                    "looks like cm, not mm", "multiply the column by 10"))

    if "child_pugh_score" in table.columns and "child_pugh" in table.columns:
        reported = {(p.case_id, p.column) for p in problems}
        for case_id, score, klass in zip(ids, table["child_pugh_score"], table["child_pugh"]):
            if _is_missing(score) or _is_missing(klass) or (case_id, "child_pugh_score") in reported:
                continue
            if int(score) not in CHILD_PUGH_CLASS_SCORES.get(klass, ()):
                problems.append(Problem("error", case_id, "child_pugh_score",
                                        f"Child-Pugh score {int(score)} does not belong to class {klass}",
                                        "class A is 5-6 points, B 7-9, C 10-15: correct one of the two"))

    for time_col, event_col in OUTCOME_PAIRS:
        has_time, has_event = time_col in table.columns, event_col in table.columns
        if has_time != has_event:
            present, absent = (time_col, event_col) if has_time else (event_col, time_col)
            problems.append(Problem("error", None, absent, f"'{present}' is given but '{absent}' is missing",
                                    f"add '{absent}' (time in days and event 0/1 go together)"))
            continue
        if not has_time:
            continue
        reported = {(p.case_id, p.column) for p in problems}
        for case_id, t, e in zip(ids, table[time_col], table[event_col]):
            if (case_id, time_col) in reported or (case_id, event_col) in reported:
                continue  # an invalid cell was reported already
            if _is_missing(t) != _is_missing(e):
                missing = time_col if _is_missing(t) else event_col
                problems.append(Problem("error", case_id, missing, "empty while its pair is filled",
                                        f"fill both '{time_col}' and '{event_col}' or neither"))

    has_images = [c for c in IMAGE_COLUMNS if c in table.columns]
    for _, row in table.iterrows():
        phases = [c for c in has_images if not _is_missing(row[c])]
        seg = row.get("seg") if "seg" in table.columns else None
        if phases and _is_missing(seg):
            problems.append(Problem("error", row["case_id"], "seg", "CT given but no tumour segmentation",
                                    "add the segmentation file in 'seg'"))
        if not _is_missing(seg) and not phases:
            problems.append(Problem("error", row["case_id"], "ct_ap",
                                    "segmentation given but no CT phase (ct_ap, ct_pvp or ct_dp)",
                                    "add at least one CT phase"))
    return table, problems


class Manifest:
    """A validated manifest: ``table`` holds normalised values; paths resolve against the manifest folder."""

    def __init__(self, table, root):
        self.table = table
        self.root = root

    def __len__(self):
        return len(self.table)

    @property
    def case_ids(self):
        return list(self.table["case_id"])

    @property
    def phases(self):
        return [c for c in IMAGE_COLUMNS if c in self.table.columns and self.table[c].notna().any()]

    @property
    def extra_seg_columns(self):
        return sorted((c for c in self.table.columns if EXTRA_SEG_PATTERN.match(c)),
                      key=lambda c: int(c[5:]))

    def resolve(self, value):
        if _is_missing(value):
            return None
        path = os.path.expanduser(str(value).strip())
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.root, path))

    def row(self, case_id):
        match = self.table[self.table["case_id"] == str(case_id)]
        if match.empty:
            raise InputError("no such case in the manifest", case_id, "case_id")
        return match.iloc[0]


def is_synthetic(manifest_path):
    """True for a manifest of the synthetic demo cohort (``tacepredict phantom`` writes cohort.json beside it)."""
    return os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(manifest_path)), "cohort.json"))


def _header_name(name):
    """A header as the manifest reads it: stray spaces removed; a known column (or seg_rN) in any capitals and
    with spaces or hyphens for underscores takes its documented name (``' Age'`` -> ``age``, ``Case ID`` ->
    ``case_id``); other columns keep their capitals."""
    text = str(name).strip()
    key = re.sub(r"[\s\-]+", "_", text).lower()
    if key in COLUMNS or EXTRA_SEG_PATTERN.match(key):
        return key
    return text


# Delimiters a manifest may use: comma (the documented one), semicolon (European Excel's "CSV", whose numbers
# have decimal commas) and tab.
_DELIMITERS = (",", ";", "\t")
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+\s*$")


def _read_csv(path):
    """The manifest's table (every cell text, empty cells NA), with ``table.attrs["notes"]``: what was read in
    a non-standard way. Reads comma-, semicolon- (decimal commas become points) and tab-separated files;
    refuses an Excel workbook, duplicate columns and an empty file with what to do."""
    if not os.path.isfile(path):
        raise InputError(f"manifest not found: {path}", fix="give the path of the cohort manifest CSV")
    with open(path, "rb") as handle:
        start = handle.read(8)
    if start.startswith(b"PK\x03\x04") or start.startswith(b"\xd0\xcf\x11\xe0"):
        raise InputError(f"{path} is an Excel workbook ({'.xlsx' if start.startswith(b'PK') else '.xls'}) with a "
                         ".csv name, not a CSV file", fix="in Excel: File > Save As > 'CSV UTF-8 (comma delimited)'")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text", fix="save the manifest as UTF-8 CSV "
                                                          "(in Excel: 'CSV UTF-8')") from None
    if not first.strip():
        raise InputError(f"{path} is empty or starts with an empty line", fix="the first line must be the "
                                                                                "column names, starting with case_id")
    import csv
    headers = {d: next(csv.reader([first], delimiter=d)) for d in _DELIMITERS}
    known = {d: sum(_header_name(h) in COLUMNS for h in cells) for d, cells in headers.items()}
    delimiter = max(_DELIMITERS, key=lambda d: (known[d], len(headers[d]), d == ","))
    names = [_header_name(h) for h in headers[delimiter]]
    notes = []
    seen = {}
    for position, name in enumerate(names, 1):
        if name == "":
            raise InputError(f"column {position} of {path} has no name", fix="name every column, or delete the "
                                                                              "empty column")
        if name in seen:
            raise InputError(f"{path} has the column '{name}' twice (columns {seen[name]} and {position})",
                             column=name, fix="keep one of them (rename the other if it is another quantity)")
        seen[name] = position
    renamed = [(raw, name) for raw, name in zip(headers[delimiter], names) if raw != name]
    if renamed:
        notes.append("column names read as " + ", ".join(f"'{raw}' -> '{name}'" for raw, name in renamed))
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            for line, cells in enumerate(csv.reader(handle, delimiter=delimiter), 1):
                if len(cells) > len(names) and any(c.strip() for c in cells[len(names):]):
                    raise InputError(f"row {line} of {path} has {len(cells)} cells but the header names "
                                     f"{len(names)} columns", fix="remove the extra cells, or add the missing column "
                                     "name (a comma inside a value needs quotes)")
        import warnings
        with warnings.catch_warnings():  # trailing empty cells (checked above) are dropped
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            table = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False, na_values=[""],
                                encoding="utf-8-sig", header=0, names=names, index_col=False)
    except InputError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot parse {path} as CSV ({detail})",
                         fix="save the manifest as UTF-8 CSV with the same number of cells in every row") from None
    if delimiter == ";":
        converted = 0
        for column in table.columns:
            values = table[column]
            mask = values.notna() & values.astype(str).str.match(_DECIMAL_COMMA)
            if mask.any():
                table.loc[mask, column] = values[mask].str.replace(",", ".", regex=False).str.strip()
                converted += int(mask.sum())
        notes.append("read as semicolon-separated (European Excel CSV)"
                     + (f"; {converted} number(s) with a decimal comma read with a decimal point" if converted else ""))
    elif delimiter == "\t":
        notes.append("read as tab-separated")
    table.attrs["notes"] = notes
    return table


def read_manifest(path):
    """Read and normalise a manifest; raises InputError listing every table-level error. What was read in a
    non-standard way (a semicolon file, renamed headers) is an InputWarning."""
    raw = _read_csv(path)
    if raw.attrs.get("notes"):
        import warnings

        from .. import InputWarning
        for note in raw.attrs["notes"]:
            warnings.warn(f"{path}: {note}", InputWarning, stacklevel=2)
    table, problems = check_table(raw)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        lines = "\n".join(str(p) for p in errors)
        raise InputError(f"{path} has {len(errors)} problem(s):\n{lines}",
                         fix="run `tacepredict validate --manifest` and fix each line")
    return Manifest(table, os.path.dirname(os.path.abspath(path)))


def check_case_images(manifest, row):
    """Load one case's images and segmentations; return the problems found."""
    case_id = row["case_id"]
    problems = []
    images = {}
    for column in manifest.phases:
        path = manifest.resolve(row.get(column))
        if path is None:
            continue
        try:
            image = imageio.read_image(path, case_id, column)
        except InputError as exc:
            problems.append(Problem("error", case_id, column, exc.problem, exc.fix or ""))
            continue
        problem = imageio.ct_intensity_problem(image)
        if problem:
            problems.append(Problem("error", case_id, column, *problem))
            continue
        images[column] = image

    seg_columns = ["seg"] + manifest.extra_seg_columns
    selector = row.get("seg_label") if "seg_label" in row.index else None
    ct_paths = {c: manifest.resolve(row.get(c)) for c in IMAGE_COLUMNS if c in row.index}
    for column in seg_columns:
        path = manifest.resolve(row.get(column))
        if path is None:
            continue
        try:
            segmentation = imageio.read_segmentation(path, case_id, column, ct_paths=ct_paths)
            mask = segmentation.mask(selector, case_id)
        except InputError as exc:
            problems.append(Problem("error", case_id, exc.column or column, exc.problem, exc.fix or ""))
            continue
        problem = imageio.lesion_problem(mask)
        if problem:
            problems.append(Problem("error", case_id, column, *problem))
            if imageio.mask_bounding_box(mask) is None:
                continue  # an empty lesion has no position to check against the phases
        for phase, image in images.items():
            if imageio.same_geometry(mask, image):
                continue
            if not imageio.mask_inside_image(mask, image):
                problems.append(Problem("error", case_id, column,
                                        f"the lesion lies outside the {PHASE_NAMES[phase]} CT ({phase}): "
                                        "segmentation and image do not share physical space",
                                        "check that the segmentation belongs to this CT (origin, direction)"))
    return problems


def validate_manifest(path, check_images=True, progress=None):
    """All problems of a manifest: table-level, then (optionally) every case's files."""
    try:
        raw = _read_csv(path)
    except InputError as exc:
        return [Problem("error", None, exc.column, exc.problem, exc.fix or "")]
    table, problems = check_table(raw)
    problems = [Problem("warning", None, None, note) for note in raw.attrs.get("notes", [])] + problems
    if any(p.column == "case_id" and p.case_id is None for p in problems) or "case_id" not in table.columns:
        return problems
    if check_images:
        manifest = Manifest(table, os.path.dirname(os.path.abspath(path)))
        for i, (_, row) in enumerate(table.iterrows()):
            problems.extend(check_case_images(manifest, row))
            if progress:
                progress(i + 1, len(table))
    return problems
