"""Every task and every model, declared once (``TASKS``, ``MODELS``), and training, saving and loading through
that declaration. The command line's choices and help, the Slicer module's model list, the validation runner
and the one-patient path are all read from here: adding a model is one ``ModelSpec`` line (see
docs/architecture.md).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import InputError, InputWarning, RESEARCH_USE_NOTICE, SYNTHETIC_DATA_NOTICE
from ..data.outcomes import (aggressive_label, complete_outcome_rows, is_objective, mrecist_label,
                             objective_response, survival_outcome)
from .bundle import PARAMS_FILE, load_bundle, save_bundle, seal_bundle
from .initial_response import KINDS as CML  # the five radiomics classifiers

PAPERS = {
    "000": "Zhang L, Xia W, Yan Z-P, et al. Deep Learning Predicts Overall Survival of Patients With Unresectable "
           "Hepatocellular Carcinoma Treated by Transarterial Chemoembolization Plus Sorafenib. Front Oncol "
           "2020;10:593292. doi:10.3389/fonc.2020.593292",
    "001": "Sun Z, Li X, Liang H, Shi Z, Ren H. A Deep Learning Model Combining Multimodal Factors to Predict the "
           "Overall Survival of Transarterial Chemoembolization. J Hepatocell Carcinoma 2024;11:385-397. "
           "doi:10.2147/JHC.S443660",
    "002": "Peng J, Huang J, Huang G, Zhang J. Predicting the Initial Treatment Response to Transarterial "
           "Chemoembolization in Intermediate-Stage Hepatocellular Carcinoma by the Integration of Radiomics and "
           "Deep Learning. Front Oncol 2021;11:730282. doi:10.3389/fonc.2021.730282",
    "003": "Peng J, Kang S, Ning Z, et al. Residual convolutional neural network for predicting response of "
           "transarterial chemoembolization in hepatocellular carcinoma from CT imaging. Eur Radiol (published "
           "online 22 July 2019). doi:10.1007/s00330-019-06318-1",
    # as printed: the article's text gives no year, volume, pages or DOI (shared/papers/README.md)
    "004": "Fu S, Pan M, Zhang J, et al. Deep Learning-Based Prediction of Future Extrahepatic Metastasis and "
           "Macrovascular Invasion in Hepatocellular Carcinoma. J Hepatocell Carcinoma (Dove Medical Press); year, "
           "volume and DOI not printed in the article's text",
    "": "a comparator of TACEPredict's, not a published method",
}


@dataclass(frozen=True)
class TaskSpec:
    """A prediction task: its outcome columns, how a case's label is read (None: survival pairs), whether its
    models give a probability or a risk, and the metrics its evaluation reports."""
    name: str
    title: str
    outcome_columns: tuple
    label: object  # table -> Series (NA where unknown), or None for time-to-event outcomes
    output: str  # "probability" or "risk"
    probability_of: str
    metrics: tuple


TASKS = {t.name: t for t in (
    TaskSpec("survival", "overall survival", ("os_days", "os_event"), None, "risk", "3-year survival",
             ("c_index", "time_dependent_auc", "integrated_brier_score", "calibration", "kaplan_meier")),
    TaskSpec("response", "initial response (CR + PR vs SD + PD)", ("response",), objective_response, "probability",
             "objective response (CR+PR)", ("auc", "delong", "calibration", "decision_curve", "nri", "idi")),
    TaskSpec("mrecist", "mRECIST response (CR / PR / SD / PD)", ("response",), mrecist_label, "probability",
             "objective response (CR+PR)", ("auc", "delong", "confusion_matrix", "per_class_roc")),
    TaskSpec("aggressive-pd", "aggressive progression (extrahepatic metastasis or macrovascular invasion)",
             ("aggressive_pd",), aggressive_label, "probability", "aggressive progression",
             ("auc", "delong", "calibration", "decision_curve", "nri", "idi", "kaplan_meier")),
)}
BINARY_TASKS = tuple(name for name, task in TASKS.items() if task.output == "probability")


@dataclass(frozen=True)
class ModelSpec:
    """A model kind: its task, the class that implements it (``module:Class`` in this package, imported on
    use), a title, the paper it implements (a key of ``PAPERS``), the hyper-parameters it takes (the command
    line passes those it has flags for; the Python API any of them), constructor
    arguments fixed by the kind, the lesion patch set it reads, what its inputs need, whether it is a published
    score used as published (no training, no bundle), whether ``train`` can also refit that published score on
    a cohort by its paper's procedure, and older kind names its bundles may carry."""
    task: str
    kind: str
    implementation: str
    title: str
    paper: str = ""
    options: tuple = ()
    fixed: dict = field(default_factory=dict)
    patch_set: str | None = None
    needs: tuple = ()
    published: bool = False
    refit: bool = False
    aliases: tuple = ()

    @property
    def cls(self):
        if isinstance(self.implementation, type):  # a class given directly (a model declared outside the package)
            return self.implementation
        module, name = self.implementation.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)


