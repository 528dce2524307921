"""Paper 000's clinical coding of the nomograms (age > 55, AFP > 400 ng/mL, ALT > 50 U/L, AST > 40 U/L, size
> 5 cm, >= 3 tumours, ECOG >= 1), stored in the bundle and applied again at prediction, and the citation of
its paper in every bundle's provenance, on generated cohorts."""

import importlib.util
import json
import os
import re
import warnings

import numpy as np
import pandas as pd
import pytest

from TACEPredictLib import InputError, cli, models
from TACEPredictLib.data.cohort import ClinicalEncoder, CohortData, InputWarning
from TACEPredictLib.models import registry
from TACEPredictLib.models.overall_survival import PAPER_000_CLINICAL, PAPER_000_DICHOTOMIES
from TACEPredictLib.stats.reports import plot_nomogram

LEGACY = os.path.join(os.path.dirname(__file__), "data", "legacy_bundles")
PAPERS_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "papers")
ALT_LOG_HR = 1.0


def _write_step_cohort(folder, cases=240, seed=3):
    """OS hazard with a step at ALT 50 U/L (log HR 1.0 above it) and a PVI effect; ALT itself carries nothing
    else, so a continuous coding sees a weaker, linear trend."""
    rng = np.random.default_rng(seed)
    alt = np.round(rng.uniform(10, 120, cases))
    pvi = (rng.random(cases) < 0.3).astype(int)
    lp = ALT_LOG_HR * (alt > 50) + 0.7 * pvi
    death = rng.exponential(600 / np.exp(lp))
    censor = rng.uniform(300, 1800, cases)
    table = pd.DataFrame({
        "case_id": [f"n{i:03d}" for i in range(cases)], "age": np.round(rng.normal(58, 9, cases), 1),
        "sex": rng.choice(["M", "F"], cases, p=[.8, .2]), "bclc": rng.choice(["B", "C"], cases),
        "child_pugh": rng.choice(["A", "B"], cases, p=[.85, .15]), "ecog": rng.choice([0, 1], cases, p=[.8, .2]),
        "afp_ng_ml": np.round(10 ** rng.normal(2.2, 1.0, cases), 1), "alt_u_l": alt,
        "ast_u_l": np.round(rng.uniform(15, 90, cases)), "tumor_size_mm": np.round(rng.uniform(15, 120, cases), 1),
        "tumor_number": rng.integers(1, 6, cases), "cirrhosis": (rng.random(cases) < .6).astype(int),
        "portal_vein_invasion": pvi, "os_days": np.round(np.minimum(death, censor), 1),
        "os_event": (death <= censor).astype(int)})
    path = os.path.join(folder, "manifest.csv")
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def step(tmp_path_factory):
    folder = tmp_path_factory.mktemp("step")
    manifest = _write_step_cohort(str(folder))
    model, messages = models.train("survival", "nomogram", CohortData(manifest), variant="clinical")
    return {"folder": folder, "manifest": manifest, "model": model, "messages": messages}


def _variant(manifest, path, change):
    table = change(pd.read_csv(manifest))
    table.to_csv(path, index=False)
    return CohortData(str(path))


