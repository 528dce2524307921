"""pyradiomics 3.0.1 3D shape features (``radiomics.shape.RadiomicsShape``) computed with torch.

``shape_features(mask, spacing, names=None)`` returns the same numbers as pyradiomics' shape class run on
the same mask and spacing, as plain Python floats keyed by pyradiomics' feature names (no prefix).

What pyradiomics does, and how this module reproduces it
--------------------------------------------------------
* The mask is padded with one voxel of background on every side; every coordinate below is an index of that
  padded grid times the spacing (numpy order z, y, x; ``spacing`` is given in SimpleITK order (sx, sy, sz)).
  pyradiomics' extractor hands the shape class the mask cropped to the ROI's bounding box
  (``featureextractor.computeShape`` -> ``cropToTumorMask``); pass that crop to get bit-for-bit the same
  coordinates. Any other crop changes the results only by rounding (translation invariance; ~1e-15).
  This module crops internally to the bounding box and adds the offset back, so the work depends on the ROI's
  size, not on the grid's.
* Mesh: marching cubes over every 2x2x2 cube of the padded grid; a cube's 8 corners give an 8-bit index (bit i
  is corner i of ``_CORNERS``); an index >= 128 is complemented and its triangles' signed volume negated;
  vertices sit halfway on the cube edges (``_EDGES``); triangles come from the classic Lorensen-Cline triangle
  table as tabulated by Paul Bourke (1994, public domain), first 128 rows (``_TRIANGLES``). pyradiomics'
  ``cshape.c`` uses the same surface: 113 of its 128 rows hold the same triangles (vertices cyclically
  rotated), the other 15 split a planar polygon along the other diagonal or list it in another order, which
  changes neither the area nor the signed volume (checked for all 128 configurations).
  Because every vertex is a cube corner plus a constant edge offset, a cube's triangles contribute
  ``area[k]`` to the surface and ``(c[k] + P . m[k]) / 6`` to the volume, with ``P`` the cube origin in mm and
  ``area``, ``c``, ``m`` per-configuration constants for the spacing (tetrahedra spanned with the grid origin,
  the same origin pyradiomics uses). So the mesh costs a few gathers per surface cube instead of a loop over
  triangles; the cube grid is processed in slabs of at most ``_SLAB_CELLS`` cubes.
* Diameters: pyradiomics takes, for every surface cube, the vertices on its 3 edges that meet at corner 7,
  i.e. one vertex on every lattice edge whose two voxels differ, and compares every pair (O(n^2) in C): the
  largest distance overall (Maximum3DDiameter) and among pairs with equal z (Slice), equal y (Column), equal x
  (Row). The largest distance of a finite set is attained at extreme points of its convex hull, so a vertex
  that lies strictly between two other vertices on a lattice line can be dropped (for a 2D diameter only along
  lines inside its plane, so that the bracketing vertices share the plane): first along the 3 axes on all
  vertices, then, while more than ``_PRUNE_MIN`` are left, along the 10 face/body diagonals and 24 more
  directions for the 3D diameter and along 6 plane directions for a 2D one (see ``_AXES``). A 10 cm ball at
  1 mm: 47 070 vertices -> 20 382 -> 2 526 -> 2 094 for the 3D diameter (its convex hull has 1 998 vertices),
  8 510 for each 2D one (~42 per plane). The remaining pairs are compared exhaustively: the 3D ones in row
  blocks of the upper triangle, the 2D ones plane by plane, all planes of the three 2D diameters batched as
  [planes, P, P] tensors; never more than ``_PAIR_BUDGET`` pairs at once. Coordinates and squared distances
  are formed with pyradiomics' float operations ((index + offset) * spacing, then dz^2 + dy^2, then + dx^2)
  and plane equality is tested on integer half-voxel coordinates, so the diameters are bit-identical to
  pyradiomics'.
* Axis lengths: principal components of the physical coordinates of the ROI voxel centres. The covariance is
  formed from the ROI's projections on the three coordinate planes with the mean taken from exact integer sums,
  so a one-voxel-thick axis-aligned ROI gets an exactly zero least eigenvalue (pyradiomics gets rounding noise
  there, ~1e-30 mm^2, i.e. LeastAxisLength ~1e-14 mm). Eigenvalues come from ``torch.linalg.eigvalsh`` on the
  3x3 matrix in float64 on the CPU (pyradiomics: ``numpy.linalg.eigvals``); then pyradiomics' rule: values in
  (-1e-10, 0) become 0, a negative one gives NaN, and 0/0 ratios give NaN (single voxel: Elongation and
  Flatness are NaN, as in pyradiomics).

Accuracy against pyradiomics (Testing/test_torch_radiomics_shape.py, float64): the diameters and VoxelVolume
are bit-identical; mesh volume, area and the features made from them within 3e-12 relative (summation order:
pyradiomics adds the triangles one by one); the axis lengths, Elongation and Flatness within 1e-14 (measured
on the test cases, the benchmark's lesions and 20 random masks). The one exception is a degenerate ROI that is a line
or a plane not aligned with the grid (e.g. two voxels on a diagonal, a tilted one-voxel sheet): an eigenvalue
that is zero in exact arithmetic comes out as rounding noise (~1e-16 x the largest eigenvalue) in both
libraries, so LeastAxisLength / MinorAxisLength differ by up to 9.7e-9 x MajorAxisLength and Elongation /
Flatness by up to 9.7e-9 absolute (measured over all 255 non-empty 2x2x2 masks and two tilted sheets). No
computation can match the other library's rounding noise; both values mean "zero".

Speed, one CPU thread, process CPU time (best of 5; a busy shared 2-core machine), pyradiomics' shape class
(construction + execute) against ``shape_features``, all 17 features: 1 cm ball at 1 mm (515 voxels) 2.9 vs
3.9 ms (0.7x), 3 cm ball 37 vs 17 ms (2.2x), brain1 97 vs 12 ms (7.8x), IBSI CT phantom tumour (125 256 voxels)
2.5 s vs 118 ms (21x), 10 cm ball at 1 mm (523 305 voxels) 4.8 s vs 0.20 s (24x), 10 cm ellipsoid at
0.7 x 0.7 x 5 mm 2.0 s vs 59 ms (34x). pyradiomics' pairwise diameter loop is O(vertices^2); here it is
O(vertices log vertices) plus the pairs of the pruned set. Below ~1 cm torch's per-call overhead (~500 small tensor ops)
dominates. ``benchmarks/bench_torch_radiomics_shape.py`` measures this.

Devices: one code path on CPU and CUDA (float64). MPS has no float64: there the mesh sums and distances run in
float32 (about 1e-6 relative; not tested here) and the 3x3 eigenproblem stays on the CPU in float64.
"""

