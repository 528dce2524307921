"""The built-in published scores against HAND CALCULATIONS (docs/clinical_scores.md says where each definition
was checked). Every case table below is computed by hand from the published definition, with the arithmetic in
its comment; the inputs are chosen to sit on and beside each cut-off. The cases that a third party published
with their result (a calculator's worked example, an independent implementation's test suite) are in
Testing/test_clinical_score_worked_cases.py with their sources; the search found such cases for ALBI only."""

import os

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib import InputError
from TACEPredictLib.stats import metrics as M
from TACEPredictLib.models.clinical_scores import (ALBI, HAP, MHAP2, SCORES, BCLCBSubstage, SixAndTwelve,
                                                   UpToSeven, applicable_scores, score_table, survival_comparison)
from TACEPredictLib.data.manifest import check_table

from conftest import HCC_TACE_SEG_CSV


def _table(columns, rows):
    frame = pd.DataFrame(rows, columns=columns)
    frame.insert(0, "case_id", [f"c{i:02d}" for i in range(1, len(rows) + 1)])
    return frame


# HAND CALCULATIONS. albumin g/L, bilirubin umol/L, expected ALBI, expected grade.
# ALBI = 0.66 x log10(bilirubin) - 0.085 x albumin; grade 1 <= -2.60 < grade 2 <= -1.39 < grade 3.
ALBI_CASES = [
    # the inputs of a calculator's worked example (its printed -2.10 is checked in
    # test_clinical_score_worked_cases.py); here the full arithmetic: 0.66 x 1.31218 = 0.86604; 0.085 x 35 =
    # 2.975; -2.10896
    (35, 20.52, -2.10896, "2"),
    (40, 10, -2.74000, "1"),      # 0.66 x 1 - 3.4
    (45, 5, -3.36368, "1"),       # 0.66 x 0.69897 = 0.46132; - 3.825
    (42, 17, -2.75790, "1"),      # 0.66 x 1.23045 = 0.81210; - 3.57
    (39, 13, -2.57980, "2"),      # 0.66 x 1.11394 = 0.73520; - 3.315: just above -2.60
    (30, 34, -1.53922, "2"),      # 0.66 x 1.53148 = 1.01078; - 2.55
    (29, 40, -1.40764, "2"),      # 0.66 x 1.60206 = 1.05736; - 2.465: just below -1.39
    (28.5, 40, -1.36514, "3"),    # 1.05736 - 2.4225: just above -1.39
    (25, 51, -0.99800, "3"),      # 0.66 x 1.70757 = 1.12700; - 2.125
    (28, 100, -1.06000, "3"),     # 0.66 x 2 - 2.38
]

# HAND CALCULATIONS (no published worked patient was found). albumin, bilirubin, AFP, largest tumour mm -> HAP
# points, grade (A 0, B 1, C 2, D > 2); points: albumin < 36, bilirubin > 17, AFP > 400, size > 70 mm (7 cm).
HAP_CASES = [
    (40, 10, 5, 30, 0, "A"),
    (35, 10, 5, 30, 1, "B"),          # albumin 35 < 36
    (36, 17, 400, 70, 0, "A"),        # every value on its cut-off, none beyond it
    (35.9, 17.1, 400.1, 71, 4, "D"),  # every value just beyond its cut-off
    (40, 25, 5, 30, 1, "B"),          # bilirubin
    (40, 10, 1200, 85, 2, "C"),       # AFP, size
    (32, 30, 10, 50, 2, "C"),         # albumin, bilirubin
    (30, 40, 800, 40, 3, "D"),        # albumin, bilirubin, AFP
    (42, 12, 450, 30, 1, "B"),        # AFP
    (33, 12, 8, 95, 2, "C"),          # albumin, size
]

# HAND CALCULATIONS (no published worked patient was found). HAP's inputs + number of tumours -> mHAP-II
# points (HAP + 1 for >= 2 tumours), grade A 0, B 1, C 2, D >= 3.
MHAP2_CASES = [
    (40, 10, 5, 30, 1, 0, "A"),
    (40, 10, 5, 30, 2, 1, "B"),          # two tumours
    (36, 17, 400, 70, 1, 0, "A"),
    (36, 17, 400, 70, 2, 1, "B"),
    (35, 10, 5, 30, 3, 2, "C"),          # albumin + multiplicity
    (35.9, 17.1, 400.1, 71, 5, 5, "D"),  # all five
    (40, 25, 5, 30, 1, 1, "B"),
    (40, 10, 1200, 85, 2, 3, "D"),       # AFP, size, multiplicity
    (32, 30, 10, 50, 1, 2, "C"),
    (30, 40, 800, 40, 4, 4, "D"),
]

