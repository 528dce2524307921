"""Stratified splits, defined once: every hold-out split and every cross-validation fold of the project deals
each stratum's shuffled cases out from one seeded generator (``stratified_order``)."""

from __future__ import annotations

import numpy as np


def stratified_order(labels, seed=0, strata=None):
    """Each case's position within its stratum after a seeded shuffle, and the stratum's size.

    The strata are shuffled one after the other in the order of ``strata`` (default: sorted label values), from
    one generator: the order is part of what a seed reproduces.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    position = np.zeros(len(labels), int)
    size = np.zeros(len(labels), int)
    for value in (np.unique(labels) if strata is None else strata):
        members = np.flatnonzero(labels == value)
        rng.shuffle(members)
        position[members] = np.arange(len(members))
        size[members] = len(members)
    return position, size


def stratified_folds(labels, folds=5, seed=0, deal="blocks", strata=None):
    """Each case's fold (0 .. folds - 1), stratified by ``labels``: ``blocks`` gives each fold a contiguous run
    of a stratum's shuffled cases, ``cyclic`` deals them out in turn."""
    position, size = stratified_order(labels, seed, strata)
    if deal == "cyclic":
        return position % folds
    return position * folds // np.maximum(size, 1)


def stratified_holdout(labels, fraction=0.3, seed=0):
    """True for the held-out cases: the first ``round(fraction * n)`` shuffled cases of each stratum."""
    position, size = stratified_order(labels, seed)
    return position < np.round(fraction * size).astype(int)
