"""Texture features of the torch radiomics engine: GLCM, GLRLM, GLSZM, GLDM and NGTDM, as pyradiomics 3.0.1.

Entry point: :func:`texture_features`. Every filtered image of a case (original, 8 wavelet, 4 LoG: B = 13) goes
through each class as one batch: ``binned`` is ``[B, Z, Y, X]`` (gray level 1..Ng_b inside the ROI, 0 outside),
all images share one ROI mask ``[Z, Y, X]``. Each image keeps its own number of gray levels: the matrices are
padded to the batch's largest Ng and the absent levels carry zero counts, which is what pyradiomics' removal of
empty gray levels amounts to (the few places where a zero row would still change a value - NGTDM's pair sums,
GLCM's MCC on a flat ROI - are masked explicitly).

The matrices follow pyradiomics' C code (``radiomics/src/cmatrices.c``) rather than the textbook definitions:

- neighbours outside the image or outside the ROI do not exist (no padding value is ever compared);
- angles are generated in pyradiomics' order (offsets of infinity norm ``distances``, the first half of them
  for GLCM and GLRLM, all of them for GLSZM, GLDM and NGTDM, none moving along ``force2Ddimension`` when
  ``force2D`` is set);
- GLCM: counts ``P[center, neighbour]`` per angle, symmetrised (``symmetricalGLCM``), empty angles dropped,
  each angle normalised and every feature averaged over the angles (``numpy.nanmean``) unless ``weightingNorm``
  sums the weighted angles first;
- GLRLM: runs of one gray level inside the ROI along each of the 13 angles; an angle along which no line holds
  two ROI voxels is dropped (pyradiomics' ``multiElement`` rule), features averaged over the angles;
- GLSZM: 26-connected zones (8-connected in-plane with ``force2D``) of one gray level;
- GLDM: a neighbour is dependent when ``|i - j| <= gldm_a``; ``Nz`` is the number of ROI voxels;
- NGTDM: mean of the neighbours that are in the ROI, excluding the centre; a voxel without any such neighbour
  counts with a difference of 0 (as pyradiomics, not as IBSI);
- ``eps = numpy.spacing(1)`` inside every log2, the same zero-division rules (Correlation 1 on a flat angle,
  Imc1 0, Imc2 0 when HXY2 == HXY, MCC 1 for a single gray level, Coarseness 1e6, ...).

Deprecated features (GLCM Dissimilarity, Homogeneity1, Homogeneity2, SumVariance; GLDM
GrayLevelNonUniformityNormalized, DependencePercentage) are never computed by default; naming one returns no
value for it, exactly as pyradiomics 3.0.1, whose deprecated texture getters raise ``DeprecationWarning``
and leave the feature out of its result.

Devices: one code path on CPU, CUDA and MPS; float64 everywhere except on MPS (no float64 there: float32, so
expect differences around 1e-6 relative; not measured, no MPS machine here). No CPU-only op and no ``.item()``
inside the loops over voxels: the loops are over the 13 directions, over planes of a run-length recurrence
(GLRLM) and over the few union-find rounds of the zone labelling (GLSZM), each step vectorised over the whole
batch. Two host-only fast paths replace those two loops on the CPU, with the same integer counts (tested):
GLRLM's runs read off the flattened batch with numpy (``glrlm.counts_numpy``) and GLSZM's zones by
``scipy.ndimage.label`` (``glszm.counts_scipy``). GLCM's MCC uses ``torch.linalg.eigvals`` (CPU and CUDA; a device without it hands the small
``[B, 13, Ng, Ng]`` stack to the CPU). Memory: the batch is cropped to the ROI's bounding box plus a margin, and
images are processed in chunks of at most :data:`MAX_CHUNK_ELEMENTS` voxels (about 60 bytes of scratch per
voxel): 13 images of a 10 cm ball at 1 mm (523,155 ROI voxels) took 470 MB of peak memory on the CPU.

Parity with pyradiomics 3.0.1 (``Testing/test_torch_radiomics_texture.py``): every feature within 1e-6 relative
(1e-9 absolute near 0) on pyradiomics' brain1/breast1 cases, the IBSI digital phantom, a region of the IBSI CT
phantom, generated lesions, batches and thin or degenerate ROIs. Measured largest differences: 1.0e-12 relative
for GLCM ClusterShade (values near 0; 13 generated lesions of 33,371 voxels), 1.3e-13 for GLSZM's sums over
zones (523,155 voxels: the sums run over zones instead of matrix cells), below 1e-13 for every other feature.

Speed (CPU time, one thread, against the five pyradiomics classes on the same 13 images, their own binning
included; a shared 2-core machine under a load of 10-18, so ratios are more telling than seconds): 4,139 ROI
voxels 0.18 s against 0.44 s (2.5x); 33,371 voxels 0.76 s against 1.83 s (2.4x); 523,155 voxels 7.6 s against
17.9 s (2.4x; GLSZM is the slowest class, 3.9 s, level with pyradiomics' C region growing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from TACEPredictLib import InputError

logger = logging.getLogger(__name__)

#: Largest number of voxels (cropped volume x images) handled at once by the dense matrix code; images of a
#: larger batch are processed in chunks; about 60 bytes of scratch per voxel (1 GB at 2**24).
MAX_CHUNK_ELEMENTS = 2 ** 24
#: On the CPU, chunks are smaller still: the dense passes then run on arrays that stay in the caches (the 13
#: images of a 10 cm lesion one or two at a time instead of all 13: the five classes 1.4x faster on one thread).
#: Chunking never changes a value (the counts of the chunks are concatenated before any feature).
CPU_CHUNK_ELEMENTS = 2 ** 21
#: Largest matrix (images x angles x rows x columns) on which features are computed at once.
MAX_MATRIX_ELEMENTS = 2 ** 24

#: numpy.spacing(1), pyradiomics' ``eps`` inside the logs and divisions.
EPS = float(np.spacing(1))

# Feature names per class, in pyradiomics' order (alphabetical, as inspect.getmembers lists the getters), with
# pyradiomics' deprecation flag.
FEATURES = {
    "glcm": {
        "Autocorrelation": False, "ClusterProminence": False, "ClusterShade": False, "ClusterTendency": False,
        "Contrast": False, "Correlation": False, "DifferenceAverage": False, "DifferenceEntropy": False,
        "DifferenceVariance": False, "Dissimilarity": True, "Homogeneity1": True, "Homogeneity2": True,
        "Id": False, "Idm": False, "Idmn": False, "Idn": False, "Imc1": False, "Imc2": False,
        "InverseVariance": False, "JointAverage": False, "JointEnergy": False, "JointEntropy": False,
        "MCC": False, "MaximumProbability": False, "SumAverage": False, "SumEntropy": False,
        "SumSquares": False, "SumVariance": True,
    },
    "glrlm": {
        "GrayLevelNonUniformity": False, "GrayLevelNonUniformityNormalized": False, "GrayLevelVariance": False,
        "HighGrayLevelRunEmphasis": False, "LongRunEmphasis": False, "LongRunHighGrayLevelEmphasis": False,
        "LongRunLowGrayLevelEmphasis": False, "LowGrayLevelRunEmphasis": False, "RunEntropy": False,
        "RunLengthNonUniformity": False, "RunLengthNonUniformityNormalized": False, "RunPercentage": False,
        "RunVariance": False, "ShortRunEmphasis": False, "ShortRunHighGrayLevelEmphasis": False,
        "ShortRunLowGrayLevelEmphasis": False,
    },
    "glszm": {
        "GrayLevelNonUniformity": False, "GrayLevelNonUniformityNormalized": False, "GrayLevelVariance": False,
        "HighGrayLevelZoneEmphasis": False, "LargeAreaEmphasis": False, "LargeAreaHighGrayLevelEmphasis": False,
        "LargeAreaLowGrayLevelEmphasis": False, "LowGrayLevelZoneEmphasis": False, "SizeZoneNonUniformity": False,
        "SizeZoneNonUniformityNormalized": False, "SmallAreaEmphasis": False,
        "SmallAreaHighGrayLevelEmphasis": False, "SmallAreaLowGrayLevelEmphasis": False, "ZoneEntropy": False,
        "ZonePercentage": False, "ZoneVariance": False,
    },
    "gldm": {
        "DependenceEntropy": False, "DependenceNonUniformity": False, "DependenceNonUniformityNormalized": False,
        "DependencePercentage": True, "DependenceVariance": False, "GrayLevelNonUniformity": False,
        "GrayLevelNonUniformityNormalized": True, "GrayLevelVariance": False, "HighGrayLevelEmphasis": False,
        "LargeDependenceEmphasis": False, "LargeDependenceHighGrayLevelEmphasis": False,
        "LargeDependenceLowGrayLevelEmphasis": False, "LowGrayLevelEmphasis": False,
        "SmallDependenceEmphasis": False, "SmallDependenceHighGrayLevelEmphasis": False,
        "SmallDependenceLowGrayLevelEmphasis": False,
    },
    "ngtdm": {"Busyness": False, "Coarseness": False, "Complexity": False, "Contrast": False, "Strength": False},
}

TEXTURE_CLASSES = tuple(FEATURES)


@dataclass
class Prepared:
    """The batch as every class uses it: cropped to the ROI's bounding box plus ``pad`` empty voxels."""

    g: torch.Tensor          # int32 [B, Z, Y, X], gray level inside the ROI, 0 outside (also in the margin)
    mask: torch.Tensor       # bool [Z, Y, X]
    ng: torch.Tensor         # int64 [B], largest gray level in the ROI per image (pyradiomics' Ng)
    ngmax: int               # largest Ng of the batch (matrices are padded to it)
    present: torch.Tensor    # bool [B, ngmax + 1], gray level present in the ROI (column 0 unused)
    n_roi: int               # number of ROI voxels
    dtype: torch.dtype       # float64 (float32 on MPS)
    pad: int
    cache: dict = field(default_factory=dict)   # what a class computes once per batch (e.g. from the mask)

    @property
    def batch(self):
        return self.g.shape[0]

    @property
    def device(self):
        return self.g.device


