"""The HCC-TACE-Seg importer, on the real 105-patient table."""

import pandas as pd
import pytest

from TACEPredictLib import InputError, cli
from TACEPredictLib.data.importers import import_hcc_tace_seg
from TACEPredictLib.data.manifest import validate_manifest

from conftest import HCC_TACE_SEG_CSV


@pytest.fixture(scope="module")
def imported():
    return import_hcc_tace_seg(HCC_TACE_SEG_CSV)


def test_units_and_codes(imported):
    table, _ = imported
    raw = pd.read_csv(HCC_TACE_SEG_CSV)
    assert len(table) == 105 and table["case_id"].is_unique
    first = table.iloc[0]
    assert first["case_id"] == "HCC_001"
    assert first["os_days"] == pytest.approx(350.2857143 * 7)  # weeks -> days
    assert first["ttp_days"] == pytest.approx(197.0 * 7)
    assert first["tumor_size_mm"] == pytest.approx(8.0)  # 0.8 cm
    assert first["bclc"] == "A" and first["child_pugh"] == "A" and first["sex"] == "M"
    assert first["response"] == "CR"  # readers 1, 1, 1
    assert (table["os_event"] == raw["Death_1_StillAliveorLostToFU_0"]).all()
    assert (table["sex"] == raw["Sex"].map({1: "M", 2: "F"})).all()
    assert set(table["bclc"]) <= {"0", "A", "B", "C", "D"}
    assert table["tumor_size_mm"].isna().sum() == raw["Tr_Size"].isna().sum()
    assert table.loc[table.case_id == "HCC_002", "hbv"].item() == 1


def test_response_majority(imported):
    table, _ = imported
    raw = pd.read_csv(HCC_TACE_SEG_CSV).set_index("TCIA_ID")
    codes = {1: "CR", 2: "PR", 3: "SD", 4: "PD"}
    for _, row in table.dropna(subset=["response"]).iterrows():
        readings = [codes[int(raw.loc[row.case_id, f"{r}_mRECIST"])] for r in (1, 2, 3)
                    if pd.notna(raw.loc[row.case_id, f"{r}_mRECIST"])]
        counts = pd.Series(readings).value_counts()
        assert counts[row.response] == counts.max()


def test_report_says_what_cannot_be_mapped(imported):
    _, report = imported
    text = "\n".join(report)
    for column in ("albumin_g_l", "bilirubin_umol_l", "capsule", "aggressive_pd", "ecog", "mvi"):
        assert f"not mapped: {column}:" in text
    assert "weeks x 7" in text


def test_imported_manifest_validates(tmp_path, capsys):
    out = str(tmp_path / "hcc.csv")
    assert cli.main(["import-hcc-tace-seg", "--clinical", HCC_TACE_SEG_CSV, "--out", out]) == 0
    assert validate_manifest(out) == []
    assert "wrote 105 patients" in capsys.readouterr().out


def test_wrong_table(tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"id": [1]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="lacks the HCC-TACE-Seg columns"):
        import_hcc_tace_seg(str(path))
