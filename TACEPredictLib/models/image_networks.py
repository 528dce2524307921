"""The image networks of seeds 002, 003 and 004, trained on the extraction's cached lesion patches
(``sampling.PATCH_SETS``: stored as HU per case by ``tacepredict extract``, read with ``CohortData.patches``).

* ``ResponseCNN`` (seed 002): two convolution + two pooling layers + dense, leaky ReLU 0.1, on the largest
  slice's 224 x 224 x 3 arterial patch; Adam (lr 1e-3, L2 1e-6), batch 16, flips and rotations.
* ``MRecistNet`` (seed 003): ResNet-50 transfer learning on patches inside the ROI (largest slice and its two
  neighbours) to CR / PR / SD / PD. The backbone is frozen and its features cached, so only the new softmax
  head trains (SGD, lr 1e-4, momentum 0.9, batch 64); classes under 80 % of the largest are balanced by
  adding flipped and rotated copies of their patches. Patient = mean of the patch probabilities; P(OR) = P(CR) + P(PR).
* ``ModelD`` (seed 004): one convolution block, six residual blocks, flatten, dropout, softmax, on the
  portal-phase lesion box (+5 pixels, 128 x 128) of every tumour slice; positives oversampled with Gaussian
  noise (variance 0.01 on the input scale; the paper's 0.1 drowns the texture, see NOISE_VARIANCE); shift,
  shear, rotation and zoom augmentation; patient = mean of the slice scores. Five such networks, one per
  cross-validation fold, trained for a fixed number of epochs; their mean is the score.

The response CNN and the mRECIST head keep a fifth of their training cases aside for early stopping (the
epoch with the best validation loss) and for the cut-off (Youden on those cases); Model_D takes its cut-off
from its members' out-of-fold scores. The weights are stored as safetensors in the bundle.
The demo's widths are small so that training takes seconds to a minute on a 2-core CPU; on a GPU they train
the same way (``device``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import InputError
from ..imaging.preprocess import window
from .initial_response import check_classes, labelled_cases, objective_response, prediction_table

MRECIST_CLASSES = ("CR", "PR", "SD", "PD")
BALANCE_BELOW = 0.8  # mRECIST: a class with fewer patches than this fraction of the largest is augmented
# Model_D's oversampling noise, on the network's input scale (HU window W400 L50 mapped to unit scale: 1 = 100
# HU). The paper's variance 0.1 (a standard deviation of 32 HU here) swamps the 6-40 HU lesion texture that
# carries the signal: over training seeds 0-3 on the demo cohort, the internal validation cases' AUC was
# 0.65-0.80 (mean 0.72) with 0.1 and 0.67-0.83 (mean 0.77) with 0.01 (docs/aggressive_progression.md).
NOISE_VARIANCE = 0.01
# Model_D's epochs, fixed: on the demo's training cases (internal 5-fold CV, one network) its out-of-fold
# scores tracked the phantom's true image risk better after 25 epochs than after 15 (Spearman 0.57 / 0.57 vs
# 0.40 / 0.53 over two seeds) and no better after 45 (0.56).
MODEL_D_EPOCHS = 25


def normalise(hu):
    """HU to network input: the abdominal window mapped to zero mean, unit scale (as ``--normalisation
    window``)."""
    return (window(hu) - 0.5) / 0.25


def _nn():
    from ..imaging.deep_features import _torch
    return _torch()


# ---------------------------------------------------------------------------------------------- networks

def response_cnn_net(width=8):
    """Seed 002's small CNN: conv - leaky ReLU - pool, twice, then a dense layer and a two-way softmax."""
    nn = _nn().nn
    return nn.Sequential(  # 224 -> 112 (strided convolution) -> 28 -> 14: cheap enough for a 2-core CPU
        nn.Conv2d(3, width, 5, stride=2, padding=2), nn.LeakyReLU(0.1), nn.MaxPool2d(4),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(2 * width * 14 * 14, 64), nn.LeakyReLU(0.1), nn.Linear(64, 2))


