"""Gray Level Co-occurrence Matrix features (pyradiomics 3.0.1 ``RadiomicsGLCM``), batched in torch.

Matrix: for each angle (13 in 3D at distance 1), ``P[b, a, i, j]`` counts ROI voxels of gray level i whose
neighbour at +angle is in the ROI with gray level j (one ``bincount`` per angle over the whole batch); then
``P + P^T`` (symmetricalGLCM), optional distance weighting, empty angles dropped, each angle normalised.
Features are computed per angle and averaged over the kept angles, as pyradiomics does.
See texture.py for the conventions shared by the classes.
"""

from __future__ import annotations

import numpy as np
import torch

from TACEPredictLib import InputError

from . import texture as tx


def angle_weights(angles, norm, spacing, dtype, device):
    """pyradiomics' GLCM distance weights ``exp(-||d||^2)`` for ``weightingNorm`` (spacing in (sx, sy, sz)); 1
    without a norm."""
    lengths = tx.angle_lengths(angles, norm, spacing)
    weighted = norm in tx.WEIGHTING_NORMS
    return torch.tensor(np.exp(-lengths ** 2) if weighted else lengths, dtype=dtype, device=device)


def _angles(settings):
    return tx.generate_angles(settings.get("distances", [1]) or [1], settings.get("force2D", False),
                              settings.get("force2Ddimension", 0), bidirectional=False)


def counts(chunk, settings):
    """Raw (asymmetric) co-occurrence counts ``[nb, A, Ng, Ng]`` of a chunk, Ng = the batch's largest level.

    Per angle one pass writes ``key = (b * n1 + g(v)) * n1 + g(v + a)`` into a reused buffer and one
    ``bincount`` counts it; pairs with a voxel outside the ROI land in row or column 0, which is dropped.
    Voxels of the far margin keep their row-0 key from an earlier angle, harmlessly.
    """
    angles = _angles(settings)
    nb, n1 = chunk.nb, chunk.n1
    kdt = chunk.index_dtype(nb * n1 * n1)
    base = chunk.level().to(kdt) * n1
    gk = chunk.g32() if kdt == torch.int32 else chunk.g.to(kdt)
    key = chunk.buffer("key", kdt)
    key.copy_(base)
    out = torch.empty(nb, len(angles), n1 * n1, dtype=chunk.prep.dtype, device=chunk.device)
    for ai, a in enumerate(angles):
        bu, _ = tx.pair_views(base, a)
        _, gw = tx.pair_views(gk, a)
        ku, _ = tx.pair_views(key, a)
        torch.add(bu, gw, out=ku)
        cnt = torch.bincount(key.view(-1), minlength=nb * n1 * n1)
        out[:, ai] = cnt.view(nb, n1 * n1)
    return out.view(nb, len(angles), n1, n1)[:, :, 1:, 1:]


def merge(parts):
    return torch.cat(parts, dim=0)


