"""Grad-CAM heat maps of a survival model's image part, on the patient's whole CT grid.

A model explains itself here when its risk is linear in a deep-feature signature (``signature`` and the
integrated ``nomogram``): the risk's gradient with respect to one phase's pooled backbone features is the
signature's coefficient over the feature's training SD (times the nomogram's coefficient on the signature),
so the backbone plus that linear head *is* the model's image path, and Grad-CAM of its output shows the
regions whose features raise the predicted risk. Maps are normalised per patch (1 = the patch's strongest).

DLOP-Combin (paper 001 shows Grad-CAM maps of its image branch) is explained through its whole network: for one
phase, the backbone on that phase's patches, the features' mean over the patches, then exactly what the model
does with them (frozen features: the training standardisation and principal-component projection; fine-tuned:
the trained backbone itself), the image branch, the fusion head with the patient's own clinical inputs and the
other phases' features held at their values, and the log-odds of death within 3 years (``ct-cox``: times the
Cox coefficient of the network score, so that the map follows the model's risk). Where the image branch read
cached features of a frozen backbone, that backbone (with the bundle's extraction weights) is the CNN whose
last stage the map is taken at: no stand-in network is trained for the map.
"""

from __future__ import annotations

import numpy as np

from .. import InputError


def signature_weights(model):
    """``{phase: weight vector over the backbone's features}`` and the family, or ``None`` when the model's
    risk has no deep-feature signature."""
    from .deep_features import FEATURE_SIZES
    signature = getattr(model, "signature", None)
    if signature is None or not signature.standardiser.names or signature.family not in FEATURE_SIZES:
        return None
    covariates = list(getattr(model, "covariates", []))
    if "signature" not in covariates:
        return None
    multiplier = float(np.asarray(model.coef)[covariates.index("signature")])
    weights = {}
    for name, coef, sd in zip(signature.standardiser.names, signature.coef, signature.standardiser.sd):
        phase, family, feature = name.split(":", 2)
        vector = weights.setdefault(phase, np.zeros(FEATURE_SIZES[family], np.float32))
        vector[int(feature.rsplit("_", 1)[1])] += multiplier * coef / sd
    return weights, signature.family


def signature_heatmaps(model, data, extraction, device="cpu"):
    """Grad-CAM of the model's signature per phase: ``{phase: SimpleITK float image}`` on the whole grid of
    the case's reference CT (the first phase), 0 outside the sampled patches. ``data``: the one-case
    ``PatientData`` (its loaded images are re-used); ``extraction``: the bundle's ``feature_extraction``
    settings (sampling, normalisation, weights, registration)."""
    import copy

    import torch

    from .deep_features import TARGET_LAYERS, gradcam, heatmap_volume
    from .extraction import _deep_extractor, deep_patches
    found = signature_weights(model)
    if found is None:
        raise InputError(f"the {model.label} model has no deep-feature signature to explain", column="model",
                         fix="Grad-CAM applies to signature and integrated nomogram models")
    weights, family = found
    extraction = extraction or {}
    case = data.case(tuple(extraction.get("phases") or weights), extraction.get("register", "rigid"))
    extractor = _deep_extractor(family, extraction.get("weights", "imagenet"), device, "auto")
    backbone = copy.deepcopy(extractor.model)  # Grad-CAM's hooks stay on its copy, not the shared extractor
    maps = {}
    mask = case.mask_array()
    reference = case.phases[case.reference_phase]
    for phase, vector in weights.items():
        if not np.any(vector):
            continue
        patches, boxes = deep_patches(case.array(phase), mask, extraction.get("sampling", "centre"),
                                      extraction.get("normalisation", "zscore"))
        head = torch.nn.Linear(len(vector), 1, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(vector[None]))
        network = torch.nn.Sequential()
        network.add_module("backbone", backbone)
        network.add_module("head", head.to(extractor.device))
        heat = gradcam(network, patches, "backbone." + TARGET_LAYERS[family], class_index=0)
        maps[phase] = heatmap_volume(heat, boxes, reference, case.full_geometry)
    return maps


# ------------------------------------------------------------------------------------------- DLOP-Combin

def explains(model):
    """True when ``model_heatmaps`` can explain the model (a deep-feature signature, or DLOP-Combin's image
    branch)."""
    if getattr(model, "kind", None) == "dlop":
        return model.state is not None and model.variant in ("combined", "ct-only", "ct-cox")
    return signature_weights(model) is not None


def model_heatmaps(model, data, extraction, device="cpu"):
    """Grad-CAM maps of any model ``explains`` accepts: ``{phase: SimpleITK float image}`` (see
    ``signature_heatmaps``)."""
    if getattr(model, "kind", None) == "dlop":
        return dlop_heatmaps(model, data, extraction, device)
    return signature_heatmaps(model, data, extraction, device)


def _case_of(data, phases, register):
    """The one case's loaded images: a ``PatientData`` keeps them; a one-case ``CohortData`` loads them."""
    if hasattr(data, "case"):
        return data.case(tuple(phases), register)
    import os

    from ..data.manifest import Manifest
    from .preprocess import load_case
    if len(data.case_ids) != 1:
        raise InputError(f"Grad-CAM maps one case at a time, not {len(data.case_ids)}", column="--manifest",
                         fix="give a one-case manifest")
    manifest = Manifest(data.table, os.path.dirname(data.manifest_path))
    return load_case(manifest, data.table.iloc[0], list(phases), register)


