"""Held-out validation of every survival model on one cohort: split, train, evaluate, compare.

``run_survival_validation`` is what the demo main job and ``scripts/write_validation.py`` (docs/validation.md)
run; anyone can re-run it on their own manifest and extraction folder.
"""

from __future__ import annotations

import json
import os
import time as clock

import numpy as np
import pandas as pd

from . import metrics as M
from .. import InputError, models
from ..data.cohort import CohortData
from ..data.outcomes import complete_outcome_rows, survival_outcome
from ..data.manifest import _read_csv
from .reports import evaluate_survival
from .splits import stratified_holdout

# DLOP-Combin's named CPU-time departure in the demo: the ResNet50 features the demo extracts anyway (seed 003's
# mRECIST head reads them) instead of the paper's ResNet101, which costs 2.2 times as much per case on a CPU
# (scripts/benchmark_backbones.py; docs/survival.md, "DLOP-Combin: published vs default").
DEMO_DLOP_BACKBONE = "resnet50"

# (run name, model kind, options): seed 000's models, seed 001's DLOP-Combin and its comparators, baselines.
SURVIVAL_RUNS = (
    ("clinical-cox", "clinical-cox", {}),
    ("nomogram-clinical", "nomogram", {"variant": "clinical"}),
    ("nomogram-integrated", "nomogram", {"variant": "integrated"}),
    ("signature", "signature", {}),
    ("lasso-cox", "lasso-cox", {}),
    ("dlop", "dlop", {"variant": "combined", "family": DEMO_DLOP_BACKBONE}),
    ("dlop-ct-only", "dlop", {"variant": "ct-only", "family": DEMO_DLOP_BACKBONE}),
    ("dlop-ct-cox", "dlop", {"variant": "ct-cox", "family": DEMO_DLOP_BACKBONE}),
)
CLINICAL_REFERENCES = ("clinical-cox", "nomogram-clinical")


