"""Model_CS derived on a cohort by paper 004's procedure (univariate logistic screen, stepwise AIC, multivariable
logistic), the cut-offs of the aggressive-progression models (Youden of the out-of-fold probabilities; the
published 0.28 only when asked for; --cutoff), and the paper's citation in every bundle of the task."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib import InputError, cli, models
from TACEPredictLib.data.cohort import CohortData
from TACEPredictLib.models.aggressive_progression import (ClinicalSemanticScore, ModelCSD, PUBLISHED_CSD_CUTOFF,
                                                          derive_clinical_semantic)
from TACEPredictLib.models.registry import PAPERS, set_cutoff
from TACEPredictLib.stats.logistic import fit_logistic, stepwise_aic_terms, univariate_logistic_screen
from TACEPredictLib.stats.splits import stratified_folds

PLANTED = {"tumor_size_mm": 0.02, "cirrhosis": 1.2, "capsule=intact": -1.8}


def planted_table(n=400, seed=1):
    """The paper's candidate factors, drawn independently; aggressive progression from three of them only
    (log-odds -2 + 0.02 x size + 1.2 x cirrhosis - 1.8 x [capsule intact])."""
    rng = np.random.default_rng(seed)
    t = pd.DataFrame({"case_id": [f"c{i:03d}" for i in range(n)], "age": rng.normal(55, 12, n).round(),
                      "sex": rng.choice(["M", "F"], n, p=[.83, .17]), "hbv": rng.integers(0, 2, n),
                      "cirrhosis": rng.integers(0, 2, n), "child_pugh": rng.choice(["A", "B"], n, p=[.85, .15]),
                      "bclc": rng.choice(["0", "A", "B"], n), "tumor_size_mm": rng.uniform(10, 200, n).round(),
                      "tumor_number": rng.integers(1, 5, n), "afp_ng_ml": np.exp(rng.normal(3, 2, n)).round(1),
                      "fusion_lesion": rng.integers(0, 2, n),
                      "capsule": rng.choice(["absent", "non-intact", "intact"], n),
                      "nodule_in_nodule": rng.integers(0, 2, n)})
    lp = -2 + PLANTED["tumor_size_mm"] * t.tumor_size_mm + PLANTED["cirrhosis"] * t.cirrhosis \
        + PLANTED["capsule=intact"] * (t.capsule == "intact")
    t["aggressive_pd"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype(int)
    t["aggressive_pd_days"] = rng.uniform(100, 900, n).round()
    return t


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("cs") / "manifest.csv")
    planted_table().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def refitted(planted):
    return ClinicalSemanticScore().fit(CohortData(planted), seed=0)


def test_logistic_fit_equals_statsmodels():
    sm = pytest.importorskip("statsmodels.api")
    t = planted_table(200, seed=4)
    X = np.column_stack([t.tumor_size_mm, t.cirrhosis, (t.capsule == "intact").astype(float), t.age])
    y = t.aggressive_pd.to_numpy()
    ours = fit_logistic(X, y, ["size", "cirrhosis", "intact", "age"])
    theirs = sm.Logit(y, sm.add_constant(X)).fit(disp=0)
    np.testing.assert_allclose(ours.params, theirs.params, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.se, theirs.bse, rtol=1e-6)
    assert ours.loglik == pytest.approx(theirs.llf, rel=1e-12) and ours.aic == pytest.approx(theirs.aic, rel=1e-12)
    # a factor's likelihood-ratio screen p is statsmodels' LLR p of the univariate model
    design = pd.DataFrame({"capsule=non-intact": (t.capsule == "non-intact").astype(float),
                           "capsule=intact": (t.capsule == "intact").astype(float)})
    screen = univariate_logistic_screen(design, y, {"capsule": list(design.columns)})
    factor = sm.Logit(y, sm.add_constant(design.to_numpy())).fit(disp=0)
    assert screen.loc[0, "p"] == pytest.approx(factor.llr_pvalue, rel=1e-6)  # statsmodels stops at its tolerance and screen.loc[0, "df"] == 2


def test_stepwise_aic_takes_the_best_move_until_none_lowers_the_aic():
    """Each step's AIC is the lowest of every one-term drop / re-add (checked by brute force with statsmodels),
    and the final model's AIC is lower than that of any single move from it."""
    sm = pytest.importorskip("statsmodels.api")
    t = planted_table(250, seed=5)
    design = pd.DataFrame({"size": t.tumor_size_mm, "cirrhosis": t.cirrhosis, "age": t.age, "hbv": t.hbv,
                           "capsule=non-intact": (t.capsule == "non-intact").astype(float),
                           "capsule=intact": (t.capsule == "intact").astype(float)})
    terms = {"size": ["size"], "cirrhosis": ["cirrhosis"], "age": ["age"], "hbv": ["hbv"],
             "capsule": ["capsule=non-intact", "capsule=intact"]}
    y = t.aggressive_pd.to_numpy()

    def aic(chosen):
        columns = [c for term in chosen for c in terms[term]]
        X = sm.add_constant(design[columns].to_numpy(), has_constant="add") if columns else np.ones((len(y), 1))
        return sm.Logit(y, X).fit(disp=0).aic

    fit, kept, trace = stepwise_aic_terms(design, y, terms, list(terms))
    assert set(kept) >= {"size", "cirrhosis", "capsule"}  # the planted terms
    assert fit.aic == pytest.approx(aic(kept), rel=1e-10) == trace["aic"].iloc[-1]
    moves = [[k for k in kept if k != d] for d in kept] + [kept + [a] for a in terms if a not in kept]
    assert min(aic(m) for m in moves) > fit.aic
    for step in range(1, len(trace)):  # every move was the best one available
        before = trace["terms"].iloc[step - 1].split(", ")
        options = [[k for k in before if k != d] for d in before] + [before + [a] for a in terms if a not in before]
        assert trace["aic"].iloc[step] == pytest.approx(min(aic(o) for o in options), rel=1e-9)


