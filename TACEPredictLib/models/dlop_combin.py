"""DLOP-Combin (seed 001): a discrete-time survival network fusing CT and clinical data (research use only).

After Sun Z, Li X, Liang H, Shi Z, Ren H. A Deep Learning Model Combining Multimodal Factors to Predict the
Overall Survival of Transarterial Chemoembolization. J Hepatocell Carcinoma 2024;11:385-397.
doi:10.2147/JHC.S443660 (paper 001), who compared it with a CT-only residual network, a Cox model on the
network's score plus clinical factors, a radiomics model and a clinical model.

- Image branch: a ResNet101 backbone's (the paper's; ``family="resnet50"`` is the named CPU-time departure)
  2048-d pooled features of the arterial and portal phases. By default the backbone is frozen and its features
  come from the extraction cache (``tacepredict extract --deep resnet101``), which is what runs on a CPU; the
  features are standardised and projected on their first 32 principal components (thousands of features for
  ~100 training cases overfit otherwise), then a trainable dense layer maps them to 64. With ``finetune=True``
  (meant for a GPU) the backbone's last stage is trained too, end to end on the same z-scored 224x224 centre
  patches the extraction uses, read from the manifest's images, with flips as augmentation.
- Clinical branch: an MLP 16-32-64 on the covariates significant in univariate and then multivariable Cox,
  screened from the paper's candidate factors (its Table 2) that a manifest holds: ``PAPER_CLINICAL``, among them
  the post-TACE treatment response (``post_tace_response``: mRECIST CR/PR = 1, SD/PD = 0, from the manifest's
  ``response``; left out, and said so in the provenance, when the manifest has no ``response``) and Bolondi's
  BCLC-B sub-stage (``bclc_b_substage``: B1-B4 from ``child_pugh_score``, up-to-seven and ECOG by
  ``clinical_scores.BCLCBSubstage``; ``outside`` for a case not in BCLC B or outside Bolondi's table).
- Fusion: the two 64-d embeddings are concatenated into one hazard logit per yearly interval (0-1, 1-2, 2-3,
  3-4 years). Survival to the end of interval k is the product of (1 - hazard) over intervals up to k.
- Loss: the censored discrete-time likelihood (Gensheimer and Narasimhan 2019): a patient contributes every
  interval they were at risk in; a patient censored in the second half of an interval counts as surviving it.
- Output: the 3-year survival probability; the risk score is 1 - S(3 years); high / low risk at the Youden
  cut-off of the 3-year death probability on the training cases.

Published settings beside the defaults and every named departure: docs/survival.md ("DLOP-Combin: published
vs default").

Variants (seed 001's comparators): ``combined`` (the model), ``ct-only`` (image branch alone) and ``ct-cox``
(a Cox model on the ct-only network's score plus the selected clinical covariates).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .. import InputError
from ..data.cohort import ClinicalEncoder, Standardiser
from ..stats.cox import fit_cox, survival_from_baseline
from ..stats.metrics import status_at, youden_cutoff
from ..imaging.sampling import Augmenter
from ..stats.splits import stratified_folds
from .training import train_network
from .overall_survival import DAYS_PER_YEAR, DEEP_PHASES, HORIZON_YEARS, SurvivalModel, select_clinical, training_outcome

INTERVAL_YEARS = (1, 2, 3, 4)
VARIANTS = ("combined", "ct-only", "ct-cox")
PROJECTION_KEY = "image_projection"  # the principal-component bottleneck of frozen features, in the weights file
PAPER_BACKBONE = "resnet101"  # "an improved resnet101" (paper 001, Model Construction)

# Covariates derived from manifest columns, as paper 001 enters them (its Table 2).
RESPONSE_COVARIATE = "post_tace_response"  # mRECIST objective response after TACE: CR/PR 1, SD/PD 0
BCLC_B_COVARIATE = "bclc_b_substage"  # Bolondi's B1-B4; "outside" when not BCLC B or outside his table
BCLC_B_OUTSIDE = "outside"
DERIVED_SOURCES = {RESPONSE_COVARIATE: ("response",),
                   BCLC_B_COVARIATE: ("bclc", "child_pugh_score", "child_pugh", "ecog", "portal_vein_invasion",
                                      "tumor_size_mm", "tumor_number")}
# Paper 001's candidate clinical factors (Table 2, screened by univariate and then multivariable Cox) that a
# manifest holds, in the paper's order; it also lists portal hypertension, diabetes and tumour location, which
# the manifest has no column for. Its "Child-Pugh score" is reported as class A vs B-C (Table 1): ``child_pugh``.
PAPER_CLINICAL = ("age", "sex", "cirrhosis", "hbv", "child_pugh", "afp_ng_ml", "ast_u_l", "alt_u_l", "albumin_g_l",
                  "bilirubin_umol_l", "tumor_number", "tumor_size_mm", "mvi", "albi_grade", BCLC_B_COVARIATE,
                  RESPONSE_COVARIATE)


def bclc_b_covariate(table):
    """Bolondi's BCLC-B sub-stage per case (``clinical_scores.BCLCBSubstage``): B1-B4, ``outside`` where the case
    is not BCLC B or falls outside his table, NaN where missing inputs leave it open. Raises InputError naming
    the case for a Child-Pugh score that contradicts its class."""
    from .clinical_scores import BCLCBSubstage
    frame = BCLCBSubstage().evaluate(table)
    grade = frame["grade"].astype(object)
    outside = frame["reason"].str.startswith("outside B1-B4")
    values = np.where(grade.notna(), grade, np.where(outside, BCLC_B_OUTSIDE, None))
    return pd.Series([v if v is not None else np.nan for v in values], index=table.index, dtype=object)


def with_derived_covariates(table, names):
    """``table`` with the derived covariates among ``names`` added (those whose source columns it has)."""
    from ..data.outcomes import objective_response
    table = table.copy()
    if RESPONSE_COVARIATE in names and "response" in table.columns:
        table[RESPONSE_COVARIATE] = objective_response(table).to_numpy(dtype=float)
    if BCLC_B_COVARIATE in names and "bclc" in table.columns:
        table[BCLC_B_COVARIATE] = bclc_b_covariate(table).to_numpy()
    return table


def discrete_time_targets(time_days, event, interval_years=INTERVAL_YEARS):
    """``(at_risk, died)`` matrices (patients x intervals) for the censored discrete-time likelihood."""
    edges = np.concatenate([[0.0], np.asarray(interval_years, dtype=float) * DAYS_PER_YEAR])
    time_days = np.asarray(time_days, dtype=float)
    event = np.asarray(event).astype(bool)
    k = len(edges) - 1
    at_risk = np.zeros((len(time_days), k))
    died = np.zeros((len(time_days), k))
    for i, (t, e) in enumerate(zip(time_days, event)):
        j = int(np.searchsorted(edges, t, side="right") - 1)
        if j >= k:
            at_risk[i, :] = 1
            continue
        at_risk[i, :j] = 1
        if e:
            at_risk[i, j] = 1
            died[i, j] = 1
        elif t >= (edges[j] + edges[j + 1]) / 2:
            at_risk[i, j] = 1
    return at_risk, died


def _network(image_dim, clinical_dim, n_intervals, dropout=0.3, backbone=None):
    """The fusion network; with ``backbone`` its image input is patches (cases, phases, 3, H, W) and
    ``image_dim`` is phases x the backbone's feature size."""
    import torch
    from torch import nn

    class DiscreteTimeSurvivalNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.image = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim, 64), nn.ReLU()) if image_dim else None
            self.clinical = (nn.Sequential(nn.Linear(clinical_dim, 16), nn.ReLU(), nn.Linear(16, 32), nn.ReLU(),
                                           nn.Linear(32, 64), nn.ReLU()) if clinical_dim else None)
            width = 64 * ((image_dim > 0) + (clinical_dim > 0))
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, n_intervals))

        def forward(self, image, clinical):
            parts = []
            if self.backbone is not None:
                cases, phases = image.shape[:2]
                image = self.backbone(image.flatten(0, 1)).reshape(cases, phases * self.backbone.feature_size)
            if self.image is not None:
                parts.append(self.image(image))
            if self.clinical is not None:
                parts.append(self.clinical(clinical))
            return self.head(torch.cat(parts, dim=1))  # hazard logits per interval

    return DiscreteTimeSurvivalNet()


