"""Every model of one task on the same cohort, with the paired statistics of that task (``tacepredict compare``).

All five papers validate on a cohort of another centre and compare their models on it: paper 001 the C-indices
(with FDR-adjusted p-values) and the 3-year TD AUCs with their CIs, PPV / NPV and decision curves; papers 002
and 004 DeLong, NRI, IDI, calibration and decision curves, paper 004 also by subgroup (treatment, BCLC stage);
paper 003 confusion matrices and per-class ROC. ``compare_models`` does this for any set of models of one task
(bundle folders, or published scores named ``task:kind``) on any labelled cohort; what it computes is read from
the task's declaration (``models.registry.TASKS``):

- survival: per model the ``stats.reports.survival_evaluation`` statistics (C-index with bootstrap CI, TD AUC at
  1 / 2 / 3 years with bootstrap CIs, IBS, calibration, log-rank and HR of the risk groups, sensitivity,
  specificity, PPV and NPV at the horizon); against each reference the paired bootstrap test of the C-index and
  of the TD AUCs, with Benjamini-Hochberg adjusted p-values; Kaplan-Meier curves by risk group, the TD AUCs and
  the survival decision curves at the horizon overlaid.
- binary tasks (response, aggressive progression): per model ``stats.reports.binary_metrics`` (AUC with DeLong
  and bootstrap CIs, the cut-off summary, Brier); DeLong against the best model and the reference (with BH
  adjustment), NRI (category-free and at the reference's cut-off) and IDI against the reference; ROC,
  calibration and decision curves overlaid; Kaplan-Meier by each model's risk groups when the task reports them
  and the cohort has the times.
- mRECIST: per model and level (patient; patch where the model has patch probabilities) the confusion matrix,
  accuracy, one-vs-rest AUC per class with DeLong and bootstrap CIs, macro AUC and the AUC of P(objective response); DeLong,
  NRI and IDI of P(objective response) between the models.
- every task: the Spearman correlation of the models' outputs, with the tumour size when the manifest has it
  (paper 002's heat map), and with ``subgroups`` one row per subgroup level: n, events, each model's AUC /
  C-index with its CI and the test of equal performance across the levels (paper 004).

The held-out validation (``stats.validation``) calls the same code, so ``tacepredict compare`` on the demo's
held-out split with the validation's bundles reproduces docs/validation.md (Testing/test_compare.py).
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .. import InputError, InputWarning
from . import metrics as M

SIZE_COLUMN = "tumor_size_mm"
KM_OUTCOMES = {  # time-to-event outcomes a binary task's risk groups are followed on (columns from data.outcomes)
    "aggressive-pd": (("aggressive_pd", "free of aggressive progression"), ("os", "overall survival")),
}


# --- models ---------------------------------------------------------------------------------------------------

def published_names():
    from ..models.registry import models_of
    return [f"{m.task}:{m.kind}" for m in models_of(trained=False)]


def resolve_model(spec):
    """``(name, model)`` for a bundle folder (named by the folder) or a published score ``task:kind``."""
    from .. import models
    if os.path.isdir(spec):
        model, _ = models.load(spec)
        return os.path.basename(os.path.normpath(spec)), model
    if ":" in spec:
        task, kind = spec.split(":", 1)
        model = models.built_in(task, kind)
        if model is not None:
            return kind, model
    raise InputError(f"'{spec}' is neither a model bundle folder nor a published score", column="--models",
                     fix="give bundle folders written by `tacepredict train`, or one of " +
                         ", ".join(published_names()))


def resolve_models(specs):
    """An ordered ``{name: model}`` of the specs; a name given twice gets a suffix."""
    out = {}
    for spec in specs:
        name, model = resolve_model(spec)
        base, k = name, 2
        while name in out:
            name, k = f"{base}-{k}", k + 1
        out[name] = model
    return out


def task_of(models):
    """The one task of all the models; mixing tasks is an error naming each model's task."""
    tasks = {name: model.task for name, model in models.items()}
    if not tasks:
        raise InputError("no model to compare", column="--models", fix="name two or more models")
    if len(set(tasks.values())) > 1:
        raise InputError("the models predict different things: " + ", ".join(f"{n} ({t})" for n, t in tasks.items()),
                         column="--models", fix="compare models of one task at a time")
    return next(iter(tasks.values()))


def _notice(models, data):
    from .. import RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE
    notice = RESEARCH_USE_NOTICE
    if getattr(data, "synthetic", False) or any(SYNTHETIC_DATA_NOTICE in (m.notice or "") for m in models.values()):
        notice += " Evaluated on or trained on a " + SYNTHETIC_DATA_NOTICE
    return notice


