"""Gray Level Run Length Matrix features (pyradiomics 3.0.1 ``RadiomicsGLRLM``), batched in torch.

Matrix: for each of the 13 angles, ``P[b, a, i, r]`` counts maximal runs of ROI voxels of gray level i and
length r along the angle (a voxel outside the ROI ends a run). Each voxel's 1-based position in its run is a
recurrence along the line, ``E(v) = 1 + [v - a continues the run] E(v - a)``, evaluated plane by plane (one
vectorised step per plane of the bounding box, all images at once). A run of length l holds positions 1..l, so
the histogram of (gray level, position) over all voxels counts the runs of length >= L, and P is its difference
along L: one dense ``bincount`` per angle. As pyradiomics (``multiElement`` in cmatrices.c), an angle along which
no line holds two ROI voxels is emptied; empty angles are dropped and the features are averaged over the others.
"""

from __future__ import annotations

import torch

from TACEPredictLib import InputError

from . import texture as tx


def _axis_layout(a):
    """Line axis k (first non-zero offset, made +1) and the offsets in the two other axes."""
    a = list(a)
    k = next(d for d in range(3) if a[d] != 0)
    if a[k] < 0:                     # a run is the same read either way
        a = [-x for x in a]
    other = [a[d] for d in range(3) if d != k]
    return k, other, tuple(a)


def _shift(size, o):
    return slice(1 + o, size - 1 + o)


def run_position(chunk, a, out):
    """Write into ``out`` (integer [nb, Z, Y, X]) each ROI voxel's 1-based position in its run along ``a``.

    ``E(v) = 1 + E(v - a)`` when v - a is in the ROI with the same gray level, else 1 (0 outside the ROI): one
    vectorised step per plane along the line axis. The margin planes are never written and must be 0.
    """
    k, (o1, o2), a = _axis_layout(a)
    same = chunk.same(a).movedim(1 + k, 1)        # same[v] = (v, v + a) continue a run
    E = out.movedim(1 + k, 1)
    mk = chunk.mask.movedim(k, 0).to(out.dtype)
    T, S1, S2 = E.shape[1:]
    p1, p2 = _shift(S1, -o1), _shift(S2, -o2)      # v - a' in the previous plane
    for t in range(1, T - 1):
        cur = E[:, t, 1:-1, 1:-1]
        torch.mul(same[:, t - 1, p1, p2], E[:, t - 1, p1, p2], out=cur)
        cur += mk[t, 1:-1, 1:-1]
    return out


def multi_element(mask, angles):
    """Per angle: does any line through the ROI hold two ROI voxels (pyradiomics' ``multiElement``)?

    Two adjacent ROI voxels along the angle settle it at once (the usual case); only otherwise are the ROI voxels
    counted along every line (they may be apart, as in a one-voxel-thick ROI seen edge-on).
    """
    adjacent = []
    for a in angles:
        mu, mw = tx.pair_views(mask, a)
        adjacent.append((mu & mw).any())
    adjacent = torch.stack(adjacent)
    if bool(adjacent.all()):
        return adjacent
    out = []
    for a in angles:
        k, (o1, o2), _ = _axis_layout(a)
        mk = mask.movedim(k, 0).to(torch.int32)
        T, S1, S2 = mk.shape
        p1, p2 = _shift(S1, -o1), _shift(S2, -o2)
        C = torch.zeros_like(mk)
        for t in range(1, T - 1):
            C[t, 1:-1, 1:-1] = mk[t, 1:-1, 1:-1] + C[t - 1, p1, p2]
        out.append((C >= 2).any())
    return torch.stack(out)


def _angles(settings):
    return tx.generate_angles([1], settings.get("force2D", False), settings.get("force2Ddimension", 0),
                              bidirectional=False)


def counts(chunk, settings):
    """Run counts ``[nb, A, Ng, R]`` of a chunk, R = the longest possible run of the cropped volume.

    Every voxel adds one to ``H[g, E(v)]``; a run of length l adds one to ``H[g, 1..l]``, so H counts the runs of
    length >= L and ``P[g, L] = H[g, L] - H[g, L + 1]``: one dense ``bincount`` per angle, no selection of the
    run starts.
    """
    angles = _angles(settings)
    nb, n1 = chunk.nb, chunk.n1
    R = max(chunk.shape[1:])
    kdt = chunk.index_dtype(nb * n1 * (R + 1))
    row = chunk.level().to(kdt) * (R + 1)
    E = chunk.buffer("run_position", kdt)      # same type as the key: the add stays single-type
    E.zero_()
    key = chunk.buffer("key", kdt)
    H = torch.empty(nb, len(angles), n1, R + 2, dtype=chunk.prep.dtype, device=chunk.device)
    H[..., R + 1] = 0
    for ai, a in enumerate(angles):
        run_position(chunk, a, E)
        torch.add(row, E, out=key)
        cnt = torch.bincount(key.view(-1), minlength=nb * n1 * (R + 1))
        H[:, ai, :, :R + 1] = cnt.view(nb, n1, R + 1)
    P = H[:, :, 1:, 1:R + 1] - H[:, :, 1:, 2:R + 2]
    keep = multi_element(chunk.mask, angles).to(P.dtype)
    return P * keep.view(1, -1, 1, 1)


def merge(parts):
    return torch.cat(parts, dim=0)


def angle_weights(angles, norm, spacing, dtype, device):
    """pyradiomics' GLRLM weights: the angle's length under ``weightingNorm`` (spacing in (sx, sy, sz))."""
    return torch.tensor(tx.angle_lengths(angles, norm, spacing), dtype=dtype, device=device)


def features(P, prep, names, settings, spacing=None):
    """GLRLM features ``{name: tensor[B]}`` from the run counts of the whole batch."""
    norm = settings.get("weightingNorm", None)
    if norm is not None:
        w = angle_weights(_angles(settings), norm, spacing, prep.dtype, prep.device)
        P = (P * w.view(1, -1, 1, 1)).sum(dim=1, keepdim=True)
    B, A, Ng, R = P.shape
    out = {n: [] for n in names}
    for b0, b1 in tx.batch_chunks(B, A * Ng * R, tx.MAX_MATRIX_ELEMENTS):
        vals = _features(P[b0:b1], names)
        for n in names:
            out[n].append(vals[n])
    return {n: torch.cat(v) for n, v in out.items()}


def _features(P, names):
    dt, dev = P.dtype, P.device
    B, A, Ng, R = P.shape
    Nr = P.sum(dim=(2, 3))                      # [B, A]
    valid = Nr > 0
    Nr = torch.where(valid, Nr, torch.ones_like(Nr))
    pr = P.sum(dim=2)                           # [B, A, R]
    pg = P.sum(dim=3)                           # [B, A, Ng]
    iv = torch.arange(1, Ng + 1, dtype=dt, device=dev)
    jv = torch.arange(1, R + 1, dtype=dt, device=dev)
    i2 = (iv ** 2).view(1, 1, Ng, 1)
    j2 = (jv ** 2).view(1, 1, 1, R)
    mean = lambda v: tx.nanmean_angles(v, valid)  # noqa: E731
    out = {}
    for name in names:
        if name in tx.MATRIX_FEATURES:
            v = tx.matrix_feature(tx.MATRIX_FEATURES[name], P, pg, pr, Nr, iv, jv, i2, j2)
        elif name == "RunPercentage":
            v = Nr / (pr * jv).sum(dim=2)
        else:  # pragma: no cover
            raise InputError(f"unknown glrlm feature '{name}'")
        out[name] = mean(v)
    return out