def dlop_heatmaps(model, data, extraction, device="cpu", target="risk"):
    """Grad-CAM of DLOP-Combin's predicted 3-year death (log-odds) per phase, through the whole network (module
    docstring), on the whole grid of the case's reference CT. ``data``: the one-case cohort (its clinical values
    enter the fusion head); ``extraction``: the bundle's ``feature_extraction`` settings (frozen features: the
    backbone's weights, sampling and normalisation; a fine-tuned model reads seed 001's z-scored centre patch).
    ``target``: ``risk`` (bright = raises the 3-year death probability, as the signature maps) or ``survival``
    (bright = raises 3-year survival, paper 001's Figure 6 convention: the negated log-odds)."""
    if target not in ("risk", "survival"):
        raise InputError(f"unknown Grad-CAM target {target!r}", column="target", fix="use risk or survival")
    import copy

    import torch

    from .deep_features import FEATURE_SIZES, TARGET_LAYERS, gradcam, heatmap_volume, select_device
    from .extraction import _deep_extractor, deep_patches
    if not explains(model):
        raise InputError(f"the {model.label} model has no trained image branch to explain", column="model",
                         fix="train it first")
    extraction = extraction or {}
    phases = list(model.phases)
    register = extraction.get("register", "rigid")
    if model.finetune:
        sampling, normalisation = "centre", "zscore"  # what case_patches feeds the fine-tuned backbone
    else:
        sampling, normalisation = extraction.get("sampling", "centre"), extraction.get("normalisation", "zscore")
    device = select_device(device)
    net = model._build(backbone_state=model.state)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in model.state.items()})
    net.eval().to(device)
    if model.finetune:
        backbone = net.backbone
    else:
        extractor = _deep_extractor(model.family, extraction.get("weights", "imagenet"), str(device), "auto")
        backbone = copy.deepcopy(extractor.model)  # Grad-CAM's hooks stay on its copy, not the shared extractor
    backbone.eval().to(device)
    for parameter in backbone.parameters():  # gradients must reach the target stage's activations
        parameter.requires_grad_(True)
    size = FEATURE_SIZES[model.family]

    case = _case_of(data, phases, register)
    mask = case.mask_array()
    patches = {}
    for phase in phases:
        patches[phase] = deep_patches(case.array(phase), mask, sampling, normalisation)
    with torch.no_grad():
        pooled = {p: backbone(torch.as_tensor(patches[p][0], device=device)).float().mean(0, keepdim=True)
                  for p in phases}

    if model.finetune:
        select = mean = sd = projection = None
    else:
        index = []
        for name in model.image_scaler.names:
            phase, _, feature = name.split(":", 2)
            index.append(phases.index(phase) * size + int(feature.rsplit("_", 1)[1]))
        select = torch.as_tensor(index, device=device)
        mean = torch.as_tensor(model.image_scaler.mean, dtype=torch.float32, device=device)
        sd = torch.as_tensor(model.image_scaler.sd, dtype=torch.float32, device=device)
        projection = (torch.as_tensor(np.asarray(model.image_projection), dtype=torch.float32, device=device)
                      if model.image_projection is not None else None)
    clinical = None
    if net.clinical is not None:
        clinical = torch.as_tensor(model._clinical_inputs(data, warn=False), device=device)
    sign = float(model.cox["coef"][0]) if model.variant == "ct-cox" else 1.0
    sign = -sign if target == "survival" else sign

    class PhaseRisk(torch.nn.Module):
        """One phase's patches -> the model's 3-year death log-odds (the same value for every patch)."""

        def __init__(self, phase):
            super().__init__()
            self.backbone = backbone
            self.image, self.clinical, self.head = net.image, net.clinical, net.head
            self.phase = phase

        def forward(self, x):
            features = self.backbone(x)
            vector = torch.cat([features.mean(0, keepdim=True) if p == self.phase else pooled[p] for p in phases],
                               dim=1)
            if select is not None:
                vector = (vector[:, select] - mean) / sd
                if projection is not None:
                    vector = vector @ projection
            parts = [self.image(vector)]
            if self.clinical is not None:
                parts.append(self.clinical(clinical))
            hazards = torch.sigmoid(self.head(torch.cat(parts, dim=1)))
            death = (1 - torch.prod(1 - hazards[:, :3], dim=1)).clamp(1e-6, 1 - 1e-6)
            logit = sign * torch.log(death / (1 - death))
            return logit.reshape(1, 1).expand(x.shape[0], 1)

    maps = {}
    reference = case.phases[case.reference_phase]
    for phase in phases:
        batch, boxes = patches[phase]
        heat = gradcam(PhaseRisk(phase).to(device), batch, "backbone." + TARGET_LAYERS[model.family], class_index=0)
        maps[phase] = heatmap_volume(heat, boxes, reference, case.full_geometry)
    return maps