_CNN = ("epochs", "width", "device")
MODELS = (
    ModelSpec("survival", "signature", "overall_survival:SignatureCox", "deep signature (ElasticNet-Cox)", "000",
              ("family", "phases", "n_candidates"), needs=("deep",)),
    ModelSpec("survival", "nomogram", "overall_survival:Nomogram", "Cox nomogram, clinical or integrated", "000",
              ("variant", "p_threshold", "family", "phases", "covariates", "clinical_coding"), needs=("deep",)),
    ModelSpec("survival", "clinical-cox", "overall_survival:ClinicalCox", "clinical Cox model", "",
              ("p_threshold", "covariates")),
    ModelSpec("survival", "lasso-cox", "overall_survival:LassoCox", "radiomics LASSO-Cox", "",
              ("family", "phases", "n_candidates"),
              needs=("radiomics",)),
    ModelSpec("survival", "dlop", "dlop_combin:DLOPCombin", "DLOP-Combin (discrete-time survival network)", "001",
              ("variant", "p_threshold", "family", "phases", "covariates", "weights", "device", "finetune",
               "max_epochs", "patience", "lr", "weight_decay", "batch_size", "image_components"), needs=("deep",)),
    *(ModelSpec("response", k, "initial_response:RadiomicsResponseClassifier", f"{k} on radiomics", "002",
                ("family", "phases", "icc_filter", "max_features"), fixed={"kind": k}, needs=("radiomics",))
      for k in CML),
    ModelSpec("response", "cnn", "initial_response:ResponseCNN", "CNN on the largest slice's CT and mask", "002",
              _CNN, patch_set="ct_mask", needs=("patches",)),
    *(ModelSpec("response", f"{k}+cnn", "initial_response:ResponseIntegration", f"{k} + CNN", "002", _CNN,
                fixed={"kind": f"{k}+cnn"}, patch_set="ct_mask", needs=("radiomics", "patches")) for k in CML),
    *(ModelSpec("response", f"{k}+size", "initial_response:ResponseIntegration", f"{k} + tumour size", "002",
                fixed={"kind": f"{k}+size"}, needs=("radiomics",)) for k in CML),
    ModelSpec("response", "cnn+size", "initial_response:ResponseIntegration", "CNN + tumour size", "002", _CNN,
              fixed={"kind": "cnn+size"}, patch_set="ct_mask", needs=("patches",)),
    ModelSpec("mrecist", "resnet50", "mrecist:MRecistNet", "ResNet-50 transfer learning (4 classes)", "003",
              ("epochs", "lr", "weights", "device"), patch_set="inside", needs=("patches",)),
    ModelSpec("aggressive-pd", "clinical-semantic", "aggressive_progression:ClinicalSemanticScore",
              "Model_CS (published clinical-semantic score; train refits it by the paper's procedure)", "004",
              ("p_threshold", "covariates"), published=True, refit=True),
    ModelSpec("aggressive-pd", "model-d", "aggressive_progression:ModelD", "Model_D (CNN on slice boxes)", "004",
              _CNN, patch_set="boxes", needs=("patches",), aliases=("cnn",)),
    ModelSpec("aggressive-pd", "csd", "aggressive_progression:ModelCSD", "Model_CSD (Model_CS + Model_D)", "004",
              _CNN + ("variant", "p_threshold", "covariates"), patch_set="boxes", needs=("patches",)),
)


