"""Published pre-TACE prognostic scores, built in as comparators: no training, no bundle (research use only).

Each score is a class with one small interface, so that it can be listed beside the learned survival models:

    s = SCORES["hap"]()
    s.kind, s.title, s.reference, s.inputs, s.grades, s.definition
    s.score(table)       # pd.Series by case_id: the published score, NaN where an input is missing
    s.grade(table)       # pd.Series of ordered categories (best first), NaN where it cannot be decided
    s.risk_score(table)  # grade as 1, 2, ... (higher = worse): what the C-index ranks
    s.reason(table)      # "" where the score is complete, else why it is missing or how the grade was decided
    s.predict(data)      # one row per case, like a survival model's predictions (data: covariates.CohortData)

``table`` is a manifest table (``CohortData.table`` or any DataFrame with the manifest's columns and
``case_id``). Inputs are read with the manifest's own rules (``manifest.plausible_value``: its codes, units and
plausible ranges): a value that is not valid (text in a number column, an albumin of 3.9 that looks like g/dL)
raises ``InputError`` naming the case and the column; a missing value never does: that case's score is NaN and
its ``reason`` says which input is missing. Where inputs are missing but every value they could take gives the
same grade (a tumour of 9 cm is beyond up-to-seven whatever the number of tumours), the grade is still given, and
the reason says so. Bounds used for that: the manifest's plausible ranges (tumour 5-300 mm, 1-100 tumours,
Child-Pugh score 5-15 or the class's scores, ECOG 0-4).

Definitions, their papers and how each was checked: docs/clinical_scores.md. Every score was fitted on its own
paper's cohort; TACEPredict applies it as published and does not re-calibrate it.
"""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pandas as pd

from .. import RESEARCH_USE_NOTICE, InputError
from ..data.manifest import CHILD_PUGH_CLASS_SCORES, COLUMNS, plausible_values
PUBLISHED_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources",
                              "clinical_scores.json")


def _published():
    """Each score's title, definition and paper, by kind (``Resources/clinical_scores.json``)."""
    with open(PUBLISHED_FILE, encoding="utf-8") as handle:
        return json.load(handle)["scores"]


PUBLISHED = _published()


def _case_ids(table):
    if "case_id" in table.columns:
        return [str(c) for c in table["case_id"]]
    return [str(c) for c in table.index]


def read_inputs(table, columns):
    """The normalised values of ``columns`` (a DataFrame indexed by case_id; NaN where missing, and for a
    column the table lacks). Raises InputError naming the case and the column for an invalid value."""
    ids = _case_ids(table)
    out = {}
    for column in columns:
        if column not in table.columns:
            out[column] = [np.nan] * len(ids)
            continue
        out[column], errors = plausible_values(column, ids, table[column])
        if errors:
            case_id, message, fix = errors[0]
            raise InputError(message, case_id, column, fix)
    return pd.DataFrame(out, index=pd.Index(ids, name="case_id"), dtype=object)


def _missing(value):
    return value is None or (isinstance(value, float) and np.isnan(value))


def _absent_note(absent, reason):
    """' (the table has no ... column)' for the absent columns a reason names."""
    named = [c for c in absent if c in reason]
    if not named:
        return ""
    return f" (the table has no {', '.join(repr(c) for c in named)} column{'s' if len(named) > 1 else ''})"


