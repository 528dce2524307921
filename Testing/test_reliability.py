"""Hostile but realistic inputs, interrupted runs and tampered bundles, through the command line (issue 16).

Every scenario runs the real command (in process: ``cli.main([...])``; in a subprocess where a process must be
killed or a file system mounted) and asserts what the user sees: one clear message naming the case, the file
or column and the fix, the exit code, no traceback, and that nothing already computed was lost. Each scenario
calls ``record(key, ...)``; docs/reliability.md has one table row per key (checked below), and
``RELIABILITY_TABLE=path pytest Testing/test_reliability.py`` writes the measured rows there.

The disk-full and read-only scenarios mount a small tmpfs in a private mount namespace (``unshare``; root, or a
user namespace where the kernel allows it); the kill -9 scenario kills ``extract --workers 2`` and checks that
no worker survives. Both then rerun and compare with a clean run: exactly the same cases and values.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from TACEPredictLib import InputError, cli
from TACEPredictLib.data.demo_cohort import generate_cohort
from TACEPredictLib.models.bundle import PARAMS_FILE, seal_bundle

from conftest import REPO, ct_and_lesion, make_image, write_survival_cohort

PY = sys.executable
DOC = os.path.join(REPO, "docs", "reliability.md")
ROWS = []
LIGHT_RADIOMICS = """imageType:
  Original: {}
featureClass:
  firstorder: [Mean, Median, Energy]
setting:
  binWidth: 25
"""


def record(key, hostile, command, code, message, kept="yes"):
    """One row of docs/reliability.md: what was tried, what the user saw, the exit code, nothing lost."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    ROWS.append({"key": key, "hostile": hostile, "command": command, "code": code, "message": first[:300],
                 "kept": kept})


@pytest.fixture(scope="module", autouse=True)
def _write_table():
    yield
    path = os.environ.get("RELIABILITY_TABLE")
    if path and ROWS:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(ROWS, handle, indent=1)


def run(capsys, *argv):
    """``tacepredict argv`` in process: (exit code, stdout, stderr); never a traceback."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out, err


def digest(path):
    """SHA-256 of a file, or of every file under a folder (names and contents)."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, dirs, files in sorted(os.walk(path)):
            dirs.sort()
            for name in sorted(files):
                h.update(os.path.relpath(os.path.join(root, name), path).encode())
                with open(os.path.join(root, name), "rb") as handle:
                    h.update(handle.read())
    else:
        with open(path, "rb") as handle:
            h.update(handle.read())
    return h.hexdigest()


def extract_args(manifest, out, params, *extra):
    return ["extract", "--manifest", manifest, "--out", out, "--radiomics-params", params, "--deep", "none",
            "--register", "none", "--icc-cases", "0", "--workers", "1", "--quiet", *extra]


