"""pyradiomics 3.0.1's image filters in torch, on the whole preprocessed (pre-cropped or resampled) image, with
pyradiomics' names and its numerics.

- Wavelet: pyradiomics' undecimated coif1 (``pywt.swtn(level=1, start_level=0)`` on the image padded by one
  wrapped voxel along each odd axis, then cropped back), as pywt's periodic convolution
  ``out[o] = sum_j f[j] x[(o + L/2 - j) mod N]`` along x, then y, then z (pywt's order for pyradiomics' axes
  (2, 1, 0)), so that ``wavelet-LLH`` is low-pass along x and y and high-pass along z. float64 for integer and
  float64 images (pywt's dtype; equal to 1e-15); for a float32 image pywt computes in float32, and so does this,
  in pywt's summation order (bit for bit).
- LoG: SimpleITK's ``LaplacianRecursiveGaussianImageFilter(sigma, NormalizeAcrossScale=True)``. ITK runs
  Deriche's 4th-order recursive (IIR) Gaussian along one axis at a time; along an axis of N voxels that is a
  linear N x N operator (edge values extended to infinity at both ends). The operator is built once per
  (N, spacing, sigma, order) by running the same recursion, with ITK's coefficients, in float64 on the identity,
  and applied as a batched matrix product along each axis. ITK stores every intermediate image as float32 (its
  ``InternalRealType``): the second derivative along axis d, then smoothing along the other two axes in
  increasing order, each pass rounded to float32, accumulated as ``float32(cum + pass / spacing_d**2)``. Doing
  the same roundings here gives SimpleITK's LoG bit for bit on all but a handful of voxels per million (1 float32
  ulp, measured). pyradiomics' guards are kept: no LoG at all if any image axis is < 4 voxels, and a sigma is
  skipped (with a warning) unless every axis has at least ceil(sigma / spacing) + 1 voxels.
- Square, SquareRoot, Logarithm, Exponential: pyradiomics' formulas (scaled by the whole image's maximum
  absolute value), float64.
- Gradient: SimpleITK's ``GradientMagnitudeImageFilter`` (central differences, edge voxels replicated, divided by
  the spacing unless ``gradientUseSpacing: false``), computed in float64 and rounded to float32 as ITK does.

Every filter takes the image as a torch tensor [Z, Y, X] (float64; float32 on MPS, which has no float64) and
returns ``[(image type name, tensor, source dtype)]``; the source dtype is the numpy dtype pyradiomics'
filtered image has (it decides the arithmetic of the bin edges, see ``preprocess.bin_edges``).
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

import numpy as np
import torch

logger = logging.getLogger(__name__)

# pywt.Wavelet('coif1').dec_lo / dec_hi (pyWavelets 1.x)
COIF1_DEC_LO = (-0.015655728135791993, -0.07273261951252645, 0.3848648468648578, 0.8525720202116004,
                0.3378976624574818, -0.07273261951252645)
COIF1_DEC_HI = (0.07273261951252645, 0.3378976624574818, -0.8525720202116004, 0.3848648468648578,
                0.07273261951252645, -0.015655728135791993)


def _coif1_float32():
    """pywt's float32 coif1 filters: its table holds the coefficients divided by sqrt(2) and multiplies them by
    sqrt(2) in the filter's precision; the high-pass filter is the low-pass one reversed with alternating sign."""
    root2 = np.float32(np.sqrt(2.0))
    lo = [np.float32(np.float32(c / np.sqrt(2.0)) * root2) for c in COIF1_DEC_LO]
    hi = [(-1) ** (i + 1) * lo[len(lo) - 1 - i] for i in range(len(lo))]
    return tuple(float(c) for c in lo), tuple(float(c) for c in hi)


def _round32(tensor):
    return tensor.to(torch.float32).to(tensor.dtype)


# ---------------------------------------------------------------- wavelet

