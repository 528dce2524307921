"""One training loop for every network (``train_network``), the classification wrapper the patch networks use
(``fit_network``), and what the binary patch networks share (``PatchModel``: Model_D, the response CNN)."""

from __future__ import annotations

import abc
import contextlib

import numpy as np
import pandas as pd

from ..imaging.preprocess import window
from ..stats.splits import stratified_folds
from .base import FOLDS, ProbabilityModel, check_classes, labelled_cases
from .networks import arrays_to_state, state_to_arrays, torch_module


def normalise(hu):
    """HU to network input: the abdominal window mapped to zero mean, unit scale (as ``--normalisation
    window``)."""
    return (window(hu) - 0.5) / 0.25


def train_network(net, optimiser, loss_fn, train_batches, validate, *, epochs, select="loss", patience=None,
                  min_improvement=0.0, set_mode=None, autocast=None, on_epoch=None):
    """The epoch loop: mini-batch steps, a validation after each epoch, the kept epoch, early stopping.

    ``train_batches()`` yields ``(inputs tuple, target, rows)`` for one epoch; ``loss_fn(output, target)``;
    ``validate()`` returns the epoch's validation figures (``validation_loss``, ``validation_auc``...).
    ``select``: keep the epoch with the lowest validation loss (``loss``; an improvement must exceed
    ``min_improvement``), the highest ``validation_auc`` (``auc``), or the last epoch (``last``, the validation
    only reported). ``patience``: stop after that many epochs without a kept one. ``set_mode(training)``: how
    the network switches between training and inference (default ``net.train``). ``autocast``: a context
    manager factory for mixed precision. Returns ``(history, kept epoch (1-based), kept state or None)``.
    """
    set_mode = set_mode or net.train
    best = (np.inf, 0, None)
    history = []
    for epoch in range(epochs):
        set_mode(True)
        total, seen = 0.0, 0
        for inputs, target, rows in train_batches():
            optimiser.zero_grad()
            with (autocast() if autocast else contextlib.nullcontext()):
                output = net(*inputs)
            loss = loss_fn(output.float(), target)
            loss.backward()
            optimiser.step()
            total += loss.item() * rows
            seen += rows
        record = {"epoch": epoch + 1, "train_loss": total / seen, **validate()}
        history.append(record)
        criterion = -record["validation_auc"] if select == "auc" else record["validation_loss"]
        if on_epoch is not None:
            on_epoch(record)
        if select == "last":
            best = (criterion, epoch + 1, None)
        elif criterion < best[0] - min_improvement:
            best = (criterion, epoch + 1, {k: v.detach().clone() for k, v in net.state_dict().items()})
        elif patience and epoch + 1 - best[1] >= patience:
            break
    return history, best[1], best[2]


def fit_network(net, x, y, x_val, y_val, *, optimiser, epochs, batch_size, device, seed=0, augment=None,
                oversample_noise=None, patience=None, groups=None, per_group=None, select="loss", on_epoch=None):
    """Mini-batch classification training with cross-entropy (``train_network``); keeps the weights of the epoch
    ``select`` picks.

    ``x`` (N, C, H, W) float32 or (N, F) features; ``y`` int classes. ``augment``: a callable(batch, rng).
    ``oversample_noise``: (variance, class) to repeat that class until it matches the largest class, with
    Gaussian noise of that variance on every row (seed 004). ``groups`` / ``per_group``: each epoch draws at most
    ``per_group`` rows of every group (the slices of one case), so that a case's many similar slices do not
    make an epoch long; over the epochs every slice is seen. ``select``: the lowest validation loss, or
    (``auc``, two classes) the highest validation AUC, which oversampling does not bias (it shifts the
    predicted probabilities, and so the loss, but not their order), or (``last``) the last epoch. Returns the
    loss history and the kept epoch.
    """
    torch = torch_module()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net.to(device)

    def batches():
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
            yield (inputs,), torch.from_numpy(y[idx].astype(np.int64)).to(device), len(idx)

    def validate():
        p_val = predict_network(net, x_val, device, batch_size)
        record = {"validation_loss": float(-np.mean(np.log(np.clip(p_val[np.arange(len(y_val)), y_val],
                                                                    1e-7, 1.0))))}
        if select == "auc":
            from ..stats.metrics import roc_auc
            record["validation_auc"] = roc_auc(y_val, p_val[:, 1])
        return record

    history, kept, state = train_network(net, optimiser, torch.nn.CrossEntropyLoss(), batches, validate,
                                         epochs=epochs, select=select, patience=patience, on_epoch=on_epoch)
    if state is not None:
        net.load_state_dict(state)
    net.eval()
    return {"history": history, "best_epoch": kept}


