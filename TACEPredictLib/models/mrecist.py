"""mRECIST four-class response (CR / PR / SD / PD) from CT: seed 003's whole method.

Peng J, Kang S, Ning Z, et al. Residual convolutional neural network for predicting response of transarterial
chemoembolization in hepatocellular carcinoma from CT imaging. Eur Radiol (published online 22 July 2019).
doi:10.1007/s00330-019-06318-1

ResNet-50 transfer learning on patches inside the ROI (the largest slice and its two neighbours), ImageNet
weights by default (``weights="random"``: the fixed-seed untrained backbone of the offline demo). The backbone
is frozen and its features cached by the extraction, so only the new softmax head trains (SGD, lr 1e-4,
momentum 0.9, batch 64); in MATLAB's 177-layer ResNet-50 the paper froze layers 1-174 and replaced layers
175-177 (fc4, softmax, classification: the head), so it too trained the head only. Classes under 80 % of the
largest are balanced by adding flipped and rotated copies of their patches. Patient = mean of the patch
probabilities; P(objective response) = P(CR) + P(PR). docs/mrecist.md has the paper's setting beside each
default.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError
from ..data.outcomes import MRECIST_CLASSES, is_objective, mrecist_label, probability_of_objective
from ..imaging.sampling import Augmenter
from ..stats.splits import stratified_folds
from .base import ProbabilityModel, labelled_cases, prediction_table
from .networks import arrays_to_state, head_net, state_to_arrays, torch_module
from .training import case_mean, fit_network, predict_network, stack_patches

BALANCE_BELOW = 0.8  # mRECIST: a class with fewer patches than this fraction of the largest is augmented


class MRecistNet(ProbabilityModel):
    """Seed 003: ResNet-50 (frozen, features cached) + a trained softmax head, CR / PR / SD / PD."""

    task = "mrecist"
    kind = "resnet50"
    patch_set = "inside"
    label = "ResNet-50 (mRECIST, patches inside the ROI)"
    group_names = ("objective response", "no objective response")
    backbone = "resnet50"  # paper 003: MATLAB's ImageNet ResNet-50, frozen but for the new head

    def __init__(self, weights="imagenet", epochs=400, lr=1e-4, device="auto"):
        super().__init__()
        self.weights = weights
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.device = device
        self.head = None
        self.mean = self.sd = None
        self.backbone_provenance = {}
        self._extractor = None

    def extractor(self):
        if self._extractor is None:
            from ..imaging.deep_features import DeepFeatureExtractor
            self._extractor = DeepFeatureExtractor(self.backbone, self.weights, self.device)
            self.backbone_provenance = self._extractor.provenance
        return self._extractor

    def _features(self, x):
        return self.extractor().features(np.repeat(x, 3, axis=1))

    def _cached_features(self, data):
        """The extraction's own ResNet-50 vectors of these very patches, when it used this backbone, these
        weights, the "inside" sampler and the HU window (the frozen backbone's output, computed once); else None."""
        import json
        import os
        path = os.path.join(data.features_dir or "", "extraction.json")
        if not data.features_dir or not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            settings = json.load(handle).get("settings", {})
        if (settings.get("sampling"), settings.get("normalisation"), settings.get("weights")) != \
                ("inside", "window", self.weights) or self.backbone not in settings.get("deep", ()):
            return None
        try:
            return np.concatenate(data.patches(f"inside_{self.backbone}_ct_ap")).astype(np.float32)
        except InputError:
            return None

    def patch_features(self, data):
        """(ResNet-50 vectors of every patch, the patches (normalised), each patch's case index)."""
        x, groups = stack_patches(data.patches(self.patch_set))
        cached = self._cached_features(data)
        if cached is None or len(cached) != len(x):
            cached = self._features(x)
        else:
            self.extractor()  # provenance of the backbone that made the cached vectors
        return cached, x, groups

    def labelled(self, data):
        return labelled_cases(data, mrecist_label(data.table))

    def fit(self, data, seed=0):
        from ..imaging.deep_features import select_device
        from ..stats.metrics import roc_auc, youden_cutoff
        torch = torch_module()
        data, y_case = self.labelled(data)
        counts = np.bincount(y_case, minlength=4)
        if (counts < 2).any():
            absent = [c for c, n in zip(MRECIST_CLASSES, counts) if n < 2]
            raise InputError(f"mRECIST training needs at least 2 cases of every class; too few: {', '.join(absent)}",
                             column="response", fix="add cases of those classes")
        features, x, groups = self.patch_features(data)
        y = y_case[groups]
        held = stratified_folds(y_case, 5, seed) == 0  # a fifth of the cases for early stopping and the report
        train_rows = ~held[groups]
        # Balance the classes by augmentation: flipped / rotated copies of the training patches of every class
        # with fewer than BALANCE_BELOW of the largest class's patches. A frozen network is not invariant to
        # flips and rotations, so its vectors of the copies differ from any real patch's: they are added only
        # where the imbalance is worth that noise (on the demo cohort, nearly balanced, they cost ~0.06 AUC).
        copies, copy_y, _ = Augmenter.balancing_copies(x, y, np.random.default_rng(seed), rows=train_rows,
                                                       below=BALANCE_BELOW, classes=4)
        extra_x, extra_y = ([self._features(copies)], [copy_y]) if len(copy_y) else ([], [])
        train_features = np.concatenate([features[train_rows]] + extra_x)
        train_y = np.concatenate([y[train_rows]] + extra_y)
        self.mean, self.sd = train_features.mean(0), train_features.std(0) + 1e-6
        device = select_device(self.device)
        torch.manual_seed(seed)  # the head's initial weights
        self.head = head_net(features.shape[1], 4)
        optimiser = torch.optim.SGD(self.head.parameters(), lr=self.lr, momentum=0.9)
        result = fit_network(self.head, self._scale(train_features), train_y, self._scale(features[~train_rows]),
                             y[~train_rows], optimiser=optimiser, epochs=self.epochs, batch_size=64, device=device,
                             seed=seed, patience=50)
        self.head.cpu()
        p_case = case_mean(predict_network(self.head, self._scale(features), device), groups, len(y_case))
        objective = is_objective(y_case).astype(int)
        p_or = probability_of_objective(p_case)
        self.cutoff = float(youden_cutoff(objective[held], p_or[held])[0])
        self.info = {"cases": int(len(y_case)), "patches": int(len(x)),
                     "augmented_patches": int(sum(map(len, extra_y))),
                     "class_counts": dict(zip(MRECIST_CLASSES, counts.tolist())),
                     "validation_cases": int(held.sum()), "best_epoch": result["best_epoch"],
                     "auc_or_validation_cases": float(roc_auc(objective[held], p_or[held])),
                     "accuracy_validation_cases": float((p_case[held].argmax(1) == y_case[held]).mean()),
                     "backbone": self.backbone_provenance, "history": result["history"]}
        return self

    def _scale(self, features):
        return ((features - self.mean) / self.sd).astype(np.float32)

    def patch_probabilities(self, data):
        """(per-patch probabilities (N, 4), each patch's case index)."""
        from ..imaging.deep_features import select_device
        features, _, groups = self.patch_features(data)
        return predict_network(self.head, self._scale(features), select_device(self.device)), groups

    def class_probabilities(self, data):
        p, groups = self.patch_probabilities(data)
        return case_mean(p, groups, len(data.case_ids))

    def probability(self, data):
        return probability_of_objective(self.class_probabilities(data))

    def predict(self, data):
        p = self.class_probabilities(data)
        classes = {**{f"p_{c}": p[:, i] for i, c in enumerate(MRECIST_CLASSES)},
                   "predicted_class": [MRECIST_CLASSES[i] for i in p.argmax(1)]}
        return prediction_table(self, data, probability_of_objective(p), extra=classes)

    def params(self):
        return {"kind": self.kind, "weights": self.weights, "epochs": self.epochs, "lr": self.lr,
                "cutoff": self.cutoff, "backbone": self.backbone_provenance,
                "info": {k: v for k, v in self.info.items() if k != "history"}}

    def tensors(self):
        return {**state_to_arrays(self.head, "head."), "feature_mean": self.mean, "feature_sd": self.sd}

    @classmethod
    def from_params(cls, params, tensors=None):
        from ..imaging.deep_features import imagenet_checkpoint_cached
        weights = params["weights"]
        if weights == "imagenet" and not imagenet_checkpoint_cached(cls.backbone):
            raise InputError("this model's ResNet-50 backbone needs the ImageNet checkpoint, which is not cached",
                             column="--model", fix="run `tacepredict extract --deep resnet50 --weights imagenet` once "
                             "online (it downloads and checks the checkpoint)")
        model = cls(weights, params["epochs"], params["lr"])
        model.cutoff, model.info, model.backbone_provenance = params["cutoff"], params.get("info", {}), \
            params.get("backbone", {})
        model.head = arrays_to_state(head_net(len(tensors["feature_mean"]), 4), tensors, "head.")
        model.mean, model.sd = np.asarray(tensors["feature_mean"]), np.asarray(tensors["feature_sd"])
        return model

    def tables(self):
        return {"training_history": pd.DataFrame(self.info.get("history", []))}