def test_paper_coding_dichotomises_at_the_papers_cut_offs_boundaries_included():
    # each value at its cut-off is on the lower side (the paper's "<= 55 years", "<= 400 ng/ml", "< 3 nodules")
    columns = {"age": (55, 55.1), "afp_ng_ml": (400, 400.5), "alt_u_l": (50, 51), "ast_u_l": (40, 40.5),
               "tumor_size_mm": (50, 50.1), "tumor_number": (2, 3), "ecog": (0, 1)}
    table = pd.DataFrame({"case_id": ["at", "past"], **{c: list(v) for c, v in columns.items()}})
    encoder = ClinicalEncoder(dichotomies=PAPER_000_DICHOTOMIES).fit(table, list(columns))
    design = encoder.transform(table)
    assert list(design.columns) == ["age>55", "afp_ng_ml>400", "alt_u_l>50", "ast_u_l>40", "tumor_size_mm>50",
                                    "tumor_number>=3", "ecog>=1"]
    assert design.loc["at"].tolist() == [0.0] * 7 and design.loc["past"].tolist() == [1.0] * 7
    assert encoder.labels()["tumor_size_mm>50"] == "largest tumour > 5 cm"
    # far from the cut-off is the same indicator: 5 U/L and 50 U/L code alike, 51 and 500 alike
    far = pd.DataFrame({"case_id": ["a", "b"], **{c: [v[0] / 10 if c != "ecog" else 0, v[1] * 10]
                                                  for c, v in columns.items()}})
    np.testing.assert_array_equal(encoder.transform(far).to_numpy(), design.to_numpy())


def test_the_nomogram_codes_as_the_paper_by_default_and_finds_the_step(step):
    model = step["model"]
    assert model.clinical_coding == "paper" and model.extra["clinical_coding"] == "paper"
    assert "alt_u_l>50" in model.covariates and "alt_u_l" not in model.encoder.names
    # the paper's candidate factors only: capsule, albumin... are not candidates
    assert {item["column"] for item in model.encoder.spec} <= set(PAPER_000_CLINICAL)
    hr = model.hazard_ratios().set_index("covariate").loc["alt_u_l>50"]
    assert hr["hr_lower"] < np.exp(ALT_LOG_HR) < hr["hr_upper"]
    continuous, _ = models.train("survival", "nomogram", CohortData(step["manifest"]), variant="clinical",
                                 clinical_coding="continuous")
    assert continuous.clinical_coding == "continuous" and "alt_u_l" in continuous.encoder.names
    assert not any(">" in name for name in continuous.encoder.names)


def test_the_bundle_stores_the_coding_and_applies_it_to_new_patients(step, tmp_path):
    model = step["model"]
    data = CohortData(step["manifest"])
    models.save(model, str(tmp_path / "bundle"), data, seed=0)
    with open(tmp_path / "bundle" / "params.json", encoding="utf-8") as handle:
        params = json.load(handle)
    assert params["clinical_coding"] == "paper"
    item = next(i for i in params["encoder"]["spec"] if i["column"] == "alt_u_l")
    assert (item["kind"], item["operator"], item["threshold"]) == ("dichotomy", ">", 50.0)
    loaded, _ = models.load(str(tmp_path / "bundle"))
    assert loaded.clinical_coding == "paper" and loaded.variant == "clinical"
    pd.testing.assert_frame_equal(loaded.predict(data).drop(columns=["provenance", "notice"]),
                                  model.predict(data).drop(columns=["provenance", "notice"]))
    # one patient at ALT 20, 50, 51 and 500 U/L: the first two and the last two score alike, 51 scores the
    # ALT coefficient more than 50
    first = pd.read_csv(step["manifest"]).iloc[[0] * 4].assign(case_id=["a20", "a50", "a51", "a500"],
                                                               alt_u_l=[20, 50, 51, 500])
    first.to_csv(tmp_path / "new.csv", index=False)
    risk = loaded.predict(CohortData(str(tmp_path / "new.csv"))).set_index("case_id")["risk_score"]
    coef = dict(zip(loaded.covariates, loaded.coef))["alt_u_l>50"]
    assert risk["a20"] == risk["a50"] and risk["a51"] == risk["a500"]
    assert risk["a51"] - risk["a50"] == pytest.approx(coef, abs=1e-12)