def features(P, prep, names, settings, spacing=None):
    """GLCM features ``{name: tensor[B]}`` from the counts of the whole batch."""
    angles = _angles(settings)
    if settings.get("symmetricalGLCM", True):
        P = P + P.transpose(-1, -2)
    norm = settings.get("weightingNorm", None)
    if norm is not None:
        w = angle_weights(angles, norm, spacing, prep.dtype, prep.device)
        P = (P * w.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
    B, A, Ng, _ = P.shape
    out = {n: [] for n in names}
    for b0, b1 in tx.batch_chunks(B, A * Ng * Ng, tx.MAX_MATRIX_ELEMENTS):
        vals = _features(P[b0:b1], prep.ng[b0:b1], prep.present[b0:b1, 1:], names)
        for n in names:
            out[n].append(vals[n])
    return {n: torch.cat(v) for n, v in out.items()}


def _features(P, ng, present, names):
    eps = tx.EPS
    dt, dev = P.dtype, P.device
    B, A, Ng, _ = P.shape
    total = P.sum(dim=(2, 3))
    valid = total > 0                                # empty angles are dropped by pyradiomics
    P = P / torch.where(valid, total, torch.ones_like(total))[:, :, None, None]
    lv = torch.arange(1, Ng + 1, dtype=dt, device=dev)
    i = lv.view(1, 1, Ng, 1)
    j = lv.view(1, 1, 1, Ng)
    ngf = ng.to(dt).view(B, 1)
    px = P.sum(dim=3)                                # [B, A, Ng] marginal over j
    py = P.sum(dim=2)
    ux = (P * i).sum(dim=(2, 3))                     # [B, A]
    uy = (P * j).sum(dim=(2, 3))
    flat = P.reshape(B, A, Ng * Ng)
    ii = torch.arange(Ng, device=dev).view(Ng, 1)
    jj = torch.arange(Ng, device=dev).view(1, Ng)
    # p_{x+y}(k), k = i + j (index k - 2), and p_{x-y}(k), k = |i - j|
    pxAddy = torch.zeros(B, A, 2 * Ng - 1, dtype=dt, device=dev).index_add_(2, (ii + jj).flatten(), flat)
    pxSuby = torch.zeros(B, A, Ng, dtype=dt, device=dev).index_add_(2, (ii - jj).abs().flatten(), flat)
    kSum = torch.arange(2, 2 * Ng + 1, dtype=dt, device=dev)
    kDiff = torch.arange(0, Ng, dtype=dt, device=dev)
    HXY = -(P * torch.log2(P + eps)).sum(dim=(2, 3))
    mean = lambda v: tx.nanmean_angles(v, valid)  # noqa: E731
    cache = {}

    def shifted(power):
        return (P * (i + j - ux[:, :, None, None] - uy[:, :, None, None]) ** power).sum(dim=(2, 3))

    def diffavg():
        if "da" not in cache:
            cache["da"] = (kDiff * pxSuby).sum(dim=2)
        return cache["da"]

    def entropies():
        if "hx" not in cache:
            cache["hx"] = -(px * torch.log2(px + eps)).sum(dim=2)
            cache["hy"] = -(py * torch.log2(py + eps)).sum(dim=2)
            pxpy = px[:, :, :, None] * py[:, :, None, :]
            cache["hxy1"] = -(P * torch.log2(pxpy + eps)).sum(dim=(2, 3))
            cache["hxy2"] = -(pxpy * torch.log2(pxpy + eps)).sum(dim=(2, 3))
        return cache

    out = {}
    for name in names:
        if name == "Autocorrelation":
            v = mean((P * i * j).sum(dim=(2, 3)))
        elif name == "JointAverage":
            v = mean(ux)
        elif name == "ClusterProminence":
            v = mean(shifted(4))
        elif name == "ClusterShade":
            v = mean(shifted(3))
        elif name == "ClusterTendency":
            v = mean(shifted(2))
        elif name == "Contrast":
            v = mean((P * (i - j).abs() ** 2).sum(dim=(2, 3)))
        elif name == "Correlation":
            sigx = (P * (i - ux[:, :, None, None]) ** 2).sum(dim=(2, 3)) ** 0.5
            sigy = (P * (j - uy[:, :, None, None]) ** 2).sum(dim=(2, 3)) ** 0.5
            corm = (P * (i - ux[:, :, None, None]) * (j - uy[:, :, None, None])).sum(dim=(2, 3))
            corr = corm / (sigx * sigy + eps)
            corr = torch.where(sigx * sigy == 0, torch.ones_like(corr), corr)
            v = mean(corr)
        elif name == "DifferenceAverage":
            v = mean(diffavg())
        elif name == "DifferenceEntropy":
            v = mean(-(pxSuby * torch.log2(pxSuby + eps)).sum(dim=2))
        elif name == "DifferenceVariance":
            v = mean((pxSuby * (kDiff - diffavg()[:, :, None]) ** 2).sum(dim=2))
        elif name == "JointEnergy":
            v = mean((P ** 2).sum(dim=(2, 3)))
        elif name == "JointEntropy":
            v = mean(HXY)
        elif name == "Imc1":
            c = entropies()
            div = torch.fmax(c["hx"], c["hy"])
            imc1 = HXY - c["hxy1"]
            imc1 = torch.where(div != 0, imc1 / torch.where(div != 0, div, torch.ones_like(div)),
                               torch.zeros_like(imc1))
            v = mean(imc1)
        elif name == "Imc2":
            c = entropies()
            imc2 = (1 - torch.exp(-2 * (c["hxy2"] - HXY))) ** 0.5
            imc2 = torch.where(c["hxy2"] == HXY, torch.zeros_like(imc2), imc2)
            v = mean(imc2)
        elif name == "Idm":
            v = mean((pxSuby / (1 + kDiff ** 2)).sum(dim=2))
        elif name == "Idmn":
            v = mean((pxSuby / (1 + kDiff ** 2 / ngf[:, :, None] ** 2)).sum(dim=2))
        elif name == "Id":
            v = mean((pxSuby / (1 + kDiff)).sum(dim=2))
        elif name == "Idn":
            v = mean((pxSuby / (1 + kDiff / ngf[:, :, None])).sum(dim=2))
        elif name == "InverseVariance":
            v = mean((pxSuby[:, :, 1:] / kDiff[1:] ** 2).sum(dim=2))
        elif name == "MaximumProbability":
            v = mean(P.amax(dim=(2, 3)))
        elif name == "SumAverage":
            v = mean((kSum * pxAddy).sum(dim=2))
        elif name == "SumEntropy":
            v = mean(-(pxAddy * torch.log2(pxAddy + eps)).sum(dim=2))
        elif name == "SumSquares":
            v = mean((P * (i - ux[:, :, None, None]) ** 2).sum(dim=(2, 3)))
        elif name == "MCC":
            v = _mcc(P, px, py, valid, present)
        else:  # pragma: no cover - names are resolved against texture.FEATURES
            raise InputError(f"unknown glcm feature '{name}'")
        out[name] = v
    return out


def _mcc(P, px, py, valid, present):
    """sqrt of the second largest eigenvalue of Q(i, j) = sum_k p(i,k) p(j,k) / (p_x(i) p_y(k) + eps).

    pyradiomics takes ``numpy.linalg.eigvals`` of the non-symmetric Q, sorts (complex order: real part first)
    and takes the complex square root's real part; a ROI with a single gray level returns 1.
    """
    eps = tx.EPS
    B, A, Ng, _ = P.shape
    if Ng < 2:  # every image of the batch has a single gray level
        return torch.ones(B, dtype=P.dtype, device=P.device)
    Q = torch.matmul(P / (px[:, :, :, None] * py[:, :, None, :] + eps), P.transpose(-1, -2))
    Q = torch.where(valid[:, :, None, None], Q, torch.zeros_like(Q))
    ev = _eigvals(Q)                                           # complex [B, A, Ng]
    order = torch.argsort(ev.real, dim=-1)
    second = torch.gather(ev, -1, order[..., -2:-1]).squeeze(-1)
    mcc = torch.sqrt(second).real.to(P.dtype)
    v = tx.nanmean_angles(mcc, valid)
    flat_roi = present.sum(dim=1) < 2
    return torch.where(flat_roi, torch.ones_like(v), v)


def _eigvals(Q):
    """``torch.linalg.eigvals`` (CPU, CUDA); on a device without a general eigensolver (MPS, a CUDA build
    without one) the small ``[B, A, Ng, Ng]`` stack goes through the CPU and comes back."""
    try:
        return torch.linalg.eigvals(Q)
    except (RuntimeError, NotImplementedError):
        if Q.device.type == "cpu":
            raise
        ev = torch.linalg.eigvals(Q.cpu().double())
        return ev.to(torch.complex64 if Q.dtype == torch.float32 else ev.dtype).to(Q.device)
