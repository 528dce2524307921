"""One self-contained model report (HTML and its PDF) for a researcher to send to a co-author.

``write_report(model_dirs, manifest, out_dir)`` evaluates the model (and any comparators) on a labelled
manifest and renders one HTML page from the Jinja2 template ``Resources/templates/model_report.html.j2``:
cohort "Table 1" with missing values, the model's specification and provenance, every metric with its
confidence interval, calibration, decision curve, Kaplan-Meier with numbers at risk, the built-in published
scores as comparators where the manifest has their inputs, and the TRIPOD+AI checklist (Collins et al., BMJ
2024) saying which items the report covers and which the authors must add. Figures are embedded as base64
PNG: the page needs no network when it is opened. The PDF is printed by headless Chromium
(``chromium --headless --print-to-pdf``); without Chromium the HTML is still written and the PDF is skipped
with a message.
"""

from __future__ import annotations

import base64
import io

import numpy as np

from . import metrics as M

DAYS_PER_YEAR = 365.25


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def figure_png(fig, dpi=110):
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(fig)
    return buffer.getvalue()


def data_uri(png):
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def at_risk_table(time, event, groups, order, ticks):
    """Numbers at risk (time >= tick) of each group at each tick: ``{group: [n, ...]}``."""
    time = np.asarray(time, dtype=float)
    groups = np.asarray(groups, dtype=object)
    return {g: [int(np.sum((groups == g) & (time >= t))) for t in ticks] for g in order}


