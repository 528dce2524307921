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
from . import models
from .covariates import CohortData, complete_outcome_rows, survival_outcome
from .manifest import _read_csv
from .report import evaluate_survival

# (run name, model kind, options): seed 000's models, seed 001's DLOP-Combin and its comparators, baselines.
SURVIVAL_RUNS = (
    ("clinical-cox", "clinical-cox", {}),
    ("nomogram-clinical", "nomogram", {"variant": "clinical"}),
    ("nomogram-integrated", "nomogram", {"variant": "integrated"}),
    ("signature", "signature", {}),
    ("lasso-cox", "lasso-cox", {}),
    ("dlop", "dlop", {"variant": "combined"}),
    ("dlop-ct-only", "dlop", {"variant": "ct-only"}),
    ("dlop-ct-cox", "dlop", {"variant": "ct-cox"}),
)
CLINICAL_REFERENCES = ("clinical-cox", "nomogram-clinical")


def split_manifest(manifest_path, test_fraction=0.3, seed=0, stratify="os_event"):
    """Write ``<name>_train.csv`` and ``<name>_test.csv`` next to the manifest (so relative paths still
    resolve), stratified by ``stratify`` when the column exists. Returns both paths."""
    table = _read_csv(manifest_path)
    labels = pd.to_numeric(table[stratify], errors="coerce").fillna(-1).to_numpy() if stratify in table else \
        np.zeros(len(table))
    rng = np.random.default_rng(seed)
    test = np.zeros(len(table), dtype=bool)
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        rng.shuffle(idx)
        test[idx[:int(round(test_fraction * len(idx)))]] = True
    stem = os.path.splitext(os.path.abspath(manifest_path))[0]
    paths = (stem + "_train.csv", stem + "_test.csv")
    table[~test].to_csv(paths[0], index=False)
    table[test].to_csv(paths[1], index=False)
    return paths


def _ground_truth(data):
    """The phantom's latent OS predictors for the cohort's cases, when it is the synthetic demo cohort."""
    path = os.path.join(os.path.dirname(data.manifest_path), "ground_truth.csv")
    if not os.path.isfile(path):
        return None
    from .phantom import OS_COEF
    truth = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id").loc[data.case_ids]
    truth["lp_os_image"] = sum(OS_COEF[k] * truth[k] for k in ("zs", "zh", "zn", "ze"))
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
    os.makedirs(out_dir, exist_ok=True)
    train_path, test_path = split_manifest(manifest_path, test_fraction, seed)
    train = CohortData(train_path, features_dir)
    test = CohortData(test_path, features_dir)
    rows, risks = [], {}
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
        result, predictions = evaluate_survival(model, test, os.path.join(out_dir, "reports", name),
                                                n_bootstrap=n_bootstrap, seed=seed, train_data=train)
        risks[name] = predictions["risk_score"].to_numpy()
        rows.append({"run": name, "model": kind, **options, "train_seconds": seconds, "c_index_train": apparent,
                     **result})
        log(f"  {name:20s} C-index held-out {result['c_index']:.3f} "
            f"({result['c_index_lower']:.3f}-{result['c_index_upper']:.3f}), train {seconds:.1f} s")
    table = pd.DataFrame(rows)
    for reference in CLINICAL_REFERENCES:
        if reference not in risks:
            continue
        p_values, diffs = [], []
        for name in table["run"]:
            if name == reference:
                p_values.append(np.nan)
                diffs.append(0.0)
                continue
            test_result = M.compare_concordance(test_time, risks[name], risks[reference], test_event,
                                                n_bootstrap=n_bootstrap, seed=seed)
            p_values.append(test_result["p"])
            diffs.append(test_result["difference"])
        table[f"c_minus_{reference}"] = diffs
        table[f"p_vs_{reference}"] = p_values
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


def run_response_validation(manifest_path, features_dir, out_dir, seed=0, test_fraction=0.3, n_bootstrap=1000,
                            kinds=None, log=print):
    """Seed 002's five radiomics classifiers of objective response, trained on the same training split as
    the survival models and evaluated on its held-out cases (AUC with DeLong and bootstrap CIs, cut-off
    summary, calibration, decision curve), plus DeLong tests of each against the best. Writes
    ``models/<kind>/``, ``reports/<kind>/`` and ``comparison.csv``; returns ``(table, summary)``."""
    from .report import evaluate_binary
    from .response import KINDS, LABEL, objective_response
    os.makedirs(out_dir, exist_ok=True)
    train_path, test_path = split_manifest(manifest_path, test_fraction, seed)
    train = CohortData(train_path, features_dir)
    test = CohortData(test_path, features_dir)
    test = test.subset(test.table.assign(**{LABEL: objective_response(test.table)}))
    test = test.subset(test.table[test.table[LABEL].notna()])
    rows, probabilities = [], {}
    total = 0.0
    for kind in kinds or KINDS:
        start = clock.perf_counter()
        model, info = models.train_bundle("response", kind, train, os.path.join(out_dir, "models", kind), seed=seed)
        seconds = clock.perf_counter() - start
        total += seconds
        result, predictions = evaluate_binary(model, test, LABEL, os.path.join(out_dir, "reports", kind),
                                              n_bootstrap=n_bootstrap, seed=seed)
        probabilities[kind] = predictions["probability"].to_numpy()
        rows.append({"model": kind, "features": len(model.features), "train_seconds": seconds,
                     "auc_train_out_of_fold": info["metrics"]["auc_training_out_of_fold"], **result})
        log(f"  {kind:9s} AUC held-out {result['auc']:.3f} ({result['auc_delong_lower']:.3f}-"
            f"{result['auc_delong_upper']:.3f}), {len(model.features)} features, train {seconds:.1f} s")
    table = pd.DataFrame(rows)
    best = table.loc[table["auc"].idxmax(), "model"]
    label = test.table[LABEL].to_numpy(dtype=int)
    tests = [M.delong_test(label, probabilities[best], probabilities[k]) if k != best else None
             for k in table["model"]]
    table["delong_p_vs_best"] = [t["p"] if t else np.nan for t in tests]
    table.to_csv(os.path.join(out_dir, "comparison.csv"), index=False)
    summary = {"train_cases": len(train.table), "test_cases": len(label), "test_responders": int(label.sum()),
               "best": best, "train_seconds_all_models": total, "synthetic": train.synthetic}
    with open(os.path.join(out_dir, "validation.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    return table, summary