# --- shared pieces --------------------------------------------------------------------------------------------

def correlation_table(outputs, case_ids, table=None):
    """Spearman correlation of the models' outputs on the same cases, with the manifest's tumour size as one
    more column when it has it (pairwise complete cases)."""
    frame = pd.DataFrame(outputs, index=list(case_ids))
    if table is not None and SIZE_COLUMN in table.columns:
        size = pd.to_numeric(table[SIZE_COLUMN], errors="coerce").to_numpy(dtype=float)
        if np.isfinite(size).sum() >= 3:
            frame[SIZE_COLUMN] = size
    return frame.corr(method="spearman")


def write_correlation(outputs, case_ids, table, out_dir, title, notice):
    from .reports import plot_correlation
    correlation = correlation_table(outputs, case_ids, table)
    correlation.to_csv(os.path.join(out_dir, "correlation.csv"))
    plot_correlation(correlation, os.path.join(out_dir, "correlation.png"), title, notice)
    return correlation


def binary_comparison(table, label, probabilities, reference, cutoffs=None):
    """Add to ``table`` (one row per model, ``model`` and ``auc`` columns) the DeLong test against the best model
    and against ``reference`` with their Benjamini-Hochberg adjusted p-values, and the NRI / IDI against
    ``reference`` (continuous NRI, and categorical at ``cutoffs`` when given). Returns the best model's name."""
    best = table.loc[table["auc"].idxmax(), "model"]
    for name, other in (("best", best), ("reference", reference)):
        tests = [M.delong_test(label, probabilities[m], probabilities[other]) if m != other else None
                 for m in table["model"]]
        table[f"delong_p_vs_{name}"] = [t["p"] if t else np.nan for t in tests]
        table[f"delong_p_fdr_vs_{name}"] = M.benjamini_hochberg(table[f"delong_p_vs_{name}"].to_numpy(float))
    table["nri_vs_reference"] = [M.nri(label, probabilities[reference], probabilities[m])["nri"]
                                 if m != reference else np.nan for m in table["model"]]
    if cutoffs is not None:
        table["nri_categorical_vs_reference"] = [
            M.nri(label, probabilities[reference], probabilities[m], cutoffs)["nri"] if m != reference else np.nan
            for m in table["model"]]
    idis = [M.idi(label, probabilities[reference], probabilities[m]) if m != reference else None
            for m in table["model"]]
    table["idi_vs_reference"] = [i["idi"] if i else np.nan for i in idis]
    table["idi_p_vs_reference"] = [i["p"] if i else np.nan for i in idis]
    return best


def survival_paired(table, time, event, risks, references, train_time=None, train_event=None, n_bootstrap=1000,
                    seed=0):
    """Paired bootstrap tests of every model against each reference on the same patients: the C-index
    (``metrics.compare_concordance``) and the time-dependent AUC at 1, 2 and 3 years
    (``metrics.compare_time_dependent_auc``). Adds ``c_minus_<ref>``, ``p_vs_<ref>``, ``p_fdr_vs_<ref>`` and
    ``auc_<y>y_minus_<ref>`` / ``auc_<y>y_p_vs_<ref>`` columns to ``table`` (one row per model, ``model``
    column) and returns the long table of every test with Benjamini-Hochberg adjusted p-values (over the models
    compared with one reference on one statistic, as paper 001's Table 4)."""
    from ..models.overall_survival import DAYS_PER_YEAR, HORIZON_YEARS
    horizons = np.asarray(HORIZON_YEARS, dtype=float) * DAYS_PER_YEAR
    long_rows = []
    for reference in references:
        if reference not in risks:
            continue
        diffs, p_values = [], []
        auc_diffs = {y: [] for y in HORIZON_YEARS}
        auc_p = {y: [] for y in HORIZON_YEARS}
        for name in table["model"]:
            if name == reference:
                diffs.append(0.0)
                p_values.append(np.nan)
                for y in HORIZON_YEARS:
                    auc_diffs[y].append(0.0)
                    auc_p[y].append(np.nan)
                continue
            c = M.compare_concordance(time, risks[name], risks[reference], event, n_bootstrap=n_bootstrap, seed=seed)
            diffs.append(c["difference"])
            p_values.append(c["p"])
            long_rows.append({"model": name, "reference": reference, "statistic": "c_index", "value": c["c_a"],
                              "reference_value": c["c_b"], "difference": c["difference"], "lower": c["lower"],
                              "upper": c["upper"], "p": c["p"]})
            td = M.compare_time_dependent_auc(time, event, risks[name], risks[reference], horizons, train_time,
                                              train_event, n_bootstrap=n_bootstrap, seed=seed)
            for y, (_, row) in zip(HORIZON_YEARS, td.iterrows()):
                auc_diffs[y].append(row["difference"])
                auc_p[y].append(row["p"])
                long_rows.append({"model": name, "reference": reference, "statistic": f"auc_{y}y",
                                  "value": row["auc_a"], "reference_value": row["auc_b"],
                                  "difference": row["difference"], "lower": row["lower"], "upper": row["upper"],
                                  "p": row["p"]})
        table[f"c_minus_{reference}"] = diffs
        table[f"p_vs_{reference}"] = p_values
        table[f"p_fdr_vs_{reference}"] = M.benjamini_hochberg(np.asarray(p_values, dtype=float))
        for y in HORIZON_YEARS:
            table[f"auc_{y}y_minus_{reference}"] = auc_diffs[y]
            table[f"auc_{y}y_p_vs_{reference}"] = auc_p[y]
    paired = pd.DataFrame(long_rows, columns=["model", "reference", "statistic", "value", "reference_value",
                                              "difference", "lower", "upper", "p"])
    paired["p_fdr"] = np.nan
    for _, index in paired.groupby(["reference", "statistic"]).groups.items():
        paired.loc[index, "p_fdr"] = M.benjamini_hochberg(paired.loc[index, "p"].to_numpy(float))
    return paired


