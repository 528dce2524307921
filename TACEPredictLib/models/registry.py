"""Train, save and load models of every task through one interface (bundles: see ``bundle.py``)."""

from __future__ import annotations

import os
import warnings

import numpy as np

from .. import InputError, RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE
from .bundle import load_bundle, save_bundle
from ..data.cohort import InputWarning, complete_outcome_rows, survival_outcome


BINARY_TASKS = ("response", "mrecist", "aggressive-pd")  # measured by the AUC of a probability


def model_classes(task):
    if task == "survival":
        from .dlop_combin import DLOPCombin
        from .overall_survival import MODEL_CLASSES
        return {**MODEL_CLASSES, DLOPCombin.kind: DLOPCombin}
    if task == "response":
        from .image_networks import ResponseCNN
        from .integrations import INTEGRATIONS, ResponseIntegration
        from .initial_response import MODEL_CLASSES as RESPONSE_CLASSES
        return {**RESPONSE_CLASSES, ResponseCNN.kind: ResponseCNN, **{k: ResponseIntegration for k in INTEGRATIONS}}
    if task == "mrecist":
        from .image_networks import MRecistNet
        return {MRecistNet.kind: MRecistNet}
    if task == "aggressive-pd":
        from .image_networks import ModelD
        from .integrations import ModelCSD
        return {ModelD.kind: ModelD, ModelCSD.kind: ModelCSD}
    raise InputError(f"unknown task '{task}'", column="--task", fix="use survival, response, mrecist or aggressive-pd")


def make_model(task, kind, **options):
    classes = model_classes(task)
    if kind not in classes:
        raise InputError(f"unknown {task} model '{kind}'", column="--model", fix=f"use one of {', '.join(classes)}")
    import inspect
    accepted = inspect.signature(classes[kind].__init__).parameters
    options = {k: v for k, v in options.items() if v is not None}
    if "kind" in accepted:  # one class, several kinds (the response classifiers)
        options["kind"] = kind
    for name in options:
        if name not in accepted:
            raise InputError(f"option '{name}' does not apply to the {kind} model", column="--" + name.replace("_", "-"),
                             fix="leave it out")
    return classes[kind](**options)


def training_summary(data, task):
    table = complete_outcome_rows(data.table, "os") if task == "survival" else data.table
    summary = {"cohort": data.manifest_path, "features": data.features_dir, "synthetic": data.synthetic,
               "cases": int(len(table))}
    extraction = os.path.join(data.features_dir, "extraction.json") if data.features_dir else None
    if extraction and os.path.isfile(extraction):
        import json
        with open(extraction, encoding="utf-8") as handle:
            settings = json.load(handle).get("settings", {})
        # what a new patient's features must be extracted with
        summary["feature_extraction"] = {k: settings[k] for k in ("phases", "register", "radiomics_params", "deep",
                                                                   "weights", "sampling", "normalisation") if k in settings}
    if task == "survival":
        time, event = survival_outcome(table, "os")
        summary.update(events=int(event.sum()), median_follow_up_days=float(np.median(time)))
    if task in ("response", "mrecist"):
        from .initial_response import objective_response
        label = objective_response(table).dropna()
        summary.update(cases=int(len(label)), responders=int(label.sum()))
        if task == "mrecist":
            summary["classes"] = {str(k): int(v) for k, v in table["response"].value_counts().items()}
    if task == "aggressive-pd":
        from .image_networks import aggressive_label
        label = aggressive_label(table).dropna()
        summary.update(cases=int(len(label)), events=int(label.sum()))
    return summary


def train(task, kind, data, seed=0, **options):
    """Fit a model; returns ``(model, warnings)`` with the documented input warnings it raised."""
    model = make_model(task, kind, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        model.fit(data, seed=seed)
    messages = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    return model, messages


def save(model, directory, data, seed, settings=None, metrics=None, input_warnings=()):
    training = training_summary(data, model.task)
    info = save_bundle(directory, model.task, model.kind, model.params(), training, metrics=metrics,
                       tensors=model.tensors(), seed=seed,
                       settings={**(settings or {}), "input_warnings": list(input_warnings)})
    for name, table in model.tables().items():
        if len(table):
            table.to_csv(os.path.join(directory, f"{name}.csv"), index=False)
    model.provenance, model.notice = info["provenance"], info["notice"]
    return info


def load(directory):
    """A model from its bundle, with its provenance and notice attached to every prediction."""
    info, params, tensors = load_bundle(directory)
    classes = model_classes(info["task"])
    if info["kind"] not in classes:
        raise InputError(f"model kind '{info['kind']}' is unknown to this TACEPredict", column="--model",
                         fix="upgrade TACEPredict")
    model = classes[info["kind"]].from_params(params, tensors)
    model.provenance = info["provenance"]
    model.notice = info.get("notice") or (RESEARCH_USE_NOTICE + (" " + SYNTHETIC_DATA_NOTICE
                                                                  if info["training"].get("synthetic") else ""))
    return model, info


def risk_group_km(time, event, risk, cutoff):
    """Kaplan-Meier survival of the training cohort's low- and high-risk groups on the survival-curve grid (what
    a new patient's predicted curve is shown against)."""
    from ..stats import metrics
    from .overall_survival import CURVE_YEARS as grid, DAYS_PER_YEAR
    curves = {"years": grid.tolist()}
    for group, members in (("low", risk <= cutoff), ("high", risk > cutoff)):
        if members.any():
            table = metrics.kaplan_meier(time[members], event[members])
            curves[f"km_{group}_risk"] = np.atleast_1d(metrics.survival_at(table, grid * DAYS_PER_YEAR)).tolist()
    return curves


def train_bundle(task, kind, data, out_dir, seed=0, **options):
    """Train, measure the apparent (training) C-index, write the bundle (and a nomogram figure for Cox models
    on clinical covariates). Returns ``(model, info)``."""
    from ..stats import metrics
    model, messages = train(task, kind, data, seed=seed, **options)
    settings = {k: v for k, v in options.items() if v is not None}
    if task in BINARY_TASKS:
        labelled, label = model.labelled(data)
        if task == "mrecist":
            label = (label <= 1).astype(int)  # objective response = CR or PR
        measured = {"auc_training_apparent": metrics.roc_auc(label, model.probability(labelled))}
        measured.update({k: v for k, v in model.info.items() if k.startswith("auc_")})
        info = save(model, out_dir, data, seed, settings=settings, input_warnings=messages, metrics=measured)
        if kind == "csd":
            from ..stats.reports import plot_logistic_nomogram
            plot_logistic_nomogram(model, os.path.join(out_dir, "nomogram.png"), model.notice)
        return model, info
    labelled = data.subset(complete_outcome_rows(data.table, "os"))
    time, event = survival_outcome(labelled.table, "os")
    risk = model.risk_score(labelled)
    apparent = metrics.concordance_index(time, risk, event)
    info = save(model, out_dir, data, seed, settings=settings,
                metrics={"c_index_training_apparent": apparent,
                         "risk_group_km": risk_group_km(time, event, risk, model.cutoff)},
                input_warnings=messages)
    if kind in ("nomogram", "clinical-cox"):
        from ..stats.reports import plot_nomogram
        plot_nomogram(model, os.path.join(out_dir, "nomogram.png"), model.notice)
    return model, info