def plot_km_at_risk(time_days, event, groups, order=None, title="", notice="", p=None, ylabel="overall survival",
                    step_years=None):
    """Kaplan-Meier curves (95% CI bands) of each group with a numbers-at-risk table under the axis; returns
    the figure. Times in days, shown in years."""
    plt = _pyplot()
    time_days = np.asarray(time_days, dtype=float)
    event = np.asarray(event, dtype=int)
    groups = np.asarray(groups, dtype=object)
    order = [g for g in (order or sorted(set(groups))) if np.any(groups == g)]
    years = time_days / DAYS_PER_YEAR
    horizon = float(np.max(years)) if len(years) else 1.0
    step = step_years or (0.5 if horizon <= 3 else 1.0 if horizon <= 8 else 2.0)
    ticks = np.arange(0, horizon + 1e-9, step)
    fig = plt.figure(figsize=(6.4, 4.2 + 0.22 * len(order)))
    grid = fig.add_gridspec(2, 1, height_ratios=[4.0, 0.5 + 0.25 * len(order)], hspace=0.32)
    ax = fig.add_subplot(grid[0])
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, label in enumerate(order):
        member = groups == label
        km = M.kaplan_meier(time_days[member], event[member])
        t = np.concatenate([[0.0], km["time"].to_numpy()]) / DAYS_PER_YEAR
        s = np.concatenate([[1.0], km["survival"].to_numpy()])
        colour = colours[k % len(colours)]
        ax.step(t, s, where="post", color=colour, label=f"{label} (n={int(member.sum())}, "
                                                         f"{int(event[member].sum())} events)")
        ax.fill_between(t, np.concatenate([[1.0], km["lower"]]), np.concatenate([[1.0], km["upper"]]),
                        step="post", alpha=0.12, color=colour)
    ax.set_xlim(0, ticks[-1] if len(ticks) > 1 else horizon)
    ax.set_xticks(ticks)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("years after TACE")
    ax.set_title(title + (f" (log-rank p = {p:.3g})" if p is not None and np.isfinite(p) else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    table_ax = fig.add_subplot(grid[1], sharex=ax)
    table_ax.set_xlim(ax.get_xlim())
    counts = at_risk_table(time_days, event, groups, order, ticks * DAYS_PER_YEAR)
    for k, label in enumerate(order):
        y = len(order) - 1 - k
        for x, n in zip(ticks, counts[label]):
            table_ax.text(x, y, str(n), ha="center", va="center", fontsize=7, color=colours[k % len(colours)])
    table_ax.set_yticks(range(len(order)), [str(g) for g in reversed(order)], fontsize=7)
    table_ax.set_ylim(-0.6, len(order) - 0.4)
    table_ax.tick_params(axis="both", length=0)
    table_ax.tick_params(axis="y", pad=14)
    table_ax.tick_params(axis="x", labelbottom=False)
    for side in ("top", "right", "bottom", "left"):
        table_ax.spines[side].set_visible(False)
    table_ax.set_title("numbers at risk", fontsize=7, loc="left")
    if notice:
        fig.text(0.01, 0.005, notice, fontsize=5.5, color="0.35", ha="left", va="bottom", wrap=True)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.93, bottom=0.07)
    return fig


# --- loading what to report on ----------------------------------------------------------------------------

class Entry:
    """A model to report on: the model, its bundle info (None for a built-in), where it came from."""

    def __init__(self, model, info, source):
        self.model = model
        self.info = info
        self.source = source

    @property
    def label(self):
        return getattr(self.model, "label", None) or self.model.kind

    @property
    def built_in(self):
        return self.info is None


def load_entry(spec, task=None):
    """A bundle folder, a built-in clinical score (``hap``, ``albi``, ...) or a built-in model of ``task``
    (``clinical-semantic`` with task aggressive-pd)."""
    import os

    from .. import InputError, models
    from ..models.clinical_scores import SCORES
    if os.path.isdir(spec):
        model, info = models.load(spec)
        return Entry(model, info, os.path.abspath(spec))
    if spec in SCORES:
        return Entry(SCORES[spec](), None, f"built-in: {spec}")
    for published in models.models_of(trained=False):
        if published.kind == spec and task in (None, published.task):
            return Entry(published.cls(), None, f"built-in: {spec}")
    raise InputError(f"'{spec}' is neither a model bundle folder nor a built-in model", column="--model",
                     fix=f"give a folder written by `tacepredict train`, or one of {', '.join(SCORES)}, "
                         "clinical-semantic")


# --- statistics the existing modules do not give --------------------------------------------------------

def bootstrap_interval(statistic, n, n_bootstrap=1000, seed=0, level=0.95):
    """Percentile interval of ``statistic(indices)`` over ``n_bootstrap`` resamples of ``n`` cases; a
    resample where the statistic is undefined (ValueError, NaN) is skipped. ``(lower, upper)``, NaN when fewer
    than 20 resamples gave a value."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n, n)
        try:
            value = statistic(idx)
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError):
            continue
        if value is not None and np.all(np.isfinite(value)):
            values.append(value)
    if len(values) < 20:
        return np.nan, np.nan
    lower, upper = np.quantile(np.asarray(values), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lower, upper


def survival_net_benefit(time, event, risk, horizon, thresholds):
    """Decision curve for a survival outcome at ``horizon`` (Vickers et al., BMC Med Inform Decis Mak 2008):
    treating patients whose predicted risk of the event by ``horizon`` (1 - S(horizon)) is at least the
    threshold p gives net benefit = (1 - S_KM(horizon | treated)) x P(treated) - S_KM(horizon | treated) x
    P(treated) x p / (1 - p), with the Kaplan-Meier survival of the treated; treating all uses everyone's KM.
    Equals the ``dcurves`` package's survival decision curve. Returns threshold, model, treat_all, treat_none."""
    import pandas as pd
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    risk = np.asarray(risk, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    if np.any((thresholds <= 0) | (thresholds >= 1)):
        raise ValueError("thresholds must lie strictly between 0 and 1")
    everyone = float(M.survival_at(M.kaplan_meier(time, event), horizon))
    odds = thresholds / (1 - thresholds)
    model = []
    for p, w in zip(thresholds, odds):
        treated = risk >= p
        share = treated.mean()
        if not treated.any():
            model.append(0.0)
            continue
        surv = float(M.survival_at(M.kaplan_meier(time[treated], event[treated]), horizon))
        model.append((1 - surv) * share - surv * share * w)
    return pd.DataFrame({"threshold": thresholds, "model": model,
                         "treat_all": (1 - everyone) - everyone * odds, "treat_none": 0.0})


def median_follow_up(time, event):
    """Reverse Kaplan-Meier median follow-up (censoring as the event), in the unit of ``time``; NaN when the
    reverse curve never reaches one half."""
    km = M.kaplan_meier(time, 1 - np.asarray(event, dtype=int))
    below = km.loc[km["survival"] <= 0.5, "time"]
    return float(below.iloc[0]) if len(below) else np.nan


def km_median(time, event):
    km = M.kaplan_meier(time, event)
    below = km.loc[km["survival"] <= 0.5, "time"]
    return float(below.iloc[0]) if len(below) else np.nan


def wilson_interval(successes, total, level=0.95):
    """Wilson score interval of a proportion: ``(lower, upper)``; NaN for an empty denominator."""
    from scipy import stats
    if total == 0:
        return np.nan, np.nan
    z = stats.norm.ppf((1 + level) / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(centre - half), float(centre + half)


# --- the cohort's "Table 1" -----------------------------------------------------------------------------

def _fmt(value, digits=3):
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def _number(value):
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3g}"


def table_one(table, columns):
    """Rows of a cohort table: each column's median (IQR) or counts per level, and its missing count."""
    import pandas as pd

    from ..data.manifest import COLUMNS
    rows = []
    n = len(table)
    for column in columns:
        if column not in table.columns:
            continue
        values = table[column]
        missing = int(values.isna().sum())
        missing_text = f"{missing} ({100 * missing / n:.0f}%)" if n else "0"
        spec = COLUMNS.get(column)
        name = spec.description if spec else column
        unit = f", {spec.unit}" if spec and spec.unit else ""
        numeric = pd.to_numeric(values, errors="coerce")
        kind = spec.kind if spec else ("number" if numeric.notna().sum() == values.notna().sum() else "category")
        present = values.dropna()
        if kind in ("number", "integer") and len(present):
            q1, med, q3 = np.nanpercentile(numeric, [25, 50, 75])
            rows.append({"variable": f"{name}{unit}", "column": column, "level": "median (IQR)",
                         "value": f"{_number(med)} ({_number(q1)}-{_number(q3)})", "missing": missing_text})
        elif kind == "binary":
            yes = int((numeric == 1).sum())
            rows.append({"variable": name, "column": column, "level": "yes",
                         "value": f"{yes} ({100 * yes / max(len(present), 1):.0f}%)", "missing": missing_text})
        else:
            levels = list(spec.codes) if spec and spec.codes else sorted(present.astype(str).unique())
            counts = present.astype(str).value_counts()
            first = True
            for level in levels:
                if level not in counts.index:
                    continue
                rows.append({"variable": name if first else "", "column": column, "level": level,
                             "value": f"{counts[level]} ({100 * counts[level] / len(present):.0f}%)",
                             "missing": missing_text if first else ""})
                first = False
            if first:
                rows.append({"variable": name, "column": column, "level": "-", "value": "-", "missing": missing_text})
    return rows


def paginate(rows, per_page):
    """``rows`` cut into pages of at most ``per_page`` rows (at least one page)."""
    return [rows[i:i + per_page] for i in range(0, len(rows), per_page)] or [[]]


# --- TRIPOD+AI ------------------------------------------------------------------------------------------

TRIPOD_AI_REFERENCE = ("Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for reporting "
                       "clinical prediction models that use regression or machine learning methods. BMJ "
                       "2024;385:e078378. doi:10.1136/bmj-2023-078378")

# (item, section, topic, D/E) in the statement's order; the topics are short paraphrases of the items.
TRIPOD_AI_ITEMS = [
    ("1", "Title", "Study as development / evaluation of a prediction model; population; outcome", "D;E"),
    ("2", "Abstract", "Abstract following TRIPOD+AI for Abstracts", "D;E"),
    ("3a", "Background", "Healthcare context, rationale, existing models", "D;E"),
    ("3b", "Background", "Target population, intended purpose and users in the care pathway", "D;E"),
    ("3c", "Background", "Known health inequalities between sociodemographic groups", "D;E"),
    ("4", "Objectives", "Objectives: development, evaluation or both", "D;E"),
    ("5a", "Data", "Data sources for development and evaluation; rationale; representativeness", "D;E"),
    ("5b", "Data", "Dates of accrual and end of follow-up", "D;E"),
    ("6a", "Participants", "Setting, number and location of centres", "D;E"),
    ("6b", "Participants", "Eligibility criteria", "D;E"),
    ("6c", "Participants", "Treatments received and how they were handled", "D;E"),
    ("7", "Data preparation", "Pre-processing and quality checks, also across sociodemographic groups", "D;E"),
    ("8a", "Outcome", "Outcome, time horizon, how and when assessed, rationale", "D;E"),
    ("8b", "Outcome", "Qualifications and demographics of outcome assessors (if subjective)", "D;E"),
    ("8c", "Outcome", "Blinding of outcome assessment", "D;E"),
    ("9a", "Predictors", "Choice of initial predictors and any pre-selection", "D"),
    ("9b", "Predictors", "Definition of all predictors, how and when measured, blinding", "D;E"),
    ("9c", "Predictors", "Qualifications and demographics of predictor assessors (if subjective)", "D;E"),
    ("10", "Sample size", "How the study size was arrived at and why it suffices", "D;E"),
    ("11", "Missing data", "How missing data were handled; reasons for omitting data", "D;E"),
    ("12a", "Analytical methods", "How the data were used (partitioning) for development and evaluation", "D"),
    ("12b", "Analytical methods", "Handling of predictors (functional form, rescaling, standardisation)", "D"),
    ("12c", "Analytical methods", "Model type, rationale, building steps, tuning, internal validation", "D"),
    ("12d", "Analytical methods", "Heterogeneity across clusters (TRIPOD-Cluster)", "D;E"),
    ("12e", "Analytical methods", "Performance measures and plots, and model comparison", "D;E"),
    ("12f", "Analytical methods", "Model updating (e.g. recalibration) arising from the evaluation", "E"),
    ("12g", "Analytical methods", "How the model's predictions were calculated", "E"),
    ("13", "Class imbalance", "Class-imbalance methods and any recalibration after them", "D;E"),
    ("14", "Fairness", "Approaches used to address model fairness", "D;E"),
    ("15", "Model output", "Output (probabilities, classification), thresholds and how they were chosen", "D"),
    ("16", "Training versus evaluation", "Differences between development and evaluation data", "D;E"),
    ("17", "Ethical approval", "Ethics committee and consent / waiver", "D;E"),
    ("18a", "Open science", "Funding and the funders' role", "D;E"),
    ("18b", "Open science", "Conflicts of interest", "D;E"),
    ("18c", "Open science", "Where the protocol can be accessed", "D;E"),
    ("18d", "Open science", "Registration", "D;E"),
    ("18e", "Open science", "Availability of the study data", "D;E"),
    ("18f", "Open science", "Availability of the analytical code", "D;E"),
    ("19", "Patient and public involvement", "Patient and public involvement, or none", "D;E"),
    ("20a", "Participants (results)", "Flow of participants, with and without the outcome, follow-up", "D;E"),
    ("20b", "Participants (results)", "Characteristics, predictors, events, follow-up and missing data", "D;E"),
    ("20c", "Participants (results)", "Comparison of the evaluation data with the development data", "E"),
    ("21", "Model development", "Participants and events in each analysis", "D;E"),
    ("22", "Model specification", "The full model (formula, code, object) and restrictions on its use", "D"),
    ("23a", "Model performance", "Performance with confidence intervals, also in key subgroups", "D;E"),
    ("23b", "Model performance", "Heterogeneity of performance across clusters", "D;E"),
    ("24", "Model updating", "Results of any model updating", "E"),
    ("25", "Interpretation", "Overall interpretation, including fairness", "D;E"),
    ("26", "Limitations", "Limitations and their effect on bias, uncertainty, generalisability", "D;E"),
    ("27a", "Usability", "How poor-quality or unavailable input data are handled in use", "D"),
    ("27b", "Usability", "User interaction with the inputs and the expertise required", "D"),
    ("27c", "Usability", "Next steps for research on applicability and generalisability", "D;E"),
]

COVERED, PARTLY, AUTHORS = "covered", "partly", "authors"


def tripod_checklist(ctx):
    """One row per TRIPOD+AI item in the statement's order: what this report gives (``covered``), gives in
    part (``partly``) or leaves to the authors (``authors``), and where."""
    survival = ctx["task"] == "survival"
    has_bundle = ctx["main"]["bundle"]
    notes = {
        "5a": (PARTLY, "Cohort, Model: the evaluation manifest and the training cohort the bundle records"
               + (" (SYNTHETIC)" if ctx["synthetic"] else "") + "; rationale and representativeness: authors"),
        "6c": (PARTLY, "every patient had TACE (the tool's scope); regimen and repeat sessions: authors"),
        "7": (PARTLY, "Model: manifest validation, unit checks and the model's imputation values; checks across "
                      "sociodemographic groups: authors"),
        "8a": (PARTLY, ("overall survival from TACE (days), death as the event; horizons "
                        f"{ctx['horizons_text']}" if survival else f"outcome '{ctx['outcome']}' (0 / 1)")
               + "; how and when assessed: authors"),
        "9a": (PARTLY if has_bundle else AUTHORS,
               "Model: the candidate columns and the selection rule the bundle records"),
        "9b": (PARTLY, "Model, Cohort: the manifest's definition and unit of each input; how and when measured: "
                       "authors"),
        "10": (PARTLY, "Cohort, Performance: cases and events; a sample-size justification: authors"),
        "11": (COVERED, "Cohort (missing values per column); Model (imputation values); Built-in scores (cases "
                        "not graded and why); cases without the outcome are left out and counted"),
        "12a": (PARTLY, "Model: training manifest; this report: the evaluation manifest; whether they are a "
                        "split of one cohort: authors"),
        "12b": (COVERED if ctx["main"]["coefficients"] else PARTLY,
                "Model: encoding, transformations and imputation the bundle applies"),
        "12c": (PARTLY, "Model: model kind, method paper, seed and settings; internal validation: authors"),
        "12e": (COVERED, "Performance, Calibration and decision curve, Kaplan-Meier: every measure with its "
                         "method and confidence interval"),
        "12f": (COVERED, "none: the model is applied as trained, without recalibration"),
        "12g": (COVERED, "Model: the bundle (SHA-256 of its files), TACEPredict version and command"),
        "13": (COVERED if survival else PARTLY,
               "no class-imbalance method in TACEPredict's survival models" if survival
               else "see the model's documentation for class weights; recalibration: none"),
        "15": (COVERED, "Model: risk score, risk groups and their cut-off rule"
                        + (", survival probabilities at 1-3 years" if survival else ", probability")),
        "16": (PARTLY, "Cohort: training and evaluation cases and events side by side; setting and eligibility "
                       "differences: authors"),
        "18f": (PARTLY, "TACEPredict is open source; its version and this report's command are given; the "
                        "authors' own analysis code: authors"),
        "20a": (PARTLY, "Cohort: cases in the manifest, with and without the outcome, follow-up; a flow diagram: "
                        "authors"),
        "20b": (PARTLY, "Cohort: characteristics, events, follow-up and missing data; dates, treatments and "
                        "differences across demographic groups: authors"),
        "20c": (PARTLY, "Cohort: cases, events and follow-up of the development cohort as the bundle records "
                        "them; predictor distributions: authors"),
        "21": (COVERED, "Cohort, Performance, Built-in scores: cases and events in each analysis"),
        "22": (COVERED if has_bundle else PARTLY,
               "Model: coefficients / bundle files and how to load them" if has_bundle
               else "Model: the published definition"),
        "23a": (PARTLY, "Performance: every estimate with a 95% confidence interval; subgroup results: authors"),
        "24": (COVERED, "no updating was done"),
        "26": (PARTLY, "Summary and Performance list the caveats the data impose (apparent performance, synthetic "
                       "data, few events); the discussion: authors"),
        "27a": (COVERED, "Model: the manifest's validation refuses invalid values; missing values get the training "
                         "values listed (with a warning naming the case)"),
        "27b": (PARTLY, "inputs come from the manifest (and a tumour segmentation for image models); the "
                        "expertise required: authors"),
    }
    rows = []
    for item, section, topic, applies in TRIPOD_AI_ITEMS:
        status, where = notes.get(item, (AUTHORS, "to be reported by the authors"))
        if applies == "D" and not has_bundle and status == AUTHORS:
            where = "development item: see the model's own paper"
        rows.append({"item": item, "section": section, "topic": topic, "applies": applies, "status": status,
                     "where": where})
    return rows


# --- figures --------------------------------------------------------------------------------------------

def plot_survival_calibration(table, horizon_years, name, notice=""):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="ideal")
    ax.errorbar(table["predicted"], table["observed"],
                yerr=np.clip([table["observed"] - table["lower"], table["upper"] - table["observed"]], 0, None), fmt="o-",
                label="quantile groups (KM, 95% CI)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"predicted {horizon_years}-year survival")
    ax.set_ylabel(f"observed {horizon_years}-year survival")
    ax.set_title(f"{name}: calibration at {horizon_years} years", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    if notice:
        fig.text(0.01, 0.005, notice, fontsize=5, color="0.35", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_binary_calibration(table, name, notice=""):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="ideal")
    ax.plot(table["predicted"], table["observed"], "o-", label="quantile groups")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"{name}: calibration", fontsize=9)
    ax.legend(loc="upper left", fontsize=7)
    if notice:
        fig.text(0.01, 0.005, notice, fontsize=5, color="0.35", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_decision_curves(curves, title, notice=""):
    """``curves``: ``{name: table}`` from ``survival_net_benefit`` / ``metrics.net_benefit`` (same thresholds);
    treat-all and treat-none come from the first."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    first = next(iter(curves.values()))
    top = 0.05
    for name, table in curves.items():
        ax.plot(table["threshold"], table["model"], label=name)
        top = max(top, float(np.nanmax(table["model"])))
    ax.plot(first["threshold"], first["treat_all"], color="0.4", linestyle=":", label="treat all")
    ax.plot(first["threshold"], first["treat_none"], color="0.2", linewidth=0.8, label="treat none")
    top = max(top, float(np.nanmax(first["treat_all"])))
    ax.set_ylim(-0.05, top * 1.15)
    ax.set_xlim(0, float(first["threshold"].max()))
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    if notice:
        fig.text(0.01, 0.005, notice, fontsize=5, color="0.35", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_roc(label, probability, name, cutoff, notice=""):
    plt = _pyplot()
    fpr, tpr, _ = M.roc_curve(label, probability)
    summary = M.threshold_summary(label, probability, cutoff)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot(fpr, tpr, label=f"AUC {M.roc_auc(label, probability):.3f}")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--")
    ax.plot(1 - summary["specificity"], summary["sensitivity"], "o", label=f"cut-off {cutoff:g}")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{name}: ROC", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    if notice:
        fig.text(0.01, 0.005, notice, fontsize=5, color="0.35", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _figure(fig, alt, caption=""):
    return {"src": data_uri(figure_png(fig)), "alt": alt, "caption": caption}


# --- evaluation -----------------------------------------------------------------------------------------

def _metric(name, value, interval=(np.nan, np.nan), note="", digits=3):
    lower, upper = interval
    ci = f"{_fmt(lower, digits)}-{_fmt(upper, digits)}" if np.isfinite(lower) and np.isfinite(upper) else "-"
    return {"metric": name, "value": _fmt(value, digits), "ci": ci, "note": note}


def _predictions(entry, data):
    """``(risk, surv or None, groups)`` of an entry on ``data``: surv is cases x (1, 2, 3 years)."""
    predictions = entry.model.predict(data)
    risk = predictions["risk_score"].to_numpy(dtype=float)
    columns = [c for c in ("surv_1y", "surv_2y", "surv_3y") if c in predictions.columns]
    surv = predictions[columns].to_numpy(dtype=float) if len(columns) == 3 else None
    groups = predictions["risk_group"].astype(object).to_numpy() if "risk_group" in predictions.columns else None
    return risk, surv, groups


def _group_hazard_ratio(time, event, high):
    from .cox import fit_cox
    summary = fit_cox(high.astype(float)[:, None], time, event, ["high"]).summary().iloc[0]
    return float(summary["hazard_ratio"]), (float(summary["hr_lower"]), float(summary["hr_upper"])), float(summary["p"])


def evaluate_survival_entries(main, comparators, data, n_bootstrap=1000, seed=0, notice="", include_scores=True,
                              log=print):
    """Every survival statistic of ``main`` and its comparators (other entries and the built-in scores its
    manifest allows) on the cases of ``data`` with an OS outcome: a dict the template renders."""
    import warnings

    from ..models import clinical_scores
    from .. import InputWarning
    from ..data.outcomes import complete_outcome_rows, survival_outcome
    from ..models.overall_survival import HORIZON_YEARS
    all_cases = len(data.table)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        labelled = data.subset(complete_outcome_rows(data.table, "os"))
    left_out = [str(w.message) for w in caught]
    time, event = survival_outcome(labelled.table, "os")
    n = len(time)
    horizons = [y for y in HORIZON_YEARS if y * DAYS_PER_YEAR < np.max(time)]
    risk, surv, groups = _predictions(main, labelled)
    scored = np.isfinite(risk)
    out = {"cases_total": all_cases, "cases": n, "events": int(event.sum()), "left_out": left_out,
           "horizons": horizons, "metrics": [], "comparators": [], "scores": [], "figures": dict.fromkeys(("calibration", "decision", "km", "roc")),
           "score_figures": [], "calibration_table": None}
    if scored.sum() < n:
        out["left_out"].append(f"{n - int(scored.sum())} case(s) without a {main.label} prediction are left out "
                               "of its statistics")
    t, e, r = time[scored], event[scored], risk[scored]
    c, lower, upper = M.concordance_index_ci(t, r, e, n_bootstrap=n_bootstrap, seed=seed)
    out["c_index"] = (c, lower, upper)
    out["metrics"].append(_metric("Harrell's C-index", c, (lower, upper), "bootstrap percentile 95% CI"))
    for years in horizons:
        h = years * DAYS_PER_YEAR
        value = M.time_dependent_auc(t, e, r, [h])[0]
        interval = bootstrap_interval(lambda idx: M.time_dependent_auc(t[idx], e[idx], r[idx], [h])[0], len(t),
                                      n_bootstrap, seed)
        out["metrics"].append(_metric(f"time-dependent AUC at {years} year{'s' * (years > 1)}", value, interval,
                                      "cumulative / dynamic, IPCW (Uno)"))
    if surv is not None:
        s = surv[scored]
        if len(horizons) >= 2:
            grid = np.asarray(horizons, dtype=float) * DAYS_PER_YEAR
            k = len(horizons)
            value = M.integrated_brier_score(t, e, s[:, :k], grid)
            interval = bootstrap_interval(lambda idx: M.integrated_brier_score(t[idx], e[idx], s[idx, :k], grid),
                                          len(t), n_bootstrap, seed)
            out["metrics"].append(_metric(f"integrated Brier score, 1-{horizons[-1]} years", value, interval,
                                          "IPCW (Graf); lower is better"))
        horizon = horizons[-1] if horizons else HORIZON_YEARS[0]
        column = HORIZON_YEARS.index(horizon)
        table, rmse = M.calibration_at(t, e, s[:, column], horizon * DAYS_PER_YEAR, groups=5)
        observed = float(M.survival_at(M.kaplan_meier(t, e), horizon * DAYS_PER_YEAR))
        obs_interval = bootstrap_interval(
            lambda idx: float(M.survival_at(M.kaplan_meier(t[idx], e[idx]), horizon * DAYS_PER_YEAR)), len(t),
            n_bootstrap, seed)
        out["metrics"].append(_metric(f"mean predicted {horizon}-year survival", float(np.mean(s[:, column]))))
        out["metrics"].append(_metric(f"observed (Kaplan-Meier) {horizon}-year survival", observed, obs_interval))
        out["metrics"].append(_metric(f"calibration RMSE at {horizon} years", rmse, note=f"{len(table)} quantile "
                                      "groups, predicted against Kaplan-Meier"))
        out["calibration_table"] = table.to_dict(orient="records")
        out["figures"]["calibration"] = _figure(plot_survival_calibration(table, horizon, main.label, notice),
                                                f"calibration of {main.label} at {horizon} years")
        thresholds = np.round(np.arange(0.01, 0.96, 0.01), 2)
        curves = {main.label: survival_net_benefit(t, e, 1 - s[:, column], horizon * DAYS_PER_YEAR, thresholds)}
        for entry in comparators:
            c_risk, c_surv, _ = _predictions(entry, labelled)
            if c_surv is not None and np.isfinite(c_surv[scored][:, column]).all():
                curves[entry.label] = survival_net_benefit(t, e, 1 - c_surv[scored][:, column],
                                                           horizon * DAYS_PER_YEAR, thresholds)
        out["figures"]["decision"] = _figure(
            plot_decision_curves(curves, f"decision curve: death by {horizon} year{'s' * (horizon > 1)}", notice),
            f"decision curve at {horizon} years")
        out["decision_horizon"] = horizon
    if groups is not None:
        g = groups[scored]
        order = [x for x in ("low", "high") if np.any(g == x)] or sorted(set(g))
        p = M.logrank_test(t, e, g)["p"] if len(set(g)) >= 2 else np.nan
        for label in order:
            member = g == label
            out["metrics"].append(_metric(f"{label}-risk group: cases / deaths", np.nan,
                                          note=f"{int(member.sum())} / {int(e[member].sum())}; median OS "
                                               f"{_fmt(km_median(t[member], e[member]) / DAYS_PER_YEAR, 2)} years"))
        if set(order) == {"low", "high"}:
            hr, interval, hr_p = _group_hazard_ratio(t, e, g == "high")
            out["metrics"].append(_metric("hazard ratio, high vs low risk group", hr, interval,
                                          f"Cox, Wald 95% CI; p = {hr_p:.3g}"))
        out["metrics"].append(_metric("log-rank p across risk groups", p, digits=4))
        cutoff = getattr(main.model, "cutoff", np.nan)
        out["figures"]["km"] = _figure(
            plot_km_at_risk(t, e, g, order=order, title=f"{main.label}: risk groups", notice=notice, p=p),
            f"Kaplan-Meier by {main.label} risk group",
            f"risk groups at the model's cut-off ({_fmt(cutoff)}, {getattr(main.model, 'cutoff_rule', '')})")

    def compare_row(label, source, c_risk, extra=None):
        mask = np.isfinite(c_risk)
        row = {"label": label, "source": source, "cases": int(mask.sum()), "events": int(event[mask].sum()),
               "c_index": "-", "ci": "-", "difference": "-", "p": "-", "logrank_p": "-", "note": ""}
        row.update(extra or {})
        if mask.sum() < 10 or len(np.unique(c_risk[mask])) < 2 or event[mask].sum() == 0:
            row["note"] = row["note"] or "too few cases or a single value"
            return row
        cc, cl, cu = M.concordance_index_ci(time[mask], c_risk[mask], event[mask], n_bootstrap=n_bootstrap, seed=seed)
        row.update(c_index=_fmt(cc), ci=f"{_fmt(cl)}-{_fmt(cu)}")
        common = mask & scored
        if common.sum() >= 10 and len(np.unique(risk[common])) > 1:
            paired = M.compare_concordance(time[common], c_risk[common], risk[common], event[common],
                                           n_bootstrap=n_bootstrap, seed=seed)  # comparator minus this model
            row.update(difference=f"{paired['difference']:+.3f}", p=_fmt(paired["p"]))
        return row

    for entry in comparators:
        c_risk, _, _ = _predictions(entry, labelled)
        out["comparators"].append(compare_row(entry.label, entry.source, c_risk))
    if include_scores:
        named = {getattr(e.model, "kind", None) for e in comparators}
        for score in clinical_scores.SCORE_CLASSES:
            instance = score()
            frame = instance.evaluate(labelled.table)
            graded = frame["grade"].notna().to_numpy()
            reasons = frame.loc[~graded, "reason"].value_counts()
            reason_text = "; ".join(f"{k} ({v})" for k, v in reasons.head(3).items())
            row = {"kind": instance.kind, "title": instance.title, "citation": instance.citation(),
                   "definition": instance.definition, "graded": int(graded.sum()), "reasons": reason_text}
            if graded.sum() == 0 or instance.kind in named:
                row["shown"] = False
                out["scores"].append(row)
                continue
            c_risk = frame["risk_score"].to_numpy(dtype=float)
            grades = frame["grade"].astype(object).to_numpy()
            present = [x for x in instance.grades if np.any(grades[graded] == x)]
            logrank = M.logrank_test(time[graded], event[graded], grades[graded])["p"] if len(present) >= 2 else np.nan
            counts = ", ".join(f"{x}: {int(np.sum(grades[graded] == x))}" for x in present)
            row.update(shown=True, counts=counts, **compare_row(instance.title, "built-in", c_risk,
                                                                 {"logrank_p": _fmt(logrank, 4)}))
            out["scores"].append(row)
            if len(present) >= 2:
                fig = plot_km_at_risk(time[graded], event[graded], grades[graded], order=list(instance.grades),
                                      title=instance.title, notice=notice, p=logrank)
                out["score_figures"].append(_figure(fig, f"Kaplan-Meier by {instance.title} grade",
                                                    f"{instance.title}: {int(graded.sum())} of {n} cases graded"))
        log("built-in scores graded: " + ", ".join(f"{r['kind']} {r['graded']}" for r in out["scores"]))
    return out


def _binary_label(task, table):
    from ..data.outcomes import objective_response
    if task == "aggressive-pd":
        return "aggressive_pd", table["aggressive_pd"] if "aggressive_pd" in table.columns else None
    return "objective response (CR + PR)", objective_response(table) if "response" in table.columns else None


def evaluate_binary_entries(main, comparators, data, n_bootstrap=1000, seed=0, notice="", log=print):
    """Every statistic of a probability model (response, mrecist, aggressive-pd) on the labelled cases."""
    from .. import InputError
    from .reports import DECISION_THRESHOLDS, binary_metrics
    outcome, label = _binary_label(main.model.task, data.table)
    if label is None:
        raise InputError(f"the manifest has no outcome for the {main.model.task} model", column=outcome,
                         fix="add the outcome column the model predicts")
    labelled_mask = label.notna().to_numpy()
    labelled = data.subset(data.table[labelled_mask])
    y = label[labelled_mask].astype(int).to_numpy()
    predictions = main.model.predict(labelled)
    p = predictions["probability"].to_numpy(dtype=float)
    cutoff = float(main.model.cutoff)
    result = binary_metrics(y, p, cutoff, n_bootstrap, seed)
    out = {"cases_total": len(data.table), "cases": int(len(y)), "events": int(y.sum()), "outcome": outcome,
           "left_out": [f"{int((~labelled_mask).sum())} case(s) without the outcome left out"] if (~labelled_mask).any()
           else [], "metrics": [], "comparators": [], "scores": [], "figures": dict.fromkeys(("calibration", "decision", "km", "roc")),
           "score_figures": [], "calibration_table": None}
    out["c_index"] = (result["auc"], result["auc_delong_lower"], result["auc_delong_upper"])
    out["metrics"].append(_metric("AUC", result["auc"], (result["auc_delong_lower"], result["auc_delong_upper"]),
                                  "DeLong 95% CI"))
    out["metrics"].append(_metric("AUC (bootstrap CI)", result["auc"], (result["auc_bootstrap_lower"],
                                                                         result["auc_bootstrap_upper"])))
    for name, hits, total in (("sensitivity", result["tp"], result["tp"] + result["fn"]),
                              ("specificity", result["tn"], result["tn"] + result["fp"]),
                              ("positive predictive value", result["tp"], result["tp"] + result["fp"]),
                              ("negative predictive value", result["tn"], result["tn"] + result["fn"])):
        out["metrics"].append(_metric(f"{name} at {cutoff:g}", hits / total if total else np.nan,
                                      wilson_interval(hits, total), f"{hits} / {total}; Wilson 95% CI"))
    brier = bootstrap_interval(lambda idx: float(np.mean((p[idx] - y[idx]) ** 2)), len(y), n_bootstrap, seed)
    out["metrics"].append(_metric("Brier score", result["brier"], brier, "bootstrap 95% CI; lower is better"))
    table, _ = M.calibration_binary(y, p, groups=5)
    out["calibration_table"] = table.to_dict(orient="records")
    out["figures"]["calibration"] = _figure(plot_binary_calibration(table, main.label, notice),
                                            f"calibration of {main.label}")
    curves = {main.label: M.net_benefit(y, p, DECISION_THRESHOLDS)}
    for entry in comparators:
        other = entry.model.predict(labelled)["probability"].to_numpy(dtype=float)
        curves[entry.label] = M.net_benefit(y, other, DECISION_THRESHOLDS)
        delong = M.delong_test(y, other, p)  # comparator minus this model
        auc, lo, hi = M.roc_auc_ci(y, other)
        out["comparators"].append({"label": entry.label, "source": entry.source, "cases": int(len(y)),
                                   "events": int(y.sum()), "c_index": _fmt(auc), "ci": f"{_fmt(lo)}-{_fmt(hi)}",
                                   "difference": f"{delong['difference']:+.3f}", "p": _fmt(delong["p"]),
                                   "logrank_p": "-", "note": "AUC, DeLong"})
    out["figures"]["decision"] = _figure(plot_decision_curves(curves, f"decision curve: {outcome}", notice),
                                         "decision curve")
    out["figures"]["roc"] = _figure(plot_roc(y, p, main.label, cutoff, notice), f"ROC of {main.label}")
    time_column = {"aggressive-pd": "aggressive_pd_days"}.get(main.model.task)
    if time_column and time_column in labelled.table.columns:
        t = labelled.table[time_column].to_numpy(dtype=float)
        ok = np.isfinite(t)
        g = predictions["risk_group"].astype(object).to_numpy()
        if ok.sum() >= 10 and len(set(g[ok])) >= 2:
            logrank = M.logrank_test(t[ok], y[ok], g[ok])["p"]
            out["figures"]["km"] = _figure(
                plot_km_at_risk(t[ok], y[ok], g[ok], title=f"{main.label}: time to {outcome}", notice=notice,
                                p=logrank, ylabel=f"free of {outcome}"),
                f"Kaplan-Meier of time to {outcome} by risk group", f"risk groups at the cut-off {cutoff:g}")
            out["metrics"].append(_metric("log-rank p across risk groups", logrank, digits=4))
    return out


# --- model specification --------------------------------------------------------------------------------

ZHANG_2020 = ("Zhang L, Xia W, Yan Z-P, et al. Deep learning predicts overall survival of patients with unresectable "
              "hepatocellular carcinoma treated by transarterial chemoembolization plus sorafenib. Front Oncol "
              "2020;10:593292. doi:10.3389/fonc.2020.593292")
SUN_2024 = ("Sun Z, Li X, Liang H, Shi Z, Ren H. A deep learning model combining multimodal factors to predict the "
            "overall survival of transarterial chemoembolization. J Hepatocell Carcinoma 2024;11:385-397. "
            "doi:10.2147/JHC.S443660")
PENG_2021 = ("Peng J, Huang J, Huang G, Zhang J. Predicting the initial treatment response to transarterial "
             "chemoembolization in intermediate-stage hepatocellular carcinoma by the integration of radiomics and "
             "deep learning. Front Oncol 2021;11:730282. doi:10.3389/fonc.2021.730282")
PENG_2019 = ("Peng J, Kang S, Ning Z, et al. Residual convolutional neural network for predicting response of "
             "transarterial chemoembolization in hepatocellular carcinoma from CT imaging. Eur Radiol 2019 "
             "(online 22 July). doi:10.1007/s00330-019-06318-1")
FU = ("Fu S, Pan M, Zhang J, et al. Deep learning-based prediction of future extrahepatic metastasis and "
      "macrovascular invasion in hepatocellular carcinoma. J Hepatocell Carcinoma (year, volume and DOI to be "
      "confirmed)")
METHOD_PAPERS = {
    ("survival", "signature"): ZHANG_2020, ("survival", "nomogram"): ZHANG_2020, ("survival", "dlop"): SUN_2024,
    ("survival", "clinical-cox"): "TACEPredict baseline (clinical covariates selected by univariate, then "
                                  "multivariable Cox, as in " + SUN_2024 + ")",
    ("survival", "lasso-cox"): "TACEPredict baseline (radiomics LASSO-Cox)",
    ("mrecist", "resnet50"): PENG_2019, ("aggressive-pd", "cnn"): FU, ("aggressive-pd", "csd"): FU,
    ("aggressive-pd", "clinical-semantic"): FU,
}


def method_paper(task, kind):
    if (task, kind) in METHOD_PAPERS:
        return METHOD_PAPERS[(task, kind)]
    if task == "response":
        return PENG_2021
    return "-"


def model_specification(entry):
    """What the report says about a model: where it came from, its inputs and how it computes."""
    model, info = entry.model, entry.info
    spec = {"label": entry.label, "kind": model.kind, "task": model.task, "source": entry.source,
            "bundle": info is not None, "provenance": getattr(model, "provenance", ""), "rows": [],
            "coefficients": [], "inputs": [], "files": [], "paper": method_paper(model.task, model.kind)}
    if info is None:
        if hasattr(model, "citation"):
            spec["paper"] = model.citation()
            spec["rows"] += [("definition", model.definition), ("inputs", ", ".join(model.inputs)),
                             ("grades (best first)", ", ".join(model.grades))]
        spec["rows"].append(("training", "none: published definition applied as published"))
        return spec
    training = info.get("training", {})
    versions = info.get("library_versions", {})
    spec["rows"] += [
        ("created", info.get("created", "-")),
        ("TACEPredict version", versions.get("tacepredict", "-")),
        ("seed", str(info.get("seed"))),
        ("training cohort", f"{training.get('cohort', '-')}" + (" (SYNTHETIC demo cohort)" if training.get("synthetic")
                                                                else "")),
        ("training cases / events", f"{training.get('cases', '-')} / {training.get('events', '-')}"),
    ]
    if "median_follow_up_days" in training:
        spec["rows"].append(("training median time (days)", _fmt(training["median_follow_up_days"], 0)))
    if training.get("features"):
        spec["rows"].append(("training features", training["features"]))
    if training.get("feature_extraction"):
        spec["rows"].append(("feature extraction", ", ".join(f"{k}: {v}" for k, v in
                                                              training["feature_extraction"].items())))
    settings = {k: v for k, v in info.get("settings", {}).items() if k != "input_warnings"}
    if settings:
        spec["rows"].append(("training options", ", ".join(f"{k}: {v}" for k, v in settings.items())))
    warnings_at_training = info.get("settings", {}).get("input_warnings", [])
    spec["rows"].append(("input warnings at training", str(len(warnings_at_training))))
    if hasattr(model, "cutoff"):
        spec["rows"].append(("risk-group cut-off", f"{_fmt(model.cutoff)} ({getattr(model, 'cutoff_rule', 'as trained')})"))
    for name, value in (info.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            spec["rows"].append((name.replace("_", " "), _fmt(value)))
    if hasattr(model, "hazard_ratios"):
        table = model.hazard_ratios()
        for r in table.to_dict(orient="records"):
            spec["coefficients"].append({"covariate": r.get("covariate"), "coef": _fmt(r.get("coef"), 4),
                                         "hr": _fmt(r.get("hazard_ratio")),
                                         "ci": f"{_fmt(r.get('hr_lower'))}-{_fmt(r.get('hr_upper'))}",
                                         "p": _fmt(r.get("p"), 4)})
        spec["formula"] = ("linear predictor = sum of coefficient x covariate; S(t | x) = exp(-H0(t) x "
                           "exp(linear predictor)), H0 the Breslow baseline stored in the bundle")
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        used = set(getattr(model, "covariates", []) or [])
        for item in encoder.spec:
            if used and not set(item["names"]) & used:
                continue
            coding = ("number" + (" (log10(x + 1))" if item["names"][0].startswith("log10") else "")
                      if item["kind"] == "number" else f"levels {', '.join(item['levels'])} (first = reference)")
            fill = item["fill"]
            if item["kind"] == "number":
                fill = f"{float(fill):.4g}" + (" (log10 scale)" if item["names"][0].startswith("log10") else "")
            spec["inputs"].append({"column": item["column"], "coding": coding, "fill": str(fill)})
    spec["files"] = [{"name": name, "sha256": digest} for name, digest in (info.get("files") or {}).items()]
    return spec


# --- the page --------------------------------------------------------------------------------------------

TEMPLATE = "model_report.html.j2"
COHORT_ROWS_FIRST_PAGE = 24
COHORT_ROWS_PER_PAGE = 34
TRIPOD_ROWS_PER_PAGE = 18
SCORE_FIGURES_PER_PAGE = 4


def _cohort_overview(data, evaluation, main):
    from ..data.outcomes import survival_outcome
    rows = [("cases in the manifest", str(evaluation["cases_total"])),
            ("cases with the outcome (analysed)", str(evaluation["cases"]))]
    if "os_days" in data.table.columns and data.table["os_days"].notna().sum() >= 2:
        table = data.table[data.table["os_days"].notna() & data.table["os_event"].notna()]
        time, event = survival_outcome(table, "os")
        rows += [("deaths", f"{int(event.sum())} ({100 * event.mean():.0f}%)"),
                 ("median follow-up (reverse Kaplan-Meier), years", _fmt(median_follow_up(time, event) / DAYS_PER_YEAR, 2)),
                 ("median overall survival (Kaplan-Meier), years", _fmt(km_median(time, event) / DAYS_PER_YEAR, 2))]
    if evaluation.get("outcome") and evaluation["outcome"] != "os":
        rows.append((f"cases with {evaluation['outcome']}", str(evaluation["events"])))
    training = (main.info or {}).get("training", {})
    if training:
        rows.append(("development cohort (from the bundle): cases / events",
                     f"{training.get('cases', '-')} / {training.get('events', training.get('responders', '-'))}"))
        if "median_follow_up_days" in training:
            rows.append(("development cohort: median time, years",
                         _fmt(training["median_follow_up_days"] / DAYS_PER_YEAR, 2)))
    return rows


def caveats(main, data, evaluation, synthetic):
    """What limits the numbers, said on the summary and performance pages."""
    import os
    out = []
    training = (main.info or {}).get("training", {})
    cohort = training.get("cohort")
    if cohort and os.path.abspath(cohort) == os.path.abspath(data.manifest_path):
        out.append("The model is evaluated on the cohort it was trained on: these are apparent (optimistic) "
                   "estimates, not a validation. Evaluate on held-out or external patients "
                   "(`tacepredict split`).")
    if synthetic:
        out.append("Synthetic data: the numbers show the software works, not how the model does on patients.")
    if evaluation["events"] < 100:
        out.append(f"{evaluation['events']} events: fewer than the 100 events often asked of a validation cohort; "
                   "the intervals are wide.")
    return out


def build_context(main, comparators, data, manifest_path, n_bootstrap=1000, seed=0, command="", log=print):
    """Everything the template shows, with the pages it is cut into (``ctx['pages']``)."""
    import datetime
    import platform

    from .. import RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE, __version__
    from ..data.manifest import CLINICAL_COLUMNS
    task = main.model.task
    training_synthetic = bool((main.info or {}).get("training", {}).get("synthetic"))
    synthetic = bool(data.synthetic or training_synthetic)
    notices = [RESEARCH_USE_NOTICE]
    if synthetic:
        where = ("trained and evaluated" if data.synthetic and training_synthetic
                 else "evaluated" if data.synthetic else "trained")
        notices.append(f"{SYNTHETIC_DATA_NOTICE} This model was {where} on it.")
    figure_notice = " ".join(notices)
    import markupsafe
    css_notice = markupsafe.Markup("".join(f"\\{ord(ch):x} " if ch in '"\\<>&' or ord(ch) > 126 else ch
                                           for ch in figure_notice))
    if task == "survival":
        evaluation = evaluate_survival_entries(main, comparators, data, n_bootstrap, seed, figure_notice, log=log)
        outcome = "os"
    else:
        evaluation = evaluate_binary_entries(main, comparators, data, n_bootstrap, seed, figure_notice, log=log)
        outcome = evaluation["outcome"]
    specification = model_specification(main)
    extra_columns = [i["column"] for i in specification["inputs"] if i["column"] not in CLINICAL_COLUMNS]
    cohort_rows = table_one(data.table, list(CLINICAL_COLUMNS) + extra_columns)
    horizons = evaluation.get("horizons") or []
    ctx = {
        "title": f"Model report: {main.label}", "task": task, "outcome": outcome, "synthetic": synthetic,
        "notices": notices, "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "version": __version__, "python": platform.python_version(), "command": command,
        "manifest": manifest_path, "n_bootstrap": n_bootstrap, "seed": seed,
        "main": {"label": main.label, "source": main.source, "bundle": main.info is not None,
                 "coefficients": bool(specification["coefficients"])},
        "horizons_text": ", ".join(f"{y} y" for y in horizons) or "-",
        "evaluation": evaluation, "specification": specification,
        "comparator_specs": [model_specification(e) for e in comparators],
        "cohort_overview": _cohort_overview(data, evaluation, main), "tripod_reference": TRIPOD_AI_REFERENCE,
        "css_notice": css_notice,
    }
    ctx["caveats"] = caveats(main, data, evaluation, synthetic)
    ctx["tripod"] = tripod_checklist(ctx)
    headline = evaluation["metrics"][0] if evaluation["metrics"] else None
    ctx["headline"] = headline
    pages = [{"kind": "summary", "title": "Summary"}]
    chunks = [cohort_rows[:COHORT_ROWS_FIRST_PAGE]] + paginate(cohort_rows[COHORT_ROWS_FIRST_PAGE:],
                                                               COHORT_ROWS_PER_PAGE) \
        if len(cohort_rows) > COHORT_ROWS_FIRST_PAGE else [cohort_rows]
    for k, rows in enumerate(chunks):
        pages.append({"kind": "cohort", "title": "Cohort (Table 1)" + (", continued" if k else ""), "rows": rows,
                      "first": k == 0})
    pages.append({"kind": "model", "title": "Model specification"})
    pages.append({"kind": "performance", "title": "Performance"})
    pages.append({"kind": "calibration", "title": "Calibration and decision curve"})
    if evaluation["figures"]["km"] or evaluation["figures"]["roc"]:
        pages.append({"kind": "km", "title": "Kaplan-Meier" if evaluation["figures"]["km"] else "ROC"})
    pages.append({"kind": "scores", "title": "Built-in published scores"})
    for k, figures in enumerate(paginate(evaluation["score_figures"], SCORE_FIGURES_PER_PAGE)):
        if figures:
            pages.append({"kind": "score_km", "title": "Built-in scores: Kaplan-Meier by grade"
                                                       + (", continued" if k else ""), "figures": figures})
    for k, rows in enumerate(paginate(ctx["tripod"], TRIPOD_ROWS_PER_PAGE)):
        pages.append({"kind": "tripod", "title": "TRIPOD+AI checklist" + (", continued" if k else ""), "rows": rows,
                      "first": k == 0})
    for number, page in enumerate(pages, start=1):
        page["number"] = number
    ctx["pages"] = pages
    return ctx


def render_html(ctx):
    """The page, from the Jinja2 template (autoescaped)."""
    import os

    import jinja2
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources", "templates")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder), autoescape=jinja2.select_autoescape(["j2", "html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**ctx)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium():
    """The Chromium / Chrome executable: ``$TACEPREDICT_CHROMIUM`` or the first on PATH; None without one."""
    import os
    import shutil
    explicit = os.environ.get("TACEPREDICT_CHROMIUM")
    if explicit:
        return explicit if os.path.isfile(explicit) else shutil.which(explicit)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_flags(profile_dir):
    """Flags for a headless Chromium that reaches no network of its own accord (root needs --no-sandbox)."""
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--mute-audio", f"--user-data-dir={profile_dir}"]


def print_pdf(html_path, pdf_path, chromium=None, timeout=180):
    """Print the page to PDF with headless Chromium (``--print-to-pdf``, no browser header or footer).
    Returns the PDF path; raises RuntimeError when Chromium fails."""
    import os
    import subprocess
    import tempfile
    chromium = chromium or find_chromium()
    if chromium is None:
        raise RuntimeError("no Chromium found (install Debian's chromium: scripts/ensure_chromium.sh)")
    with tempfile.TemporaryDirectory(prefix="tacepredict_chromium_") as profile:
        command = [chromium, *chromium_flags(profile), "--no-pdf-header-footer",
                   f"--print-to-pdf={os.path.abspath(pdf_path)}", "file://" + os.path.abspath(html_path)]
        if os.path.exists(pdf_path):
            os.remove(pdf_path)
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if not os.path.isfile(pdf_path) or os.path.getsize(pdf_path) == 0:
        tail = done.stderr.decode(errors="replace")[-800:]
        raise RuntimeError(f"Chromium wrote no PDF (exit {done.returncode}): {tail}")
    return pdf_path


def write_report(model, manifest, out_dir, compare=(), features=None, task=None, n_bootstrap=1000, seed=0,
                 pdf=True, command="", log=print):
    """Evaluate ``model`` (a bundle folder or a built-in) and ``compare`` on ``manifest`` and write
    ``report.html``, ``report.pdf`` (when Chromium is there), ``report.json`` (the numbers and the page list) into
    ``out_dir``. Returns a dict with the paths, the page titles and the PDF status."""
    import json
    import os

    from ..data.cohort import CohortData
    os.makedirs(out_dir, exist_ok=True)
    main = load_entry(model, task)
    comparators = [load_entry(spec, task or main.model.task) for spec in compare]
    for entry in comparators:
        if entry.model.task != main.model.task:
            from .. import InputError
            raise InputError(f"'{entry.label}' predicts {entry.model.task}, the model {main.model.task}",
                             column="--compare", fix="compare models of one task")
    data = CohortData(manifest, features)
    ctx = build_context(main, comparators, data, os.path.abspath(manifest), n_bootstrap, seed, command, log=log)
    html_path = os.path.join(out_dir, "report.html")
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(render_html(ctx))
    result = {"html": html_path, "pdf": None, "pages": [p["title"] for p in ctx["pages"]], "pdf_status": "skipped"}
    if pdf:
        try:
            result["pdf"] = print_pdf(html_path, os.path.join(out_dir, "report.pdf"))
            result["pdf_status"] = "written"
        except (RuntimeError, OSError) as exc:
            result["pdf_status"] = f"not written: {exc}"
    summary = {"title": ctx["title"], "manifest": ctx["manifest"], "model": main.source, "task": ctx["task"],
               "synthetic": ctx["synthetic"], "pages": result["pages"], "pdf": result["pdf_status"],
               "metrics": ctx["evaluation"]["metrics"], "comparators": ctx["evaluation"]["comparators"],
               "scores": [{k: v for k, v in s.items()} for s in ctx["evaluation"]["scores"]],
               "tripod": ctx["tripod"], "notices": ctx["notices"], "caveats": ctx["caveats"]}
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1, default=str)
    return result