def test_refit_recovers_the_planted_predictors(refitted):
    info = refitted.info
    assert {"tumor_size_mm", "cirrhosis", "capsule"} <= set(info["kept"])
    assert {"tumor_size_mm", "cirrhosis", "capsule"} <= set(info["screened"])
    for name, value in PLANTED.items():  # 400 cases: each coefficient within about 2.5 standard errors
        assert refitted.coefficients[name] == pytest.approx(value, abs=0.35 if abs(value) > 0.5 else 0.006), name
    coefficients = pd.DataFrame(refitted.extra["coefficients"]).set_index("term")
    assert coefficients.loc["capsule=intact", "p"] < 1e-4
    assert refitted.label.startswith("Model_CS (derived")


def test_refit_cutoff_is_the_youden_point_of_its_out_of_fold_predictions(planted, refitted):
    data = CohortData(planted)
    _, y = refitted.labelled(data)
    oof = refitted.out_of_fold
    # Youden's point by hand: every observed probability as a threshold (called positive at >=)
    best = max(np.unique(oof), key=lambda c: (np.mean(oof[y == 1] >= c) + np.mean(oof[y == 0] < c), c))
    assert refitted.cutoff == pytest.approx(best, abs=1e-15)
    assert refitted.cutoff_rule.startswith("Youden cut-off of the training cases' out-of-fold")
    # out of fold: fold 2's probabilities are those of the derivation run without fold 2
    table = data.table.reset_index(drop=True)
    held = stratified_folds(y, 5, 0) == 2
    encoder, fit, _, _, _ = derive_clinical_semantic(table[~held], y[~held], encoder=refitted.encoder)
    expected = 1 / (1 + np.exp(-fit.linear_predictor(encoder.transform(table[held], names=fit.names)[fit.names])))
    np.testing.assert_allclose(oof[held], expected, rtol=1e-12)
    # and not the in-sample fit's
    assert np.abs(oof - refitted.probability(data)).max() > 1e-3