import functools
import math

import torch

from TACEPredictLib import InputError

#: Every feature pyradiomics 3.0.1 enables by default for ``shape`` (alphabetical, as pyradiomics lists them).
FEATURES = (
    "Elongation", "Flatness", "LeastAxisLength", "MajorAxisLength", "Maximum2DDiameterColumn",
    "Maximum2DDiameterRow", "Maximum2DDiameterSlice", "Maximum3DDiameter", "MeshVolume", "MinorAxisLength",
    "Sphericity", "SurfaceArea", "SurfaceVolumeRatio", "VoxelVolume",
)
#: Deprecated in pyradiomics: computed only when named.
DEPRECATED = ("Compactness1", "Compactness2", "SphericalDisproportion")

_MESH_FEATURES = {"MeshVolume", "SurfaceArea", "SurfaceVolumeRatio", "Sphericity", *DEPRECATED}
_PCA_FEATURES = {"MajorAxisLength", "MinorAxisLength", "LeastAxisLength", "Elongation", "Flatness"}
#: diameter name -> axis whose coordinate must be equal (None: no constraint)
_DIAMETERS = {"Maximum3DDiameter": None, "Maximum2DDiameterSlice": 0, "Maximum2DDiameterColumn": 1,
              "Maximum2DDiameterRow": 2}

