"""Every outcome TACEPredict predicts, defined once: survival pairs (time, event), mRECIST response codes, objective
response (CR or PR) and aggressive progression.

Each function reads the manifest's normalised table and stops at the first bad value with the case and the
column (``InputError``); a missing outcome is NaN, for the caller to leave the case out.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import InputError, InputWarning

OUTCOMES = {"os": ("os_days", "os_event"), "ttp": ("ttp_days", "progression_event"),
            "aggressive_pd": ("aggressive_pd_days", "aggressive_pd")}

MRECIST_CLASSES = ("CR", "PR", "SD", "PD")
OBJECTIVE_RESPONSE = "objective_response"  # the column evaluations add for CR + PR vs SD + PD


def _warn(message):
    warnings.warn(message, InputWarning, stacklevel=3)


def _cases_text(ids, limit=8):
    ids = [str(i) for i in ids]
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _outcome_columns(table, outcome):
    time_col, event_col = OUTCOMES[outcome]
    for column in (time_col, event_col):
        if column not in table.columns:
            raise InputError(f"the manifest has no '{column}' column", column=column,
                             fix=f"add '{time_col}' and '{event_col}' for survival models")
    return time_col, event_col


def survival_outcome(table, outcome="os"):
    """``(time_days, event)`` arrays for the rows of ``table``; raises InputError naming a bad case."""
    time_col, event_col = _outcome_columns(table, outcome)
    time = pd.to_numeric(table[time_col], errors="coerce")
    event = pd.to_numeric(table[event_col], errors="coerce")
    for column, values in ((time_col, time), (event_col, event)):
        bad = values.isna()
        if bad.any():
            raise InputError("missing or not a number", table.loc[bad, "case_id"].iloc[0], column,
                             "fill it in, or leave the case out of the manifest")
    negative = time < 0
    if negative.any():
        raise InputError(f"negative time ({time[negative].iloc[0]})", table.loc[negative, "case_id"].iloc[0],
                         time_col, "times are days from TACE and cannot be negative")
    if not event.isin((0, 1)).all():
        bad = ~event.isin((0, 1))
        raise InputError(f"event must be 0 or 1 (got {event[bad].iloc[0]})", table.loc[bad, "case_id"].iloc[0],
                         event_col, "1 = event observed, 0 = censored")
    return time.to_numpy(dtype=float), event.to_numpy(dtype=int)


def complete_outcome_rows(table, outcome="os"):
    """The rows with both outcome values, warning about (and naming) the ones left out."""
    time_col, event_col = _outcome_columns(table, outcome)
    missing = table[time_col].isna() | table[event_col].isna()
    if missing.all():
        raise InputError(f"no case has both '{time_col}' and '{event_col}'", column=time_col,
                         fix="fill in the outcome of the training cases")
    if missing.any():
        _warn(f"case(s) {_cases_text(table.loc[missing, 'case_id'])} have no '{time_col}' / '{event_col}': "
              "left out of training and evaluation")
    return table[~missing].reset_index(drop=True)


def check_events(time, event, case_count, column="os_event"):
    """Stop early, with a fix, when the outcome cannot support a survival model."""
    events = int(np.sum(event))
    if events == 0:
        raise InputError(f"no events among {case_count} cases: everything is censored, so no survival model "
                         "can be fitted", column=column, fix="check the event coding (1 = event observed)")
    if events < 5:
        raise InputError(f"only {events} event(s) among {case_count} cases: too few for a survival model",
                         column=column, fix="use a larger cohort")


def mrecist_label(table):
    """CR / PR / SD / PD as 0..3; unknown codes stop with the case and the column."""
    if "response" not in table.columns:
        raise InputError("the manifest has no 'response' column", column="response", fix="add response (CR/PR/SD/PD)")
    codes = table["response"].astype("string").str.strip().str.upper()
    known = codes.isin(MRECIST_CLASSES)
    bad = codes.notna() & ~known
    if bad.any():
        raise InputError(f"unknown mRECIST response {table.loc[bad, 'response'].iloc[0]!r}",
                         table.loc[bad, "case_id"].iloc[0], "response", "use CR, PR, SD or PD")
    return codes.map({c: i for i, c in enumerate(MRECIST_CLASSES)}).astype("Float64")


def objective_response(table):
    """1 for CR / PR (objective response), 0 for SD / PD, NaN where the response is missing; an unknown code
    names the case."""
    return is_objective(mrecist_label(table)).astype(float)


def is_objective(mrecist_class):
    """Objective response (CR or PR) from mRECIST class indices (``MRECIST_CLASSES`` order); NA stays NA."""
    return mrecist_class <= MRECIST_CLASSES.index("PR")


def probability_of_objective(class_probabilities):
    """P(objective response) = P(CR) + P(PR) from (N, 4) class probabilities in ``MRECIST_CLASSES`` order."""
    return class_probabilities[:, 0] + class_probabilities[:, 1]


def aggressive_label(table):
    """0 / 1 aggressive progression from the manifest's ``aggressive_pd``; unknown values stop with the case."""
    if "aggressive_pd" not in table.columns:
        raise InputError("the manifest has no 'aggressive_pd' column", column="aggressive_pd",
                         fix="add aggressive_pd (1 = extrahepatic metastasis or macrovascular invasion, else 0)")
    values = pd.to_numeric(table["aggressive_pd"], errors="coerce")
    bad = table["aggressive_pd"].notna() & ~values.isin([0, 1])
    if bad.any():
        raise InputError(f"aggressive_pd must be 0 or 1, not {table.loc[bad, 'aggressive_pd'].iloc[0]!r}",
                         table.loc[bad, "case_id"].iloc[0], "aggressive_pd", "use 1 (aggressive progression) or 0")
    return values