WEIGHTING_NORMS = ("infinity", "euclidean", "manhattan")


def angle_lengths(angles, norm, spacing):
    """Each angle's length in mm under pyradiomics' ``weightingNorm`` (GLRLM weights by it, GLCM by
    ``exp(-length^2)``); 1 for ``no_weighting`` and unknown norms, which pyradiomics warns about and ignores."""
    if norm in WEIGHTING_NORMS and spacing is None:
        raise InputError(f"weightingNorm '{norm}' needs the voxel spacing", column="setting.weightingNorm",
                         fix="pass spacing=(sx, sy, sz) to texture_features")
    sp = np.asarray(spacing, dtype=float)[::-1] if spacing is not None else np.ones(3)
    lengths = []
    for a in angles:
        d = np.abs(np.asarray(a, dtype=float)) * sp
        lengths.append({"infinity": max(d), "euclidean": np.sqrt(np.sum(d ** 2)),
                        "manhattan": np.sum(d)}.get(norm, 1.0))
    return np.asarray(lengths, dtype=float)

def float_dtype(device):
    """float64, except on Apple MPS which has none (float32 there, ~1e-6 relative error)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def resolve_names(cls, names):
    """Feature names to compute for ``cls``: None or empty = every non-deprecated feature (pyradiomics' order).

    Unknown names raise InputError (pyradiomics raises LookupError); deprecated names are accepted and dropped
    with a warning, because pyradiomics 3.0.1 computes no value for them either.
    """
    known = FEATURES[cls]
    if not names:
        return [n for n, dep in known.items() if not dep]
    if isinstance(names, str):
        names = [names]
    out = []
    for name in names:
        if name not in known:
            raise InputError(f"unknown {cls} feature '{name}'", column=f"featureClass.{cls}",
                             fix=f"use one of {', '.join(known)}")
        if known[name]:
            logger.warning("%s feature %s is deprecated in pyradiomics 3.0.1, which computes no value for it; "
                           "left out", cls, name)
            continue
        if name not in out:
            out.append(name)
    return out


def generate_angles(distances=(1,), force2D=False, force2Ddimension=0, bidirectional=False, ndim=3):
    """Offsets (dz, dy, dx) in pyradiomics' order (``build_angles`` in cmatrices.c).

    Offsets of infinity norm in ``distances``, the last dimension varying fastest from +d to -d; without
    ``bidirectional`` only the first half (first non-zero offset positive). Angles that pyradiomics skips
    because an offset reaches the image size are empty anyway, so they are kept here (their matrices are empty
    and dropped the same way).
    """
    distances = [int(d) for d in np.atleast_1d(np.asarray(distances))]
    if not distances or min(distances) < 1:
        raise InputError(f"distances must be positive integers, got {distances}", column="setting.distances",
                         fix="use e.g. distances: [1]")
    dmax = max(distances)
    n_off = 2 * dmax + 1
    skip = int(force2Ddimension) if force2D else -1
    out = []
    for idx in range(n_off ** ndim):
        off = []
        for dim in range(ndim):
            stride = n_off ** (ndim - 1 - dim)
            off.append(dmax - (idx // stride) % n_off)
        if skip >= 0 and off[skip] != 0:
            continue
        norm = max(abs(o) for o in off)
        if norm == 0 or norm not in distances:
            continue
        out.append(tuple(off))
    if not bidirectional:
        out = out[: len(out) // 2]
    return out


def pair_views(x, off):
    """Views (u, w) of ``x [..., Z, Y, X]`` over the overlap where w = x[v + off] and u = x[v]."""
    su, sw = [], []
    for d, size in zip(off, x.shape[-3:]):
        su.append(slice(max(0, -d), size - max(0, d)))
        sw.append(slice(max(0, d), size - max(0, -d)))
    return x[(Ellipsis, *su)], x[(Ellipsis, *sw)]


def batch_chunks(batch, per_image, limit=None):
    """Ranges (b0, b1) of images whose cost (``per_image`` elements each) stays under ``limit``."""
    limit = MAX_CHUNK_ELEMENTS if limit is None else limit
    step = max(1, int(limit // max(1, per_image)))
    return [(b0, min(batch, b0 + step)) for b0 in range(0, batch, step)]


def nanmean_angles(values, valid):
    """pyradiomics' ``numpy.nanmean`` over the angles that were not dropped: ``values [B, A]``, ``valid [B, A]``."""
    values = torch.where(valid, values, torch.full_like(values, float("nan")))
    return torch.nanmean(values, dim=1)


# Features GLRLM and GLDM define alike on their matrix P[..., i, j] (gray level i; run length or dependence j):
# each one's name in either class -> its formula in ``matrix_feature`` ("_normalized": divided by N twice).
MATRIX_FEATURES = {
    "ShortRunEmphasis": "small", "SmallDependenceEmphasis": "small",
    "LongRunEmphasis": "large", "LargeDependenceEmphasis": "large",
    "GrayLevelNonUniformity": "gray_nonuniformity", "GrayLevelNonUniformityNormalized": "gray_nonuniformity_normalized",
    "RunLengthNonUniformity": "nonuniformity", "DependenceNonUniformity": "nonuniformity",
    "RunLengthNonUniformityNormalized": "nonuniformity_normalized",
    "DependenceNonUniformityNormalized": "nonuniformity_normalized",
    "GrayLevelVariance": "gray_variance", "RunVariance": "variance", "DependenceVariance": "variance",
    "RunEntropy": "entropy", "DependenceEntropy": "entropy",
    "LowGrayLevelRunEmphasis": "low_gray", "LowGrayLevelEmphasis": "low_gray",
    "HighGrayLevelRunEmphasis": "high_gray", "HighGrayLevelEmphasis": "high_gray",
    "ShortRunLowGrayLevelEmphasis": "small_low", "SmallDependenceLowGrayLevelEmphasis": "small_low",
    "ShortRunHighGrayLevelEmphasis": "small_high", "SmallDependenceHighGrayLevelEmphasis": "small_high",
    "LongRunLowGrayLevelEmphasis": "large_low", "LargeDependenceLowGrayLevelEmphasis": "large_low",
    "LongRunHighGrayLevelEmphasis": "large_high", "LargeDependenceHighGrayLevelEmphasis": "large_high",
}


def matrix_feature(formula, P, pg, pj, N, iv, jv, i2, j2):
    """One ``MATRIX_FEATURES`` formula (pyradiomics' definitions) on ``P [..., Ng, Nj]``: ``pg`` / ``pj`` its
    sums over j / over i, ``N`` its total (1 where P is empty), ``iv`` / ``jv`` the 1-based values of i and j,
    ``i2`` / ``j2`` their squares shaped to broadcast against P. Returns a tensor of P's leading shape."""
    if formula in ("gray_variance", "variance"):
        marginal, values = (pg, iv) if formula == "gray_variance" else (pj, jv)
        p = marginal / N[..., None]
        u = (p * values).sum(dim=-1, keepdim=True)
        return (p * (values - u) ** 2).sum(dim=-1)
    if formula == "entropy":
        p = P / N[..., None, None]
        return -(p * torch.log2(p + EPS)).sum(dim=(-2, -1))
    base = formula.removesuffix("_normalized")
    if base in ("small_low", "small_high", "large_low", "large_high"):
        terms = {"small_low": lambda: P / (i2 * j2), "small_high": lambda: P * i2 / j2,
                 "large_low": lambda: P * j2 / i2, "large_high": lambda: P * (j2 * i2)}[base]()
        total = terms.sum(dim=(-2, -1))
    else:
        terms = {"small": lambda: pj / jv ** 2, "large": lambda: pj * jv ** 2, "nonuniformity": lambda: pj ** 2,
                 "low_gray": lambda: pg / iv ** 2, "high_gray": lambda: pg * iv ** 2,
                 "gray_nonuniformity": lambda: pg ** 2}[base]()
        total = terms.sum(dim=-1)
    return total / N ** 2 if formula != base else total / N


def prepare(binned, mask, pad=1):
    """Validate and crop the batch; see :class:`Prepared`."""
    if not isinstance(binned, torch.Tensor) or not isinstance(mask, torch.Tensor):
        raise InputError("binned and mask must be torch tensors", fix="pass torch.LongTensor [B,Z,Y,X] and "
                         "torch.BoolTensor [Z,Y,X]")
    if binned.dim() == 3:
        binned = binned.unsqueeze(0)
    if binned.dim() != 4 or mask.dim() != 3 or tuple(binned.shape[1:]) != tuple(mask.shape):
        raise InputError(f"binned {tuple(binned.shape)} and mask {tuple(mask.shape)} do not match",
                         fix="binned is [B, Z, Y, X] and mask is [Z, Y, X] on the same grid")
    if binned.dtype.is_floating_point or binned.dtype.is_complex or binned.dtype == torch.bool:
        raise InputError(f"binned must hold integer gray levels, got {binned.dtype}",
                         fix="discretise first (binWidth / binCount)")
    if binned.shape[0] == 0:
        raise InputError("the batch holds no image", fix="pass at least one image")
    device = binned.device
    mask = mask.to(device=device, dtype=torch.bool)
    if not bool(mask.any()):
        raise InputError("the ROI mask is empty", fix="check the label value and the mask")
    # Bounding box of the ROI plus a margin of `pad` empty voxels (beyond the image too: outside the image,
    # pyradiomics has no neighbours, which is what empty voxels are).
    box = []
    for dim in range(3):
        other = tuple(d for d in range(3) if d != dim)
        nz = torch.nonzero(mask.any(dim=other)).flatten()
        box.append(slice(int(nz.min()), int(nz.max()) + 1))
    m = mask[tuple(box)]
    crop = binned[(slice(None), *box)]
    lo_hi = torch.aminmax(torch.where(m, crop, torch.ones((), dtype=crop.dtype, device=device)))
    if int(lo_hi[0]) < 1:
        raise InputError("binned has gray levels < 1 inside the ROI",
                         fix="discretised gray levels start at 1 (pyradiomics' binImage)")
    gmax = int(lo_hi[1])
    if gmax >= 2 ** 31 - 1:
        raise InputError(f"too many gray levels ({gmax})", fix="use a larger binWidth")
    # Small integer types: the dense passes are memory-bound, int16 halves their cost against int32.
    g = crop.to(torch.int16 if gmax < 2 ** 15 - 1 else torch.int32, copy=True)
    g *= m
    pads = (pad, pad, pad, pad, pad, pad)
    g = torch.nn.functional.pad(g, pads).contiguous()
    m = torch.nn.functional.pad(m.to(torch.uint8), pads).to(torch.bool).contiguous()
    B = g.shape[0]
    ngmax = max(gmax, 1)
    level = torch.arange(B, device=device, dtype=torch.int32).view(B, 1, 1, 1) * (ngmax + 1) + g
    counts = torch.bincount(level.view(-1), minlength=B * (ngmax + 1)).view(B, ngmax + 1)
    counts[:, 0] = 0
    present = counts > 0
    levels = torch.arange(ngmax + 1, device=device)
    ng = torch.where(present, levels, torch.zeros_like(levels)).amax(dim=1)
    return Prepared(g=g, mask=m, ng=ng, ngmax=ngmax, present=present, n_roi=int(m.sum()),
                    dtype=float_dtype(device), pad=pad)


class Chunk:
    """A group of images of the prepared batch, with the per-voxel tensors several classes share.

    Scratch buffers are allocated once per chunk and written in place (``out=``): on a CPU the dense passes
    are bound by memory traffic and by page faults on fresh allocations, not by arithmetic.
    """

    def __init__(self, prep, b0, b1):
        self.prep = prep
        self.b0, self.b1 = b0, b1
        self.g = prep.g[b0:b1]
        self.nb = b1 - b0
        self.mask = prep.mask
        self.n1 = prep.ngmax + 1
        self.device = prep.device
        self.shape = tuple(self.g.shape)
        self._same = {}
        self._level = None
        self._g32 = None
        self._buffers = {}

    @property
    def numel(self):
        return self.g.numel()

    def index_dtype(self, top):
        """int32 when every value stays below ``top``, else int64."""
        return torch.int32 if top < 2 ** 31 - 1 else torch.int64

    def level(self):
        """``b * (Ng + 1) + g`` per voxel (level 0 = outside the ROI), the row index of every matrix."""
        if self._level is None:
            dt = self.index_dtype(self.nb * self.n1)
            b = torch.arange(self.nb, device=self.device, dtype=dt).view(self.nb, 1, 1, 1) * self.n1
            self._level = (b + self.g).to(dt)
        return self._level

    def g32(self):
        """The gray levels as int32 (mixed-type arithmetic is several times slower than same-type on a CPU)."""
        if self._g32 is None:
            self._g32 = self.g.to(torch.int32)
        return self._g32

    def buffer(self, name, dtype):
        """A full-size scratch tensor, reused (contents undefined)."""
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype:
            buf = torch.empty(self.shape, dtype=dtype, device=self.device)
            self._buffers[name] = buf
        return buf

    def same(self, a):
        """bool [nb, Z, Y, X]: voxel v and v + a are both in the ROI with the same gray level (indexed by v)."""
        a = tuple(a)
        s = self._same.get(a)
        if s is None:
            s = torch.zeros(self.shape, dtype=torch.bool, device=self.device)
            gu, gw = pair_views(self.g, a)
            su, _ = pair_views(s, a)
            mu, _ = pair_views(self.mask, a)
            torch.eq(gu, gw, out=su)
            su &= mu
            self._same[a] = s
        return s


def _class_module(cls):
    from . import glcm, gldm, glrlm, glszm, ngtdm
    return {"glcm": glcm, "glrlm": glrlm, "glszm": glszm, "gldm": gldm, "ngtdm": ngtdm}[cls]


def texture_features(binned, mask, classes, settings=None, spacing=None, timer=None):
    """Texture features of a batch of discretised images sharing one ROI.

    Parameters
    ----------
    binned : torch.LongTensor [B, Z, Y, X]
        Gray levels 1..Ng_b inside the ROI (pyradiomics' ``binImage``), anything outside (set to 0 here).
    mask : torch.BoolTensor [Z, Y, X]
        The ROI (after resegmentation), shared by the B images.
    classes : dict
        ``{"glcm": None, "glszm": ["ZoneEntropy"], ...}``; None or [] = every non-deprecated feature.
    settings : dict
        pyradiomics' settings: ``distances`` [1], ``symmetricalGLCM`` True, ``weightingNorm`` None, ``gldm_a``
        0, ``force2D`` False, ``force2Ddimension`` 0. ``voxelBased`` is not supported.
    spacing : (sx, sy, sz), optional
        Voxel spacing in SimpleITK order; needed only for a distance ``weightingNorm`` in GLCM / GLRLM.
    timer : callable, optional
        ``timer(class_name)`` is called whenever the work of a class starts (profiling: the time up to the next
        call is that class'), so that the shared preparation and chunks are timed once.

    Returns
    -------
    dict ``{class: {feature: tensor[B]}}`` (float64; float32 on MPS), classes and features in pyradiomics'
    order.
    """
    settings = dict(settings or {})
    if settings.get("voxelBased"):
        raise InputError("voxel-based texture maps are not supported by the torch engine",
                         column="setting.voxelBased", fix="use pyradiomics for voxel-based extraction")
    unknown = [c for c in classes if c not in FEATURES]
    if unknown:
        raise InputError(f"unknown texture class(es) {unknown}", column="featureClass",
                         fix=f"use {', '.join(FEATURES)}")
    wanted = {c: resolve_names(c, classes[c]) for c in FEATURES if c in classes}
    todo = [c for c, names in wanted.items() if names]
    out = {c: {} for c in wanted}
    if not todo:
        return out
    distances = settings.get("distances", [1]) or [1]
    pad = max(1, max(int(d) for d in np.atleast_1d(distances)))
    prep = prepare(binned, mask, pad=pad)
    parts = {c: [] for c in todo}
    limit = MAX_CHUNK_ELEMENTS if prep.device.type != "cpu" else min(MAX_CHUNK_ELEMENTS, CPU_CHUNK_ELEMENTS)
    for b0, b1 in batch_chunks(prep.batch, prep.g[0].numel(), limit):
        chunk = Chunk(prep, b0, b1)
        for cls in todo:
            if timer is not None:
                timer(cls)
            parts[cls].append(_class_module(cls).counts(chunk, settings))
        del chunk
    for cls in todo:
        if timer is not None:
            timer(cls)
        mod = _class_module(cls)
        out[cls] = mod.features(mod.merge(parts[cls]), prep, wanted[cls], settings, spacing)
    return out
