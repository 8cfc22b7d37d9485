"""Tests of nepbench.metrics.diffusion: MSD, random-walk D, Arrhenius fit, unwrapping."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from nepbench.metrics.diffusion import (
    arrhenius_fit,
    diffusive_fit_window_ps,
    diffusivity,
    msd_multiple_origins,
    unwrap_positions,
)


def _random_walk(d_a2_per_ps: float, n_frames: int, n_atoms: int, dt_ps: float, seed: int = 0):
    """Gaussian random walk with diffusivity d: each step has variance 2 d dt per dimension."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, np.sqrt(2 * d_a2_per_ps * dt_ps), (n_frames - 1, n_atoms, 3))
    start = rng.uniform(0, 10, (1, n_atoms, 3))
    pos = np.concatenate([start, start + np.cumsum(steps, axis=0)])
    return pos, np.arange(n_frames) * dt_ps


def _msd_brute(pos: np.ndarray, stride: int) -> np.ndarray:
    n = pos.shape[0]
    out = np.zeros(n)
    for k in range(1, n):
        origins = np.arange(0, n - k, stride)
        out[k] = np.mean(np.sum((pos[origins + k] - pos[origins]) ** 2, axis=-1))
    return out


@pytest.mark.parametrize("stride", [1, 3])
def test_msd_matches_brute_force(stride: int) -> None:
    pos, t = _random_walk(0.3, 40, 7, 0.05, seed=4)
    mask = np.array([True, False, True, True, False, True, True])
    lag, msd = msd_multiple_origins(pos, t, mask=mask, origin_stride=stride)
    np.testing.assert_allclose(lag, t)
    np.testing.assert_allclose(msd, _msd_brute(pos[:, mask], stride), rtol=1e-9, atol=1e-9)
    lag, msd_short = msd_multiple_origins(pos, t, mask=mask, origin_stride=stride, max_lag_frames=10)
    assert lag.size == 11
    np.testing.assert_allclose(msd_short, msd[:11], rtol=1e-9, atol=1e-9)


def test_random_walk_diffusivity_recovered() -> None:
    d_true = 0.5  # Å²/ps = 5e-5 cm²/s
    pos, t = _random_walk(d_true, 3000, 100, 0.01, seed=1)
    symbols = np.array(["Li"] * 100)
    res = diffusivity(pos, t, mask=symbols == "Li", n_blocks=5)
    assert res.fit_window_ps == pytest.approx((0.1 * 5.99, 0.5 * 5.99))  # 5 blocks of 600 frames
    assert res.loglog_slope == pytest.approx(1.0, abs=0.05)
    assert len(res.block_d_cm2_per_s) == 5 and res.n_atoms == 100
    assert 0 < res.stderr_cm2_per_s < 0.1 * d_true * 1e-4
    assert abs(res.d_cm2_per_s - d_true * 1e-4) < 4 * res.stderr_cm2_per_s
    assert "blocks" in res.method


def test_axes_give_the_diffusivity_along_the_chosen_components() -> None:
    """A walk fast in the x–y plane (2 Å²/ps) and slow along z (0.2 Å²/ps), like Li along a slab:
    axes (0, 1) give the in-plane D and (2,) the D across it, each with its own 2d."""
    d_plane, d_normal = 2.0, 0.2
    pos, t = _random_walk(1.0, 2000, 80, 0.01, seed=5)
    start = pos[:1]
    pos = start + (pos - start) * np.sqrt(np.array([d_plane, d_plane, d_normal]))  # step variance 2 D dt per axis
    for axes, d_true in (((0, 1), d_plane), ((2,), d_normal), ((0, 1, 2), (2 * d_plane + d_normal) / 3)):
        res = diffusivity(pos, t, axes=axes)
        assert abs(res.d_cm2_per_s - d_true * 1e-4) < 4 * res.stderr_cm2_per_s, axes
        assert res.d_cm2_per_s == pytest.approx(d_true * 1e-4, rel=0.1), axes
    assert "over axes xy" in diffusivity(pos, t, axes=(0, 1)).method
    for bad in ((), (0, 0), (3,)):
        with pytest.raises(ValueError, match="axes"):
            diffusivity(pos, t, axes=bad)


