"""Volume expansion of a (core–shell) nanoparticle: envelope volumes, radial profiles, shell strain.

Pure functions, no I/O. Positions in Å (non-periodic, unwrapped: one particle in vacuum), volumes
in Å³, radii in Å unless the name says nm. ΔV/V0 values are fractions (× 100 for percent).

Three particle-volume estimators (docs/metrics.md, "Core–shell expansion", measures them and says
why the expansion task reports "radial" and records the other two as cross-checks):

* `probe_volume_a3`: envelope of the atom centres by a probe sphere ("rolling ball", the voxel form
  of an alpha shape): atoms are dilated by `probe_radius_a` on a grid, enclosed voids are filled,
  and the result is eroded by the same radius (a morphological closing). The surface runs through
  the outermost atom centres and follows concavities wider than the probe. Isolated atoms (an
  evaporated Li, a loose C chain) add next to nothing. Not scale-covariant: a fixed probe dips
  deeper between surface atoms that move apart.
* `convex_hull_volume_a3`: scipy's ConvexHull of the atom centres; exact for convex shapes, over-
  counts concave ones, and a single far-off atom inflates it.
* `equimolar_radii_a` → `sphere_volume_a3`: a sphere of the Gibbs equimolar radius. The cumulative
  atom count N(<r) is linear in r³ wherever the density is uniform; a straight-line fit of N against
  r³ over an outer window of atoms, extrapolated to N_total, gives the radius a sharp sphere of that
  density would need: ΔV/V0 = (R/R0)³ − 1. It assumes a spherical particle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Probe radius (Å) of the envelope. It must exceed half the widest gap between neighbouring surface
#: atoms, or the surface dips between them: 3.84 Å on c-Si(001), ~2.6–3 Å in LixSi and a-C. 3 Å also
#: keeps concavities narrower than ~6 Å out of the envelope.
DEFAULT_PROBE_RADIUS_A = 3.0
#: Largest voxel grid `probe_volume_a3` builds before asking for a coarser voxel.
MAX_VOXELS = 60_000_000
#: Voxel size (Å) chosen when none is given: 0.5 Å, or coarser so the grid has ≲ 4e6 voxels.
_AUTO_VOXELS = 4_000_000
_MIN_AUTO_VOXEL_A = 0.5
VOLUME_METHODS = ("probe", "hull", "radial")
#: Fewest atoms an equimolar fit needs inside its window of the sorted radii (`equimolar_radii_a`).
MIN_WINDOW_ATOMS = 10
#: Windows of the sorted radii the fits use: a ball's outer surface; a shell's inner and outer halves.
OUTER_SURFACE_WINDOW = (0.75, 0.95)
SHELL_INNER_WINDOW = (0.05, 0.5)
SHELL_OUTER_WINDOW = (0.5, 0.95)
#: An equimolar inner radius below this fraction of the outer one is read as "no inner surface" (a
#: ball): the fit's intercept scatters around zero for a ball. It tells a ball from a shell only when
#: nothing else does: a caller that knows its atoms are a shell (selected by tag) passes
#: `known_shell=True` to `shell_radii_a`, so a thick shell (4 nm of carbon on a 2 nm core: 0.33) is
#: measured rather than rejected.
BALL_INNER_FRACTION = 0.4


def _positions(positions_a: np.ndarray, name: str = "positions_a", min_atoms: int = 1) -> np.ndarray:
    pos = np.asarray(positions_a, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {pos.shape}")
    if len(pos) < min_atoms:
        raise ValueError(f"{name} needs at least {min_atoms} atoms, got {len(pos)}")
    if not np.all(np.isfinite(pos)):
        raise ValueError(f"{name} contains NaN or inf")
    return pos


def _mask(mask: np.ndarray, n: int, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {m.shape}")
    if m.dtype != bool:
        raise ValueError(f"{name} must be a boolean array")
    return m


# --------------------------------------------------------------------------------------------------
# centre and radii
# --------------------------------------------------------------------------------------------------

def centre_of_mass_a(positions_a: np.ndarray, masses_amu: np.ndarray | None = None) -> np.ndarray:
    """Centre of mass (Å) of a non-periodic particle; the geometric centre when `masses_amu` is None."""
    pos = _positions(positions_a)
    if masses_amu is None:
        return pos.mean(axis=0)
    m = np.asarray(masses_amu, dtype=float)
    if m.shape != (len(pos),) or not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f"masses_amu must be ({len(pos)},) finite and > 0")
    return (m[:, None] * pos).sum(axis=0) / m.sum()


def radii_a(positions_a: np.ndarray, centre_a: np.ndarray) -> np.ndarray:
    """Distance of every atom from `centre_a`, in Å."""
    pos = _positions(positions_a)
    c = np.asarray(centre_a, dtype=float)
    if c.shape != (3,) or not np.all(np.isfinite(c)):
        raise ValueError(f"centre_a must be a finite (3,) vector, got {c}")
    return np.linalg.norm(pos - c, axis=1)


# --------------------------------------------------------------------------------------------------
# volumes
# --------------------------------------------------------------------------------------------------

def sphere_volume_a3(radius_a: float) -> float:
    """4/3 π R³ in Å³."""
    if not (np.isfinite(radius_a) and radius_a >= 0):
        raise ValueError(f"radius_a must be finite and >= 0, got {radius_a}")
    return 4.0 / 3.0 * np.pi * float(radius_a) ** 3


def convex_hull_volume_a3(positions_a: np.ndarray) -> float:
    """Volume (Å³) of the convex hull of the atom centres (scipy.spatial.ConvexHull)."""
    from scipy.spatial import ConvexHull, QhullError

    pos = _positions(positions_a, min_atoms=4)
    try:
        return float(ConvexHull(pos).volume)
    except QhullError as exc:
        raise ValueError(f"convex hull failed (flat or degenerate point set): {str(exc).splitlines()[0]}") from None


def auto_voxel_a(positions_a: np.ndarray, probe_radius_a: float = DEFAULT_PROBE_RADIUS_A) -> float:
    """Voxel edge (Å) `probe_volume_a3` uses by default: 0.5 Å, or coarser so the grid has ≲ 4e6 voxels."""
    return auto_voxel_for_span_a(np.ptp(_positions(positions_a), axis=0), probe_radius_a)


def auto_voxel_for_span_a(span_a: np.ndarray, probe_radius_a: float = DEFAULT_PROBE_RADIUS_A) -> float:
    """`auto_voxel_a` for atoms whose centres span `span_a` (Å along x, y, z; 2R each for a ball of
    radius R): lets a caller check a probe radius against the voxel before the atoms exist."""
    extent = np.asarray(span_a, dtype=float) + 2 * probe_radius_a + 1.0
    return max(_MIN_AUTO_VOXEL_A, float(np.prod(extent) / _AUTO_VOXELS) ** (1 / 3))


def probe_volume_a3(positions_a: np.ndarray, probe_radius_a: float = DEFAULT_PROBE_RADIUS_A,
                    voxel_a: float | None = None, close: bool = True) -> float:
    """Envelope volume (Å³) of a particle by a probe sphere on a voxel grid.

    Steps: voxels within `probe_radius_a` of an atom centre (exact k-d-tree distances) → fill the
    voids they enclose (scipy.ndimage.binary_fill_holes) → with `close` (default), keep only the
    voxels at least `probe_radius_a` from the outside (Euclidean distance transform), i.e. the
    morphological closing of the atom centres by the probe ball. Without `close`, the volume of the
    union of probe spheres (void-filled) is returned: a surface `probe_radius_a` outside the atoms,
    which does not scale with the particle (see docs/metrics.md).

    Both steps are quantised to voxel centres (the dilated set's edge and the distance transform,
    which measures to the nearest outside voxel centre); the two half-voxel offsets cancel, so the
    threshold is the probe radius itself: a dense sphere of radius 20 Å comes out within 1 % at
    voxel 0.5 Å (±4 % if either offset is corrected alone).

    Args:
        positions_a: (n, 3) atom centres in Å (one particle, unwrapped).
        probe_radius_a: probe radius in Å (> 0).
        voxel_a: voxel edge in Å; None picks `auto_voxel_a`.
        close: erode back by the probe radius (closing) or not (union of spheres).

    Raises:
        ValueError: bad positions, a non-positive probe or voxel, a voxel not smaller than the probe,
            or a grid larger than MAX_VOXELS.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    pos = _positions(positions_a)
    if not (np.isfinite(probe_radius_a) and probe_radius_a > 0):
        raise ValueError(f"probe_radius_a must be > 0 Å, got {probe_radius_a}")
    voxel = auto_voxel_a(pos, probe_radius_a) if voxel_a is None else float(voxel_a)
    if not (np.isfinite(voxel) and voxel > 0):
        raise ValueError(f"voxel_a must be > 0 Å, got {voxel_a}")
    if voxel >= probe_radius_a:
        raise ValueError(f"voxel_a ({voxel} Å) must be smaller than probe_radius_a ({probe_radius_a} Å)")
    pad = probe_radius_a + 2 * voxel
    lo = pos.min(axis=0) - pad
    shape = np.ceil((pos.max(axis=0) + pad - lo) / voxel).astype(int) + 1
    if int(np.prod(shape)) > MAX_VOXELS:
        raise ValueError(f"voxel grid {tuple(shape)} exceeds {MAX_VOXELS:.0e} voxels; pass a larger voxel_a")
    # dilation: distance from every voxel centre to its nearest atom, plane by plane (bounded memory)
    tree = cKDTree(pos)
    gx, gy = (lo[k] + voxel * np.arange(shape[k]) for k in range(2))
    plane = np.stack(np.meshgrid(gx, gy, indexing="ij"), axis=-1).reshape(-1, 2)
    inside = np.zeros(shape, dtype=bool)
    zs = lo[2] + voxel * np.arange(shape[2])
    zmin, zmax = pos[:, 2].min() - probe_radius_a, pos[:, 2].max() + probe_radius_a
    for k, z in enumerate(zs):
        if z < zmin or z > zmax:
            continue
        pts = np.column_stack([plane, np.full(len(plane), z)])
        d, _ = tree.query(pts, k=1, distance_upper_bound=probe_radius_a)
        inside[:, :, k] = (d <= probe_radius_a).reshape(shape[0], shape[1])
    filled = ndimage.binary_fill_holes(inside)
    if not close:
        return float(filled.sum()) * voxel**3
    depth = ndimage.distance_transform_edt(filled, sampling=voxel)
    return float(np.count_nonzero(depth >= probe_radius_a)) * voxel**3