class ClinicalScore:
    """Common machinery: subclasses define ``kind``, ``inputs``, ``grades`` and ``assess(row)`` for one case;
    ``title``, ``definition`` and ``reference`` (authors, title, journal, year, volume_pages, doi) are their
    paper's, from ``PUBLISHED``."""

    task = "survival"
    kind = ""
    title = ""
    definition = ""
    reference = {}
    inputs = ()
    grades = ()
    notice = RESEARCH_USE_NOTICE

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind:
            published = PUBLISHED[cls.kind]
            cls.title, cls.definition, cls.reference = (published["title"], published["definition"],
                                                        published["reference"])

    @property
    def label(self):
        return self.title

    @property
    def provenance(self):
        ref = self.reference
        return (f"survival / {self.kind}: {self.title}, as published ({ref['authors']}, {ref['journal']} "
                f"{ref['year']}; doi:{ref['doi']}); not trained or re-calibrated by TACEPredict, not validated by it")

    def citation(self):
        ref = self.reference
        return (f"{ref['authors']}. {ref['title']}. {ref['journal']} {ref['year']};{ref['volume_pages']}. "
                f"doi:{ref['doi']}")

    def assess(self, row):
        """``(score, grade or None, reason)`` of one case; ``row`` maps each input to its value (NaN if missing)."""
        raise NotImplementedError

    def evaluate(self, table):
        """One row per case (index case_id): ``score``, ``grade`` (ordered categorical), ``risk_score``,
        ``reason``."""
        inputs = read_inputs(table, self.inputs)
        absent = [c for c in self.inputs if c not in table.columns]
        rows = []
        for case_id, row in inputs.iterrows():
            score, grade, reason = self.assess(row.to_dict())
            if reason and absent and ("missing" in reason or "without" in reason):
                reason += _absent_note(absent, reason)
            rows.append((case_id, score, grade, reason))
        frame = pd.DataFrame(rows, columns=["case_id", "score", "grade", "reason"]).set_index("case_id")
        frame["score"] = frame["score"].astype(float)
        frame["grade"] = pd.Categorical(frame["grade"], categories=list(self.grades), ordered=True)
        codes = frame["grade"].cat.codes.astype(float)
        frame["risk_score"] = np.where(codes >= 0, codes + 1, np.nan)
        return frame

    def score(self, table):
        return self.evaluate(table)["score"].rename(self.kind)

    def grade(self, table):
        return self.evaluate(table)["grade"].rename(self.kind)

    def risk_score(self, table):
        return self.evaluate(table)["risk_score"].rename(self.kind)

    def reason(self, table):
        return self.evaluate(table)["reason"].rename(self.kind)

    def predict(self, data):
        """Predictions in the survival models' layout: ``risk_score`` is the grade's rank (higher = worse),
        ``risk_group`` the grade; no survival probabilities (the papers give none that transfer)."""
        table = data.table if hasattr(data, "table") else data
        frame = self.evaluate(table)
        return pd.DataFrame({"case_id": frame.index.to_numpy(), "task": self.task, "model": self.title,
                             "score": frame["score"].to_numpy(), "grade": frame["grade"].astype(object).to_numpy(),
                             "risk_score": frame["risk_score"].to_numpy(),
                             "risk_group": frame["grade"].astype(object).to_numpy(),
                             "reason": frame["reason"].to_numpy(), "provenance": self.provenance,
                             "notice": self.notice})


class _BoundedScore(ClinicalScore):
    """A score that only grows with each input: its lowest and highest values over the missing inputs' ranges
    decide the grade when both fall in one grade."""

    def bounds(self, row):
        raise NotImplementedError

    def grade_of(self, value):
        raise NotImplementedError

    def assess(self, row):
        missing = [c for c in self.inputs if _missing(row[c])]
        low, high = self.bounds(row)
        if not missing:
            return low, self.grade_of(low), ""
        grade_low, grade_high = self.grade_of(low), self.grade_of(high)
        if grade_low == grade_high:
            return np.nan, grade_low, (f"score not computable: missing {', '.join(missing)}; grade {grade_low} "
                                       "decided anyway (every possible value gives it)")
        return np.nan, None, f"missing {', '.join(missing)}"


class ALBI(ClinicalScore):
    """ALBI = 0.66 x log10(bilirubin, umol/L) - 0.085 x albumin (g/L); grade 1 <= -2.60 < grade 2 <= -1.39 <
    grade 3."""

    kind = "albi"
    inputs = ("albumin_g_l", "bilirubin_umol_l")
    grades = ("1", "2", "3")

    def assess(self, row):
        missing = [c for c in self.inputs if _missing(row[c])]
        if missing:
            return np.nan, None, f"missing {', '.join(missing)}"
        score = 0.66 * np.log10(float(row["bilirubin_umol_l"])) - 0.085 * float(row["albumin_g_l"])
        grade = "1" if score <= -2.60 else "2" if score <= -1.39 else "3"
        return float(score), grade, ""


HAP_GRADES = ("A", "B", "C", "D")


def _hap_grade(points):
    return HAP_GRADES[min(int(points), 3)]


def _point(value, condition):
    """(low, high) contribution of one yes/no item: (0, 1) when its input is missing."""
    if _missing(value):
        return 0, 1
    hit = int(bool(condition(float(value))))
    return hit, hit


class HAP(_BoundedScore):
    """One point each for albumin < 36 g/L, bilirubin > 17 umol/L, AFP > 400 ng/mL, largest tumour > 7 cm;
    HAP A 0, B 1, C 2, D > 2 points."""

    kind = "hap"
    inputs = ("albumin_g_l", "bilirubin_umol_l", "afp_ng_ml", "tumor_size_mm")
    grades = HAP_GRADES

    def items(self, row):
        return [_point(row["albumin_g_l"], lambda v: v < 36), _point(row["bilirubin_umol_l"], lambda v: v > 17),
                _point(row["afp_ng_ml"], lambda v: v > 400), _point(row["tumor_size_mm"], lambda v: v > 70)]

    def bounds(self, row):
        items = self.items(row)
        return float(sum(i[0] for i in items)), float(sum(i[1] for i in items))

    def grade_of(self, value):
        return _hap_grade(value)


