"""Neighbouring Gray Tone Difference Matrix features (pyradiomics 3.0.1 ``RadiomicsNGTDM``), batched in torch.

For every ROI voxel: the mean gray level of its neighbours that are in the ROI (26 at distance 1, the centre
excluded), and ``|g - mean|``; a voxel without a neighbour in the ROI counts with a difference of 0 (pyradiomics'
C code; IBSI would leave it out). ``n_i`` = voxels of level i, ``s_i`` = their summed differences. With the full
neighbourhood (``distances`` 1..d; in-plane only with ``force2D``) the neighbour sums are separable box sums
(two shifted adds per axis); a neighbourhood that skips a ring (``distances: [2]``) adds every offset. The sums
are exact integers, so ``sum / count`` is the same double as in the C code.
"""

from __future__ import annotations

import numpy as np
import torch

from TACEPredictLib import InputError

from . import texture as tx


def _box_sum(x, radius, dims, spare):
    """Sum over the box of ``radius`` along ``dims``, ping-ponging between ``x`` and ``spare`` (both clobbered).

    Only the voxels at least ``radius`` away from every face are exact (the ROI's, thanks to the margin).
    """
    for dim in dims:
        size = x.shape[dim]
        inner = spare.narrow(dim, radius, size - 2 * radius)
        inner.copy_(x.narrow(dim, radius, size - 2 * radius))
        for s in range(1, radius + 1):
            inner += x.narrow(dim, radius - s, size - 2 * radius)
            inner += x.narrow(dim, radius + s, size - 2 * radius)
        x, spare = spare, x
    return x


def neighbour_sums(chunk, distances, force2D, force2Ddimension):
    """(sum of the neighbours' gray levels [nb, Z, Y, X] int32, neighbours in the ROI [Z, Y, X] int32).

    Neighbours outside the ROI have level 0, so the gray-level sum needs no mask.
    """
    dist = sorted({int(d) for d in np.atleast_1d(distances)})
    dmax = dist[-1]
    dims = [d for d in range(3) if not (force2D and d == int(force2Ddimension))]
    sdt = torch.int32 if (chunk.n1 * (2 * dmax + 1) ** 3) < 2 ** 31 - 1 else torch.int64
    s = chunk.buffer("ngtdm_sum", sdt)
    s.copy_(chunk.g)
    m = chunk.mask.to(torch.int32)
    if dist == list(range(1, dmax + 1)):
        # Full box minus the centre: separable.
        s = _box_sum(s, dmax, [1 + d for d in dims], chunk.buffer("ngtdm_spare", sdt))
        s -= chunk.g
        c = _box_sum(m.clone(), dmax, dims, torch.empty_like(m)) - m
        return s, c
    angles = tx.generate_angles(dist, force2D, force2Ddimension, bidirectional=False)
    s.zero_()
    c = torch.zeros_like(m)
    for a in angles:
        su, sw = tx.pair_views(s, a)
        gu, gw = tx.pair_views(chunk.g, a)
        su += gw
        sw += gu
        cu, cw = tx.pair_views(c, a)
        mu, mw = tx.pair_views(m, a)
        cu += mw
        cw += mu
    return s, c


def counts(chunk, settings):
    """(n_i, s_i) of a chunk, ``[nb, 2, Ng]``: voxels per gray level and their summed absolute differences."""
    dt = chunk.prep.dtype
    nb, n1 = chunk.nb, chunk.n1
    nsum, ncnt = neighbour_sums(chunk, settings.get("distances", [1]) or [1], settings.get("force2D", False),
                                settings.get("force2Ddimension", 0))
    has = (ncnt > 0) & chunk.mask
    cnt = torch.where(has, ncnt, torch.ones_like(ncnt)).to(dt)
    diff = chunk.buffer("ngtdm_diff", dt)
    torch.div(nsum, cnt, out=diff)                 # same double as the C code's sum / count
    diff.neg_()
    diff += chunk.g
    diff.abs_()
    diff *= has                                    # no neighbour in the ROI: difference 0
    key = chunk.level().reshape(-1)
    n = torch.bincount(key, minlength=nb * n1).view(nb, n1).to(dt)
    s = torch.bincount(key, weights=diff.view(-1), minlength=nb * n1).view(nb, n1).to(dt)
    return torch.stack([n[:, 1:], s[:, 1:]], dim=1)


def merge(parts):
    return torch.cat(parts, dim=0)


def features(ns, prep, names, settings, spacing=None):
    """NGTDM features ``{name: tensor[B]}`` from (n_i, s_i) of the whole batch."""
    n, s = ns[:, 0], ns[:, 1]
    dt, dev = n.dtype, n.device
    B, Ng = n.shape
    present = n > 0
    Nvp = n.sum(dim=1)
    p = n / Nvp[:, None]
    iv = torch.arange(1, Ng + 1, dtype=dt, device=dev).expand(B, Ng)
    Ngp = present.sum(dim=1).to(dt)
    pair = present[:, :, None] & present[:, None, :]
    zero = torch.zeros((), dtype=dt, device=dev)
    out = {}
    for name in names:
        if name == "Coarseness":
            sc = (p * s).sum(dim=1)
            v = torch.where(sc != 0, 1 / torch.where(sc != 0, sc, torch.ones_like(sc)), torch.full_like(sc, 1e6))
        elif name == "Contrast":
            div = Ngp * (Ngp - 1)
            c = ((p[:, :, None] * p[:, None, :] * (iv[:, :, None] - iv[:, None, :]) ** 2).sum(dim=(1, 2))
                 * s.sum(dim=1) / Nvp)
            v = torch.where(div != 0, c / torch.where(div != 0, div, torch.ones_like(div)), zero)
        elif name == "Busyness":
            ip = iv * p
            absdiff = torch.where(pair, (ip[:, :, None] - ip[:, None, :]).abs(), zero).sum(dim=(1, 2))
            bus = (p * s).sum(dim=1)
            v = torch.where(absdiff != 0, bus / torch.where(absdiff != 0, absdiff, torch.ones_like(absdiff)),
                            zero)
        elif name == "Complexity":
            ps = p * s
            num = torch.where(pair, ps[:, :, None] + ps[:, None, :], zero)
            den = p[:, :, None] + p[:, None, :]
            den = torch.where(den == 0, torch.ones_like(den), den)
            v = ((iv[:, :, None] - iv[:, None, :]).abs() * num / den).sum(dim=(1, 2)) / Nvp
        elif name == "Strength":
            ssum = s.sum(dim=1)
            st = torch.where(pair, (p[:, :, None] + p[:, None, :]) * (iv[:, :, None] - iv[:, None, :]) ** 2,
                             zero).sum(dim=(1, 2))
            v = torch.where(ssum != 0, st / torch.where(ssum != 0, ssum, torch.ones_like(ssum)), zero)
        else:  # pragma: no cover
            raise InputError(f"unknown ngtdm feature '{name}'")
        out[name] = v
    return out