def model_d_net(width=8, dropout=0.5):
    """Seed 004's Model_D: a convolution block, six residual blocks (the width doubles, and the size halves, at
    the third and fifth), flatten, dropout and a two-way softmax, for 128 x 128 one-channel boxes. The last
    feature maps are averaged over the box before flattening: the signal is the lesion's texture wherever it
    lies, and a 4 x 4 grid flattened (16 times the weights) ranked the demo's training cases worse."""
    torch = _nn()
    nn = torch.nn

    class Residual(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                      nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
            self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            return torch.relu(self.body(x) + self.skip(x))

    widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    blocks, cin = [], width
    for i, cout in enumerate(widths):
        blocks.append(Residual(cin, cout, 2 if i in (2, 4) else 1))
        cin = cout
    return nn.Sequential(
        nn.Conv2d(1, width, 5, 2, 2, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),  # 128 -> 32
        *blocks, nn.AdaptiveAvgPool2d(1),  # 8 x 8 -> 1 x 1
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, 2))


def head_net(in_features, classes):
    """The new classification head of a frozen backbone: standardisation is done outside, so a linear layer."""
    return _nn().nn.Linear(in_features, classes)


def state_to_arrays(net, prefix="net."):
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def arrays_to_state(net, tensors, prefix="net."):
    torch = _nn()
    state = {k[len(prefix):]: torch.from_numpy(np.asarray(v).copy()) for k, v in tensors.items()
             if k.startswith(prefix)}
    net.load_state_dict(state)
    return net


# ---------------------------------------------------------------------------------------------- training

def case_folds(case_label, folds=5, seed=0):
    """Each case's fold (0 .. folds - 1), stratified by label: a network trained without fold k is validated,
    and scores its out-of-fold cases, on fold k."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(case_label), int)
    for value in np.unique(case_label):
        members = np.flatnonzero(case_label == value)
        rng.shuffle(members)
        fold[members] = np.arange(len(members)) * folds // len(members)
    return fold


def fit_network(net, x, y, x_val, y_val, *, optimiser, epochs, batch_size, device, seed=0, augment=None,
                oversample_noise=None, patience=None, groups=None, per_group=None, select="loss", on_epoch=None):
    """Mini-batch training with cross-entropy; keeps the weights of the epoch ``select`` picks.

    ``x`` (N, C, H, W) float32 or (N, F) features; ``y`` int classes. ``augment``: a callable(batch, rng).
    ``oversample_noise``: (variance, class) to repeat that class until it matches the largest class, with
    Gaussian noise of that variance on every row (seed 004). ``groups`` / ``per_group``: each epoch draws at most
    ``per_group`` rows of every group (the slices of one case), so that a case's many similar slices do not
    make an epoch long; over the epochs every slice is seen. ``select``: keep the epoch with the lowest
    validation loss, or (``auc``, two classes) the highest validation AUC, which oversampling does not bias
    (it shifts the predicted probabilities, and so the loss, but not their order), or (``last``) the last
    epoch, the validation rows only being scored. Returns the loss history and the kept epoch.
    """
    torch = _nn()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net.to(device)
    loss_fn = torch.nn.CrossEntropyLoss()
    best = (np.inf, -1, None)
    history = []
    for epoch in range(epochs):
        net.train()
        order = np.arange(len(y))
        if per_group:
            order = np.concatenate([rng.permutation(np.flatnonzero(groups == g))[:per_group]
                                    for g in np.unique(groups)])
        extra = np.empty(0, int)
        if oversample_noise is not None:
            variance, cls = oversample_noise
            drawn = np.bincount(y[order], minlength=2)
            members = order[y[order] == cls]
            if len(members):
                extra = rng.choice(members, max(0, drawn.max() - drawn[cls]), replace=True)
        order = rng.permutation(np.concatenate([order, extra]))
        total = 0.0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = x[idx]
            if augment is not None:
                batch = augment(batch, rng)
            if oversample_noise is not None:
                # Every training row gets the noise, not only the copies: noise on the copies alone would tell
                # the network which rows are positive (a shortcut it learns instead of the lesion).
                batch = np.asarray(batch, np.float32) + np.sqrt(oversample_noise[0]) * rng.standard_normal(
                    batch.shape, dtype=np.float32)
            inputs = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(device)
            target = torch.from_numpy(y[idx].astype(np.int64)).to(device)
            optimiser.zero_grad()
            loss = loss_fn(net(inputs), target)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        p_val = predict_network(net, x_val, device, batch_size)
        val_loss = float(-np.mean(np.log(np.clip(p_val[np.arange(len(y_val)), y_val], 1e-7, 1.0))))
        history.append({"epoch": epoch + 1, "train_loss": total / len(order), "validation_loss": val_loss})
        criterion = val_loss
        if select == "auc":
            from ..stats.metrics import roc_auc
            history[-1]["validation_auc"] = roc_auc(y_val, p_val[:, 1])
            criterion = -history[-1]["validation_auc"]
        if on_epoch is not None:
            on_epoch(history[-1])
        if select == "last":
            best = (criterion, epoch + 1, None)
        elif criterion < best[0]:
            best = (criterion, epoch + 1, {k: v.detach().clone() for k, v in net.state_dict().items()})
        elif patience and epoch + 1 - best[1] >= patience:
            break
    if best[2] is not None:
        net.load_state_dict(best[2])
    net.eval()
    return {"history": history, "best_epoch": best[1]}


def predict_network(net, x, device, batch_size=64):
    """Softmax probabilities (N, classes) in inference mode."""
    torch = _nn()
    net.eval().to(device)
    out = []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], np.float32)).to(device)
            out.append(torch.softmax(net(batch).float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), np.float32)


def case_mean(values, groups, n_cases):
    """Mean of per-patch rows by case index (``groups``): the patient-level probability."""
    values = np.asarray(values, float)
    sums = np.zeros((n_cases,) + values.shape[1:])
    np.add.at(sums, groups, values)
    counts = np.bincount(groups, minlength=n_cases).reshape((-1,) + (1,) * (values.ndim - 1))
    return sums / np.maximum(counts, 1)


def stack_patches(patch_list, channels=1):
    """Per-case (N_i, 1, H, W) HU arrays -> normalised (sum N_i, channels, H, W) float32 and each row's case."""
    groups = np.concatenate([np.full(len(p), i) for i, p in enumerate(patch_list)]).astype(int)
    x = normalise(np.concatenate(patch_list).astype(np.float32))
    if channels == 3:
        x = np.repeat(x, 3, axis=1)
    return x, groups