def km_by_groups(time, event, groups, path, title, notice, ylabel):
    """Kaplan-Meier of risk groups with numbers at risk: the figure, and a dict with the group sizes, the
    log-rank p and the high-vs-low hazard ratio (None when there are not two groups)."""
    from .reports import plot_kaplan_meier
    groups = np.asarray(groups)
    if len(np.unique(groups)) < 2:
        return None
    p = M.logrank_test(time, event, groups)["p"]
    out = {"logrank_p": p, **{g: int((groups == g).sum()) for g in ("high", "low")}}
    if set(np.unique(groups)) == {"high", "low"}:
        hr = M.risk_group_hazard_ratios(time, event, groups, reference="low").set_index("group").loc["high"]
        out.update(hr=float(hr["hazard_ratio"]), hr_lower=float(hr["lower"]), hr_upper=float(hr["upper"]))
    plot_kaplan_meier(time, event, groups, path, title, notice, p=p, ylabel=ylabel)
    return out


def km_cohorts(train_time, train_event, time, event, path, notice):
    """Paper 000's Figure 2A: overall survival of the training and the compared (validation) cohort, with the
    log-rank test and each cohort's Kaplan-Meier median and its 95% CI (from the Greenwood log(-log) bands;
    NaN where the curve or its bound does not reach 0.5)."""
    from .reports import plot_kaplan_meier
    cohorts = np.repeat(["training", "compared"], [len(train_time), len(time)])
    both_time, both_event = np.concatenate([train_time, time]), np.concatenate([train_event, event])
    p = M.logrank_test(both_time, both_event, cohorts)["p"]
    out = {"logrank_p": p}
    for name in ("training", "compared"):
        table = M.kaplan_meier(both_time[cohorts == name], both_event[cohorts == name])
        first = {c: table["time"][table[c] <= 0.5 + 1e-12] for c in ("survival", "lower", "upper")}  # S = 0.5 exactly
        median, lower, upper = (float(first[c].iloc[0]) if len(first[c]) else np.nan
                                for c in ("survival", "lower", "upper"))
        out[name] = {"cases": int((cohorts == name).sum()), "events": int(both_event[cohorts == name].sum()),
                     "median_days": median, "median_lower_days": lower, "median_upper_days": upper}
    plot_kaplan_meier(both_time, both_event, cohorts, path, "overall survival: training and compared cohorts",
                      notice, p=p, group_suffix=" cohort")
    return out