@dataclass(frozen=True)
class EquimolarRadii:
    """Radii of a uniform sphere or spherical shell from the cumulative count N(<r) (Å).

    N(<r) = slope·r³ + intercept is fitted over the atoms between fractions `window` of the sorted
    radii; inner_a is where the line reaches N = 0 and outer_a where it reaches N_total;
    density_per_a3 = 3·slope/(4π). A ball's line starts near r = 0; inner_a is NaN when the line
    reaches N = 0 at r³ ≤ 0, or below `min_inner_fraction` × outer_a (BALL_INNER_FRACTION by default:
    a ball, up to the noise of the fit).
    """

    inner_a: float
    outer_a: float
    density_per_a3: float
    n_atoms: int


def window_bounds(n_atoms: int, window: tuple[float, float]) -> tuple[int, int]:
    """First and last index (inclusive) of the sorted radii of `n_atoms` atoms that `window` (fractions
    lo, hi) selects for an equimolar fit."""
    lo, hi = window
    return int(np.floor(lo * (n_atoms - 1))), int(np.ceil(hi * (n_atoms - 1)))


def min_atoms_for_window(window: tuple[float, float]) -> int:
    """Fewest atoms whose `window` of sorted radii holds MIN_WINDOW_ATOMS: below it `equimolar_radii_a`
    raises (38 for the outer-surface window (0.75, 0.95), 18 for either half of a shell)."""
    lo, hi = window
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"window must satisfy 0 <= lo < hi <= 1, got {window}")
    n = MIN_WINDOW_ATOMS
    while True:
        i0, i1 = window_bounds(n, window)
        if i1 - i0 + 1 >= MIN_WINDOW_ATOMS:
            return n
        n += 1