# -------------------------------------------------------------------------------------------- the models

class _PatchModel:
    """What the binary patch networks share: labels, folds, the cut-off, bundles.

    The training cases are split into ``folds`` stratified folds; network k trains without fold k and is
    validated on it, for ``members`` networks. One network (``members = 1``) keeps a fifth of the cases aside;
    a full set (``members = folds``) is a cross-validation ensemble: every training case gets an out-of-fold
    score (for the cut-off, and for Model_CSD's weights) and a new case gets the mean of the members' scores.
    """

    task = ""
    kind = ""
    patch_set = ""
    channels = 1
    members = 1
    folds = 5

    def __init__(self, epochs=30, width=8, device="auto"):
        self.epochs = int(epochs)
        self.width = int(width)
        self.device = device
        self.nets = []
        self.cutoff = 0.5
        self.out_of_fold = None
        self.info = {}
        self.provenance = ""
        self.notice = ""

    # subclasses define: label, group_names, case_label(table), build(), optimiser(net), training_options()
    def training_options(self):
        return {}

    def labelled(self, data):
        return labelled_cases(data, self.case_label(data.table))

    def fit(self, data, seed=0):
        from ..imaging.deep_features import select_device
        from ..stats.metrics import roc_auc, youden_cutoff
        data, y_case = self.labelled(data)
        check_classes(y_case)
        x, groups = self.inputs(data)
        y = y_case[groups]
        fold = case_folds(y_case, self.folds, seed)
        device = select_device(self.device)
        self.nets, history, best_epochs = [], [], []
        out_of_fold = np.full(len(y_case), np.nan)
        for k in range(self.members):
            held = fold == k
            train_rows, val_rows = ~held[groups], held[groups]
            _nn().manual_seed(seed + k)  # the network's initial weights
            net = self.build()
            result = fit_network(net, x[train_rows], y[train_rows], x[val_rows], y[val_rows],
                                 optimiser=self.optimiser(net), epochs=self.epochs, device=device, seed=seed + k,
                                 groups=groups[train_rows], **self.training_options())
            self.nets.append(net.cpu())
            scores = case_mean(predict_network(net, x[val_rows], device)[:, 1], groups[val_rows], len(y_case))
            out_of_fold[held] = scores[held]
            history += [{"member": k, **row} for row in result["history"]]
            best_epochs.append(result["best_epoch"])
        scored = ~np.isnan(out_of_fold)
        self.out_of_fold = out_of_fold
        self.cutoff = float(youden_cutoff(y_case[scored], out_of_fold[scored])[0])
        self.info = {"cases": int(len(y_case)), "positives": int(y_case.sum()), "patches": int(len(x)),
                     "members": self.members, "folds": self.folds, "validation_cases": int(scored.sum()),
                     "best_epoch": best_epochs if self.members > 1 else best_epochs[0],
                     "auc_validation_cases": float(roc_auc(y_case[scored], out_of_fold[scored])),
                     "history": history}
        return self

    def inputs(self, data):
        """The network's rows (normalised patches) and each row's case index."""
        return stack_patches(data.patches(self.patch_set), self.channels)

    def probability(self, data):
        """Per case: the mean of its patches' probabilities, averaged over the members."""
        from ..imaging.deep_features import select_device
        x, groups = self.inputs(data)
        device = select_device(self.device)
        return np.mean([case_mean(predict_network(net, x, device)[:, 1], groups, len(data.case_ids))
                        for net in self.nets], axis=0)

    def predict(self, data):
        return prediction_table(self, data, self.probability(data), self.group_names)

    def params(self):
        return {"kind": self.kind, "epochs": self.epochs, "width": self.width, "cutoff": self.cutoff,
                "patch_set": self.patch_set, "members": len(self.nets),
                "info": {k: v for k, v in self.info.items() if k != "history"}}

    @staticmethod
    def _prefix(k):
        return "net." if k == 0 else f"net{k}."  # member 0 keeps a one-network bundle's names

    def tensors(self):
        return {name: array for k, net in enumerate(self.nets)
                for name, array in state_to_arrays(net, self._prefix(k)).items()}

    @classmethod
    def from_params(cls, params, tensors=None):
        model = cls(epochs=params["epochs"], width=params["width"])
        model.cutoff, model.info = params["cutoff"], params.get("info", {})
        model.nets = [arrays_to_state(model.build(), tensors, cls._prefix(k)).eval()
                      for k in range(params.get("members", 1))]
        return model

    def tables(self):
        return {"training_history": pd.DataFrame(self.info.get("history", []))}