# HAND CALCULATIONS (no published worked patient was found). largest tumour mm, number -> six-and-twelve
# score (cm + number), stratum.
SIX_TWELVE_CASES = [
    (30, 1, 4.0, "<=6"),
    (50, 1, 6.0, "<=6"),    # on the cut-off
    (51, 1, 6.1, "6-12"),
    (40, 2, 6.0, "<=6"),
    (45, 3, 7.5, "6-12"),
    (100, 2, 12.0, "6-12"),  # on the cut-off
    (101, 2, 12.1, ">12"),
    (80, 5, 13.0, ">12"),
    (25, 4, 6.5, "6-12"),
    (150, 1, 16.0, ">12"),
]

# HAND CALCULATIONS (no published worked patient was found). largest tumour mm, number -> sum, up-to-seven
# status. The first four are the largest tumour that stays within for one to four tumours (6, 5, 4, 3 cm: sum 7).
UP_TO_SEVEN_CASES = [
    (60, 1, 7.0, "within"),
    (50, 2, 7.0, "within"),
    (40, 3, 7.0, "within"),
    (30, 4, 7.0, "within"),
    (61, 1, 7.1, "beyond"),
    (51, 2, 7.1, "beyond"),
    (35, 2, 5.5, "within"),
    (20, 6, 8.0, "beyond"),
    (90, 1, 10.0, "beyond"),
    (25, 5, 7.5, "beyond"),
]

# HAND CALCULATIONS (no published worked patient was found). bclc, Child-Pugh score, class, ECOG, portal vein
# thrombosis, largest mm, number -> sub-stage (None: outside). Cases 1, 3, 4, 5: values chosen by hand inside
# each row of Bolondi's table as tabulated in Cancer Imaging 2023 (doi:10.1186/s40644-023-00575-6, table 1);
# the rest by hand from the same table.
BCLC_B_CASES = [
    ("B", 5, "A", 0, 0, 40, 3, "B1"),   # CP 5-7, 4 + 3 = 7: within, ECOG 0
    ("B", 7, "B", 0, 0, 30, 3, "B1"),   # CP 7 within: still B1
    ("B", 6, "A", 0, 0, 50, 4, "B2"),   # CP 5-6, 5 + 4 = 9: beyond
    ("B", 7, "B", 0, 0, 60, 3, "B3"),   # CP 7, 6 + 3 = 9: beyond
    ("B", 8, "B", 1, 0, 30, 2, "B4"),   # CP 8-9, any burden, ECOG 0-1
    ("B", 9, "B", 0, 0, 80, 5, "B4"),
    ("B", 6, "A", 1, 0, 40, 2, None),   # ECOG 1 with CP 5-7: BCLC C, outside
    ("B", 6, "A", 0, 1, 40, 2, None),   # portal vein thrombosis: outside
    ("C", 5, "A", 0, 0, 40, 2, None),   # not BCLC B
    ("B", None, "A", 0, 0, 70, 2, "B2"),  # class A = 5-6 points; 7 + 2 = 9: beyond
]


def test_albi_equals_hand_calculation():
    table = _table(["albumin_g_l", "bilirubin_umol_l"], [c[:2] for c in ALBI_CASES])
    frame = ALBI().evaluate(table)
    np.testing.assert_allclose(frame["score"], [c[2] for c in ALBI_CASES], atol=6e-6)
    assert list(frame["grade"].astype(str)) == [c[3] for c in ALBI_CASES]
    assert list(frame["risk_score"]) == [int(c[3]) for c in ALBI_CASES]  # grade 3 ranks worst
    assert (frame["reason"] == "").all()


@pytest.mark.parametrize("score_class, cases", [(HAP, HAP_CASES), (MHAP2, MHAP2_CASES)])
def test_hap_and_mhap2_equal_hand_calculation(score_class, cases):
    columns = list(score_class.inputs)
    table = _table(columns, [c[:len(columns)] for c in cases])
    frame = score_class().evaluate(table)
    assert list(frame["score"]) == [c[-2] for c in cases]
    assert list(frame["grade"].astype(str)) == [c[-1] for c in cases]
    assert frame["grade"].cat.ordered and list(frame["grade"].cat.categories) == ["A", "B", "C", "D"]


@pytest.mark.parametrize("score_class, cases", [(SixAndTwelve, SIX_TWELVE_CASES), (UpToSeven, UP_TO_SEVEN_CASES)])
def test_tumour_burden_scores_equal_hand_calculation(score_class, cases):
    table = _table(["tumor_size_mm", "tumor_number"], [c[:2] for c in cases])
    frame = score_class().evaluate(table)
    assert list(frame["score"]) == [c[2] for c in cases]  # exact: compared in mm, no 6.999999 at a cut-off
    assert list(frame["grade"].astype(str)) == [c[3] for c in cases]


