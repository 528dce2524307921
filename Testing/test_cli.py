"""The command line end to end: phantom and the demo main job (small)."""

import json
import os

import pandas as pd

from TACEPredictLib import cli

from conftest import HCC_TACE_SEG_CSV, write_survival_cohort


def test_phantom_command(tmp_path, capsys):
    out = str(tmp_path / "cohort")
    assert cli.main(["phantom", "--out", out, "--cases", "2", "--seed", "4", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 synthetic cases" in captured.out and "SYNTHETIC DEMO COHORT" in captured.out
    assert "phantom [" in captured.err and "2/2" in captured.err  # progress with ETA
    assert list(pd.read_csv(os.path.join(out, "manifest.csv"))["case_id"]) == ["demo_0000", "demo_0001"]


def test_demo_main_job(tmp_path, capsys):
    out = str(tmp_path / "run")
    # three cases are too few for survival models: those are tested on a larger generated cohort below
    status = cli.main(["demo", "--out", out, "--cases", "3", "--workers", "2", "--hcc-tace-seg", HCC_TACE_SEG_CSV,
                       "--no-models"])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "RESEARCH USE ONLY" in text
    # the project's torch engine, with or without pyradiomics installed (Python 3.12, Slicer 5.10+, has none)
    assert "radiomics (ct preset, torch engine)" in text
    assert "cohort/manifest.csv: 0 error(s)" in text
    assert "hcc_tace_seg_manifest.csv: 0 error(s)" in text
    assert len(pd.read_csv(os.path.join(out, "hcc_tace_seg_manifest.csv"))) == 105
    # Features of both phases for every case; offline, the untrained DenseNet121 says so.
    features = pd.read_parquet(os.path.join(out, "features", "features.parquet"))
    assert features["case_id"].nunique() == 3 and set(features["phase"]) == {"ct_ap", "ct_pvp"}
    # the full ct radiomics preset (original + 8 wavelets + LoG 1-4 mm at 1 mm voxels: 1,223 features per phase)
    assert features.groupby(["case_id", "phase"]).size().eq(1223 + 1024 + 2048).all()
    run = json.load(open(os.path.join(out, "features", "extraction.json")))["settings"]
    assert (run["radiomics_params"], run["radiomics_engine"]) == ("ct", "torch")
    assert "3 case(s) extracted" in text
    # and every case's lesion patches for the image networks
    assert len(pd.read_csv(os.path.join(out, "features", "patches.csv"))) == 3


def test_bad_manifest_path_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["validate", "--manifest", str(tmp_path / "missing.csv"), "--quiet"]) == 1
    assert "manifest not found" in capsys.readouterr().out


def test_an_interrupted_extraction_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import TACEPredictLib.imaging.extraction

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TACEPredictLib.imaging.extraction, "extract_cohort", interrupted)
    status = cli.main(["extract", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_train_evaluate_predict_commands(tmp_path, capsys):
    manifest, features = write_survival_cohort(str(tmp_path / "cohort"), cases=160, seed=2)
    assert cli.main(["split", "--manifest", manifest, "--seed", "1"]) == 0
    train, test = (manifest.replace(".csv", f"_{part}.csv") for part in ("train", "test"))
    assert len(pd.read_csv(train)) == 112 and len(pd.read_csv(test)) == 48
    model = str(tmp_path / "nomogram")
    assert cli.main(["train", "--task", "survival", "--model", "nomogram", "--variant", "clinical",
                     "--manifest", train, "--out", model]) == 0
    out = capsys.readouterr().out
    assert "trained survival / nomogram" in out and "112 cases" in out and "RESEARCH USE ONLY" in out
    assert {"model.json", "params.json", "hazard_ratios.csv", "stepwise.csv", "nomogram.png"} <= set(os.listdir(model))
    report = str(tmp_path / "report")
    assert cli.main(["evaluate", "--model", model, "--manifest", test, "--out", report, "--bootstrap", "50"]) == 0
    assert "C-index" in capsys.readouterr().out
    metrics = pd.read_csv(os.path.join(report, "metrics.csv")).set_index("metric")["value"]
    assert 0.5 < metrics["c_index"] < 1 and metrics["cases"] == 48
    assert {"kaplan_meier.png", "calibration.png", "time_dependent_auc.png", "predictions.csv"} <= set(os.listdir(report))
    predictions = str(tmp_path / "predictions.csv")
    # a manifest without outcomes predicts too
    pd.read_csv(test).drop(columns=["os_days", "os_event"]).to_csv(tmp_path / "new.csv", index=False)
    assert cli.main(["predict", "--model", model, "--manifest", str(tmp_path / "new.csv"), "--out", predictions]) == 0
    table = pd.read_csv(predictions)
    assert list(table.columns[:9]) == ["case_id", "task", "model", "risk_score", "risk_group", "cutoff", "surv_1y",
                                       "surv_2y", "surv_3y"]
    assert table["notice"].str.contains("RESEARCH USE ONLY").all() and table["provenance"].str.contains("nomogram").all()
    # an image model without --features says what to give
    assert cli.main(["train", "--task", "survival", "--model", "dlop", "--manifest", train, "--out",
                     str(tmp_path / "dlop")]) == 2
    assert "--features" in capsys.readouterr().err


def test_survival_validation_runs_compare_models_on_held_out_cases(tmp_path):
    from TACEPredictLib.stats.validation import run_survival_validation
    manifest, features = write_survival_cohort(str(tmp_path / "cohort"), cases=180, seed=4)
    runs = [("clinical-cox", "clinical-cox", {}), ("nomogram-clinical", "nomogram", {"variant": "clinical"}),
            ("dlop-ct-cox", "dlop", {"variant": "ct-cox"})]
    table, summary = run_survival_validation(manifest, features, str(tmp_path / "out"), runs=runs, n_bootstrap=50)
    assert list(table["run"]) == ["clinical-cox", "nomogram-clinical", "dlop-ct-cox"]
    assert summary["train_cases"] + summary["test_cases"] == 180
    assert table.loc[2, "c_index"] > table.loc[0, "c_index"]  # the image signal adds to the clinical factors
    assert 0 <= table.loc[2, "p_vs_clinical-cox"] <= 1 and pd.isna(table.loc[0, "p_vs_clinical-cox"])
    assert os.path.isfile(tmp_path / "out" / "models" / "nomogram-clinical" / "nomogram.png")
    assert os.path.isfile(tmp_path / "out" / "km_training_vs_compared.png")  # paper 000's Figure 2A, by compare
    assert os.path.isfile(tmp_path / "out" / "reports" / "dlop-ct-cox" / "kaplan_meier.png")


def test_model_stages_run_side_by_side_and_a_failed_stage_does_not_stop_the_others(tmp_path, capsys):
    """The demo's model stages in two processes: each stage's output whole and in order, and a stage that fails
    (here the response stage on a manifest that does not exist) reported as one message while the others finish."""
    manifest, _ = write_survival_cohort(str(tmp_path / "cohort"), cases=120, seed=5)
    survival = (manifest, None, str(tmp_path / "survival"), 0, True)
    status = cli.run_model_stages([
        ("survival-a", cli._demo_survival, survival),
        ("response", cli._demo_response, (str(tmp_path / "missing.csv"), None, str(tmp_path / "response"), 0)),
        ("survival-b", cli._demo_survival, survival[:2] + (str(tmp_path / "survival_b"), 0, True))], workers=2)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert status == 1
    assert "ERROR" in text and "missing.csv" in text
    # printed in the order given but the first (the longest) last, each whole: header, models, summary together
    b, a = text.index("survival_b"), text.rindex("survival models on")
    assert text.index("missing.csv") < b < a
    stage_a = text[a:]
    assert "clinical-cox" in stage_a and "nomogram-clinical" in stage_a and "trained 2 survival model(s)" in stage_a
    for folder in ("survival", "survival_b"):
        assert os.path.isfile(tmp_path / folder / "comparison.csv")


def test_model_stages_on_one_core_run_in_this_process_and_still_report_a_failed_stage(tmp_path, capsys):
    manifest, _ = write_survival_cohort(str(tmp_path / "cohort"), cases=120, seed=5)
    status = cli.run_model_stages([
        ("response", cli._demo_response, (str(tmp_path / "missing.csv"), None, str(tmp_path / "response"), 0)),
        ("survival", cli._demo_survival, (manifest, None, str(tmp_path / "survival"), 0, True))], workers=1)
    captured = capsys.readouterr()
    assert status == 1
    assert "missing.csv" in captured.err and "trained 2 survival model(s)" in captured.out
    assert os.path.isfile(tmp_path / "survival" / "comparison.csv")