def _level_estimate(kind, label_or_time, event, output, n_bootstrap, seed):
    """A subgroup level's (value, lower, upper, se) of one model: AUC with DeLong CI and SE (binary), or the
    C-index with its percentile bootstrap CI and bootstrap SE (survival); NaNs where it cannot be computed."""
    nan = (np.nan, np.nan, np.nan, np.nan)
    if kind == "binary":
        label = np.asarray(label_or_time)
        if label.min() == label.max():
            return nan
        _, covariance = M.delong_covariance(label, output)
        value, lower, upper = M.roc_auc_ci(label, output)
        return value, lower, upper, float(np.sqrt(covariance[0, 0]))
    time = np.asarray(label_or_time, dtype=float)
    try:
        value, lower, upper = M.concordance_index_ci(time, output, event, n_bootstrap=n_bootstrap, seed=seed)
    except ValueError:
        return nan
    samples = []
    for idx in M._bootstrap_indices(len(time), n_bootstrap, seed):
        concordant, comparable = M._concordance_counts(time[idx], np.asarray(event, bool)[idx],
                                                       np.asarray(output, float)[idx])
        if comparable:
            samples.append(concordant / comparable)
    return value, lower, upper, float(np.std(samples, ddof=1)) if len(samples) > 1 else np.nan


def subgroup_table(table, columns, outputs, label_or_time, event=None, n_bootstrap=1000, seed=0):
    """Per subgroup column and level: n, events, each model's AUC (``event`` None: binary labels) or C-index
    with its CI, and ``p_between_levels``: the test of equal performance across the levels (Cochran's Q of the
    level estimates with their SEs, df = levels - 1; for two levels the unpaired DeLong test of pROC's
    ``roc.test(paired = FALSE)``). A long table, one row per column, level and model."""
    kind = "binary" if event is None else "survival"
    rows = []
    for column in columns:
        if column not in table.columns:
            raise InputError(f"the manifest has no '{column}' column to form subgroups", column=column,
                             fix="name manifest columns in --subgroups, e.g. bclc,child_pugh")
        values = table[column].astype("string")
        levels = sorted(values.dropna().unique())
        if not levels:
            raise InputError(f"'{column}' is empty for every case", column=column, fix="fill it in or leave it out")
        for name, output in outputs.items():
            estimates = []
            for level in levels:
                member = (values == level).fillna(False).to_numpy()
                y = np.asarray(label_or_time)[member]
                e = None if event is None else np.asarray(event)[member]
                value, lower, upper, se = _level_estimate(kind, y, e, np.asarray(output)[member], n_bootstrap,
                                                          seed)
                estimates.append((value, se))
                rows.append({"subgroup": column, "level": level, "n": int(member.sum()),
                             "events": int(np.sum(y if event is None else e)), "model": name,
                             "statistic": "auc" if kind == "binary" else "c_index", "value": value, "lower": lower,
                             "upper": upper})
            usable = [(v, s) for v, s in estimates if np.isfinite(v) and np.isfinite(s) and s > 0]
            p = np.nan
            if len(usable) >= 2:
                v = np.array([u[0] for u in usable])
                w = 1 / np.array([u[1] for u in usable]) ** 2
                q = float(np.sum(w * (v - np.sum(w * v) / np.sum(w)) ** 2))
                p = float(stats.chi2.sf(q, len(usable) - 1))
            for row in rows[-len(levels):]:
                row["p_between_levels"] = p
    return pd.DataFrame(rows)


def plot_subgroups(table, path, notice):
    """Forest plot of the subgroup table: each model's estimate and CI per subgroup level."""
    from .reports import _pyplot, _save
    plt = _pyplot()
    models = list(dict.fromkeys(table["model"]))
    keys = list(dict.fromkeys(zip(table["subgroup"], table["level"])))
    fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.32 * len(keys) * max(1, len(models)) ** 0.5))
    offsets = np.linspace(-0.25, 0.25, len(models)) if len(models) > 1 else [0.0]
    for offset, model in zip(offsets, models):
        part = table[table["model"] == model].set_index(["subgroup", "level"]).loc[keys]
        y = np.arange(len(keys))[::-1] + offset
        error = np.clip([part["value"] - part["lower"], part["upper"] - part["value"]], 0, None)
        ax.errorbar(part["value"], y, xerr=error,
                    fmt="o", capsize=2, markersize=4, label=model)
    ax.axvline(0.5, color="0.6", linestyle="--")
    ax.set_yticks(np.arange(len(keys))[::-1],
                  [f"{s} = {lv} (n={int(table[(table['subgroup'] == s) & (table['level'] == lv)]['n'].iloc[0])})"
                   for s, lv in keys], fontsize=7)
    ax.set_xlabel(table["statistic"].iloc[0].replace("_", "-").replace("auc", "AUC") + " (95% CI)")
    ax.set_title("performance by subgroup", fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path, notice)


# --- per task -------------------------------------------------------------------------------------------------

