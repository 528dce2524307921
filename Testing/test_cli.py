"""The command line end to end: phantom and the demo main job (small)."""

import os

import pandas as pd

from TACEPredictLib import cli

from conftest import HCC_TACE_SEG_CSV


def test_phantom_command(tmp_path, capsys):
    out = str(tmp_path / "cohort")
    assert cli.main(["phantom", "--out", out, "--cases", "2", "--seed", "4", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 synthetic cases" in captured.out and "SYNTHETIC DEMO COHORT" in captured.out
    assert "phantom [" in captured.err and "2/2" in captured.err  # progress with ETA
    assert list(pd.read_csv(os.path.join(out, "manifest.csv"))["case_id"]) == ["demo_0000", "demo_0001"]


def test_demo_main_job(tmp_path, capsys):
    out = str(tmp_path / "run")
    status = cli.main(["demo", "--out", out, "--cases", "3", "--workers", "2", "--hcc-tace-seg", HCC_TACE_SEG_CSV])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "RESEARCH USE ONLY" in text
    assert "cohort/manifest.csv: 0 error(s)" in text
    assert "hcc_tace_seg_manifest.csv: 0 error(s)" in text
    assert len(pd.read_csv(os.path.join(out, "hcc_tace_seg_manifest.csv"))) == 105
    # Features of both phases for every case; offline, the untrained DenseNet121 says so.
    features = pd.read_parquet(os.path.join(out, "features", "features.parquet"))
    assert features["case_id"].nunique() == 3 and set(features["phase"]) == {"ct_ap", "ct_pvp"}
    assert features.groupby(["case_id", "phase"]).size().eq(1223 + 1024).all()
    assert "3 case(s) extracted" in text


def test_bad_manifest_path_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["validate", "--manifest", str(tmp_path / "missing.csv"), "--quiet"]) == 1
    assert "manifest not found" in capsys.readouterr().out


def test_an_interrupted_extraction_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import TACEPredictLib.extract

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TACEPredictLib.extract, "extract_cohort", interrupted)
    status = cli.main(["extract", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 130
    assert "run the same command again to resume" in capsys.readouterr().err