def _nll(logits, at_risk, died):
    import torch
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, died, weight=at_risk, reduction="sum")
    return loss / logits.shape[0]


def case_patches(data, phases, register="rigid"):
    """(cases, phases, 3, 224, 224) float32: the z-scored centre patches the extraction feeds a backbone."""
    import SimpleITK as sitk

    from ..imaging.extraction import deep_patches
    from ..data.manifest import Manifest
    from ..imaging.preprocess import load_case
    manifest = Manifest(data.table, os.path.dirname(data.manifest_path))
    out = []
    for _, row in data.table.iterrows():
        case = load_case(manifest, row, list(phases), register)
        mask = case.mask_array()
        out.append(np.stack([deep_patches(sitk.GetArrayFromImage(case.phases[p]), mask, "centre")[0][0]
                             for p in phases]))
    return np.stack(out).astype(np.float32)


class DLOPCombin(SurvivalModel):
    kind = "dlop"
    cutoff_rule = "Youden cut-off of the 3-year death probability on the training cases"

    def __init__(self, variant="combined", family=PAPER_BACKBONE, phases=DEEP_PHASES, p_threshold=0.05,
                 max_epochs=None, patience=None, lr=1e-3, weight_decay=1e-3, device="auto", finetune=False,
                 weights="imagenet", batch_size=16, image_components=32, covariates=None):
        super().__init__()
        if variant not in VARIANTS:
            raise InputError(f"unknown DLOP variant '{variant}'", column="--variant", fix=f"use one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.candidate_columns = tuple(covariates or PAPER_CLINICAL)
        self.inputs_report = {}  # what became of the paper's inputs on the training cohort (provenance)
        self.family = family
        self.phases = tuple(phases)
        self.p_threshold = p_threshold
        self.finetune = bool(finetune)
        if self.finetune and family not in ("resnet50", "resnet101"):
            raise InputError(f"fine-tuning needs a ResNet backbone, not {family}", column="--family",
                             fix="use resnet50 or resnet101")
        # full-batch epochs on cached features are cheap; fine-tuning epochs are mini-batch passes over images
        self.max_epochs = max_epochs or (40 if self.finetune else 400)
        self.patience = patience or (8 if self.finetune else 40)
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.weights = weights
        self.batch_size = batch_size
        self.backbone_provenance = None
        self.image_components = image_components
        self.image_projection = None
        self.encoder = None
        self.clinical_names = []
        self.clinical_scaler = None
        self.image_scaler = None
        self.state = None
        self.cox = None  # ct-cox: coef, names, baseline
        self.history = {}

    # --- inputs ---
    def _uses_network_clinical(self):
        return self.variant == "combined"

    def _image_inputs(self, data):
        if self.finetune:
            # loading and registering the images dominates: keep the last cohort's patches
            key = (data.manifest_path, tuple(data.case_ids))
            if getattr(self, "_patches", (None,))[0] != key:
                self._patches = (key, case_patches(data, self.phases))
            return self._patches[1]
        wide = data.features(self.phases, self.family, names=self.image_scaler.names)
        z = self.image_scaler.transform(wide)
        return (z @ self.image_projection).astype(np.float32) if self.image_projection is not None else \
            z.astype(np.float32)

    def _build(self, backbone_state=None):
        """The network (and, fine-tuning, its backbone with only the last stage trainable)."""
        backbone = None
        clinical_dim = len(self.clinical_names) if self._uses_network_clinical() else 0
        if self.finetune:
            from ..imaging.deep_features import FEATURE_SIZES, build_backbone, load_weights
            backbone = build_backbone(self.family, spatial_dims=2, in_channels=3)
            if backbone_state is None:
                self.backbone_provenance = load_weights(backbone, self.weights)
            for name, parameter in backbone.named_parameters():
                parameter.requires_grad = name.startswith("net.layer4.")
            image_dim = len(self.phases) * FEATURE_SIZES[self.family]
        else:
            image_dim = (self.image_projection.shape[1] if self.image_projection is not None
                         else len(self.image_scaler.names))
        return _network(image_dim, clinical_dim, len(INTERVAL_YEARS), backbone=backbone)

    def _table(self, data, names=None):
        """The manifest table with the derived covariates the model reads (``names``: at training, the
        candidates; otherwise the encoder's source columns). A model trained on a derived covariate needs its
        source column: its absence is an error naming that column."""
        if names is None:
            used = {item["column"] for item in self.encoder.spec
                    if set(item["names"]) & set(self.clinical_names)} if self.encoder else set()
            names = [n for n in DERIVED_SOURCES if n in used]
            for name in names:
                source = DERIVED_SOURCES[name][0]
                if source not in data.table.columns:
                    raise InputError(f"the model uses '{name}', derived from the column '{source}', which this "
                                     "manifest lacks", column=source, fix=f"add '{source}' to the manifest")
        return with_derived_covariates(data.table, names)

    def _clinical_inputs(self, data, warn=True):
        design = self.encoder.transform(self._table(data), warn=warn, names=self.clinical_names)
        return self.clinical_scaler.transform(design[self.clinical_names]).astype(np.float32)

    # --- training ---
    def fit(self, data, seed=0):
        import torch
        data, time, event = training_outcome(data)
        if self.finetune:
            self.image_scaler = Standardiser()
        else:
            wide = data.features(self.phases, self.family, icc_filter=True)
            wide = wide.loc[:, wide.to_numpy(dtype=float).std(0) > 1e-12]
            self.image_scaler = Standardiser().fit(wide)
            if self.image_components:
                # thousands of frozen features for ~100 training cases: a principal-component bottleneck
                z = self.image_scaler.transform(wide)
                _, _, vt = np.linalg.svd(z, full_matrices=False)
                self.image_projection = vt[:min(self.image_components, len(vt))].T / np.sqrt(z.shape[0])
        table = self._table(data, self.candidate_columns)
        self.encoder = ClinicalEncoder().fit(table, self.candidate_columns)
        design = self.encoder.transform(table, warn=False)
        self.clinical_names, _ = select_clinical(design, time, event, self.p_threshold)
        self.inputs_report = self._report_inputs(data.table)
        self.clinical_scaler = Standardiser().fit(design[self.clinical_names])
        image = self._image_inputs(data)
        clinical = self._clinical_inputs(data, warn=False)
        at_risk, died = discrete_time_targets(time, event)

        from ..imaging.deep_features import select_device, select_dtype
        device = select_device(self.device)
        torch.manual_seed(seed)
        net = self._build().to(device)
        # 20% of the training cases, stratified by event, for early stopping
        validation = stratified_folds(event.astype(bool), 5, seed, deal="cyclic", strata=(True, False)) == 0
        arrays = (image, clinical, at_risk, died)
        backbone_ids = {id(p) for p in net.backbone.parameters()} if net.backbone is not None else set()
        groups = [{"params": [p for p in net.parameters() if id(p) not in backbone_ids], "lr": self.lr}]
        if backbone_ids:  # the pretrained stage moves ten times more slowly than the new heads
            groups.append({"params": [p for p in net.backbone.parameters() if p.requires_grad], "lr": self.lr / 10})
        optimiser = torch.optim.Adam(groups, weight_decay=self.weight_decay)
        dtype = select_dtype(device, "auto")
        autocast = device.type != "cpu" and dtype != torch.float32
        rng = np.random.default_rng(seed)

        def batches(mask, shuffle):
            idx = np.flatnonzero(mask)
            if shuffle:
                rng.shuffle(idx)
            size = self.batch_size if self.finetune else len(idx)
            for start in range(0, len(idx), size):
                chosen = idx[start:start + size]
                x_img, x_cli, r, d = [torch.as_tensor(a[chosen], dtype=torch.float32, device=device) for a in arrays]
                yield (x_img, x_cli), (r, d), len(chosen)

        def training_batches():
            for (x_img, x_cli), target, rows in batches(~validation, shuffle=self.finetune):
                if self.finetune:  # flips, per case and consistent over its phases
                    x_img = Augmenter.random_flips(x_img)
                yield (x_img, x_cli), target, rows

        def set_mode(training):
            net.train(training)
            if net.backbone is not None:  # frozen stages keep their ImageNet batch-norm statistics
                net.backbone.eval()
                net.backbone.net.layer4.train(training)

        def validate():
            set_mode(False)
            total, seen = 0.0, 0
            with torch.no_grad():
                for inputs, target, rows in batches(validation, shuffle=False):
                    with mixed_precision():
                        logits = net(*inputs)
                    total += float(_nll(logits.float(), *target)) * rows
                    seen += rows
            return {"validation_loss": total / seen}

        def mixed_precision():
            return torch.autocast(device.type, dtype=dtype, enabled=autocast)

        history, kept, best_state = train_network(
            net, optimiser, lambda logits, target: _nll(logits, *target), training_batches, validate,
            epochs=self.max_epochs, patience=self.patience, min_improvement=1e-5, set_mode=set_mode,
            autocast=mixed_precision)
        self.state = {k: v.detach().float().cpu().numpy() for k, v in best_state.items()}
        self.history = {"epochs_run": len(history), "best_epoch": kept,
                        "best_validation_nll": history[kept - 1]["validation_loss"],
                        "train_nll_at_best": history[kept - 1]["train_loss"], "device": str(device),
                        "precision": str(dtype).replace("torch.", "") if autocast else "float32"}

        if self.variant == "ct-cox":
            score = self._network_score(data)
            X = np.column_stack([score, design[self.clinical_names].to_numpy(dtype=float)])
            names = ["ct_score"] + list(self.clinical_names)
            fit = fit_cox(X, time, event, names)
            self.cox = {"names": names, "coef": fit.coef.tolist(), "baseline_time_days": fit.baseline_time.tolist(),
                        "baseline_cumhaz": fit.baseline_cumhaz.tolist(),
                        "hazard_ratios": fit.summary().to_dict(orient="records")}
        status = status_at(time, event, 3 * DAYS_PER_YEAR)
        known = ~np.isnan(status)
        risk = self.risk_score(data)
        if len(np.unique(status[known])) == 2:
            self.cutoff = youden_cutoff(status[known], risk[known])[0]
        else:
            self.cutoff = float(np.median(risk))
            self.cutoff_rule = "median of the training risk scores (no 3-year deaths and survivors to cut between)"
        return self

    def _report_inputs(self, table):
        """What became of the backbone and of the paper's two post-hoc inputs on the training cohort."""
        encoded = {item["column"] for item in self.encoder.spec}
        selected = {item["column"] for item in self.encoder.spec if set(item["names"]) & set(self.clinical_names)}
        report = {"backbone": self.family + ("" if self.family == PAPER_BACKBONE
                                             else f" (named departure; the paper's is {PAPER_BACKBONE})")}
        for name, what in ((RESPONSE_COVARIATE, "post-TACE response"), (BCLC_B_COVARIATE, "BCLC-B sub-stage")):
            source = DERIVED_SOURCES[name][0]
            if name not in self.candidate_columns:
                report[name] = f"{what} not a candidate (covariates given without it)"
            elif source not in table.columns:
                report[name] = (f"{what} absent: the training manifest has no '{source}' column, the model works "
                                "without it")
            elif name not in encoded:
                report[name] = f"{what} not used: missing or constant in the training cases"
            elif self._uses_network_clinical() or self.variant == "ct-cox":
                report[name] = f"{what} {'selected' if name in selected else 'not selected'} by the Cox screen"
            else:
                report[name] = f"{what} not used: the {self.variant} variant reads no clinical input"
        return report

    def method_notes(self):
        """One line for the provenance (the paper's citation follows it): the backbone and what became of the
        paper's post-hoc inputs."""
        parts = [self.inputs_report.get(k) for k in ("backbone", RESPONSE_COVARIATE, BCLC_B_COVARIATE)]
        if not parts[0]:  # a bundle written before the report: its backbone from its parameters
            parts[0] = self.family + ("" if self.family == PAPER_BACKBONE else
                                      f" (the paper's is {PAPER_BACKBONE})")
        parts[0] = "backbone " + parts[0]
        return "DLOP-Combin as built: " + "; ".join(p for p in parts if p)

    # --- prediction ---
    def _hazards(self, data):
        import torch
        from ..imaging.deep_features import select_device
        device = select_device(self.device)
        net = self._build(backbone_state=self.state)
        net.load_state_dict({k: torch.as_tensor(v) for k, v in self.state.items()})
        net.eval().to(device)
        image = self._image_inputs(data)
        clinical = (self._clinical_inputs(data) if self._uses_network_clinical()
                    else np.zeros((len(data.case_ids), 0), dtype=np.float32))
        out = []
        with torch.no_grad():
            for start in range(0, len(image), 64):
                batch = [torch.as_tensor(a[start:start + 64], device=device) for a in (image, clinical)]
                out.append(torch.sigmoid(net(*batch)).double().cpu().numpy())
        return np.concatenate(out)

    def _network_score(self, data):
        """log-odds of death within 3 years from the network."""
        surv3 = np.cumprod(1 - self._hazards(data), axis=1)[:, 2]
        p = np.clip(1 - surv3, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def _cox_lp(self, data):
        design = self.encoder.transform(self._table(data), names=self.clinical_names)
        X = np.column_stack([self._network_score(data), design[self.clinical_names].to_numpy(dtype=float)])
        return X @ np.asarray(self.cox["coef"])

    def survival_days(self, data, days):
        days = np.atleast_1d(np.asarray(days, dtype=float))
        if self.variant == "ct-cox":
            return survival_from_baseline(self._cox_lp(data), np.asarray(self.cox["baseline_time_days"]),
                                          np.asarray(self.cox["baseline_cumhaz"]), days)
        curve = np.cumprod(1 - self._hazards(data), axis=1)  # S at the end of each interval
        edges = np.asarray(INTERVAL_YEARS, dtype=float) * DAYS_PER_YEAR
        idx = np.searchsorted(edges, days + 1e-9, side="right") - 1
        if np.any(days > edges[-1] + 1e-9):
            raise InputError(f"DLOP-Combin predicts up to {INTERVAL_YEARS[-1]} years", column="horizon")
        padded = np.column_stack([np.ones(len(curve)), curve])
        return padded[:, idx + 1]

    def risk_score(self, data):
        return 1 - self.survival_days(data, [3 * DAYS_PER_YEAR])[:, 0]

    def risk_and_survival(self, data):
        surv = self.survival(data)  # one pass of the network: the risk is 1 - S(3 years)
        return 1 - surv[:, HORIZON_YEARS.index(3)], surv

    # --- bundle ---
    def params(self):
        return {"kind": self.kind, "variant": self.variant, "family": self.family, "phases": list(self.phases),
                "finetune": self.finetune, "backbone_weights": self.backbone_provenance,
                "candidate_covariates": list(self.candidate_columns), "inputs_report": self.inputs_report,
                "image_components": self.image_components,
                "p_threshold": self.p_threshold, "interval_years": list(INTERVAL_YEARS),
                "image_scaler": self.image_scaler.to_dict(), "encoder": self.encoder.to_dict(),
                "clinical_names": list(self.clinical_names), "clinical_scaler": self.clinical_scaler.to_dict(),
                "cutoff": self.cutoff, "cutoff_rule": self.cutoff_rule, "cox": self.cox, "history": self.history,
                "training": {"max_epochs": self.max_epochs, "patience": self.patience, "lr": self.lr,
                             "weight_decay": self.weight_decay, "optimiser": "Adam",
                             "batch": self.batch_size if self.finetune else "full",
                             "trainable": "backbone layer4 (lr / 10) + heads" if self.finetune
                             else "heads (frozen backbone)",
                             "early_stopping": "20% of the training cases"}}

    def tensors(self):
        tensors = dict(self.state)
        if self.image_projection is not None:
            tensors[PROJECTION_KEY] = self.image_projection
        return tensors

    @classmethod
    def from_params(cls, params, tensors=None):
        if tensors is None:
            raise InputError("the DLOP bundle has no weights.safetensors", column="--model", fix="re-train the model")
        model = cls(params["variant"], params["family"], params["phases"], params["p_threshold"],
                    finetune=params.get("finetune", False), image_components=params.get("image_components"))
        model.backbone_provenance = params.get("backbone_weights")
        model.candidate_columns = tuple(params.get("candidate_covariates") or model.candidate_columns)
        model.inputs_report = params.get("inputs_report") or {}
        model.image_scaler = Standardiser.from_dict(params["image_scaler"])
        model.encoder = ClinicalEncoder.from_dict(params["encoder"])
        model.clinical_names = params["clinical_names"]
        model.clinical_scaler = Standardiser.from_dict(params["clinical_scaler"])
        model.cutoff = params["cutoff"]
        model.cutoff_rule = params["cutoff_rule"]
        model.cox = params["cox"]
        model.history = params.get("history", {})
        tensors = dict(tensors)
        model.image_projection = tensors.pop(PROJECTION_KEY, None)
        model.state = tensors
        return model

    def tables(self):
        tables = {"clinical_covariates": pd.DataFrame({"covariate": self.clinical_names})}
        if self.cox:
            tables["hazard_ratios"] = pd.DataFrame(self.cox["hazard_ratios"])
        return tables