class ResponseCNN(_PatchModel):
    """Seed 002's CNN of objective response on the largest slice's arterial patch (224 x 224 x 3)."""

    task = "response"
    kind = "cnn"
    patch_set = "centre"
    channels = 3
    label = "cnn (largest-slice patch)"
    group_names = ("response", "no response")

    def case_label(self, table):
        return objective_response(table)

    def build(self):
        return response_cnn_net(self.width)

    def optimiser(self, net):
        return _nn().optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-6)

    def training_options(self):
        from ..imaging.sampling import Augmenter
        return {"batch_size": 16, "augment": Augmenter(flips=True, rotate90=True), "patience": 10}


class ModelD(_PatchModel):
    """Seed 004's Model_D: probability of aggressive progression from every tumour slice's portal-phase box."""

    task = "aggressive-pd"
    kind = "cnn"
    patch_set = "boxes"
    channels = 1
    label = "Model_D (CNN, portal-phase slice boxes)"
    group_names = ("high", "low")

    members = 5  # a five-fold cross-validation ensemble (see _PatchModel)

    def __init__(self, epochs=MODEL_D_EPOCHS, width=8, device="auto"):
        super().__init__(epochs, width, device)

    def case_label(self, table):
        return aggressive_label(table)

    def build(self):
        return model_d_net(self.width)

    def optimiser(self, net):
        return _nn().optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)

    def training_options(self):
        from ..imaging.sampling import Augmenter
        # A fixed number of epochs: picking the epoch by a fold of ~28 cases (6 positives) picked noise (epochs
        # 1-6 of 40 on the demo), and would make the fold's out-of-fold scores optimistic. Noise variance
        # NOISE_VARIANCE, not the paper's 0.1: see its comment.
        return {"batch_size": 32, "oversample_noise": (NOISE_VARIANCE, 1), "per_group": 4, "select": "last",
                "augment": Augmenter(flips=False, rotate90=True, shift=0.1, shear_deg=10.0, zoom=0.1)}


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