def test_fit_window_rule() -> None:
    assert diffusive_fit_window_ps(10.0) == pytest.approx((1.0, 5.0))
    assert diffusive_fit_window_ps(10.0, 0.2, 0.6) == pytest.approx((2.0, 6.0))
    with pytest.raises(ValueError):
        diffusive_fit_window_ps(10.0, 0.6, 0.5)


def test_diffusion_bad_input() -> None:
    pos, t = _random_walk(0.5, 60, 4, 0.01)
    with pytest.raises(ValueError, match="uniform"):
        msd_multiple_origins(pos, np.r_[t[:-1], t[-1] + 0.5])
    with pytest.raises(ValueError):
        msd_multiple_origins(pos, t[:-1])
    with pytest.raises(ValueError):
        msd_multiple_origins(pos, t, mask=np.zeros(4, bool))
    with pytest.raises(ValueError):
        msd_multiple_origins(pos, t, mask=np.ones(3, bool))
    with pytest.raises(ValueError):
        msd_multiple_origins(pos, t, origin_stride=0)
    bad = pos.copy()
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError):
        msd_multiple_origins(bad, t)
    with pytest.raises(ValueError):
        diffusivity(pos, t, n_blocks=2)
    with pytest.raises(ValueError, match="fit window"):
        diffusivity(pos[:12], t[:12], n_blocks=3)


def test_arrhenius_recovers_input() -> None:
    ea, d0 = 0.35, 2e-3
    temps = np.array([600.0, 800.0, 1000.0, 1200.0])
    d = d0 * np.exp(-ea / (units.kB * temps))
    fit = arrhenius_fit(temps, d)
    assert fit.ea_ev == pytest.approx(ea, rel=1e-10)
    assert fit.d0_cm2_per_s == pytest.approx(d0, rel=1e-9)
    assert fit.ea_stderr_ev == pytest.approx(0.0, abs=1e-9)
    ea_w, err_w, d0_w = arrhenius_fit(temps, d, d_stderr=0.1 * d)
    assert ea_w == pytest.approx(ea, rel=1e-10) and d0_w == pytest.approx(d0, rel=1e-9)
    # with 10 % errors on D, the stated error of Ea is the weighted-LS one: sigma_lnD = 0.1
    x = 1 / (units.kB * temps)
    assert err_w == pytest.approx(0.1 / np.sqrt(np.sum((x - x.mean()) ** 2)), rel=1e-9)
    two = arrhenius_fit(temps[:2], d[:2])
    assert two.ea_ev == pytest.approx(ea) and np.isnan(two.ea_stderr_ev)


def test_arrhenius_bad_input() -> None:
    with pytest.raises(ValueError):
        arrhenius_fit([800.0], [1e-5])
    with pytest.raises(ValueError):
        arrhenius_fit([800.0, 800.0], [1e-5, 2e-5])
    with pytest.raises(ValueError):
        arrhenius_fit([800.0, 900.0], [1e-5, 0.0])
    with pytest.raises(ValueError):
        arrhenius_fit([800.0, 900.0], [1e-5, 2e-5], d_stderr=[1e-6, -1.0])


def test_unwrap_restores_trajectory_triclinic() -> None:
    cell = np.array([[8.0, 0.0, 0.0], [2.0, 7.5, 0.0], [1.0, 1.5, 9.0]])
    pos, _ = _random_walk(0.5, 200, 20, 0.05, seed=5)  # steps ~0.2 Å << half width
    frac = pos @ np.linalg.inv(cell)
    wrapped = (frac - np.floor(frac)) @ cell
    unwrapped = unwrap_positions(wrapped, cell)
    np.testing.assert_allclose(unwrapped - unwrapped[0], pos - pos[0], atol=1e-9)
    assert np.max(np.abs(wrapped - pos)) > 8.0  # the test really wrapped something


