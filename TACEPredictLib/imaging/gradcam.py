"""Grad-CAM heat maps of a survival model's image part, on the patient's whole CT grid.

A model explains itself here when its risk is linear in a deep-feature signature (``signature`` and the
integrated ``nomogram``): the risk's gradient with respect to one phase's pooled backbone features is the
signature's coefficient over the feature's training SD (times the nomogram's coefficient on the signature),
so the backbone plus that linear head *is* the model's image path, and Grad-CAM of its output shows the
regions whose features raise the predicted risk. Maps are normalised per patch (1 = the patch's strongest).
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