def _periodic_filter(tensor, axis, filter_bank, round32, rows=None):
    """pywt's periodic ``downsampling_convolution_periodization`` with step 1 along ``axis`` of a tensor
    whose length along it is already the (even) period, for each filter of ``filter_bank``:
    ``out[o] = sum_j f[j] x[(o + L/2 - j) mod N]``, computed from one wrapped copy of the tensor as
    ``sum_j f[j] padded[o + L - 1 - j]``, for the outputs ``o`` in ``rows`` (start, stop) only.

    float64: multiply-adds in tap order (equal to pywt to ~1e-16). float32 (pywt's dtype for a float32
    image): float32 products and sums in pywt's order, which for the last L/2 outputs starts with the
    wrapped taps (from m = i - N down to 0, then m = i - N + 1 .. L - 1), so that the result is pywt's to the
    bit (pywt's C code, compiled without FMA)."""
    n = tensor.shape[axis]
    start, stop = rows if rows is not None else (0, n)
    count = stop - start
    length = len(filter_bank[0])
    half = length // 2
    dtype = tensor.dtype
    if round32:
        tensor = tensor.to(torch.float32)
    index = torch.as_tensor([(q - (length - 1 - half)) % n for q in range(start, stop + length - 1)],
                            device=tensor.device)
    padded = tensor.index_select(axis, index)  # padded position p holds q = start + p
    outputs = []
    for taps in filter_bank:
        out = padded.narrow(axis, length - 1, count) * taps[0]
        if not round32:
            for j in range(1, length):
                out.add_(padded.narrow(axis, length - 1 - j, count), alpha=taps[j])
            outputs.append(out)
            continue
        for j in range(1, length):
            out = out + padded.narrow(axis, length - 1 - j, count) * taps[j]
        tail = []
        for o in range(max(n - half, start), stop):
            i = o + half
            if i < n:
                continue
            order = list(range(min(i - n, length - 1), -1, -1)) + list(range(i - n + 1, length))
            acc = None
            for m in order:
                term = padded.narrow(axis, o - start + length - 1 - m, 1) * taps[m]
                acc = term if acc is None else acc + term
            tail.append((o - start, acc))
        if tail:
            out = torch.cat([out.narrow(axis, 0, tail[0][0])] + [acc for _, acc in tail], dim=axis)
        outputs.append(out.to(dtype))
    return outputs


def _full_region(shape):
    return tuple((0, n) for n in shape)


def wavelet(image, settings, source_dtype, region=None):
    """pyradiomics' ``getWaveletImage``: the 7 detail images (per level) and the last approximation, on
    ``region`` ((start, stop) per axis z, y, x; default the whole image). The last level's convolutions only
    produce the region's voxels (each axis' filter mixes voxels along that axis only), which is where the
    features are computed."""
    level = settings.get("level", 1)
    start_level = settings.get("start_level", 0)
    round32 = np.dtype(source_dtype) == np.float32
    out_dtype = np.float32 if round32 else np.float64
    shape = tuple(image.shape)
    if round32:
        lo, hi = _coif1_float32()
    else:
        lo, hi = COIF1_DEC_LO, COIF1_DEC_HI
    # along each axis the periodic sequence is the padded one; the padded arrays keep their even length
    # through the levels and are cropped only at the end, as pyradiomics does
    periods = {axis: list(range(n)) + ([0] if n % 2 else []) for axis, n in enumerate(shape)}
    data = _round32(image) if round32 else image
    data = data.index_select(0, torch.as_tensor(periods[0], device=image.device))
    data = data.index_select(1, torch.as_tensor(periods[1], device=image.device))
    data = data.index_select(2, torch.as_tensor(periods[2], device=image.device))

    region = region or _full_region(shape)
    crop = tuple(slice(lo, hi) for lo, hi in region)

    def decompose(volume, rows=None):
        # pywt.swtn over axes (2, 1, 0): keys are built x first, then y, then z
        parts = {"": volume}
        for axis in (2, 1, 0):
            nxt = {}
            for key, part in parts.items():
                nxt[key + "a"], nxt[key + "d"] = _periodic_filter(part, axis, (lo, hi), round32,
                                                                   rows[axis] if rows else None)
            parts = nxt
        return parts

    for _ in range(start_level):
        data = decompose(data)["aaa"]
    results = []
    for idx in range(1, level + 1):
        last = idx == level
        parts = decompose(data, region if last else None)
        data = parts["aaa"]
        for key in ("aad", "ada", "add", "daa", "dad", "dda", "ddd"):
            name = key.replace("a", "L").replace("d", "H")
            prefix = "wavelet" if idx == 1 else f"wavelet{idx}"
            results.append((f"{prefix}-{name}", parts[key] if last else parts[key][crop], out_dtype))
    prefix = "wavelet" if level == 1 else f"wavelet{level}"
    results.append((f"{prefix}-LLL", data, out_dtype))
    return results