def test_a_missing_value_of_a_dichotomised_covariate_is_an_error_naming_case_and_column(step, tmp_path):
    missing = lambda t: t.assign(alt_u_l=t["alt_u_l"].where(t["case_id"] != "n007"))  # noqa: E731
    data = _variant(step["manifest"], tmp_path / "missing.csv", missing)
    with pytest.raises(InputError, match="case n007, column 'alt_u_l'") as error:  # training
        models.train("survival", "nomogram", data, variant="clinical")
    assert "--clinical-coding continuous" in error.value.fix
    with pytest.raises(InputError, match="case n007, column 'alt_u_l'") as error:  # prediction
        step["model"].predict(data)
    assert (error.value.case_id, error.value.column) == ("n007", "alt_u_l")
    # continuous coding imputes the training median, with a warning naming the case
    model, messages = models.train("survival", "nomogram", data, variant="clinical", clinical_coding="continuous")
    assert any("'alt_u_l' is missing for case(s) n007" in m for m in messages)
    # a column the paper coding leaves out because most values are missing is dropped, as before
    mostly = _variant(step["manifest"], tmp_path / "mostly.csv",
                      lambda t: t.assign(ast_u_l=t["ast_u_l"].where(t.index % 2 == 0)))
    model, messages = models.train("survival", "nomogram", mostly, variant="clinical")
    assert any("'ast_u_l' is missing for 120 of 240" in m for m in messages)
    with pytest.raises(InputError, match="clinical coding 'binary'") as error:
        models.make_model("survival", "nomogram", clinical_coding="binary")
    assert error.value.column == "--clinical-coding"


def test_the_nomogram_figure_names_each_cut_off(step, tmp_path):
    axes = plot_nomogram(step["model"], str(tmp_path / "nomogram.png"), "notice")
    assert "ALT > 50 U/L: no / yes" in axes
    assert "portal_vein_invasion: no / yes" in axes and os.path.getsize(tmp_path / "nomogram.png") > 10000


def test_the_command_line_option_trains_and_stores_either_coding(step, tmp_path):
    for coding in ("continuous", None):
        out = tmp_path / f"bundle_{coding}"
        argv = ["train", "--task", "survival", "--model", "nomogram", "--variant", "clinical", "--manifest",
                step["manifest"], "--out", str(out)] + (["--clinical-coding", coding] if coding else [])
        assert cli.main(argv) == 0
        with open(out / "params.json", encoding="utf-8") as handle:
            assert json.load(handle)["clinical_coding"] == (coding or "paper")
        assert os.path.isfile(out / "nomogram.png")
    with pytest.raises(SystemExit):
        cli.main(["train", "--task", "survival", "--model", "nomogram", "--manifest", step["manifest"], "--out",
                  str(tmp_path / "x"), "--clinical-coding", "binary"])


def test_a_bundle_written_before_the_option_codes_continuously(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)  # written before checksums existed
        model, _ = models.load(os.path.join(LEGACY, "survival__nomogram"))
    assert model.clinical_coding == "continuous" and model.variant == "integrated"
    assert not any(item["kind"] == "dichotomy" for item in model.encoder.spec)


def _legacy_data(folder):
    spec = importlib.util.spec_from_file_location("legacy_make", os.path.join(LEGACY, "make.py"))
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    return CohortData(*make.write_inputs(str(folder)))


@pytest.mark.parametrize("bundle,paper", [("survival__nomogram", "000"), ("survival__dlop", "001"),
                                          ("response__logistic", "002"), ("mrecist__resnet50", "003"),
                                          ("aggressive-pd__csd", "004"), ("survival__clinical-cox", "")])