def sorted_features(folder):
    table = pd.read_parquet(os.path.join(folder, "features.parquet"))
    return table.sort_values(["case_id", "phase", "feature"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def light(work):
    path = os.path.join(work, "light.yaml")
    with open(path, "w") as handle:
        handle.write(LIGHT_RADIOMICS)
    return path


@pytest.fixture(scope="module")
def cohort(work):
    """Three synthetic cases with images (the phantom)."""
    return generate_cohort(os.path.join(work, "cohort"), cases=3, seed=5, workers=1)


@pytest.fixture(scope="module")
def clean(cohort, light, work):
    """A clean extraction of the three cases: what every interrupted run must end up equal to."""
    out = os.path.join(work, "clean")
    assert cli.main(extract_args(cohort, out, light)) == 0
    return out


@pytest.fixture(scope="module")
def survival(work):
    """A clinical cohort with a known Cox structure (no images) and a clinical-cox bundle trained on it."""
    manifest, features = write_survival_cohort(os.path.join(work, "survival"), cases=120, seed=7)
    bundle = os.path.join(work, "bundle")
    assert cli.main(["train", "--task", "survival", "--model", "clinical-cox", "--manifest", manifest,
                     "--out", bundle, "--covariates", "age,child_pugh,afp_ng_ml,portal_vein_invasion"]) == 0
    return manifest, features, bundle


def copy_bundle(bundle, folder):
    shutil.copytree(bundle, folder)
    return folder


# ----------------------------------------------------------------------------------------- manifests

def test_european_excel_csv_is_read_and_said_so(survival, work, capsys):
    manifest, _, bundle = survival
    table = pd.read_csv(manifest, dtype=str)
    european = os.path.join(work, "european.csv")
    table.assign(age=table["age"].str.replace(".", ",", regex=False)).to_csv(european, sep=";", index=False)
    code, out, _ = run(capsys, "validate", "--manifest", european, "--table-only", "--quiet")
    assert code == 0 and "semicolon-separated" in out and "decimal comma" in out
    record("csv-semicolon", "semicolon-separated CSV with decimal commas (European Excel)", "validate", code,
           [line for line in out.splitlines() if "semicolon" in line][0], "nothing to lose: read correctly")
    ours, theirs = os.path.join(work, "p_comma.csv"), os.path.join(work, "p_semicolon.csv")
    run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out", ours)
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", european, "--out", theirs)
    assert code == 0 and "semicolon" in err
    pd.testing.assert_frame_equal(pd.read_csv(ours), pd.read_csv(theirs))  # the same numbers: 62,5 is 62.5
    record("csv-semicolon-predict", "the same manifest, semicolon / decimal comma, at predict", "predict", code,
           [line for line in err.splitlines() if "semicolon" in line][0], "predictions equal the comma file's")


def test_excel_workbook_renamed_csv(survival, work, capsys):
    import zipfile
    _, _, bundle = survival
    book = os.path.join(work, "workbook.csv")
    with zipfile.ZipFile(book, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    code, out, _ = run(capsys, "validate", "--manifest", book, "--quiet")
    assert code == 1 and "Excel workbook" in out and "CSV UTF-8" in out
    record("csv-xlsx", ".xlsx workbook renamed .csv", "validate", code, out)
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", book, "--out", os.path.join(work, "x.csv"))
    assert code == 2 and "Excel workbook" in err and not os.path.exists(os.path.join(work, "x.csv"))
    record("csv-xlsx-predict", ".xlsx renamed .csv given to predict", "predict", code, err)


def test_duplicate_column(survival, work, capsys):
    manifest, _, _ = survival
    text = open(manifest).read().splitlines()
    path = os.path.join(work, "twice.csv")
    with open(path, "w") as handle:
        handle.write("\n".join([text[0] + ",age"] + [line + ",70" for line in text[1:]]) + "\n")
    code, out, _ = run(capsys, "validate", "--manifest", path, "--table-only", "--quiet")
    assert code == 1 and "'age' twice" in out and "columns 2 and 13" in out
    record("csv-duplicate-column", "a second `age` column (was silently renamed age.1)", "validate", code, out)


def test_headers_with_spaces_and_capitals_read_alike_at_validate_and_predict(survival, work, capsys):
    manifest, _, bundle = survival
    table = pd.read_csv(manifest, dtype=str)
    messy = os.path.join(work, "messy.csv")
    table.rename(columns={"age": " Age ", "case_id": "Case ID", "portal_vein_invasion": "PORTAL_VEIN_INVASION",
                          "afp_ng_ml": "afp_ng_ml "}).to_csv(messy, index=False)
    code, out, _ = run(capsys, "validate", "--manifest", messy, "--table-only", "--quiet")
    assert code == 0 and "' Age ' -> 'age'" in out and "'Case ID' -> 'case_id'" in out
    record("csv-header-spaces", "headers ' Age ', 'Case ID', 'PORTAL_VEIN_INVASION'", "validate", code,
           [line for line in out.splitlines() if "->" in line][0], "nothing to lose: read correctly")
    plain, odd = os.path.join(work, "p_plain.csv"), os.path.join(work, "p_messy.csv")
    run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out", plain)
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", messy, "--out", odd)
    assert code == 0
    pd.testing.assert_frame_equal(pd.read_csv(plain), pd.read_csv(odd))
    record("csv-header-spaces-predict", "the same headers at predict (were missing there)", "predict", code,
           [line for line in err.splitlines() if "->" in line][0], "predictions equal the clean file's")


def test_malformed_tables(work, capsys):
    cases = {
        "csv-extra-cells": ("case_id,age\na,60,oops\nb,61\n", "row 2", "a row with more cells than the header"),
        "csv-empty": ("", "empty", "an empty manifest file"),
        "csv-latin1": ("case_id,sex\n".encode() + "Jos\xe9,M\n".encode("latin-1"), "UTF-8",
                       "a Latin-1 (not UTF-8) manifest"),
        "csv-no-case-id": ("patient,age\na,60\n", "case_id", "no case_id column"),
        "csv-duplicate-case": ("case_id,age\na,60\na,61\n", "duplicate case ID", "two rows with one case ID"),
    }
    for key, (content, words, hostile) in cases.items():
        path = os.path.join(work, f"{key}.csv")
        with open(path, "wb") as handle:
            handle.write(content.encode() if isinstance(content, str) else content)
        code, out, _ = run(capsys, "validate", "--manifest", path, "--table-only", "--quiet")
        assert code == 1 and words in out, (key, out)
        record(key, hostile, "validate", code, [line for line in out.splitlines() if "ERROR" in line][0])


# ------------------------------------------------------------------------------------------------- images

def _write_dicom_series(folder, volume, spacing):
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spacing)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    study, series = "1.2.826.0.1.3680043.2.1125.1", "1.2.826.0.1.3680043.2.1125.2"
    os.makedirs(folder)
    for i in range(image.GetDepth()):
        plane = image[:, :, i]
        position = "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, i)))
        for tag, value in (("0008|0060", "CT"), ("0020|000d", study), ("0020|000e", series),
                           ("0008|0018", f"{series}.{i + 1}"), ("0020|0032", position),
                           ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(i + 1)), ("0028|1052", "0"),
                           ("0028|1053", "1"), ("0018|0050", str(spacing[2]))):
            plane.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"slice{i:03d}.dcm"))
        writer.Execute(plane)