# ---------------------------------------------------------------- LoG (ITK recursive Gaussian)

# Deriche's coefficients as ITK's RecursiveGaussianImageFilter::SetUp states them
_A1 = (1.3530, -0.6724, -1.3563)
_B1 = (1.8151, -3.4327, 5.2318)
_W1, _L1 = 0.6681, -1.3932
_A2 = (-0.3531, 0.6724, 0.3446)
_B2 = (0.0902, 0.6100, -2.2355)
_W2, _L2 = 2.0787, -1.3732


def _iir_coefficients(sigma, spacing, order, normalize_across_scale=True):
    """(N, D, M, BN, BM) of ITK's recursive Gaussian (order 0 or 2) for ``sigma`` in mm on voxels of
    ``spacing`` mm, following ITK's SetUp / ComputeNCoefficients / ComputeDCoefficients /
    ComputeRemainingCoefficients step by step (same float64 operations, same order)."""
    sigmad = sigma / spacing
    cos1, cos2 = math.cos(_W1 / sigmad), math.cos(_W2 / sigmad)
    sin1, sin2 = math.sin(_W1 / sigmad), math.sin(_W2 / sigmad)
    exp1, exp2 = math.exp(_L1 / sigmad), math.exp(_L2 / sigmad)
    d4 = exp1 * exp1 * exp2 * exp2
    d3 = -2 * cos1 * exp1 * exp2 * exp2
    d3 += -2 * cos2 * exp2 * exp1 * exp1
    d2 = 4 * cos2 * cos1 * exp1 * exp2
    d2 += exp1 * exp1 + exp2 * exp2
    d1 = -2 * (exp2 * cos2 + exp1 * cos1)
    sd = 1.0 + d1 + d2 + d3 + d4
    dd = d1 + 2 * d2 + 3 * d3 + 4 * d4
    ed = d1 + 4 * d2 + 9 * d3 + 16 * d4

    def n_coefficients(a1, b1, a2, b2):
        n0 = a1 + a2
        n1 = exp2 * (b2 * sin2 - (a2 + 2 * a1) * cos2)
        n1 += exp1 * (b1 * sin1 - (a1 + 2 * a2) * cos1)
        n2 = (a1 + a2) * cos2 * cos1
        n2 -= b1 * cos2 * sin1 + b2 * cos1 * sin2
        n2 *= 2 * exp1 * exp2
        n2 += a2 * exp1 * exp1 + a1 * exp2 * exp2
        n3 = exp2 * exp1 * exp1 * (b2 * sin2 - a2 * cos2)
        n3 += exp1 * exp2 * exp2 * (b1 * sin1 - a1 * cos1)
        return [n0, n1, n2, n3], n0 + n1 + n2 + n3, n1 + 2 * n2 + 3 * n3, n1 + 4 * n2 + 9 * n3

    if order == 0:
        n, sn, _, _ = n_coefficients(_A1[0], _B1[0], _A2[0], _B2[0])
        alpha0 = 2 * sn / sd - n[0]
        n = [c * (1.0 / alpha0) for c in n]
    elif order == 2:
        scale = sigma * sigma if normalize_across_scale else 1.0
        n_0, sn0, dn0, en0 = n_coefficients(_A1[0], _B1[0], _A2[0], _B2[0])
        n_2, sn2, dn2, en2 = n_coefficients(_A1[2], _B1[2], _A2[2], _B2[2])
        beta = -(2 * sn2 - sd * n_2[0]) / (2 * sn0 - sd * n_0[0])
        n = [n_2[i] + beta * n_0[i] for i in range(4)]
        sn = sn2 + beta * sn0
        dn = dn2 + beta * dn0
        en = en2 + beta * en0
        alpha2 = en * sd * sd - ed * sn * sd - 2 * dn * dd * sd + 2 * dd * dd * sn
        alpha2 /= sd * sd * sd
        n = [c * (scale / alpha2) for c in n]
    else:
        raise ValueError(f"order {order}")
    d = [d1, d2, d3, d4]
    m = [n[1] - d1 * n[0], n[2] - d2 * n[0], n[3] - d3 * n[0], -d4 * n[0]]  # symmetric (orders 0 and 2)
    sum_n, sum_m, sum_d = n[0] + n[1] + n[2] + n[3], m[0] + m[1] + m[2] + m[3], 1.0 + d1 + d2 + d3 + d4
    bn = [c * sum_n / sum_d for c in d]
    bm = [c * sum_m / sum_d for c in d]
    return n, d, m, bn, bm


