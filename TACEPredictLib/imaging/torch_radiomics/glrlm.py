"""Gray Level Run Length Matrix features (pyradiomics 3.0.1 ``RadiomicsGLRLM``), batched in torch.

Matrix: for each of the 13 angles, ``P[b, a, i, r]`` counts maximal runs of ROI voxels of gray level i and
length r along the angle (a voxel outside the ROI ends a run). Each voxel's 1-based position in its run is a
recurrence along the line, ``E(v) = 1 + [v - a continues the run] E(v - a)``, evaluated plane by plane (one
vectorised step per plane of the bounding box, all images at once). A run of length l holds positions 1..l, so
the histogram of (gray level, position) over all voxels counts the runs of length >= L, and P is its difference
along L: one dense ``bincount`` per angle. As pyradiomics (``multiElement`` in cmatrices.c), an angle along which
no line holds two ROI voxels is emptied; empty angles are dropped and the features are averaged over the others.

On the CPU (float64) the counts come from :func:`counts_numpy` instead: the runs read off the flattened batch with
numpy (one transposed copy per angle, one comparison of neighbours, one ``bincount`` over the runs rather than the
voxels), the same integer counts as the recurrence (``Testing/test_torch_radiomics_texture.py::
test_numpy_run_lengths_are_the_recurrence_run_lengths``). 13 images of a 95 mm lesion (72 x 120 x 107 voxels
cropped): 1.1 s against 2.0-2.6 s of CPU on one thread; over the 40 benchmark lesions GLRLM went from 1.4x to
2.9x pyradiomics' speed. CUDA and MPS keep the recurrence (one code path for the devices; numpy is host-only).
"""

from __future__ import annotations

import numpy as np
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


def _flat_stride(a, shape):
    """Offset of ``v + a`` from ``v`` in the C-order flat index of a [Z, Y, X] volume (> 0 for a normalised a)."""
    _, _, a = _axis_layout(a)
    return a[0] * shape[1] * shape[2] + a[1] * shape[2] + a[2]


def counts_numpy(chunk, angles, R):
    """The CPU fast path: run lengths read off the flattened batch, ``[nb, A, Ng, R]`` counts as :func:`counts`.

    In the C-order flattened chunk (images one after the other, each with its empty margin), the neighbour
    ``v + a`` of a ROI voxel is ``p + s`` with a fixed stride s (the margin keeps it inside its own image).
    Reshaped as ``[N / s, s]`` and transposed, each column ``p = r, r + s, r + 2s, ...`` becomes one contiguous
    sequence that visits every line along ``a`` in turn, lines separated by margin (0) voxels: the runs are then
    the maximal stretches of one non-zero value, found by one comparison of neighbours, and their lengths are
    differences of the positions where the value changes. Values are ``b * (Ng + 1) + g`` inside the ROI, 0
    outside, so one ``bincount`` over the runs (not the voxels) gives every image's matrix. Integer counts, so
    the matrix is the recurrence's exactly (a test compares them).
    """
    nb, n1 = chunk.nb, chunk.n1
    top = nb * n1
    dt = np.int16 if top < 2 ** 15 - 1 else np.int32
    kdt = np.int32 if top * (R + 1) < 2 ** 31 - 1 else np.int64
    g = chunk.g.numpy()                        # 0 outside the ROI and in the margin
    lev = g.astype(dt)
    for i in range(1, nb):
        lev[i] += (g[i] > 0).astype(dt) * dt(i * n1)
    lev = lev.reshape(-1)
    N = lev.size
    shape = chunk.shape[1:]
    out = np.empty((nb, len(angles), n1 - 1, R), dtype=np.float64)
    buf = None
    for ai, a in enumerate(angles):
        s = _flat_stride(a, shape)
        if s == 1:
            h = lev
        else:
            M = -(-N // s)
            if M * s != N:
                if buf is None:
                    buf = np.zeros(N + max(shape[0] * shape[1] * shape[2], 1), dtype=dt)
                buf[:N] = lev
                buf[N:M * s] = 0
                src = buf[:M * s]
            else:
                src = lev
            h = np.ascontiguousarray(src.reshape(M, s).T).reshape(-1)
        # Segments of one value start at 0 (a margin voxel) and after every change; each run is one segment.
        change = np.flatnonzero(h[1:] != h[:-1])
        change += 1
        value = h[change].astype(kdt)
        length = np.empty(change.size, dtype=kdt)
        np.subtract(change[1:], change[:-1], out=length[:-1], casting="unsafe")
        length[-1:] = h.size - change[-1:]
        np.minimum(length, R, out=length)      # only stretches outside the ROI (value 0, dropped) are longer
        value *= R + 1
        value += length
        cnt = np.bincount(value, minlength=top * (R + 1)).reshape(nb, n1, R + 1)
        out[:, ai] = cnt[:, 1:, 1:]
    return torch.from_numpy(out)


#: Use :func:`counts_numpy` on the CPU (float64 engine). The plane-by-plane recurrence stays the path of every
#: other device; the tests compare the two matrices.
CPU_NUMPY = True


def counts(chunk, settings):
    """Run counts ``[nb, A, Ng, R]`` of a chunk, R = the longest possible run of the cropped volume.

    Every voxel adds one to ``H[g, E(v)]``; a run of length l adds one to ``H[g, 1..l]``, so H counts the runs of
    length >= L and ``P[g, L] = H[g, L] - H[g, L + 1]``: one dense ``bincount`` per angle, no selection of the
    run starts.
    """
    angles = _angles(settings)
    nb, n1 = chunk.nb, chunk.n1
    R = max(chunk.shape[1:])
    if CPU_NUMPY and chunk.device.type == "cpu" and chunk.prep.dtype == torch.float64:
        P = counts_numpy(chunk, angles, R)
        keep = chunk.prep.cache.get(("glrlm_multi_element", tuple(angles)))
        if keep is None:                      # the mask is the batch's: once per batch, not per chunk
            keep = multi_element(chunk.mask, angles).to(P.dtype)
            chunk.prep.cache[("glrlm_multi_element", tuple(angles))] = keep
        return P * keep.view(1, -1, 1, 1)
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