@pytest.fixture(scope="module")
def images(work):
    """A manifest of one good case and one case per hostile image (each on the good CT otherwise)."""
    folder = os.path.join(work, "images")
    os.makedirs(folder)
    hu, lesion = ct_and_lesion(shape=(12, 40, 40))
    ct = make_image(hu)

    def write(name, image, compress=False):
        sitk.WriteImage(image, os.path.join(folder, name), compress)
        return name

    write("ct.nrrd", ct)
    write("seg.nrrd", make_image(lesion))
    write("ct.nii", ct)
    data = open(os.path.join(folder, "ct.nii"), "rb").read()
    open(os.path.join(folder, "truncated.nii"), "wb").write(data[:len(data) // 3])
    write("ctz.nrrd", ct, True)
    data = open(os.path.join(folder, "ctz.nrrd"), "rb").read()
    open(os.path.join(folder, "truncated_gz.nrrd"), "wb").write(data[:len(data) // 2])
    header = ("NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 1100 1100 1100\n"
              "space directions: (1,0,0) (0,1,0) (0,0,1)\nkinds: domain domain domain\nendian: little\n"
              "encoding: raw\nspace origin: (0,0,0)\n\n")
    open(os.path.join(folder, "huge.nrrd"), "wb").write(header.encode() + b"\0" * 1100)
    write("four_d.nrrd", sitk.JoinSeries([ct, ct]))
    rgb = sitk.Compose([sitk.Cast(sitk.RescaleIntensity(ct), sitk.sitkUInt8)] * 3)
    write("rgb.nrrd", rgb)
    tiny = make_image(hu, spacing=(1e-6, 1e-6, 1e-6))
    write("tiny_spacing.nrrd", tiny)
    write("tiny_spacing_seg.nrrd", make_image(lesion, spacing=(1e-6, 1e-6, 1e-6)))
    # a thin, irregular lesion: a two-pixel band winding through six slices (no 6x6 square fits anywhere)
    thin = np.zeros_like(lesion)
    for z in range(3, 9):
        for i in range(26):
            thin[z, 7 + i, 7 + i + (z % 3):9 + i + (z % 3)] = 1
    write("thin_seg.nrrd", make_image(thin))
    volume = np.clip(hu, -1024, None).astype(np.int16)
    _write_dicom_series(os.path.join(folder, "dicom_gap"), volume, (0.8, 0.8, 3.0))
    os.remove(os.path.join(folder, "dicom_gap", "slice005.dcm"))
    good = {"ct_ap": "ct.nrrd", "ct_pvp": "ct.nrrd", "seg": "seg.nrrd", "age": 60}
    rows = [dict(good, case_id="good"),
            dict(good, case_id="truncated_nifti", ct_pvp="truncated.nii"),
            dict(good, case_id="truncated_gzip", ct_ap="truncated_gz.nrrd"),
            dict(good, case_id="huge_header", ct_ap="huge.nrrd"),
            dict(good, case_id="four_d", ct_pvp="four_d.nrrd"),
            dict(good, case_id="rgb", ct_ap="rgb.nrrd"),
            dict(good, case_id="tiny_spacing", ct_ap="tiny_spacing.nrrd", ct_pvp="tiny_spacing.nrrd",
                 seg="tiny_spacing_seg.nrrd"),
            dict(good, case_id="dicom_gap", ct_pvp="dicom_gap"),
            dict(good, case_id="thin_lesion", seg="thin_seg.nrrd")]
    path = os.path.join(folder, "manifest.csv")
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


IMAGE_CASES = {
    "truncated_nifti": ("img-truncated-nifti", "uncompressed NIfTI cut to a third (read as 0 HU before)",
                        "truncated: its header declares"),
    "truncated_gzip": ("img-truncated-gzip", "gzip NRRD cut in half", "truncated or damaged"),
    "huge_header": ("img-huge-header", "1.4 kB NRRD declaring 1100^3 voxels (allocated 2.8 GB before)",
                    "beyond the 1,073,741,824"),
    "four_d": ("img-4d", "a 4D image (called '2D' before)", "4D image"),
    "rgb": ("img-rgb", "an RGB (vector) image as CT", "3 values per voxel"),
    "tiny_spacing": ("img-spacing", "voxel spacing 1e-6 mm", "voxel spacing"),
    "dicom_gap": ("img-dicom-gap", "a DICOM series missing one slice (interpolated before)", "misses a slice"),
}


def test_hostile_images_are_refused_at_validate_and_extract_keeps_the_good_cases(images, light, work, capsys):
    code, out, _ = run(capsys, "validate", "--manifest", images, "--quiet")
    assert code == 1
    lines = {case: [line for line in out.splitlines() if f"case {case}," in line] for case in IMAGE_CASES}
    for case, (key, hostile, words) in IMAGE_CASES.items():
        assert lines[case] and words in lines[case][0], (case, out)
        record(key, hostile, "validate", code, lines[case][0])
    assert not [line for line in out.splitlines() if "case good," in line or "case thin_lesion," in line], out
    out_dir = os.path.join(work, "images_features")
    code, out, _ = run(capsys, *extract_args(images, out_dir, light))
    assert code == 1 and "2 case(s) extracted" in out
    failures = pd.read_csv(os.path.join(out_dir, "failures.csv")).set_index("case_id")
    assert set(failures.index) == set(IMAGE_CASES)
    for case, (_, _, words) in IMAGE_CASES.items():
        assert words in failures.loc[case, "error"], (case, failures.loc[case, "error"])
    features = pd.read_parquet(os.path.join(out_dir, "features.parquet"))
    assert set(features["case_id"]) == {"good", "thin_lesion"}
    record("img-extract", "the same seven files at extract", "extract", code,
           [line for line in out.splitlines() if line.startswith("FAILED: case huge_header")][0],
           "the good cases are extracted; each bad one is named in failures.csv")


def test_thin_irregular_lesion_extracts_with_every_sampler(images, work):
    """validate accepts it (above), so every sampler must give it patches: the inside sampler degrades to the
    largest square that fits (documented in sampling.inside_patches)."""
    patches_csv = pd.read_csv(os.path.join(work, "images_features", "patches.csv")).set_index("case_id")
    with np.load(os.path.join(work, "images_features", patches_csv.loc["thin_lesion", "file"])) as stored:
        assert {"centre", "inside", "boxes"} <= set(stored.files)
        assert stored["inside"].shape == (1, 1, 224, 224) and stored["boxes"].shape[0] == 6
    record("img-thin-lesion", "a thin irregular lesion (no 6x6 square inside; failed in the inside sampler)",
           "validate + extract", 0, "accepted and extracted: the inside patch is the largest square that fits",
           "extracted")


# -------------------------------------------------------------------------------------------- extraction

def test_case_ids_that_escape_or_collide(cohort, light, work, capsys):
    table = pd.read_csv(cohort, dtype=str)
    root = os.path.dirname(cohort)
    for column in ("ct_ap", "ct_pvp", "ct_dp", "seg", "seg_r2"):
        table[column] = [os.path.join(root, p) if isinstance(p, str) else p for p in table[column]]
    ids = ["a/b", "a_b", "../escape", "Case1", "case1"]
    rows = pd.concat([table.iloc[[i % 3]] for i in range(len(ids))], ignore_index=True).assign(case_id=ids)
    manifest = os.path.join(work, "ids", "manifest.csv")
    os.makedirs(os.path.dirname(manifest))
    rows.to_csv(manifest, index=False)
    out = os.path.join(work, "ids", "features")
    code, text, _ = run(capsys, *extract_args(manifest, out, light, "--phases", "ct_ap"))
    assert code == 0, text
    features = pd.read_parquet(os.path.join(out, "features.parquet"))
    assert features.groupby("case_id").size().to_dict() == {i: 3 for i in ids}  # each once, none lost
    names = [n for n in os.listdir(os.path.join(out, "cache")) if n.endswith(".parquet")]
    assert len({n.lower() for n in names}) == 5
    assert not os.path.exists(os.path.join(work, "ids", "escape")) and not any(
        "escape" in n for n in os.listdir(os.path.join(work, "ids")))
    record("id-collision", "case IDs `a/b` and `a_b`, `Case1` and `case1` (shared one cache entry)", "extract",
           code, text.splitlines()[-1], "every case once in features.parquet")
    record("id-escape", "case ID `../escape` (cache and outputs are built from IDs)", "extract", code,
           "extracted into OUT/cache/___escape-<hash>.*; nothing written outside --out", "yes")


def test_offline_imagenet_weights_say_how_to_get_them(cohort, work, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", os.path.join(work, "empty_torch_home"))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: no network, as offline
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    out = os.path.join(work, "offline")
    code, _, err = run(capsys, "extract", "--manifest", cohort, "--out", out, "--no-radiomics", "--deep",
                       "densenet121", "--weights", "imagenet", "--quiet")
    assert code == 2 and "could not be downloaded" in err and "--weights random" in err and "download" in err
    record("offline-imagenet", "`extract` offline with the default `--weights imagenet` (URLError traceback)",
           "extract", code, err[err.index("ERROR"):])


def test_corrupt_cache_entry_is_recomputed(cohort, clean, light, work, capsys):
    out = os.path.join(work, "corrupt")
    shutil.copytree(clean, out)
    victim = sorted(n for n in os.listdir(os.path.join(out, "cache")) if n.endswith(".parquet"))[0]
    with open(os.path.join(out, "cache", victim), "r+b") as handle:
        handle.truncate(100)
    code, text, err = run(capsys, *extract_args(cohort, out, light))
    assert code == 0 and "(1 computed, 2 from cache)" in text and "unreadable" in err and "computed again" in err
    pd.testing.assert_frame_equal(sorted_features(out), sorted_features(clean))
    record("cache-corrupt", "a truncated per-case cache file (aborted the whole run)", "extract", code,
           [line for line in err.splitlines() if "unreadable" in line][0], "recomputed; equal to a clean run")


def test_a_second_run_on_one_output_folder_is_stopped_and_stale_locks_are_taken_over(cohort, clean, light, work,
                                                                                     capsys):
    from TACEPredictLib.outputs import lock_path
    out = os.path.join(work, "locked")
    shutil.copytree(clean, out)
    before = digest(os.path.join(out, "features.parquet"))
    holder = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        with open(lock_path(out), "w") as handle:
            json.dump({"pid": holder.pid, "host": socket.gethostname(), "started": "2026-01-01T10:00:00+00:00",
                       "command": "extract other.csv"}, handle)
        code, _, err = run(capsys, *extract_args(cohort, out, light))
        assert code == 2 and f"pid {holder.pid}" in err and socket.gethostname() in err and "2026-01-01" in err
        assert digest(os.path.join(out, "features.parquet")) == before
        record("lock-held", "a second `extract` into an output folder another run is writing", "extract", code, err)
    finally:
        holder.kill()
        holder.wait()
    code, text, err = run(capsys, *extract_args(cohort, out, light))  # the holder is dead now: a stale lock
    assert code == 0 and "taken over" in err and not os.path.exists(lock_path(out))
    record("lock-stale", "a lock left by a killed run (its pid is gone)", "extract", code,
           [line for line in err.splitlines() if "taken over" in line][0], "yes")


def test_changed_settings_ask_for_overwrite(cohort, clean, light, work, capsys):
    out = os.path.join(work, "settings")
    shutil.copytree(clean, out)
    before = digest(out)
    code, _, err = run(capsys, *extract_args(cohort, out, light, "--phases", "ct_ap"))
    assert code == 2 and "other settings" in err and "--overwrite" in err and digest(out) == before
    record("extract-overwrite", "`extract` into a folder holding features made with other settings", "extract",
           code, err)
    manifest_in_out = os.path.join(work, "own_input")
    os.makedirs(manifest_in_out)
    shutil.copy(cohort, os.path.join(manifest_in_out, "features.csv"))
    code, _, err = run(capsys, *extract_args(os.path.join(manifest_in_out, "features.csv"), manifest_in_out, light))
    assert code == 2 and "inputs" in err
    record("extract-own-input", "`extract --out` the folder whose features.csv is the manifest", "extract", code, err)


def test_kill_minus_9_leaves_no_worker_and_a_rerun_equals_a_clean_run(cohort, clean, light, work):
    out = os.path.join(work, "killed")
    command = [PY, "-m", "TACEPredictLib.cli"] + extract_args(cohort, out, light)
    command[command.index("--workers") + 1] = "2"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    workers, finished = set(), []
    deadline = time.monotonic() + 300
    cache = os.path.join(out, "cache")
    while time.monotonic() < deadline and (len(workers) < 2 or not finished) and parent.poll() is None:
        workers = {int(p) for p in _children(parent.pid, b"spawn_main")}
        finished = [n for n in os.listdir(cache) if n.endswith(".json")] if os.path.isdir(cache) else []
        time.sleep(0.05)
    assert parent.poll() is None and len(workers) >= 2 and finished, "killed too early or too late"
    children = {int(p) for p in _children(parent.pid, b"multiprocessing")}  # workers and the resource tracker
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    alive = children
    deadline = time.monotonic() + 20
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if _running(pid)}
        time.sleep(0.2)
    assert not alive, f"workers {alive} outlived the killed parent"
    env_run = subprocess.run([PY, "-m", "TACEPredictLib.cli"] + extract_args(cohort, out, light), env=env,
                             capture_output=True, text=True, timeout=600)
    assert env_run.returncode == 0 and "Traceback" not in env_run.stderr, env_run.stderr[-2000:]
    cached = int(re.search(r"(\d+) from cache", env_run.stdout).group(1))
    assert cached >= 1  # what finished before the kill is not computed again
    pd.testing.assert_frame_equal(sorted_features(out), sorted_features(clean))
    record("kill-9", "`kill -9` of `extract --workers 2` (left ~0.9 GB of workers running)", "extract",
           "killed; rerun 0",
           f"no worker left ({len(workers)} killed with the parent); the rerun finished: "
           + env_run.stdout.strip().splitlines()[-1], "rerun equals a clean run")


def _children(pid, marker):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if marker in handle.read():
                        found.append(entry)
    return found


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- disk full and read-only disks

def _namespace_prefix():
    """How to run a script in a private mount namespace where it may mount a tmpfs, or None."""
    if not sys.platform.startswith("linux") or shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m", "--propagation", "private"], ["unshare", "-r", "-m"]):
        probe = subprocess.run(prefix + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && "
                                                    "umount $d && rmdir $d"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


NAMESPACE = _namespace_prefix()
needs_mounts = pytest.mark.skipif(NAMESPACE is None, reason="cannot mount a tmpfs here (no unshare / namespaces)")


def _cache_pages(folder, case_id):
    """Bytes the tmpfs needs for one case's cache entry (whole 4 kB pages)."""
    total = 0
    for name in os.listdir(os.path.join(folder, "cache")):
        if name.startswith(case_id + "."):
            total += -(-os.path.getsize(os.path.join(folder, "cache", name)) // 4096) * 4096
    return total


@needs_mounts
def test_disk_full_during_extraction_keeps_the_previous_result_and_a_rerun_completes(cohort, clean, light, work):
    """A tmpfs sized so that the third case's cache entry fits and the run's tables do not: the run stops with a
    disk-full message, the previous run's files are as they were (not a mixture), and with space again the
    rerun's features equal a clean run's."""
    two = os.path.join(work, "two_cases.csv")
    table = pd.read_csv(cohort, dtype=str)
    root = os.path.dirname(cohort)
    for column in ("ct_ap", "ct_pvp", "ct_dp", "seg", "seg_r2"):
        table[column] = [os.path.join(root, p) if isinstance(p, str) else p for p in table[column]]
    table.iloc[:2].to_csv(two, index=False)
    third = table["case_id"].iloc[2]
    room = _cache_pages(clean, third) + 4096  # the case's cache fits, the outputs (7 files) do not
    mount, keep = os.path.join(work, "tmpfs"), os.path.join(work, "disk_full_result")
    os.makedirs(mount)
    cli_command = f"{PY} -m TACEPredictLib.cli"
    args = " ".join(extract_args("MANIFEST", f"{mount}/out", light))
    script = f"""
set -u
mount -t tmpfs -o size=8m tmpfs {mount}
{cli_command} {args.replace('MANIFEST', two)} > {keep}.1.out 2> {keep}.1.err; echo $? > {keep}.1.code
(cd {mount}/out && sha256sum $(cat run.json | {PY} -c 'import json,sys; print(" ".join(json.load(sys.stdin)["files"]))') \
  run.json) > {keep}.before
dd if=/dev/zero of={mount}/filler bs=4096 2> /dev/null
truncate -s $(( $(stat -c %s {mount}/filler) - {room} )) {mount}/filler
{cli_command} {args.replace('MANIFEST', cohort)} --overwrite > {keep}.2.out 2> {keep}.2.err; echo $? > {keep}.2.code
(cd {mount}/out && sha256sum $(cat {keep}.before | awk '{{print $2}}')) > {keep}.after
ls -a {mount}/out > {keep}.listing
rm {mount}/filler
{cli_command} {args.replace('MANIFEST', cohort)} --overwrite > {keep}.3.out 2> {keep}.3.err; echo $? > {keep}.3.code
cp -r {mount}/out {keep}
"""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(NAMESPACE + ["bash", "-c", script], env=env, timeout=900, check=True)

    def read(suffix):
        return open(f"{keep}.{suffix}").read()
    assert read("1.code").strip() == "0", read("1.err")
    assert read("2.code").strip() == "3", read("2.out") + read("2.err")
    err = read("2.err")
    assert "disk is full" in err and "Traceback" not in err and "run the same command again" in err
    assert f"{mount}/out" in err  # the folder being written
    assert read("before") == read("after")  # the previous run's outputs, byte for byte
    assert ".staging" not in read("listing")
    assert read("3.code").strip() == "0", read("3.err")
    pd.testing.assert_frame_equal(sorted_features(keep), sorted_features(clean))
    record("disk-full", "disk full while `extract` writes its tables (new features.parquet with old tables "
           "before)", "extract", "3; rerun 0", [line for line in err.splitlines() if "disk is full" in line][0],
           "previous outputs byte-identical; the rerun equals a clean run")


@needs_mounts
def test_read_only_output_folder(survival, work):
    manifest, _, bundle = survival
    mount, keep = os.path.join(work, "readonly"), os.path.join(work, "readonly_result")
    os.makedirs(mount)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = f"""
mount -t tmpfs -o ro,size=64k tmpfs {mount}
{PY} -m TACEPredictLib.cli predict --model {bundle} --manifest {manifest} --out {mount}/p.csv > {keep}.out 2> {keep}.err
echo $? > {keep}.code
"""
    subprocess.run(NAMESPACE + ["bash", "-c", script], env=env, timeout=300, check=True)
    err = open(keep + ".err").read()
    assert open(keep + ".code").read().strip() == "3" and "read-only" in err and "Traceback" not in err, err
    record("read-only", "`predict --out` on a read-only file system (traceback before)", "predict", 3, err,
           "nothing written; inputs untouched")


# ------------------------------------------------------------------------------------------ outputs

def test_predict_refuses_to_overwrite_its_manifest_or_a_previous_result(survival, work, capsys):
    manifest, _, bundle = survival
    copy = os.path.join(work, "own.csv")
    shutil.copy(manifest, copy)
    before = digest(copy)
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", copy, "--out", copy)
    assert code == 2 and "inputs" in err and digest(copy) == before
    record("predict-out-is-manifest", "`predict --out` equal to `--manifest` (overwrote the manifest)", "predict",
           code, err)
    out = os.path.join(work, "previous.csv")
    assert run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out", out)[0] == 0
    first = digest(out)
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out", out)
    assert code == 2 and "--overwrite" in err and digest(out) == first
    record("predict-overwrite", "`predict --out` an existing predictions file", "predict", code, err)
    assert run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out", out, "--overwrite")[0] == 0
    code, _, err = run(capsys, "evaluate", "--model", bundle, "--manifest", manifest, "--out", bundle)
    assert code == 2 and "inputs" in err
    record("evaluate-out-is-bundle", "`evaluate --out` the model bundle folder itself", "evaluate", code, err)


def test_split_asks_before_replacing_another_split(survival, work, capsys):
    manifest, _, _ = survival
    path = os.path.join(work, "split", "m.csv")
    os.makedirs(os.path.dirname(path))
    shutil.copy(manifest, path)
    assert run(capsys, "split", "--manifest", path, "--seed", "1")[0] == 0
    train = path.replace(".csv", "_train.csv")
    before = digest(train)
    assert run(capsys, "split", "--manifest", path, "--seed", "1")[0] == 0  # the same split again: fine
    code, _, err = run(capsys, "split", "--manifest", path, "--seed", "2")
    assert code == 2 and "another split" in err and "--overwrite" in err and digest(train) == before
    record("split-overwrite", "`split` again with another seed (replaced m_train.csv)", "split", code, err)
    assert run(capsys, "split", "--manifest", path, "--seed", "2", "--overwrite")[0] == 0
    assert digest(train) != before


def test_train_asks_before_replacing_a_bundle(survival, work, capsys):
    manifest, _, bundle = survival
    target = copy_bundle(bundle, os.path.join(work, "retrain"))
    before = digest(target)
    code, _, err = run(capsys, "train", "--task", "survival", "--model", "clinical-cox", "--manifest", manifest,
                       "--out", target)
    assert code == 2 and "--overwrite" in err and digest(target) == before
    record("train-overwrite", "`train --out` an existing bundle", "train", code, err)


# -------------------------------------------------------------------------------------------------- bundles

def _reseal(bundle):
    """What someone who edits a bundle and also updates its checksums does (model.json's list, then
    checksums.sha256)."""
    from TACEPredictLib.data.images import sha256_file
    path = os.path.join(bundle, "model.json")
    try:
        with open(path) as handle:
            info = json.load(handle)
        if isinstance(info.get("files"), dict):
            info["files"] = {name: sha256_file(os.path.join(bundle, name)) for name in info["files"]
                             if os.path.isfile(os.path.join(bundle, name))}
            with open(path, "w") as handle:
                json.dump(info, handle)
    except ValueError:
        pass
    seal_bundle(bundle)


def _edit_json(path, change, reseal=True):
    with open(path) as handle:
        data = json.load(handle)
    change(data)
    with open(path, "w") as handle:
        json.dump(data, handle)
    if reseal:
        _reseal(os.path.dirname(path))


BUNDLE_CASES = [
    ("bundle-model-json-edited", "model.json edited: synthetic flag and provenance (outside the checksums before)",
     lambda b: _edit_json(os.path.join(b, "model.json"), lambda d: d["training"].update(synthetic=False,
                                                                                         cohort="real hospital"),
                          reseal=False), "does not match the checksum"),
    ("bundle-nan-coefficient", "a NaN coefficient, checksums updated (every case 'low', exit 0 before)",
     lambda b: _edit_json(os.path.join(b, PARAMS_FILE), lambda d: d["coef"].__setitem__(0, float("nan"))),
     "/coef[0] is nan"),
    ("bundle-bad-json", "params.json not JSON, checksums updated (JSONDecodeError before)",
     lambda b: (open(os.path.join(b, PARAMS_FILE), "w").write("{\"coef\": [1, 2,"), _reseal(b)),
     "is damaged (line 1"),
    ("bundle-missing-key", "model.json without 'task', checksums updated (KeyError before)",
     lambda b: _edit_json(os.path.join(b, "model.json"), lambda d: d.pop("task")), "has no 'task'"),
    ("bundle-wrong-type", "model.json 'files' a list, checksums updated (TypeError before)",
     lambda b: _edit_json(os.path.join(b, "model.json"), lambda d: d.update(files=["params.json"])),
     "'files' in"),
    ("bundle-params-missing-key", "params.json without its baseline hazard, checksums updated",
     lambda b: _edit_json(os.path.join(b, PARAMS_FILE), lambda d: d.pop("baseline_cumhaz")),
     "lacks 'baseline_cumhaz'"),
    ("bundle-shape", "coefficients and covariates of different lengths, checksums updated",
     lambda b: _edit_json(os.path.join(b, PARAMS_FILE), lambda d: d["coef"].append(0.5)), "'covariates' but"),
    ("bundle-checksums-garbled", "checksums.sha256 garbled", lambda b: open(os.path.join(b, "checksums.sha256"),
                                                                            "a").write("not a checksum line\n"),
     "is not '<sha256>  <file name>'"),
    ("bundle-file-missing", "params.json deleted", lambda b: os.remove(os.path.join(b, PARAMS_FILE)), "lacks params.json"),
]


@pytest.mark.parametrize("key,hostile,damage,words", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_damaged_bundles_are_refused_naming_the_file(survival, work, capsys, key, hostile, damage, words):
    manifest, _, bundle = survival
    target = copy_bundle(bundle, os.path.join(work, key))
    damage(target)
    out = os.path.join(work, key + ".csv")
    code, _, err = run(capsys, "predict", "--model", target, "--manifest", manifest, "--out", out)
    assert code == 2 and words in err and not os.path.exists(out), err
    record(key, hostile, "predict", code, err, "no predictions written")


def test_a_bundle_written_before_checksums_still_loads_with_a_warning(survival, work, capsys):
    manifest, _, bundle = survival
    old = copy_bundle(bundle, os.path.join(work, "old_bundle"))
    os.remove(os.path.join(old, "checksums.sha256"))  # the layout of bundles written before this change
    out = os.path.join(work, "old.csv")
    code, text, err = run(capsys, "predict", "--model", old, "--manifest", manifest, "--out", out)
    assert code == 0 and "not protected" in err and "unprotected" in text and os.path.isfile(out)
    record("bundle-legacy", "a bundle written before checksums.sha256", "predict", code,
           [line for line in err.splitlines() if "not protected" in line][0], "predicts as before")


def test_signed_bundles(survival, work, capsys):
    pytest.importorskip("cryptography")
    manifest, _, bundle = survival
    signed = copy_bundle(bundle, os.path.join(work, "signed"))
    key = os.path.join(work, "keys", "lab")
    assert run(capsys, "keygen", "--out", key)[0] == 0
    assert run(capsys, "sign-bundle", "--model", signed, "--private-key", key + ".pem")[0] == 0
    code, text, _ = run(capsys, "predict", "--model", signed, "--manifest", manifest, "--out",
                        os.path.join(work, "s1.csv"), "--public-key", key + ".pub.pem")
    assert code == 0 and "signature verified" in text
    code, text, _ = run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out",
                        os.path.join(work, "s0.csv"))
    assert code == 0 and "unsigned" in text
    _edit_json(os.path.join(signed, PARAMS_FILE), lambda d: d["coef"].__setitem__(0, 3.0), reseal=False)
    # a forger rewrites the checksums too; the signature no longer matches them
    signature = open(os.path.join(signed, "checksums.sha256.sig")).read()
    _reseal(signed)
    open(os.path.join(signed, "checksums.sha256.sig"), "w").write(signature)
    code, _, err = run(capsys, "predict", "--model", signed, "--manifest", manifest, "--out",
                       os.path.join(work, "s2.csv"), "--public-key", key + ".pub.pem")
    assert code == 2 and "signature" in err and "does not match" in err
    record("bundle-forged", "a signed bundle whose coefficient and checksums were rewritten", "predict "
           "--public-key", code, err)
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--out",
                       os.path.join(work, "s3.csv"), "--public-key", key + ".pub.pem")
    assert code == 2 and "not signed" in err
    record("bundle-unsigned-key", "an unsigned bundle with --public-key", "predict --public-key", code, err)


def test_features_extracted_with_other_settings_are_refused(survival, work, capsys):
    manifest, features, _ = survival

    def extraction(folder, params):
        with open(os.path.join(folder, "extraction.json"), "w") as handle:
            json.dump({"settings": {"phases": ["ct_ap", "ct_pvp"], "register": "rigid", "radiomics": True,
                                    "radiomics_params": params, "deep": [], "weights": "imagenet",
                                    "sampling": "centre", "normalisation": "zscore"}}, handle)
    trained_on = os.path.join(work, "fast_features")
    shutil.copytree(features, trained_on)
    extraction(trained_on, "ct-fast")
    bundle = os.path.join(work, "lasso")
    assert run(capsys, "train", "--task", "survival", "--model", "lasso-cox", "--manifest", manifest, "--features",
               trained_on, "--out", bundle)[0] == 0
    other = os.path.join(work, "ct_features")
    shutil.copytree(features, other)
    extraction(other, "ct")
    code, _, err = run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--features", other, "--out",
                       os.path.join(work, "lasso.csv"))
    assert code == 2 and "radiomics_params: model 'ct-fast', features 'ct'" in err
    assert "tacepredict extract --manifest" in err and "--radiomics-params ct-fast" in err
    record("features-settings", "features extracted with `ct`, model trained on `ct-fast` (0.600 vs 0.134 before)",
           "predict", code, err)
    code, _, err = run(capsys, "evaluate", "--model", bundle, "--manifest", manifest, "--features", other, "--out",
                       os.path.join(work, "lasso_report"))
    assert code == 2 and "--radiomics-params ct-fast" in err
    record("features-settings-evaluate", "the same at evaluate", "evaluate", code, err)
    assert run(capsys, "predict", "--model", bundle, "--manifest", manifest, "--features", trained_on, "--out",
               os.path.join(work, "lasso_ok.csv"))[0] == 0


# ------------------------------------------------------------------------------------------------ covariates

def test_free_text_duplicated_and_collinear_covariates_are_named(survival, work, capsys):
    manifest, _, _ = survival
    table = pd.read_csv(manifest, dtype=str)
    table["notes"] = [f"seen by dr {i} on day {i * 7}" for i in range(len(table))]
    table["pvi_copy"] = table["portal_vein_invasion"]
    table["pvi_reverse"] = (1 - table["portal_vein_invasion"].astype(int)).astype(str)
    table["age_plus_pvi"] = (table["age"].astype(float) + 10 * table["portal_vein_invasion"].astype(int)).astype(str)
    path = os.path.join(work, "covariates.csv")
    table.to_csv(path, index=False)
    runs = {
        "covariate-free-text": ("age,notes", ("'notes'", "free text"), "a unique free-text column as a covariate (a "
                                "120-level category, hazard ratios of 8e6 before)"),
        "covariate-twice": ("age,age", ("'age' is listed twice",), "`--covariates age,age`"),
        "covariate-duplicate": ("portal_vein_invasion,pvi_copy,age", ("'portal_vein_invasion'", "'pvi_copy'",
                                                                      "duplicates"),
                                "a covariate and its copy (ConvergenceError naming none before)"),
        "covariate-complement": ("portal_vein_invasion,pvi_reverse,afp_ng_ml", ("'portal_vein_invasion'",
                                                                                "'pvi_reverse'", "perfectly"),
                                 "a covariate and its complement (1 - x)"),
        "covariate-collinear": ("age,portal_vein_invasion,age_plus_pvi", ("'age'", "'portal_vein_invasion'",
                                                                           "'age_plus_pvi'", "collinear"),
                                "three covariates, one the sum of the others (age + 10 x PVI)"),
    }
    for key, (covariates, words, hostile) in runs.items():
        out = os.path.join(work, key)
        code, _, err = run(capsys, "train", "--task", "survival", "--model", "clinical-cox", "--manifest", path,
                           "--covariates", covariates, "--p-threshold", "1", "--out", out)
        assert code == 2 and all(w in err for w in words) and not os.path.exists(out), (key, err)
        record(key, hostile, "train", code, err, "no bundle written")


# ------------------------------------------------------------------------------------------------- outcomes

def test_evaluate_on_an_all_censored_set(survival, work, capsys):
    manifest, _, bundle = survival
    censored = os.path.join(work, "censored.csv")
    pd.read_csv(manifest, dtype=str).assign(os_event="0").to_csv(censored, index=False)
    report = os.path.join(work, "censored_report")
    code, _, err = run(capsys, "evaluate", "--model", bundle, "--manifest", censored, "--out", report)
    assert code == 2 and "0 observed death" in err and not os.path.exists(report)
    record("evaluate-censored", "`evaluate` on a test set where every case is censored (traceback before)",
           "evaluate", code, err)


def test_evaluate_binary_with_one_outcome(cohort, work, capsys):
    one = os.path.join(os.path.dirname(cohort), "one_class.csv")
    pd.read_csv(cohort, dtype=str).assign(aggressive_pd="0").to_csv(one, index=False)
    code, _, err = run(capsys, "evaluate", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest",
                       one, "--out", os.path.join(work, "one_class_report"))
    assert code == 2 and "both outcomes" in err
    record("evaluate-one-class", "`evaluate` of a probability model where every case has the same outcome",
           "evaluate", code, err)


def test_net_benefit_takes_one_threshold():
    from TACEPredictLib.stats.metrics import net_benefit
    table = net_benefit([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.3], 0.2)
    assert len(table) == 1 and table["threshold"].iloc[0] == 0.2
    np.testing.assert_allclose(table["model"].iloc[0], net_benefit([0, 1, 1, 0], [0.1, 0.8, 0.6, 0.3],
                                                                   [0.2, 0.5])["model"].iloc[0])
    record("net-benefit-scalar", "`metrics.net_benefit(label, p, 0.2)`: one threshold (IndexError before)",
           "Python API", 0, "a one-row table", "n/a")


# ------------------------------------------------------------------------------------- the boundary itself

def test_missing_inputs_and_interruptions(survival, work, capsys, monkeypatch):
    manifest, _, bundle = survival
    code, _, err = run(capsys, "predict", "--model", os.path.join(work, "no_such_bundle"), "--manifest", manifest,
                       "--out", os.path.join(work, "n.csv"))
    assert code == 2 and "not found" in err
    record("model-missing", "`--model` a folder that does not exist", "predict", code, err)
    code, _, err = run(capsys, "evaluate", "--model", bundle, "--manifest", os.path.join(work, "nope.csv"), "--out",
                       os.path.join(work, "nope_report"))
    assert code == 2 and "manifest not found" in err
    record("manifest-missing", "`--manifest` a file that does not exist", "evaluate", code, err)
    import TACEPredictLib.imaging.extraction as extraction

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(extraction, "extract_cohort", interrupted)
    code, _, err = run(capsys, "extract", "--manifest", manifest, "--out", os.path.join(work, "ctrl_c"), "--quiet")
    assert code == 130 and "run the same command again" in err
    record("ctrl-c", "Ctrl-C during `extract`", "extract", code, err.strip())


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(survival, work, capsys, monkeypatch):
    manifest, _, _ = survival
    import TACEPredictLib.data.manifest as manifest_module

    def broken(*args, **kwargs):
        return 1 / 0
    monkeypatch.setattr(manifest_module, "validate_manifest", broken)
    code, _, err = run(capsys, "validate", "--manifest", manifest)
    assert code == 4 and "unexpected ZeroDivisionError" in err and "--debug" in err
    record("unexpected", "an internal error (a bug) during a command", "validate", code, err)
    assert cli.main(["validate", "--manifest", manifest, "--debug"]) == 4
    assert "Traceback" in capsys.readouterr().err


def test_the_library_boundary_for_the_slicer_logic():
    """``errors.user_errors`` (the Slicer Logic's boundary): an OSError leaves as an InputError that names the
    file and the fix, without the original chained (tracebacks only with TACEPREDICT_DEBUG=1)."""
    from TACEPredictLib.errors import user_errors

    @user_errors
    def write():
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/features.parquet")
    with pytest.raises(InputError, match="disk is full") as caught:
        write()
    assert "/data/out/features.parquet" in str(caught.value) and caught.value.__cause__ is None


def test_the_batch_script_keeps_case_ids_inside_its_output_folder(cohort, work, capsys):
    pytest.importorskip("slicer")
    sys.path.insert(0, os.path.join(REPO, "scripts"))
    import slicer_batch
    table = pd.read_csv(cohort, dtype=str)
    root = os.path.dirname(cohort)
    for column in ("ct_ap", "ct_pvp", "ct_dp", "seg", "seg_r2"):
        table[column] = [os.path.join(root, p) if isinstance(p, str) else p for p in table[column]]
    escape = os.path.join(work, "batch_escape")
    rows = table.iloc[[0, 1]].assign(case_id=["../../batch_escape/x", "/tmp/absolute_case"])
    manifest = os.path.join(work, "batch_manifest.csv")
    rows.to_csv(manifest, index=False)
    out = os.path.join(work, "batch")
    code = slicer_batch.main(["--manifest", manifest, "--out", out, "--no-heatmaps", "--device", "cpu"])
    text, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in text + err, text + err
    assert not os.path.exists(escape) and not os.path.exists("/tmp/absolute_case")
    folders = sorted(n for n in os.listdir(out) if os.path.isdir(os.path.join(out, n)))
    assert len(folders) == 2 and all(os.path.isfile(os.path.join(out, f, f + ".mrml")) for f in folders)
    record("batch-id-escape", "slicer_batch with case IDs `../../batch_escape/x` and `/tmp/absolute_case` (wrote "
           "outside --out)", "slicer_batch.py", code, f"scenes in OUT/{folders[0]}/ and OUT/{folders[1]}/",
           "nothing written outside --out")
    before = digest(os.path.join(out, "cohort_results.csv"))
    code = slicer_batch.main(["--manifest", manifest, "--out", out, "--no-heatmaps", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err and digest(os.path.join(out, "cohort_results.csv")) == before
    record("batch-overwrite", "slicer_batch again into a folder holding a batch result", "slicer_batch.py", code, err)


# ---------------------------------------------------------------------------------------------- the document

def test_every_scenario_is_in_docs_reliability():
    """docs/reliability.md has a row for every ``record`` key of this file, and at least 40 rows."""
    source = open(__file__, encoding="utf-8").read()
    keys = set(re.findall(r'record\("([a-z0-9-]+)"', source))
    keys |= set(re.findall(r'\("(bundle-[a-z0-9-]+)", "', source))
    keys |= {key for key, *_ in IMAGE_CASES.values()}
    keys |= set(re.findall(r'"(c[a-z]+-[a-z0-9-]+)": \(', source))
    doc = open(DOC, encoding="utf-8").read()
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    assert keys - rows == set(), f"scenarios missing from docs/reliability.md: {sorted(keys - rows)}"
    assert rows - keys == set(), f"rows without a test: {sorted(rows - keys)}"
    assert len(rows) >= 40