def _iir(data, coefficients):
    """ITK's RecursiveSeparableImageFilter::FilterDataArray on the columns of ``data`` [L, K] (float64):
    causal and anti-causal 4th-order recursions, the borders extended as constants."""
    n, d, m, bn, bm = coefficients
    length = data.shape[0]
    causal = np.empty_like(data)
    anti = np.empty_like(data)
    v = data[0]
    causal[0] = v * n[0] + v * n[1] + v * n[2] + v * n[3]
    causal[1] = data[1] * n[0] + v * n[1] + v * n[2] + v * n[3]
    causal[2] = data[2] * n[0] + data[1] * n[1] + v * n[2] + v * n[3]
    causal[3] = data[3] * n[0] + data[2] * n[1] + data[1] * n[2] + v * n[3]
    causal[0] -= v * bn[0] + v * bn[1] + v * bn[2] + v * bn[3]
    causal[1] -= causal[0] * d[0] + v * bn[1] + v * bn[2] + v * bn[3]
    causal[2] -= causal[1] * d[0] + causal[0] * d[1] + v * bn[2] + v * bn[3]
    causal[3] -= causal[2] * d[0] + causal[1] * d[1] + causal[0] * d[2] + v * bn[3]
    for i in range(4, length):
        causal[i] = data[i] * n[0] + data[i - 1] * n[1] + data[i - 2] * n[2] + data[i - 3] * n[3]
        causal[i] -= causal[i - 1] * d[0] + causal[i - 2] * d[1] + causal[i - 3] * d[2] + causal[i - 4] * d[3]
    last = length - 1
    v = data[last]
    anti[last] = v * m[0] + v * m[1] + v * m[2] + v * m[3]
    anti[last - 1] = data[last] * m[0] + v * m[1] + v * m[2] + v * m[3]
    anti[last - 2] = data[last - 1] * m[0] + data[last] * m[1] + v * m[2] + v * m[3]
    anti[last - 3] = data[last - 2] * m[0] + data[last - 1] * m[1] + data[last] * m[2] + v * m[3]
    anti[last] -= v * bm[0] + v * bm[1] + v * bm[2] + v * bm[3]
    anti[last - 1] -= anti[last] * d[0] + v * bm[1] + v * bm[2] + v * bm[3]
    anti[last - 2] -= anti[last - 1] * d[0] + anti[last] * d[1] + v * bm[2] + v * bm[3]
    anti[last - 3] -= anti[last - 2] * d[0] + anti[last - 1] * d[1] + anti[last] * d[2] + v * bm[3]
    for i in range(length - 4, 0, -1):
        anti[i - 1] = data[i] * m[0] + data[i + 1] * m[1] + data[i + 2] * m[2] + data[i + 3] * m[3]
        anti[i - 1] -= anti[i] * d[0] + anti[i + 1] * d[1] + anti[i + 2] * d[2] + anti[i + 3] * d[3]
    return causal + anti