def equimolar_radii_a(radii: np.ndarray, window: tuple[float, float] = OUTER_SURFACE_WINDOW,
                      min_inner_fraction: float = BALL_INNER_FRACTION) -> EquimolarRadii:
    """Gibbs equimolar radii of the atoms at distances `radii` (Å) from the centre.

    For a uniform ball or shell, N(<r) is linear in r³, so the fit recovers the boundaries exactly;
    roughness of the outermost atoms is kept out by ending the window below 1. The fit is scale-
    covariant: radii × s give radii × s. The window must lie in one material: (0.75, 0.95) for the
    outer surface of a ball; `shell_radii_a` fits each half of a shell. `min_inner_fraction` (0 to
    keep any positive inner radius) is where a small inner radius stops counting as a surface.

    Raises:
        ValueError: fewer than MIN_WINDOW_ATOMS (10) atoms in the window (`min_atoms_for_window`),
            NaN, negative radii, a bad window, or a non-increasing N(r³) (all atoms at one radius).
    """
    r = np.asarray(radii, dtype=float)
    if r.ndim != 1 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("radii must be a 1-D array of finite values >= 0")
    lo, hi = window
    if not (0.0 <= lo < hi <= 1.0):
        raise ValueError(f"window must satisfy 0 <= lo < hi <= 1, got {window}")
    n = len(r)
    r_sorted = np.sort(r)
    i0, i1 = window_bounds(n, window)
    if i1 - i0 + 1 < MIN_WINDOW_ATOMS:
        raise ValueError(f"need at least {MIN_WINDOW_ATOMS} atoms in the fit window, got {max(0, i1 - i0 + 1)} of {n}")
    x = r_sorted[i0:i1 + 1] ** 3
    y = np.arange(i0, i1 + 1) + 0.5  # N(<r) at each atom: half-counting the atom itself
    if np.ptp(x) <= 0:
        raise ValueError("all radii in the fit window are equal; no density can be fitted")
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        raise ValueError("cumulative count does not grow with r³ in the fit window")
    inner3 = -intercept / slope
    outer = float(np.cbrt((n - intercept) / slope))
    inner = float(np.cbrt(inner3)) if inner3 > 0 else float("nan")
    if not inner >= min_inner_fraction * outer:
        inner = float("nan")
    return EquimolarRadii(inner, outer, float(3 * slope / (4 * np.pi)), n)