def split_manifest(manifest_path, test_fraction=0.3, seed=0, stratify="os_event", overwrite=True):
    """Write ``<name>_train.csv`` and ``<name>_test.csv`` next to the manifest (so relative paths still
    resolve), stratified by ``stratify`` when the column exists. Returns both paths. With ``overwrite`` False
    (the command line without --overwrite) files holding another split are not replaced; the same split again
    is fine. Both files are written before either replaces its predecessor."""
    from ..outputs import write_file
    table = _read_csv(manifest_path)
    if not 0 < test_fraction < 1:
        raise InputError(f"--test-fraction {test_fraction} is not between 0 and 1", column="--test-fraction",
                         fix="give e.g. 0.3 for 30% held-out cases")
    labels = pd.to_numeric(table[stratify], errors="coerce").fillna(-1).to_numpy() if stratify in table else \
        np.zeros(len(table))
    test = stratified_holdout(labels, test_fraction, seed)
    stem = os.path.splitext(os.path.abspath(manifest_path))[0]
    paths = (stem + "_train.csv", stem + "_test.csv")
    texts = (table[~test].to_csv(index=False), table[test].to_csv(index=False))
    if not overwrite:
        for path, text in zip(paths, texts):
            if os.path.exists(path):
                with open(path, encoding="utf-8", newline="") as handle:
                    same = handle.read() == text
                if not same:
                    raise InputError(f"{path} already exists and holds another split", column="--manifest",
                                     fix="add --overwrite to replace it, or move it away first")

    def writer(text):
        def write(path):
            with open(path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        return write
    for path, text in zip(paths, texts):
        write_file(path, writer(text))
    return paths


def split_data(manifest_path, features_dir, test_fraction=0.3, seed=0):
    """The training and held-out ``CohortData`` of ``split_manifest`` (the split every validation uses)."""
    train_path, test_path = split_manifest(manifest_path, test_fraction, seed)
    return CohortData(train_path, features_dir), CohortData(test_path, features_dir)


def _ground_truth(data):
    """The phantom's latent predictors for the cohort's cases, when it is the synthetic demo cohort, with the
    image parts of the OS and aggressive-progression predictors."""
    path = os.path.join(os.path.dirname(data.manifest_path), "ground_truth.csv")
    if not os.path.isfile(path):
        return None
    from ..data.demo_cohort import APD_COEF, OS_COEF
    truth = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id").loc[data.case_ids]
    truth["lp_os_image"] = sum(OS_COEF[k] * truth[k] for k in ("zs", "zh", "zn", "ze"))
    truth["lp_aggressive_pd_image"] = sum(APD_COEF[k] * truth[k] for k in ("zh", "zn"))
    return truth


def concordance_probability(a, b):
    """P(a and b order a random pair the same way), ties in either counted as one half (Kendall's tau-b based)."""
    from scipy import stats
    return float((stats.kendalltau(a, b).statistic + 1) / 2)


def run_survival_validation(manifest_path, features_dir, out_dir, seed=0, test_fraction=0.3, n_bootstrap=1000,
                            runs=SURVIVAL_RUNS, log=print):
    """Train every model in ``runs`` on a stratified training split and evaluate it on the held-out split.

    Writes ``models/<run>/`` (bundles), ``reports/<run>/`` (metrics, figures), ``comparison.csv`` and
    ``validation.json`` into ``out_dir``; returns ``(comparison table, summary dict)``.
    """
    from .compare import compare_models
    os.makedirs(out_dir, exist_ok=True)
    train, test = split_data(manifest_path, features_dir, test_fraction, seed)
    rows, risks, trained, predictions = [], {}, {}, {}
    test_rows = complete_outcome_rows(test.table, "os")
    test_time, test_event = survival_outcome(test_rows, "os")
    total_train_seconds = 0.0
    for name, kind, options in runs:
        start = clock.perf_counter()
        model, info = models.train_bundle("survival", kind, train, os.path.join(out_dir, "models", name), seed=seed,
                                          **options)
        seconds = clock.perf_counter() - start  # includes writing the bundle and its figure
        total_train_seconds += seconds
        apparent = info["metrics"]["c_index_training_apparent"]
        result, prediction = evaluate_survival(model, test, os.path.join(out_dir, "reports", name),
                                               n_bootstrap=n_bootstrap, seed=seed, train_data=train)
        risks[name] = prediction["risk_score"].to_numpy()
        trained[name], predictions[name] = model, prediction
        rows.append({"run": name, "model": kind, **options, "train_seconds": seconds, "c_index_train": apparent})
        log(f"  {name:20s} C-index held-out {result['c_index']:.3f} "
            f"({result['c_index_lower']:.3f}-{result['c_index_upper']:.3f}), train {seconds:.1f} s")
    # every held-out statistic and paired test through the code of `tacepredict compare`
    compared, _ = compare_models(trained, test, out_dir, references=[r for r in CLINICAL_REFERENCES if r in risks],
                                 train_data=train, n_bootstrap=n_bootstrap, seed=seed, predictions=predictions,
                                 log=None)
    table = pd.DataFrame(rows).join(compared.drop(columns=["model", "label", "cutoff"]))
    # paper 000's Figure 2A (training against held-out cohort) is compare's km_training_vs_compared.png
    summary = {"manifest": os.path.abspath(manifest_path), "features": features_dir, "seed": seed,
               "test_fraction": test_fraction, "train_cases": len(train.table), "test_cases": len(test_rows),
               "test_events": int(test_event.sum()), "train_seconds_all_models": total_train_seconds,
               "synthetic": train.synthetic}
    truth = _ground_truth(test.subset(test_rows))
    if truth is not None:
        summary["ground_truth"] = {
            "c_index_true_lp_os": M.concordance_index(test_time, truth["lp_os"], test_event),
            "c_index_true_image_lp": M.concordance_index(test_time, truth["lp_os_image"], test_event),
        }
        for name in ("signature", "lasso-cox", "dlop-ct-only"):
            if name in risks:
                summary["ground_truth"][f"{name}_concordance_with_true_image_lp"] = concordance_probability(
                    risks[name], truth["lp_os_image"].to_numpy())
    table.to_csv(os.path.join(out_dir, "comparison.csv"), index=False)
    with open(os.path.join(out_dir, "validation.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    return table, summary


def _write_summary(out_dir, table, summary):
    table.to_csv(os.path.join(out_dir, "comparison.csv"), index=False)
    with open(os.path.join(out_dir, "validation.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, default=float)


def run_response_validation(manifest_path, features_dir, out_dir, seed=0, test_fraction=0.3, n_bootstrap=1000,
                            kinds=None, integrations=True, log=print):
    """Seed 002 on the survival models' training split, evaluated on its held-out cases: the five radiomics
    classifiers, the CNN, each classifier's integration with the CNN and with tumour size, and the CNN's with
    tumour size (fitted on the CNN's held-out fifth of the training cases, the ones it has out-of-fold scores
    for). Per model:
    AUC with DeLong and bootstrap CIs, cut-off summary, calibration and decision curve; in ``comparison.csv``
    the DeLong test against the best model and NRI / IDI against the best radiomics classifier; the Spearman
    correlation of all models' outputs (``correlation.csv`` / ``.png``). Returns ``(table, summary)``."""
    from ..data.outcomes import OBJECTIVE_RESPONSE as LABEL, objective_response
    from ..models.initial_response import KINDS, ResponseIntegration
    from .compare import compare_models
    from .reports import evaluate_binary, report_notice
    os.makedirs(out_dir, exist_ok=True)
    train, test = split_data(manifest_path, features_dir, test_fraction, seed)
    test = test.subset(test.table.assign(**{LABEL: objective_response(test.table)}))
    test = test.subset(test.table[test.table[LABEL].notna()])
    rows, predictions, trained, evaluated = [], {}, {}, {}
    total = 0.0

    def evaluate(name, model, seconds, n_features):
        result, prediction = evaluate_binary(model, test, LABEL, os.path.join(out_dir, "reports", name),
                                             n_bootstrap=n_bootstrap, seed=seed)
        predictions[name], evaluated[name] = prediction, model
        rows.append({"model": name, "features": n_features, "train_seconds": seconds, **result})
        log(f"  {name:13s} AUC held-out {result['auc']:.3f} ({result['auc_delong_lower']:.3f}-"
            f"{result['auc_delong_upper']:.3f}), train {seconds:.1f} s")

    for kind in kinds or [m.kind for m in models.models_of("response") if "+" not in m.kind]:
        start = clock.perf_counter()
        model, _ = models.train_bundle("response", kind, train, os.path.join(out_dir, "models", kind), seed=seed)
        seconds = clock.perf_counter() - start
        total += seconds
        trained[kind] = model
        evaluate(kind, model, seconds, len(getattr(model, "features", [])) or np.nan)
    if integrations:
        labelled, y = trained[next(iter(trained))].labelled(train)
        pairs = [(cml, partner) for cml in KINDS if cml in trained for partner in ("cnn", "size")
                 if partner == "size" or "cnn" in trained]
        pairs += [("cnn", "size")] if "cnn" in trained else []  # paper 002's CNN + tumour size
        for first, partner in pairs:
            start = clock.perf_counter()
            name = f"{first}+{partner}"
            model = ResponseIntegration.from_components(name, labelled, trained.get(first) if first != "cnn" else None,
                                                        trained.get("cnn"))
            models.save(model, os.path.join(out_dir, "models", name), train, seed, metrics={
                "auc_training_apparent": M.roc_auc(y, model.probability(labelled))})
            evaluate(name, model, clock.perf_counter() - start,
                     len(trained[first].features) if first != "cnn" else np.nan)
    table = pd.DataFrame(rows)
    label = test.table[LABEL].to_numpy(dtype=int)
    radiomics = table[table["model"].isin(KINDS)]
    reference = radiomics.loc[radiomics["auc"].idxmax(), "model"] if len(radiomics) else table["model"].iloc[0]
    # the paired statistics and the correlation heat map (with the tumour size) through `tacepredict compare`
    compared, compare_summary = compare_models(
        evaluated, test, out_dir, references=[reference], n_bootstrap=n_bootstrap, seed=seed,
        predictions=predictions, notice=report_notice(trained[next(iter(trained))], test), log=None)
    table = table[["model", "features", "train_seconds"]].join(compared.drop(columns=["model"]))
    summary = {"train_cases": len(train.table), "test_cases": len(label), "test_responders": int(label.sum()),
               "best": compare_summary["best"], "reference": reference, "train_seconds_all_models": total,
               "synthetic": train.synthetic}
    _write_summary(out_dir, table, summary)
    return table, summary


def run_mrecist_validation(manifest_path, features_dir, out_dir, seed=0, test_fraction=0.3, n_bootstrap=1000,
                           weights="random", log=print):
    """Seed 003's ResNet-50 on the same split: per-class one-vs-rest ROC / AUC and confusion matrices at patch
    and patient level, and P(objective response) = P(CR) + P(PR) against the objective response (the binary
    report). Returns ``(table, summary)``: one row per level."""
    from ..data.outcomes import OBJECTIVE_RESPONSE as LABEL, objective_response
    from ..models.training import case_mean
    from .compare import mrecist_level
    from .reports import evaluate_binary, report_notice
    os.makedirs(out_dir, exist_ok=True)
    train, test = split_data(manifest_path, features_dir, test_fraction, seed)
    start = clock.perf_counter()
    model, _ = models.train_bundle("mrecist", "resnet50", train, os.path.join(out_dir, "models", "resnet50"),
                                   seed=seed, weights=weights)
    seconds = clock.perf_counter() - start
    test, y_case = model.labelled(test)
    test = test.subset(test.table.assign(**{LABEL: objective_response(test.table)}))
    reports = os.path.join(out_dir, "reports", "resnet50")
    binary, _ = evaluate_binary(model, test, LABEL, reports, n_bootstrap=n_bootstrap, seed=seed)
    notice = report_notice(model, test)
    p_patch, groups = model.patch_probabilities(test)
    levels = {"patch": (y_case[groups], p_patch), "patient": (y_case, case_mean(p_patch, groups, len(y_case)))}
    # confusion matrices and per-class ROC (with DeLong CIs) through the code of `tacepredict compare`
    rows = [{"level": level, **mrecist_level(truth, p, reports, level, f"{level} level, held-out", notice,
                                             n_bootstrap=n_bootstrap, seed=seed)}
            for level, (truth, p) in levels.items()]
    table = pd.DataFrame(rows)
    log("  " + "; ".join(f"{r['level']}: accuracy {r['accuracy']:.3f}, macro AUC {r['auc_macro']:.3f}, "
                         f"AUC of P(OR) {r['auc_objective_response']:.3f}" for r in rows)
        + f" (DeLong CI {binary['auc_delong_lower']:.3f}-{binary['auc_delong_upper']:.3f}), train {seconds:.1f} s")
    summary = {"train_cases": len(train.table), "test_cases": len(y_case), "train_seconds": seconds,
               "objective_response": binary, "model_info": {k: v for k, v in model.info.items() if k != "history"},
               "synthetic": train.synthetic}
    _write_summary(out_dir, table, summary)
    return table, summary


def run_aggressive_validation(manifest_path, features_dir, out_dir, seed=0, test_fraction=0.3, n_bootstrap=1000,
                              log=print):
    """Paper 004 on the same split: Model_CS (published, untrained), Model_D and Model_CSD (trained by the
    paper's procedure: Model_CS derived on the training split), each evaluated on the held-out cases; DeLong, NRI
    (continuous and at Model_CSD's Youden cut-off) and IDI against Model_CS; Kaplan-Meier of time to aggressive
    progression and of OS by Model_CSD's risk groups. Returns ``(table, summary)``."""
    from ..models.aggressive_progression import ClinicalSemanticScore
    from .compare import compare_models
    from .reports import evaluate_binary, report_notice
    os.makedirs(out_dir, exist_ok=True)
    train, test = split_data(manifest_path, features_dir, test_fraction, seed)
    start = clock.perf_counter()
    csd, info = models.train_bundle("aggressive-pd", "csd", train, os.path.join(out_dir, "models", "csd"), seed=seed)
    seconds = clock.perf_counter() - start
    labelled, y = csd.labelled(train)
    models.save(csd.d, os.path.join(out_dir, "models", "model-d"), train, seed, metrics={
        "auc_training_apparent": M.roc_auc(y, csd.d.probability(labelled)),
        **{k: v for k, v in csd.d.info.items() if k.startswith("auc_")}})
    test, _ = csd.labelled(test)
    models_, predictions = {}, {}
    for name, model in (("clinical-semantic", ClinicalSemanticScore()), ("model-d", csd.d), ("csd", csd)):
        result, predictions[name] = evaluate_binary(model, test, "aggressive_pd",
                                                    os.path.join(out_dir, "reports", name), n_bootstrap=n_bootstrap,
                                                    seed=seed)
        models_[name] = model
        log(f"  {name:17s} AUC held-out {result['auc']:.3f} ({result['auc_delong_lower']:.3f}-"
            f"{result['auc_delong_upper']:.3f})")
    probabilities = {name: p["probability"].to_numpy() for name, p in predictions.items()}
    label = test.table["aggressive_pd"].to_numpy(dtype=int)
    # the paired statistics, Kaplan-Meier by risk group (km_<model>_<outcome>.png) and the correlation heat
    # map through `tacepredict compare`
    table, compare_summary = compare_models(
        models_, test, out_dir, references=["clinical-semantic"], n_bootstrap=n_bootstrap, seed=seed,
        predictions=predictions, nri_cutoffs=[csd.cutoff], notice=report_notice(csd, test), log=None)
    best = compare_summary["best"]
    km = compare_summary["kaplan_meier"].get("csd", {})
    log(f"  Model_CSD vs Model_CS: DeLong p {table.set_index('model').loc['csd', 'delong_p_vs_reference']:.3g}; "
        + "; ".join(f"log-rank p ({k}) {v['logrank_p']:.3g}" for k, v in km.items()))
    truth = _ground_truth(test)
    if truth is not None:  # what the demo cohort's images and factors allow at best
        from scipy.stats import spearmanr
        summary_truth = {"auc_true_lp": M.roc_auc(label, truth["lp_aggressive_pd"]),
                         "auc_true_image_part": M.roc_auc(label, truth["lp_aggressive_pd_image"]),
                         "spearman_model_d_true_image_part": float(
                             spearmanr(probabilities["model-d"], truth["lp_aggressive_pd_image"])[0])}
        log("  ground truth: " + ", ".join(f"{k} = {v:.3f}" for k, v in summary_truth.items()))
    summary = {"train_cases": len(train.table), "test_cases": len(label), "test_events": int(label.sum()),
               "ground_truth": summary_truth if truth is not None else {},
               "best": best, "train_seconds": seconds, "csd_coefficients": csd.coefficients,
               "csd_cutoff": csd.cutoff, "csd_cutoff_rule": csd.cutoff_rule,
               "csd_info": {k: v for k, v in csd.info.items() if k != "model_d"}, "kaplan_meier": km,
               "synthetic": train.synthetic}
    _write_summary(out_dir, table, summary)
    return table, summary