def _survival(models, data, out_dir, references, subgroups, train_data, n_bootstrap, seed, predictions, notice,
              log):
    from ..data.outcomes import complete_outcome_rows, survival_outcome
    from ..models.overall_survival import DAYS_PER_YEAR
    from .reports import DECISION_THRESHOLDS, plot_decision_curves, plot_time_auc, survival_evaluation
    data = data.subset(complete_outcome_rows(data.table, "os"))
    time, event = survival_outcome(data.table, "os")
    train_time = train_event = None
    if train_data is not None:
        train_time, train_event = survival_outcome(complete_outcome_rows(train_data.table, "os"), "os")
    rows, results, risks, curves = [], {}, {}, {}
    horizon = None
    for name, model in models.items():
        p = predictions.get(name) if predictions else None
        p = model.predict(data) if p is None else p
        result, _ = survival_evaluation(time, event, p, train_time, train_event, n_bootstrap, seed)
        horizon = result["calibration_horizon_years"]
        risks[name] = p["risk_score"].to_numpy(dtype=float)
        results[name] = result
        rows.append({"model": name, "label": model.label, "cutoff": model.cutoff, **result})
        km = km_by_groups(time, event, p["risk_group"].to_numpy(), os.path.join(out_dir, f"km_{name}.png"),
                          f"{name}: risk groups", notice, "overall survival")
        curves[name] = M.survival_net_benefit(time, event, 1 - p[f"surv_{horizon}y"].to_numpy(dtype=float),
                                              horizon * DAYS_PER_YEAR, DECISION_THRESHOLDS)
        log(f"  {name:20s} C-index {result['c_index']:.3f} ({result['c_index_lower']:.3f}-"
            f"{result['c_index_upper']:.3f})" + (f", log-rank p {km['logrank_p']:.3g}" if km else ""))
    table = pd.DataFrame(rows)
    paired = survival_paired(table, time, event, risks, references, train_time, train_event, n_bootstrap, seed)
    paired.to_csv(os.path.join(out_dir, "paired.csv"), index=False)
    pd.concat([c.assign(model_name=n) for n, c in curves.items()]).to_csv(
        os.path.join(out_dir, "decision_curves.csv"), index=False)
    plot_decision_curves(curves, os.path.join(out_dir, "decision_curves.png"),
                         f"overall survival: decision curves at {horizon} years", notice)
    plot_time_auc(results, os.path.join(out_dir, "time_dependent_auc.png"), "overall survival", notice)
    write_correlation(risks, data.case_ids, data.table, out_dir,
                      "overall survival: Spearman correlation of the models' risk scores", notice)
    summary = {"cases": int(len(time)), "events": int(event.sum()), "horizon_years": horizon,
               "censoring_from": "training cohort" if train_data is not None else "compared cohort"}
    if train_data is not None:
        summary["training_vs_compared"] = km_cohorts(train_time, train_event, time, event,
                                                     os.path.join(out_dir, "km_training_vs_compared.png"), notice)
    if subgroups:
        summary["subgroups"] = subgroup_table(data.table, subgroups, risks, time, event, n_bootstrap, seed)
    # the built-in clinical TACE scores the manifest's columns allow, beside the first model (issue 19)
    from .reports import clinical_score_comparators
    scores = clinical_score_comparators(data, time, event, next(iter(models.values())), out_dir, notice,
                                        n_bootstrap, seed)
    if scores is not None:
        summary["clinical_scores"] = scores.to_dict(orient="records")
    return table, summary


def _labelled(task, data):
    """The cases with the task's outcome (the others left out with a warning) and their labels (0 / 1, or the
    mRECIST class index)."""
    from ..models.registry import TASKS
    label = TASKS[task].label(data.table)
    missing = label.isna().to_numpy()
    if missing.all():
        raise InputError("no case has the outcome to compare against", column=", ".join(TASKS[task].outcome_columns),
                         fix="fill in the outcome of the cohort's cases")
    if missing.any():
        warnings.warn(f"{int(missing.sum())} case(s) without the outcome left out of the comparison (first: "
                      f"{data.table.loc[missing, 'case_id'].iloc[0]})", InputWarning, stacklevel=3)
    data = data.subset(data.table[~missing])
    return data, label[~missing].to_numpy(dtype=int)