# Marching-cube geometry, (z, y, x) offsets. Corner i is bit i of the cube index.
_CORNERS = ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 0, 0), (1, 0, 1), (1, 1, 1), (1, 1, 0))
# Edge e joins these two corners; its vertex is their midpoint.
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))
# Lorensen-Cline triangle table (P. Bourke, "Polygonising a scalar field", 1994, public domain), rows 0..127:
# per cube index, its triangles as three edge numbers in hexadecimal (a = 10, b = 11).
_TRIANGLES = (
    "", "083", "019", "183 981", "12a", "083 12a", "92a 029", "283 2a8 a98",
    "3b2", "0b2 8b0", "190 23b", "1b2 19b 98b", "3a1 ba3", "0a1 08a 8ba", "390 3b9 ba9", "98a a8b",
    "478", "430 734", "019 847", "419 471 731", "12a 847", "347 304 12a", "92a 902 847", "2a9 297 273 794",
    "847 3b2", "b47 b24 204", "901 847 23b", "47b 94b 9b2 921", "3a1 3ba 784", "1ba 14b 104 7b4",
    "478 90b 9ba b03", "47b 4b9 9ba",
    "954", "954 083", "054 150", "854 835 315", "12a 954", "308 12a 495", "52a 542 402", "2a5 325 354 348",
    "954 23b", "0b2 08b 495", "054 015 23b", "215 258 28b 485", "a3b a13 954", "495 081 8a1 8ba",
    "540 50b 5ba b03", "548 58a a8b",
    "978 579", "930 953 573", "078 017 157", "153 357", "978 957 a12", "a12 950 530 573", "802 825 857 a52",
    "2a5 253 357", "795 789 3b2", "957 972 920 27b", "23b 018 178 157", "b21 b17 715", "958 857 a13 a3b",
    "570 509 7b0 10a ba0", "ba0 b03 a50 807 570", "ba5 7b5",
    "a65", "083 5a6", "901 5a6", "183 198 5a6", "165 261", "165 126 308", "965 906 026", "598 582 526 328",
    "23b a65", "b08 b20 a65", "019 23b 5a6", "5a6 192 9b2 98b", "63b 653 513", "08b 0b5 051 5b6",
    "3b6 036 065 059", "659 69b b98",
    "5a6 478", "430 473 65a", "190 5a6 847", "a65 197 173 794", "612 651 478", "125 526 304 347",
    "847 905 065 026", "739 794 329 596 269", "3b2 784 a65", "5a6 472 420 27b", "019 478 23b 5a6",
    "921 9b2 94b 7b4 5a6", "847 3b5 351 5b6", "51b 5b6 10b 7b4 04b", "059 065 036 b63 847", "659 69b 479 7b9",
    "a49 64a", "4a6 49a 083", "a01 a60 640", "831 816 864 61a", "149 124 264", "308 129 249 264", "024 426",
    "832 824 426", "a49 a64 b23", "082 28b 49a 4a6", "3b2 016 064 61a", "641 61a 481 21b 8b1",
    "964 936 913 b63", "8b1 810 b61 914 641", "3b6 360 064", "648 b68",
    "7a6 78a 89a", "073 0a7 09a 67a", "a67 1a7 178 180", "a67 a71 173", "126 168 189 867",
    "269 291 679 093 739", "780 706 602", "732 672", "23b a68 a89 867", "207 27b 097 67a 9a7",
    "180 178 1a7 67a 23b", "b21 b17 a61 671", "896 867 916 b63 136", "091 b67", "780 706 3b0 b60", "7b6",
)

# Lattice directions (z, y, x) along which non-extreme vertices are dropped before the pairwise search:
# the axes (on all vertices), then for the 3D diameter the 10 face and body diagonals and then 24 more
# directions, each stage on the survivors of the one before; for a 2D diameter the 6 plane directions of
# ``_DIRS_2D`` after the plane's two axes.
_AXES = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
_DIRS_3D = ((0, 1, 1), (0, 1, -1), (1, 0, 1), (1, 0, -1), (1, 1, 0), (1, -1, 0), (1, 1, 1), (1, 1, -1),
            (1, -1, 1), (1, -1, -1))
_DIRS_3D_MORE = tuple(
    [(0, 1, 2), (0, 1, -2), (0, 2, 1), (0, 2, -1), (1, 0, 2), (1, 0, -2), (2, 0, 1), (2, 0, -1),
     (1, 2, 0), (1, -2, 0), (2, 1, 0), (2, -1, 0)]
    + [(1, 1, 2), (1, 1, -2), (1, -1, 2), (1, -1, -2), (1, 2, 1), (1, 2, -1), (1, -2, 1), (1, -2, -1),
       (2, 1, 1), (2, 1, -1), (2, -1, 1), (2, -1, -1)])
_DIRS_2D = ((1, 1), (1, -1), (1, 2), (2, 1), (1, -2), (2, -1))

# Work limits. _PAIR_BUDGET: most pair distances held at once (float64: ~3 x 8 bytes each, ~100 MB).
# _SLAB_CELLS: most marching cubes per slab (uint8 plus the surface cubes' gathers). _PRUNE_MIN: a pruning stage
# after the axes runs only on more vertices than this (below it the pairs cost less than the stage; measured on
# 1-3 cm balls). _ROW_BLOCK: rows per block of the all-pairs search (little of the lower triangle computed).
_PAIR_BUDGET = 1 << 22
_SLAB_CELLS = 1 << 24
_PRUNE_MIN = 512
_ROW_BLOCK = 256