def particle_volume_a3(positions_a: np.ndarray, method: str = "probe", centre_a: np.ndarray | None = None,
                       probe_radius_a: float = DEFAULT_PROBE_RADIUS_A, voxel_a: float | None = None,
                       window: tuple[float, float] = OUTER_SURFACE_WINDOW) -> float:
    """Envelope volume (Å³) by `method`: "probe" (default), "hull" or "radial" (equimolar sphere
    about `centre_a`, the geometric centre when None)."""
    if method == "probe":
        return probe_volume_a3(positions_a, probe_radius_a, voxel_a)
    if method == "hull":
        return convex_hull_volume_a3(positions_a)
    if method == "radial":
        pos = _positions(positions_a)
        c = pos.mean(axis=0) if centre_a is None else centre_a
        return sphere_volume_a3(equimolar_radii_a(radii_a(pos, c), window).outer_a)
    raise ValueError(f"method must be one of {VOLUME_METHODS}, got {method!r}")


def dv_over_v0(volume_a3: float, volume0_a3: float) -> float:
    """Relative volume change V/V0 − 1 (a fraction)."""
    if not (np.isfinite(volume_a3) and np.isfinite(volume0_a3)) or volume_a3 < 0 or volume0_a3 <= 0:
        raise ValueError(f"need finite volumes with V >= 0 and V0 > 0, got {volume_a3}, {volume0_a3}")
    return float(volume_a3 / volume0_a3 - 1.0)