def test_bclc_b_substages_equal_the_table():
    columns = ["bclc", "child_pugh_score", "child_pugh", "ecog", "portal_vein_invasion", "tumor_size_mm",
               "tumor_number"]
    table = _table(columns, [c[:7] for c in BCLC_B_CASES])
    frame = BCLCBSubstage().evaluate(table)
    assert [None if pd.isna(g) else g for g in frame["grade"]] == [c[7] for c in BCLC_B_CASES]
    reasons = list(frame["reason"])
    assert reasons[6] == "outside B1-B4: ECOG 1 with Child-Pugh score 5-7"
    assert reasons[7] == "outside B1-B4: portal vein thrombosis"
    assert reasons[8] == "outside B1-B4: BCLC stage C, not B"
    assert reasons[9] == "decided without child_pugh_score (every possible value gives B2)"
    assert list(frame["risk_score"].iloc[:6]) == [1, 1, 2, 3, 4, 4]


def test_missing_inputs_give_nan_and_a_reason_per_case():
    table = _table(["albumin_g_l", "bilirubin_umol_l", "afp_ng_ml", "tumor_size_mm", "tumor_number"],
                   [(40, 10, 5, 30, 1), (None, 10, 5, 30, 1), (30, 40, 800, None, None), (40, 10, 5, 90, None)])
    albi = ALBI().evaluate(table)
    assert albi["grade"].isna().tolist() == [False, True, False, False]
    assert albi.loc["c02", "reason"] == "missing albumin_g_l"
    hap = HAP().evaluate(table)
    # c03: albumin, bilirubin and AFP give 3 points whatever the size: HAP D, score unknown
    assert np.isnan(hap.loc["c03", "score"]) and hap.loc["c03", "grade"] == "D"
    assert "grade D decided anyway" in hap.loc["c03", "reason"] and "tumor_size_mm" in hap.loc["c03", "reason"]
    # c02: 0 points known, albumin could add one: A or B, undecided
    assert pd.isna(hap.loc["c02", "grade"]) and hap.loc["c02", "reason"] == "missing albumin_g_l"
    up = UpToSeven().evaluate(table)
    # c04: 9 cm + at least one tumour = 10 > 7 whatever the number
    assert up.loc["c04", "grade"] == "beyond" and np.isnan(up.loc["c04", "score"])
    assert pd.isna(SixAndTwelve().evaluate(table).loc["c04", "grade"])  # 10 .. 109: 6-12 or > 12
    # a column the table lacks: every case gets the reason, nobody gets an exception
    bclc = BCLCBSubstage().evaluate(table)
    assert bclc["grade"].isna().all()
    assert bclc.loc["c01", "reason"] == ("missing bclc (the sub-stages apply to BCLC stage B only) (the table has "
                                         "no 'bclc' column)")


def test_bclc_b_undecided_without_child_pugh_score():
    table = _table(["bclc", "child_pugh", "ecog", "portal_vein_invasion", "tumor_size_mm", "tumor_number"],
                   [("B", "B", 0, 0, 80, 3), ("B", "B", 0, 0, 30, 2)])
    frame = BCLCBSubstage().evaluate(table)
    assert frame["grade"].isna().all()
    # class B beyond up-to-seven: 7 points -> B3, 8-9 -> B4; within: 7 -> B1, 8-9 -> B4
    assert frame.loc["c01", "reason"] == ("missing child_pugh_score: could be B3, B4 (the table has no "
                                          "'child_pugh_score' column)")
    assert frame.loc["c02", "reason"].startswith("missing child_pugh_score: could be B1, B4")


def test_input_errors_name_the_case_and_the_column():
    table = _table(["albumin_g_l", "bilirubin_umol_l"], [(40, 10), (3.9, 10)])
    with pytest.raises(InputError) as info:
        ALBI().evaluate(table)
    assert "case c02, column 'albumin_g_l'" in str(info.value) and "looks like g/dL" in str(info.value)
    table = _table(["albumin_g_l", "bilirubin_umol_l"], [(40, "high"), (38, 10)])
    with pytest.raises(InputError, match="case c01, column 'bilirubin_umol_l': 'high' is not a number"):
        HAP().evaluate(table.assign(afp_ng_ml=5, tumor_size_mm=30))
    table = _table(["bclc", "child_pugh_score", "child_pugh", "ecog", "portal_vein_invasion"],
                   [("B", 7, "A", 0, 0)])
    with pytest.raises(InputError, match="case c01, column 'child_pugh_score': Child-Pugh score 7 does not "
                                         "belong to class A"):
        BCLCBSubstage().evaluate(table)
    with pytest.raises(InputError, match="case c01, column 'child_pugh_score'"):
        BCLCBSubstage().evaluate(table.assign(child_pugh_score=16))


