"""Evaluation reports: metric tables (CSV / JSON) and PNG figures for a model on a labelled cohort."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from . import metrics as M
from ..data.outcomes import complete_outcome_rows, survival_outcome
from ..models.overall_survival import DAYS_PER_YEAR, HORIZON_YEARS


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def report_notice(model, data):
    """The model's notice, plus the synthetic-data notice when the evaluated cohort is the demo cohort."""
    from .. import SYNTHETIC_DATA_NOTICE
    notice = model.notice
    if data.synthetic and SYNTHETIC_DATA_NOTICE not in notice:
        notice += " Evaluated on a " + SYNTHETIC_DATA_NOTICE
    return notice


def _finish(fig, notice, bottom=0.05, tight=True):
    """Every figure carries the notice at its foot; ``tight``: lay it out above ``bottom``. Returns ``fig``."""
    if notice:
        fig.text(0.01, 0.005, notice, fontsize=6, color="0.35", ha="left", va="bottom", wrap=True)
    if tight:
        fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def _save(fig, path, notice=None, bottom=0.05, tight=True):
    """Write a figure as PNG and close it; with a ``notice``, first add the foot (``_finish``). The figure
    builders below (``*_figure``) add it themselves: the report embeds the same figures (``model_report``)."""
    if notice is not None:
        _finish(fig, notice, bottom, tight)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def survival_metrics(time, event, risk, surv, train_time=None, train_event=None, n_bootstrap=1000, seed=0):
    """Every survival statistic of one model on one cohort, as a flat dict (times in days, surv at 1/2/3 y):
    the C-index with its bootstrap CI, the time-dependent AUC at 1, 2 and 3 years with bootstrap CIs (paper
    001 reports them so) and the integrated Brier score over the followed years."""
    c, lower, upper = M.concordance_index_ci(time, risk, event, n_bootstrap=n_bootstrap, seed=seed)
    out = {"cases": int(len(time)), "events": int(np.sum(event)), "c_index": c, "c_index_lower": lower,
           "c_index_upper": upper}
    horizons = np.asarray(HORIZON_YEARS) * DAYS_PER_YEAR
    auc = M.time_dependent_auc(time, event, risk, horizons, train_time, train_event)
    for years, value in zip(HORIZON_YEARS, auc):
        out[f"auc_{years}y"] = float(value)
    followed = horizons[horizons < np.max(time)]
    if len(followed) >= 2:
        out["integrated_brier_score"] = M.integrated_brier_score(time, event, surv[:, :len(followed)], followed,
                                                                  train_time, train_event)
    intervals = M.time_dependent_auc_ci(time, event, risk, horizons, train_time, train_event,
                                        n_bootstrap=n_bootstrap, seed=seed)
    for years, (_, row) in zip(HORIZON_YEARS, intervals.iterrows()):
        out[f"auc_{years}y_lower"], out[f"auc_{years}y_upper"] = float(row["lower"]), float(row["upper"])
    return out


def survival_horizon(time):
    """The horizon of the calibration and threshold statistics: the latest of 1, 2, 3 years the cohort is
    followed beyond."""
    return max((y for y in HORIZON_YEARS if y * DAYS_PER_YEAR < np.max(time)), default=HORIZON_YEARS[0])