def dv_over_v0_from_radius(radius_a: float, radius0_a: float) -> float:
    """ΔV/V0 = (R/R0)³ − 1 of a sphere whose radius goes from R0 to R (a fraction)."""
    if not (np.isfinite(radius_a) and np.isfinite(radius0_a)) or radius_a < 0 or radius0_a <= 0:
        raise ValueError(f"need finite radii with R >= 0 and R0 > 0, got {radius_a}, {radius0_a}")
    return float((radius_a / radius0_a) ** 3 - 1.0)


def core_mask(tags: np.ndarray, symbols: np.ndarray, radii: np.ndarray, shell_inner_a: float | None,
              core_tag: int = 1, li_symbol: str = "Li") -> np.ndarray:
    """Atoms of the core: core-tagged atoms plus Li closer to the centre than the shell's inner
    surface `shell_inner_a` (Å; None or NaN = no shell, every Li counts)."""
    tags = np.asarray(tags)
    symbols = np.asarray(symbols)
    r = np.asarray(radii, dtype=float)
    if not (tags.shape == symbols.shape == r.shape) or tags.ndim != 1:
        raise ValueError(f"tags, symbols and radii must be 1-D of equal length, got "
                         f"{tags.shape}, {symbols.shape}, {r.shape}")
    li = symbols == li_symbol
    if shell_inner_a is not None and np.isfinite(shell_inner_a):
        li &= r < shell_inner_a
    return (tags == core_tag) | li


# --------------------------------------------------------------------------------------------------
# radial profiles
# --------------------------------------------------------------------------------------------------

def radial_edges_nm(r_max_nm: float, bin_nm: float) -> np.ndarray:
    """Bin edges 0, bin, 2·bin, … covering [0, r_max_nm] (nm)."""
    if not (np.isfinite(r_max_nm) and np.isfinite(bin_nm) and r_max_nm > 0 and bin_nm > 0):
        raise ValueError(f"need r_max_nm > 0 and bin_nm > 0, got {r_max_nm}, {bin_nm}")
    return np.arange(int(np.ceil(r_max_nm / bin_nm - 1e-9)) + 1) * bin_nm


def _edges(edges_nm: np.ndarray) -> np.ndarray:
    e = np.asarray(edges_nm, dtype=float)
    if e.ndim != 1 or e.size < 2 or not np.all(np.isfinite(e)) or e[0] < 0 or np.any(np.diff(e) <= 0):
        raise ValueError("edges_nm must be >= 2 finite, non-negative, strictly increasing values")
    return e


@dataclass(frozen=True)
class RadialLiProfile:
    """Li per spherical shell about the particle centre.

    r_nm: bin centres (nm); n_atoms, n_li: atoms and Li per bin; li_fraction = n_li/n_atoms (NaN in
    an empty bin); li_density_per_nm3: Li per nm³ of the bin's spherical-shell volume.
    """

    r_nm: np.ndarray
    edges_nm: np.ndarray
    n_atoms: np.ndarray
    n_li: np.ndarray
    li_fraction: np.ndarray
    li_density_per_nm3: np.ndarray


def radial_li_profile(positions_a: np.ndarray, is_li: np.ndarray, centre_a: np.ndarray,
                      edges_nm: np.ndarray) -> RadialLiProfile:
    """Li fraction and Li number density per spherical shell (edges in nm) about `centre_a` (Å)."""
    pos = _positions(positions_a)
    li = _mask(is_li, len(pos), "is_li")
    e = _edges(edges_nm)
    r_nm = radii_a(pos, centre_a) / 10.0
    n_all = np.histogram(r_nm, e)[0]
    n_li = np.histogram(r_nm[li], e)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(n_all > 0, n_li / np.maximum(n_all, 1), np.nan)
    shell_nm3 = 4.0 / 3.0 * np.pi * (e[1:] ** 3 - e[:-1] ** 3)
    return RadialLiProfile(0.5 * (e[1:] + e[:-1]), e, n_all, n_li, frac, n_li / shell_nm3)