def test_manifest_checks_child_pugh_score():
    table = pd.DataFrame({"case_id": ["a", "b", "c"], "child_pugh_score": ["6", "4", "7.5"]})
    normalised, problems = check_table(table)
    assert [(p.case_id, p.column) for p in problems] == [("b", "child_pugh_score"), ("c", "child_pugh_score")]
    assert normalised.loc[0, "child_pugh_score"] == 6.0


def test_survival_comparison_and_registry():
    rng = np.random.default_rng(4)
    n = 80
    size = rng.uniform(15, 140, n).round()
    number = rng.integers(1, 6, n)
    table = pd.DataFrame({"case_id": [f"p{i}" for i in range(n)], "tumor_size_mm": size, "tumor_number": number})
    burden = size / 10 + number
    time = rng.exponential(900 / np.exp(0.25 * (burden - 8)))
    event = (rng.random(n) < 0.85).astype(int)
    table.loc[:4, "tumor_number"] = np.nan  # five cases the burden scores cannot all grade
    result = survival_comparison(table, time, event, n_bootstrap=50).set_index("score")
    six = SixAndTwelve().evaluate(table)
    graded = six["grade"].notna().to_numpy()
    assert result.loc["six-and-twelve", "cases"] == graded.sum() < n
    assert result.loc["six-and-twelve", "c_index"] == pytest.approx(
        M.concordance_index(time[graded], six["risk_score"].to_numpy()[graded], event[graded]))
    assert result.loc["six-and-twelve", "c_index"] > 0.6  # the simulated hazard grows with the burden
    assert result.loc["six-and-twelve", "logrank_p"] < 0.05
    assert result.loc["albi", "cases"] == 0 and result.loc["albi", "note"] == "only 0 case(s) graded"
    assert [s.kind for s in applicable_scores(table)] == ["six-and-twelve", "up-to-seven"]
    wide = score_table(table, ["up-to-seven"])
    assert list(wide.columns) == ["up-to-seven_score", "up-to-seven_grade", "up-to-seven_reason"]
    predictions = SCORES["hap"]().predict(table.assign(albumin_g_l=40, bilirubin_umol_l=10, afp_ng_ml=5))
    assert list(predictions.columns[:7]) == ["case_id", "task", "model", "score", "grade", "risk_score",
                                             "risk_group"]
    assert "Ann Oncol 2013" in predictions["provenance"].iloc[0] and "RESEARCH USE ONLY" in predictions["notice"][0]
    for kind, cls in SCORES.items():
        ref = cls.reference
        assert cls.kind == kind and ref["doi"].startswith("10.") and ref["year"] > 2000 and cls.inputs


@pytest.mark.skipif(not os.path.isfile(HCC_TACE_SEG_CSV), reason="HCC-TACE-Seg clinical table not in ../shared")
def test_real_hcc_tace_seg_table_grades_without_errors():
    from TACEPredictLib.data.importers import import_hcc_tace_seg
    table, _ = import_hcc_tace_seg(HCC_TACE_SEG_CSV)
    frame = UpToSeven().evaluate(table)
    # 17 uninodular tumours with a size, and multinodular ones whose largest tumour alone exceeds 6 cm
    assert frame["grade"].notna().sum() >= 17
    assert (frame.loc[frame["grade"].isna(), "reason"].str.startswith("missing")).all()
    assert ALBI().evaluate(table)["grade"].isna().all()  # the table has no albumin or bilirubin


def test_survival_evaluation_lists_the_scores_beside_the_model(tmp_path, capsys):
    """Issue 19: `evaluate` of a survival model also reports every built-in score the manifest's columns allow,
    on the same cases (C-index, log-rank across grades, Kaplan-Meier by grade)."""
    import pandas as pd

    from conftest import write_survival_cohort
    from TACEPredictLib import cli
    manifest, _ = write_survival_cohort(str(tmp_path / "cohort"), cases=120)
    table = pd.read_csv(manifest)
    table["tumor_number"] = np.random.default_rng(1).integers(1, 5, len(table))
    table.to_csv(manifest, index=False)
    assert cli.main(["train", "--task", "survival", "--model", "clinical-cox", "--manifest", manifest,
                     "--out", str(tmp_path / "cox")]) == 0
    assert cli.main(["evaluate", "--model", str(tmp_path / "cox"), "--manifest", manifest,
                     "--out", str(tmp_path / "report"), "--bootstrap", "50"]) == 0
    scores = pd.read_csv(tmp_path / "report" / "clinical_scores.csv").set_index("score")
    assert {"up-to-seven", "six-and-twelve"} <= set(scores.index)
    row = scores.loc["up-to-seven"]
    assert row["cases"] == 120 and 0 < row["c_index"] < 1 and 0 < row["model_c_index_same_cases"] < 1
    assert os.path.isfile(tmp_path / "report" / "km_up-to-seven.png")
    assert "comparator" in capsys.readouterr().out