def _binary(task, models, data, out_dir, references, subgroups, n_bootstrap, seed, predictions, notice,
            nri_cutoffs, log):
    from ..data.outcomes import OUTCOMES
    from ..models.registry import TASKS
    from .reports import DECISION_THRESHOLDS, _pyplot, _save, _unit_square, binary_metrics, plot_decision_curves
    data, label = _labelled(task, data)
    rows, probabilities, curves, km = [], {}, {}, {}
    for name, model in models.items():
        p = predictions.get(name) if predictions else None
        p = model.predict(data) if p is None else p
        probability = p["probability"].to_numpy(dtype=float)
        probabilities[name] = probability
        result = binary_metrics(label, probability, model.cutoff, n_bootstrap, seed)
        rows.append({"model": name, "label": model.label, **result})
        curves[name] = M.net_benefit(label, probability, DECISION_THRESHOLDS)
        log(f"  {name:20s} AUC {result['auc']:.3f} ({result['auc_delong_lower']:.3f}-{result['auc_delong_upper']:.3f})")
    table = pd.DataFrame(rows)
    reference = references[0] if references else table["model"].iloc[0]
    if reference not in probabilities:
        raise InputError(f"reference '{reference}' is not among the compared models", column="--reference",
                         fix="use one of " + ", ".join(probabilities))
    # categorical NRI at the reference's cut-off; none for a reference without one (the published Model_CS)
    cutoffs = nri_cutoffs if nri_cutoffs is not None else (
        [float(models[reference].cutoff)] if models[reference].cutoff is not None else None)
    best = binary_comparison(table, label, probabilities, reference, cutoffs)
    # Kaplan-Meier of each model's risk groups on the task's time-to-event outcomes (paper 004)
    for outcome, ylabel in KM_OUTCOMES.get(task, ()):
        time_column, event_column = OUTCOMES[outcome]
        if time_column not in data.table or event_column not in data.table:
            continue
        t = pd.to_numeric(data.table[time_column], errors="coerce").to_numpy(dtype=float)
        e = pd.to_numeric(data.table[event_column], errors="coerce").to_numpy(dtype=float)
        known = np.isfinite(t) & np.isfinite(e)
        for name, model in models.items():
            if model.cutoff is None:  # no cut-off, no risk groups
                continue
            groups = np.where(probabilities[name] >= model.cutoff, "high", "low")[known]
            result = km_by_groups(t[known], e[known].astype(int), groups, os.path.join(out_dir, f"km_{name}_{outcome}.png"),
                                  f"{name} groups at {model.cutoff:g}: {ylabel}", notice, ylabel)
            if result:
                km.setdefault(name, {})[outcome] = result
                table.loc[table["model"] == name, f"km_{outcome}_logrank_p"] = result["logrank_p"]
                for key in ("hr", "hr_lower", "hr_upper"):
                    if key in result:
                        table.loc[table["model"] == name, f"km_{outcome}_{key}"] = result[key]
    roc_lines, calibration_lines, calibrations = [], [], []
    for name in probabilities:
        fpr, tpr, _ = M.roc_curve(label, probabilities[name])
        auc = table.set_index("model").loc[name, "auc"]
        roc_lines.append((fpr, tpr, "-", f"{name}: {auc:.3f}"))
        calibration, _ = M.calibration_binary(label, probabilities[name], groups=5)
        calibrations.append(calibration.assign(model=name))
        calibration_lines.append((calibration["predicted"], calibration["observed"], "o-", name))
    fig, (ax_roc, ax_cal) = _pyplot().subplots(1, 2, figsize=(9.6, 4.8))
    _unit_square(ax_roc, roc_lines, "1 - specificity", "sensitivity", f"{task}: ROC (AUC)", "lower right")
    _unit_square(ax_cal, calibration_lines, "predicted probability", "observed frequency", f"{task}: calibration",
                 "upper left")
    _save(fig, os.path.join(out_dir, "roc_calibration.png"), notice)
    pd.concat(calibrations).to_csv(os.path.join(out_dir, "calibration.csv"), index=False)
    pd.concat([c.assign(model_name=n) for n, c in curves.items()]).to_csv(
        os.path.join(out_dir, "decision_curves.csv"), index=False)
    plot_decision_curves(curves, os.path.join(out_dir, "decision_curves.png"), "decision curves", notice)
    write_correlation(probabilities, data.case_ids, data.table, out_dir,
                      f"{TASKS[task].title}: Spearman correlation of the models' outputs", notice)
    summary = {"cases": int(len(label)), "events": int(label.sum()), "best": best, "reference": reference,
               "nri_cutoffs": cutoffs, "kaplan_meier": km}
    if subgroups:
        summary["subgroups"] = subgroup_table(data.table, subgroups, probabilities, label, None, n_bootstrap, seed)
    return table, summary