def survival_evaluation(time, event, predictions, train_time=None, train_event=None, n_bootstrap=1000, seed=0):
    """One survival model's statistics on one cohort from its prediction table (``risk_score``, ``surv_*y``,
    ``risk_group``): ``survival_metrics``, the log-rank test and hazard ratio of its high- against its low-risk
    group, calibration at the horizon, and sensitivity, specificity, PPV, NPV and accuracy of the high-risk
    group against death by the horizon (Kaplan-Meier estimates). Returns ``(metrics dict, calibration table)``.
    ``evaluate`` and ``compare`` (and so the validation runner) compute every number through here."""
    risk = predictions["risk_score"].to_numpy(dtype=float)
    surv = predictions[[f"surv_{y}y" for y in HORIZON_YEARS]].to_numpy(dtype=float)
    result = survival_metrics(time, event, risk, surv, train_time, train_event, n_bootstrap, seed)
    groups = predictions["risk_group"].to_numpy()
    if len(np.unique(groups)) == 2:
        result["logrank_p"] = M.logrank_test(time, event, groups)["p"]
    for g in ("high", "low"):
        member = groups == g
        result[f"n_{g}_risk"] = int(member.sum())
    horizon = survival_horizon(time)
    calibration, rmse = M.calibration_at(time, event, surv[:, HORIZON_YEARS.index(horizon)],
                                         horizon * DAYS_PER_YEAR)
    result["calibration_horizon_years"] = horizon
    result["calibration_rmse"] = rmse
    if set(np.unique(groups)) == {"high", "low"}:
        hr = M.risk_group_hazard_ratios(time, event, groups, reference="low").set_index("group").loc["high"]
        result.update(hr_high_vs_low=hr["hazard_ratio"], hr_lower=hr["lower"], hr_upper=hr["upper"], hr_p=hr["p"])
    at = M.survival_threshold_summary(time, event, groups == "high", horizon * DAYS_PER_YEAR)
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        result[f"{key}_at_horizon"] = at[key]
    return result, calibration