def test_train_command_refits_model_cs_into_a_bundle_that_cites_the_paper(planted, tmp_path, capsys):
    out = str(tmp_path / "cs")
    assert cli.main(["train", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", planted,
                     "--out", out]) == 0
    text = capsys.readouterr().out
    assert "Deep Learning-Based Prediction of Future Extrahepatic Metastasis" in text
    with open(os.path.join(out, "model.json")) as handle:
        info = json.load(handle)
    assert info["paper"] == PAPERS["004"]
    for part in ("Fu S, Pan M, Zhang J, et al.", "Deep Learning-Based Prediction of Future Extrahepatic Metastasis "
                 "and Macrovascular Invasion in Hepatocellular Carcinoma", "J Hepatocell Carcinoma"):
        assert part in info["provenance"]
    assert {"univariate.csv", "stepwise.csv", "coefficients.csv"} <= set(os.listdir(out))
    model, _ = models.load(out)
    fitted = ClinicalSemanticScore().fit(CohortData(planted), seed=0)
    assert model.coefficients == pytest.approx(fitted.coefficients) and model.cutoff == fitted.cutoff
    predictions = cli.main(["predict", "--model", out, "--manifest", planted, "--out", str(tmp_path / "p.csv")])
    assert predictions == 0
    p = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(p["probability"], fitted.probability(CohortData(planted)), rtol=1e-12)
    assert set(p["risk_group"]) == {"high", "low"} and (p["cutoff"] == fitted.cutoff).all()
    assert p["provenance"].str.contains("method: " + PAPERS["004"], regex=False).all()


def test_cutoff_option_at_training_and_evaluation(planted, tmp_path, capsys):
    out = str(tmp_path / "cs")
    assert cli.main(["train", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", planted,
                     "--out", out, "--cutoff", "0.4"]) == 0
    model, info = models.load(out)
    assert model.cutoff == 0.4 and "set by the user at training" in model.cutoff_rule
    assert info["settings"]["cutoff"] == "0.4"
    report = str(tmp_path / "r")
    assert cli.main(["evaluate", "--model", out, "--manifest", planted, "--out", report, "--bootstrap", "20",
                     "--cutoff", "0.6"]) == 0
    metrics = pd.read_csv(os.path.join(report, "metrics.csv")).set_index("metric")["value"]
    label = CohortData(planted).table["aggressive_pd"].to_numpy()
    called = model.probability(CohortData(planted)) >= 0.6
    assert metrics["cutoff"] == 0.6 and metrics["sensitivity"] == pytest.approx(called[label == 1].mean())
    capsys.readouterr()
    # bad values name the option; 'published' exists only for Model_CSD
    for bad, message in (("1.5", "is not a cut-off"), ("high", "is not a cut-off"),
                         ("published", "has no published cut-off")):
        assert cli.main(["train", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", planted,
                         "--out", str(tmp_path / "x"), "--cutoff", bad]) == 2
        err = capsys.readouterr().err
        assert "column '--cutoff'" in err and message in err
    assert not os.path.exists(tmp_path / "x")


