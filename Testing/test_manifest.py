"""`validate` catches each bad input with a clear line naming the case and the column."""

import os

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from TACEPredictLib import InputError, cli
from TACEPredictLib.data.images import MIN_LESION_VOXELS
from TACEPredictLib.data.manifest import COLUMNS, normalise_value, read_manifest, validate_manifest

from conftest import ct_and_lesion, make_image, write_manifest

GOOD_CLINICAL = {"age": 61, "sex": "M", "bclc": "B", "child_pugh": "A", "ecog": 0, "afp_ng_ml": 25.0,
                 "tumor_size_mm": 48.0, "capsule": "intact", "cirrhosis": 1, "os_days": 500, "os_event": 1,
                 "response": "PR"}


def _case(folder, name, hu=None, labels=None, ct_kwargs=None, seg_kwargs=None):
    default_hu, default_labels = ct_and_lesion()
    hu = default_hu if hu is None else hu
    labels = default_labels if labels is None else labels
    sitk.WriteImage(make_image(hu, **(ct_kwargs or {})), os.path.join(folder, f"{name}_ct.nrrd"))
    sitk.WriteImage(make_image(labels, **(seg_kwargs or {})), os.path.join(folder, f"{name}_seg.nrrd"))
    return {"case_id": name, "ct_ap": f"{name}_ct.nrrd", "seg": f"{name}_seg.nrrd", **GOOD_CLINICAL}


def _errors_by_case(path):
    problems = validate_manifest(path)
    out = {}
    for p in problems:
        if p.severity == "error":
            out.setdefault(p.case_id, []).append(p)
    return out


def _validate_bad(tmp_path, bad_row):
    """A manifest with one good case and one bad one: the bad one is reported, the good one completes."""
    good = _case(str(tmp_path), "good")
    path = write_manifest(str(tmp_path), [good, bad_row])
    errors = _errors_by_case(path)
    assert "good" not in errors, errors.get("good")
    assert "bad" in errors, "the bad case was not reported"
    return errors["bad"]


def test_demo_cohort_validates(demo_cohort):
    problems = validate_manifest(demo_cohort)
    assert problems == []
    manifest = read_manifest(demo_cohort)
    assert len(manifest) == 6
    assert manifest.extra_seg_columns == ["seg_r2"]
    assert set(manifest.table["response"]) <= {"CR", "PR", "SD", "PD"}


def test_missing_file(tmp_path):
    bad = _case(str(tmp_path), "bad")
    bad["ct_ap"] = "nowhere/ct.nrrd"
    (problem,) = _validate_bad(tmp_path, bad)
    assert problem.column == "ct_ap" and "file not found" in problem.message
    assert "nowhere/ct.nrrd" in problem.message


def test_unreadable_file(tmp_path):
    bad = _case(str(tmp_path), "bad")
    with open(tmp_path / "bad_ct.nrrd", "wb") as f:
        f.write(b"this is not an image\n" * 10)
    (problem,) = _validate_bad(tmp_path, bad)
    assert problem.column == "ct_ap" and "cannot read" in problem.message


def test_2d_image(tmp_path):
    bad = _case(str(tmp_path), "bad")
    hu, _ = ct_and_lesion()
    sitk.WriteImage(sitk.GetImageFromArray(hu[6]), str(tmp_path / "bad_ct.nrrd"))
    problems = _validate_bad(tmp_path, bad)
    assert any(p.column == "ct_ap" and "2D image" in p.message for p in problems)


@pytest.mark.parametrize("transform, words", [
    (lambda hu: (hu + 1024).astype(np.uint16), "no negative values"),
    (lambda hu: ((hu + 1000) / 1200.0).astype(np.float32), "normalised"),
    (lambda hu: np.where(np.indices(hu.shape)[0] == 3, np.nan, hu).astype(np.float32), "NaN or infinite"),
    (lambda hu: np.where(np.indices(hu.shape)[1] == 2, np.inf, hu).astype(np.float32), "NaN or infinite"),
])
def test_intensity_not_ct(tmp_path, transform, words):
    hu, _ = ct_and_lesion()
    bad = _case(str(tmp_path), "bad", hu=transform(hu))
    (problem,) = _validate_bad(tmp_path, bad)
    assert problem.column == "ct_ap" and words in problem.message


def test_empty_and_tiny_lesion(tmp_path):
    hu, labels = ct_and_lesion()
    empty = _case(str(tmp_path), "bad", labels=np.zeros_like(labels))
    (problem,) = _validate_bad(tmp_path, empty)
    assert problem.column == "seg" and "holds no segment" in problem.message

    tiny = np.zeros_like(labels)
    tiny[6, 20, 20:23] = 1
    assert tiny.sum() < MIN_LESION_VOXELS
    tiny_row = _case(str(tmp_path), "bad", labels=tiny)
    (problem,) = _validate_bad(tmp_path, tiny_row)
    assert problem.column == "seg" and "3 voxels" in problem.message


def test_unknown_segment_label(tmp_path):
    bad = _case(str(tmp_path), "bad")
    bad["seg_label"] = "Tumor 7"
    (problem,) = _validate_bad(tmp_path, bad)
    assert problem.column == "seg_label" and "no segment 'Tumor 7'" in problem.message
    assert "label 1" in problem.message  # lists what the file holds