def evaluate_survival(model, data, out_dir, n_bootstrap=1000, seed=0, train_data=None):
    """Predict ``data``, compare with its OS, and write predictions, metrics and figures into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    data = data.subset(complete_outcome_rows(data.table, "os"))
    time, event = survival_outcome(data.table, "os")
    if len(time) < 2 or int(np.sum(event)) == 0:
        from .. import InputError
        raise InputError(f"{len(time)} case(s) with an outcome and {int(np.sum(event))} observed death(s): the C-index, "
                         "time-dependent AUC and calibration need cases with os_event = 1", column="os_event",
                         fix="evaluate on a set with observed deaths (all censored: nothing to compare "
                             "predictions with); `tacepredict predict` gives the predictions alone")
    predictions = model.predict(data)
    train_time = train_event = None
    if train_data is not None:
        train_time, train_event = survival_outcome(complete_outcome_rows(train_data.table, "os"), "os")
    result, calibration = survival_evaluation(time, event, predictions, train_time, train_event, n_bootstrap, seed)
    groups = predictions["risk_group"].to_numpy()
    horizon = result["calibration_horizon_years"]
    notice = report_notice(model, data)

    predictions.assign(os_days=time, os_event=event).to_csv(os.path.join(out_dir, "predictions.csv"), index=False)
    calibration.to_csv(os.path.join(out_dir, "calibration.csv"), index=False)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump({"model": model.label, "provenance": model.provenance, "notice": notice,
                   "evaluated_on": data.manifest_path, "metrics": result}, handle, indent=1)
    pd.DataFrame([{"metric": k, "value": v} for k, v in result.items()]).to_csv(
        os.path.join(out_dir, "metrics.csv"), index=False)
    plot_kaplan_meier(time, event, groups, os.path.join(out_dir, "kaplan_meier.png"),
                      title=f"{model.label}: risk groups", notice=notice, p=result.get("logrank_p"))
    plot_calibration(calibration, horizon, os.path.join(out_dir, "calibration.png"), model.label, notice)
    plot_time_auc({model.label: result}, os.path.join(out_dir, "time_dependent_auc.png"), model.label, notice)
    decision = M.survival_net_benefit(time, event, 1 - predictions[f"surv_{horizon}y"].to_numpy(float),
                                      horizon * DAYS_PER_YEAR, DECISION_THRESHOLDS)
    decision.to_csv(os.path.join(out_dir, "decision_curve.csv"), index=False)
    plot_decision_curves({model.label: decision}, os.path.join(out_dir, "decision_curve.png"),
                         f"{model.label}: decision curve at {horizon} years", notice)
    clinical_score_comparators(data, time, event, model, out_dir, notice, n_bootstrap, seed)
    return result, predictions


def clinical_score_comparators(data, time, event, model, out_dir, notice, n_bootstrap=1000, seed=0):
    """The built-in clinical TACE scores the manifest's columns allow (models/clinical_scores.py), beside the
    model on the same cases: ``clinical_scores.csv`` (each score's C-index with its bootstrap CI and the log-rank
    test across its grades, with the model's C-index on the cases the score grades) and a Kaplan-Meier figure
    by grade (``km_<score>.png``). Nothing is written when no score grades a case."""
    from ..models.clinical_scores import SCORES, applicable_scores, survival_comparison
    kinds = [score.kind for score in applicable_scores(data.table)]
    if not kinds:
        return None
    table = survival_comparison(data.table, time, event, kinds=kinds, n_bootstrap=n_bootstrap, seed=seed)
    risk = model.predict(data)["risk_score"].to_numpy()
    model_c = []
    for kind in kinds:
        graded = SCORES[kind]().evaluate(data.table)["grade"].notna().to_numpy()
        model_c.append(M.concordance_index(time[graded], risk[graded], event[graded])
                       if graded.sum() >= 10 and event[graded].sum() > 0 else np.nan)
        grades = SCORES[kind]().evaluate(data.table)["grade"].astype(object).to_numpy()
        if graded.sum() >= 10 and len(set(grades[graded])) > 1:
            row = table.set_index("score").loc[kind]
            plot_kaplan_meier(time[graded], event[graded], grades[graded], os.path.join(out_dir, f"km_{kind}.png"),
                              title=f"{row['title']}: overall survival by grade", notice=notice,
                              p=row["logrank_p"], group_suffix="")
    table.insert(table.columns.get_loc("c_index_upper") + 1, "model_c_index_same_cases", model_c)
    table.to_csv(os.path.join(out_dir, "clinical_scores.csv"), index=False)
    return table


def at_risk_counts(time, groups, ticks, order=None):
    """Numbers at risk under a Kaplan-Meier figure: patients of each group still followed at each tick
    (follow-up time >= tick, the risk set at that time, as R's survminer counts it). A table, one row per
    group (``order``, default all groups sorted), one column per tick."""
    time = np.asarray(time, dtype=float)
    groups = np.asarray(groups)
    labels = sorted(np.unique(groups)) if order is None else list(order)
    return pd.DataFrame({tick: [int(np.sum((groups == g) & (time >= tick))) for g in labels] for tick in ticks},
                        index=labels)


def kaplan_meier_figure(time, event, groups, title, notice, p=None, ylabel="overall survival", group_suffix=" risk",
                        order=None, scale=DAYS_PER_YEAR, xlabel="years after TACE"):
    """Kaplan-Meier curves of the groups (``order``: which and in what order, default every group sorted) with
    their 95% confidence bands, censoring marks (|) and the numbers at risk under the plot, as the papers'
    figures carry them, and the notice at the foot. Times in days, shown in years (``scale``). Returns
    ``(figure, numbers at risk)``: the table of ``at_risk_counts`` at the figure's ticks."""
    plt = _pyplot()
    time = np.asarray(time, dtype=float)
    event = np.asarray(event)
    groups = np.asarray(groups)
    labels = [g for g in (sorted(np.unique(groups)) if order is None else order) if np.any(groups == g)]
    fig = plt.figure(figsize=(6, 4.6 + 0.2 * len(labels)))
    grid = fig.add_gridspec(2, 1, height_ratios=[4.2, 0.5 + 0.22 * len(labels)], hspace=0.12, left=0.17,
                            right=0.97, top=0.93, bottom=0.1 + 0.02 * len(labels))
    ax = fig.add_subplot(grid[0])
    table_ax = fig.add_subplot(grid[1], sharex=ax)
    colours = {}
    for label in labels:
        member = groups == label
        km = M.kaplan_meier(time[member], event[member])
        t = np.concatenate([[0.0], km["time"].to_numpy()]) / scale
        s = np.concatenate([[1.0], km["survival"].to_numpy()])
        (line,) = ax.step(t, s, where="post", label=f"{label}{group_suffix} (n={member.sum()}, "
                                                    f"{int(np.sum(event[member]))} events)")
        colours[label] = line.get_color()
        ax.fill_between(t, np.concatenate([[1.0], km["lower"]]), np.concatenate([[1.0], km["upper"]]), step="post",
                        alpha=0.15, color=line.get_color())
        censored = km["censored"].to_numpy() > 0
        ax.plot(km["time"].to_numpy()[censored] / scale, km["survival"].to_numpy()[censored], linestyle="none",
                marker="|", markersize=8, color=line.get_color())
    ax.set_xlim(0, max(float(np.max(time)) / scale, 1e-9) * 1.02)
    ticks = [x for x in ax.get_xticks() if 0 <= x <= float(np.max(time)) / scale]
    counts = at_risk_counts(time / scale, groups, ticks, labels)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    import textwrap
    shown_p = f" (log-rank p = {p:.3g})" if p is not None and np.isfinite(p) else ""
    ax.set_title("\n".join(textwrap.wrap(title + shown_p, 70)), fontsize=9)
    ax.plot([], [], linestyle="none", marker="|", color="0.3", label="censored")
    ax.legend(fontsize=8)
    ax.tick_params(labelbottom=False)
    for row, label in enumerate(labels):
        y = len(labels) - 1 - row
        for tick in ticks:
            table_ax.text(tick, y, str(counts.loc[label, tick]), ha="center", va="center", fontsize=8,
                          color=colours[label])
    table_ax.set_ylim(-0.6, len(labels) - 0.4)
    table_ax.set_yticks(range(len(labels)), [f"{label}{group_suffix}" for label in labels][::-1], fontsize=8)
    table_ax.set_xticks(ticks)
    table_ax.set_xlabel(xlabel)
    table_ax.set_title("number at risk", fontsize=8, loc="left", pad=3)
    for side in ("top", "right", "left"):
        table_ax.spines[side].set_visible(False)
    table_ax.tick_params(axis="y", length=0, pad=16)
    return _finish(fig, notice, tight=False), counts


def plot_kaplan_meier(time, event, groups, path, title, notice, p=None, ylabel="overall survival",
                      group_suffix=" risk", scale=DAYS_PER_YEAR, xlabel="years after TACE"):
    """``kaplan_meier_figure`` written to ``path``; the numbers at risk are also written beside the figure
    (``<name>_at_risk.csv``, times in the figure's unit). Returns that table."""
    fig, counts = kaplan_meier_figure(time, event, groups, title, notice, p=p, ylabel=ylabel,
                                      group_suffix=group_suffix, scale=scale, xlabel=xlabel)
    _save(fig, path)
    counts.index.name = "group"
    counts.to_csv(os.path.splitext(path)[0] + "_at_risk.csv")
    return counts


def _unit_square(ax, lines, xlabel, ylabel, title, legend):
    """Curves on the unit square with its diagonal: ``lines`` are ``(x, y, style, label)``, with a fifth item
    ``(below, above)`` for error bars."""
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--")
    for x, y, style, text, *error in lines:
        if error:  # clipped at 0: a Kaplan-Meier CI can miss its point by rounding (matplotlib refuses < 0)
            ax.errorbar(x, y, yerr=np.clip(list(error[0]), 0, None), fmt=style, label=text)
        else:
            ax.plot(x, y, style, label=text)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(loc=legend, fontsize=7)


def unit_square_figure(lines, xlabel, ylabel, title, notice, legend="lower right"):
    """One ROC or calibration plot (``_unit_square``) with the notice at the foot."""
    fig, ax = _pyplot().subplots(figsize=(4.8, 4.8))
    _unit_square(ax, lines, xlabel, ylabel, title, legend)
    return _finish(fig, notice)


def roc_figure(label, probability, cutoff, auc, title, notice):
    """The ROC curve with ``auc`` (value, lower, upper) in its legend and the point of the cut-off; a model
    without one (the published Model_CS) shows the Youden point of these very cases instead, named so."""
    fpr, tpr, _ = M.roc_curve(label, probability)
    if cutoff is None:
        point, sensitivity, specificity = M.youden_cutoff(label, probability)
        marker = (1 - specificity, sensitivity, "s", f"no cut-off; Youden point of these cases {point:.3g}")
    else:
        at = M.threshold_summary(label, probability, cutoff)
        marker = (1 - at["specificity"], at["sensitivity"], "o", f"cut-off {cutoff:g}")
    return unit_square_figure([(fpr, tpr, "-", f"AUC {auc[0]:.3f} ({auc[1]:.3f}-{auc[2]:.3f})"), marker],
                              "1 - specificity", "sensitivity", title, notice)


def calibration_figure(table, name, notice, horizon=None):
    """Observed against predicted in the calibration groups: survival at ``horizon`` years (Kaplan-Meier with
    its 95% CI, ``metrics.calibration_at``) or, without a horizon, the frequency of a 0 / 1 outcome
    (``metrics.calibration_binary``)."""
    if horizon is None:
        return unit_square_figure([(table["predicted"], table["observed"], "o-", "groups")],
                                  "predicted probability", "observed frequency", f"{name}: calibration", notice,
                                  legend="upper left")
    error = (table["observed"] - table["lower"], table["upper"] - table["observed"])
    return unit_square_figure([(table["predicted"], table["observed"], "o-", "groups (KM, 95% CI)", error)],
                              f"predicted {horizon}-year survival", f"observed {horizon}-year survival (Kaplan-Meier)",
                              f"{name}: calibration at {horizon} years", notice, legend="upper left")


def plot_calibration(table, horizon, path, name, notice):
    _save(calibration_figure(table, name, notice, horizon), path)


def plot_time_auc(results, path, name, notice):
    """Time-dependent AUC at 1, 2 and 3 years of one or more models (``{label: metrics dict}``), with the
    bootstrap 95% CIs where the metrics have them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    offsets = np.linspace(-0.08, 0.08, len(results)) if len(results) > 1 else [0.0]
    for offset, (label, result) in zip(offsets, results.items()):
        values = np.array([result[f"auc_{y}y"] for y in HORIZON_YEARS], dtype=float)
        x = np.asarray(HORIZON_YEARS, dtype=float) + offset
        if all(f"auc_{y}y_lower" in result for y in HORIZON_YEARS):
            lower = np.array([result[f"auc_{y}y_lower"] for y in HORIZON_YEARS], dtype=float)
            upper = np.array([result[f"auc_{y}y_upper"] for y in HORIZON_YEARS], dtype=float)
            ax.errorbar(x, values, yerr=np.clip([values - lower, upper - values], 0, None), fmt="o-", capsize=3, label=label)
        else:
            ax.plot(x, values, "o-", label=label)
    ax.axhline(0.5, color="0.6", linestyle="--")
    ax.set_xticks(HORIZON_YEARS)
    ax.set_ylim(0.3, 1)
    ax.set_xlabel("years")
    ax.set_ylabel("cumulative / dynamic AUC (95% CI)")
    ax.set_title(f"{name}: time-dependent AUC", fontsize=9)
    if len(results) > 1:
        ax.legend(fontsize=7)
    _save(fig, path, notice)


def decision_curve_figure(curves, title, notice):
    """Net benefit against the threshold probability for one or more models (``{label: net_benefit table}``,
    from ``metrics.net_benefit`` or ``metrics.survival_net_benefit`` on the same thresholds), with treat-all
    (of the first table) and treat-none, and the notice at the foot."""
    fig, ax = _pyplot().subplots(figsize=(5.5, 4))
    first = next(iter(curves.values()))
    top = 0.05
    for label, table in curves.items():
        ax.plot(table["threshold"], table["model"], label=label)
        top = max(top, float(np.nanmax(table["model"].to_numpy(float))))
    ax.plot(first["threshold"], first["treat_all"], color="0.4", linestyle="--", label="treat all")
    ax.plot(first["threshold"], first["treat_none"], color="0.0", linewidth=0.8, label="treat none")
    top = max(top, float(np.nanmax(first["treat_all"].to_numpy(float))))
    ax.set_ylim(-0.05, top * 1.1)
    ax.set_xlim(0, float(first["threshold"].max()))
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _finish(fig, notice)


def plot_decision_curves(curves, path, title, notice):
    _save(decision_curve_figure(curves, title, notice), path)


def _nomogram_row(ax, y, label, positions, labels):
    """One labelled scale of a points nomogram at height ``y``."""
    ax.hlines(y, min(positions), max(positions), color="k", linewidth=0.8)
    for x, text in zip(positions, labels):
        ax.vlines(x, y, y + 0.15, color="k", linewidth=0.8)
        ax.text(x, y + 0.22, text, ha="center", va="bottom", fontsize=7)
    ax.text(-4, y, label, ha="right", va="center", fontsize=8)


def plot_nomogram(model, path, notice):
    """Points nomogram of a Cox model: each covariate's range scaled to points (the widest spans 0-100), total
    points mapped to the linear predictor and to 1-, 2- and 3-year survival. Returns the axes' labels, top down
    (an indicator reads '<covariate>: no / yes', a dichotomised number by its cut-off: 'ALT > 50 U/L: no / yes')."""
    plt = _pyplot()
    ranges = model.extra["training_design"]
    readable = model.encoder.labels() if getattr(model, "encoder", None) is not None else {}
    rows = []
    for name, coef in zip(model.covariates, model.coef):
        low, high, binary = ranges[name]
        rows.append((name, coef, low, high, binary))
    spans = [abs(coef) * (high - low) for _, coef, low, high, _ in rows]
    scale = 100.0 / max(max(spans), 1e-12)
    lp_min = sum(min(coef * low, coef * high) for _, coef, low, high, _ in rows)
    total_max = sum(spans) * scale
    n_axes = len(rows) + 2 + len(HORIZON_YEARS)
    fig, ax = plt.subplots(figsize=(8, 0.55 * n_axes + 1))
    y = n_axes
    drawn = []

    def axis(label, positions, labels):
        nonlocal y
        y -= 1
        _nomogram_row(ax, y, label, positions, labels)
        drawn.append(label)

    axis("Points", np.linspace(0, 100, 11), [f"{v:.0f}" for v in np.linspace(0, 100, 11)])
    for name, coef, low, high, binary in rows:
        if binary:  # an indicator: a dichotomised number (paper 000's 'AFP > 400 ng/mL'), a level, a yes / no
            values = np.array([0.0, 1.0])
            points = (coef * values - min(coef * low, coef * high)) * scale
            axis(f"{readable.get(name, name)}: no / yes", points, ["no", "yes"])
            continue
        if float(low).is_integer() and float(high).is_integer() and high - low <= 10:
            values = np.arange(low, high + 1)
        else:
            values = np.array([float(f"{v:.3g}") for v in np.linspace(low, high, 5)])
        points = (coef * values - min(coef * low, coef * high)) * scale
        axis(name, points, [f"{v:g}" for v in values])
    totals = np.linspace(0, total_max, 9)
    axis("Total points", totals, [f"{v:.0f}" for v in totals])
    for years in HORIZON_YEARS:
        probs = np.array([0.9, 0.8, 0.7, 0.5, 0.3, 0.1])
        from .cox import survival_from_baseline
        grid = np.linspace(0, total_max, 400)
        lp = lp_min + grid / scale
        surv = survival_from_baseline(lp, *model.baseline, [years * DAYS_PER_YEAR])[:, 0]
        positions, labels = [], []
        for p in probs:
            if surv.min() <= p <= surv.max():
                positions.append(float(np.interp(-p, -surv, grid)))
                labels.append(f"{p:.1f}")
        if len(positions) >= 2:
            axis(f"{years}-year survival", positions, labels)
    ax.set_xlim(-40, max(110, total_max + 5))
    ax.set_ylim(y - 1, n_axes + 0.5)
    ax.axis("off")
    variant = model.extra.get("variant")
    coding = ", paper 000's cut-offs" if getattr(model, "clinical_coding", None) == "paper" else ""
    ax.set_title(f"Nomogram ({variant}{coding})" if variant else f"Nomogram of the {model.kind} model")
    _save(fig, path, notice, bottom=0.04)
    return drawn


def plot_logistic_nomogram(model, path, notice):
    """Points nomogram of Model_CSD: the clinical-semantic score and Model_D's probability (on its logit scale)
    to points, total points to the probability of aggressive progression, with the model's high-risk cut-off."""
    plt = _pyplot()
    c = model.coefficients
    cs_low, cs_high = model.info["cs_score_range"]
    d_labels = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    d_logit = np.log(d_labels / (1 - d_labels))
    cs_labels = np.array([float(f"{v:.2g}") for v in np.linspace(cs_low, cs_high, 6)])
    rows = [("Model_CS score", c["cs_score"], cs_labels, cs_labels),
            ("Model_D probability", c["d_logit"], d_labels, d_logit)]
    spans = [abs(coef) * (values.max() - values.min()) for _, coef, _, values in rows]
    scale = 100.0 / max(max(spans), 1e-12)
    lp_min = c["intercept"] + sum(min(coef * values.min(), coef * values.max()) for _, coef, _, values in rows)
    total_max = sum(spans) * scale
    fig, ax = plt.subplots(figsize=(8, 3.6))
    y = 6

    def axis(label, positions, labels):
        nonlocal y
        y -= 1
        _nomogram_row(ax, y, label, positions, labels)

    axis("Points", np.linspace(0, 100, 11), [f"{v:.0f}" for v in np.linspace(0, 100, 11)])
    for name, coef, labels, values in rows:
        axis(name, (coef * values - min(coef * values.min(), coef * values.max())) * scale, [f"{v:g}" for v in labels])
    totals = np.linspace(0, total_max, 9)
    axis("Total points", totals, [f"{v:.0f}" for v in totals])
    grid = np.linspace(0, total_max, 400)
    probability = 1.0 / (1.0 + np.exp(-(lp_min + grid / scale)))
    marks = [p for p in (0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.98)
             if probability.min() <= p <= probability.max() and abs(p - (model.cutoff or -1)) > 0.03]
    if len(marks) < 2:  # a narrow range: evenly spaced marks within it
        marks = sorted({float(f"{p:.2g}") for p in np.linspace(probability.min(), probability.max(), 5)})
    if model.cutoff is not None and probability.min() <= model.cutoff <= probability.max():
        marks = sorted(set(marks) | {model.cutoff})
    axis("P(aggressive progression)", [float(np.interp(p, probability, grid)) for p in marks],
         [f"{p:.2g} (cut-off)" if p == model.cutoff else f"{p:g}" for p in marks])
    ax.set_xlim(-40, max(110, total_max + 5))
    ax.set_ylim(y - 1, 6.5)
    ax.axis("off")
    ax.set_title("Model_CSD nomogram (aggressive progression)")
    _save(fig, path, notice, bottom=0.04)


DECISION_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def binary_metrics(label, probability, cutoff, n_bootstrap=1000, seed=0):
    """AUC with DeLong and bootstrap 95% CIs, the cut-off summary and the Brier score, as one flat dict.
    ``cutoff`` None (a published score without one, Model_CS): the threshold statistics are NaN, and the Youden
    point of these very cases is given instead (``youden_*_these_cases``; optimistic, chosen on the data it is
    measured on)."""
    auc, lower, upper = M.roc_auc_ci(label, probability)
    _, b_lower, b_upper = M.roc_auc_ci(label, probability, method="bootstrap", n_bootstrap=n_bootstrap, seed=seed)
    out = {"cases": int(len(label)), "positives": int(np.sum(label)), "auc": auc, "auc_delong_lower": lower,
           "auc_delong_upper": upper, "auc_bootstrap_lower": b_lower, "auc_bootstrap_upper": b_upper}
    if cutoff is None:
        summary = M.threshold_summary(label, probability, 0.5)
        out.update({k: (np.nan if k in ("tp", "fp", "tn", "fn") else np.nan) for k in summary})
        point, sensitivity, specificity = M.youden_cutoff(label, probability)
        out.update(youden_cutoff_these_cases=point, youden_sensitivity_these_cases=sensitivity,
                   youden_specificity_these_cases=specificity)
    else:
        out.update({k: v for k, v in M.threshold_summary(label, probability, cutoff).items()})
    out["brier"] = float(np.mean((np.asarray(probability) - np.asarray(label)) ** 2))
    return out


def evaluate_binary(model, data, label_column, out_dir, n_bootstrap=1000, seed=0):
    """Predict ``data`` with a probability model (``predict`` -> ``probability``, ``cutoff``) and compare with
    the 0 / 1 column ``label_column``: metrics, ROC, calibration and decision-curve tables and figures."""
    import warnings

    from .. import InputError, InputWarning
    os.makedirs(out_dir, exist_ok=True)
    if label_column not in data.table.columns:
        raise InputError(f"the manifest has no '{label_column}' column to evaluate against", column=label_column,
                         fix=f"add '{label_column}' (0 / 1)")
    labelled = data.table[label_column].notna()
    if not labelled.all():
        warnings.warn(f"{(~labelled).sum()} case(s) without '{label_column}' left out of the evaluation: "
                      + ", ".join(data.table.loc[~labelled, "case_id"].astype(str)[:8]), InputWarning, stacklevel=2)
    data = data.subset(data.table[labelled])
    label = data.table[label_column].astype(int).to_numpy()
    if len(np.unique(label)) < 2:
        raise InputError(f"all {len(label)} labelled case(s) have '{label_column}' = "
                         f"{label[0] if len(label) else 'nothing'}: the AUC and calibration need both outcomes",
                         column=label_column, fix="evaluate on a set with both outcomes; `tacepredict predict` gives "
                                                  "the predictions alone")
    predictions = model.predict(data)
    probability = predictions["probability"].to_numpy()
    result = binary_metrics(label, probability, model.cutoff, n_bootstrap, seed)
    notice = report_notice(model, data)
    calibration, _ = M.calibration_binary(label, probability, groups=5)
    decision = M.net_benefit(label, probability, DECISION_THRESHOLDS)
    predictions.assign(**{label_column: label}).to_csv(os.path.join(out_dir, "predictions.csv"), index=False)
    calibration.to_csv(os.path.join(out_dir, "calibration.csv"), index=False)
    decision.to_csv(os.path.join(out_dir, "decision_curve.csv"), index=False)
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as handle:
        json.dump({"model": model.label, "provenance": model.provenance, "notice": notice,
                   "evaluated_on": data.manifest_path, "outcome": label_column, "metrics": result}, handle, indent=1)
    pd.DataFrame([{"metric": k, "value": v} for k, v in result.items()]).to_csv(
        os.path.join(out_dir, "metrics.csv"), index=False)
    auc = (result["auc"], result["auc_delong_lower"], result["auc_delong_upper"])
    _save(roc_figure(label, probability, model.cutoff, auc, f"{model.label}: ROC ({label_column})", notice),
          os.path.join(out_dir, "roc.png"))
    _save(calibration_figure(calibration, model.label, notice), os.path.join(out_dir, "calibration.png"))
    plot_decision_curves({model.label: decision}, os.path.join(out_dir, "decision_curve.png"), "decision curve",
                         notice)
    return result, predictions


def plot_correlation(table, path, title, notice):
    """Heat map of a square correlation table (the models' outputs on the same cases)."""
    plt = _pyplot()
    n = len(table)
    fig, ax = plt.subplots(figsize=(max(5.5, 2.6 + 0.5 * n), max(4.5, 1.8 + 0.5 * n)))
    image = ax.imshow(table.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(n), table.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), table.index, fontsize=7)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{table.iat[i, j]:.2f}", ha="center", va="center", fontsize=5.5)
    fig.colorbar(image, ax=ax, shrink=0.8, label="Spearman correlation")
    import textwrap
    ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=9)
    _save(fig, path, notice, bottom=0.02)