@lru_cache(maxsize=256)
def recursive_gaussian_operator(length, spacing, sigma, order):
    """The float64 [length, length] matrix of ITK's recursive Gaussian (``order`` 0: smoothing, 2: second
    derivative with NormalizeAcrossScale) along an axis of ``length`` voxels: ``out = M @ in``."""
    if length < 4:
        raise ValueError("ITK's recursive Gaussian needs at least 4 voxels along the axis")
    matrix = _iir(np.eye(length), _iir_coefficients(float(sigma), float(spacing), order))
    matrix.setflags(write=False)
    return matrix


def _apply_along(volume, operators, axis):
    """``operators`` [S, M, N] applied along ``axis`` (0 z, 1 y, 2 x) of ``volume`` [S or 1, Z, Y, X] (N
    voxels along ``axis``): [S, ...] with M voxels along ``axis``. A volume of batch 1 is broadcast."""
    b, z, y, x = volume.shape
    if axis == 2:  # one [Z*Y, X] x [X, M] product per sigma (30 % faster than batching over z on a CPU)
        out = torch.matmul(volume.reshape(b, z * y, x), operators.transpose(-1, -2))
        return out.reshape(out.shape[0], z, y, operators.shape[1])
    if axis == 1:
        return torch.matmul(operators.unsqueeze(1), volume)
    out = torch.matmul(operators, volume.reshape(b, z, y * x))
    return out.reshape(out.shape[0], operators.shape[1], y, x)


def log_sigmas(shape, spacing, sigmas):
    """pyradiomics' guards: the sigmas that get a LoG image (warnings for the others)."""
    size = np.array(shape[::-1])  # x, y, z
    spacing = np.array(spacing)
    if np.min(size) < 4:
        logger.warning("image too small to apply LoG filter, size: %s", size)
        return []
    kept = []
    for sigma in sigmas:
        if sigma <= 0:
            logger.warning("applyLoG: sigma must be greater than 0.0: %g", sigma)
        elif np.all(size >= np.ceil(sigma / spacing) + 1):
            kept.append(sigma)
        else:
            logger.warning("applyLoG: sigma(%g)/spacing(%s) + 1 must be greater than the size(%s) of the image",
                           sigma, spacing, size)
    return kept


def log_name(sigma):
    return "log-sigma-%s-mm-3D" % (str(sigma).replace(".", "-"))


def laplacian_of_gaussian(image, spacing, sigmas, region=None):
    """SimpleITK's LaplacianRecursiveGaussian (NormalizeAcrossScale) for each sigma, as one batch [S, Z, Y, X]
    (float32 values held in ``image.dtype``) over ``region`` ((start, stop) per axis z, y, x; default the whole
    image). Each pass mixes voxels along its own axis only, so a pass produces only the region's rows along its
    axis (its input still spans the whole axis): the first pass of each term runs on the whole image, the
    last one on the region alone."""
    shape = tuple(image.shape)  # z, y, x
    region = region or _full_region(shape)
    if not sigmas:
        return image.new_zeros((0,) + tuple(hi - lo for lo, hi in region))
    device, dtype = image.device, image.dtype
    itk_axis = {0: 2, 1: 1, 2: 0}  # ITK dimension -> tensor axis

    def operators(dim, order):
        axis = itk_axis[dim]
        lo, hi = region[axis]
        ops = np.stack([recursive_gaussian_operator(shape[axis], float(spacing[dim]), float(s), order)[lo:hi]
                        for s in sigmas])
        return torch.as_tensor(ops.astype(np.float64 if dtype == torch.float64 else np.float32), device=device)

    volume = image.unsqueeze(0)
    total = None
    for dim in range(3):
        part = _round32(_apply_along(volume, operators(dim, 2), itk_axis[dim]))
        for other in (d for d in range(3) if d != dim):
            part = _round32(_apply_along(part, operators(other, 0), itk_axis[other]))
        scale = 1.0 / (float(spacing[dim]) * float(spacing[dim]))
        total = _round32(part * scale) if total is None else _round32(total + part * scale)
    return total