def test_published_model_cs_has_no_cutoff_unless_given(planted, tmp_path, capsys):
    data = CohortData(planted)
    predictions = ClinicalSemanticScore().predict(data)
    assert (predictions["risk_group"] == "").all() and predictions["cutoff"].isna().all()
    report = str(tmp_path / "r")
    assert cli.main(["evaluate", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", planted,
                     "--out", report, "--bootstrap", "20"]) == 0
    text = capsys.readouterr().out
    assert "no cut-off" in text and "Youden point of these cases" in text
    metrics = pd.read_csv(os.path.join(report, "metrics.csv")).set_index("metric")["value"]
    assert np.isnan(metrics["cutoff"]) and np.isnan(metrics["sensitivity"]) and metrics["auc"] > 0.7
    assert 0 < metrics["youden_cutoff_these_cases"] < 1
    report = str(tmp_path / "r2")
    assert cli.main(["evaluate", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", planted,
                     "--out", report, "--bootstrap", "20", "--cutoff", "0.3"]) == 0
    metrics = pd.read_csv(os.path.join(report, "metrics.csv")).set_index("metric")["value"]
    p = ClinicalSemanticScore().probability(data)
    label = data.table["aggressive_pd"].to_numpy()
    assert metrics["cutoff"] == 0.3 and metrics["specificity"] == pytest.approx((p[label == 0] < 0.3).mean())
    out = str(tmp_path / "p.csv")
    assert cli.main(["predict", "--task", "aggressive-pd", "--model", "clinical-semantic", "--manifest", planted,
                     "--out", out, "--cutoff", "0.3"]) == 0
    assert set(pd.read_csv(out)["risk_group"]) == {"high", "low"}


def test_the_published_028_belongs_to_model_csd_only_and_is_named():
    csd = ModelCSD()
    assert csd.cutoff is None  # set by fit (Youden) or by the option
    set_cutoff(csd, "published")
    assert csd.cutoff == PUBLISHED_CSD_CUTOFF == 0.28 and "the authors' Model_CSD" in csd.cutoff_rule
    with pytest.raises(InputError, match="column '--cutoff'.*no published cut-off"):
        set_cutoff(ClinicalSemanticScore(), "published")
    with pytest.raises(InputError, match="column '--variant'"):
        ModelCSD(variant="paper")


def test_bad_input_to_the_refit_names_case_and_column(planted, tmp_path):
    table = planted_table(60, seed=2)
    table.loc[5, "capsule"] = "thick"
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="case c005, column 'capsule'"):
        ClinicalSemanticScore().fit(CohortData(str(tmp_path / "m.csv")))
    table = planted_table(60, seed=2)
    table["aggressive_pd"] = 0
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="column 'aggressive_pd'"):
        ClinicalSemanticScore().fit(CohortData(str(tmp_path / "m.csv")))
    table = planted_table(60, seed=2)[["case_id", "aggressive_pd", "aggressive_pd_days"]]
    table.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="none of the candidate factors is usable"):
        ClinicalSemanticScore().fit(CohortData(str(tmp_path / "m.csv")))


def test_a_model_csd_bundle_of_an_earlier_version_keeps_its_028_named_as_the_published_one():
    """Bundles written before Model_CSD derived its own cut-off stored 0.28 with the published Model_CS: they load
    with both, the cut-off named as the authors' (their probabilities: test_architecture.py), and their
    predictions cite the paper."""
    import warnings
    legacy = os.path.join(os.path.dirname(__file__), "data", "legacy_bundles", "aggressive-pd__csd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = models.load(legacy)
    assert "paper" not in info and model.provenance.endswith("method: " + PAPERS["004"])
    assert model.cutoff == 0.28 and model.cutoff_rule.startswith("published: 0.28, the Youden cut-off of the authors'")
    assert model.variant == "published-cs" and not model.cs.fitted


def test_a_model_no_better_than_chance_out_of_fold_gets_cutoff_one_with_a_warning():
    from TACEPredictLib import InputWarning
    from TACEPredictLib.models.aggressive_progression import youden_of_out_of_fold
    y = np.array([1, 1, 0, 0, 0])
    with pytest.warns(InputWarning, match="no better than chance"):
        assert youden_of_out_of_fold(y, np.array([0.1, 0.2, 0.3, 0.4, 0.5])) == 1.0  # inverted: Youden index 0
    assert youden_of_out_of_fold(y, np.array([0.9, 0.6, 0.3, 0.6, 0.1])) == 0.6  # by hand: sens 1, spec 2/3