def plot_confusion(matrix, classes, path, title, notice):
    """A confusion matrix (rows true, columns predicted) with counts and row percentages."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    rows = matrix.sum(1, keepdims=True)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.imshow(matrix / np.maximum(rows, 1), vmin=0, vmax=1, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{matrix[i, j]}\n{matrix[i, j] / max(rows[i, 0], 1):.0%}", ha="center", va="center",
                    fontsize=8)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    _save(fig, path, notice, bottom=0.04)


def plot_class_rocs(label, probabilities, classes, path, title, notice, intervals=None):
    """One-vs-rest ROC curve of every class, each class's AUC in the legend with its 95 % CI when
    ``intervals`` ({class: (lower, upper)}) has it; returns {class: AUC}."""
    aucs, lines = {}, []
    for i, name in enumerate(classes):
        truth = (np.asarray(label) == i).astype(int)
        if truth.min() == truth.max():
            continue
        fpr, tpr, _ = M.roc_curve(truth, probabilities[:, i])
        aucs[name] = M.roc_auc(truth, probabilities[:, i])
        lower, upper = (intervals or {}).get(name, (np.nan, np.nan))
        ci = f" ({lower:.3f}-{upper:.3f})" if np.isfinite([lower, upper]).all() else ""
        lines.append((fpr, tpr, "-", f"{name} vs rest: AUC {aucs[name]:.3f}{ci}"))
    _save(unit_square_figure(lines, "1 - specificity", "sensitivity", title, notice), path)
    return aucs