def _fdtype(device):
    return torch.float32 if device.type == "mps" else torch.float64


def _triangle_index_table():
    """[128, 5, 3] long edge numbers of each configuration's triangles, -1 where there is none."""
    table = torch.full((128, 5, 3), -1, dtype=torch.long)
    for k, row in enumerate(_TRIANGLES):
        for t, tri in enumerate(row.split()):
            table[k, t] = torch.tensor([int(ch, 16) for ch in tri])
    return table


_TRI_TABLE = _triangle_index_table()


def _edge_offsets():
    """[12, 3] vertex offsets of the 12 cube edges (z, y, x), in units of half a voxel (exact integers)."""
    return torch.tensor([[_CORNERS[a][d] + _CORNERS[b][d] for d in range(3)] for a, b in _EDGES],
                        dtype=torch.long)


@functools.lru_cache(maxsize=32)
def _config_tables(spacing_zyx, device, dtype):
    """Per cube for this spacing, indexed by the cube's corner bits in tensor-product order (bit 4 dz + 2 dy + dx
    for the corner at offset (dz, dy, dx)): surface area, and the constant c and vector m of
    6 x signed volume = c + P . m (P: the cube origin in mm), summed over the cube's triangles. A cube whose
    pyradiomics index (bit i = corner i of ``_CORNERS``) is >= 128 uses the complement's triangles with the sign
    of the volume flipped, as pyradiomics does."""
    s = torch.tensor(spacing_zyx, dtype=torch.float64)
    verts = _edge_offsets().to(torch.float64) / 2 * s  # [12, 3] mm offsets from the cube origin
    tri = _TRI_TABLE
    valid = tri[..., 0] >= 0  # [128, 5]
    idx = tri.clamp(min=0)
    a, b, c = verts[idx[..., 0]], verts[idx[..., 1]], verts[idx[..., 2]]  # [128, 5, 3]
    area = 0.5 * torch.linalg.vector_norm(torch.cross(a - c, b - c, dim=-1), dim=-1)
    const = (torch.cross(a, b, dim=-1) * c).sum(-1)
    vec = torch.cross(b, c, dim=-1) + torch.cross(c, a, dim=-1) + torch.cross(a, b, dim=-1)
    w = valid.to(torch.float64)
    area = (area * w).sum(1)
    const = (const * w).sum(1)
    vec = (vec * w[..., None]).sum(1)
    # tensor-product index -> pyradiomics index, complement and sign
    tp = torch.arange(256)
    k = torch.zeros(256, dtype=torch.long)
    for bit, (dz, dy, dx) in enumerate(_CORNERS):
        k |= ((tp >> (4 * dz + 2 * dy + dx)) & 1) << bit
    flip = k >= 128
    k = torch.where(flip, 255 - k, k)
    sign = 1.0 - 2.0 * flip.to(torch.float64)
    out = (area[k], sign * const[k], sign[:, None] * vec[k])
    return tuple(t.to(dtype).to(device) for t in out)


def _check(mask, spacing, names):
    if not isinstance(mask, torch.Tensor):
        try:
            mask = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"the mask is not an array ({type(mask).__name__}): {exc}", column="mask",
                             fix="pass a 3D boolean torch tensor or numpy array [z, y, x]") from exc
    if mask.dim() != 3:
        raise InputError(f"3D shape features need a 3D mask; got shape {tuple(mask.shape)}", column="mask",
                         fix="pass the mask as [z, y, x] (a single slice as [1, y, x])")
    if mask.dtype != torch.bool:
        mask = mask != 0
    try:
        spacing = tuple(float(v) for v in spacing)
    except (TypeError, ValueError) as exc:
        raise InputError(f"spacing {spacing!r} is not three numbers", column="spacing",
                         fix="pass the voxel spacing in mm as (sx, sy, sz), SimpleITK order") from exc
    if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"spacing {spacing!r} must be three positive finite numbers (sx, sy, sz) in mm",
                         column="spacing", fix="pass the voxel spacing in mm as (sx, sy, sz), SimpleITK order")
    if names is None:
        names = list(FEATURES)
    else:
        if isinstance(names, str):
            names = [names]
        names = list(dict.fromkeys(names))
        unknown = [n for n in names if n not in FEATURES and n not in DEPRECATED]
        if unknown:
            raise InputError(f"unknown shape feature(s) {unknown}", column="names",
                             fix=f"use names from {list(FEATURES) + list(DEPRECATED)}")
    return mask, spacing, names