def models_of(task=None, trained=None):
    """The declared models, of one task, and only the trained (or only the published) ones if asked."""
    return [m for m in MODELS if (task is None or m.task == task) and (trained is None or m.published != trained)]


def model_spec(task, kind):
    """The declaration of ``kind`` in ``task`` (an older kind name its bundles carry is accepted)."""
    if task not in TASKS:
        raise InputError(f"unknown task '{task}'", column="--task", fix="use one of " + ", ".join(TASKS))
    for spec in models_of(task):
        if kind == spec.kind or kind in spec.aliases:
            return spec
    raise InputError(f"unknown {task} model '{kind}'", column="--model",
                     fix="use one of " + ", ".join(s.kind for s in models_of(task)))


def make_model(task, kind, **options):
    """A new, untrained model of a declared kind; an option the kind does not take is an error naming it."""
    spec = model_spec(task, kind)
    options = {k: v for k, v in options.items() if v is not None}
    for name in options:
        if name not in spec.options:
            raise InputError(f"option '{name}' does not apply to the {spec.kind} model",
                             column="--" + name.replace("_", "-"), fix="leave it out")
    return spec.cls(**spec.fixed, **options)


def built_in(task, kind):
    """A published score's model (no bundle), or None when ``kind`` is not one."""
    spec = next((s for s in models_of(task, trained=False) if s.kind == kind), None) if task in TASKS else None
    return spec.cls() if spec else None


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
        summary["feature_extraction"] = {k: settings[k] for k in ("phases", "register", "radiomics_params", "radiomics_engine", "deep",
                                                                   "weights", "sampling", "normalisation") if k in settings}
    if task == "survival":
        time, event = survival_outcome(table, "os")
        summary.update(events=int(event.sum()), median_follow_up_days=float(np.median(time)))
    if task in ("response", "mrecist"):
        label = objective_response(table).dropna()
        summary.update(cases=int(len(label)), responders=int(label.sum()))
        if task == "mrecist":
            summary["classes"] = {str(k): int(v) for k, v in table["response"].value_counts().items()}
    if task == "aggressive-pd":
        label = aggressive_label(table).dropna()
        summary.update(cases=int(len(label)), events=int(label.sum()))
    return summary


def set_cutoff(model, cutoff, when="at training"):
    """A probability model's risk-group cut-off from ``--cutoff``: None or ``youden`` keeps the model's own (a
    fitted model's Youden point), ``published`` the cut-off its paper printed for it (only models that have one,
    Model_CSD's 0.28), a number in (0, 1) that probability. The rule is recorded with it (``cutoff_rule``)."""
    if cutoff is None or cutoff == "youden":
        return model
    if model.task not in BINARY_TASKS:
        raise InputError(f"--cutoff applies to the probability models, not to {model.task} risk scores",
                         column="--cutoff", fix="leave it out")
    if cutoff == "published":
        published = getattr(model, "published_cutoff", None)
        if published is None:
            raise InputError(f"the {model.kind} model has no published cut-off (only Model_CSD's 0.28 is printed)",
                             column="--cutoff", fix="use youden or a probability between 0 and 1")
        model.cutoff, model.cutoff_rule = published
        return model
    try:
        value = float(cutoff)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value < 1:
        raise InputError(f"'{cutoff}' is not a cut-off", column="--cutoff",
                         fix="give a probability strictly between 0 and 1, youden or published")
    model.cutoff, model.cutoff_rule = value, f"set by the user {when} (--cutoff {value:g})"
    return model


def train(task, kind, data, seed=0, cutoff=None, **options):
    """Fit a model; returns ``(model, warnings)`` with the documented input warnings it raised. ``cutoff``: see
    ``set_cutoff`` (checked before the fit)."""
    model = make_model(task, kind, **options)
    if cutoff is not None:
        set_cutoff(make_model(task, kind, **options), cutoff)  # a bad value stops before a long fit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        model.fit(data, seed=seed)
    set_cutoff(model, cutoff)
    messages = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    return model, messages