class MHAP2(HAP):
    """HAP plus one point for two or more tumours (mHAP-II): A 0, B 1, C 2, D >= 3 points."""

    kind = "mhap2"
    inputs = HAP.inputs + ("tumor_number",)

    def items(self, row):
        return super().items(row) + [_point(row["tumor_number"], lambda v: v >= 2)]


SIZE_RANGE_MM = (COLUMNS["tumor_size_mm"].low, COLUMNS["tumor_size_mm"].high)
NUMBER_RANGE = (COLUMNS["tumor_number"].low, COLUMNS["tumor_number"].high)


def _size_plus_number_mm(row):
    """(low, high) of largest diameter (mm) + 10 x number of tumours: the sum in cm x 10, compared in mm so
    that 50 mm + 2 tumours is exactly 7."""
    size = row["tumor_size_mm"]
    number = row["tumor_number"]
    size_low, size_high = SIZE_RANGE_MM if _missing(size) else (float(size), float(size))
    number_low, number_high = NUMBER_RANGE if _missing(number) else (float(number), float(number))
    return size_low + 10 * number_low, size_high + 10 * number_high


class SixAndTwelve(_BoundedScore):
    """Largest tumour diameter (cm) + number of tumours: <= 6, > 6 to <= 12, > 12."""

    kind = "six-and-twelve"
    inputs = ("tumor_size_mm", "tumor_number")
    grades = ("<=6", "6-12", ">12")

    def bounds(self, row):
        low, high = _size_plus_number_mm(row)
        return round(low / 10.0, 9), round(high / 10.0, 9)

    def grade_of(self, value):
        tenths = round(value * 10.0, 6)
        return "<=6" if tenths <= 60 else "6-12" if tenths <= 120 else ">12"


class UpToSeven(SixAndTwelve):
    """Within up-to-seven when largest diameter (cm) + number of tumours <= 7."""

    kind = "up-to-seven"
    grades = ("within", "beyond")

    def grade_of(self, value):
        return "within" if round(value * 10.0, 6) <= 70 else "beyond"


BCLC_B_STAGES = ("B1", "B2", "B3", "B4")


def bclc_b_substage(child_pugh_score, within_up_to_seven, ecog, portal_vein_thrombosis):
    """Bolondi's table for one combination of values: B1-B4, or None outside it."""
    if portal_vein_thrombosis or ecog >= 2 or child_pugh_score >= 10:
        return None
    if child_pugh_score >= 8:
        return "B4"  # Child-Pugh 8-9, any tumour burden, ECOG 0-1
    if ecog >= 1:
        return None  # ECOG 1 with Child-Pugh 5-7 is BCLC C
    if within_up_to_seven:
        return "B1"  # Child-Pugh 5-7
    return "B2" if child_pugh_score <= 6 else "B3"


class BCLCBSubstage(ClinicalScore):
    """Bolondi's B1-B4 for BCLC-B patients without portal vein thrombosis: B1 Child-Pugh 5-7 and within
    up-to-seven, ECOG 0; B2 Child-Pugh 5-6, beyond, ECOG 0; B3 Child-Pugh 7, beyond, ECOG 0; B4 Child-Pugh 8-9,
    any tumour burden, ECOG 0-1."""

    kind = "bclc-b-substage"
    inputs = ("bclc", "child_pugh_score", "child_pugh", "ecog", "portal_vein_invasion", "tumor_size_mm",
              "tumor_number")
    grades = BCLC_B_STAGES

    def evaluate(self, table):
        inputs = read_inputs(table, ("child_pugh_score", "child_pugh"))
        for case_id, row in inputs.iterrows():
            score, klass = row["child_pugh_score"], row["child_pugh"]
            if not _missing(score) and not _missing(klass) and int(score) not in CHILD_PUGH_CLASS_SCORES[klass]:
                raise InputError(f"Child-Pugh score {int(score)} does not belong to class {klass}", case_id,
                                 "child_pugh_score", "class A is 5-6 points, B 7-9, C 10-15: correct one of the two")
        return super().evaluate(table)

    def assess(self, row):
        if _missing(row["bclc"]):
            return np.nan, None, "missing bclc (the sub-stages apply to BCLC stage B only)"
        if row["bclc"] != "B":
            return np.nan, None, f"outside B1-B4: BCLC stage {row['bclc']}, not B"
        missing = [c for c in self.inputs[1:] if _missing(row[c])]
        if not _missing(row["child_pugh_score"]):
            missing = [c for c in missing if c != "child_pugh"]  # the class adds nothing to the score
        if not _missing(row["child_pugh_score"]):
            cp_values = (int(row["child_pugh_score"]),)
        elif not _missing(row["child_pugh"]):
            cp_values = CHILD_PUGH_CLASS_SCORES[row["child_pugh"]]
        else:
            cp_values = tuple(range(5, 16))
        low, high = _size_plus_number_mm(row)
        within_values = (True,) if high <= 70 else (False,) if low > 70 else (True, False)
        ecog_values = (int(row["ecog"]),) if not _missing(row["ecog"]) else (0, 1, 2, 3, 4)
        pvt_values = (int(row["portal_vein_invasion"]),) if not _missing(row["portal_vein_invasion"]) else (0, 1)
        outcomes = {bclc_b_substage(*combo) for combo in itertools.product(cp_values, within_values, ecog_values,
                                                                             pvt_values)}
        stage = next(iter(outcomes)) if len(outcomes) == 1 else None
        code = float(BCLC_B_STAGES.index(stage) + 1) if stage else np.nan
        if len(outcomes) > 1:
            possible = ", ".join(sorted(o or "outside B1-B4" for o in outcomes))
            return np.nan, None, f"missing {', '.join(missing)}: could be {possible}"
        if stage is None:
            why = []
            if pvt_values == (1,):
                why.append("portal vein thrombosis")
            if min(ecog_values) >= 2:
                why.append(f"ECOG {ecog_values[0] if len(ecog_values) == 1 else '>= 2'}")
            elif min(ecog_values) == 1 and max(cp_values) <= 7:
                why.append("ECOG 1 with Child-Pugh score 5-7")
            if min(cp_values) >= 10:
                why.append("Child-Pugh score >= 10")
            return np.nan, None, "outside B1-B4: " + (", ".join(why) or "criteria not met")
        note = f"decided without {', '.join(missing)} (every possible value gives {stage})" if missing else ""
        return code, stage, note