def mrecist_level(truth, p, folder, stem, title, notice, n_bootstrap=1000, seed=0):
    """One level (patient or patch) of a four-class mRECIST model: the confusion matrix (``confusion_<stem>``
    CSV and PNG), one-vs-rest ROC per class with its AUC and 95 % CI (``roc_classes_<stem>.png``) and a row with
    n, accuracy, each class's AUC with its DeLong CI (``auc_<class>_lower`` / ``_upper``) and its stratified
    bootstrap CI (``auc_<class>_boot_lower`` / ``_upper``, ``n_bootstrap`` resamples: paper 003's pROC
    method), the macro AUC and the AUC of P(objective response) with its DeLong CI. At patch level the rows
    of one patient are not independent, so the CIs are narrower than the patients warrant (as the paper's)."""
    from ..data.outcomes import MRECIST_CLASSES, is_objective, probability_of_objective
    from .reports import plot_class_rocs, plot_confusion
    os.makedirs(folder, exist_ok=True)
    truth = np.asarray(truth, dtype=int)
    predicted = p.argmax(1)
    matrix = np.zeros((4, 4), int)
    np.add.at(matrix, (truth, predicted), 1)
    pd.DataFrame(matrix, index=[f"true_{c}" for c in MRECIST_CLASSES],
                 columns=[f"predicted_{c}" for c in MRECIST_CLASSES]).to_csv(os.path.join(folder, f"confusion_{stem}.csv"))
    plot_confusion(matrix, MRECIST_CLASSES, os.path.join(folder, f"confusion_{stem}.png"),
                   f"mRECIST confusion matrix ({title})", notice)
    intervals, boot = {}, {}
    for i, c in enumerate(MRECIST_CLASSES):
        one = (truth == i).astype(int)
        intervals[c] = boot[c] = (np.nan, np.nan)
        if 0 < one.sum() < len(one):
            intervals[c] = M.roc_auc_ci(one, p[:, i])[1:]
            if n_bootstrap:
                boot[c] = M.roc_auc_ci(one, p[:, i], method="bootstrap", n_bootstrap=n_bootstrap, seed=seed)[1:]
    aucs = plot_class_rocs(truth, p, MRECIST_CLASSES, os.path.join(folder, f"roc_classes_{stem}.png"),
                           f"mRECIST one-vs-rest ROC, DeLong 95% CI ({title})", notice, intervals=intervals)
    objective = is_objective(truth).astype(int)
    row = {"n": int(len(truth)), "accuracy": float((predicted == truth).mean()),
           **{f"auc_{c}": aucs.get(c, np.nan) for c in MRECIST_CLASSES},
           "auc_macro": float(np.nanmean(list(aucs.values()))),
           "auc_objective_response": M.roc_auc(objective, probability_of_objective(p))}
    for c in MRECIST_CLASSES:
        row[f"auc_{c}_lower"], row[f"auc_{c}_upper"] = intervals[c]
        row[f"auc_{c}_boot_lower"], row[f"auc_{c}_boot_upper"] = boot[c]
    _, row["auc_objective_response_lower"], row["auc_objective_response_upper"] = M.roc_auc_ci(
        objective, probability_of_objective(p))
    return row


def mrecist_levels(name, model, data, truth, folder, notice, prediction=None, n_bootstrap=1000, seed=0):
    """Every level of one mRECIST model on labelled ``data`` (``truth``: class indices): patch level when the
    model has patch probabilities, and patient level, each through ``mrecist_level`` into ``folder``. Returns
    ``(rows, P(objective response) per case)``; ``prediction``: the model's prediction table on ``data`` if
    already made."""
    from ..data.outcomes import MRECIST_CLASSES
    from ..models.training import case_mean
    prediction = model.predict(data) if prediction is None else prediction
    classes = prediction[[f"p_{c}" for c in MRECIST_CLASSES]].to_numpy(dtype=float)
    levels = {}
    if hasattr(model, "patch_probabilities"):
        p_patch, groups = model.patch_probabilities(data)
        levels["patch"] = (truth[groups], p_patch)
        classes = case_mean(p_patch, groups, len(truth))
    levels["patient"] = (truth, classes)
    rows = [{"model": name, "label": model.label, "level": level,
             **mrecist_level(y, prob, folder, level, f"{name}, {level} level", notice, n_bootstrap, seed)}
            for level, (y, prob) in levels.items()]
    return rows, prediction["probability"].to_numpy(dtype=float)