def _bounding_box(mask):
    """Index ranges (lo, hi exclusive) per axis of the True voxels; None when there are none."""
    zy = mask.any(2)
    hits = torch.cat([zy.any(1), zy.any(0), mask.any(0).any(0)])
    where = torch.nonzero(hits).flatten().tolist()
    if not where:
        return None
    ranges, start = [], 0
    for size in mask.shape:
        inside = [i - start for i in where if start <= i < start + size]
        ranges.append((inside[0], inside[-1] + 1))
        start += size
    return ranges


def _mesh_and_vertices(padded, offset, spacing_zyx, want_mesh, want_vertices):
    """Surface area, mesh volume and the diameter vertices (int64 [n, 3], half-voxel units of pyradiomics'
    padded grid) of the marching-cubes mesh of ``padded`` (uint8 0/1, already padded with background)."""
    device = padded.device
    dtype = _fdtype(device)
    nz, ny, nx = padded.shape
    area = volume6 = None
    if want_mesh:
        t_area, t_const, t_vec = _config_tables(tuple(spacing_zyx), device, dtype)
        s = torch.tensor(spacing_zyx, dtype=dtype, device=device)
        off = torch.tensor(offset, dtype=torch.long, device=device)
        area = torch.zeros((), dtype=dtype, device=device)
        volume6 = torch.zeros((), dtype=dtype, device=device)
    verts = []
    off2 = torch.tensor([2 * o for o in offset], dtype=torch.long, device=device)
    slab = max(1, _SLAB_CELLS // max(1, ny * nx))
    for z0 in range(0, nz - 1, slab):  # loop over slabs of planes, not voxels
        z1 = min(nz - 1, z0 + slab)  # cube origins z0..z1-1 use planes z0..z1
        block = padded[z0:z1 + 1]
        if want_mesh:
            # corner bits in tensor-product order (bit 4 dz + 2 dy + dx), three pairwise combinations
            cube = block[:, :, :-1] + (block[:, :, 1:] << 1)
            cube = cube[:, :-1] + (cube[:, 1:] << 2)
            cube = cube[:-1] + (cube[1:] << 4)
            active = (cube != 0) & (cube != 255)
            pos = torch.nonzero(active)  # [K, 3] cube origins in this slab
            k = cube[active].to(torch.long)
            pos[:, 0] += z0
            origin = (pos + off).to(dtype) * s  # cube origin in mm (pyradiomics' padded-grid coordinates)
            area = area + t_area[k].sum()
            volume6 = volume6 + (t_const[k] + (origin * t_vec[k]).sum(1)).sum()
        if want_vertices:
            # one vertex per lattice edge whose two voxels differ (pyradiomics' edges 6, 7, 11 of every cube)
            planes = block[:z1 - z0]  # planes z0..z1-1 own their x- and y-edges
            for axis, diff in ((2, planes[:, :, 1:] != planes[:, :, :-1]),
                               (1, planes[:, 1:, :] != planes[:, :-1, :]),
                               (0, block[1:] != block[:-1])):
                p = torch.nonzero(diff)
                p[:, 0] += z0
                p = 2 * p
                p[:, axis] += 1
                verts.append(p + off2)
    if want_vertices:
        # planes past the last slab's z1 (the final plane) only hold background: no x/y edges to add there
        vertices = torch.cat(verts) if verts else torch.zeros((0, 3), dtype=torch.long, device=device)
    else:
        vertices = None
    return area, volume6, vertices


def _plane_dirs(axis):
    """The directions of ``_DIRS_2D`` inside the plane where coordinate ``axis`` is constant."""
    free = [d for d in range(3) if d != axis]
    out = []
    for a, b in _DIRS_2D:
        d = [0, 0, 0]
        d[free[0]], d[free[1]] = a, b
        out.append(tuple(d))
    return tuple(out)


def _prune(points, idx, stages):
    """Indices ``idx`` of ``points`` left after each stage of directions drops the points that are no line end
    among the points still left (two points still left then bracket it, so it is no extreme point). A stage
    runs only while more than ``_PRUNE_MIN`` points are left: below that the pairs are cheaper than the stage."""
    for dirs in stages:
        if idx.numel() <= _PRUNE_MIN:
            break
        sub = points[idx]
        idx = idx[_line_end_flags(sub - sub.min(0).values, dirs).all(1)]
    return idx


def _line_end_flags(points, directions):
    """Bool [n, K]: True where point i is an end (min or max) of its lattice line along directions[k].

    ``points`` int64 [n, 3], non-negative. For an axis a with |d_a| = 1 the line through p meets the plane
    p_a = 0 at the integer point q = p - p_a d_a d; q's two other coordinates name the line, and p_a d_a is
    the position along it. Both are linear in p, so all K directions are handled at once: line numbers offset to
    disjoint ranges, then either one scatter into a dense table (when the table is not larger than the data) or
    one sort of (line, position), whose runs' first and last elements are the ends."""
    n = points.shape[0]
    ext = (points.max(0).values + 1).tolist()
    wk, ak, sk, const, sizes = [], [], [], [], []
    for d in directions:
        best = None
        for a in range(3):
            if abs(d[a]) == 1:
                b, c = (i for i in range(3) if i != a)
                size = (ext[b] + abs(d[b]) * ext[a]) * (ext[c] + abs(d[c]) * ext[a])
                if best is None or size < best[0]:
                    best = (size, a, b, c)
        size, a, b, c = best
        eb, ec = d[a] * d[b], d[a] * d[c]
        stride = ext[c] + abs(ec) * ext[a]
        w = [0, 0, 0]
        w[a], w[b], w[c] = -(eb * stride + ec), stride, 1
        wk.append(w)
        ak.append(a)
        sk.append(d[a])
        const.append((ext[a] - 1) * (max(eb, 0) * stride + max(ec, 0)) + sum(sizes))
        sizes.append(size)
    device = points.device
    w = torch.tensor(wk, dtype=torch.long, device=device)
    key = (points[:, 0:1] * w[:, 0] + points[:, 1:2] * w[:, 1] + points[:, 2:3] * w[:, 2]
           + torch.tensor(const, dtype=torch.long, device=device)).flatten()
    t = (points[:, ak] * torch.tensor(sk, dtype=torch.long, device=device)).flatten()  # position on the line
    total = sum(sizes)
    if total <= 2 * key.numel():
        # one scatter for both ends: slots [0, total) take max(t), slots [total, 2 total) take max(-t)
        ends = torch.full((2 * total,), -torch.iinfo(torch.long).max, dtype=torch.long, device=device)
        ends = ends.scatter_reduce(0, torch.cat([key, key + total]), torch.cat([t, -t]), "amax")
        flags = (t == ends[key]) | (t == -ends[key + total])
    else:
        span = 2 * max(ext) + 1
        ordered, order = torch.sort(key * span + (t + max(ext)))
        line = torch.div(ordered, span, rounding_mode="floor")
        change = line[1:] != line[:-1]
        first = torch.cat([torch.ones(1, dtype=torch.bool, device=device), change])
        last = torch.cat([change, torch.ones(1, dtype=torch.bool, device=device)])
        flags = torch.empty_like(first)
        flags[order] = first | last
    return flags.view(n, len(directions))


def _sq_dist(a, b):
    """pyradiomics' squared distance, same float operations: dz^2 + dy^2, then + dx^2. a, b: [3, ...]."""
    d = a[0] - b[0]
    d.mul_(d)
    t = a[1] - b[1]
    d.add_(t.mul_(t))
    t = a[2] - b[2]
    return d.add_(t.mul_(t))


def _max_sq_distances(vertices, spacing_zyx, axes):
    """{axis: 0-d tensor}: the largest squared distance (mm^2) between two of ``vertices`` (half-voxel ints)
    among pairs with equal coordinate ``axis`` (None: all pairs); 0 when there is no pair.

    Vertices strictly between two others on a lattice line are dropped first (they are no extreme point of the
    convex hull, where a maximum distance is attained): see ``_AXES``. Coordinates are pyradiomics'
    ((index + offset) * spacing)."""
    device = vertices.device
    dtype = _fdtype(device)
    out = {}
    n = vertices.shape[0]
    zero = torch.zeros((), dtype=dtype, device=device)
    if n < 2:
        return {ax: zero for ax in axes}
    rel = vertices - vertices.min(0).values
    axis_ends = _line_end_flags(rel, _AXES)  # [n, 3] on all vertices
    s = torch.tensor(spacing_zyx, dtype=dtype, device=device)
    coords = ((vertices.to(dtype) / 2) * s).T.contiguous()  # [3, n]
    if None in axes:
        keep = _prune(rel, torch.nonzero(axis_ends.all(1)).flatten(), (_DIRS_3D, _DIRS_3D_MORE))
        out[None] = _max_pair(coords[:, keep], zero)
    planes = [ax for ax in axes if ax is not None]
    if planes:  # pairs inside a plane: every plane of every requested axis, batched by size
        idx, grp = [], []
        span = int(vertices.max()) + 1
        for ax in planes:
            in_plane = [d for d in range(3) if d != ax]
            keep = _prune(rel, torch.nonzero(axis_ends[:, in_plane].all(1)).flatten(), (_plane_dirs(ax),))
            idx.append(keep)
            grp.append(vertices[keep, ax] + ax * span)
        grp, order = torch.sort(torch.cat(grp), stable=True)
        idx = torch.cat(idx)[order]
        values, best = _grouped_pair_max(coords[:, idx], grp, zero)
        per_axis = torch.zeros(3, dtype=dtype, device=device).scatter_reduce(
            0, torch.div(values, span, rounding_mode="floor"), best, "amax")
        for ax in planes:
            out[ax] = per_axis[ax]
    return out


def _max_pair(c, zero):
    """Largest squared distance between two columns of ``c`` [3, m]: rows [r0, r1) against columns [r0, m),
    row blocks of at most ``_ROW_BLOCK`` (little of the lower triangle is computed) and ``_PAIR_BUDGET`` pairs."""
    m = c.shape[1]
    best = zero
    r0 = 0
    while r0 < m - 1:
        r1 = min(m, r0 + max(1, min(_ROW_BLOCK, _PAIR_BUDGET // (m - r0))))
        best = torch.maximum(best, _sq_dist(c[:, r0:r1, None], c[:, None, r0:]).max())
        r0 = r1
    return best


def _grouped_pair_max(c, grp, zero):
    """(group values, largest squared distance within each group) for the columns of ``c`` [3, m] grouped by
    ``grp`` (sorted). Groups, in order of size, are batched as [groups, P, P] tensors (P: the batch's largest
    group; smaller groups padded with copies of their first point, at distance 0 from it, so no maximum changes)
    of at most ``_PAIR_BUDGET`` pairs, padding at most 4x the real pairs (+65536); a group larger than the budget
    goes through ``_max_pair``."""
    device = c.device
    values, counts = torch.unique_consecutive(grp, return_counts=True)
    counts_host = counts.tolist()
    starts = torch.cumsum(counts, 0) - counts
    best = torch.zeros(len(counts_host), dtype=c.dtype, device=device)
    batches, batch, real = [], [], 0
    for g in sorted(range(len(counts_host)), key=counts_host.__getitem__):
        cnt = counts_host[g]
        if cnt < 2:
            continue
        if cnt * cnt > _PAIR_BUDGET:
            first = sum(counts_host[:g])
            best[g] = _max_pair(c[:, first:first + cnt], zero)
            continue
        padded = (len(batch) + 1) * cnt * cnt
        if batch and (padded > _PAIR_BUDGET or padded > 4 * (real + cnt * cnt) + 65536):
            batches.append(batch)
            batch, real = [], 0
        batch.append(g)
        real += cnt * cnt
    if batch:
        batches.append(batch)
    for batch in batches:
        size = counts_host[batch[-1]]
        g = torch.tensor(batch, dtype=torch.long, device=device)
        col = torch.arange(size, device=device)
        first = starts[g][:, None]
        idx = torch.where(col < counts[g][:, None], first + col, first)  # [B, P]
        pts = c[:, idx]  # [3, B, P]
        best[g] = _sq_dist(pts[:, :, :, None], pts[:, :, None, :]).amax((1, 2))
    return values, best


def _covariance(crop, offset, spacing_zyx):
    """Covariance (3x3, mm^2) of the physical coordinates of the True voxels of ``crop`` and their count."""
    device = crop.device
    dtype = _fdtype(device)
    c_zy = crop.sum(2, dtype=torch.long)
    c_zx = crop.sum(1, dtype=torch.long)
    c_yx = crop.sum(0, dtype=torch.long)
    c_z = c_zy.sum(1)
    c_y = c_zy.sum(0)
    c_x = c_zx.sum(0)
    n = c_z.sum()
    centred = []
    for counts, o, sp in zip((c_z, c_y, c_x), offset, spacing_zyx):
        idx = torch.arange(counts.shape[0], dtype=torch.long, device=device) + (o + 1)
        mean = (idx * counts).sum().to(dtype) / n.to(dtype)  # from an exact integer sum
        centred.append((idx.to(dtype) - mean) * sp)
    dz, dy, dx = centred
    nf = n.to(dtype)
    czz = (dz * dz * c_z.to(dtype)).sum() / nf
    cyy = (dy * dy * c_y.to(dtype)).sum() / nf
    cxx = (dx * dx * c_x.to(dtype)).sum() / nf
    czy = (dz[:, None] * c_zy.to(dtype) * dy[None, :]).sum() / nf
    czx = (dz[:, None] * c_zx.to(dtype) * dx[None, :]).sum() / nf
    cyx = (dy[:, None] * c_yx.to(dtype) * dx[None, :]).sum() / nf
    cov = torch.stack([torch.stack([czz, czy, czx]), torch.stack([czy, cyy, cyx]),
                       torch.stack([czx, cyx, cxx])])
    return cov, n


def shape_features(mask, spacing, names=None):
    """pyradiomics 3.0.1 3D shape features of ``mask``.

    mask: bool tensor (or array) [z, y, x], True inside the ROI (non-bool: nonzero is inside); pass the mask
        cropped to the ROI's bounding box, as pyradiomics' extractor does, for bit-identical coordinates.
    spacing: voxel spacing in mm, SimpleITK order (sx, sy, sz).
    names: feature names to compute (pyradiomics' names without prefix); None = every non-deprecated feature.
        Compactness1, Compactness2 and SphericalDisproportion only when named, as in pyradiomics.
    Returns {name: float} in the order of ``names`` (None: pyradiomics' alphabetical order). Runs on the mask's
    device. Raises InputError for an empty mask, a non-3D mask, bad spacing or an unknown name.
    """
    mask, spacing, names = _check(mask, spacing, names)
    wanted = set(names)
    spacing_zyx = (spacing[2], spacing[1], spacing[0])
    box = _bounding_box(mask)
    if box is None:
        raise InputError("the mask has no voxel inside the ROI; shape features are undefined", column="mask",
                         fix="check the label value and that the mask overlaps the image")
    offset = tuple(lo for lo, _ in box)
    crop = mask[box[0][0]:box[0][1], box[1][0]:box[1][1], box[2][0]:box[2][1]]
    want_mesh = bool(wanted & _MESH_FEATURES)
    want_diam = [n for n in _DIAMETERS if n in wanted]
    values = {}
    if want_mesh or want_diam:
        padded = torch.nn.functional.pad(crop.to(torch.uint8), (1, 1, 1, 1, 1, 1))
        area, volume6, vertices = _mesh_and_vertices(padded, offset, spacing_zyx, want_mesh, bool(want_diam))
        pending = {}
        if want_mesh:
            pending["SurfaceArea"] = area
            pending["MeshVolume"] = volume6 / 6
        if want_diam:
            sq = _max_sq_distances(vertices, spacing_zyx, [_DIAMETERS[n] for n in want_diam])
            for name in want_diam:
                pending[name] = sq[_DIAMETERS[name]]
        host = dict(zip(pending, torch.stack(list(pending.values())).cpu().to(torch.float64).tolist()))
        if want_mesh:
            a, v = host["SurfaceArea"], host["MeshVolume"]
            values["SurfaceArea"] = a
            values["MeshVolume"] = v
            values["SurfaceVolumeRatio"] = a / v
            values["Sphericity"] = (36 * math.pi * v ** 2) ** (1.0 / 3.0) / a
            values["Compactness1"] = v / (a ** (3.0 / 2.0) * math.sqrt(math.pi))
            values["Compactness2"] = (36.0 * math.pi) * (v ** 2.0) / (a ** 3.0)
            values["SphericalDisproportion"] = a / (36 * math.pi * v ** 2) ** (1.0 / 3.0)
        for name in want_diam:
            values[name] = math.sqrt(host[name])
    if wanted & (_PCA_FEATURES | {"VoxelVolume"}):
        cov, n = _covariance(crop, offset, spacing_zyx)
        if wanted & _PCA_FEATURES:
            ev = torch.linalg.eigvalsh(cov.cpu().to(torch.float64))
            ev = torch.where((ev < 0) & (ev > -1e-10), torch.zeros_like(ev), ev)
            least, minor, major = torch.sort(ev).values.tolist()

            def axis_length(e):
                return float("nan") if e < 0 else math.sqrt(e) * 4

            def ratio(num, den):
                if num < 0 or den < 0:
                    return float("nan")
                if den == 0:
                    return float("nan") if num == 0 else float("inf")
                return math.sqrt(num / den)

            values["MajorAxisLength"] = axis_length(major)
            values["MinorAxisLength"] = axis_length(minor)
            values["LeastAxisLength"] = axis_length(least)
            values["Elongation"] = ratio(minor, major)
            values["Flatness"] = ratio(least, major)
        if "VoxelVolume" in wanted:
            z, y, x = spacing_zyx
            values["VoxelVolume"] = int(n) * (z * x * y)
    return {name: values[name] for name in names}