@dataclass(frozen=True)
class RadialStrainProfile:
    """Radial strain of host atoms binned by their initial radius r0.

    r0_nm: bin centres (nm); n_atoms: host atoms per bin; radial_strain = (r̄ − r̄0)/r̄0 with r̄0, r̄
    the mean initial and current radii of the bin's atoms (for a spherically symmetric field, also
    the hoop strain at that radius); volumetric_strain = (1 + radial_strain)³ − 1, the volume change
    of the sphere bounded by the material surface that started at r̄0. NaN in empty bins.
    """

    r0_nm: np.ndarray
    edges_nm: np.ndarray
    n_atoms: np.ndarray
    radial_strain: np.ndarray
    volumetric_strain: np.ndarray


def radial_strain_profile(positions0_a: np.ndarray, positions_a: np.ndarray, host: np.ndarray,
                          centre0_a: np.ndarray, centre_a: np.ndarray,
                          edges_nm: np.ndarray) -> RadialStrainProfile:
    """Strain vs initial radius of the `host` atoms (the same atoms, same order, in both frames).

    Args:
        positions0_a, positions_a: (n, 3) reference and deformed positions in Å; atom i is the same
            atom in both (extra atoms inserted later are not passed).
        host: boolean mask of atoms to use (e.g. Si and C, not the inserted Li).
        centre0_a, centre_a: particle centres (Å) in each frame.
        edges_nm: radial bin edges (nm) for the initial radius.
    """
    p0 = _positions(positions0_a, "positions0_a")
    p1 = _positions(positions_a)
    if p0.shape != p1.shape:
        raise ValueError(f"reference and deformed positions differ in shape: {p0.shape} vs {p1.shape}")
    h = _mask(host, len(p0), "host")
    e = _edges(edges_nm)
    r0 = radii_a(p0, centre0_a)[h]
    r1 = radii_a(p1, centre_a)[h]
    idx = np.digitize(r0 / 10.0, e) - 1
    nb = len(e) - 1
    ok = (idx >= 0) & (idx < nb)
    count = np.bincount(idx[ok], minlength=nb)
    s0 = np.bincount(idx[ok], weights=r0[ok], minlength=nb)
    s1 = np.bincount(idx[ok], weights=r1[ok], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        lin = np.where((count > 0) & (s0 > 0), s1 / np.where(s0 > 0, s0, 1.0) - 1.0, np.nan)
    return RadialStrainProfile(0.5 * (e[1:] + e[:-1]), e, count, lin, (1.0 + lin) ** 3 - 1.0)


# --------------------------------------------------------------------------------------------------
# the shell
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShellRadii:
    """Equimolar inner and outer radii (Å) of a spherical shell, each fitted on its own half of the
    shell's atoms (windows SHELL_INNER_WINDOW (0.05, 0.5) and SHELL_OUTER_WINDOW (0.5, 0.95) of the
    sorted radii), so a density change near one surface does not move the other."""

    inner_a: float
    outer_a: float


class NoInnerSurfaceError(ValueError):
    """`shell_radii_a`: the atoms' inner-half fit finds no inner surface (they fill a ball)."""


def shell_radii_a(shell_radii: np.ndarray, known_shell: bool = False) -> ShellRadii:
    """Inner and outer equimolar radii (Å) of a shell from its atoms' distances to the centre.

    Args:
        shell_radii: distances (Å) of the shell's atoms from the particle centre.
        known_shell: the caller selected the shell's atoms (e.g. by tag), so they are a shell whatever
            their radius ratio: the BALL_INNER_FRACTION test is skipped and a thick shell (inner/outer
            < 0.4) is measured. Without it, such atoms are read as a ball.

    Raises:
        NoInnerSurfaceError (a ValueError): the atoms have no inner surface (the inner-half fit
            reaches N = 0 at r³ ≤ 0; or, unless `known_shell`, an inner radius below
            BALL_INNER_FRACTION of the outer one).
        ValueError: too few atoms for either half's fit: fewer than 18 (`min_atoms_for_window`: each
            half's window must hold MIN_WINDOW_ATOMS), or radii `equimolar_radii_a` refuses.
    """
    floor = 0.0 if known_shell else BALL_INNER_FRACTION
    inner = equimolar_radii_a(shell_radii, SHELL_INNER_WINDOW, min_inner_fraction=floor).inner_a
    outer = equimolar_radii_a(shell_radii, SHELL_OUTER_WINDOW).outer_a
    if not np.isfinite(inner):
        raise NoInnerSurfaceError("the atoms have no inner surface (they fill a ball, not a shell)")
    return ShellRadii(inner, outer)


@dataclass(frozen=True)
class ShellStrain:
    """Deformation of a spherical shell between a reference and a deformed frame.

    hoop_strain: (R̄ − R̄0)/R̄0 with R̄ the mean radius of the shell atoms (its mid-surface);
    inner/outer radii are equimolar (`shell_radii_a`) in Å; thickness_nm = outer − inner;
    thickness_strain = thickness/thickness0 − 1; cavity_dv_over_v0 = (inner/inner0)³ − 1, the volume
    change of the space the shell encloses; outer_dv_over_v0 = (outer/outer0)³ − 1.
    """

    hoop_strain: float
    mean_radius0_a: float
    mean_radius_a: float
    inner0_a: float
    outer0_a: float
    inner_a: float
    outer_a: float
    thickness0_nm: float
    thickness_nm: float
    thickness_change_nm: float
    thickness_strain: float
    cavity_dv_over_v0: float
    outer_dv_over_v0: float


def shell_strain(shell_radii0_a: np.ndarray, shell_radii_now_a: np.ndarray,
                 known_shell: bool = False) -> ShellStrain:
    """Hoop strain, thickness change and cavity/outer volume change of a shell from its atoms' radii
    (Å, same atoms) in the reference and the deformed frame (`known_shell` as in `shell_radii_a`)."""
    r0 = np.asarray(shell_radii0_a, dtype=float)
    r1 = np.asarray(shell_radii_now_a, dtype=float)
    return shell_strain_from_fits(r0, r1, shell_radii_a(r0, known_shell), shell_radii_a(r1, known_shell))


def shell_strain_from_fits(shell_radii0_a: np.ndarray, shell_radii_now_a: np.ndarray,
                           fit0: ShellRadii, fit_now: ShellRadii) -> ShellStrain:
    """`shell_strain` with the two frames' surfaces given (`fit0`, `fit_now`, Å): for a caller that
    fits them its own way (e.g. with a stand-in inner surface); the radii (Å) give the hoop strain."""
    r0 = np.asarray(shell_radii0_a, dtype=float)
    r1 = np.asarray(shell_radii_now_a, dtype=float)
    if r0.shape != r1.shape or r0.size == 0:
        raise ValueError(f"shell radii must be non-empty and equal in shape: {r0.shape} vs {r1.shape}")
    a0, a1 = fit0, fit_now
    m0, m1 = float(r0.mean()), float(r1.mean())
    t0, t1 = (a0.outer_a - a0.inner_a) / 10.0, (a1.outer_a - a1.inner_a) / 10.0
    if t0 <= 0:
        raise ValueError("reference shell has no positive thickness")
    return ShellStrain(m1 / m0 - 1.0, m0, m1, a0.inner_a, a0.outer_a, a1.inner_a, a1.outer_a,
                       t0, t1, t1 - t0, t1 / t0 - 1.0,
                       dv_over_v0_from_radius(a1.inner_a, a0.inner_a),
                       dv_over_v0_from_radius(a1.outer_a, a0.outer_a))


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error (std with ddof=1 over √n; NaN for one value) of finite samples."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v)):
        raise ValueError("values must be a non-empty 1-D array of finite numbers")
    if v.size == 1:
        return float(v[0]), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))