def _mrecist(models, data, out_dir, references, subgroups, n_bootstrap, seed, predictions, notice, log):
    from ..data.outcomes import MRECIST_CLASSES, is_objective
    data, truth = _labelled("mrecist", data)
    rows, probabilities = [], {}
    for name, model in models.items():
        model_rows, probabilities[name] = mrecist_levels(
            name, model, data, truth, os.path.join(out_dir, name), notice,
            prediction=predictions.get(name) if predictions else None, n_bootstrap=n_bootstrap, seed=seed)
        rows += model_rows
        log(f"  {name:20s} " + "; ".join(f"{r['level']}: accuracy {r['accuracy']:.3f}, macro AUC {r['auc_macro']:.3f}"
                                       for r in model_rows))
    table = pd.DataFrame(rows)
    objective = is_objective(truth).astype(int)
    summary = {"cases": int(len(truth)), "responders": int(objective.sum()),
               "classes": {c: int((truth == i).sum()) for i, c in enumerate(MRECIST_CLASSES)}}
    if len(models) > 1:
        patient = table[table["level"] == "patient"].reset_index(drop=True)
        paired = pd.DataFrame({"model": patient["model"], "auc": patient["auc_objective_response"]})
        reference = references[0] if references else paired["model"].iloc[0]
        summary["best"] = binary_comparison(paired, objective, probabilities, reference)
        summary["reference"] = reference
        paired.to_csv(os.path.join(out_dir, "paired.csv"), index=False)
        table = table.merge(paired.drop(columns="auc").assign(level="patient"), on=["model", "level"], how="left")
    write_correlation(probabilities, data.case_ids, data.table, out_dir,
                      "mRECIST: Spearman correlation of the models' P(objective response)", notice)
    if subgroups:
        summary["subgroups"] = subgroup_table(data.table, subgroups, probabilities, objective, None, n_bootstrap,
                                              seed)
    return table, summary


# --- the comparison -------------------------------------------------------------------------------------------

def compare_models(models, data, out_dir, references=None, subgroups=(), train_data=None, n_bootstrap=1000, seed=0,
                   predictions=None, nri_cutoffs=None, notice=None, log=print):
    """Compare ``models`` (an ordered ``{name: model}`` of one task) on ``data`` (a labelled ``CohortData``) and
    write ``comparison.csv`` (one row per model: its statistics and the paired tests), ``comparison.json``,
    the paired tests, figures, ``correlation.csv`` / ``.png`` and, with ``subgroups`` (manifest columns),
    ``subgroups.csv`` / ``.png`` into ``out_dir``.

    ``references``: the models the others are tested against (default: the first); ``train_data``: the
    training cohort, whose censoring distribution the IPCW statistics use (default: the compared cohort's);
    ``predictions``: ``{name: prediction table}`` already made on ``data`` (the validation passes its own);
    ``nri_cutoffs``: categorical NRI bounds (default: the reference's cut-off). Returns ``(table, summary)``.
    """
    task = task_of(models)
    os.makedirs(out_dir, exist_ok=True)
    notice = notice or _notice(models, data)
    references = [r for r in (references or [next(iter(models))])]
    unknown = [r for r in references if r not in models]
    if unknown:
        raise InputError(f"reference '{unknown[0]}' is not among the compared models", column="--reference",
                         fix="use one of " + ", ".join(models))
    subgroups = [s for s in (subgroups or []) if s]
    log = log or (lambda *_: None)
    if task == "survival":
        table, summary = _survival(models, data, out_dir, references, subgroups, train_data, n_bootstrap, seed,
                                   predictions, notice, log)
    elif task == "mrecist":
        table, summary = _mrecist(models, data, out_dir, references, subgroups, n_bootstrap, seed, predictions,
                                  notice, log)
    else:
        table, summary = _binary(task, models, data, out_dir, references, subgroups, n_bootstrap, seed,
                                 predictions, notice, nri_cutoffs, log)
    subgroup = summary.pop("subgroups", None)
    if subgroup is not None:
        subgroup.to_csv(os.path.join(out_dir, "subgroups.csv"), index=False)
        plot_subgroups(subgroup, os.path.join(out_dir, "subgroups.png"), notice)
    table.to_csv(os.path.join(out_dir, "comparison.csv"), index=False)
    summary = {"task": task, "evaluated_on": data.manifest_path, "references": references, "seed": seed,
               "bootstrap": n_bootstrap, "models": {n: {"label": m.label, "provenance": m.provenance}
                                                    for n, m in models.items()},
               "notice": notice, **summary}
    with open(os.path.join(out_dir, "comparison.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, default=float)
    if subgroup is not None:
        summary["subgroups"] = subgroup
    return table, summary