def predict_network(net, x, device, batch_size=64):
    """Softmax probabilities (N, classes) in inference mode."""
    torch = torch_module()
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
    """Per-case (N_i, 1, H, W) HU arrays -> normalised (sum N_i, channels, H, W) float32 and each row's case
    (``channels`` 3: the CT repeated). Per-case (N_i, 2, H, W) arrays of CT (HU) and mask (0 / 1), the
    ``ct_mask`` patch set, become three channels whatever ``channels`` says: the windowed CT, the mask and the
    CT inside the mask, each [0, 1] map scaled as ``normalise`` scales the CT (seed 002's CT-and-mask input)."""
    groups = np.concatenate([np.full(len(p), i) for i, p in enumerate(patch_list)]).astype(int)
    x = np.concatenate(patch_list).astype(np.float32)
    if x.shape[1] == 2:
        ct, mask = window(x[:, :1]), (x[:, 1:] > 0.5).astype(np.float32)
        return ((np.concatenate([ct, mask, ct * mask], axis=1) - 0.5) / 0.25).astype(np.float32), groups
    x = normalise(x)
    if channels == 3:
        x = np.repeat(x, 3, axis=1)
    return x, groups


class PatchModel(ProbabilityModel):
    """What the binary patch networks share: labels, folds, the cut-off, bundles.

    The training cases are split into ``folds`` stratified folds; network k trains without fold k and is
    validated on it, for ``members`` networks. One network (``members = 1``) keeps a fifth of the cases aside;
    a full set (``members = folds``) is a cross-validation ensemble: every training case gets an out-of-fold
    score (for the cut-off, and for Model_CSD's weights) and a new case gets the mean of the members' scores.
    Subclasses define ``label_column``, ``outcome_names``, ``patch_set``, ``channels``, ``case_label(table)``,
    ``build()``, ``optimiser(net)`` and ``training_options()``. ``balance``: the classes of each network's
    training rows are balanced before training by ``Augmenter.balancing_copies`` (seed 002). The patch set is
    recorded in the bundle; a bundle without one reads ``legacy_patch_set``.
    """

    patch_set = ""
    legacy_patch_set = None
    channels = 1
    members = 1
    folds = FOLDS
    balance = False

    def __init__(self, epochs=30, width=8, device="auto"):
        super().__init__()
        self.epochs = int(epochs)
        self.width = int(width)
        self.device = device
        self.nets = []
        self.out_of_fold = None

    @abc.abstractmethod
    def case_label(self, table):
        """The case's 0 / 1 label from the manifest table (NA where unknown)."""

    @abc.abstractmethod
    def build(self):
        """A new, untrained network."""

    @abc.abstractmethod
    def optimiser(self, net):
        """The optimiser of ``net``'s parameters."""

    def training_options(self):
        return {}

    def labelled(self, data):
        return labelled_cases(data, self.case_label(data.table))

    def fit(self, data, seed=0):
        from ..imaging.deep_features import select_device
        from ..stats.metrics import roc_auc, youden_cutoff
        data, y_case = self.labelled(data)
        check_classes(y_case, column=self.label_column, names=self.outcome_names)
        x, groups = self.inputs(data)
        y = y_case[groups]
        fold = stratified_folds(y_case, self.folds, seed)
        device = select_device(self.device)
        self.nets, history, best_epochs = [], [], []
        out_of_fold = np.full(len(y_case), np.nan)
        copied = 0
        for k in range(self.members):
            held = fold == k
            train_rows, val_rows = ~held[groups], held[groups]
            torch_module().manual_seed(seed + k)  # the network's initial weights
            net = self.build()
            x_train, y_train, g_train = x[train_rows], y[train_rows], groups[train_rows]
            if self.balance:
                from ..imaging.sampling import Augmenter
                copies, copy_y, sources = Augmenter.balancing_copies(x_train, y_train,
                                                                     np.random.default_rng(seed + k), classes=2)
                x_train = np.concatenate([x_train, copies])
                y_train = np.concatenate([y_train, copy_y])
                g_train = np.concatenate([g_train, g_train[sources]])
                copied += len(copy_y)
            result = fit_network(net, x_train, y_train, x[val_rows], y[val_rows],
                                 optimiser=self.optimiser(net), epochs=self.epochs, device=device, seed=seed + k,
                                 groups=g_train, **self.training_options())
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
                     **({"balancing_copies": int(copied)} if self.balance else {}), "history": history}
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
        model.patch_set = params.get("patch_set") or cls.legacy_patch_set or cls.patch_set
        model.nets = [arrays_to_state(model.build(), tensors, cls._prefix(k)).eval()
                      for k in range(params.get("members", 1))]
        return model

    def tables(self):
        return {"training_history": pd.DataFrame(self.info.get("history", []))}