def test_segmentation_on_another_grid(tmp_path):
    # Same physical space, coarser grid: fine (it can be resampled); shifted far away: an error.
    hu, labels = ct_and_lesion()
    coarse = labels[:, ::2, ::2]
    resampled = _case(str(tmp_path), "resampled")
    sitk.WriteImage(make_image(coarse, spacing=(1.6, 1.6, 3.0), origin=(-79.6, -89.6, -300.0)),
                    str(tmp_path / "resampled_seg.nrrd"))
    shifted = _case(str(tmp_path), "bad", seg_kwargs={"origin": (120.0, -90.0, -300.0)})
    errors = _errors_by_case(write_manifest(str(tmp_path), [resampled, shifted]))
    assert "resampled" not in errors
    (problem,) = errors["bad"]
    assert problem.column == "seg" and "outside the arterial CT" in problem.message


@pytest.mark.parametrize("column, value, words", [
    ("sex", "X", "use one of M/F"),
    ("bclc", "E", "use one of 0/A/B/C/D"),
    ("capsule", "maybe", "absent/non-intact/intact"),
    ("response", "NE", "CR/PR/SD/PD"),
    ("cirrhosis", "2", "0/1"),
    ("ecog", "1.5", "whole number"),
    ("age", "sixty", "not a number"),
    ("tumor_size_mm", "3.5", "looks like cm"),
    ("albumin_g_l", "3.9", "looks like g/dL"),
    ("os_days", "-20", "cannot be negative"),
])
def test_bad_codes_and_units(tmp_path, column, value, words):
    bad = _case(str(tmp_path), "bad")
    bad[column] = value
    (problem,) = _validate_bad(tmp_path, bad)
    assert problem.column == column
    assert words in str(problem)


def test_whole_column_in_cm(tmp_path):
    rows = [{"case_id": f"c{i}", "tumor_size_mm": size} for i, size in enumerate([5.5, 8.0, 12.0, 6.1, 9.9, 21.0])]
    problems = validate_manifest(write_manifest(str(tmp_path), rows))
    assert [(p.case_id, p.column) for p in problems] == [(None, "tumor_size_mm")]
    assert "multiply the column by 10" in str(problems[0])


def test_table_structure_errors(tmp_path):
    rows = [{"case_id": "a", "os_days": 100}, {"case_id": "a", "os_days": 200}, {"case_id": "", "os_days": 5}]
    problems = validate_manifest(write_manifest(str(tmp_path), rows))
    text = "\n".join(map(str, problems))
    assert "case a, column 'case_id': duplicate case ID" in text
    assert "row 4" in text and "empty case ID" in text
    assert "'os_days' is given but 'os_event' is missing" in text

    path = write_manifest(str(tmp_path), [{"patient": "a"}])
    (problem,) = validate_manifest(path)
    assert problem.column == "case_id" and "no 'case_id' column" in problem.message


def test_pairs_and_image_without_segmentation(tmp_path):
    good = _case(str(tmp_path), "good")
    no_seg = dict(_case(str(tmp_path), "bad"), seg="")
    half_outcome = dict(good, case_id="bad2", os_event="")
    errors = _errors_by_case(write_manifest(str(tmp_path), [good, no_seg, half_outcome]))
    assert [p.column for p in errors["bad"]] == ["seg"]
    assert [p.column for p in errors["bad2"]] == ["os_event"]


def test_clinical_only_manifest_is_valid(tmp_path):
    path = write_manifest(str(tmp_path), [dict(GOOD_CLINICAL, case_id="p1", extra_marker=3.2)])
    assert validate_manifest(path) == []
    manifest = read_manifest(path)
    assert manifest.phases == []
    assert manifest.table.loc[0, "extra_marker"] == "3.2"  # unknown columns are kept


def test_normalisation_of_codes():
    assert normalise_value("sex", "female") == "F"
    assert normalise_value("bclc", "Stage-C") == "C"
    assert normalise_value("child_pugh", "B7") == "B"
    assert normalise_value("capsule", "incomplete") == "non-intact"
    assert normalise_value("cirrhosis", "yes") == 1
    assert normalise_value("albi_grade", 2.0) == "2"
    assert np.isnan(normalise_value("age", ""))
    assert set(COLUMNS) >= {"case_id", "ct_ap", "seg", "tumor_size_mm", "os_days", "aggressive_pd_days"}


def test_read_manifest_refuses_errors(tmp_path):
    path = write_manifest(str(tmp_path), [{"case_id": "x1", "sex": "?"}])
    with pytest.raises(InputError) as info:
        read_manifest(path)
    assert "case x1, column 'sex'" in str(info.value)


def test_cli_exit_code_and_lines(tmp_path, capsys):
    bad = _case(str(tmp_path), "bad")
    bad["sex"] = "unknown"
    path = write_manifest(str(tmp_path), [_case(str(tmp_path), "good"), bad])
    assert cli.main(["validate", "--manifest", path, "--quiet"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ERROR: case bad, column 'sex': 'unknown' is not a valid code -> use one of M/F"
    assert out[-1].endswith("1 error(s), 0 warning(s)")
    pd.DataFrame([_case(str(tmp_path), "good")]).to_csv(path, index=False)
    assert cli.main(["validate", "--manifest", path, "--quiet"]) == 0