SCORE_CLASSES = (ALBI, HAP, MHAP2, SixAndTwelve, UpToSeven, BCLCBSubstage)
SCORES = {cls.kind: cls for cls in SCORE_CLASSES}


def score_table(table, kinds=None):
    """Every score's value, grade and reason for each case of ``table``: a wide DataFrame indexed by case_id
    (``<kind>_score``, ``<kind>_grade``, ``<kind>_reason``)."""
    parts = []
    for kind in kinds or SCORES:
        frame = SCORES[kind]().evaluate(table)
        parts.append(frame[["score", "grade", "reason"]].add_prefix(f"{kind}_"))
    return pd.concat(parts, axis=1)


def applicable_scores(table, kinds=None, minimum=1):
    """The scores that grade at least ``minimum`` cases of ``table`` (the comparators its columns allow)."""
    out = []
    for kind in kinds or SCORES:
        score = SCORES[kind]()
        if score.evaluate(table)["grade"].notna().sum() >= minimum:
            out.append(score)
    return out


def survival_comparison(table, time, event, kinds=None, n_bootstrap=1000, seed=0, minimum_cases=10):
    """Each applicable score on the cases it grades: Harrell's C-index of its grade (bootstrap 95% CI) and the
    log-rank test across its grades. ``time`` / ``event`` are arrays in ``table``'s row order. Returns a
    DataFrame, one row per score (scores grading fewer than ``minimum_cases`` cases, or one grade only, get
    NaN statistics and a note)."""
    from ..stats import metrics as M
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    rows = []
    for kind in kinds or SCORES:
        score = SCORES[kind]()
        frame = score.evaluate(table)
        graded = frame["grade"].notna().to_numpy()
        grades = frame["grade"].astype(object).to_numpy()[graded]
        row = {"score": kind, "title": score.title, "cases": int(graded.sum()), "cases_total": int(len(frame)),
               "events": int(event[graded].sum()), "c_index": np.nan, "c_index_lower": np.nan,
               "c_index_upper": np.nan, "logrank_statistic": np.nan, "logrank_df": np.nan, "logrank_p": np.nan,
               "note": ""}
        row.update({f"n_{g}": int((grades == g).sum()) for g in score.grades})
        present = [g for g in score.grades if (grades == g).any()]
        if graded.sum() < minimum_cases or len(present) < 2 or event[graded].sum() == 0:
            row["note"] = (f"only {int(graded.sum())} case(s) graded" if graded.sum() < minimum_cases
                           else "a single grade among the graded cases" if len(present) < 2 else "no events")
        else:
            risk = frame["risk_score"].to_numpy()[graded]
            c, lower, upper = M.concordance_index_ci(time[graded], risk, event[graded], n_bootstrap=n_bootstrap,
                                                     seed=seed)
            test = M.logrank_test(time[graded], event[graded], grades)
            row.update(c_index=c, c_index_lower=lower, c_index_upper=upper, logrank_statistic=test["statistic"],
                       logrank_df=test["df"], logrank_p=test["p"])
        rows.append(row)
    return pd.DataFrame(rows)