# ------------------------------------------------------------------------------------------------- mRECIST

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


class MRecistNet:
    """Seed 003: ResNet-50 (frozen, features cached) + a trained softmax head, CR / PR / SD / PD."""

    task = "mrecist"
    kind = "resnet50"
    patch_set = "inside"
    label = "ResNet-50 (mRECIST, patches inside the ROI)"

    def __init__(self, weights="random", epochs=400, lr=1e-4, device="auto"):
        self.weights = weights
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.device = device
        self.head = None
        self.mean = self.sd = None
        self.backbone_provenance = {}
        self.info = {}
        self.cutoff = 0.5  # on P(objective response) = P(CR) + P(PR)
        self.provenance = ""
        self.notice = ""
        self._extractor = None

    def extractor(self):
        if self._extractor is None:
            from ..imaging.deep_features import DeepFeatureExtractor
            self._extractor = DeepFeatureExtractor("resnet50", self.weights, self.device)
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
                ("inside", "window", self.weights) or "resnet50" not in settings.get("deep", ()):
            return None
        try:
            return np.concatenate(data.patches("inside_resnet50_ct_ap")).astype(np.float32)
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
        torch = _nn()
        data, y_case = self.labelled(data)
        counts = np.bincount(y_case, minlength=4)
        if (counts < 2).any():
            absent = [c for c, n in zip(MRECIST_CLASSES, counts) if n < 2]
            raise InputError(f"mRECIST training needs at least 2 cases of every class; too few: {', '.join(absent)}",
                             column="response", fix="add cases of those classes")
        features, x, groups = self.patch_features(data)
        y = y_case[groups]
        held = case_folds(y_case, 5, seed) == 0  # a fifth of the cases for early stopping and the report
        train_rows = ~held[groups]
        # Balance the classes by augmentation: flipped / rotated copies of the training patches of every class
        # with fewer than BALANCE_BELOW of the largest class's patches. A frozen network is not invariant to
        # flips and rotations, so its vectors of the copies differ from any real patch's: they are added only
        # where the imbalance is worth that noise (on the demo cohort, nearly balanced, they cost ~0.06 AUC).
        rng = np.random.default_rng(seed)
        patch_counts = np.bincount(y[train_rows], minlength=4)
        extra_x, extra_y = [], []
        for cls in range(4):
            members = np.flatnonzero(train_rows & (y == cls))
            need = patch_counts.max() - patch_counts[cls]
            if patch_counts[cls] >= BALANCE_BELOW * patch_counts.max() or not len(members):
                continue
            chosen = rng.choice(members, need, replace=need > len(members))
            variants = [np.rot90(x[i], k=int(rng.integers(1, 4)), axes=(1, 2)) if rng.uniform() < 0.5
                        else x[i][:, :, ::-1] for i in chosen]
            extra_x.append(self._features(np.stack(variants).astype(np.float32)))
            extra_y.append(np.full(need, cls))
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
        objective = (y_case <= 1).astype(int)
        p_or = p_case[:, 0] + p_case[:, 1]
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
        p = self.class_probabilities(data)
        return p[:, 0] + p[:, 1]

    def predict(self, data):
        p = self.class_probabilities(data)
        p_or = p[:, 0] + p[:, 1]
        out = pd.DataFrame({"case_id": data.case_ids, "task": self.task, "model": self.label,
                            **{f"p_{c}": p[:, i] for i, c in enumerate(MRECIST_CLASSES)},
                            "predicted_class": [MRECIST_CLASSES[i] for i in p.argmax(1)],
                            "score": p_or, "probability": p_or,
                            "risk_group": np.where(p_or >= self.cutoff, "objective response", "no objective response"),
                            "cutoff": self.cutoff, "provenance": self.provenance, "notice": self.notice})
        return out

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
        if weights == "imagenet" and not imagenet_checkpoint_cached("resnet50"):
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