def save(model, directory, data, seed, settings=None, metrics=None, input_warnings=()):
    """The one place every bundle is written: its provenance names the paper of the method (``PAPERS``)."""
    training = training_summary(data, model.task)
    info = save_bundle(directory, model.task, model.kind, model.params(), training, metrics=metrics,
                       tensors=model.tensors(), seed=seed,
                       settings={**(settings or {}), "input_warnings": list(input_warnings)},
                       paper=paper_of(model.task, model.kind), method=method_notes(model))
    for name, table in model.tables().items():
        if len(table):
            table.to_csv(os.path.join(directory, f"{name}.csv"), index=False)
    seal_bundle(directory)  # the tables too
    model.provenance, model.notice = info["provenance"], info["notice"]
    return info


def method_notes(model):
    """How this model departs from its paper's method, one line for the provenance (its ``method_notes()``,
    e.g. DLOP-Combin's backbone and what became of its post-hoc inputs); None when the model says nothing."""
    return model.method_notes() if hasattr(model, "method_notes") else None


def paper_of(task, kind):
    """The citation of the paper a declared model kind implements (``PAPERS``; a comparator says it is one);
    None for a kind not declared here."""
    try:
        return PAPERS[model_spec(task, kind).paper]
    except InputError:
        return None


def load(directory, public_key=None):
    """A model from its bundle, with its provenance and notice attached to every prediction; ``public_key``
    (a PEM file): the bundle's signature must verify with it."""
    info, params, tensors = load_bundle(directory, public_key=public_key)
    try:
        spec = model_spec(info["task"], info["kind"])
    except InputError:
        raise InputError(f"model kind '{info['kind']}' of task '{info['task']}' is unknown to this TACEPredict",
                         column="--model", fix="upgrade TACEPredict") from None
    try:
        model = spec.cls.from_params(params, tensors)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        if isinstance(exc, InputError):
            raise
        what = f"lacks {exc}" if isinstance(exc, KeyError) else f"does not fit the {info['kind']} model ({exc})"
        raise InputError(f"{os.path.join(directory, PARAMS_FILE)} {what}", column="--model",
                         fix="re-copy the whole bundle folder, or re-train the model") from None
    model.provenance = info["provenance"]
    if not info.get("paper"):  # a bundle written before bundles named their paper: the method's is known here
        from .bundle import citation_text
        notes = method_notes(model)
        model.provenance += (f"; {notes}" if notes else "") + citation_text(PAPERS[spec.paper])
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
    spec = model_spec(task, kind)
    model, messages = train(task, kind, data, seed=seed, **options)
    settings = {k: v for k, v in options.items() if v is not None}
    if task in BINARY_TASKS:
        labelled, label = model.labelled(data)
        if task == "mrecist":
            label = is_objective(label).astype(int)
        measured = {"auc_training_apparent": metrics.roc_auc(label, model.probability(labelled))}
        measured.update({k: v for k, v in model.info.items() if k.startswith("auc_")})
        info = save(model, out_dir, data, seed, settings=settings, input_warnings=messages, metrics=measured)
        if spec.kind == "csd":
            from ..stats.reports import plot_logistic_nomogram
            plot_logistic_nomogram(model, os.path.join(out_dir, "nomogram.png"), model.notice)
            seal_bundle(out_dir)  # the figure too
        return model, info
    labelled = data.subset(complete_outcome_rows(data.table, "os"))
    time, event = survival_outcome(labelled.table, "os")
    risk = model.risk_score(labelled)
    apparent = metrics.concordance_index(time, risk, event)
    info = save(model, out_dir, data, seed, settings=settings,
                metrics={"c_index_training_apparent": apparent,
                         "risk_group_km": risk_group_km(time, event, risk, model.cutoff)},
                input_warnings=messages)
    if spec.kind in ("nomogram", "clinical-cox"):
        from ..stats.reports import plot_nomogram
        plot_nomogram(model, os.path.join(out_dir, "nomogram.png"), model.notice)
    seal_bundle(out_dir)  # the figure too
    return model, info


CATALOGUE_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Resources",
                              "model_catalogue.json")


def catalogue():
    """The declarations as plain data, for readers that cannot import the library yet (the Slicer module lists
    its models before the first-use install): ``Resources/model_catalogue.json`` holds exactly this
    (``scripts/write_model_catalogue.py`` rewrites it after a change)."""
    return [{"task": s.task, "kind": s.kind, "title": s.title, "paper": s.paper, "published": s.published,
             "options": list(s.options), "needs": list(s.needs)} for s in MODELS]

