"""Importers from published TACE tables into the cohort manifest.

``import_hcc_tace_seg`` maps the clinical spreadsheet of TCIA's HCC-TACE-Seg collection (Moawad et al. 2021;
105 patients; the "data table" sheet as CSV) onto manifest columns. It returns the manifest table and a
report listing what was mapped, how, and what could not be mapped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError

WEEK_DAYS = 7.0
# Readers' response codes: the collection's glossary does not spell them out; 1..4 follow mRECIST's order.
MRECIST_CODES = {1: "CR", 2: "PR", 3: "SD", 4: "PD"}

HCC_TACE_SEG_REQUIRED = ["TCIA_ID", "age", "Sex", "CPS", "BCLC", "AFP", "OS", "Death_1_StillAliveorLostToFU_0",
                         "TTP", "Censored_0_progressed_1"]

# Manifest columns the table has no source for.
HCC_TACE_SEG_UNMAPPED = {
    "ecog": "the table gives only the BCLC performance-status group (0 / 1-2 / 3-4), kept as 'ps_group'",
    "alt_u_l": "not in the table", "ast_u_l": "not in the table", "albumin_g_l": "not in the table",
    "bilirubin_umol_l": "not in the table", "albi_grade": "not computable without albumin and bilirubin",
    "mvi": "microvascular invasion is a pathology finding the table does not give ('Vascular invasion' is kept "
           "as 'vascular_invasion')",
    "fusion_lesion": "not in the table", "capsule": "not in the table", "nodule_in_nodule": "not in the table",
    "aggressive_pd": "follow-up metastasis / macrovascular invasion are not recorded (baseline 'Metastasis' "
                     "is kept as 'metastasis')",
    "ct_ap": "images are not part of the clinical table", "ct_pvp": "images are not part of the clinical table",
    "seg": "images are not part of the clinical table",
}


def _binary(series, case_ids, column, report):
    values = pd.to_numeric(series, errors="coerce")
    bad = ~values.isin([0, 1]) & series.notna()
    for case_id, value in zip(case_ids[bad], series[bad]):
        report.append(f"case {case_id}: '{column}' = {value!r} is not 0/1; left empty")
    return values.where(values.isin([0, 1]))


def _majority_response(row, columns):
    codes = [int(row[c]) for c in columns if c in row.index and pd.notna(row[c]) and int(row[c]) in MRECIST_CODES]
    if not codes:
        return np.nan
    counts = pd.Series(codes).value_counts()
    top = counts[counts == counts.max()].index
    # Ties go to the first reader's reading when it is among them, else to the worse category.
    choice = codes[0] if codes[0] in top else max(top)
    return MRECIST_CODES[choice]


def import_hcc_tace_seg(csv_path, images=None, manifest_dir=None, progress=None):
    """Map the HCC-TACE-Seg clinical CSV to a manifest table; returns (table, report lines).

    ``images``: the collection's DICOM download (TCIA's tree, any layout works): every patient's arterial /
    portal / delayed series, DICOM SEG and tumour segment are added (``dicom.manifest_from_index``), joined by
    patient ID (``HCC_001`` in both; ``HCC-1`` and ``hcc_0001`` match too), with paths relative to
    ``manifest_dir`` (the folder the manifest will be written to; default: absolute paths)."""
    try:
        raw = pd.read_csv(csv_path)
    except (OSError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read {csv_path} ({exc})", fix="give the CSV export of the 'data table' sheet")
    missing = [c for c in HCC_TACE_SEG_REQUIRED if c not in raw.columns]
    if missing:
        raise InputError(f"{csv_path} lacks the HCC-TACE-Seg columns {missing}", column=missing[0],
                         fix="export the 'data table' sheet of the clinical spreadsheet (V2) as CSV")
    report = []
    ids = raw["TCIA_ID"].astype(str).str.strip()
    out = pd.DataFrame({"case_id": ids})
    out["age"] = pd.to_numeric(raw["age"], errors="coerce")
    out["sex"] = raw["Sex"].map({1: "M", 2: "F"})
    report.append("sex: 1 -> M, 2 -> F (glossary)")
    out["bclc"] = raw["BCLC"].astype(str).str.replace(r"^Stage[-_ ]*", "", regex=True).str.strip().str.upper()
    out["child_pugh"] = raw["CPS"].astype(str).str.strip().str.upper()
    out["afp_ng_ml"] = pd.to_numeric(raw["AFP"], errors="coerce")
    if "Tr_Size" in raw.columns:
        out["tumor_size_mm"] = pd.to_numeric(raw["Tr_Size"], errors="coerce") * 10.0
        report.append(f"tumor_size_mm: Tr_Size (cm) x 10; empty for {int(out['tumor_size_mm'].isna().sum())} "
                      "patients in the source")
    if "tumor_nodul" in raw.columns:
        nodular = raw["tumor_nodul"].astype(str).str.strip().str.lower()
        out["tumor_number"] = np.where(nodular == "uninodular", 1.0, np.nan)
        out["multinodular"] = (nodular == "multinodular").astype(int)
        report.append("tumor_number: uninodular -> 1; multinodular -> empty (the count is not given), "
                      "with 'multinodular' = 1 kept as a covariate")
    if "Evidence_of_cirh" in raw.columns:
        out["cirrhosis"] = _binary(raw["Evidence_of_cirh"], ids, "Evidence_of_cirh", report)
    if "hepatitis" in raw.columns:
        hepatitis = raw["hepatitis"].astype(str)
        out["hbv"] = hepatitis.str.contains("HBV").astype(int)
        out["hcv"] = hepatitis.str.contains("HCV").astype(int)
        report.append("hbv / hcv: from 'hepatitis' (HBV only, HCV only, HCV and HBV, No virus)")
    if "Portal Vein Thrombosis" in raw.columns:
        out["portal_vein_invasion"] = _binary(raw["Portal Vein Thrombosis"], ids, "Portal Vein Thrombosis", report)
        report.append("portal_vein_invasion: from 'Portal Vein Thrombosis' (the table does not say whether the "
                      "thrombus is tumoural)")
    if "PS_bclc_0_0_1-2_1_3-4_3" in raw.columns:
        out["ps_group"] = raw["PS_bclc_0_0_1-2_1_3-4_3"].map({0: "0", 1: "1-2", 3: "3-4"})

    out["os_days"] = pd.to_numeric(raw["OS"], errors="coerce") * WEEK_DAYS
    out["os_event"] = _binary(raw["Death_1_StillAliveorLostToFU_0"], ids, "Death_1_StillAliveorLostToFU_0", report)
    out["ttp_days"] = pd.to_numeric(raw["TTP"], errors="coerce") * WEEK_DAYS
    out["progression_event"] = _binary(raw["Censored_0_progressed_1"], ids, "Censored_0_progressed_1", report)
    report.append("os_days / ttp_days: OS and TTP in weeks x 7; os_event = Death_1_StillAliveorLostToFU_0, "
                  "progression_event = Censored_0_progressed_1")

    readers = [c for c in ("1_mRECIST", "2_mRECIST", "3_mRECIST") if c in raw.columns]
    if readers:
        out["response"] = raw.apply(_majority_response, axis=1, columns=readers)
        for i, column in enumerate(readers, start=1):
            out[f"response_reader{i}"] = pd.to_numeric(raw[column], errors="coerce").map(MRECIST_CODES)
        report.append(f"response: majority of {', '.join(readers)} (codes 1..4 read as CR, PR, SD, PD: the "
                      "glossary does not spell them out); ties -> reader 1; each reader kept as response_readerN; "
                      f"empty for {int(out['response'].isna().sum())} patients")

    extras = {"Vascular invasion": "vascular_invasion", "Metastasis": "metastasis", "Lymphnodes": "lymph_nodes",
              "Alcohol": "alcohol", "Smoking": "smoking", "Diabetes": "diabetes", "AFP_group": "afp_group",
              "T_involvment": "tumor_involvement", "CLIP_Score": "clip_score", "Okuda": "okuda", "TNM": "tnm",
              "Pathology": "pathology", "chemotherapy": "tace_chemotherapy"}
    for source, name in extras.items():
        if source in raw.columns:
            out[name] = raw[source]
    report.append("kept as extra covariates: " + ", ".join(n for s, n in extras.items() if s in raw.columns))
    for column, why in HCC_TACE_SEG_UNMAPPED.items():
        if images is not None and column in IMAGE_COLUMNS:
            continue
        report.append(f"not mapped: {column}: {why}")
    if images is not None:
        out = _join_images(out, images, manifest_dir, report, progress)
    return out, report


IMAGE_COLUMNS = ("ct_ap", "ct_pvp", "ct_dp", "seg", "seg_label")


def patient_key(value):
    """A patient ID in one spelling: 'HCC_001', 'hcc-1', 'HCC 0001' -> 'HCC_001'; others upper-cased."""
    import re
    text = str(value).strip().upper()
    match = re.fullmatch(r"HCC[\s_-]*0*(\d+)", text)
    return f"HCC_{int(match.group(1)):03d}" if match else text


def _join_images(table, images, manifest_dir, report, progress=None):
    """The clinical table with the image columns of ``dicom.manifest_from_index`` joined by patient ID."""
    import os

    from .dicom import index_dicom, manifest_from_index
    if not os.path.isdir(images):
        raise InputError(f"image folder not found: {images}", column="images",
                         fix="give the folder of the collection's DICOM download")
    root = os.path.abspath(manifest_dir) if manifest_dir else None
    index = index_dicom(images, relative_to=root, progress=progress)
    if index.empty:
        raise InputError(f"no DICOM files under {images}", column="images",
                         fix="give the folder of the collection's DICOM download")
    imaging, lines = manifest_from_index(index, root=root)
    imaging["_key"] = imaging["case_id"].map(patient_key)
    keys = table["case_id"].map(patient_key)
    matched = imaging[imaging["_key"].isin(set(keys))]
    unmatched_images = sorted(imaging.loc[~imaging["_key"].isin(set(keys)), "case_id"])
    without_images = sorted(table.loc[~keys.isin(set(imaging["_key"])), "case_id"])
    image_columns = [c for c in imaging.columns if c not in ("case_id", "_key")]
    joined = table.assign(_key=keys).merge(matched.drop(columns=["case_id"]), on="_key", how="left")
    joined = joined.drop(columns=["_key"])
    first = ["case_id"] + [c for c in IMAGE_COLUMNS if c in image_columns]
    rest = [c for c in joined.columns if c not in first and c not in image_columns]
    joined = joined[first + rest + [c for c in image_columns if c not in first]]
    with_seg = int(joined["seg"].notna().sum())
    report.append(f"images: {index['series_uid'].nunique()} series of {index['patient_id'].nunique()} patients "
                  f"indexed under {images}; {len(matched)} patients joined to the clinical table, {with_seg} "
                  "with a segmentation and its tumour segment")
    for column in ("ct_ap", "ct_pvp", "ct_dp"):
        report.append(f"images: {column} filled for {int(joined[column].notna().sum())} of {len(joined)} patients")
    if unmatched_images:
        report.append(f"not matched: {len(unmatched_images)} imaged patient(s) without a clinical row: "
                      + ", ".join(unmatched_images))
    if without_images:
        report.append(f"not matched: {len(without_images)} clinical row(s) without images: "
                      + ", ".join(without_images[:20]) + (" ..." if len(without_images) > 20 else ""))
    report.extend(f"images: {line}" for line in lines)
    return joined