def test_unwrap_varying_cell_steps_are_minimum_images() -> None:
    """NPT-like cells: each unwrapped step is the wrapped step plus whole vectors of that frame's cell."""
    rng = np.random.default_rng(6)
    n_frames = 50
    cells = np.array([np.diag([10.0, 10.0, 10.0]) * (1 + 0.01 * np.sin(k)) for k in range(n_frames)])
    frac = np.cumsum(rng.normal(0, 0.03, (n_frames, 5, 3)), axis=0)
    wrapped = np.einsum("fnj,fjk->fnk", frac - np.floor(frac), cells)
    unwrapped = unwrap_positions(wrapped, cells)
    shift = np.diff(unwrapped, axis=0) - np.diff(wrapped, axis=0)
    images = np.einsum("fnj,fjk->fnk", shift, np.linalg.inv(cells[1:]))
    np.testing.assert_allclose(images, np.round(images), atol=1e-9)
    assert np.abs(images).max() >= 1  # some atoms crossed the boundary
    assert np.abs(np.diff(unwrapped, axis=0)).max() < 2.0  # no spurious jumps
    with pytest.raises(ValueError):
        unwrap_positions(wrapped, cells[:-1])
    with pytest.raises(ValueError):
        unwrap_positions(wrapped, np.zeros((3, 3)))


# --------------------------------------------------------------- hand-computed and analytic values


def test_whole_trajectory_d_uses_every_block():
    # D = 0.2 Å²/ps for the first half, 1.0 for the second: the all-origins MSD grows as 6 * 0.6 t exactly
    slow, t = _random_walk(0.2, 1500, 200, 0.01, seed=1)
    fast, _ = _random_walk(1.0, 1501, 200, 0.01, seed=2)
    pos = np.concatenate([slow, slow[-1] + fast[1:] - fast[0]])
    res = diffusivity(pos, np.arange(3000) * 0.01, n_blocks=6)
    assert res.d_cm2_per_s == pytest.approx(0.6e-4, rel=0.08)


def test_fit_window_skips_the_caged_start():
    # walk + caged rattle (AR(1), tau_c = 0.1 ps): MSD = 6 D t + 6 s^2 (1 - exp(-t/tau_c)); from 0.1 of a block on
    # the rattle is saturated and the slope is 6 D
    d, dt, n, m = 0.1, 0.01, 3000, 100
    pos, t = _random_walk(d, n, m, dt, seed=3)
    rho, s = np.exp(-dt / 0.1), 0.7
    rng = np.random.default_rng(4)
    cage = np.empty_like(pos)
    cage[0] = rng.normal(0, s, (m, 3))
    for i in range(1, n):
        cage[i] = rho * cage[i - 1] + rng.normal(0, s * np.sqrt(1 - rho**2), (m, 3))
    res = diffusivity(pos + cage, t, n_blocks=5)
    assert res.d_cm2_per_s == pytest.approx(d * 1e-4, rel=0.1)


def test_block_stderr_is_std_over_sqrt_n():
    pos, t = _random_walk(0.5, 1000, 20, 0.01, seed=100)
    res = diffusivity(pos, t, n_blocks=5)
    assert res.stderr_cm2_per_s == pytest.approx(np.std(res.block_d_cm2_per_s, ddof=1) / np.sqrt(5), rel=1e-12)


def test_block_stderr_is_calibrated_on_random_walks():
    # the stated error must be the real error: median |D - D_true| / stderr is ~0.6 (0.45-0.71 over seed sets);
    # an error bar sqrt(n_blocks) too wide gives <= 0.32
    z = []
    for seed in range(200):
        pos, t = _random_walk(0.5, 1000, 20, 0.01, seed=100 + seed)
        res = diffusivity(pos, t, n_blocks=5)
        z.append(abs(res.d_cm2_per_s - 0.5e-4) / res.stderr_cm2_per_s)
    assert 0.4 < np.median(z) < 1.0