def log(image, spacing, settings, region=None):
    sigmas = log_sigmas(tuple(image.shape), spacing, settings.get("sigma", []))
    if not sigmas:
        return []
    stack = laplacian_of_gaussian(image, spacing, sigmas, region)
    return [(log_name(s), stack[i], np.float32) for i, s in enumerate(sigmas)]


# ---------------------------------------------------------------- simple filters

def square(image):
    coeff = 1 / torch.sqrt(image.abs().max())
    return [("square", (coeff * image) ** 2, np.float64)]


def square_root(image):
    coeff = image.abs().max()
    out = image.clone()
    pos, neg = image > 0, image < 0
    out[pos] = torch.sqrt(image[pos] * coeff)
    out[neg] = -torch.sqrt(-image[neg] * coeff)
    return [("squareroot", out, np.float64)]


def logarithm(image):
    im_max = image.abs().max()
    out = image.clone()
    pos, neg = image > 0, image < 0
    out[pos] = torch.log(image[pos] + 1)
    out[neg] = -torch.log(-(image[neg] - 1))
    out = out * (im_max / out.abs().max())
    return [("logarithm", out, np.float64)]


def exponential(image):
    im_max = image.abs().max()
    coeff = torch.log(im_max) / im_max
    return [("exponential", torch.exp(coeff * image), np.float64)]


def gradient(image, spacing, settings):
    """ITK's GradientMagnitudeImageFilter: sqrt(sum over x, y, z of (0.5 (next - previous) / spacing)^2), with
    the edge voxel repeated beyond the border (zero-flux Neumann), rounded to float32."""
    use_spacing = settings.get("gradientUseSpacing", True)
    total = torch.zeros_like(image)
    for dim, axis in ((0, 2), (1, 1), (2, 0)):
        n = image.shape[axis]
        index_next = torch.clamp(torch.arange(n, device=image.device) + 1, max=n - 1)
        index_prev = torch.clamp(torch.arange(n, device=image.device) - 1, min=0)
        coeff = 0.5 / float(spacing[dim]) if use_spacing else 0.5
        derivative = (-coeff) * image.index_select(axis, index_prev) + coeff * image.index_select(axis, index_next)
        total = total + derivative * derivative
    return [("gradient", _round32(torch.sqrt(total)), np.float32)]


def apply(image_type, image, spacing, settings, source_dtype, region=None):
    """The filtered images of one enabled image type on ``region`` ((start, stop) per axis z, y, x; default
    the whole image): [(name, tensor, source dtype)]. The filters see the whole image (pyradiomics filters the
    whole pre-cropped / resampled image); only the region's voxels are produced."""
    region = region or _full_region(tuple(image.shape))
    crop = tuple(slice(lo, hi) for lo, hi in region)
    if image_type == "Wavelet":
        return wavelet(image, settings, source_dtype, region)
    if image_type == "LoG":
        return log(image, spacing, settings, region)
    if image_type == "Original":
        out = [("original", image, source_dtype)]
    elif image_type == "Square":
        out = square(image)
    elif image_type == "SquareRoot":
        out = square_root(image)
    elif image_type == "Logarithm":
        out = logarithm(image)
    elif image_type == "Exponential":
        out = exponential(image)
    elif image_type == "Gradient":
        out = gradient(image, spacing, settings)
    else:
        raise ValueError(f"image type {image_type}")
    return [(name, tensor[crop], dtype) for name, tensor, dtype in out]
