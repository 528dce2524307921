"""Gray Level Dependence Matrix features (pyradiomics 3.0.1 ``RadiomicsGLDM``), batched in torch.

Matrix: ``P[b, i, d]`` counts ROI voxels of gray level i with d dependent neighbours, a neighbour (one of the 26
at distance 1, or the offsets of ``distances``) being dependent when it is in the ROI and ``|i - j| <= gldm_a``.
Each of the 13 forward offsets is compared once and credited to both voxels of the pair. ``Nz`` = number of ROI
voxels (pyradiomics' ``Nz``, equal to Np).
"""

from __future__ import annotations

import torch

from TACEPredictLib import InputError

from . import texture as tx


def _angles(settings):
    return tx.generate_angles(settings.get("distances", [1]) or [1], settings.get("force2D", False),
                              settings.get("force2Ddimension", 0), bidirectional=False)


def counts(chunk, settings):
    """Dependence counts ``[nb, Ng, Nd]`` of a chunk, Nd = 2 * len(angles) + 1 dependence values (0..2A)."""
    angles = _angles(settings)
    alpha = int(settings.get("gldm_a", 0))  # the C code takes an int
    nb, n1 = chunk.nb, chunk.n1
    nd = 2 * len(angles) + 1
    dep = torch.zeros(chunk.shape, dtype=torch.uint8 if nd <= 255 else torch.int16, device=chunk.device)
    for a in angles:
        if alpha == 0:
            cond = chunk.same(a)               # shared with GLRLM / GLSZM for distance 1
            cu, _ = tx.pair_views(cond, a)
        else:
            gu, gw = tx.pair_views(chunk.g, a)
            mu, mw = tx.pair_views(chunk.mask, a)
            cu = ((gu.to(torch.int32) - gw).abs() <= alpha) & mu & mw
        du, dw = tx.pair_views(dep, a)
        du += cu
        dw += cu
    kdt = chunk.index_dtype(nb * n1 * nd)
    key = chunk.buffer("key", kdt)
    torch.mul(chunk.level(), nd, out=key)
    key += dep
    cnt = torch.bincount(key.view(-1), minlength=nb * n1 * nd)
    return cnt.view(nb, n1, nd)[:, 1:, :].to(chunk.prep.dtype)


def merge(parts):
    return torch.cat(parts, dim=0)


def features(P, prep, names, settings, spacing=None):
    """GLDM features ``{name: tensor[B]}`` from the dependence counts of the whole batch."""
    dt, dev = P.dtype, P.device
    B, Ng, Nd = P.shape
    pd = P.sum(dim=1)                        # [B, Nd]
    pg = P.sum(dim=2)                        # [B, Ng]
    Nz = pd.sum(dim=1)
    Nz = torch.where(Nz == 0, torch.ones_like(Nz), Nz)
    iv = torch.arange(1, Ng + 1, dtype=dt, device=dev)
    jv = torch.arange(1, Nd + 1, dtype=dt, device=dev)
    i2 = (iv ** 2).view(1, Ng, 1)
    j2 = (jv ** 2).view(1, 1, Nd)
    out = {}
    for name in names:
        if name in tx.MATRIX_FEATURES:
            v = tx.matrix_feature(tx.MATRIX_FEATURES[name], P, pg, pd, Nz, iv, jv, i2, j2)
        else:  # pragma: no cover
            raise InputError(f"unknown gldm feature '{name}'")
        out[name] = v
    return out
