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