def test_every_bundle_names_the_paper_of_its_method(bundle, paper, tmp_path):
    """A model of each task (and each paper), written again through ``models.save``, the one place every bundle
    is written: model.json's ``paper``, its provenance and every prediction carry the citation."""
    data = _legacy_data(tmp_path / "inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)  # written before checksums existed
        model, info = models.load(os.path.join(LEGACY, bundle))
        saved = models.save(model, str(tmp_path / "bundle"), data, seed=0)
    reloaded, info = models.load(str(tmp_path / "bundle"))
    prediction = reloaded.predict(data)
    if paper:
        citation = registry.PAPERS[paper]
        assert info["paper"] == citation and saved["provenance"].endswith("method: " + citation)
        assert (prediction["provenance"] == saved["provenance"]).all()
        assert re.search(r"doi:10\.\d{4,}/", citation) or paper == "004"  # 004's DOI is not in its text
    else:  # a comparator of the project's: the provenance says it is no published method
        assert info["paper"] == registry.PAPERS[""] and saved["provenance"].endswith("method: " + registry.PAPERS[""])


@pytest.mark.skipif(not os.path.isdir(PAPERS_DIR), reason="the papers' texts are not next to the project")
@pytest.mark.parametrize("paper", ["000", "001", "002", "003", "004"])
def test_each_citation_matches_its_papers_text(paper):
    """Title and DOI of each citation as the paper prints them (001's text carries no DOI or volume: those come
    from the journal's page, 2024;11:385-397; 004's carries neither year nor DOI, so its citation has none)."""
    name = next(n for n in os.listdir(PAPERS_DIR) if n.startswith(paper + "_"))
    with open(os.path.join(PAPERS_DIR, name), encoding="utf-8") as handle:
        text = re.sub(r"\s+", " ", handle.read()).lower()
    citation = registry.PAPERS[paper]
    title = re.sub(r"\s+", " ", citation.split(". ")[1] if ", et al. " not in citation
                   else citation.split(" et al. ")[1].split(". ")[0]).lower()
    assert title in text, title
    doi = re.search(r"doi:(\S+?)\.?$", citation)
    if paper in ("000", "002", "003"):
        assert doi.group(1).lower() in text.replace("doi: ", "doi:").replace("https://doi.org/", "doi:")
    if paper == "004":
        assert doi is None


def test_compare_with_the_training_cohort_draws_paper_000s_cohort_curves(step, tmp_path):
    """`compare --train-manifest`: the two cohorts' Kaplan-Meier, log-rank p and medians with CIs (paper 000's
    Figure 2A and its text), equal to lifelines'."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    from TACEPredictLib.stats import metrics
    from TACEPredictLib.stats.compare import compare_models
    table = pd.read_csv(step["manifest"])
    table.iloc[:150].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[150:].to_csv(tmp_path / "external.csv", index=False)
    train, external = CohortData(str(tmp_path / "train.csv")), CohortData(str(tmp_path / "external.csv"))
    paper, _ = models.train("survival", "nomogram", train, variant="clinical")
    continuous, _ = models.train("survival", "nomogram", train, variant="clinical", clinical_coding="continuous")
    for model in (paper, continuous):
        model.provenance = model.notice = ""
    _, summary = compare_models({"paper": paper, "continuous": continuous}, external, str(tmp_path / "cmp"),
                                train_data=train, n_bootstrap=20, log=None)
    cohorts = summary["training_vs_compared"]
    assert os.path.isfile(tmp_path / "cmp" / "km_training_vs_compared.png")
    assert os.path.isfile(tmp_path / "cmp" / "km_training_vs_compared_at_risk.csv")
    time = np.concatenate([table["os_days"][:150], table["os_days"][150:]])
    event = np.concatenate([table["os_event"][:150], table["os_event"][150:]])
    group = np.repeat(["training", "compared"], [150, len(table) - 150])
    assert cohorts["logrank_p"] == pytest.approx(metrics.logrank_test(time, event, group)["p"], rel=1e-12)
    for name, rows in (("training", slice(0, 150)), ("compared", slice(150, None))):
        fitter = KaplanMeierFitter().fit(table["os_days"][rows], table["os_event"][rows])
        ci = median_survival_times(fitter.confidence_interval_).to_numpy()[0]
        assert cohorts[name]["median_days"] == pytest.approx(fitter.median_survival_time_)
        assert cohorts[name]["cases"] == len(table["os_days"][rows])
        np.testing.assert_allclose([cohorts[name]["median_lower_days"], cohorts[name]["median_upper_days"]], ci)
